"""Fused numba kernels of quantized tables for NumPy arrays (extra ``xembed[fast]``; spec QUANT-PRIM).

Each kernel reads the packed rows directly -- codes, scale and bias -- and accumulates into a private
buffer: no dequantized copy of the table or of the gathered rows exists.  Parallel over bags
(``numba.prange``) above the work threshold of :mod:`._numba`, serial below it; deterministic (a bag is
reduced by one thread in position order).  The approach is FBGEMM's:

* the scale and bias of a row are read once, and a row's bytes are prefetched ``PREFETCH_ROWS`` positions
  ahead (every cache line it spans);
* 4- and 2-bit codes are spread one per byte with integer arithmetic on 16- / 32-bit words (each packed
  byte becomes a word whose bytes are its codes), so the spreading and the float loop that follows both
  vectorise;
* sums accumulate in float32 as ``fma(scale * w, code, acc + bias * w)`` (``w`` the per-sample weight), the
  formula of torch's fused kernels; ``embedding`` rows and the ``max`` / ``min`` values are
  ``code * scale + bias``, exactly :meth:`xembed.QuantizedTable.dequantize`.

No kernel creates an array view per row: numba reference-counts every view with atomic operations, which
would cost more than the arithmetic of a row (and serialise the threads on one counter).
"""

from __future__ import annotations

import sys
from typing import Any

import numba
import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba.core import cgutils, types
from numba.extending import intrinsic

from .._typing import Array
from ._numba import _parallel_launch, _parallel_threads, _prefetch, _variant, element_pointer

__all__ = ["gather_rows", "gather_segment_extreme", "gather_segment_sum"]

# float16 bit pattern -> float32 value: a 256 KiB table instead of a conversion per row.
_HALF = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
_LINE = 64
# Rows prefetched ahead: FBGEMM's distance; quantized rows are short (1-3 cache lines), so more of them are in
# flight than in the float kernels.
PREFETCH_ROWS = 16
# bags (or positions) per parallel task: one set of buffers each
_CHUNK = 32
# Byte k of a little-endian word is bits 8k..8k+7; on a big-endian machine the order is reversed.
_LITTLE = sys.byteorder == "little"
_NIBBLE_SHIFTS = (0, 8) if _LITTLE else (8, 0)
_LO4, _HI4 = _NIBBLE_SHIFTS
_CRUMB_SHIFTS = (0, 8, 16, 24) if _LITTLE else (24, 16, 8, 0)
_C0, _C1, _C2, _C3 = _CRUMB_SHIFTS


@intrinsic
def _load_f32(_typingctx: Any, arr: Any, row: Any, col: Any) -> Any:  # pragma: no cover - compiled
    """The float32 stored (unaligned, native byte order) at bytes ``arr[row, col:col + 4]``."""
    sig = types.float32(arr, row, col)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        ptr = element_pointer(context, builder, signature, args)
        return builder.load(builder.bitcast(ptr, ir.FloatType().as_pointer()), align=1)

    return sig, codegen


@intrinsic
def _fma(_typingctx: Any, a: Any, b: Any, c: Any) -> Any:  # pragma: no cover - compiled
    """``a * b + c`` rounded once (``llvm.fma.f32``, float32 operands only): the same result on every CPU,
    vectorised where the CPU has FMA instructions."""
    if any(t != types.float32 for t in (a, b, c)):
        return None  # a typing error, never a silent conversion
    sig = types.float32(a, b, c)

    def codegen(_context: Any, builder: Any, _signature: Any, args: Any) -> Any:
        f32 = ir.FloatType()
        fn = cgutils.get_or_insert_function(  # type: ignore[no-untyped-call]
            builder.module, ir.FunctionType(f32, [f32, f32, f32]), "llvm.fma.f32")
        return builder.call(fn, args)

    return sig, codegen


@intrinsic
def _load_u16(_typingctx: Any, arr: Any, row: Any, col: Any) -> Any:  # pragma: no cover - compiled
    """The uint16 stored (unaligned, native byte order) at bytes ``arr[row, col:col + 2]``."""
    sig = types.uint16(arr, row, col)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        ptr = element_pointer(context, builder, signature, args)
        return builder.load(builder.bitcast(ptr, ir.IntType(16).as_pointer()), align=1)

    return sig, codegen


@numba.njit(inline="always")
def _chunks(num: int) -> int:  # pragma: no cover - compiled
    return (num + _CHUNK - 1) // _CHUNK


SUM, MAX, MIN = 0, 1, 2


