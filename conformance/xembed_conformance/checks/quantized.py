"""Conformance rows for row-wise quantized embedding bags, in the signatures of torch's quantized ops.

A target is any object with torch's ``quantized::`` op names (``torch:ops.quantized`` itself, or a kernel
writer's module): ``embedding_bag_{byte,4bit,2bit}_prepack(weight)`` and
``embedding_bag_{byte,4bit,2bit}_rowwise_offsets(weight, indices, offsets, scale_grad_by_freq, mode,
pruned_weights, per_sample_weights, compressed_indices_mapping, include_last_offset)``, on CPU torch tensors.
The reference is NumPy (exact prepack bytes; float64 sums of the dequantized rows, docs/spec.md QUANT-*).

Rows beyond torch's ops (``mode`` mean / max, which torch's ops ignore, QUANT-TORCH-MODE; a ``padding_idx``
keyword) are extension rows: a target that raises TypeError / ValueError / NotImplementedError on them gets
"not offered"; torch's known divergence on ``mode`` is reported as "xfail" for torch's own ops.

The rows are items of the pytest suite (check ids ``OP::OPTION::values`` and ``OP::weight::bytes``), selected when
the target offers one of the op names, whatever ``--backend`` says:

    pytest --pyargs xembed_conformance --impl=torch:ops.quantized
"""

# ruff: noqa: EM102  # QViolation(message): the message is the verdict

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

NDArray = np.ndarray[Any, Any]
BAG_OPS = {8: "embedding_bag_byte_rowwise_offsets", 4: "embedding_bag_4bit_rowwise_offsets",
           2: "embedding_bag_2bit_rowwise_offsets"}
PREPACK_OPS = {8: "embedding_bag_byte_prepack", 4: "embedding_bag_4bit_prepack", 2: "embedding_bag_2bit_prepack"}
#: a target offering one of these names gets the quantized rows
QUANTIZED_OPS = (*BAG_OPS.values(), *PREPACK_OPS.values())
MODES = {0: "sum", 1: "mean", 2: "max"}
EPS32 = float(np.finfo(np.float32).eps)
TINY32 = float(np.finfo(np.float32).tiny)


class QViolation(AssertionError):  # noqa: N818 - a verdict, not an error of the checker
    """The target does not conform on this case."""


class NotOffered(Exception):  # noqa: N818 - an outcome, not an error
    """The target refused an extension row's option with a clear error."""


# ---------------------------------------------------------------------------------------------------------
# NumPy reference (QUANT-PREPACK, QUANT-LAYOUT, QUANT-FORWARD)


def ref_prepack(w: NDArray, bits: int) -> NDArray:
    """torch's prepack bytes of a finite float32 table (docs/spec.md QUANT-PREPACK), in NumPy float32."""
    w = w.astype(np.float32)
    lo, hi = w.min(axis=1), w.max(axis=1)
    if bits == 8:
        spread = hi - lo
        codes = np.clip(np.rint((w - lo[:, None]) * (np.float32(255) / (spread + np.float32(1e-8)))[:, None]),
                        0, 255)
        tail = np.concatenate([(spread / np.float32(255))[:, None], lo[:, None]], axis=1).astype(np.float32)
        return np.concatenate([codes.astype(np.uint8), tail.view(np.uint8)], axis=1)
    top = (1 << bits) - 1
    lo = lo.astype(np.float16).astype(np.float32)
    spread = hi - lo
    scale = np.where(spread == 0, np.float32(1), spread / np.float32(top)).astype(np.float16).astype(np.float32)
    with np.errstate(divide="ignore"):
        inverse = np.float32(1) / scale
    bad = (scale == 0) | np.isinf(inverse)
    scale, inverse = np.where(bad, np.float32(1), scale), np.where(bad, np.float32(1), inverse)
    codes = np.clip(np.rint((w - lo[:, None]) * inverse[:, None]), 0, top).astype(np.uint8)
    per = 8 // bits
    grouped = codes.reshape(codes.shape[0], -1, per).astype(np.uint32)
    packed = (grouped << (np.arange(per, dtype=np.uint32) * bits)).sum(axis=2).astype(np.uint8)
    tail = np.stack([scale, lo], axis=1).astype(np.float16)
    return np.concatenate([packed, tail.view(np.uint8)], axis=1)


