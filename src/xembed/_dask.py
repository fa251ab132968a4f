"""Dask path (spec DASK-*): ``embedding`` / ``embedding_bag`` / ``*_vjp`` on dask arrays, never gathering.

The generic core would pull the whole table (``take``) and the whole input (sort, ``unique``) into single
tasks, so dask arrays get a dedicated blockwise graph (spec section "Dask", rules ``DASK-*``):

* ``weight`` is chunked along rows (``J`` row chunks, one column chunk); ``input`` along its blocks
  (embedding: any blocks; embedding_bag: bags of a 2-D input, positions of a 1-D input — bags may straddle
  chunk boundaries, the bag of every position comes from ``offsets`` through ``dask.array.searchsorted``).
* Forward: one task per (input chunk ``c``, weight chunk ``j``) computes the partial result of the positions
  of ``c`` whose index falls in ``j`` (sum/mean: partial sums and counts; max: partial max with its global
  first-occurrence position, and the bag's first element for the NaN rule); partials are tree-reduced over
  ``j`` (fan-in :data:`SPLIT_EVERY`), then routed to the output's bag chunks.  A 1-D input's partials go to
  every bag chunk (``C x K`` small slice tasks) since which bags a chunk touches is known only from the
  offsets' values; a 2-D input's go only to their own chunk.
* Gradients: the dense weight gradient (chunked like the weight) is, per weight chunk ``j``, a chain of steps
  over the input chunks ``c``, each adding ``c``'s contributions to ``j``'s accumulator;
  ``scale_grad_by_freq`` frequencies are a global bincount, one task per (``c``, ``j``) tree-summed over
  ``c``; the sparse form is a :class:`DaskSparseGrad` whose arrays are chunked like the input.
* Value checks (index range, offsets rules) are tasks every block passes through, so ``.compute()`` raises
  the eager path's IndexError / ValueError and never returns a wrong result.

Inside tasks the blocks are NumPy arrays (``meta`` must be a NumPy array: CPU dask clusters).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from array_api_compat import is_dask_array

from . import _primitives as prim
from . import _validate as v
from ._sparse import SparseGrad

Array = Any
Key = tuple[Any, ...]
Part = tuple[int, int, dict[str, np.ndarray]]

SPLIT_EVERY = 4  # fan-in of every tree reduction
_NONE = np.iinfo(np.int64).max  # "no position" in the max partials
_DEFAULTS: dict[str, Any] = {"sums": 0, "counts": 0, "val": 0, "pos": _NONE, "row": -1, "fpos": _NONE,
                             "fnan": False, "frow": -1, "g": 0}

__all__ = ["DaskSparseGrad", "embedding", "embedding_bag", "involves_dask"]


def involves_dask(*arrays: Any) -> bool:
    """``DASK-DISPATCH``: True when any argument is a dask array (the test of ``_api``; imports no dask)."""
    return any(x is not None and is_dask_array(x) for x in arrays)


# ---------------------------------------------------------------------------------------------------------
# Graph building
# ---------------------------------------------------------------------------------------------------------

class _Graph:
    """A task dict under one token, with tree reductions and array construction."""

    def __init__(self, token: str, deps: Sequence[Any], base: dict[Key, Any] | None = None):
        self.token = token
        self.deps = list(deps)
        self.dsk: dict[Key, Any] = dict(base or {})

    def key(self, stage: str, *idx: Any) -> Key:
        return (f"xembed-{stage}-{self.token}", *idx)

    def add(self, key: Key, *task: Any) -> Key:
        self.dsk[key] = task
        return key

    def tree(self, stage: str, idx: tuple[Any, ...], keys: Sequence[Key], combine: Callable[..., Any],
             *args: Any) -> Key:
        """Tree-reduce ``keys`` with ``combine(list, *args)``, fan-in :data:`SPLIT_EVERY`."""
        level, keys = 0, list(keys)
        while len(keys) > 1:
            groups = [keys[i:i + SPLIT_EVERY] for i in range(0, len(keys), SPLIT_EVERY)]
            keys = [self.add(self.key(f"{stage}{level}", *idx, g), combine, grp, *args)
                    for g, grp in enumerate(groups)]
            level += 1
        return keys[0]

    def array(self, stage: str, chunks: tuple[tuple[float, ...], ...], dtype: Any,
              tasks: Mapping[Any, tuple[Any, ...]]) -> Array:
        """A dask array named after ``stage`` whose block ``i`` is ``tasks[i]``."""
        import dask.array as da
        from dask.highlevelgraph import HighLevelGraph

        name = f"xembed-{stage}-{self.token}"
        for i, task in tasks.items():
            self.dsk[(name, *i)] = task
        graph = HighLevelGraph.from_collections(name, dict(self.dsk), dependencies=self.deps)
        return da.Array(graph, name, chunks, meta=np.empty((0,) * len(chunks), dtype=dtype))  # type: ignore[no-untyped-call]


def _bounds(chunks: Sequence[float]) -> list[tuple[int, int]]:
    out, start = [], 0
    for c in chunks:
        out.append((start, start + int(c)))
        start += int(c)
    return out


def _token(*parts: Any) -> str:
    from dask.base import tokenize

    return tokenize(*parts)


# ---------------------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------------------

def _to_dask(name: str, x: Any) -> Array:
    import dask.array as da

    if x is None:
        return None
    v.check_is_array(name, x)
    if not is_dask_array(x):
        x = da.from_array(np.asarray(x), chunks=-1)  # type: ignore[no-untyped-call]
    if not isinstance(x._meta, np.ndarray):
        msg = (f"`{name}` is a dask array of {type(x._meta).__module__}.{type(x._meta).__name__} blocks; the dask "
               "path runs on NumPy blocks only")
        raise NotImplementedError(msg)
    if any(math.isnan(c) for cs in x.chunks for c in cs):
        msg = f"`{name}` has unknown chunk sizes {x.chunks}; call `.compute_chunk_sizes()` first"
        raise ValueError(msg)
    return x


def _dask_namespace(xp: Any) -> Any:
    import dask.array as da
    from array_api_compat import array_namespace, is_dask_namespace

    if xp is not None and not is_dask_namespace(xp):
        msg = f"`xp` is {getattr(xp, '__name__', xp)!r} but the arrays are dask arrays"
        raise TypeError(msg)
    return array_namespace(da.empty(0))


def _acc(dtype: Any) -> np.dtype[Any]:
    dt = np.dtype(dtype)
    return np.dtype(np.float32) if dt.itemsize < 4 else dt


def _renorm_block(w: np.ndarray, counts: np.ndarray, max_norm: float, norm_type: float) -> np.ndarray:
    """``DASK-RENORM``: one row chunk of the table, renormed where the input references it (RENORM-FUNCTIONAL)."""
    import xembed

    return np.asarray(xembed.renorm(w, np.flatnonzero(counts), max_norm, norm_type))


def _renormed(g: _Graph, weight: Array, checked_keys: Sequence[Key], max_norm: float, norm_type: float) -> Array:
    """``DASK-RENORM``: the renormed table, a new dask array chunked like ``weight`` (itself unchanged): each row
    chunk is renormed by its own task from the global counts of the (checked) input, so nothing is gathered."""
    row_bounds = _bounds(weight.chunks[0])
    counts = _frequencies(g, checked_keys, [None] * len(checked_keys), row_bounds)  # every input index
    return g.array("renormed", weight.chunks, weight.dtype,
                   {(j, 0): (_renorm_block, (weight.name, j, 0), counts[j], max_norm, norm_type)
                    for j in range(len(row_bounds))})


def renorm(weight: Any, input: Any, max_norm: float, norm_type: float, xp: Any) -> Array:
    """``xembed.renorm`` on dask arrays (``DASK-RENORM``): lazy, chunked like the weight's rows; index errors are
    raised at ``.compute()`` (``DASK-CHECKS``)."""
    xpd = _dask_namespace(xp)
    X, W = _to_dask("input", input), _to_dask("weight", weight)
    v.check_weight(W, xpd)
    v.check_index_dtype("input", X, xpd)
    W = _weight(W)
    g = _Graph(_token("renorm", X, W, max_norm, norm_type), [X, W])
    checked = _checked_input(g, X, int(W.shape[0]))
    return _renormed(g, W, list(checked.values()), max_norm, norm_type)


def _weight(weight: Array) -> Array:
    return weight.rechunk({1: -1}) if len(weight.chunks[1]) > 1 else weight


def _check_grad(grad: Any, shape: tuple[int, ...], chunks: tuple[tuple[int, ...], ...]) -> Array:
    from . import _core

    g = _to_dask("grad_output", grad)
    _core._check_grad(g, shape, _dask_namespace(None))
    return g.rechunk(chunks) if g.chunks != chunks else g


# ---------------------------------------------------------------------------------------------------------
# Value checks (run inside the graph)
# ---------------------------------------------------------------------------------------------------------

def _check_index_block(block: np.ndarray, start: tuple[int, ...], ndim: int, n_rows: int) -> np.ndarray:
    """``DASK-CHECKS``: the block itself, or the eager path's IndexError with the global position."""
    b = np.asarray(block)
    bad = (b < 0) | (b >= n_rows)
    if b.size and bool(bad.any()):
        loc = np.unravel_index(int(np.argmax(bad)), b.shape)
        glob = tuple(s + int(i) for s, i in zip(start, loc, strict=True))
        where: Any = glob[0] if ndim == 1 else glob
        msg = (f"index {int(b[loc])} at position {where} of `input` is out of range for a weight with "
               f"{n_rows} rows (valid: 0 <= index < {n_rows}; negative indices are not wrapped)")
        raise IndexError(msg)
    return b


