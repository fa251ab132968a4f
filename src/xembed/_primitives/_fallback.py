"""Standard-only implementations of the primitives the array API standard lacks.

Every function here uses nothing but the array API standard (2024.12: ``take``, ``searchsorted``,
``cumulative_sum``, ``argsort``, ``where``, boolean indexing), with the namespace ``xp`` passed
explicitly, so it runs on any compliant namespace and is what array-api-strict exercises.  The native
paths (``_numpy``, ``_numba``, ``_torch``, ``_cupy``) must agree with these exactly (up to summation order).

Segment sums use a Hillis-Steele segmented inclusive scan: ``ceil(log2 n)`` steps of whole-array
``where`` + add.  It is exact in the sense of tree summation (no prefix subtraction, so no catastrophic
cancellation between bags) and needs no scatter, at the price of ``O(n·D·log n)`` work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from array_api_compat import device as _device

from .._dtypes import index_dtype
from .._typing import Array


def index_bounds(x: Array, xp: Any) -> tuple[int, int]:
    """``(min, max)`` of a non-empty integer array as Python ints (the one value pass of the range check)."""
    return int(xp.min(x)), int(xp.max(x))


def offsets_first_decrease(offsets: Array, xp: Any) -> int:
    """The first position ``p >= 1`` with ``offsets[p] < offsets[p - 1]``, or -1 when non-decreasing."""
    if offsets.shape[0] < 2:
        return -1
    dec = offsets[1:] < offsets[:-1]
    if not bool(xp.any(dec)):
        return -1
    return int(xp.argmax(xp.astype(dec, xp.int8))) + 1


def segment_ids(offsets: Array, n: int, xp: Any) -> Array:
    """Bag id of every position ``0 <= i < n`` for CSR-style ``offsets`` of shape (B+1,)."""
    dev = _device(offsets)
    pos = xp.arange(n, dtype=offsets.dtype, device=dev)
    return xp.searchsorted(offsets[1:], pos, side="right")


def take_rows(weight: Array, idx: Array, xp: Any) -> Array:
    """``weight[idx]``: the (n, D) rows of a 1-D index array (every index in ``[0, N)``)."""
    return xp.take(weight, idx, axis=0)


def partition(keep: Array, arrays: tuple[Array, ...], xp: Any) -> tuple[Array, ...]:
    """Each array (length n along axis 0, like the (n,) boolean ``keep``) with its entries where ``keep`` first,
    then the others, both groups in their original order (a stable partition; static shapes)."""
    order = xp.argsort(xp.astype(~keep, xp.int8), stable=True)
    return tuple(xp.take(a, order, axis=0) for a in arrays)


def bincount(idx: Array, num_rows: int, xp: Any) -> Array:
    """``counts[r] = #{i : idx[i] == r}`` for ``0 <= r < num_rows``."""
    dev = _device(idx)
    sidx = xp.sort(idx)
    rows = xp.arange(num_rows, dtype=idx.dtype, device=dev)
    return xp.searchsorted(sidx, rows, side="right") - xp.searchsorted(sidx, rows, side="left")


def _scan_sum(values: Array, seg: Array, xp: Any) -> Array:
    """Inclusive segmented prefix sums of ``values`` (n, D) along axis 0; ``seg`` (n,) non-decreasing.

    Invariant after the step with shift ``k``: ``v[i]`` holds the sum over
    ``[max(start(i), i - 2k + 1), i]`` — a shifted partner in the same segment only ever summed
    within that segment, so segments never leak into each other (NaN / inf stay in their bag).
    """
    n = values.shape[0]
    zero = xp.zeros((), dtype=values.dtype, device=_device(values))
    k = 1
    while k < n:
        same = (seg[k:] == seg[:-k])[:, None]
        values = xp.concat([values[:k, ...], values[k:, ...] + xp.where(same, values[:-k, ...], zero)], axis=0)
        k *= 2
    return values


def _last_of_segments(scan: Array, offsets: Array, xp: Any) -> tuple[Array, Array]:
    """Rows of ``scan`` at the last position of each segment, and the (B,) non-empty mask."""
    nonempty = offsets[1:] > offsets[:-1]
    last = xp.clip(offsets[1:] - 1, min=0)
    if scan.shape[0] == 0:
        return scan[:0, ...], nonempty
    return xp.take(scan, last, axis=0), nonempty


