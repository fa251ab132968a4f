"""This spec's own decisions where torch is unspecified, inconsistent or crashes (checked only with
``--strict``, xembed's column; torch's known deviations are listed in xfails/torch_strict.txt)."""

from __future__ import annotations

from xembed_conformance.checks.errors import (
    ErrorRow,
    ErrorSpec,
    _bool_input,
    _empty_offsets,
    _ilo_short,
    _max_norm_nonpos,
    _norm_type_bad,
    _off_decreasing,
    _sparse_sgbf,
    _weight_int,
)

E, B = "embedding", "embedding_bag"
_A = "ERR-ATOMIC"
STRICT_ERROR_ROWS: list[tuple[str, ErrorRow]] = [
    (E, ErrorRow("strict: sparse + scale_grad_by_freq raises at the call", _sparse_sgbf,
                 ErrorSpec("ValueError at the call", strict=True), ("ERR-SPARSE-SGBF", _A), {"shape": "1d"})),
    (E, ErrorRow("strict: max_norm <= 0", _max_norm_nonpos, ErrorSpec("ValueError", strict=True),
                 ("RENORM-ARGS", _A), {})),
    (E, ErrorRow("strict: norm_type <= 0 or NaN", _norm_type_bad, ErrorSpec("ValueError", strict=True),
                 ("RENORM-ARGS", _A), {})),
    (E, ErrorRow("strict: weight not floating", _weight_int, ErrorSpec("TypeError", strict=True),
                 ("ERR-WEIGHT", _A), {})),
    (B, ErrorRow("strict: sparse + scale_grad_by_freq raises at the call", _sparse_sgbf,
                 ErrorSpec("ValueError at the call", strict=True), ("ERR-SPARSE-SGBF", _A),
                 {"shape": "offsets", "mode": ("sum", "mean")})),
    (B, ErrorRow("strict: decreasing offsets", _off_decreasing,
                 ErrorSpec("ValueError", strict=True), ("ERR-OFFSETS-DECREASING", _A),
                 {"shape": "offsets", "dup": True})),
    (B, ErrorRow("strict: include_last_offset with offsets[-1] != len(input)", _ilo_short,
                 ErrorSpec("ValueError", strict=True), ("BAG-LAST-OFFSET", _A), {"shape": "offsets", "dup": True})),
    (B, ErrorRow("strict: empty offsets with non-empty input", _empty_offsets,
                 ErrorSpec("an error or 0 bags", strict=True, lenient=True), ("BAG-EMPTY-OFFSETS", _A),
                 {"shape": "offsets", "dup": True})),
    (B, ErrorRow("strict: max_norm <= 0", _max_norm_nonpos, ErrorSpec("ValueError", strict=True),
                 ("RENORM-ARGS", _A), {})),
    (B, ErrorRow("strict: norm_type <= 0 or NaN", _norm_type_bad, ErrorSpec("ValueError", strict=True),
                 ("RENORM-ARGS", _A), {})),
    (B, ErrorRow("strict: weight not floating", _weight_int, ErrorSpec("TypeError", strict=True),
                 ("ERR-WEIGHT", _A), {})),
    (B, ErrorRow("strict: bool indices", _bool_input, ErrorSpec("TypeError", strict=True),
                 ("ERR-INDEX-DTYPE", _A), {})),
]

#: valid rows checked only with --strict: float16 / bfloat16 gradients over hot rows must accumulate
#: in float32 (GRAD-ACC; torch CPU accumulates in the weight's dtype: a float16 row gradient stops
#: growing at 2048, a bfloat16 one at 256 -- README Findings)
STRICT_GRAD_ACC = "strict: float16/bfloat16 gradients accumulate in float32"
