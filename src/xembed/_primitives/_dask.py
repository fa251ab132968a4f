"""Dask primitives (spec DASK-*): ``_fallback``'s contracts as chunk-pair graphs that never gather.

The core runs unchanged on dask arrays; only the primitives below differ.  Each one builds its own graph:

* row lookups (``take_rows``) and per-bag reductions (``gather_segment_sum`` / ``max`` / ``min``) run one task per
  (position chunk, weight row chunk) pair: the partial result of the positions whose index falls in that row
  chunk, tree-reduced over the row chunks (fan-in :data:`SPLIT_EVERY`), then routed to the output's bag chunks
  (for a 1-D input, which bags a position chunk touches is known only from the offsets' values, so every
  chunk's partial is sliced for every bag chunk; for a 2-D input, the :class:`Layout` names its regular offsets
  and each partial goes only to the bag chunks it overlaps);
* ``segment_ids`` searches each offsets chunk only for the positions it spans, then assembles each position
  chunk;
* scatter-adds (``scatter_add_rows``, ``gather_scatter_add``, ``bincount``) build each output row chunk as a chain
  over the position chunks, so no table-sized partials pile up ahead of their reduction;
* ``partition`` (the static-shape padding compaction) routes every position chunk's entries to the output
  chunks their destinations fall in, from per-chunk counts.

Inside tasks the blocks are NumPy arrays (CPU dask clusters) and the per-chunk work is xembed's NumPy primitives.

Output chunking follows a :class:`Layout` (the weight's row chunks, the flattened input's chunks, the output's
bag chunks) that the dask adapter (``xembed._dask``) sets around every core call; without one, dask's automatic
chunking is used.  The value checks (index range, offsets and lengths rules) are per-block tasks that the
adapter puts between the caller's arrays and the core (:func:`checked_indices`, :func:`checked_offsets`,
:func:`checked_lengths`): ``.compute()`` raises the eager path's errors.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._offsets_rules import decrease_error, first_offset_error, last_offset_error
from .._typing import Array

Key = tuple[Any, ...]
Part = tuple[int, int, dict[str, np.ndarray]]  # (first bag, end bag, per-bag fields)

SPLIT_EVERY = 4  # fan-in of every tree reduction
_NONE = np.iinfo(np.int64).max  # "no position" in the max partials
_DEFAULTS: dict[str, Any] = {"sums": 0, "val": 0, "pos": _NONE, "row": -1, "fpos": _NONE, "fnan": False,
                             "frow": -1}


# ---------------------------------------------------------------------------------------------------------
# Graph building
# ---------------------------------------------------------------------------------------------------------

class Graph:
    """A task dict under one token, with tree reductions and array construction."""

    def __init__(self, token: str, deps: Sequence[Any]):
        self.token = token
        self.deps = list(deps)
        self.dsk: dict[Key, Any] = {}

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


def graph(stage: str, *arrays: Any) -> Graph:
    """A :class:`Graph` depending on the dask arrays among ``arrays`` (the others go into the token)."""
    from dask.array import Array as DaskArray
    from dask.base import tokenize

    return Graph(tokenize(stage, *arrays), [x for x in arrays if isinstance(x, DaskArray)])


def bounds(chunks: Sequence[float]) -> list[tuple[int, int]]:
    """``[start, stop)`` of every chunk of a known chunking."""
    out, start = [], 0
    for c in chunks:
        out.append((start, start + int(c)))
        start += int(c)
    return out


def _keys(x: Array) -> list[Key]:
    """Block keys of a 1-D array, or of a 2-D array with one column chunk, in order."""
    return [(x.name, *bi) for bi in np.ndindex(*x.numblocks)]


def _aligned(x: Array, like: Array) -> Array:
    """``x`` chunked along axis 0 like ``like`` (other axes one chunk)."""
    chunks = (like.chunks[0], *((s,) for s in x.shape[1:]))
    if len(x.chunks[0]) == len(like.chunks[0]) and all(len(c) == 1 for c in x.chunks[1:]) and (
            any(math.isnan(c) for c in like.chunks[0]) or x.chunks[0] == like.chunks[0]):
        return x
    return x.rechunk(chunks)


def _known_starts(x: Array, what: str) -> list[int]:
    if any(math.isnan(c) for c in x.chunks[0]):
        msg = f"the dask primitive `{what}` needs known chunk sizes, got {x.chunks[0]}"
        raise ValueError(msg)
    return [lo for lo, _ in bounds(x.chunks[0])]


# ---------------------------------------------------------------------------------------------------------
# Output chunking
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """Preferred chunkings for the primitives' outputs: the weight's rows, the flattened input's positions, the
    output's bags (empty when unknown) and the embedding dimension.

    ``regular``: the name of an offsets array known to be ``arange(B + 1) * length`` (a 2-D input's bags), and
    that length.  ``value_ranges``: for index arrays built here whose values are known per chunk (the segment ids
    of regular offsets), each chunk's ``[lo, hi)``, so that lookups and routing touch only the chunks those
    values fall in instead of every pair of chunks."""

    rows: tuple[int, ...]
    positions: tuple[int, ...] = ()
    bags: tuple[int, ...] = ()
    dim: int = 1
    regular: tuple[str, int] | None = None
    value_ranges: dict[str, list[tuple[int, int]]] = field(default_factory=dict, compare=False, hash=False)


_layout: contextvars.ContextVar[Layout | None] = contextvars.ContextVar("xembed_dask_layout", default=None)


@contextlib.contextmanager
def use_layout(layout: Layout) -> Iterator[None]:
    token = _layout.set(layout)
    try:
        yield
    finally:
        _layout.reset(token)


def _value_ranges(x: Array) -> list[tuple[int, int]] | None:
    """Per-chunk ``[lo, hi)`` of ``x``'s values when the current layout knows them (else None: any value)."""
    lay = _layout.get()
    return None if lay is None else lay.value_ranges.get(x.name)


def _overlapping(ranges: list[tuple[int, int]] | None, chunk_bounds: list[tuple[int, int]],
                 c: int) -> list[int]:
    """The chunks of ``chunk_bounds`` that chunk ``c``'s values can fall in (all when unknown; at least one, so
    that every output has a task to start from)."""
    if ranges is None:
        return list(range(len(chunk_bounds)))
    lo, hi = ranges[c]
    hit = [j for j, (a, b) in enumerate(chunk_bounds) if a < hi and lo < b]
    return hit or [0]


def chunks_for(n: int) -> tuple[int, ...]:
    """Chunks for ``n`` entries: the current layout's chunking whose total is ``n`` (rows, bags, positions, or
    the rows times the dimension), that chunking plus one chunk when ``n`` is one more (the parked padding bag),
    else dask's automatic chunking."""
    lay = _layout.get()
    if lay is not None:
        candidates = [tuple(c for c in pref if c) for pref in (lay.rows, lay.bags, lay.positions,
                                                               tuple(r * lay.dim for r in lay.rows))]
        for pref in candidates:
            if pref and sum(pref) == n:
                return pref
        for pref in candidates:
            if pref and sum(pref) + 1 == n:
                return (*pref, 1)
    if n == 0:
        return (0,)
    from dask.array.core import normalize_chunks

    return tuple(int(c) for c in normalize_chunks("auto", (n,), dtype=np.int64)[0])  # type: ignore[no-untyped-call]


# ---------------------------------------------------------------------------------------------------------
# Row lookup
# ---------------------------------------------------------------------------------------------------------

def _one_column_chunk(weight: Array) -> Array:
    return weight.rechunk({1: -1}) if len(weight.chunks[1]) > 1 else weight


def _take_part(idx: np.ndarray, w: np.ndarray, lo: int) -> tuple[np.ndarray, np.ndarray]:
    """The positions whose index falls in the row chunk ``[lo, lo + len(w))``, and their rows (only those: a
    partial holds what its row chunk contributes, not a batch-chunk-sized array)."""
    idx = np.asarray(idx)
    hit = np.flatnonzero((idx >= lo) & (idx < lo + w.shape[0]))
    return hit, w[idx[hit] - lo]


def _concat_parts(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Partials over disjoint position sets, as one."""
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([p for p, _ in parts]), np.concatenate([r for _, r in parts])


def _placed(part: tuple[np.ndarray, np.ndarray], n: int, dim: int, dtype: Any) -> np.ndarray:
    """The (n, dim) block of a position chunk from its merged partial (every position is filled once)."""
    hit, rows = part
    out = np.empty((n, dim), dtype=dtype)
    out[hit] = rows
    return out


def _same(x: Any) -> Any:
    return x


def take_rows(weight: Array, idx: Array, xp: Any) -> Array:  # noqa: ARG001
    """``weight[idx]`` (n, D): per position chunk, one lookup task per row chunk, merged by a tree."""
    w = _one_column_chunk(weight)
    g = graph("take-rows", w, idx)
    row_bounds, ranges = bounds(w.chunks[0]), _value_ranges(idx)
    tasks = {}
    for c, ik in enumerate(_keys(idx)):
        parts = [g.add(g.key("take-part", c, j), _take_part, ik, (w.name, j, 0), row_bounds[j][0])
                 for j in _overlapping(ranges, row_bounds, c)]
        tasks[(c, 0)] = (_placed, g.tree("take-merge", (c,), parts, _concat_parts), int(idx.chunks[0][c]),
                         int(w.shape[1]), w.dtype)
    return g.array("take-rows", (idx.chunks[0], w.chunks[1]), w.dtype, tasks)


# ---------------------------------------------------------------------------------------------------------
# Counts and scatter-adds
# ---------------------------------------------------------------------------------------------------------

def _sum(parts: list[np.ndarray]) -> np.ndarray:
    out = parts[0]
    for p in parts[1:]:
        out = out + p
    return out


def _count_part(idx: np.ndarray, lo: int, hi: int, dtype: np.dtype[Any]) -> np.ndarray:
    flat = np.asarray(idx).astype(np.int64)
    flat = flat[(flat >= lo) & (flat < hi)]
    return np.bincount(flat - lo, minlength=hi - lo).astype(dtype)


def bincount(idx: Array, num_rows: int, xp: Any) -> Array:  # noqa: ARG001
    """Counts of rows ``[0, num_rows)``: one count task per (position chunk, output chunk), tree-summed."""
    g = graph("bincount", idx, num_rows)
    tasks = {}
    for j, (lo, hi) in enumerate(bounds(chunks_for(num_rows))):
        parts = [g.add(g.key("count", j, c), _count_part, ik, lo, hi, idx.dtype) for c, ik in enumerate(_keys(idx))]
        tasks[(j,)] = (_same, g.tree("count-sum", (j,), parts, _sum))
    return g.array("bincount", (chunks_for(num_rows),), idx.dtype, tasks)


def _added(prev: np.ndarray | None, local: np.ndarray, part: Callable[[np.ndarray, int], Any], size: int, dim: int,
           dtype: np.dtype[Any]) -> np.ndarray:
    """``prev`` (zeros when None) plus the rows ``part(slot, count)`` sums for the distinct rows of ``local``
    (``slot``: each position's row among them), as a new array (task inputs are never modified).  The rows a step
    reaches are summed compactly: it holds two table chunks (``prev`` and its copy), not a third, table-chunk-sized
    partial."""
    touched, slot = np.unique(local, return_inverse=True)
    rows = np.asarray(part(slot.reshape(-1), touched.shape[0]))
    out = np.zeros((size, dim), dtype=dtype) if prev is None else prev.copy()
    out[touched] += rows
    return out


def _scatter_step(prev: np.ndarray | None, idx: np.ndarray, rows: np.ndarray, lo: int, hi: int,
                  block: Callable[..., Any]) -> np.ndarray:
    """``prev`` plus the rows whose index falls in ``[lo, hi)``; ``block``: NumPy's ``scatter_add_rows``."""
    from array_api_compat import array_namespace

    idx, rows = np.asarray(idx), np.asarray(rows)
    sel = (idx >= lo) & (idx < hi)
    picked = rows[sel]
    return _added(prev, idx[sel].astype(np.int64) - lo,
                  lambda slot, count: block(slot, picked, count, array_namespace(picked)),
                  hi - lo, rows.shape[1], rows.dtype)


def scatter_add_rows(idx: Array, rows: Array, num_rows: int, xp: Any,  # noqa: ARG001
                     *, block: Callable[..., Any]) -> Array:
    """``out[idx[i]] += rows[i]``: per output row chunk, a chain over the position chunks (each step NumPy's
    ``block``)."""
    rows = _aligned(rows, idx)
    g = graph("scatter-add", idx, rows, num_rows)
    out_chunks = chunks_for(num_rows)
    tasks = {}
    for j, (lo, hi) in enumerate(bounds(out_chunks)):
        prev: Key | None = None
        for c, (ik, rk) in enumerate(zip(_keys(idx), _keys(rows), strict=True)):
            prev = g.add(g.key("scatter", j, c), _scatter_step, prev, ik, rk, lo, hi, block)
        tasks[(j, 0)] = (_same, prev)
    return g.array("scatter-add", (out_chunks, (rows.shape[1],)), rows.dtype, tasks)


def _src_piece(src_idx: np.ndarray, src: np.ndarray, lo: int) -> tuple[int, np.ndarray]:
    """The rows of one ``src`` chunk (rows ``lo...``) between the smallest and the largest of ``src_idx``, and the
    first one's row number."""
    s = np.asarray(src_idx)
    if s.shape[0] == 0:
        return lo, src[:0]
    first, end = max(int(s.min()), lo), min(int(s.max()) + 1, lo + src.shape[0])
    return first, src[first - lo:max(end, first) - lo]


def _concat_src(pieces: list[tuple[int, np.ndarray]]) -> tuple[int, np.ndarray]:
    """Consecutive row ranges, in order, as one (an empty piece anywhere is dropped)."""
    live = [p for p in pieces if p[1].shape[0]]
    if len(live) <= 1:
        return live[0] if live else pieces[0]
    return live[0][0], np.concatenate([rows for _, rows in live])


def _gather_scatter_step(prev: np.ndarray | None, dst_idx: np.ndarray, src_idx: np.ndarray, scale: np.ndarray | None,
                         gathered: tuple[int, np.ndarray], lo: int, hi: int, acc: np.dtype[Any],
                         block: Callable[..., Any]) -> np.ndarray:
    """``prev`` plus ``scale[i] * src[src_idx[i]]`` for the positions whose ``dst_idx`` falls in ``[lo, hi)``
    (``gathered``: the ``src`` rows this position chunk reads; ``block``: NumPy's ``gather_scatter_add``)."""
    from array_api_compat import array_namespace

    dst, s = np.asarray(dst_idx), np.asarray(src_idx)
    sel = np.flatnonzero((dst >= lo) & (dst < hi))
    first, rows = gathered
    k = None if scale is None else np.asarray(scale)[sel]
    src_rows = s[sel].astype(np.int64) - first
    return _added(prev, dst[sel].astype(np.int64) - lo,
                  lambda slot, count: block(rows, src_rows, slot, k, count, acc, array_namespace(rows)),
                  hi - lo, rows.shape[1], acc)


def gather_scatter_add(src: Array, src_idx: Array, dst_idx: Array, scale: Array | None, num_rows: int,
                       acc_dtype: Any, xp: Any, *, block: Callable[..., Any]) -> Array:  # noqa: ARG001
    """``out[dst_idx[i]] += scale[i] * src[src_idx[i]]``: per position chunk, the ``src`` rows between its
    smallest and largest ``src_idx`` (a bag gradient's ``src_idx`` are the non-decreasing segment ids, so these
    are the rows of the bags the chunk touches, not a row per position); then, per output row chunk, a chain over
    the position chunks (each step NumPy's ``block``)."""
    src = _one_column_chunk(src)
    dst_idx = _aligned(dst_idx, src_idx)
    scale = None if scale is None else _aligned(scale, src_idx)
    g = graph("gather-scatter-add", src, src_idx, dst_idx, scale, num_rows, np.dtype(acc_dtype).str)
    src_bounds, ranges = bounds(src.chunks[0]), _value_ranges(src_idx)
    gathered = []
    for c, sk in enumerate(_keys(src_idx)):
        pieces = [g.add(g.key("src-piece", c, k), _src_piece, sk, (src.name, k, 0), src_bounds[k][0])
                  for k in _overlapping(ranges, src_bounds, c)]
        gathered.append(g.tree("src-merge", (c,), pieces, _concat_src))
    scale_keys: list[Key | None] = [None] * len(gathered) if scale is None else list(_keys(scale))
    out_chunks = chunks_for(num_rows)
    tasks = {}
    for j, (lo, hi) in enumerate(bounds(out_chunks)):
        prev: Key | None = None
        for c, (dk, sk, pk) in enumerate(zip(_keys(dst_idx), _keys(src_idx), scale_keys, strict=True)):
            prev = g.add(g.key("step", j, c), _gather_scatter_step, prev, dk, sk, pk, gathered[c], lo, hi,
                         np.dtype(acc_dtype), block)
        tasks[(j, 0)] = (_same, prev)
    return g.array("gather-scatter-add", (out_chunks, (src.shape[1],)), np.dtype(acc_dtype), tasks)


# ---------------------------------------------------------------------------------------------------------
# Segments
# ---------------------------------------------------------------------------------------------------------

def segment_ids(offsets: Array, n: int, xp: Any) -> Array:  # noqa: ARG001
    """Bag of every position, chunked like the flattened input: a searchsorted per pair of chunks, or, for the
    layout's regular offsets, ``position // length`` with each chunk's range of bags recorded."""
    import dask.array as da

    lay = _layout.get()
    if lay is None or lay.regular is None or lay.regular[0] != offsets.name:
        return _searched_segment_ids(offsets, n)
    pos = da.arange(n, dtype=offsets.dtype, chunks=chunks_for(n))
    length = lay.regular[1]
    seg = pos // length
    lay.value_ranges[seg.name] = [(lo // length, (hi - 1) // length + 1) if hi > lo else (0, 0)
                                  for lo, hi in bounds(pos.chunks[0])]
    return seg


SegPiece = tuple[int, int, np.ndarray, int]  # (first position, end position, their bags, bag of later ones)


def _segment_piece(offs: np.ndarray, first_bag: int, start: int, stop: int) -> SegPiece | None:
    """The bags of positions ``[start, stop)`` that one offsets chunk (bags ``first_bag...``) decides: those from
    its first offset up to its last one; positions at or after its last offset belong to its last bag unless a
    later chunk decides them.  None when the chunk decides nothing here (empty, or after ``stop``)."""
    offs = np.asarray(offs)
    if offs.shape[0] == 0 or int(offs[0]) >= stop:
        return None
    lo, hi = min(max(int(offs[0]), start), stop), min(max(int(offs[-1]), start), stop)
    bags = np.searchsorted(offs, np.arange(lo, hi, dtype=offs.dtype), side="right") - 1 + first_bag
    return lo, hi, bags.astype(offs.dtype, copy=False), first_bag + offs.shape[0] - 1


def _assemble_segments(pieces: list[SegPiece | None], start: int, stop: int, dtype: Any) -> np.ndarray:
    """One position chunk's bags from the offsets chunks' pieces, in offsets order (a later piece decides from
    its first offset on)."""
    live = [p for p in pieces if p is not None]
    out = np.empty(stop - start, dtype=dtype)
    for i, (lo, hi, bags, last) in enumerate(live):
        out[lo - start:hi - start] = bags
        fill_end = live[i + 1][0] if i + 1 < len(live) else stop
        out[hi - start:fill_end - start] = last
    return out


def _searched_segment_ids(offsets: Array, n: int) -> Array:
    """Bag of every position (``searchsorted(offsets[1:], pos, side="right")``): per (position chunk, offsets
    chunk), the positions that chunk's offsets span, searched in that chunk only, then assembled per position
    chunk -- linear in the positions, where a search of every position chunk in every offsets chunk is not."""
    g = graph("segment-ids", offsets, n)
    pos_bounds, offs_bounds = bounds(chunks_for(n)), bounds(offsets.chunks[0])
    tasks = {}
    for c, (start, stop) in enumerate(pos_bounds):
        pieces = [g.add(g.key("segment-piece", c, k), _segment_piece, (offsets.name, k), first, start, stop)
                  for k, (first, _) in enumerate(offs_bounds)]
        tasks[(c,)] = (_assemble_segments, pieces, start, stop, offsets.dtype)
    return g.array("segment-ids", (tuple(b - a for a, b in pos_bounds),), offsets.dtype, tasks)


def _bag_range(seg: np.ndarray) -> tuple[int, int]:
    seg = np.asarray(seg)
    return (0, 0) if seg.shape[0] == 0 else (int(seg[0]), int(seg[-1]) + 1)


def _local_offsets(seg: np.ndarray, sel: np.ndarray, blo: int, bhi: int) -> np.ndarray:
    """CSR offsets over the bags ``[blo, bhi)`` of the selected positions (``seg`` non-decreasing)."""
    return np.searchsorted(seg[sel], np.arange(blo, bhi + 1), side="left")


def _sum_part(idx: np.ndarray, seg: np.ndarray, scale: np.ndarray | None, w: np.ndarray, lo: int,
              acc: np.dtype[Any], block: Callable[..., Any]) -> Part:
    """Per-bag sums of this chunk's positions whose index lies in ``w``'s rows (``block``: NumPy's
    ``gather_segment_sum``)."""
    from array_api_compat import array_namespace

    idx, seg = np.asarray(idx).astype(np.int64), np.asarray(seg)
    blo, bhi = _bag_range(seg)
    sel = np.flatnonzero((idx >= lo) & (idx < lo + w.shape[0]))
    csr = _local_offsets(seg, sel, blo, bhi)
    k = None if scale is None else np.asarray(scale)[sel]
    sums = block(w, idx[sel] - lo, csr, k, acc, array_namespace(w))
    return blo, bhi, {"sums": np.asarray(sums, dtype=acc)}


def _max_part(idx: np.ndarray, seg: np.ndarray, w: np.ndarray, lo: int, pos0: int) -> Part:
    """Per-bag, per-feature max of this chunk's positions in ``w``'s rows over the non-NaN rows, with the global
    position and row of its first occurrence; and the first position of each bag here, its row, its NaN mask."""
    idx, seg = np.asarray(idx).astype(np.int64), np.asarray(seg)
    blo, bhi = _bag_range(seg)
    nb, dim = bhi - blo, w.shape[1]
    li = np.flatnonzero((idx >= lo) & (idx < lo + w.shape[0]))
    s = seg[li]
    f: dict[str, np.ndarray] = {
        "val": np.zeros((nb, dim), dtype=w.dtype), "pos": np.full((nb, dim), _NONE, dtype=np.int64),
        "row": np.full((nb, dim), -1, dtype=np.int64), "fpos": np.full(nb, _NONE, dtype=np.int64),
        "fnan": np.zeros((nb, dim), dtype=bool), "frow": np.full(nb, -1, dtype=np.int64)}
    if li.shape[0] == 0:
        return blo, bhi, f
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    bag = s[starts] - blo
    rows = w[idx[li] - lo]
    nan = np.isnan(rows)
    m = np.maximum.reduceat(np.where(nan, -np.inf, rows), starts, axis=0)
    has = np.logical_or.reduceat(~nan, starts, axis=0)
    run_of = np.repeat(np.arange(starts.shape[0]), np.diff(np.r_[starts, s.shape[0]]))
    eq = (rows == m[run_of]) & ~nan
    first = np.minimum.reduceat(np.where(eq, np.arange(s.shape[0])[:, None], s.shape[0]), starts, axis=0)
    firstc = np.minimum(first, s.shape[0] - 1)
    f["val"][bag] = np.where(has, np.take_along_axis(rows, firstc, axis=0), 0)
    f["pos"][bag] = np.where(has, pos0 + li[firstc], _NONE)
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


def _merge_max(acc: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Two max partials over the same bags: the larger value, the earlier position on ties; the earlier first
    element."""
    b_has, a_has = b["pos"] != _NONE, acc["pos"] != _NONE
    better = b_has & (~a_has | (b["val"] > acc["val"]) | ((b["val"] == acc["val"]) & (b["pos"] < acc["pos"])))
    out = {name: np.where(better, b[name], acc[name]) for name in ("val", "pos", "row")}
    earlier = b["fpos"] < acc["fpos"]
    out["fpos"] = np.where(earlier, b["fpos"], acc["fpos"])
    out["frow"] = np.where(earlier, b["frow"], acc["frow"])
    out["fnan"] = np.where(earlier[:, None], b["fnan"], acc["fnan"])
    return out


def _merge(parts: list[Part], kind: str) -> Part:
    """Combine bag partials (``sum``: add; ``max``: first-occurrence max)."""
    live = [p for p in parts if p[1] > p[0]]
    if not live:
        return parts[0]
    lo, hi = min(p[0] for p in live), max(p[1] for p in live)
    acc = _expand(live[0], lo, hi)
    for p in live[1:]:
        b = _expand(p, lo, hi)
        acc = {name: acc[name] + b[name] for name in acc} if kind == "sum" else _merge_max(acc, b)
    return lo, hi, acc


def _slice_part(part: Part, lo: int, hi: int) -> Part:
    plo, phi, f = part
    a, b = max(plo, lo), min(phi, hi)
    if b <= a:
        return 0, 0, {name: x[:0] for name, x in f.items()}
    return a, b, {name: x[a - plo:b - plo] for name, x in f.items()}


def _max_final(part: Part, lo: int, hi: int, dtype: np.dtype[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Values and arg-rows of bags ``[lo, hi)``: a NaN first element sticks, empty bags give 0 and -1."""
    f = _expand(part, lo, hi)
    has = f["pos"] != _NONE
    fnan = f["fnan"] & (f["fpos"] != _NONE)[:, None]
    out = np.where(fnan, np.asarray(np.nan, dtype=dtype), np.where(has, f["val"], 0)).astype(dtype)
    argrow = np.where(fnan, f["frow"][:, None], np.where(has, f["row"], -1))
    return out, argrow


def _field(part: Part, lo: int, hi: int, name: str) -> np.ndarray:
    return _expand(part, lo, hi)[name]


def _item(t: tuple[Any, ...], i: int) -> Any:
    return t[i]


PartTask = Callable[[int, int, Key, Key, Key | None, Key, int], tuple[Any, ...]]


def _segment_reduce(stage: str, kind: str, weight: Array, idx: Array, offsets: Array, scale: Array | None,
                    part_task: PartTask, xp: Any) -> tuple[Graph, list[tuple[int, int]], list[Key]]:
    """Per-bag partials of every (position chunk, row chunk) pair (``part_task(c, pos0, idx_key, seg_key,
    scale_key, weight_key, lo)``), tree-reduced over the row chunks (``_merge`` of ``kind``) and routed to the
    output's bag chunks: the graph, the bag chunk bounds, and one merged partial key per bag chunk."""
    w = _one_column_chunk(weight)
    n, num_bags = int(idx.shape[0]), int(offsets.shape[0]) - 1
    seg = _aligned(segment_ids(offsets, n, xp), idx)
    scale = None if scale is None else _aligned(scale, idx)
    g = graph(stage, w, idx, offsets, seg, scale)
    row_bounds = bounds(w.chunks[0])
    starts = _known_starts(idx, stage)
    scale_keys: list[Key | None] = [None] * len(starts) if scale is None else list(_keys(scale))
    chunk_parts = []
    for c, (ik, sk, pk) in enumerate(zip(_keys(idx), _keys(seg), scale_keys, strict=True)):
        parts = [g.add(g.key(f"{stage}-part", c, j), *part_task(c, starts[c], ik, sk, pk, (w.name, j, 0), lo))
                 for j, (lo, _) in enumerate(row_bounds)]
        chunk_parts.append(g.tree(f"{stage}-rows", (c,), parts, _merge, kind))
    bag_bounds, ranges = bounds(chunks_for(num_bags)), _value_ranges(seg)
    routes: list[list[int]] = [[] for _ in bag_bounds]
    for c in range(len(chunk_parts)):
        for k in _overlapping(ranges, bag_bounds, c):
            routes[k].append(c)
    merged = []
    for k, (lo, hi) in enumerate(bag_bounds):
        pieces = [g.add(g.key(f"{stage}-route", k, c), _slice_part, chunk_parts[c], lo, hi)
                  for c in routes[k] or [0]]
        merged.append(g.tree(f"{stage}-bags", (k,), pieces, _merge, kind))
    return g, bag_bounds, merged


def gather_segment_sum(weight: Array, idx: Array, offsets: Array, scale: Array | None, acc_dtype: Any,
                       xp: Any, *, block: Callable[..., Any]) -> Array:
    """Per-bag sums in ``acc_dtype``: chunk-pair partial sums (xembed's NumPy segment sum), added."""
    acc = np.dtype(acc_dtype)

    def part(_c: int, _pos0: int, ik: Key, sk: Key, pk: Key | None, wk: Key, lo: int) -> tuple[Any, ...]:
        return _sum_part, ik, sk, pk, wk, lo, acc, block

    g, bag_bounds, merged = _segment_reduce("segment-sum", "sum", weight, idx, offsets, scale, part, xp)
    tasks = {(k, 0): (_field, mk, lo, hi, "sums") for k, ((lo, hi), mk) in enumerate(zip(bag_bounds, merged,
                                                                                          strict=True))}
    return g.array("segment-sum", (tuple(hi - lo for lo, hi in bag_bounds), (weight.shape[1],)), acc, tasks)


def gather_segment_max(weight: Array, idx: Array, offsets: Array, need_arg: bool,
                       xp: Any) -> tuple[Array, Array | None]:
    """Per-bag, per-feature max with the first-occurrence and NaN rules: chunk-pair partials (the max over the
    non-NaN rows with its global position, and the bag's first element), merged."""
    dtype = np.dtype(weight.dtype)

    def part(_c: int, pos0: int, ik: Key, sk: Key, _pk: Key | None, wk: Key, lo: int) -> tuple[Any, ...]:
        return _max_part, ik, sk, wk, lo, pos0

    g, bag_bounds, merged = _segment_reduce("segment-max", "max", weight, idx, offsets, None, part, xp)
    finals = [g.add(g.key("segment-max-final", k), _max_final, mk, lo, hi, dtype)
              for k, ((lo, hi), mk) in enumerate(zip(bag_bounds, merged, strict=True))]
    chunks = (tuple(hi - lo for lo, hi in bag_bounds), (weight.shape[1],))
    values = g.array("segment-max", chunks, dtype, {(k, 0): (_item, fk, 0) for k, fk in enumerate(finals)})
    if not need_arg:
        return values, None
    itype = offsets.dtype
    argrow = g.array("segment-argmax", chunks, itype,
                     {(k, 0): (_cast, (_item, fk, 1), itype) for k, fk in enumerate(finals)})
    return values, argrow


def _cast(x: np.ndarray, dtype: Any) -> np.ndarray:
    return np.asarray(x).astype(dtype, copy=False)


def gather_segment_min(weight: Array, idx: Array, offsets: Array, need_arg: bool,
                       xp: Any) -> tuple[Array, Array | None]:
    """EXT-MIN: :func:`gather_segment_max` of the negated table (negated lazily, chunk by chunk), negated back;
    empty bags give +0."""
    values, argrow = gather_segment_max(-weight, idx, offsets, need_arg, xp)
    nonempty = (offsets[1:] > offsets[:-1])[:, None]
    return xp.where(nonempty, -values, xp.zeros((), dtype=values.dtype)), argrow


# ---------------------------------------------------------------------------------------------------------
# Stable partition (static-shape padding compaction)
# ---------------------------------------------------------------------------------------------------------

def _count_kept(keep: np.ndarray) -> int:
    return int(np.count_nonzero(keep))


def _destinations(keep: np.ndarray, c: int, counts: list[int], start: int) -> np.ndarray:
    """Output position of every entry of position chunk ``c``: kept entries first, the others after all kept
    ones, each group in input order."""
    keep = np.asarray(keep)
    kept_before, total = sum(counts[:c]), sum(counts)
    rank_kept = np.cumsum(keep) - 1
    rank_other = np.cumsum(~keep) - 1
    return np.where(keep, kept_before + rank_kept, total + (start - kept_before) + rank_other)


def _route_piece(dest: np.ndarray, values: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    sel = (dest >= lo) & (dest < hi)
    return dest[sel] - lo, np.asarray(values)[sel]


def _assemble(pieces: list[tuple[np.ndarray, np.ndarray]], size: int) -> np.ndarray:
    first = pieces[0][1]
    out = np.empty((size, *first.shape[1:]), dtype=first.dtype)
    for pos, vals in pieces:
        out[pos] = vals
    return out


def partition(keep: Array, arrays: tuple[Array, ...], xp: Any) -> tuple[Array, ...]:  # noqa: ARG001
    """Each array with its entries where ``keep`` first, then the others, both in input order, chunked like
    ``keep``: per-chunk counts, then every chunk's entries routed to the output chunks they land in."""
    g = graph("partition", keep, *arrays)
    starts = _known_starts(keep, "partition")
    counts = [g.add(g.key("kept", c), _count_kept, kk) for c, kk in enumerate(_keys(keep))]
    all_counts = g.add(g.key("kept-all"), _same, counts)
    dests = [g.add(g.key("dest", c), _destinations, kk, c, all_counts, starts[c]) for c, kk in enumerate(_keys(keep))]
    out = []
    for a, array in enumerate(arrays):
        x = _aligned(array, keep)
        g.deps.append(x)
        tasks = {}
        for k, (lo, hi) in enumerate(bounds(keep.chunks[0])):
            pieces = [g.add(g.key("piece", a, k, c), _route_piece, dk, xk, lo, hi)
                      for c, (dk, xk) in enumerate(zip(dests, _keys(x), strict=True))]
            tasks[(k, *(0,) * (x.ndim - 1))] = (_assemble, pieces, hi - lo)
        out.append(g.array(f"partition{a}", (keep.chunks[0], *x.chunks[1:]), x.dtype, tasks))
    return tuple(out)


# ---------------------------------------------------------------------------------------------------------
# Value checks (per-block tasks between the caller's arrays and the core)
# ---------------------------------------------------------------------------------------------------------

def _check_index_block(block: np.ndarray, n_rows: int, shape: tuple[int, ...],
                       block_info: dict[Any, Any] | None = None) -> np.ndarray:
    """``DASK-CHECKS``: the block itself, or the eager path's IndexError with the global position."""
    b = np.asarray(block)
    bad = (b < 0) | (b >= n_rows)
    if b.size and bool(bad.any()):
        start = [lo for lo, _ in block_info[0]["array-location"]] if block_info else [0] * b.ndim
        loc = np.unravel_index(int(np.argmax(bad)), b.shape)
        glob = tuple(s + int(i) for s, i in zip(start, loc, strict=True))
        where: Any = glob[0] if len(shape) == 1 else glob
        msg = (f"index {int(b[loc])} at position {where} of `input` is out of range for a weight with "
               f"{n_rows} rows (valid: 0 <= index < {n_rows}; negative indices are not wrapped)")
        raise IndexError(msg)
    return b


def checked_indices(x: Array, n_rows: int) -> Array:
    """``x`` with every block passed through the index-range check (ERR-INDEX-RANGE at ``.compute()``)."""
    return x.map_blocks(_check_index_block, n_rows, tuple(x.shape), dtype=x.dtype)


def _check_lengths_block(block: np.ndarray, n: int, block_info: dict[Any, Any] | None = None) -> np.ndarray:
    """EXT-LENGTHS-VALUES for one block, compared in the lengths' own dtype (VAL-EXACT)."""
    b = np.asarray(block)
    bad = (b < 0) | (b > n)
    if b.size and bool(bad.any()):
        start = block_info[0]["array-location"][0][0] if block_info else 0
        i = int(np.argmax(bad))
        value = int(b[i])
        what = "non-negative" if value < 0 else f"at most the number of indices in `input` ({n})"
        msg = f"every entry of `lengths` must be {what}, but lengths[{start + i}] = {value}"
        raise ValueError(msg)
    return b


def checked_lengths(lengths: Array, n: int) -> Array:
    """``lengths`` with every block passed through the lengths range check (EXT-LENGTHS-VALUES)."""
    return lengths.map_blocks(_check_lengths_block, n, dtype=lengths.dtype)


def _check_offsets_block(block: np.ndarray, prev: np.ndarray | None, start: int, is_last: bool, n: int,
                         include_last_offset: bool, source: str) -> np.ndarray:
    """``DASK-CHECKS``: the offsets rules of the eager path for one block (``prev``: the block before), in the
    offsets' own dtype or on Python ints (VAL-EXACT)."""
    b = np.asarray(block)
    if b.shape[0] == 0:
        return b
    error = first_offset_error(int(b[0])) if start == 0 else None
    if error is not None:
        raise error
    full = b if prev is None or np.asarray(prev).shape[0] == 0 else np.concatenate([np.asarray(prev)[-1:], b])
    shift = start - (full.shape[0] - b.shape[0])
    dec = full[1:] < full[:-1]
    if bool(dec.any()):
        pos = int(np.argmax(dec)) + 1 + shift
        raise decrease_error(pos, int(full[pos - shift]), int(full[pos - shift - 1]), source)
    error = last_offset_error(int(b[-1]), n, include_last_offset, source) if is_last else None
    if error is not None:
        raise error
    return b


def _after(block: np.ndarray, _ok: Any) -> np.ndarray:
    return block


def checked_offsets(offsets: Array, n: int, include_last_offset: bool, source: str = "offsets") -> Array:
    """``offsets`` whose every block waits for the offsets rules of every block (ERR-OFFSETS-*, or the lengths
    rules when ``source="lengths"``), so no result is computed from bad offsets."""
    g = graph("check-offsets", offsets, n, include_last_offset, source)
    ob = bounds(offsets.chunks[0])
    checks = [g.add(g.key("check", k), _check_offsets_block, (offsets.name, k),
                    (offsets.name, k - 1) if k else None, lo, k == len(ob) - 1, n, include_last_offset, source)
              for k, (lo, _) in enumerate(ob)]
    ok = g.tree("offsets-ok", (), checks, _same)
    return g.array("checked-offsets", offsets.chunks, offsets.dtype,
                   {(k,): (_after, ck, ok) for k, ck in enumerate(checks)})


def waiting_for(x: Array, checked: Array) -> Array:
    """``x`` whose every block waits for the first block of ``checked`` (checked offsets: it waits for every
    offsets check), so that no result, even one that reads no offsets, is computed from bad offsets."""
    g = graph("waiting-for", x, checked)
    first = (checked.name, *(0,) * checked.ndim)
    return g.array("waiting-for", x.chunks, x.dtype,
                   {bi: (_after, (x.name, *bi), first) for bi in np.ndindex(*x.numblocks)})