def gather_segment_sum(weight: Array, idx: Array, offsets: Array, scale: Array | None,
                       acc_dtype: Any, xp: Any) -> Array:
    """``out[b] = sum_{offsets[b] <= i < offsets[b+1]} scale[i] * weight[idx[i]]`` in ``acc_dtype``."""
    dev = _device(weight)
    num_bags = offsets.shape[0] - 1
    d = weight.shape[1]
    n = idx.shape[0]
    if n == 0:
        return xp.zeros((num_bags, d), dtype=acc_dtype, device=dev)
    rows = xp.astype(xp.take(weight, idx, axis=0), acc_dtype)
    if scale is not None:
        rows = rows * xp.astype(scale, acc_dtype)[:, None]
    seg = segment_ids(offsets, n, xp)
    last, nonempty = _last_of_segments(_scan_sum(rows, seg, xp), offsets, xp)
    return xp.where(nonempty[:, None], last, xp.zeros((), dtype=acc_dtype, device=dev))


def gather_segment_max(weight: Array, idx: Array, offsets: Array, need_arg: bool, xp: Any) -> tuple[Array, Array]:
    """Per-bag, per-feature max with torch's scan semantics, and the weight row of the winner.

    The first element of a bag initialises, a later one replaces it iff strictly greater: ties go
    to the first occurrence, a NaN that comes first sticks, a later NaN is never chosen.  Returns
    ``(values (B, D) weight dtype, argrow (B, D) index dtype)``: ``argrow[b, d]`` is the row of
    ``weight`` whose feature d won (``idx`` of the winning position); empty bags give 0 and -1.
    ``argrow`` is None when ``need_arg`` is false (forward only; a native path may skip the work).
    """
    dev = _device(weight)
    num_bags = offsets.shape[0] - 1
    d = weight.shape[1]
    n = idx.shape[0]
    itype = index_dtype(xp, dev)
    if n == 0:
        return (xp.zeros((num_bags, d), dtype=weight.dtype, device=dev),
                xp.full((num_bags, d), -1, dtype=itype, device=dev) if need_arg else None)
    rows = xp.take(weight, idx, axis=0)
    seg = segment_ids(offsets, n, xp)
    pos = xp.arange(n, dtype=itype, device=dev)
    starts = xp.astype(xp.take(offsets, seg), itype)
    first = (pos == starts)[:, None]
    inf = xp.asarray(float("inf"), dtype=weight.dtype, device=dev)
    nan_row = xp.isnan(rows)
    # A NaN can only win as the first element of its bag (+inf key, wins every tie as the
    # earliest); elsewhere it never wins (-inf key, loses every tie to an earlier element).
    key = xp.where(nan_row, xp.where(first, inf, -inf), rows)
    arg = xp.broadcast_to(pos[:, None], (n, d))
    k = 1
    while k < n:
        take_earlier = (seg[k:] == seg[:-k])[:, None] & (key[:-k, ...] >= key[k:, ...])
        key = xp.concat([key[:k, ...], xp.where(take_earlier, key[:-k, ...], key[k:, ...])], axis=0)
        arg = xp.concat([arg[:k, ...], xp.where(take_earlier, arg[:-k, ...], arg[k:, ...])], axis=0)
        k *= 2
    key, nonempty = _last_of_segments(key, offsets, xp)
    arg, _ = _last_of_segments(arg, offsets, xp)
    first_pos = xp.astype(offsets[:-1], itype)[:, None]
    first_nan = (arg == first_pos) & xp.isnan(xp.take(rows, xp.clip(first_pos[:, 0], max=n - 1), axis=0))
    nan = xp.asarray(float("nan"), dtype=weight.dtype, device=dev)
    values = xp.where(first_nan, nan, key)
    ne = nonempty[:, None]
    values = xp.where(ne, values, xp.zeros((), dtype=weight.dtype, device=dev))
    if not need_arg:
        return values, None
    argrow = xp.reshape(xp.take(xp.astype(idx, itype), xp.reshape(arg, (-1,))), arg.shape)
    return values, xp.where(ne, argrow, xp.asarray(-1, dtype=itype, device=dev))


def scatter_add_rows(idx: Array, rows: Array, num_rows: int, xp: Any) -> Array:
    """``out[idx[i]] += rows[i]`` with duplicates accumulated; out (num_rows, D) of rows' dtype."""
    dev = _device(rows)
    d = rows.shape[1]
    zero = xp.zeros((), dtype=rows.dtype, device=dev)
    if idx.shape[0] == 0:
        return xp.zeros((num_rows, d), dtype=rows.dtype, device=dev)
    order = xp.argsort(idx, stable=True)
    sidx = xp.take(idx, order)
    scan = _scan_sum(xp.take(rows, order, axis=0), sidx, xp)
    true = xp.ones((1,), dtype=xp.bool, device=dev)
    is_last = xp.concat([sidx[1:] != sidx[:-1], true])
    uniq = sidx[is_last]
    sums = scan[is_last]
    return _dense_from_unique(uniq, sums, num_rows, zero, xp)


