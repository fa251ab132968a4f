"""The semantics of ``embedding`` and ``embedding_bag``, written once against the array API standard.

Everything here takes arrays that already passed :mod:`._validate` and the namespace ``xp`` explicitly,
uses only the standard plus the primitives of :mod:`._primitives`, and decides nothing from values except
through data-dependent shapes (boolean masks, ``unique_values``) on arrays whose values can be read; where they
cannot (traced arrays), it takes a static-shape formulation instead (JIT-STATIC).  Arrays arrive without
autodiff: differentiation is wired on top, by the backend adapters (:mod:`._backends`).

The in-place max_norm renorm lives in exactly one function, :func:`renorm_`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace, is_array_api_obj
from array_api_compat import device as _device

from . import _primitives as prim
from ._dtypes import acc_dtype, index_dtype
from ._sparse import SparseGrad
from ._typing import Array, Device, DType, Namespace, Pullback
from ._validate import BagArgs


def _cast(x: Array, dtype: DType) -> Array:
    """``astype`` without a copy when the dtype already matches (the core never relies on copies)."""
    return x if x.dtype == dtype else array_namespace(x).astype(x, dtype)


def _float64_or_32(xp: Namespace, dev: Device) -> DType:
    return xp.float64 if "float64" in xp.__array_namespace_info__().dtypes(device=dev) else xp.float32


def _pnorm_rows(rows: Array, p: float, xp: Namespace) -> Array:
    """RENORM-NORM: the p-norm of every row, accumulated in at least float32, rounded to the rows' dtype."""
    a = xp.abs(_cast(rows, acc_dtype(rows.dtype, xp)))
    if rows.shape[1] == 0:
        norm = xp.zeros((rows.shape[0],), dtype=a.dtype, device=_device(rows))
    elif math.isinf(p):
        norm = xp.max(a, axis=1)
    elif p == 1:
        norm = xp.sum(a, axis=1)
    elif p == 2:
        norm = xp.sqrt(xp.sum(a * a, axis=1))
    else:
        norm = xp.sum(a ** p, axis=1) ** (1.0 / p)
    return _cast(norm, rows.dtype)


def renorm_(weight: Array, indices: Array, max_norm: float, norm_type: float, xp: Namespace) -> Array:
    """In place: every row referenced by ``indices`` whose p-norm is > ``max_norm`` (strictly) is
    multiplied by ``max_norm / (norm + 1e-7)``, as the reference's in-place renorm does (RENORM-INPLACE,
    RENORM-STRICT, RENORM-SCALE, RENORM-NORM, RENORM-LOWP).

    The norm is computed in the weight's dtype (accumulated in >= float32), the scale in float64, then
    cast to the accumulation dtype and multiplied there (a scalar multiply), rounded once.
    Eager arrays only (it writes in place): it reads whether any row bites, to skip the write when none does.
    Returns the weight (the same array; immutable backends will return a new one here).
    """
    dev = _device(weight)
    flat = xp.reshape(indices, (-1,))
    if flat.shape[0] == 0:
        return weight
    uniq = xp.sort(_cast(xp.unique_values(flat), index_dtype(xp, dev)))
    new_rows, bite = _renormed_rows(xp.take(weight, uniq, axis=0), max_norm, norm_type, xp)
    if not bool(xp.any(bite)):
        return weight
    return prim.put_rows_(weight, uniq[bite], new_rows[bite], xp=xp)


def _renormed_rows(rows: Array, max_norm: float, norm_type: float, xp: Any) -> tuple[Array, Array]:
    """``rows`` renormed as RENORM-STRICT / RENORM-SCALE / RENORM-LOWP say (rows that do not bite are
    returned bit for bit), and the (n,) mask of rows that bite."""
    f64 = _float64_or_32(xp, _device(rows))
    norm = _cast(_pnorm_rows(rows, norm_type, xp), f64)
    bite = norm > max_norm
    acc = acc_dtype(rows.dtype, xp)
    scale = _cast(max_norm / (norm + 1e-7), acc)
    scaled = _cast(_cast(rows, acc) * scale[:, None], rows.dtype)
    return xp.where(bite[:, None], scaled, rows), bite


