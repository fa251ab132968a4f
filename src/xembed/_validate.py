"""Input checks, in two separable kinds.

* Metadata checks (types, shapes, dtypes, option combinations, scalars) need no array values and run
  everywhere, lazy and traced arrays included.
* Value checks (index range, offsets rules) read array values.  They run only on arrays whose values
  can be read (:func:`xembed._primitives.has_values`, a capability of each namespace's arrays); on lazy and
  traced arrays they are skipped here, and the backend adapter checks them where the values exist (spec JIT-*,
  DASK-CHECKS).

Every check runs before anything is computed or modified, so a failing call never touches the weight.
Errors name the argument in backticks and the offending value.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from array_api_compat import device as _device
from array_api_compat import is_array_api_obj

from . import _primitives as prim
from ._dtypes import index_dtype
from ._offsets_rules import decrease_error, first_offset_error, last_offset_error
from ._typing import Array, Namespace

MODES = ("sum", "mean", "max", "sqrtn", "min")
"""Bag modes: the reference's three (BAG-SUM, BAG-MEAN, BAG-MAX), then the extensions ``sqrtn`` (EXT-SQRTN) and
``min`` (EXT-MIN)."""
PSW_MODES = ("sum", "mean", "sqrtn")
"""Modes that accept per_sample_weights (``mean``: the weighted mean, EXT-WMEAN)."""
MAX_NDIM = 64
"""EMB-NDIM: the fewest dimensions any supported library allows; the output of ``embedding`` has one more
dimension than ``input``."""


def check_mode(mode: Any) -> str:
    """ERR-MODE: ``mode`` must be one of :data:`MODES`."""
    if not isinstance(mode, str) or mode not in MODES:
        msg = f"`mode` must be one of {', '.join(map(repr, MODES))}, got {mode!r}"
        raise ValueError(msg)
    return mode

# Per-call speed: answers that depend only on a dtype are computed once.
_ISDTYPE: dict[tuple[int, Any, str], bool] = {}


def _isdtype(xp: Any, dtype: Any, kind: str) -> bool:
    """``xp.isdtype``, cached per (namespace, dtype, kind)."""
    key = (id(xp), dtype, kind)
    r = _ISDTYPE.get(key)
    if r is None:
        r = _ISDTYPE[key] = bool(xp.isdtype(dtype, kind))
    return r


def check_is_array(name: str, x: Any) -> None:
    if not is_array_api_obj(x):
        msg = f"`{name}` must be an array, got {type(x).__name__}"
        raise TypeError(msg)


def check_same_device(arrays: dict[str, Array], xp: Namespace) -> None:
    """ERR-NAMESPACE: every array on one device (an array not placed yet, whose device is None, matches any)."""
    placed = [(k, d) for k, d in ((k, prim.device_of(x, xp=xp)) for k, x in arrays.items() if x is not None)
              if d is not None]
    if not placed:
        return
    name0, d0 = placed[0]
    for name, d in placed[1:]:
        if d != d0:
            msg = (
                f"`{name}` is on device {d!r} but `{name0}` is on {d0!r}; "
                "all arrays must be on the same device"
            )
            raise ValueError(msg)


def check_weight(weight: Array, xp: Namespace) -> None:
    """ERR-WEIGHT: 2-D and real floating."""
    if weight.ndim != 2:
        msg = f"`weight` must be 2-D (num_embeddings, embedding_dim), got shape {tuple(weight.shape)}"
        raise ValueError(msg)
    if not _isdtype(xp, weight.dtype, "real floating"):
        msg = f"`weight` must have a real floating dtype, got {weight.dtype}"
        raise TypeError(msg)


def check_index_dtype(name: str, x: Array, xp: Namespace) -> None:
    """ERR-INDEX-DTYPE / ERR-OFFSETS-DTYPE: an integer dtype (bool is not one)."""
    if not _isdtype(xp, x.dtype, "integral"):
        msg = f"`{name}` must have an integer dtype, got {x.dtype}"
        raise TypeError(msg)


def check_size(name: str, value: Any) -> int:
    """A table size (``num_embeddings``, ``embedding_dim``): a non-negative int, not a bool."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        msg = f"`{name}` must be a non-negative int, got {value!r}"
        raise ValueError(msg)
    return int(value)