def gather_scatter_add(src: Array, src_idx: Array, dst_idx: Array, scale: Array | None, num_rows: int,
                       acc_dtype: Any, xp: Any) -> Array:
    """``out[dst_idx[i]] += scale[i] * src[src_idx[i]]``, (num_rows, D) in ``acc_dtype``.

    The dense backward of a bag reduction (src = grad_output, src_idx = bag of each position, dst_idx =
    its weight row); a native path can do it without the n x D intermediate this one builds.
    """
    rows = xp.astype(xp.take(src, src_idx, axis=0), acc_dtype)
    if scale is not None:
        rows = rows * xp.astype(scale, acc_dtype)[:, None]
    return scatter_add_rows(dst_idx, rows, num_rows, xp)


def _dense_from_unique(uniq: Array, rows: Array, num_rows: int, fill: Array, xp: Any) -> Array:
    """(num_rows, D) array with ``rows[j]`` at row ``uniq[j]`` (sorted, unique), ``fill`` elsewhere.

    ``fill`` is a 0-d array or a (num_rows, D) array (then its rows show through).
    """
    dev = _device(rows)
    r = xp.arange(num_rows, dtype=uniq.dtype, device=dev)
    p = xp.searchsorted(uniq, r)
    pc = xp.clip(p, max=uniq.shape[0] - 1)
    present = (p < uniq.shape[0]) & (xp.take(uniq, pc) == r)
    return xp.where(present[:, None], xp.take(rows, pc, axis=0), fill)


def put_rows_(weight: Array, uniq: Array, rows: Array, xp: Any) -> Array:
    """``weight[uniq] = rows`` in place (``uniq`` sorted and unique) without integer ``__setitem__``.

    The standard leaves integer-array assignment unspecified, so this rewrites the whole table
    through ``where`` (rows not in ``uniq`` are copied unchanged, bit for bit).  Returns ``weight``.
    """
    if uniq.shape[0] != 0:
        weight[...] = _dense_from_unique(uniq, rows, weight.shape[0], weight, xp)
    return weight


def gather_segment_min(weight: Array, idx: Array, offsets: Array, need_arg: bool,
                       xp: Any) -> tuple[Array, Array]:
    """Per-bag, per-feature min: :func:`gather_segment_max`'s contract mirrored (EXT-MIN).

    A later element replaces the running minimum iff strictly smaller: ties go to the first occurrence, a
    NaN that comes first sticks, a later NaN is never chosen.  Empty bags give +0 and -1.
    """
    return segment_min_via_max(gather_segment_max, weight, idx, offsets, need_arg, xp)


def segment_min_via_max(segment_max: Callable[..., tuple[Array, Array]], weight: Array, idx: Array,
                        offsets: Array, need_arg: bool, xp: Any) -> tuple[Array, Array]:
    """:func:`gather_segment_min` through a ``gather_segment_max`` implementation: the max of the negated
    *gathered* rows (one (n, D) temporary; the weight table itself is never negated or copied).

    Negation is exact and maps a strict ``<`` scan onto a strict ``>`` scan position for position, so the
    winners (ties, NaN rule) are the same; the winner's position is mapped back to its weight row.
    """
    dev = _device(weight)
    n = idx.shape[0]
    itype = offsets.dtype  # the index dtype (the core passes offsets in it)
    pos = xp.arange(n, dtype=itype, device=dev)
    values, argpos = segment_max(-xp.take(weight, idx, axis=0), pos, offsets, need_arg, xp)
    nonempty = (offsets[1:] > offsets[:-1])[:, None]
    values = xp.where(nonempty, -values, xp.zeros((), dtype=weight.dtype, device=dev))  # empty: +0, not -0
    if not need_arg or n == 0:
        return values, argpos
    won = argpos >= 0
    rows = xp.take(xp.astype(idx, itype), xp.reshape(xp.where(won, argpos, 0), (-1,)))
    return values, xp.where(won, xp.reshape(rows, tuple(argpos.shape)), xp.asarray(-1, dtype=itype, device=dev))