def renorm(weight: Array, indices: Array, max_norm: float, norm_type: float, xp: Any) -> Array:
    """Functional max_norm renorm (RENORM-FUNCTIONAL): a new table equal to what :func:`renorm_` would
    leave in ``weight``; ``weight`` itself is never modified.

    Static shapes only (no ``unique``, no boolean mask, no value read), so it runs on traced arrays:
    every referenced position's row is renormed (duplicates give identical rows), then each table row
    takes the renormed row of its first occurrence in the sorted indices, or keeps its own.  Indices
    outside ``[0, N)`` (possible only when values cannot be checked) match no row and change nothing.
    """
    n_rows = weight.shape[0]
    flat = _cast(xp.reshape(indices, (-1,)), index_dtype(xp, _device(weight)))
    if flat.shape[0] == 0 or n_rows == 0:
        return xp.asarray(weight, copy=True)
    order = xp.argsort(flat)
    sflat = xp.take(flat, order)
    rows = xp.take(weight, xp.clip(sflat, 0, n_rows - 1), axis=0)
    new_rows, _ = _renormed_rows(rows, max_norm, norm_type, xp)
    r = xp.arange(n_rows, dtype=flat.dtype, device=_device(weight))
    p = xp.clip(xp.searchsorted(sflat, r), max=flat.shape[0] - 1)
    present = xp.take(sflat, p) == r
    return xp.where(present[:, None], xp.take(new_rows, p, axis=0), weight)


def _check_grad(grad: Array, shape: tuple[int, ...], xp: Namespace) -> Array:
    """GRAD-OUTPUT-ARGS: an array of the output's library, shape and a real floating dtype."""
    if not is_array_api_obj(grad):
        msg = f"`grad_output` must be an array of the output's library, got {type(grad).__name__}"
        raise TypeError(msg)
    if array_namespace(grad) is not xp:
        msg = (f"`grad_output` must be an array of the output's library ({getattr(xp, '__name__', xp)}), got "
               f"{type(grad).__module__}.{type(grad).__name__}")
        raise TypeError(msg)
    if tuple(grad.shape) != tuple(shape):
        msg = f"`grad_output` must have the output's shape {tuple(shape)}, got {tuple(grad.shape)}"
        raise ValueError(msg)
    if not xp.isdtype(grad.dtype, "real floating"):
        msg = f"`grad_output` must have a real floating dtype, got {grad.dtype}"
        raise TypeError(msg)
    return grad


def _weight_grad(idx: Array, rows: Array, coef: Array | None, weight: Array, sparse: bool,
                 xp: Namespace) -> Array | SparseGrad:
    """Weight gradient from per-position rows: ``gW[idx[i]] += coef[i] * rows[i]`` (or its COO form).

    ``idx`` holds only non-padding positions; ``rows`` is in the accumulation dtype.
    """
    if coef is not None:
        rows = rows * coef[:, None]
    n_rows = weight.shape[0]
    if sparse:
        idx64 = _cast(idx, index_dtype(xp, _device(weight)))
        return SparseGrad._from_core(idx64, _cast(rows, weight.dtype), tuple(weight.shape))
    return _cast(prim.scatter_add_rows(idx, rows, n_rows, xp=xp), weight.dtype)


def _inverse_frequency(all_idx: Array, idx: Array, n_rows: int, acc: DType, xp: Namespace) -> Array:
    """GRAD-SGBF: ``1 / count(idx[i])`` with counts taken over ``all_idx`` (the whole input)."""
    counts = prim.bincount(all_idx, n_rows, xp=xp)
    return 1.0 / _cast(xp.take(counts, idx), acc)


def embedding_vjp(input: Array, weight: Array, padding_idx: int | None, scale_grad_by_freq: bool,
                  sparse: bool, xp: Namespace) -> tuple[Array, Pullback]:
    """Lookup ``weight[input]`` (EMB-LOOKUP) and its pullback (GRAD-EMB, GRAD-PAD, GRAD-SGBF,
    GRAD-SPARSE); the weight is already renormed if max_norm was given."""
    dev = _device(weight)
    n_rows, dim = weight.shape
    out_shape = (*tuple(input.shape), dim)
    flat = _cast(xp.reshape(input, (-1,)), index_dtype(xp, dev))
    out = xp.reshape(prim.take_rows(weight, flat, xp=xp), out_shape)

    def pullback(grad_output: Array) -> Array | SparseGrad:
        g = xp.reshape(_check_grad(grad_output, out_shape, xp), (flat.shape[0], dim))
        acc = acc_dtype(weight.dtype, xp)
        idx, rows = flat, g
        if padding_idx is not None:
            keep = flat != padding_idx
            if prim.boolean_masks(flat, xp=xp):
                idx, rows = flat[keep], g[keep]
            else:  # traced (JIT-STATIC): no boolean mask; padding positions add exact zeros
                _no_traced_sparse_padding(sparse)
                rows = xp.where(keep[:, None], g, xp.zeros((), dtype=g.dtype, device=dev))
        coef = _inverse_frequency(flat, idx, n_rows, acc, xp) if scale_grad_by_freq else None
        return _weight_grad(idx, _cast(rows, acc), coef, weight, sparse, xp)

    return out, pullback


