"""Fused numba kernels of quantized tables for NumPy arrays (extra ``xembed[fast]``; spec QUANT-PRIM).

Each kernel reads the packed rows directly -- codes, scale and bias -- and accumulates into the output:
no dequantized copy of the table or of the gathered rows exists.  Parallel over bags (``numba.prange``),
rows prefetched ``PREFETCH`` positions ahead, serial below the same work threshold as :mod:`._numba`;
deterministic (a bag is reduced by one thread in position order).  Each row contributes
``w * scale * code + w * bias`` (``w`` the per-sample weight), as torch's fused kernels compute it.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba.core import types
from numba.extending import intrinsic

from ._numba import PREFETCH, _parallel_launch, _parallel_threads, _prefetch, _variant, element_pointer

__all__ = ["gather_rows", "gather_segment_extreme", "gather_segment_sum"]

Array = Any
# float16 bit pattern -> float32 value: a 256 KiB table (stays in L2) instead of a conversion per row.
_HALF = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
_LINE = 64
# bags per parallel task (one accumulator buffer each)
_CHUNK = 32


@intrinsic
def _load_f32(_typingctx: Any, arr: Any, row: Any, col: Any) -> Any:  # pragma: no cover - compiled
    """The float32 stored (unaligned, native byte order) at bytes ``arr[row, col:col + 4]``."""
    sig = types.float32(arr, row, col)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        ptr = element_pointer(context, builder, signature, args)
        return builder.load(builder.bitcast(ptr, ir.FloatType().as_pointer()), align=1)

    return sig, codegen


@numba.njit(inline="always")
def _scale_bias(packed: Any, r: Any, start: int, bits: int, half: Any) -> tuple[Any, Any]:  # pragma: no cover
    if bits == 8:
        return _load_f32(packed, r, start), _load_f32(packed, r, start + 4)  # type: ignore[call-arg]
    s = half[np.int64(packed[r, start]) | (np.int64(packed[r, start + 1]) << 8)]
    b = half[np.int64(packed[r, start + 2]) | (np.int64(packed[r, start + 3]) << 8)]
    return s, b


@numba.njit(inline="always")
def _add_row(acc: Any, codes: Any, row: Any, dim: int, bits: int, s: Any, bias: Any) -> None:  # pragma: no cover
    """``acc += s * codes(row) + bias``.  4- and 2-bit codes are unpacked into the float32 buffer ``codes``
    first, so that the multiply-add runs as one contiguous loop that vectorises."""
    if bits == 8:
        for d in range(dim):
            acc[d] += s * np.float32(row[d]) + bias
        return
    if bits == 4:
        for j in range(dim // 2):
            byte = row[j]
            codes[2 * j] = np.float32(byte & 15)
            codes[2 * j + 1] = np.float32(byte >> 4)
    else:
        for j in range(dim // 4):
            byte = row[j]
            codes[4 * j] = np.float32(byte & 3)
            codes[4 * j + 1] = np.float32((byte >> 2) & 3)
            codes[4 * j + 2] = np.float32((byte >> 4) & 3)
            codes[4 * j + 3] = np.float32(byte >> 6)
    for d in range(dim):
        acc[d] += s * codes[d] + bias


@numba.njit(inline="always")
def _value(row: Any, d: int, bits: int, s: Any, bias: Any) -> Any:  # pragma: no cover
    per = 8 // bits
    code = (np.int64(row[d // per]) >> ((d % per) * bits)) & ((1 << bits) - 1)
    return s * np.float32(code) + bias


@numba.njit(inline="always")
def _prefetch_row(packed: Any, idx: Any, i: int, n: int) -> None:  # pragma: no cover
    if i + PREFETCH < n:
        ahead = idx[i + PREFETCH]
        for c in range(0, packed.shape[1], _LINE):
            _prefetch(packed, ahead, c)  # type: ignore[call-arg]


@numba.njit(inline="always")
def _chunks(num: int) -> int:  # pragma: no cover - compiled
    return (num + _CHUNK - 1) // _CHUNK


@numba.njit(inline="always")
def _segment_sum(packed: Any, idx: Any, offsets: Any, weights: Any, has_weights: bool, dim: int, bits: int,
                 half: Any, out: Any) -> None:  # pragma: no cover - compiled
    # A chunk of bags per task, accumulated in a private 1-D buffer: no aliasing with the packed rows, so the
    # row loops vectorise.
    start = (dim * bits + 7) // 8
    n = idx.shape[0]
    num_bags = offsets.shape[0] - 1
    for c in numba.prange(_chunks(num_bags)):
        acc = np.empty(dim, dtype=np.float32)
        codes = np.empty(dim, dtype=np.float32)
        for b in range(c * _CHUNK, min(num_bags, (c + 1) * _CHUNK)):
            acc[:] = 0
            for i in range(offsets[b], offsets[b + 1]):
                _prefetch_row(packed, idx, i, n)
                r = idx[i]
                s, bias = _scale_bias(packed, r, start, bits, half)
                wi = weights[i] if has_weights else np.float32(1)  # exact when 1
                _add_row(acc, codes, packed[r], dim, bits, s * wi, bias * wi)
            out[b, :] = acc


# One compiled kernel per width: the width is a constant there, so every branch on it is resolved at compile time.
def _segment_sum8(packed: Any, idx: Any, offsets: Any, weights: Any, has_weights: bool, dim: int, half: Any,
                  out: Any) -> None:  # pragma: no cover - compiled
    _segment_sum(packed, idx, offsets, weights, has_weights, dim, 8, half, out)


def _segment_sum4(packed: Any, idx: Any, offsets: Any, weights: Any, has_weights: bool, dim: int, half: Any,
                  out: Any) -> None:  # pragma: no cover - compiled
    _segment_sum(packed, idx, offsets, weights, has_weights, dim, 4, half, out)


def _segment_sum2(packed: Any, idx: Any, offsets: Any, weights: Any, has_weights: bool, dim: int, half: Any,
                  out: Any) -> None:  # pragma: no cover - compiled
    _segment_sum(packed, idx, offsets, weights, has_weights, dim, 2, half, out)


def _segment_extreme(packed: Any, idx: Any, offsets: Any, dim: int, bits: int, half: Any, is_max: bool,
                     out: Any) -> None:  # pragma: no cover - compiled
    # strict comparisons: a leading NaN sticks, a later NaN never wins (the float kernels' rule)
    start = (dim * bits + 7) // 8
    n = idx.shape[0]
    for b in numba.prange(offsets.shape[0] - 1):
        lo, hi = offsets[b], offsets[b + 1]
        for i in range(lo, hi):
            _prefetch_row(packed, idx, i, n)
            r = idx[i]
            s, bias = _scale_bias(packed, r, start, bits, half)
            row = packed[r]
            for d in range(dim):
                x = _value(row, d, bits, s, bias)
                if i == lo or (x > out[b, d] if is_max else x < out[b, d]):
                    out[b, d] = x


def _rows(packed: Any, idx: Any, dim: int, bits: int, half: Any, out: Any) -> None:  # pragma: no cover - compiled
    start = (dim * bits + 7) // 8
    n = idx.shape[0]
    for c in numba.prange(_chunks(n)):
        acc = np.empty(dim, dtype=np.float32)
        codes = np.empty(dim, dtype=np.float32)
        for i in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            _prefetch_row(packed, idx, i, n)
            r = idx[i]
            s, bias = _scale_bias(packed, r, start, bits, half)
            acc[:] = 0
            _add_row(acc, codes, packed[r], dim, bits, s, bias)
            out[i, :] = acc


# Distinct serial and parallel builds (``_numba._variant``: one function jitted twice would share a cache entry).
_KERNELS = {name: (_variant(fn, False), _variant(fn, True))
            for name, fn in (("sum8", _segment_sum8), ("sum4", _segment_sum4), ("sum2", _segment_sum2),
                             ("extreme", _segment_extreme), ("rows", _rows))}


def _launch(name: str, work: int, *args: Any) -> None:
    serial, parallel = _KERNELS[name]
    if _parallel_threads(work):
        with _parallel_launch():
            parallel(*args)
    else:
        serial(*args)


def _c(a: Array) -> np.ndarray:
    return np.ascontiguousarray(a)


def gather_rows(packed: Array, bits: int, dim: int, idx: Array) -> Array:
    out = np.zeros((idx.shape[0], dim), dtype=np.float32)
    _launch("rows", idx.shape[0] * dim, _c(packed), _c(idx), dim, bits, _HALF, out)
    return out


def gather_segment_sum(packed: Array, bits: int, dim: int, idx: Array, offsets: Array,
                       weights: Array | None) -> Array:
    out = np.zeros((offsets.shape[0] - 1, dim), dtype=np.float32)
    has_weights = weights is not None
    w = _c(weights).astype(np.float32, copy=False) if has_weights else np.empty(0, dtype=np.float32)
    _launch(f"sum{bits}", idx.shape[0] * dim, _c(packed), _c(idx), _c(offsets), w, has_weights, dim, _HALF, out)
    return out


def gather_segment_extreme(packed: Array, bits: int, dim: int, idx: Array, offsets: Array, is_max: bool) -> Array:
    out = np.zeros((offsets.shape[0] - 1, dim), dtype=np.float32)
    _launch("extreme", idx.shape[0] * dim, _c(packed), _c(idx), _c(offsets), dim, bits, _HALF, is_max, out)
    return out