def _reduce(packed: Any, idx: Any, offsets: Any, weights: Any, has_weights: bool, dim: int, bits: int, half: Any,
            op: int, out: Any) -> None:  # pragma: no cover - compiled
    """``out[b]`` = the ``op`` (SUM, MAX, MIN) of the rows at bag b's positions; a bag of one position is
    that row, an empty bag is zeros.

    Everything is written out in this one loop nest: a helper taking arrays would make numba count references
    to them (atomic operations) at every row or element.  MAX / MIN compare strictly: a leading NaN sticks, a
    later NaN never wins (the float kernels' rule).
    """
    start = (dim * bits + 7) // 8
    last = packed.shape[1] - 1
    n = idx.shape[0]
    num_bags = offsets.shape[0] - 1
    for c in numba.prange(_chunks(num_bags)):
        acc = np.empty(dim, dtype=np.float32)
        wide = np.empty((dim + 3) // 4, dtype=np.uint32)  # the row's codes, one per byte
        wide16, codes = wide.view(np.uint16), wide.view(np.uint8)
        for b in range(c * _CHUNK, min(num_bags, (c + 1) * _CHUNK)):
            lo = offsets[b]
            acc[:] = 0
            for i in range(lo, offsets[b + 1]):
                if i + PREFETCH_ROWS < n:  # every line of the row PREFETCH_ROWS ahead (rows straddle lines)
                    ahead = idx[i + PREFETCH_ROWS]
                    for col in range(0, last, _LINE):
                        _prefetch(packed, ahead, col)  # type: ignore[call-arg]
                    _prefetch(packed, ahead, last)  # type: ignore[call-arg]
                r = idx[i]
                if bits == 8:
                    s: Any = _load_f32(packed, r, start)  # type: ignore[call-arg]
                    bias: Any = _load_f32(packed, r, start + 4)
                    if op != SUM:
                        for d in range(dim):
                            codes[d] = packed[r, d]
                else:
                    s = half[_load_u16(packed, r, start)]  # type: ignore[call-arg]
                    bias = half[_load_u16(packed, r, start + 2)]
                if bits == 4:  # each byte -> a 16-bit word whose two bytes are its codes
                    for j in range(dim // 2):
                        byte = np.uint16(packed[r, j])
                        wide16[j] = (((byte & np.uint16(15)) << np.uint16(_LO4))
                                     | ((byte >> np.uint16(4)) << np.uint16(_HI4)))
                elif bits == 2:  # each byte -> a 32-bit word whose four bytes are its codes
                    for j in range(dim // 4):
                        byte = np.uint32(packed[r, j])
                        wide[j] = (((byte & np.uint32(3)) << np.uint32(_C0))
                                   | (((byte >> np.uint32(2)) & np.uint32(3)) << np.uint32(_C1))
                                   | (((byte >> np.uint32(4)) & np.uint32(3)) << np.uint32(_C2))
                                   | ((byte >> np.uint32(6)) << np.uint32(_C3)))
                if op == SUM:
                    if has_weights:  # w * scale and w * bias, as torch; exact without weights
                        s, bias = s * weights[i], bias * weights[i]
                    if bits == 8:
                        for d in range(dim):
                            acc[d] = _fma(s, np.float32(packed[r, d]), acc[d] + bias)
                    else:
                        for d in range(dim):
                            acc[d] = _fma(s, np.float32(codes[d]), acc[d] + bias)
                elif i == lo:
                    for d in range(dim):
                        acc[d] = np.float32(codes[d]) * s + bias
                elif op == MAX:
                    for d in range(dim):
                        x = np.float32(codes[d]) * s + bias
                        if x > acc[d]:  # noqa: PLR1730 - the strict comparison is the NaN rule
                            acc[d] = x
                else:
                    for d in range(dim):
                        x = np.float32(codes[d]) * s + bias
                        if x < acc[d]:  # noqa: PLR1730 - the strict comparison is the NaN rule
                            acc[d] = x
            out[b, :] = acc


# Distinct serial and parallel builds (``_numba._variant``: one function jitted twice would share a cache entry).
KERNELS = (_variant(_reduce, False), _variant(_reduce, True))


def _launch(work: int, *args: Any) -> None:
    serial, parallel = KERNELS
    if _parallel_threads(work):
        with _parallel_launch():
            parallel(*args)
    else:
        serial(*args)


def _c(a: Array) -> np.ndarray:
    return np.ascontiguousarray(a)


_NO_WEIGHTS = np.empty(0, dtype=np.float32)


def gather_rows(packed: Array, bits: int, dim: int, idx: Array) -> Array:
    n = idx.shape[0]
    out = np.empty((n, dim), dtype=np.float32)
    one_each = np.arange(n + 1, dtype=np.int64)  # a bag per position: its row
    _launch(n * dim, _c(packed), _c(idx), one_each, _NO_WEIGHTS, False, dim, bits, _HALF, MAX, out)
    return out


def gather_segment_sum(packed: Array, bits: int, dim: int, idx: Array, offsets: Array,
                       weights: Array | None) -> Array:
    out = np.empty((offsets.shape[0] - 1, dim), dtype=np.float32)
    has_weights = weights is not None
    w = _c(weights).astype(np.float32, copy=False) if has_weights else _NO_WEIGHTS
    _launch(idx.shape[0] * dim, _c(packed), _c(idx), _c(offsets), w, has_weights, dim, bits, _HALF, SUM, out)
    return out


def gather_segment_extreme(packed: Array, bits: int, dim: int, idx: Array, offsets: Array, is_max: bool) -> Array:
    out = np.empty((offsets.shape[0] - 1, dim), dtype=np.float32)
    _launch(idx.shape[0] * dim, _c(packed), _c(idx), _c(offsets), _NO_WEIGHTS, False, dim, bits, _HALF,
            MAX if is_max else MIN, out)
    return out