def _bag_layout(input: Array, offsets: Array | None, include_last_offset: bool, xp: Namespace,
                dev: Device) -> tuple[Array, Array]:
    """Flat indices (n,) and full CSR offsets (B+1,) with offsets[0] = 0 and offsets[B] = n."""
    itype = index_dtype(xp, dev)
    if input.ndim == 2:
        num_bags, length = input.shape
        idx = xp.reshape(input, (-1,))
        offs = xp.arange(num_bags + 1, dtype=itype, device=dev) * length
    else:
        idx = input
        offs = _cast(offsets, itype)
        if offs.shape[0] == 0:
            # No bags at all (empty offsets, no include_last_offset): no index belongs to a bag.
            idx, offs = idx[:0], xp.zeros((1,), dtype=itype, device=dev)
        elif not include_last_offset:
            n = xp.asarray([idx.shape[0]], dtype=itype, device=dev)
            offs = xp.concat([offs, n])
    return _cast(idx, itype), offs


def _bag_totals(values: Array, offs: Array, acc: DType, xp: Namespace) -> Array:
    """Per-bag sums (B,) of the per-position ``values`` (n,), in ``acc`` (a segment sum of a 1-column table)."""
    n = values.shape[0]
    ident = xp.arange(n, dtype=offs.dtype, device=_device(values))
    return prim.gather_segment_sum(_cast(values, acc)[:, None], ident, offs, None, acc, xp=xp)[:, 0]


def _bag_divisor(mode: str, bag_size: Array | None, psw: Array | None, offs: Array, acc: DType,
                 xp: Namespace) -> Array | None:
    """The per-bag divisor (B,) in ``acc`` of the sum, or None for ``sum`` (a 0 means "output zeros").

    BAG-MEAN: max(count, 1); EXT-WMEAN: sum(w); EXT-SQRTN: sqrt(count) or sqrt(sum(w**2)).
    """
    if mode == "mean":
        if psw is None:
            return _cast(xp.maximum(bag_size, 1), acc)
        return _bag_totals(psw, offs, acc, xp)
    if mode == "sqrtn":
        if psw is None:
            return xp.sqrt(_cast(bag_size, acc))
        w = _cast(psw, acc)
        return xp.sqrt(_bag_totals(w * w, offs, acc, xp))
    return None


def compact_padding(idx: Array, offs: Array, psw: Array | None, padding_idx: int | None,
                    xp: Namespace) -> tuple[Array, Array, Array | None, Array | None, bool]:
    """Padding entries leave the bag entirely (reduction, mean divisor, max scan, BAG-PAD): the compacted
    ``(idx, offsets, psw)``, the (n,) mask of kept positions (None without padding_idx), and whether the
    padding positions were parked in one extra, last bag instead (arrays whose values cannot be read: traced,
    JIT-STATIC, or lazy, where a boolean mask would leave the sizes unknown)."""
    if padding_idx is None:
        return idx, offs, psw, None, False
    valid = idx != padding_idx
    if not prim.has_values(idx, xp=xp):  # the forward works; a sparse pullback cannot
        return *_park_padding(idx, offs, psw, valid, xp), valid, True
    n, num_bags = idx.shape[0], offs.shape[0] - 1
    kept = prim.bincount(prim.segment_ids(offs, n, xp=xp)[valid], num_bags, xp=xp)
    zero = xp.zeros((1,), dtype=offs.dtype, device=_device(idx))
    offs_c = xp.concat([zero, xp.cumulative_sum(_cast(kept, offs.dtype))])
    return idx[valid], offs_c, None if psw is None else psw[valid], valid, False