def check_flag(name: str, value: Any) -> bool:
    if isinstance(value, bool) or (isinstance(value, numbers.Integral) and value in (0, 1)):
        return bool(value)
    msg = f"`{name}` must be a bool, got {value!r}"
    raise TypeError(msg)


def normalize_padding_idx(padding_idx: Any, num_embeddings: int) -> int | None:
    """None, or the padding row in ``[0, N)`` (PAD-NEGATIVE: negative values count from the end;
    PAD-RANGE: outside ``[-N, N)`` is a ValueError)."""
    if padding_idx is None:
        return None
    if isinstance(padding_idx, bool) or not isinstance(padding_idx, numbers.Integral):
        msg = f"`padding_idx` must be an int or None, got {padding_idx!r}"
        raise TypeError(msg)
    p = int(padding_idx)
    if not -num_embeddings <= p < num_embeddings:
        msg = (
            f"`padding_idx` {p} is out of range for a weight with {num_embeddings} rows "
            f"(must be in [{-num_embeddings}, {num_embeddings}))"
        )
        raise ValueError(msg)
    return p + num_embeddings if p < 0 else p


def _as_float(name: str, value: numbers.Real) -> float:
    """``float(value)``, with a ValueError naming the argument when it has no float value (an int beyond
    float64's range raises OverflowError in ``float()``)."""
    try:
        return float(value)
    except OverflowError:
        digits = len(str(abs(math.trunc(value))))
        msg = f"`{name}` must be representable as a float64, got an integer of {digits} digits"
        raise ValueError(msg) from None


def check_renorm_args(max_norm: Any, norm_type: Any) -> tuple[float | None, float]:
    """RENORM-ARGS: ``max_norm`` > 0 or None, ``norm_type`` > 0 (inf allowed); NaN rejected."""
    if max_norm is not None:
        if isinstance(max_norm, bool) or not isinstance(max_norm, numbers.Real):
            msg = f"`max_norm` must be a real number or None, got {max_norm!r}"
            raise TypeError(msg)
        if not _as_float("max_norm", max_norm) > 0:  # also rejects NaN
            msg = f"`max_norm` must be > 0, got {max_norm!r}"
            raise ValueError(msg)
        max_norm = float(max_norm)
    if isinstance(norm_type, bool) or not isinstance(norm_type, numbers.Real):
        msg = f"`norm_type` must be a real number, got {norm_type!r}"
        raise TypeError(msg)
    if not _as_float("norm_type", norm_type) > 0:  # also rejects NaN
        msg = f"`norm_type` must be > 0 (a p-norm, inf allowed), got {norm_type!r}"
        raise ValueError(msg)
    return max_norm, float(norm_type)


def check_writable(weight: Array, xp: Namespace) -> None:
    """RENORM-WRITABLE: the in-place renorm needs a writable weight; checked before any row is written."""
    if not prim.is_writable(weight, xp=xp):
        msg = ("`weight` is read-only, but `max_norm` renormalises its rows in place; pass a writable array, or "
               "use `xembed.renorm(weight, input, max_norm)` (functional) and call without `max_norm`")
        raise ValueError(msg)


def check_indices_in_range(x: Array, num_embeddings: int, xp: Namespace, name: str = "input") -> None:
    """ERR-INDEX-RANGE: IndexError naming the first offending value and its position (value check).

    One min/max pass over the indices (VAL-ONE-PASS); the offending position is searched only when one is
    out of range.
    """
    if not prim.has_values(x, xp=xp) or math.prod(x.shape) == 0:
        return
    lo, hi = prim.index_bounds(x, xp=xp)
    if lo >= 0 and hi < num_embeddings:
        return
    flat = xp.reshape(x, (-1,))
    bad = (flat < 0) | (flat >= num_embeddings)
    pos = int(xp.argmax(xp.astype(bad, xp.int8)))
    value = int(flat[pos])
    where = _unravel(pos, tuple(x.shape))
    msg = (
        f"index {value} at position {where} of `{name}` is out of range for a weight with "
        f"{num_embeddings} rows (valid: 0 <= index < {num_embeddings}; negative indices are not wrapped)"
    )
    raise IndexError(msg)