def _check_offsets_block(block: np.ndarray, prev: np.ndarray | None, start: int, is_last: bool, n: int,
                         include_last_offset: bool) -> np.ndarray:
    """``DASK-CHECKS``: the offsets rules of the eager path, for one block (``prev``: the block before)."""
    b = np.asarray(block).astype(np.int64)
    if b.shape[0] == 0:
        return b
    if start == 0 and int(b[0]) != 0:
        msg = f"`offsets`[0] must be 0, got {int(b[0])}"
        raise ValueError(msg)
    full = b if prev is None or np.asarray(prev).shape[0] == 0 else np.concatenate([np.asarray(prev)[-1:], b])
    shift = start - (full.shape[0] - b.shape[0])
    dec = full[1:] < full[:-1]
    if bool(dec.any()):
        pos = int(np.argmax(dec)) + 1
        msg = (f"`offsets` must be non-decreasing, but offsets[{pos + shift}] = {int(full[pos])} < "
               f"offsets[{pos + shift - 1}] = {int(full[pos - 1])}")
        raise ValueError(msg)
    if is_last:
        last = int(b[-1])
        if last > n:
            msg = f"`offsets`[-1] = {last} is greater than the number of indices in `input` ({n})"
            raise ValueError(msg)
        if include_last_offset and last != n:
            msg = ("with `include_last_offset`=True, `offsets`[-1] must equal the number of indices in `input` "
                   f"({n}), got {last}")
            raise ValueError(msg)
    return b


def _checked_input(g: _Graph, x: Array, n_rows: int) -> dict[tuple[int, ...], Key]:
    """Keys of the checked blocks of ``x``, by block index."""
    starts = [[lo for lo, _ in _bounds(c)] for c in x.chunks]
    out = {}
    for bi in np.ndindex(*x.numblocks):
        start = tuple(starts[a][i] for a, i in enumerate(bi))
        out[bi] = g.add(g.key("check-input", *bi), _check_index_block, (x.name, *bi), start, x.ndim, n_rows)
    return out