def divide_bags(total: Array, mode: str, bag_size: Array | None, psw: Array | None, offs: Array,
                xp: Namespace) -> tuple[Array, Array | None]:
    """The bag sums ``total`` (B, D) divided by the mode's divisor (:func:`_bag_divisor`; a zero divisor
    gives zeros), and the per-bag ``1 / divisor`` (0 where it is 0; None for ``sum``)."""
    acc, dev = total.dtype, _device(total)
    div = _bag_divisor(mode, bag_size, psw, offs, acc, xp)
    if div is None:
        return total, None
    if mode == "mean" and psw is None:
        return total / div[:, None], 1.0 / div
    zero_div = div == 0
    zero = xp.zeros((), dtype=acc, device=dev)
    safe = xp.where(zero_div, xp.ones((), dtype=acc, device=dev), div)
    return xp.where(zero_div[:, None], zero, total / safe[:, None]), xp.where(zero_div, zero, 1.0 / safe)


def embedding_bag_vjp(input: Array, weight: Array, offsets: Array | None, per_sample_weights: Array | None,
                      a: BagArgs, xp: Namespace, need_pullback: bool = True) -> tuple[Array, Pullback | None]:
    """Bag reduction (BAG-SUM, BAG-MEAN, BAG-MAX, BAG-PAD, BAG-EMPTY, BAG-PSW) and its pullback (GRAD-BAG,
    GRAD-MAX, GRAD-PSW) (weight already renormed if max_norm was given).

    ``need_pullback=False`` (a forward-only call) lets the max/min primitives skip the argmax; the pullback
    returned is then None.  Modes beyond the reference: ``sqrtn`` (EXT-SQRTN), ``min`` (EXT-MIN), and
    per_sample_weights with ``mean`` (EXT-WMEAN).  A divisor of 0 (EXT-WMEAN-ZERO, EXT-SQRTN-ZERO) gives
    zeros and zero gradients for that bag.
    """
    out, saved = _bag_forward(input, weight, offsets, per_sample_weights, a, xp, need_pullback)
    if not need_pullback:
        return out, None

    def pullback(grad_output: Array) -> tuple[Array | SparseGrad, Array | None]:
        return _bag_pullback(saved, grad_output, weight, per_sample_weights, a, xp)

    return out, pullback


@dataclass(frozen=True)
class _BagForward:
    """What the bag pullback reads from the forward."""

    idx: Array  # flat indices (n,), in the index dtype
    offs: Array  # full offsets (B+1,)
    psw: Array | None  # flat per_sample_weights (n,)
    idx_c: Array  # the same three after padding compaction (:func:`compact_padding`)
    offs_c: Array
    psw_c: Array | None
    valid: Array | None  # (n,) mask of the non-padding positions; None without padding_idx
    parked: bool  # padding parked as one extra, last bag (traced arrays)
    argrow: Array | None  # max / min: the winning row of every bag and feature (-1 for empty bags)
    inv: Array | None  # per-bag 1 / divisor, 0 where the divisor is 0 (mean, sqrtn)
    total: Array | None  # sum modes: the bag results in the accumulation dtype
    psw_rows: Array | None  # the rows the per_sample_weights gradient reads, as the forward saw them


def _bag_forward(input: Array, weight: Array, offsets: Array | None, per_sample_weights: Array | None,
                 a: BagArgs, xp: Namespace, need_pullback: bool) -> tuple[Array, _BagForward]:
    idx, offs = _bag_layout(input, offsets, a.include_last_offset, xp, _device(weight))
    n, num_bags = idx.shape[0], offs.shape[0] - 1
    psw = None if per_sample_weights is None else xp.reshape(per_sample_weights, (-1,))[:n]
    idx_c, offs_c, psw_c, valid, parked = compact_padding(idx, offs, psw, a.padding_idx, xp)
    argrow = inv = total = None
    if a.mode == "max":
        out, argrow = prim.gather_segment_max(weight, idx_c, offs_c, need_pullback, xp=xp)
    elif a.mode == "min":
        out, argrow = prim.gather_segment_min(weight, idx_c, offs_c, need_pullback, xp=xp)
    else:
        acc = acc_dtype(weight.dtype, xp)
        bag_size = offs_c[1:] - offs_c[:-1] if a.mode in ("mean", "sqrtn") else None
        total = prim.gather_segment_sum(weight, idx_c, offs_c, psw_c, acc, xp=xp)
        total, inv = divide_bags(total, a.mode, bag_size, psw_c, offs_c, xp)
        out = _cast(total, weight.dtype)
    if parked:
        out = out[:num_bags, ...]
    # PULLBACK-SNAPSHOT: the per_sample_weights gradient reads the rows as the forward saw them (the caller
    # may update the table before pulling back).
    psw_rows = prim.take_rows(weight, idx, xp=xp) if need_pullback and psw is not None else None
    return out, _BagForward(idx, offs, psw, idx_c, offs_c, psw_c, valid, parked, argrow, inv, total, psw_rows)