def _unravel(pos: int, shape: tuple[int, ...]) -> int | tuple[int, ...]:
    if len(shape) == 1:
        return pos
    out: list[int] = []
    for s in reversed(shape):
        pos, r = divmod(pos, s)
        out.append(r)
    return tuple(reversed(out))


@dataclass(frozen=True)
class BagArgs:
    """Validated embedding_bag arguments (everything the core needs, nothing it must re-check)."""

    mode: str
    padding_idx: int | None
    max_norm: float | None
    norm_type: float
    scale_grad_by_freq: bool
    sparse: bool
    include_last_offset: bool


def check_embedding_metadata(input: Array, weight: Array, padding_idx: Any, max_norm: Any, norm_type: Any,
                             scale_grad_by_freq: Any, sparse: Any, xp: Namespace,
                             ) -> tuple[int | None, float | None, float, bool, bool]:
    """Every embedding check that needs no array values (ERR-WEIGHT, ERR-INDEX-DTYPE, ERR-SPARSE-SGBF,
    RENORM-ARGS, PAD-RANGE); returns the normalised ``(padding_idx, max_norm, norm_type,
    scale_grad_by_freq, sparse)``."""
    check_weight(weight, xp)
    check_index_dtype("input", input, xp)
    if input.ndim >= MAX_NDIM:
        msg = (f"`input` must have fewer than {MAX_NDIM} dimensions (the output adds one, and array libraries "
               f"stop at {MAX_NDIM}), got {input.ndim}")
        raise ValueError(msg)
    scale_grad_by_freq = check_flag("scale_grad_by_freq", scale_grad_by_freq)
    sparse = check_flag("sparse", sparse)
    if sparse and scale_grad_by_freq:
        msg = "`scale_grad_by_freq`=True is not supported with `sparse`=True"
        raise ValueError(msg)
    max_norm, norm_type = check_renorm_args(max_norm, norm_type)
    padding_idx = normalize_padding_idx(padding_idx, weight.shape[0])
    return padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse


def check_bag_metadata(input: Array, weight: Array, offsets: Array | None, per_sample_weights: Array | None,
                       mode: Any, max_norm: Any, norm_type: Any, scale_grad_by_freq: Any, sparse: Any,
                       include_last_offset: Any, padding_idx: Any, xp: Namespace,
                       lengths: Array | None = None) -> BagArgs:
    """All embedding_bag checks that need no array values, in the reference's order where it has one
    (ERR-PSW, ERR-WEIGHT, ERR-OFFSETS-SHAPE, ERR-INPUT-NDIM, ERR-MODE, ERR-MAX-SPARSE, BAG-PSW-MODE,
    ERR-SPARSE-SGBF, ERR-INDEX-DTYPE, ERR-OFFSETS-DTYPE, BAG-LAST-OFFSET, RENORM-ARGS, PAD-RANGE).

    ``lengths`` (EXT-LENGTHS) stands in for ``offsets``; its checks come first so that an input described
    by lengths never meets the offsets rules.
    """
    if lengths is not None:
        check_lengths_metadata(input, offsets, lengths, include_last_offset, xp)
    if per_sample_weights is not None and tuple(per_sample_weights.shape) != tuple(input.shape):
        msg = (
            f"`per_sample_weights` must have the same shape as `input`, got {tuple(per_sample_weights.shape)} "
            f"and {tuple(input.shape)}"
        )
        raise ValueError(msg)
    check_weight(weight, xp)
    _check_bag_layout(input, offsets, lengths)
    mode, scale_grad_by_freq, sparse, include_last_offset = _check_bag_options(
        mode, scale_grad_by_freq, sparse, include_last_offset, per_sample_weights)
    _check_bag_dtypes(input, weight, offsets, per_sample_weights, include_last_offset, xp)
    max_norm, norm_type = check_renorm_args(max_norm, norm_type)
    padding_idx = normalize_padding_idx(padding_idx, weight.shape[0])
    return BagArgs(mode, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse, include_last_offset)


