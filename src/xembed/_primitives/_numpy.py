"""Native NumPy paths of the primitives (contracts in ``_fallback``)."""

from __future__ import annotations

import numpy as np


def bincount(idx, num_rows, xp):
    return np.bincount(idx, minlength=num_rows)


def scatter_add_rows(idx, rows, num_rows, xp):
    out = np.zeros((num_rows, rows.shape[1]), dtype=rows.dtype)
    if idx.shape[0] == 0:
        return out
    order = np.argsort(idx, kind="stable")
    sidx = idx[order]
    starts = np.flatnonzero(np.concatenate(([True], sidx[1:] != sidx[:-1])))
    out[sidx[starts]] = np.add.reduceat(rows[order], starts, axis=0)
    return out


def gather_segment_sum(weight, idx, offsets, scale, acc_dtype, xp):
    num_bags = offsets.shape[0] - 1
    out = np.zeros((num_bags, weight.shape[1]), dtype=acc_dtype)
    if idx.shape[0] == 0:
        return out
    rows = np.take(weight, idx, axis=0).astype(acc_dtype, copy=False)
    if scale is not None:
        rows *= scale.astype(acc_dtype, copy=False)[:, None]
    nonempty = offsets[1:] > offsets[:-1]
    out[nonempty] = np.add.reduceat(rows, offsets[:-1][nonempty], axis=0)
    return out


def put_rows_(weight, uniq, rows, xp):
    weight[uniq] = rows
    return weight
