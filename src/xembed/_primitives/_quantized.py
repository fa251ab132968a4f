"""Unpack-and-reduce primitives of quantized tables (spec QUANT-PRIM), one dispatch point.

Every backend: gather the packed rows, unpack them with the standard-only codecs of
:mod:`._quantized_fallback` and reduce them with the backend's own segment primitives (on the gathered
positions, so the float table never exists).  NumPy arrays and torch CPU tensors (through NumPy views) in the
modes ``auto`` (numba importable) and ``numba`` go to the fused kernels of :mod:`._quantized_numba`, which read
the packed rows directly.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import device as _device
from array_api_compat import is_numpy_namespace, is_torch_namespace

from .._typing import Array
from . import _quantized_fallback as codec
from . import gather_segment_max as _segment_max
from . import gather_segment_min as _segment_min
from . import gather_segment_sum as _segment_sum
from . import index_dtype, mode, numba_available, take_rows


def _fused(xp: Any, packed: Array) -> Any:
    """The fused numba kernels module when they serve this call (NumPy arrays, or torch CPU tensors through
    NumPy views; modes auto/numba), else None."""
    m = mode()
    if m in ("native", "fallback") or (m == "auto" and not numba_available()):
        return None
    if not (is_numpy_namespace(xp) or (is_torch_namespace(xp) and packed.device.type == "cpu")):
        return None
    if not numba_available():
        msg = 'the primitive mode "numba" needs numba: pip install "xembed[fast]"'
        raise ImportError(msg)
    from . import _quantized_numba

    return _quantized_numba


def _on_numpy(xp: Any, kernel: Any, *args: Any) -> Array:
    """``kernel(*args)``; on torch tensors through zero-copy NumPy views, the result a tensor sharing it."""
    if is_numpy_namespace(xp):
        return kernel(*args)
    import torch

    views = (a.detach().numpy() if isinstance(a, torch.Tensor) else a for a in args)
    return torch.from_numpy(kernel(*views))


def gather_rows(packed: Array, bits: int, dim: int, idx: Array, xp: Any) -> Array:
    """``dequantize(packed)[idx]`` (n, dim) float32 without dequantizing the table."""
    fused = _fused(xp, packed)
    if fused is not None:
        return _on_numpy(xp, fused.gather_rows, packed, bits, dim, idx)
    return codec.dequantize_rows(take_rows(packed, idx, xp=xp), bits, dim, xp)


def _positions(idx: Array, xp: Any) -> Array:
    return xp.arange(idx.shape[0], dtype=index_dtype(xp, _device(idx)), device=_device(idx))


def gather_segment_sum(packed: Array, bits: int, dim: int, idx: Array, offsets: Array, scale: Array | None,
                       xp: Any) -> Array:
    """``out[b] = sum scale[i] * dequantize(packed)[idx[i]]`` over bag b's positions, (B, dim) float32."""
    fused = _fused(xp, packed)
    if fused is not None:
        return _on_numpy(xp, fused.gather_segment_sum, packed, bits, dim, idx, offsets, scale)
    rows = gather_rows(packed, bits, dim, idx, xp)
    return _segment_sum(rows, _positions(idx, xp), offsets, scale, xp.float32, xp=xp)


def _segment_extreme(packed: Array, bits: int, dim: int, idx: Array, offsets: Array, is_max: bool,
                     xp: Any) -> Array:
    fused = _fused(xp, packed)
    if fused is not None:
        return _on_numpy(xp, fused.gather_segment_extreme, packed, bits, dim, idx, offsets, is_max)
    rows = gather_rows(packed, bits, dim, idx, xp)
    reduce = _segment_max if is_max else _segment_min
    return reduce(rows, _positions(idx, xp), offsets, False, xp=xp)[0]


def gather_segment_max(packed: Array, bits: int, dim: int, idx: Array, offsets: Array, xp: Any) -> Array:
    """Per-bag, per-feature max of the dequantized rows (empty bags 0), (B, dim) float32."""
    return _segment_extreme(packed, bits, dim, idx, offsets, True, xp)


def gather_segment_min(packed: Array, bits: int, dim: int, idx: Array, offsets: Array, xp: Any) -> Array:
    """Per-bag, per-feature min of the dequantized rows (empty bags 0), (B, dim) float32."""
    return _segment_extreme(packed, bits, dim, idx, offsets, False, xp)