def _check_bag_layout(input: Array, offsets: Array | None, lengths: Array | None) -> None:
    """BAG-LAYOUT-2D / BAG-LAYOUT-1D: a 2-D input without offsets, a 1-D input with offsets or lengths."""
    if input.ndim == 2 and offsets is not None:
        msg = (
            "`offsets` must be None when `input` is 2-D (each row is a bag), got an array of shape "
            f"{tuple(offsets.shape)}"
        )
        raise ValueError(msg)
    if input.ndim == 1 and offsets is None and lengths is None:
        msg = "`offsets` (or `lengths`) is required when `input` is 1-D, got None"
        raise ValueError(msg)
    if offsets is not None and offsets.ndim != 1:
        msg = f"`offsets` must be 1-D, got shape {tuple(offsets.shape)}"
        raise ValueError(msg)
    if input.ndim not in (1, 2):
        msg = f"`input` must be 1-D (with `offsets`) or 2-D, got shape {tuple(input.shape)}"
        raise ValueError(msg)


def _check_bag_options(mode: Any, scale_grad_by_freq: Any, sparse: Any, include_last_offset: Any,
                       per_sample_weights: Array | None) -> tuple[str, bool, bool, bool]:
    """ERR-MODE, ERR-MAX-SPARSE, BAG-PSW-MODE, ERR-SPARSE-SGBF: the checked ``(mode, scale_grad_by_freq,
    sparse, include_last_offset)``."""
    mode = check_mode(mode)
    scale_grad_by_freq = check_flag("scale_grad_by_freq", scale_grad_by_freq)
    sparse = check_flag("sparse", sparse)
    include_last_offset = check_flag("include_last_offset", include_last_offset)
    if mode in ("max", "min") and scale_grad_by_freq:
        msg = f"`scale_grad_by_freq`=True is not supported with `mode`={mode!r}"
        raise ValueError(msg)
    if mode in ("max", "min") and sparse:
        msg = f"`sparse`=True is not supported with `mode`={mode!r}"
        raise ValueError(msg)
    if per_sample_weights is not None and mode not in PSW_MODES:
        msg = f"`per_sample_weights` is only supported with `mode` in {PSW_MODES}, got `mode`={mode!r}"
        raise NotImplementedError(msg)
    if sparse and scale_grad_by_freq:
        msg = "`scale_grad_by_freq`=True is not supported with `sparse`=True"
        raise ValueError(msg)
    return mode, scale_grad_by_freq, sparse, include_last_offset


def _check_bag_dtypes(input: Array, weight: Array, offsets: Array | None, per_sample_weights: Array | None,
                      include_last_offset: bool, xp: Namespace) -> None:
    """ERR-INDEX-DTYPE, ERR-OFFSETS-DTYPE, BAG-LAST-OFFSET (a last offset needs offsets), ERR-PSW (dtype)."""
    check_index_dtype("input", input, xp)
    if offsets is not None:
        check_index_dtype("offsets", offsets, xp)
        if include_last_offset and input.ndim == 1 and offsets.shape[0] == 0:
            msg = "`offsets` must not be empty when `include_last_offset`=True"
            raise ValueError(msg)
    if per_sample_weights is not None and per_sample_weights.dtype != weight.dtype:
        msg = (
            f"`per_sample_weights` must have the dtype of `weight` ({weight.dtype}), "
            f"got {per_sample_weights.dtype}"
        )
        raise TypeError(msg)