def ref_dequantize(packed: NDArray, bits: int, magnitude: bool = False) -> NDArray:
    """float64 ``code * scale + bias`` of packed rows (QUANT-LAYOUT); with ``magnitude``,
    ``|code * scale| + |bias|`` (the scale of the float32 rounding of one dequantized value)."""
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    if bits == 8:
        dim = packed.shape[1] - 8
        sb = packed[:, dim:].copy().view(np.float32).astype(np.float64)
        codes = packed[:, :dim].astype(np.float64)
    else:
        nbytes = packed.shape[1] - 4
        sb = packed[:, nbytes:].copy().view(np.float16).astype(np.float64)
        per = 8 // bits
        shifts = np.arange(per) * bits
        codes = ((packed[:, :nbytes, None].astype(np.int64) >> shifts) & ((1 << bits) - 1)).reshape(
            len(packed), -1).astype(np.float64)
    if magnitude:
        return np.abs(codes * sb[:, :1]) + np.abs(sb[:, 1:])
    return codes * sb[:, :1] + sb[:, 1:]


@dataclass
class QCase:
    """One drawn call: a float32 table, its bit width, a 1-D input with offsets and the options."""

    bits: int
    weight: NDArray
    indices: NDArray
    offsets: NDArray
    per_sample_weights: NDArray | None = None
    include_last_offset: bool = False
    mode: int = 0
    padding_idx: int | None = None

    def bag_bounds(self) -> tuple[NDArray, NDArray]:
        n = len(self.indices)
        if self.include_last_offset:
            return self.offsets[:-1], self.offsets[1:]
        return self.offsets, np.append(self.offsets[1:], n).astype(np.int64)

    def __repr__(self) -> str:
        """A Python literal of the case (with ``import numpy as np``)."""
        psw = None if self.per_sample_weights is None else literal(self.per_sample_weights)
        return (f"QCase(bits={self.bits}, weight={literal(self.weight)}, indices={literal(self.indices)}, "
                f"offsets={literal(self.offsets)}, per_sample_weights={psw}, "
                f"include_last_offset={self.include_last_offset}, mode={self.mode}, padding_idx={self.padding_idx})")


def literal(x: Any) -> str:
    """A drawn case as a Python literal (with ``import numpy as np``): a QCase, or a prepack row's table."""
    if isinstance(x, np.ndarray):
        return f"np.array({x.tolist()}, np.{x.dtype})"
    return repr(x)


def ref_bag(case: QCase, packed: NDArray) -> tuple[NDArray, NDArray]:
    """float64 output and magnitude of the bag op on ``packed`` (padding entries leave the bag, empty bags 0)."""
    rows, row_mag = ref_dequantize(packed, case.bits), ref_dequantize(packed, case.bits, magnitude=True)
    starts, ends = case.bag_bounds()
    out = np.zeros((len(starts), rows.shape[1]))
    mag = np.zeros_like(out)
    for b, (s, e) in enumerate(zip(starts, ends, strict=True)):
        pos = [i for i in range(s, e) if case.indices[i] != case.padding_idx]
        if not pos:
            continue
        r, m = rows[case.indices[pos]], row_mag[case.indices[pos]]
        if case.per_sample_weights is not None:
            w = case.per_sample_weights[pos, None].astype(np.float64)
            r, m = r * w, m * np.abs(w)
        if MODES[case.mode] == "max":
            out[b] = r.max(axis=0)
        else:
            out[b] = r.sum(axis=0) / (len(pos) if MODES[case.mode] == "mean" else 1)
        mag[b] = m.sum(axis=0)
    return out, mag


# ---------------------------------------------------------------------------------------------------------
# strategies


