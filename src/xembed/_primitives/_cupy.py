"""Native CuPy paths of the primitives (contracts in ``_fallback``)."""

from __future__ import annotations

import cupy
import cupyx


def bincount(idx, num_rows, xp):
    with idx.device:
        return cupy.bincount(idx, minlength=num_rows)


def scatter_add_rows(idx, rows, num_rows, xp):
    with rows.device:
        out = cupy.zeros((num_rows, rows.shape[1]), dtype=rows.dtype)
        cupyx.scatter_add(out, idx, rows)
    return out


def gather_segment_sum(weight, idx, offsets, scale, acc_dtype, xp):
    with weight.device:
        return _gather_segment_sum(weight, idx, offsets, scale, acc_dtype, xp)


def _gather_segment_sum(weight, idx, offsets, scale, acc_dtype, xp):
    from ._fallback import segment_ids

    out = cupy.zeros((offsets.shape[0] - 1, weight.shape[1]), dtype=acc_dtype)
    if idx.shape[0] == 0:
        return out
    rows = cupy.take(weight, idx, axis=0).astype(acc_dtype, copy=False)
    if scale is not None:
        rows *= scale.astype(acc_dtype, copy=False)[:, None]
    cupyx.scatter_add(out, segment_ids(offsets, idx.shape[0], xp), rows)
    return out


def put_rows_(weight, uniq, rows, xp):
    weight[uniq] = rows
    return weight