def check_lengths_metadata(input: Array, offsets: Array | None, lengths: Array, include_last_offset: Any,
                           xp: Namespace) -> None:
    """EXT-LENGTHS-ARGS: ``lengths`` is a 1-D integer array, only with a 1-D input, without ``offsets`` and
    without ``include_last_offset``."""
    check_is_array("lengths", lengths)
    msg = None
    if offsets is not None:
        msg = ("give either `offsets` or `lengths`, not both: got `offsets` of shape "
               f"{tuple(offsets.shape)} and `lengths` of shape {tuple(lengths.shape)}")
    elif input.ndim != 1:
        msg = ("`lengths` needs a 1-D `input` (a 2-D input is already one bag per row), got `input` of shape "
               f"{tuple(input.shape)}")
    elif lengths.ndim != 1:
        msg = f"`lengths` must be 1-D (one entry per bag), got shape {tuple(lengths.shape)}"
    if msg is not None:
        raise ValueError(msg)
    check_index_dtype("lengths", lengths, xp)
    if check_flag("include_last_offset", include_last_offset):
        msg = ("`include_last_offset`=True cannot be combined with `lengths` (lengths already give every bag's "
               "end), got `include_last_offset`=True")
        raise ValueError(msg)


def check_lengths_values(lengths: Array, n: int, xp: Namespace) -> None:
    """EXT-LENGTHS-VALUES, in exact integer arithmetic (VAL-EXACT): every length in ``[0, len(input)]``,
    compared in the lengths' own dtype (unsigned values beyond int64's range included), so that the offsets
    derived from them (``lengths_to_offsets``) cannot wrap around before a prefix exceeds ``len(input)``;
    the sum rule is then checked on those offsets by :func:`check_offsets_values` (value check)."""
    if not prim.has_values(lengths, xp=xp) or lengths.shape[0] == 0:
        return
    lo, hi = prim.index_bounds(lengths, xp=xp)
    if lo >= 0 and hi <= n:
        return
    bad = (lengths < 0) | (lengths > n)
    pos = int(xp.argmax(xp.astype(bad, xp.int8)))
    value = int(lengths[pos])
    what = "non-negative" if value < 0 else f"at most the number of indices in `input` ({n})"
    msg = f"every entry of `lengths` must be {what}, but lengths[{pos}] = {value}"
    raise ValueError(msg)


def lengths_to_offsets(lengths: Array, xp: Namespace) -> Array:
    """EXT-LENGTHS: the full offsets ``[0, cumsum(lengths)]`` (B+1 entries, used with include_last_offset), in
    the namespace's index dtype.  Each length was checked to lie in ``[0, len(input)]``, so the cast is exact
    and a running sum that wraps shows up as decreasing offsets (VAL-EXACT)."""
    dev = _device(lengths)
    itype = index_dtype(xp, dev)
    zero = xp.zeros((1,), dtype=itype, device=dev)
    return xp.concat([zero, xp.cumulative_sum(xp.astype(lengths, itype, copy=False))])


def offsets_from_lengths(lengths: Array, n: int, xp: Namespace) -> Array:
    """EXT-LENGTHS with VAL-EXACT: check ``lengths`` (:func:`check_lengths_values`), derive the full offsets
    ``[0, cumsum(lengths)]`` and check those by the same code as a caller's offsets (the one place every path
    turns lengths into offsets)."""
    check_lengths_values(lengths, n, xp)
    offsets = lengths_to_offsets(lengths, xp)
    check_offsets_values(offsets, n, True, xp, source="lengths")
    return offsets


def check_offsets_values(offsets: Array, n: int, include_last_offset: bool, xp: Namespace,
                         source: str = "offsets") -> None:
    """offsets[0] == 0 (ERR-OFFSETS-FIRST), non-decreasing (ERR-OFFSETS-DECREASING), offsets[-1] <= n
    (ERR-OFFSETS-END; == n with include_last_offset, BAG-LAST-OFFSET) (value check, one pass: VAL-ONE-PASS).

    Every comparison is made in the offsets' own dtype or on Python ints (VAL-EXACT).  ``source="lengths"``:
    the offsets were derived from ``lengths`` (EXT-LENGTHS) and the errors speak of those.
    """
    if not prim.has_values(offsets, xp=xp) or offsets.shape[0] == 0:
        return
    error = first_offset_error(int(offsets[0]))
    pos = prim.offsets_first_decrease(offsets, xp=xp) if error is None else 0
    if pos > 0:
        error = decrease_error(pos, int(offsets[pos]), int(offsets[pos - 1]), source)
    if error is None:
        error = last_offset_error(int(offsets[-1]), n, include_last_offset, source)
    if error is not None:
        raise error