@st.composite
def tables(draw: st.DrawFn, bits: int) -> NDArray:
    """Finite float32 tables: random magnitudes, constant rows, and integer grids whose codes land exactly on
    rounding ties (range ``2 * (2**bits - 1)`` from 0: ``(x - min) / scale`` is a multiple of 0.5)."""
    per = 8 // bits
    n = draw(st.integers(1, 12))
    dim = per * draw(st.integers(1, 40 // per + 1))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    top = (1 << bits) - 1
    if draw(st.booleans()):
        w = rng.integers(0, 2 * top + 1, (n, dim)).astype(np.float32)
        w[:, 0], w[:, -1] = 0, 2 * top
    else:
        magnitude = draw(st.sampled_from([1e-3, 1.0, 100.0] if bits < 8 else [1e-6, 1.0, 1e4]))
        w = (rng.standard_normal((n, dim)) * magnitude).astype(np.float32)
    if draw(st.booleans()):
        w[draw(st.integers(0, n - 1))] = np.float32(draw(st.sampled_from([0.0, 1.5, -3.0])))
    return w


@st.composite
def bag_cases(draw: st.DrawFn, bits: int, psw: bool = False, ilo: bool = False, mode: int = 0,
              padding: bool = False, empty_bags: bool = False) -> QCase:
    w = draw(tables(bits))
    n_rows = w.shape[0]
    n = draw(st.integers(0, 30))
    idx = np.asarray(draw(st.lists(st.integers(0, n_rows - 1), min_size=n, max_size=n)), np.int64)
    cuts = sorted(draw(st.lists(st.integers(0, n), min_size=0, max_size=6)))
    offsets = np.asarray([0, *cuts], np.int64)
    if empty_bags:
        offsets = np.sort(np.concatenate([offsets, offsets[-1:], [0]])).astype(np.int64)
    pad = draw(st.integers(0, n_rows - 1)) if padding else None
    if pad is not None and n:  # make padding frequent, and some bag all padding
        idx[: max(1, n // 3)] = pad
    weights = None
    if psw:
        weights = np.asarray(draw(st.lists(st.floats(-2, 2, width=32), min_size=n, max_size=n)), np.float32)
    if ilo:
        offsets = np.append(offsets, n).astype(np.int64)
    return QCase(bits, w, idx, offsets, weights, ilo, mode, pad)


# ---------------------------------------------------------------------------------------------------------
# rows


@dataclass
class QRow:
    """One row: ``check(target, case)`` raises QViolation / NotOffered."""

    fn: str  # the op
    option: str
    aspect: str  # "values" (a bag op's output) | "bytes" (a prepack op's bytes)
    spec: tuple[str, ...]
    strategy: Callable[[], st.SearchStrategy[Any]]
    check: Callable[[Any, Any], None]
    extension: bool = False  # beyond torch's op signatures: "not offered" when refused
    torch_divergence: str | None = None  # torch's own ops fail this row (a spec rule ID): "xfail" for torch

    @property
    def id(self) -> str:
        return f"{self.fn}::{self.option}::{self.aspect}"


def _torch() -> Any:
    import torch  # the quantized op signatures take torch tensors

    return torch


def check_prepack(target: Any, bits: int, w: NDArray) -> None:
    torch = _torch()
    got = getattr(target, PREPACK_OPS[bits])(torch.from_numpy(w.copy()))
    got = np.asarray(got.numpy() if hasattr(got, "numpy") else got)
    want = ref_prepack(w, bits)
    if got.dtype != np.uint8 or got.shape != want.shape:
        raise QViolation(f"{PREPACK_OPS[bits]}: dtype {got.dtype} shape {got.shape}, expected uint8 {want.shape}")
    if not np.array_equal(got, want):
        r, c = (int(i) for i in np.argwhere(got != want)[0])
        raise QViolation(f"{PREPACK_OPS[bits]}: byte [{r}, {c}] is {got[r, c]}, expected {want[r, c]} "
                         f"({int((got != want).sum())} bytes differ)")


def check_bag(target: Any, case: QCase, extension: bool) -> None:
    torch = _torch()
    packed = ref_prepack(case.weight, case.bits)
    psw = None if case.per_sample_weights is None else torch.from_numpy(case.per_sample_weights)
    extra = {} if case.padding_idx is None else {"padding_idx": case.padding_idx}
    op = BAG_OPS[case.bits]
    try:
        out = getattr(target, op)(torch.from_numpy(packed), torch.from_numpy(case.indices),
                                  torch.from_numpy(case.offsets), False, case.mode, False, psw, None,
                                  case.include_last_offset, **extra)
    except (TypeError, ValueError, NotImplementedError, RuntimeError) as e:
        if extension:
            raise NotOffered(f"{type(e).__name__}: {e}") from e
        raise QViolation(f"{op} raised {type(e).__name__}: {e}") from e
    got = np.asarray(out.detach().numpy() if hasattr(out, "detach") else out)
    want, mag = ref_bag(case, packed)
    if got.dtype != np.float32 or got.shape != want.shape:
        raise QViolation(f"{op}: dtype {got.dtype} shape {got.shape}, expected float32 {want.shape}")
    terms = max(1, len(case.indices))
    # float32 products below float32's smallest normal lose their relative precision: an absolute floor
    tol = (4 + terms) * (EPS32 * (mag + np.abs(want)) + TINY32)
    bad = np.abs(got.astype(np.float64) - want) > tol
    if bad.any():
        b, d = (int(i) for i in np.argwhere(bad)[0])
        raise QViolation(f"{op} mode={case.mode}: value at ({b}, {d}) is {got[b, d]!r}, expected {want[b, d]!r} "
                         f"({int(bad.sum())} of {bad.size} entries off)")


def _bag_row(name: str, spec: tuple[str, ...], bits: int, extension: bool = False,
             torch_divergence: str | None = None, **kw: Any) -> QRow:
    return QRow(BAG_OPS[bits], name, "values", spec, lambda: bag_cases(bits, **kw),
                lambda target, case: check_bag(target, case, extension), extension, torch_divergence)


def _prepack_row(bits: int) -> QRow:
    def check(target: Any, w: NDArray) -> None:
        check_prepack(target, bits, w)

    return QRow(PREPACK_OPS[bits], "weight", "bytes", ("QUANT-PREPACK", "QUANT-LAYOUT"), lambda: tables(bits), check)


def build_rows() -> list[QRow]:
    rows: list[QRow] = []
    for bits in (8, 4, 2):
        rows.append(_prepack_row(bits))
        rows += [
            _bag_row("mode=0 (sum)", ("QUANT-FORWARD", "QUANT-LAYOUT"), bits),
            _bag_row("empty bags", ("QUANT-FORWARD", "BAG-EMPTY"), bits, empty_bags=True),
            _bag_row("per_sample_weights", ("QUANT-FORWARD", "BAG-PSW"), bits, psw=True),
            _bag_row("include_last_offset", ("QUANT-FORWARD", "BAG-LAST-OFFSET"), bits, ilo=True, psw=True),
            _bag_row("mode=1 (mean)", ("QUANT-FORWARD", "BAG-MEAN"), bits, extension=True, mode=1,
                     torch_divergence="QUANT-TORCH-MODE"),
            _bag_row("mode=2 (max)", ("QUANT-FORWARD", "BAG-MAX"), bits, extension=True, mode=2,
                     torch_divergence="QUANT-TORCH-MODE"),
            _bag_row("padding_idx × mode=1 (mean)", ("QUANT-FORWARD", "BAG-PAD", "BAG-MEAN-PAD"), bits,  # noqa: RUF001
                     extension=True, mode=1, padding=True, torch_divergence="QUANT-TORCH-MODE"),
            _bag_row("padding_idx × mode=0 (sum)", ("QUANT-FORWARD", "BAG-PAD"), bits, extension=True,  # noqa: RUF001
                     padding=True, psw=True),
        ]
    return rows


# ---------------------------------------------------------------------------------------------------------
# runner


@functools.cache
def rows_by_id() -> dict[str, QRow]:
    return {row.id: row for row in build_rows()}


def call_row(target: Any, row_id: str, case: Any) -> dict[str, str]:
    """One case of a row on the target, the verdict as data (what a crash-isolation worker sends back):
    {} conforms, {"violation": message} or {"not_offered": message}."""
    try:
        rows_by_id()[row_id].check(target, case)
    except NotOffered as e:
        return {"not_offered": str(e)}
    except QViolation as e:
        return {"violation": str(e)}
    return {}


@dataclass
class QOutcome:
    status: str  # "pass" | "fail" | "not offered" | "xfail"
    message: str = ""
    case: str = ""  # the (shrunk) failing case
    examples: int = 0  # examples run until the first failure, if any
    shrinks: int = 0  # examples run after it


def is_torch_ops(target: Any) -> bool:
    """torch's own quantized op namespace (``torch.ops.quantized``), whose ``mode`` divergence is known."""
    return type(target).__module__.startswith("torch") and "quantized" in repr(target)


def run_row(call: Callable[[str, Any], dict[str, str]], row: QRow, max_examples: int, seed: int,
            torch_ops: bool = False) -> QOutcome:
    """`max_examples` cases of `row` through ``call(row_id, case)`` (:func:`call_row`, maybe in a worker process,
    which answers {"crashed": why} when the target crashed it)."""
    counts = {"examples": 0, "shrinks": 0, "failed": 0}
    last: list[Any] = [None]

    @settings(max_examples=max_examples, database=None, deadline=None, report_multiple_bugs=False,
              suppress_health_check=list(HealthCheck))
    @hypothesis_seed(seed)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        last[0] = case = data.draw(row.strategy(), label="case")
        counts["shrinks" if counts["failed"] else "examples"] += 1
        res = call(row.id, case)
        if res:
            counts["failed"] = 1
        if "crashed" in res:
            raise QViolation(f"crash: {res['crashed']}")
        if "violation" in res:
            raise QViolation(res["violation"])
        if "not_offered" in res:
            raise NotOffered(res["not_offered"])

    out = QOutcome("pass")
    try:
        run()
    except NotOffered as e:
        out = QOutcome("not offered", str(e))
    except QViolation as e:
        out = QOutcome("xfail" if row.torch_divergence and torch_ops else "fail", str(e), literal(last[0]))
        if out.status == "xfail":
            out.message = f"{row.torch_divergence}: {e}"
    out.examples, out.shrinks = counts["examples"], counts["shrinks"]
    return out