def _bag_pullback(f: _BagForward, grad_output: Array, weight: Array, per_sample_weights: Array | None,
                  a: BagArgs, xp: Namespace) -> tuple[Array | SparseGrad, Array | None]:
    """``(grad_weight, grad_per_sample_weights)`` of the forward that saved ``f``."""
    if f.parked and not prim.boolean_masks(f.idx, xp=xp):
        _no_traced_sparse_padding(a.sparse)
    dim, acc = weight.shape[1], acc_dtype(weight.dtype, xp)
    g = _cast(_check_grad(grad_output, (f.offs.shape[0] - 1, dim), xp), acc)
    if f.parked:  # the parked padding bag gets a zero gradient row
        g = xp.concat([g, xp.zeros((1, dim), dtype=acc, device=_device(weight))], axis=0)
    if a.mode in ("max", "min"):
        grad_w = _max_weight_grad(g, f.argrow, weight, xp)
    else:
        grad_w = _sum_weight_grad(f, g, weight, a, xp)
    grad_psw = None
    if per_sample_weights is not None:
        grad_psw = _psw_grad(g, f.psw_rows, f.idx, f.offs, f.psw, f.valid, f.inv, f.total, a.mode,
                             per_sample_weights, xp)
    return grad_w, grad_psw


def _sum_weight_grad(f: _BagForward, g: Array, weight: Array, a: BagArgs, xp: Namespace) -> Array | SparseGrad:
    """GRAD-BAG, GRAD-SGBF, GRAD-SPARSE for the sum modes: every kept position's bag gradient, scaled by its
    per_sample_weight, its bag's ``1 / divisor`` and its inverse frequency, added to its row."""
    n_rows, acc = weight.shape[0], g.dtype
    seg_c = prim.segment_ids(f.offs_c, f.idx_c.shape[0], xp=xp)
    coef = None if f.psw_c is None else _cast(f.psw_c, acc)
    if f.inv is not None:
        inv_pos = xp.take(f.inv, seg_c)
        coef = inv_pos if coef is None else coef * inv_pos
    if a.scale_grad_by_freq:
        freq = _inverse_frequency(f.idx, f.idx_c, n_rows, acc, xp)
        coef = freq if coef is None else coef * freq
    if not a.sparse:
        return _cast(prim.gather_scatter_add(g, seg_c, f.idx_c, coef, n_rows, acc, xp=xp), weight.dtype)
    idx_s, seg_s = f.idx_c, seg_c
    if f.parked:  # the parked padding positions are no entries (GRAD-SPARSE)
        entry = seg_c < f.offs.shape[0] - 1
        idx_s, seg_s, coef = f.idx_c[entry], seg_c[entry], None if coef is None else coef[entry]
    return _weight_grad(idx_s, xp.take(g, seg_s, axis=0), coef, weight, True, xp)


