"""Native NumPy paths of the primitives (contracts in ``_fallback``), backed by ``_numpy_fast``."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _numpy_fast as _fast


def index_bounds(x: np.ndarray, _xp: Any) -> tuple[int, int]:
    return int(x.min()), int(x.max())


def offsets_first_decrease(offsets: np.ndarray, _xp: Any) -> int:
    if offsets.shape[0] < 2:
        return -1
    dec = offsets[1:] < offsets[:-1]
    return int(dec.argmax()) + 1 if dec.any() else -1


def bincount(idx: np.ndarray, num_rows: int, _xp: Any) -> np.ndarray:
    return np.bincount(idx, minlength=num_rows)


def scatter_add_rows(idx: np.ndarray, rows: np.ndarray, num_rows: int, _xp: Any) -> np.ndarray:
    return _fast.scatter_add_rows(idx, rows, num_rows)


def gather_scatter_add(src: np.ndarray, src_idx: np.ndarray, dst_idx: np.ndarray, scale: np.ndarray | None,
                       num_rows: int, acc_dtype: Any, _xp: Any) -> np.ndarray:
    return _fast.gather_scatter_add(src, src_idx, dst_idx, scale, num_rows, acc_dtype)


def gather_segment_sum(weight: np.ndarray, idx: np.ndarray, offsets: np.ndarray, scale: np.ndarray | None,
                       acc_dtype: Any, _xp: Any) -> np.ndarray:
    return _fast.gather_segment_sum(weight, idx, offsets, scale, acc_dtype)


def gather_segment_max(weight: np.ndarray, idx: np.ndarray, offsets: np.ndarray, need_arg: bool,
                       _xp: Any) -> tuple[np.ndarray, np.ndarray | None]:
    values, argpos = _fast.gather_segment_max(weight, idx, offsets, need_argpos=need_arg)
    if not need_arg:
        return values, None
    assert argpos is not None  # need_argpos=True always returns the positions
    if idx.shape[0] == 0:
        return values, argpos  # all -1
    won = argpos >= 0
    return values, np.where(won, np.asarray(idx, dtype=np.int64)[np.where(won, argpos, 0)], -1)


def put_rows_(weight: np.ndarray, uniq: np.ndarray, rows: np.ndarray, _xp: Any) -> np.ndarray:
    weight[uniq] = rows
    return weight

