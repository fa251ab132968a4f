"""One-kernel forwards for the common NumPy calls (extra ``xembed[fast]``; spec ``PRIM-FAST-FORWARD``).

``embedding_bag`` / ``embedding`` on plain ``numpy.ndarray`` arguments with options whose checks need no
array values beyond what the kernel reads anyway run here: the options are checked in a few attribute
comparisons, then one serial kernel checks the offsets and every index while it reduces (padding entries
skipped inside the loop, no compaction).  Anything else -- another array type, a subclass, a
non-native byte order, ``max_norm``, the extensions, a call big enough for the parallel kernels -- returns
``None`` and the caller takes the general path.  So does a call whose values the kernel rejects: the general
path then raises the error of the ``ERR-*`` rule; the output the kernel wrote is a fresh array, dropped.

Results are bit-identical to the general numba path: the same loops in the same order and dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _numba
from ._numba import PREFETCH, _prefetch

__all__ = ["embedding", "embedding_bag"]

_OK, _BAD_OFFSETS, _BAD_INDEX = 0, 1, 2
_MODES = {"sum": 0, "mean": 1, "max": 2}
_WEIGHT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_INDEX_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))
_NO_PSW = {dt: np.empty(0, dt) for dt in _WEIGHT_DTYPES}
_MAX_NDIM = 64  # EMB-NDIM (``_validate.MAX_NDIM``): larger inputs go to the general path, which raises


def _check_offsets(offsets: Any, n: int, include_last: bool) -> bool:  # pragma: no cover - compiled
    """ERR-OFFSETS-FIRST / -DECREASING / -END and BAG-LAST-OFFSET, as :func:`check_offsets_values`."""
    m = offsets.shape[0]
    if m == 0:
        return True
    if offsets[0] != 0:
        return False
    for p in range(1, m):
        if offsets[p] < offsets[p - 1]:
            return False
    last = offsets[m - 1]
    return last <= n and (last == n or not include_last)


def _bag_forward(weight: Any, idx: Any, offsets: Any, num_bags: int, length: int, include_last: bool,
                 psw: Any, mode: int, pad: int, out: Any, line: int) -> int:  # pragma: no cover - compiled
    """Bag ``b`` is ``idx[offsets[b]:offsets[b+1]]`` (its end ``n`` past the last offset), or
    ``idx[b*length:(b+1)*length]`` when ``offsets`` is empty and ``length`` >= 0 (a 2-D input).  Entries equal
    to ``pad`` are skipped.  ``out`` is zeros; returns ``_OK`` or which check failed."""
    n = idx.shape[0]
    rows = weight.shape[0]
    dim = weight.shape[1]
    if length < 0 and not _check_offsets_kernel(offsets, n, include_last):
        return _BAD_OFFSETS
    m = offsets.shape[0]
    one = out.dtype.type(1)
    for b in range(num_bags):
        if length >= 0:
            start, stop = np.int64(b * length), np.int64((b + 1) * length)
        else:
            start = np.int64(offsets[b])
            stop = np.int64(offsets[b + 1]) if b + 1 < m else np.int64(n)
        count = 0
        for i in range(start, stop):
            if i + PREFETCH < stop:
                ahead = np.int64(idx[i + PREFETCH])
                if 0 <= ahead < rows:
                    for c in range(0, dim, line):
                        _prefetch(weight, ahead, c)  # type: ignore[call-arg]
            r = idx[i]
            if r < 0 or r >= rows:
                return _BAD_INDEX
            if r == pad:
                continue
            if mode == 2:
                if count == 0:
                    for d in range(dim):
                        out[b, d] = weight[r, d]
                else:
                    for d in range(dim):
                        v = weight[r, d]
                        if v > out[b, d]:  # noqa: PLR1730 - strict: ties keep the first, a leading NaN sticks
                            out[b, d] = v
            else:  # x * 1 is x exactly: one loop for both, bit for bit the general path's
                s = psw[i] if psw.shape[0] != 0 else one
                for d in range(dim):
                    out[b, d] += s * weight[r, d]
            count += 1
        if mode == 1 and count > 1:
            divisor = out.dtype.type(count)  # in the weight's dtype, as the general path divides
            for d in range(dim):
                out[b, d] = out[b, d] / divisor
    return _OK


def _lookup(weight: Any, idx: Any, out: Any) -> int:  # pragma: no cover - compiled
    rows = weight.shape[0]
    for i in range(idx.shape[0]):
        r = idx[i]
        if r < 0 or r >= rows:
            return _BAD_INDEX
        for d in range(weight.shape[1]):  # an explicit loop: a slice copy costs a view per row
            out[i, d] = weight[r, d]
    return _OK


_check_offsets_kernel = _numba._jit(_check_offsets, False)
bag_forward_kernel = _numba._jit(_bag_forward, False)
lookup_kernel = _numba._jit(_lookup, False)
KERNELS = (_check_offsets_kernel, bag_forward_kernel, lookup_kernel)


def _small(work: int) -> bool:
    return work < _numba._PARALLEL_MIN_WORK


def _flag(x: Any) -> bool:
    return x is True or x is False


def embedding_bag(input: Any, weight: Any, offsets: Any, max_norm: Any, norm_type: Any, scale_grad_by_freq: Any,
                  mode: Any, sparse: Any, per_sample_weights: Any, include_last_offset: Any,
                  padding_idx: Any) -> np.ndarray | None:
    """The forward of ``xembed.embedding_bag`` in one kernel, or None (the general path decides)."""
    nd = np.ndarray
    if (type(input) is not nd or type(weight) is not nd or max_norm is not None or type(mode) is not str
            or mode not in _MODES or weight.ndim != 2 or weight.dtype not in _WEIGHT_DTYPES
            or input.dtype not in _INDEX_DTYPES or not (_flag(sparse) and _flag(scale_grad_by_freq)
                                                        and _flag(include_last_offset))
            or (sparse and scale_grad_by_freq) or (mode == "max" and (sparse or scale_grad_by_freq))
            or type(norm_type) not in (int, float) or not norm_type > 0):
        return None
    rows = weight.shape[0]
    pad = _padding(padding_idx, rows)
    if pad is None:
        return None
    psw = _NO_PSW[weight.dtype]
    if per_sample_weights is not None:
        if (type(per_sample_weights) is not nd or mode != "sum" or per_sample_weights.dtype != weight.dtype
                or per_sample_weights.shape != input.shape):
            return None
        psw = per_sample_weights.reshape(-1)
    if input.ndim == 2 and offsets is None:
        num_bags, length = input.shape
        offs = _NO_OFFSETS
    elif (input.ndim == 1 and type(offsets) is nd and offsets.ndim == 1 and offsets.dtype in _INDEX_DTYPES
          and offsets.shape[0] != 0):  # no offsets: no bag, yet every index is checked
        num_bags, length, offs = offsets.shape[0] - (1 if include_last_offset else 0), -1, offsets
    else:
        return None
    dim = weight.shape[1]
    if not _small(input.size * dim):
        return None
    out = np.zeros((num_bags, dim), weight.dtype)
    status = bag_forward_kernel(weight, input.reshape(-1), offs, num_bags, length, include_last_offset, psw,
                                _MODES[mode], pad, out, _numba._line(weight))
    return out if status == _OK else None


_NO_OFFSETS = np.empty(0, np.int64)


def _padding(padding_idx: Any, rows: int) -> int | None:
    """The padding row in [0, rows), -1 for none, None when the general path must check it."""
    if padding_idx is None:
        return -1
    if type(padding_idx) is not int or not -rows <= padding_idx < rows:
        return None
    return padding_idx + rows if padding_idx < 0 else padding_idx


def embedding(input: Any, weight: Any, padding_idx: Any, max_norm: Any, norm_type: Any, scale_grad_by_freq: Any,
              sparse: Any) -> np.ndarray | None:
    """The forward of ``xembed.embedding`` in one kernel (range check and row copy), or None."""
    nd = np.ndarray
    if (type(input) is not nd or type(weight) is not nd or max_norm is not None or weight.ndim != 2
            or input.ndim >= _MAX_NDIM or weight.dtype not in _WEIGHT_DTYPES or input.dtype not in _INDEX_DTYPES
            or not (_flag(sparse) and _flag(scale_grad_by_freq)) or (sparse and scale_grad_by_freq)
            or type(norm_type) not in (int, float) or not norm_type > 0
            or _padding(padding_idx, weight.shape[0]) is None):
        return None
    dim = weight.shape[1]
    if dim == 0 or not _small(input.size * dim):
        return None
    out = np.empty((*input.shape, dim), weight.dtype)
    status = lookup_kernel(weight, input.reshape(-1), out.reshape(-1, dim))
    return out if status == _OK else None
