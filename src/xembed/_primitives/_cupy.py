"""Native CuPy paths of the primitives (contracts in ``_fallback``), backed by the fused RawKernels of
``_cupy_kernels`` (one warp per bag, vectorised row loads, sort-based scatter: bitwise deterministic)."""

from __future__ import annotations

from typing import Any

import cupy

from . import _cupy_kernels as _k


def bincount(idx: Any, num_rows: int, _xp: Any) -> Any:
    with idx.device:
        return cupy.bincount(idx, minlength=num_rows)


def scatter_add_rows(idx: Any, rows: Any, num_rows: int, _xp: Any) -> Any:
    with rows.device:
        return _k.scatter_add_rows(idx, rows, num_rows)


def gather_scatter_add(src: Any, src_idx: Any, dst_idx: Any, scale: Any | None, num_rows: int, acc_dtype: Any,
                       _xp: Any) -> Any:
    with src.device:
        return _k.gather_scatter_add(src, src_idx, dst_idx, scale, num_rows, acc_dtype)


def gather_segment_sum(weight: Any, idx: Any, offsets: Any, scale: Any | None, acc_dtype: Any, _xp: Any) -> Any:
    with weight.device:
        return _k.gather_segment_sum(weight, idx, offsets, scale, acc_dtype)


def gather_segment_max(weight: Any, idx: Any, offsets: Any, need_arg: bool, _xp: Any) -> tuple[Any, Any | None]:
    with weight.device:
        values, argpos = _k.gather_segment_max(weight, idx, offsets)
        if not need_arg:
            return values, None
        if idx.shape[0] == 0:
            return values, cupy.full(argpos.shape, -1, dtype=cupy.int64)
        won = argpos >= 0
        return values, cupy.where(won, idx.astype(cupy.int64, copy=False)[cupy.where(won, argpos, 0)], -1)


def put_rows_(weight: Any, uniq: Any, rows: Any, _xp: Any) -> Any:
    weight[uniq] = rows
    return weight