def _psw_grad(g: Array, rows: Array, idx: Array, offs: Array, psw: Array, valid: Array | None,
              inv: Array | None, out_acc: Array | None, mode: str, per_sample_weights: Array, xp: Namespace) -> Array:
    """Gradient of per_sample_weights, 0 at padding positions (GRAD-PSW, EXT-WMEAN-GRAD, EXT-SQRTN-GRAD).

    With ``d_i = dot(g[b], W[idx_i])``, ``o_b = dot(g[b], out[b])`` and ``inv_b = 1 / divisor_b`` (0 where
    the divisor is 0): sum ``d_i``; weighted mean ``(d_i - o_b) * inv_b``; sqrtn
    ``(d_i - w_i * inv_b * o_b) * inv_b``.  ``rows`` (n, D): the weight's rows at ``idx``.
    """
    dev = _device(rows)
    acc = g.dtype
    n = idx.shape[0]
    seg = prim.segment_ids(offs, n, xp=xp)
    w_rows = _cast(rows, acc)
    dots = xp.sum(xp.take(g, seg, axis=0) * w_rows, axis=1)
    if mode != "sum" and inv is not None and out_acc is not None:
        inv_pos = xp.take(inv, seg)
        # a bag with divisor 0 gets no gradient, even from non-finite rows (EXT-WMEAN-ZERO, EXT-SQRTN-ZERO)
        dots = xp.where(inv_pos == 0, xp.zeros((), dtype=acc, device=dev), dots)
        o_pos = xp.take(xp.sum(g * out_acc, axis=1), seg)
        if mode == "sqrtn":
            o_pos = o_pos * _cast(psw, acc) * inv_pos
        dots = (dots - o_pos) * inv_pos
    if valid is not None:
        dots = xp.where(valid, dots, xp.zeros((), dtype=acc, device=dev))
    if n < math.prod(per_sample_weights.shape):  # zero bags: no position gets a gradient
        dots = xp.zeros(per_sample_weights.shape, dtype=acc, device=dev)
    return xp.reshape(_cast(dots, per_sample_weights.dtype), tuple(per_sample_weights.shape))


def _max_weight_grad(g: Array, argrow: Array, weight: Array, xp: Namespace) -> Array:
    """``gW[argrow[b, d], d] += g[b, d]`` for every non-empty bag (a 1-D scatter-add over N*D)."""
    dev = _device(weight)
    n_rows, dim = weight.shape
    won = argrow >= 0
    cols = xp.arange(dim, dtype=argrow.dtype, device=dev)
    target = argrow * dim + cols[None, :]
    if prim.has_values(argrow, xp=xp):
        target, values = target[won], g[won][:, None]
    else:  # traced (JIT-STATIC): empty bags scatter an exact zero to entry 0
        zero = xp.zeros((), dtype=argrow.dtype, device=dev)
        target = xp.reshape(xp.where(won, target, zero), (-1,))
        values = xp.reshape(xp.where(won, g, xp.zeros((), dtype=g.dtype, device=dev)), (-1, 1))
    dense = prim.scatter_add_rows(target, values, n_rows * dim, xp=xp)
    return _cast(xp.reshape(dense, (n_rows, dim)), weight.dtype)


def _no_traced_sparse_padding(sparse: bool) -> None:
    if sparse:
        msg = (
            "`sparse`=True with `padding_idx` needs the input's values (the number of sparse entries is "
            "the number of non-padding positions), which traced arrays do not have; use "
            "`sparse`=False under jit, or call outside jit (spec JIT-SPARSE-PAD)"
        )
        raise NotImplementedError(msg)


def _park_padding(idx: Array, offs: Array, psw: Array | None, valid: Array,
                  xp: Any) -> tuple[Array, Array, Array | None]:
    """Static-shape padding compaction (JIT-STATIC): non-padding positions first, in input order, as
    the B bags; the padding positions after them as one extra bag B (its psw zeroed), so every
    primitive's contract (``offsets[-1] == n``) holds.  The caller drops bag B's output."""
    dev = _device(idx)
    n, num_bags = idx.shape[0], offs.shape[0] - 1
    seg = prim.segment_ids(offs, n, xp=xp)
    nb = xp.asarray(num_bags, dtype=seg.dtype, device=dev)
    kept = prim.bincount(xp.where(valid, seg, nb), num_bags + 1, xp=xp)[:num_bags]
    zero = xp.zeros((1,), dtype=offs.dtype, device=dev)
    end = xp.asarray([n], dtype=offs.dtype, device=dev)
    offs_c = xp.concat([zero, xp.cumulative_sum(_cast(kept, offs.dtype)), end])
    if psw is None:
        (idx_c,) = prim.partition(valid, (idx,), xp=xp)
        return idx_c, offs_c, None
    idx_c, psw_c = prim.partition(valid, (idx, xp.where(valid, psw, xp.zeros((), dtype=psw.dtype, device=dev))), xp=xp)
    return idx_c, offs_c, psw_c