# ---------------------------------------------------------------------------------------------------------
# Block kernels (NumPy)
# ---------------------------------------------------------------------------------------------------------

def _runs(sorted_keys: np.ndarray) -> np.ndarray:
    """Start of every run of equal values in a sorted 1-D array."""
    if sorted_keys.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])


def _np_namespace() -> Any:
    from array_api_compat import array_namespace

    return array_namespace(np.empty(0))


def _scatter_rows(local: np.ndarray, rows: np.ndarray, n_rows: int) -> np.ndarray:
    """``out[local[i]] += rows[i]`` (duplicates summed): xembed's NumPy scatter-add primitive."""
    return np.asarray(prim.scatter_add_rows(local, rows, n_rows, xp=_np_namespace()), dtype=rows.dtype)


def _emb_part(idx: np.ndarray, w: np.ndarray, lo: int) -> tuple[np.ndarray, np.ndarray]:
    """Lookup of the positions whose index falls in the weight chunk ``[lo, lo + len(w))``."""
    mask = (idx >= lo) & (idx < lo + w.shape[0])
    vals = np.zeros((*idx.shape, w.shape[1]), dtype=w.dtype)
    vals[mask] = w[idx[mask] - lo]
    return vals, mask


def _where_merge(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Merge partials over disjoint position sets (each position is filled by one weight chunk)."""
    vals, mask = parts[0]
    vals = vals.copy()
    for pv, pm in parts[1:]:
        vals[pm] = pv[pm]
        mask = mask | pm
    return vals, mask


def _first(pair: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return pair[0]


def _seg_range(seg: np.ndarray) -> tuple[int, int]:
    if seg.shape[0] == 0 or int(seg[0]) < 0:
        return 0, 0
    return int(seg[0]), int(seg[-1]) + 1


def _bag_seg_2d(block: np.ndarray, r0: int) -> np.ndarray:
    b = np.asarray(block)
    length = b.shape[1]
    return r0 + np.arange(b.size, dtype=np.int64) // max(length, 1)


def _bag_part(idx: np.ndarray, seg: np.ndarray, psw: np.ndarray | None, w: np.ndarray, lo: int, pos0: int,
              mode: str, padding_idx: int | None, acc: np.dtype[Any]) -> Part:
    """``DASK-PARTIALS``: the bag reduction of this chunk's positions whose index lies in ``w``'s rows."""
    idx, seg = np.asarray(idx).reshape(-1), np.asarray(seg).reshape(-1)
    blo, bhi = _seg_range(seg)
    nb, dim = bhi - blo, w.shape[1]
    keep = (seg >= 0) & (idx >= lo) & (idx < lo + w.shape[0])
    if padding_idx is not None:
        keep &= idx != padding_idx
    li = np.flatnonzero(keep)
    s = seg[li]
    starts = _runs(s)
    bag = s[starts] - blo
    counts = np.zeros(nb, dtype=np.int64)
    counts[bag] = np.diff(np.r_[starts, s.shape[0]])
    if mode != "max":  # the native segment-sum primitive of xembed's NumPy path, on this chunk pair
        xp = _np_namespace()
        csr = np.searchsorted(s, np.arange(blo, bhi + 1), side="left")
        scale = None if psw is None else np.asarray(psw).reshape(-1)[li]
        # one index dtype for the native primitive (an int32 input against int64 bag bounds fails in numba)
        sums = prim.gather_segment_sum(w, idx[li].astype(np.int64) - lo, csr, scale, acc, xp=xp)
        return blo, bhi, {"sums": np.asarray(sums, dtype=acc), "counts": counts}
    rows = w[idx[li] - lo]
    f: dict[str, np.ndarray] = {
        "val": np.zeros((nb, dim), dtype=w.dtype), "pos": np.full((nb, dim), _NONE, dtype=np.int64),
        "row": np.full((nb, dim), -1, dtype=np.int64), "fpos": np.full(nb, _NONE, dtype=np.int64),
        "fnan": np.zeros((nb, dim), dtype=bool), "frow": np.full(nb, -1, dtype=np.int64), "counts": counts}
    if starts.shape[0] == 0:
        return blo, bhi, f
    nan = np.isnan(rows)
    finite_rows = np.where(nan, -np.inf, rows)
    m = np.maximum.reduceat(finite_rows, starts, axis=0)
    has = np.logical_or.reduceat(~nan, starts, axis=0)
    run_of = np.repeat(np.arange(starts.shape[0]), np.diff(np.r_[starts, s.shape[0]]))
    eq = (rows == m[run_of]) & ~nan
    local = np.where(eq, np.arange(s.shape[0])[:, None], s.shape[0])
    first = np.minimum.reduceat(local, starts, axis=0)
    firstc = np.minimum(first, s.shape[0] - 1)
    pos = pos0 + li[firstc]
    f["val"][bag] = np.where(has, np.take_along_axis(rows, firstc, axis=0), 0)
    f["pos"][bag] = np.where(has, pos, _NONE)
    f["row"][bag] = np.where(has, idx[li][firstc], -1)
    f["fpos"][bag] = pos0 + li[starts]
    f["fnan"][bag] = nan[starts]
    f["frow"][bag] = idx[li][starts]
    return blo, bhi, f


def _expand(part: Part, lo: int, hi: int) -> dict[str, np.ndarray]:
    """The fields of ``part`` on the bag range ``[lo, hi)`` (bags outside the part get the defaults)."""
    plo, phi, f = part
    out = {}
    for name, a in f.items():
        full = np.full((hi - lo, *a.shape[1:]), _DEFAULTS[name], dtype=a.dtype)
        a_lo, a_hi = max(plo, lo), min(phi, hi)
        if a_hi > a_lo:
            full[a_lo - lo:a_hi - lo] = a[a_lo - plo:a_hi - plo]
        out[name] = full
    return out


def _merge(parts: list[Part], kind: str) -> Part:
    """``DASK-COMBINE``: combine bag partials (``sum``: add; ``max``: first-occurrence max; ``put``: disjoint)."""
    live = [p for p in parts if p[1] > p[0]]
    if not live:
        return parts[0]
    lo, hi = min(p[0] for p in live), max(p[1] for p in live)
    acc = _expand(live[0], lo, hi)
    for p in live[1:]:
        if kind == "put":
            for name, a in p[2].items():
                acc[name][p[0] - lo:p[1] - lo] = a
            continue
        b = _expand(p, lo, hi)
        if kind == "sum":
            acc = {name: acc[name] + b[name] for name in acc}
            continue
        b_has, a_has = b["pos"] != _NONE, acc["pos"] != _NONE
        better = b_has & (~a_has | (b["val"] > acc["val"]) | ((b["val"] == acc["val"]) & (b["pos"] < acc["pos"])))
        for name in ("val", "pos", "row"):
            acc[name] = np.where(better, b[name], acc[name])
        earlier = b["fpos"] < acc["fpos"]
        acc["fpos"] = np.where(earlier, b["fpos"], acc["fpos"])
        acc["frow"] = np.where(earlier, b["frow"], acc["frow"])
        acc["fnan"] = np.where(earlier[:, None], b["fnan"], acc["fnan"])
        acc["counts"] = acc["counts"] + b["counts"]
    return lo, hi, acc


def _slice_part(part: Part, lo: int, hi: int) -> Part:
    plo, phi, f = part
    a, b = max(plo, lo), min(phi, hi)
    if b <= a:
        return 0, 0, {name: x[:0] for name, x in f.items()}
    return a, b, {name: x[a - plo:b - plo] for name, x in f.items()}


def _bag_final(part: Part, lo: int, hi: int, mode: str, dtype: np.dtype[Any]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Output rows ``[lo, hi)``, their non-padding counts, and (max) the arg-max row per feature."""
    f = _expand(part, lo, hi)
    counts = f["counts"]
    if mode != "max":
        total = f["sums"]
        if mode == "mean":
            total = total / np.maximum(counts, 1).astype(total.dtype)[:, None]
        return total.astype(dtype), counts, None
    has = f["pos"] != _NONE
    fnan = f["fnan"] & (f["fpos"] != _NONE)[:, None]
    out = np.where(fnan, np.asarray(np.nan, dtype=dtype), np.where(has, f["val"], 0)).astype(dtype)
    argrow = np.where(fnan, f["frow"][:, None], np.where(has, f["row"], -1))
    return out, counts, argrow


def _item(t: tuple[Any, ...], i: int) -> Any:
    return t[i]


def _route_back(seg: np.ndarray, g: np.ndarray, final: tuple[np.ndarray, ...] | None, lo: int, hi: int) -> Part:
    """The rows ``[lo, hi)`` of ``grad_output`` (and, for the mean, the bag sizes) that the chunk with bag ids
    ``seg`` needs."""
    s = np.asarray(seg).reshape(-1)
    fields = {"g": np.asarray(g)}
    if final is not None:
        fields["counts"] = final[1]
    part: Part = (lo, hi, fields)
    blo, bhi = _seg_range(s)
    return _slice_part(part, blo, bhi)


Contrib = tuple[np.ndarray, np.ndarray, "np.ndarray | None", np.ndarray]


def _contrib(idx: np.ndarray, seg: np.ndarray | None, psw: np.ndarray | None, gathered: Any, mode: str,
             padding_idx: int | None, acc: np.dtype[Any]) -> Contrib:
    """One input chunk's gradient contributions, without materialising a row per position: ``(idx, src,
    coef, G)`` — non-padding position ``i`` adds ``coef[i] * G[src[i]]`` to row ``idx[i]``."""
    flat = np.asarray(idx).reshape(-1).astype(np.int64)
    if seg is None:  # embedding: the gradient row of every position is grad_output's own row
        block = np.asarray(gathered)
        g = block.reshape(flat.shape[0], block.shape[-1]).astype(acc)
        keep = np.flatnonzero(flat != padding_idx) if padding_idx is not None else np.arange(flat.shape[0])
        return flat[keep], keep, None, g
    s = np.asarray(seg).reshape(-1)
    keep_mask = s >= 0
    if padding_idx is not None:
        keep_mask &= flat != padding_idx
    keep = np.flatnonzero(keep_mask)
    lo, _, f = gathered
    src = s[keep] - lo
    coef = None if psw is None else np.asarray(psw).reshape(-1)[keep].astype(acc)
    if mode == "mean":
        inv = 1.0 / np.maximum(f["counts"][src], 1).astype(acc)
        coef = inv if coef is None else coef * inv
    return flat[keep], src, coef, f["g"].astype(acc)


Rows = tuple[np.ndarray, np.ndarray]  # (distinct local rows, their summed values): a sparse gradient partial


def _sparse_rows(local: np.ndarray, values: np.ndarray) -> Rows:
    """Duplicates of ``local`` summed: xembed's NumPy scatter-add primitive over the distinct rows."""
    uniq, inv = np.unique(local, return_inverse=True)
    return uniq, _scatter_rows(inv.reshape(-1), values, uniq.shape[0])


def _scatter_part(c: Contrib, lo: int, hi: int, counts: np.ndarray | None) -> Rows:
    """``DASK-GRAD``: the gradient rows ``[lo, hi)`` from one input chunk's contributions (xembed's NumPy
    gather-scatter-add primitive), kept sparse: their size follows the chunk's share of the batch, not the
    table chunk."""
    idx, src, coef, g = c
    sel = np.flatnonzero((idx >= lo) & (idx < hi))
    local = idx[sel] - lo
    k = None if coef is None else coef[sel]
    if counts is not None:
        inv = 1.0 / counts[local].astype(g.dtype)
        k = inv if k is None else k * inv
    uniq, dst = np.unique(local, return_inverse=True)
    vals = prim.gather_scatter_add(g, src[sel], dst.reshape(-1), k, uniq.shape[0], g.dtype, xp=_np_namespace())
    return uniq, np.asarray(vals, dtype=g.dtype)


def _sum(parts: list[np.ndarray]) -> np.ndarray:
    out = parts[0]
    for p in parts[1:]:
        out = out + p
    return out


def _count_part(idx: np.ndarray, seg: np.ndarray | None, lo: int, hi: int) -> np.ndarray:
    """``DASK-SGBF``: occurrences of rows ``[lo, hi)`` among this chunk's positions (padding included)."""
    flat = np.asarray(idx).reshape(-1).astype(np.int64)
    if seg is not None:
        flat = flat[np.asarray(seg).reshape(-1) >= 0]
    flat = flat[(flat >= lo) & (flat < hi)]
    return np.bincount(flat - lo, minlength=hi - lo)


def _cast(x: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    return x.astype(dtype, copy=False)


def _max_scatter(final: tuple[np.ndarray, ...], g: np.ndarray, lo: int, hi: int, acc: np.dtype[Any]) -> Rows:
    """``DASK-GRAD``: ``gW[argrow[b, d], d] += g[b, d]`` for the rows ``[lo, hi)`` of one weight chunk, as sparse
    entries of the flattened chunk."""
    argrow = final[2]
    dim = argrow.shape[1]
    sel = (argrow >= lo) & (argrow < hi)
    target = ((argrow - lo) * dim + np.arange(dim)[None, :])[sel]
    return _sparse_rows(target, np.asarray(g).astype(acc)[sel][:, None])


def _psw_part(idx: np.ndarray, seg: np.ndarray, gathered: Part, w: np.ndarray, lo: int,
              padding_idx: int | None, acc: np.dtype[Any]) -> tuple[np.ndarray, np.ndarray]:
    """``DASK-GRAD``: ``dot(g[bag(i)], W[idx_i])`` for the positions whose index lies in ``w``'s rows."""
    shape = np.asarray(idx).shape
    flat, s = np.asarray(idx).reshape(-1), np.asarray(seg).reshape(-1)
    mask = (s >= 0) & (flat >= lo) & (flat < lo + w.shape[0])
    dots = np.zeros(flat.shape[0], dtype=acc)
    glo, _, f = gathered
    li = np.flatnonzero(mask)
    dots[li] = np.sum(f["g"][s[li] - glo].astype(acc) * w[flat[li] - lo].astype(acc), axis=1)
    if padding_idx is not None:
        dots[flat == padding_idx] = 0
    return dots.reshape(shape), mask.reshape(shape)


def _sparse_values(c: Contrib, dtype: np.dtype[Any]) -> np.ndarray:
    _, src, coef, g = c
    rows = g[src]
    return (rows if coef is None else rows * coef[:, None]).astype(dtype)


def _sparse_pair(idx: np.ndarray, values: np.ndarray, acc: np.dtype[Any]) -> Contrib:
    idx = np.asarray(idx)
    return idx, np.arange(idx.shape[0]), None, np.asarray(values).astype(acc)


# ---------------------------------------------------------------------------------------------------------
# Gradient assembly
# ---------------------------------------------------------------------------------------------------------

def _dense_grad(g: _Graph, contribs: Sequence[Key], row_bounds: list[tuple[int, int]], dim: int,
                counts: list[Key] | None, dtype: np.dtype[Any]) -> Array:
    """``DASK-GRAD``: the dense weight gradient, chunked like the weight's rows.

    Per weight chunk, a chain over the input chunks adds each chunk's contributions into the chunk's
    accumulator (scatter fused into the step): the only table-sized data alive are the accumulators, i.e. each
    worker's share of the gradient — partials never pile up ahead of their reduction.
    """
    tasks = {}
    for j, (lo, hi) in enumerate(row_bounds):
        cnt = None if counts is None else counts[j]
        prev: Key | None = None
        for c, ck in enumerate(contribs):
            prev = g.add(g.key("gacc", j, c), _scatter_step, prev, ck, lo, hi, cnt, dim)
        tasks[(j, 0)] = (_cast, prev, dtype)
    chunks = (tuple(hi - lo for lo, hi in row_bounds), (dim,))
    return g.array("grad-weight", chunks, dtype, tasks)


def _add_rows(prev: np.ndarray | None, part: Rows, n_rows: int, dim: int) -> np.ndarray:
    """``prev + part`` densified (a new array: task inputs are never modified)."""
    uniq, vals = part
    out = np.zeros((n_rows, dim), dtype=vals.dtype) if prev is None else prev.copy()
    out.reshape(-1, vals.shape[1])[uniq] += vals
    return out


def _scatter_step(prev: np.ndarray | None, c: Contrib, lo: int, hi: int, counts: np.ndarray | None,
                  dim: int) -> np.ndarray:
    return _add_rows(prev, _scatter_part(c, lo, hi, counts), hi - lo, dim)


def _max_step(prev: np.ndarray | None, final: tuple[np.ndarray, ...], g: np.ndarray, lo: int, hi: int,
              acc: np.dtype[Any]) -> np.ndarray:
    dim = final[2].shape[1]
    return _add_rows(prev, _max_scatter(final, g, lo, hi, acc), hi - lo, dim)


def _frequencies(g: _Graph, idx_keys: Sequence[Key], seg_keys: Sequence[Key | None],
                 row_bounds: list[tuple[int, int]]) -> list[Key]:
    """``DASK-SGBF``: the global bincount of the input, one key per weight chunk (a tree over input chunks)."""
    out = []
    for j, (lo, hi) in enumerate(row_bounds):
        parts = [g.add(g.key("count", j, c), _count_part, ik, sk, lo, hi)
                 for c, (ik, sk) in enumerate(zip(idx_keys, seg_keys, strict=True))]
        out.append(g.tree("csum", (j,), parts, _sum))
    return out


class DaskSparseGrad(SparseGrad):
    """``DASK-SPARSE``: :class:`xembed.SparseGrad` whose ``indices`` / ``values`` are dask arrays chunked like
    the input (unknown chunk sizes — NaN — when ``padding_idx`` drops positions); ``to_dense()`` is the dense
    gradient as a dask array chunked like the weight's rows."""

    __slots__ = ("row_chunks",)

    def __init__(self, indices: Array, values: Array, shape: tuple[int, int], row_chunks: tuple[int, ...]):
        # the graph's own arrays, valid by construction (their sizes may be unknown: no checked __init__)
        self.indices, self.values, self.shape = indices, values, (int(shape[0]), int(shape[1]))
        self.row_chunks = row_chunks

    @property
    def nnz(self) -> int:
        n = self.indices.shape[0]
        if math.isnan(n):
            msg = ("`nnz` of a dask SparseGrad with padding is known only after "
                   "`indices.compute_chunk_sizes()`")
            raise ValueError(msg)
        return int(n)

    def to_dense(self) -> Array:
        dtype = np.dtype(self.values.dtype)
        acc = _acc(dtype)
        g = _Graph(_token("to-dense", self.indices, self.values, self.row_chunks), [self.indices, self.values])
        pairs = [g.add(g.key("pair", c), _sparse_pair, ik, vk, acc)
                 for c, (ik, (vk,)) in enumerate(zip(self.indices.__dask_keys__(), self.values.__dask_keys__(),
                                                     strict=True))]
        return _dense_grad(g, pairs, _bounds(self.row_chunks), self.shape[1], None, dtype)

    def __repr__(self) -> str:
        return f"DaskSparseGrad(shape={self.shape}, dtype={self.values.dtype}, row_chunks={self.row_chunks})"


def _sparse_grad(g: _Graph, contribs: Sequence[Key], known: list[int] | None, weight_shape: tuple[int, int],
                 row_chunks: tuple[int, ...], dtype: np.dtype[Any]) -> DaskSparseGrad:
    n_chunks: tuple[float, ...] = tuple(known) if known is not None else (math.nan,) * len(contribs)
    idx = g.array("sparse-indices", (n_chunks,), np.int64,
                  {(c,): (_item, ck, 0) for c, ck in enumerate(contribs)})
    vals = g.array("sparse-values", (n_chunks, (weight_shape[1],)), dtype,
                   {(c, 0): (_sparse_values, ck, dtype) for c, ck in enumerate(contribs)})
    return DaskSparseGrad(idx, vals, weight_shape, row_chunks)


# ---------------------------------------------------------------------------------------------------------
# embedding
# ---------------------------------------------------------------------------------------------------------

def embedding(input: Any, weight: Any, padding_idx: Any, max_norm: Any, norm_type: Any, scale_grad_by_freq: Any,
              sparse: Any, xp: Any, want_vjp: bool) -> Any:
    """``DASK-PARTIALS``: ``weight[input]`` chunked like ``input`` (+ one column chunk), and its pullback."""
    xpd = _dask_namespace(xp)
    X, W = _to_dask("input", input), _to_dask("weight", weight)
    padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse = v.check_embedding_metadata(
        X, W, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse, xpd)
    n_rows, dim = (int(s) for s in W.shape)
    W = _weight(W)
    dtype = np.dtype(W.dtype)
    row_bounds = _bounds(W.chunks[0])
    g = _Graph(_token("embedding", X, W), [X, W])
    checked = _checked_input(g, X, n_rows)
    if max_norm is not None:  # DASK-RENORM: read (and differentiate through) the renormed rows
        W = _renormed(g, W, list(checked.values()), max_norm, norm_type)
    tasks = {}
    for bi, ck in checked.items():
        parts = [g.add(g.key("emb-part", *bi, j), _emb_part, ck, (W.name, j, 0), lo)
                 for j, (lo, _) in enumerate(row_bounds)]
        tasks[(*bi, 0)] = (_first, g.tree("emb-merge", bi, parts, _where_merge))
    out_chunks = (*X.chunks, (dim,))
    out = g.array("embedding", out_chunks, dtype, tasks)
    if not want_vjp:
        return out

    def pullback(grad_output: Any) -> Any:
        G = _check_grad(grad_output, tuple(out.shape), out_chunks)
        acc = _acc(dtype)
        Xg, blocks = X, checked
        if sparse and any(len(c) > 1 for c in X.chunks[1:]):
            # GRAD-SPARSE wants input (C) order: chunk the input along its first axis only
            Xg = X.rechunk(dict.fromkeys(range(1, X.ndim), -1))
            G = G.rechunk((*Xg.chunks, (dim,)))
        b = _Graph(_token("embedding-vjp", g.token, G, padding_idx, scale_grad_by_freq, sparse), [Xg, W, G], g.dsk)
        if Xg is not X:
            blocks = _checked_input(b, Xg, n_rows)
        contribs = [b.add(b.key("contrib", c), _contrib, ck, None, None, (G.name, *bi, 0), "sum", padding_idx, acc)
                    for c, (bi, ck) in enumerate(blocks.items())]
        if sparse:
            known = None if padding_idx is not None else [math.prod(s) for s in _blocks(Xg)]
            return _sparse_grad(b, contribs, known, (n_rows, dim), tuple(W.chunks[0]), dtype)
        counts = None
        if scale_grad_by_freq:
            counts = _frequencies(b, list(blocks.values()), [None] * len(blocks), row_bounds)
        return _dense_grad(b, contribs, row_bounds, dim, counts, dtype)

    return out, pullback


def _overlaps(rng: tuple[int, int] | None, lo: int, hi: int) -> bool:
    """Whether an input chunk whose bags are ``rng`` (None: known only from the offsets' values) can touch the
    output bags ``[lo, hi)``."""
    return rng is None or rng == (lo, hi) or (rng[0] < hi and lo < rng[1])


def _blocks(x: Array) -> list[tuple[int, ...]]:
    """Shapes of the blocks of ``x`` in block order."""
    return [tuple(x.chunks[a][i] for a, i in enumerate(bi)) for bi in np.ndindex(*x.numblocks)]


# ---------------------------------------------------------------------------------------------------------
# embedding_bag
# ---------------------------------------------------------------------------------------------------------

def _all_ok(_parts: list[Any]) -> None:
    return None


def _seg_after(seg: np.ndarray, _ok: None) -> np.ndarray:
    return seg


def _constant_seg(n: int, value: int, _ok: None) -> np.ndarray:
    return np.full(n, value, dtype=np.int64)


def _bag_ids_1d(g: _Graph, x: Array, offs: Array, num_bags: int, include_last_offset: bool) -> list[Key | None]:
    """Keys of the bag id of every position of each chunk of a 1-D input (``DASK-CHUNKS``).

    The offsets pass through their value checks (``DASK-CHECKS``); every bag-id block waits for all of them, so
    no result is computed from bad offsets.  Bag ids are a searchsorted of each input chunk's positions in each
    checked offsets block, summed over the offsets blocks (one small task per pair, then a tree).
    """
    n = int(x.shape[0])
    tasks = {}
    obounds = _bounds(offs.chunks[0])
    for k, (lo, _) in enumerate(obounds):
        prev = (offs.name, k - 1) if k else None
        tasks[(k,)] = (_check_offsets_block, (offs.name, k), prev, lo, k == len(obounds) - 1, n, include_last_offset)
    checked = g.array("check-offsets", offs.chunks, np.int64, tasks)
    ok = g.tree("offsets-ok", (), [(checked.name, k) for k in range(len(obounds))], _all_ok)
    if num_bags <= 1:  # every position is in bag 0 (one bag) or in none (-1)
        return [g.add(g.key("seg", c), _constant_seg, int(size), num_bags - 1, ok)
                for c, size in enumerate(x.chunks[0])]
    out: list[Key | None] = []
    for c, (p0, p1) in enumerate(_bounds(x.chunks[0])):
        parts = [g.add(g.key("seg-part", c, k), _seg_part, (checked.name, k), lo, num_bags, p0, p1)
                 for k, (lo, _) in enumerate(obounds)]
        out.append(g.add(g.key("seg", c), _seg_after, g.tree("seg-sum", (c,), parts, _sum), ok))
    return out


def _seg_part(offs: np.ndarray, start: int, num_bags: int, p0: int, p1: int) -> np.ndarray:
    """How many bag starts ``offsets[b]``, ``1 <= b < num_bags``, of this offsets block are <= each position
    ``p0 <= p < p1`` (summed over the offsets blocks: the bag id of ``p``)."""
    lo, hi = max(1 - start, 0), max(min(num_bags - start, offs.shape[0]), 0)
    starts = np.asarray(offs)[lo:hi] if hi > lo else np.zeros(0, dtype=np.int64)
    return np.searchsorted(starts, np.arange(p0, p1, dtype=np.int64), side="right")


def embedding_bag(input: Any, weight: Any, offsets: Any, max_norm: Any, norm_type: Any, scale_grad_by_freq: Any,
                  mode: Any, sparse: Any, per_sample_weights: Any, include_last_offset: Any, padding_idx: Any,
                  xp: Any, want_vjp: bool, lengths: Any = None) -> Any:
    """``DASK-COMBINE``: the bag reduction chunked along bags, and its pullback."""
    if lengths is not None:  # DASK-EXT
        msg = "`lengths` is not supported on dask arrays yet (EXT-LENGTHS): pass the equivalent `offsets`"
        raise NotImplementedError(msg)
    xpd = _dask_namespace(xp)
    X, W = _to_dask("input", input), _to_dask("weight", weight)
    Od, P = _to_dask("offsets", offsets), _to_dask("per_sample_weights", per_sample_weights)
    a = v.check_bag_metadata(X, W, Od, P, mode, max_norm, norm_type, scale_grad_by_freq, sparse,
                             include_last_offset, padding_idx, xpd)
    if a.mode in ("sqrtn", "min") or (P is not None and a.mode == "mean"):  # DASK-EXT
        what = f"`mode`={a.mode!r}" + (" with `per_sample_weights`" if a.mode == "mean" else "")
        msg = f"{what} (an extension beyond torch, EXT-*) is not supported on dask arrays yet"
        raise NotImplementedError(msg)
    W = _weight(W)
    dtype, acc = np.dtype(W.dtype), _acc(W.dtype)
    n_rows, dim = (int(s) for s in W.shape)
    row_bounds = _bounds(W.chunks[0])
    if X.ndim == 2:
        X = X.rechunk({1: -1}) if len(X.chunks[1]) > 1 else X
        num_bags = int(X.shape[0])
        bag_chunks = tuple(int(c) for c in X.chunks[0])
    else:
        num_bags = int(Od.shape[0]) - int(a.include_last_offset)
        sizes = list(Od.chunks[0])
        if a.include_last_offset:
            sizes[-1] -= 1
        bag_chunks = tuple(int(s) for s in sizes if s > 0) or (0,)
    if P is not None and P.chunks != X.chunks:
        P = P.rechunk(X.chunks)
    deps = [x for x in (X, W, Od, P) if x is not None]
    g = _Graph(_token("embedding_bag", X, W, Od, P, a), deps)
    checked = [ck for _, ck in sorted(_checked_input(g, X, n_rows).items())]
    if a.max_norm is not None:  # DASK-RENORM
        W = _renormed(g, W, checked, a.max_norm, a.norm_type)
    in_bounds = _bounds(X.chunks[0])
    row_len = int(X.shape[1]) if X.ndim == 2 else 1
    pos0 = [lo * row_len for lo, _ in in_bounds]
    if X.ndim == 2:
        segs: list[Key | None] = [g.add(g.key("seg", c), _bag_seg_2d, ck, in_bounds[c][0])
                                  for c, ck in enumerate(checked)]
        static: list[tuple[int, int] | None] = list(in_bounds)
    else:
        segs = _bag_ids_1d(g, X, Od, num_bags, a.include_last_offset)
        static = [None] * len(checked)
    psw_keys = [None] * len(checked) if P is None else [(P.name, *bi) for bi in np.ndindex(*P.numblocks)]
    kind = "max" if a.mode == "max" else "sum"

    # partials per input chunk, reduced over the weight chunks
    chunk_parts = []
    for c, ck in enumerate(checked):
        parts = [g.add(g.key("bag-part", c, j), _bag_part, ck, segs[c], psw_keys[c], (W.name, j, 0), lo, pos0[c],
                       a.mode, a.padding_idx, acc) for j, (lo, _) in enumerate(row_bounds)]
        chunk_parts.append(g.tree("bag-merge", (c,), parts, _merge, kind))
    # route to the output's bag chunks
    bag_bounds = _bounds(bag_chunks)
    finals, tasks = [], {}
    for k, (lo, hi) in enumerate(bag_bounds):
        pieces = []
        for c, part in enumerate(chunk_parts):
            rng = static[c]
            if not _overlaps(rng, lo, hi):
                continue
            pieces.append(part if rng == (lo, hi) else g.add(g.key("route", k, c), _slice_part, part, lo, hi))
        if not pieces:
            pieces = [chunk_parts[0]]
        merged = g.tree("route-merge", (k,), pieces, _merge, kind)
        finals.append(g.add(g.key("bag-final", k), _bag_final, merged, lo, hi, a.mode, dtype))
        tasks[(k, 0)] = (_item, finals[k], 0)
    out_chunks = (bag_chunks, (dim,))
    out = g.array("embedding_bag", out_chunks, dtype, tasks)
    if not want_vjp:
        return out

    def pullback(grad_output: Any) -> tuple[Any, Any]:
        G = _check_grad(grad_output, (num_bags, dim), out_chunks)
        b = _Graph(_token("embedding_bag-vjp", g.token, G), [*deps, G], g.dsk)
        g_keys = [(G.name, k, 0) for k in range(len(bag_bounds))]
        if a.mode == "max":
            grad_w: Any = None
            tasks: dict[tuple[int, ...], tuple[Any, ...]] = {}
            for j, (lo, hi) in enumerate(row_bounds):
                prev: Key | None = None
                for k, (fk, gk) in enumerate(zip(finals, g_keys, strict=True)):
                    prev = b.add(b.key("max-acc", j, k), _max_step, prev, fk, gk, lo, hi, acc)
                tasks[(j, 0)] = (_cast, prev, dtype)
            grad_w = b.array("grad-weight", (tuple(W.chunks[0]), (dim,)), dtype, tasks)
        gathered = []
        if a.mode != "max" or P is not None:
            for c in range(len(checked)):
                pieces = []
                for k, (lo, hi) in enumerate(bag_bounds):
                    rng = static[c]
                    if not _overlaps(rng, lo, hi):
                        continue
                    fin = finals[k] if a.mode == "mean" else None  # only the mean needs the forward (bag sizes)
                    pieces.append(b.add(b.key("gather", c, k), _route_back, segs[c], g_keys[k], fin, lo, hi))
                gathered.append(b.tree("gather-merge", (c,), pieces, _merge, "put"))
        if a.mode != "max":
            contribs = [b.add(b.key("contrib", c), _contrib, ck, segs[c], psw_keys[c], gathered[c], a.mode,
                              a.padding_idx, acc) for c, ck in enumerate(checked)]
            if a.sparse:
                known = None
                if num_bags == 0:
                    known = [0] * len(checked)
                elif a.padding_idx is None:
                    known = [math.prod(s) for s in _blocks(X)]
                grad_w = _sparse_grad(b, contribs, known, (n_rows, dim), tuple(W.chunks[0]), dtype)
            else:
                counts = _frequencies(b, checked, segs, row_bounds) if a.scale_grad_by_freq else None
                grad_w = _dense_grad(b, contribs, row_bounds, dim, counts, dtype)
        grad_psw = None
        if P is not None:
            pdtype = np.dtype(P.dtype)
            tasks = {}
            for c, (bi, ck) in enumerate(zip(np.ndindex(*P.numblocks), checked, strict=True)):
                parts = [b.add(b.key("psw-part", c, j), _psw_part, ck, segs[c], gathered[c], (W.name, j, 0), lo,
                               a.padding_idx, acc) for j, (lo, _) in enumerate(row_bounds)]
                merged = b.tree("psw-merge", (c,), parts, _where_merge)
                tasks[bi] = (_cast, (_first, merged), pdtype)
            grad_psw = b.array("grad-psw", P.chunks, pdtype, tasks)
        return grad_w, grad_psw

    return out, pullback
