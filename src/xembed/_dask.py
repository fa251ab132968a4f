"""Dask wiring (spec DASK-*): dask arrays run through the core like every other array.

The semantics are the core's; the chunk-pair graphs are the dask primitives (:mod:`._primitives._dask`).  What
this module adds around a core call is what only dask needs:

* NumPy arguments next to dask arrays become one-chunk dask arrays; blocks must be NumPy arrays and chunk sizes
  known (DASK-DISPATCH);
* the value checks become per-block tasks between the caller's arrays and the core (DASK-CHECKS);
* ``max_norm`` reads a renormed copy of the table, renormed row chunk by row chunk (DASK-RENORM);
* the chunk :class:`~._primitives._dask.Layout` (the weight's row chunks, the input's chunks, the output's bag
  chunks) is set around the core call and its pullback, and the gradients come back chunked like the weight's
  rows (DASK-GRAD, DASK-SPARSE).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from array_api_compat import is_dask_array, is_numpy_array

from . import _core
from . import _validate as v
from ._dtypes import index_dtype
from ._primitives import _dask as prims
from ._sparse import SparseGrad
from ._typing import Array

__all__ = ["DaskSparseGrad", "as_dask", "embedding", "embedding_bag", "renorm"]


def _to_dask(name: str, x: Any) -> Array:
    import dask.array as da

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


def as_dask(**arrays: Any) -> tuple[Any, ...]:
    """``DASK-DISPATCH``: the arguments in order, every array a dask array (one of them is), None kept."""
    return tuple(None if x is None else _to_dask(name, x) for name, x in arrays.items())


def _rows_only(weight: Array) -> Array:
    """The weight in its row chunks, one chunk along D (DASK-CHUNKS)."""
    return weight.rechunk({1: -1}) if len(weight.chunks[1]) > 1 else weight


def _flat_chunks(x: Array) -> tuple[int, ...]:
    """Chunks of ``reshape(x, (-1,))`` for ``x`` chunked along its first axis only."""
    if x.ndim == 0:
        return (1,)
    per_row = math.prod(int(s) for s in x.shape[1:])
    return tuple(int(c) * per_row for c in x.chunks[0])


def _first_axis_chunks(x: Array) -> Array:
    """``x`` chunked along its first axis only (the core flattens the input; trailing chunks are merged).  An
    empty input is one chunk (dask cannot reshape an empty array of several chunks)."""
    if math.prod(x.shape) == 0:
        return x.rechunk(-1) if x.npartitions > 1 else x
    merge = {a: -1 for a in range(1, x.ndim) if len(x.chunks[a]) > 1}
    return x.rechunk(merge) if merge else x


# ---------------------------------------------------------------------------------------------------------
# max_norm (DASK-RENORM)
# ---------------------------------------------------------------------------------------------------------

def _renorm_block(w: np.ndarray, counts: np.ndarray, max_norm: float, norm_type: float) -> np.ndarray:
    """One row chunk of the table, renormed where the input references it (RENORM-FUNCTIONAL, on NumPy)."""
    return np.asarray(_core.renorm(w, np.flatnonzero(np.asarray(counts)), max_norm, norm_type,
                                   _numpy_namespace()))


def _numpy_namespace() -> Any:
    from array_api_compat import array_namespace

    return array_namespace(np.empty(0))


def _renormed(weight: Array, checked_input: Array, max_norm: float, norm_type: float, xp: Any) -> Array:
    """The renormed table, chunked like ``weight`` (itself unchanged): each row chunk renormed by its own task from
    the input's counts of that chunk's rows (the bincount primitive), so nothing is gathered."""
    with prims.use_layout(prims.Layout(rows=tuple(weight.chunks[0]))):
        flat = xp.reshape(checked_input, (-1,))
        counts = prims.bincount(flat, int(weight.shape[0]), xp)
    g = prims.graph("renormed", weight, counts, max_norm, norm_type)
    tasks = {(j, 0): (_renorm_block, (weight.name, j, 0), (counts.name, j), max_norm, norm_type)
             for j in range(weight.numblocks[0])}
    return g.array("renormed", weight.chunks, weight.dtype, tasks)


def renorm(weight: Any, input: Any, max_norm: float, norm_type: float, xp: Any) -> Array:
    """``xembed.renorm`` on checked dask arrays (``DASK-RENORM``): lazy, chunked like the weight's rows; index
    errors are raised at ``.compute()`` (``DASK-CHECKS``)."""
    w = _rows_only(weight)
    checked = prims.checked_indices(_first_axis_chunks(input), int(w.shape[0]))
    return _renormed(w, checked, max_norm, norm_type, xp)


# ---------------------------------------------------------------------------------------------------------
# Gradients
# ---------------------------------------------------------------------------------------------------------

class DaskSparseGrad(SparseGrad):
    """``DASK-SPARSE``: :class:`xembed.SparseGrad` whose ``indices`` / ``values`` are dask arrays chunked along the
    input's positions (unknown chunk sizes -- NaN -- when ``padding_idx`` drops positions); ``to_dense()`` is the
    dense gradient as a dask array chunked like the weight's rows."""

    __slots__ = ("row_chunks",)

    def __init__(self, grad: SparseGrad, row_chunks: tuple[int, ...]):
        # the core's own arrays, valid by construction (their sizes may be unknown: no checked __init__)
        self.indices, self.values, self.shape = grad.indices, grad.values, grad.shape
        self.row_chunks = row_chunks

    @property
    def nnz(self) -> int:
        n = self.indices.shape[0]
        if math.isnan(n):
            msg = "`nnz` of a dask SparseGrad with padding is known only after `indices.compute_chunk_sizes()`"
            raise ValueError(msg)
        return int(n)

    def to_dense(self) -> Array:
        with prims.use_layout(prims.Layout(rows=self.row_chunks, dim=self.shape[1])):
            dense = super().to_dense()
        return _chunked_like_rows(dense, self.row_chunks)

    def __repr__(self) -> str:
        return f"DaskSparseGrad(shape={self.shape}, dtype={self.values.dtype}, row_chunks={self.row_chunks})"


def _chunked_like_rows(grad: Array, row_chunks: tuple[int, ...]) -> Array:
    chunks = (row_chunks, (grad.shape[1],))
    return grad if grad.chunks == chunks else grad.rechunk(chunks)


def _weight_grad(grad: Any, layout: prims.Layout) -> Any:
    if isinstance(grad, SparseGrad):
        return DaskSparseGrad(grad, layout.rows)
    return _chunked_like_rows(grad, layout.rows)


def _grad_output(grad: Any, chunks: tuple[tuple[int, ...], ...]) -> Array:
    """``grad_output`` as a dask array in ``chunks`` (the core's output chunks; NumPy arrays converted); anything
    else is left to the core's checks (GRAD-OUTPUT-ARGS)."""
    import dask.array as da

    if is_numpy_array(grad):
        grad = da.from_array(grad, chunks=-1)  # type: ignore[no-untyped-call]
    shape = tuple(sum(c) for c in chunks)
    if is_dask_array(grad) and tuple(grad.shape) == shape and grad.chunks != chunks:
        return grad.rechunk(chunks)  # type: ignore[no-untyped-call]
    return grad


def _with_layout(out: Array, pullback: Callable[[Any], Any] | None, layout: prims.Layout,
                 finish: Callable[[Any], Any], chunks: tuple[tuple[int, ...], ...]) -> Any:
    """The forward's result in ``chunks`` (DASK-CHUNKS), and (when asked) its pullback run under ``layout``, on
    ``grad_output`` in the core's output chunks, with ``finish`` on its result."""
    core_chunks = out.chunks
    if out.chunks != chunks:
        out = out.rechunk(chunks)
    if pullback is None:
        return out

    def dask_pullback(grad_output: Any) -> Any:
        with prims.use_layout(layout):
            return finish(pullback(_grad_output(grad_output, core_chunks)))

    return out, dask_pullback


# ---------------------------------------------------------------------------------------------------------
# embedding / embedding_bag
# ---------------------------------------------------------------------------------------------------------

def embedding(input: Array, weight: Array, padding_idx: int | None, max_norm: float | None, norm_type: float,
              scale_grad_by_freq: bool, sparse: bool, xp: Any, want_vjp: bool) -> Any:
    """The core's ``embedding_vjp`` on checked dask arrays (DASK-CHECKS, DASK-RENORM, DASK-CHUNKS)."""
    w = _rows_only(weight)
    x = prims.checked_indices(_first_axis_chunks(input), int(w.shape[0]))
    layout = prims.Layout(rows=tuple(w.chunks[0]), positions=_flat_chunks(x), dim=int(w.shape[1]))
    with prims.use_layout(layout):
        if max_norm is not None:
            w = _renormed(w, x, max_norm, norm_type, xp)
        out, pullback = _core.embedding_vjp(x, w, padding_idx, scale_grad_by_freq, sparse, xp)
    return _with_layout(out, pullback if want_vjp else None, layout, lambda gw: _weight_grad(gw, layout),
                        (*input.chunks, (int(w.shape[1]),)))


def _bag_chunks(x: Array, offsets: Array | None, lengths: Array | None, include_last_offset: bool) -> tuple[int, ...]:
    """DASK-CHUNKS: the output's bag chunks (a 2-D input's row chunks, else the offsets' or lengths' chunks)."""
    if x.ndim == 2:
        return tuple(int(c) for c in x.chunks[0])
    bag_array: Array = lengths if lengths is not None else offsets
    sizes = [int(c) for c in bag_array.chunks[0]]
    if lengths is None and include_last_offset:
        sizes[-1] -= 1
    return tuple(s for s in sizes if s > 0) or (0,)


def _as_regular_bags(x: Array, psw: Array | None, bags: tuple[int, ...],
                     xp: Any) -> tuple[Array, Array, Array | None, tuple[str, int]]:
    """A non-empty 2-D input (B, L) as the flat input, its offsets ``arange(B + 1) * L`` and the flat
    per-sample weights; the offsets are named in the layout, so that the primitives know which bags each
    position chunk holds (BAG-LAYOUT-2D; DASK-COMBINE: no routing of every partial to every bag chunk)."""
    import dask.array as da

    length = int(x.shape[1])
    itype = index_dtype(xp, None)
    offsets = da.arange(0, int(x.shape[0]) * length + 1, length, dtype=itype,
                        chunks=((*bags[:-1], bags[-1] + 1),))
    flat_psw = None if psw is None else xp.reshape(_chunked_like(psw, x), (-1,))
    return xp.reshape(x, (-1,)), offsets, flat_psw, (offsets.name, length)


def _chunked_like(y: Array, x: Array) -> Array:
    """``y`` with ``x``'s shape and chunks (a gradient of the per-sample weights, or the weights themselves)."""
    y = y.reshape(tuple(int(s) for s in x.shape))
    return y if y.chunks == x.chunks else y.rechunk(x.chunks)


def embedding_bag(input: Array, weight: Array, offsets: Array | None, lengths: Array | None,
                  per_sample_weights: Array | None, a: v.BagArgs, xp: Any, want_vjp: bool) -> Any:
    """The core's ``embedding_bag_vjp`` on checked dask arrays (DASK-CHECKS, DASK-RENORM, DASK-CHUNKS)."""
    w = _rows_only(weight)
    x = prims.checked_indices(_first_axis_chunks(input), int(w.shape[0]))
    bags = _bag_chunks(x, offsets, lengths, a.include_last_offset)
    shaped, regular = x, None  # shaped: the input in its first-axis chunks, the psw gradient's layout
    if x.ndim == 2 and math.prod(x.shape) > 0:
        x, offsets, per_sample_weights, regular = _as_regular_bags(x, per_sample_weights, bags, xp)
        a = dataclasses.replace(a, include_last_offset=True)
    n = int(x.shape[0])
    if lengths is not None:  # EXT-LENGTHS: the one derivation, on checked lengths, then the offsets rules
        offsets = v.offsets_from_lengths(prims.checked_lengths(lengths, n), n, xp)
        offsets = prims.checked_offsets(offsets, n, True, source="lengths")
        a = dataclasses.replace(a, include_last_offset=True)
    elif x.ndim == 1 and regular is None:
        offsets = prims.checked_offsets(offsets, n, a.include_last_offset)
    if offsets is not None and regular is None:  # the regular offsets are built here: nothing to wait for
        x = prims.waiting_for(x, offsets)
    psw = per_sample_weights
    if psw is not None and psw.chunks != x.chunks:
        psw = psw.rechunk(x.chunks)
    layout = prims.Layout(rows=tuple(w.chunks[0]), positions=_flat_chunks(x), bags=bags, dim=int(w.shape[1]),
                          regular=regular)
    with prims.use_layout(layout):
        if a.max_norm is not None:
            w = _renormed(w, x, a.max_norm, a.norm_type, xp)
        out, pullback = _core.embedding_bag_vjp(x, w, offsets, psw, a, xp, want_vjp)

    def finish(grads: tuple[Any, Any]) -> tuple[Any, Any]:
        grad_w, grad_psw = grads
        if grad_psw is not None:
            grad_psw = _chunked_like(grad_psw, shaped)
        return _weight_grad(grad_w, layout), grad_psw

    return _with_layout(out, pullback if want_vjp else None, layout, finish, (bags, (int(w.shape[1]),)))


# ---------------------------------------------------------------------------------------------------------
# quantized tables (QUANT-DASK)
# ---------------------------------------------------------------------------------------------------------

def _quantized_rows(input: Array, packed: Array, bits: int, dim: int, xp: Any) -> tuple[Array, Array]:
    """The checked input in its first-axis chunks (DASK-CHECKS), and the dequantized rows (n, dim) float32 of the
    packed table at its flat positions, chunked like them: each position chunk reads only the packed row chunks
    its indices fall in."""
    from ._primitives import _quantized as qprim

    w = _rows_only(packed)
    x = prims.checked_indices(_first_axis_chunks(input), int(w.shape[0]))
    layout = prims.Layout(rows=tuple(w.chunks[0]), positions=_flat_chunks(x), dim=int(w.shape[1]))
    with prims.use_layout(layout):
        return x, qprim.gather_rows(w, bits, dim, xp.reshape(x, (-1,)), xp)


def quantized_embedding(input: Array, packed: Array, bits: int, dim: int, xp: Any) -> Array:
    """``embedding`` of a quantized table whose packed rows are a dask array: its rows at ``input``, chunked like
    ``input`` (QUANT-DASK)."""
    x, rows = _quantized_rows(input, packed, bits, dim, xp)
    out = xp.reshape(rows, (*tuple(int(s) for s in x.shape), dim))
    chunks = (*input.chunks, (dim,))
    return out if out.chunks == chunks else out.rechunk(chunks)


def quantized_embedding_bag(input: Array, packed: Array, bits: int, dim: int, offsets: Array | None,
                            lengths: Array | None, per_sample_weights: Array | None, a: v.BagArgs, xp: Any) -> Array:
    """``embedding_bag`` of a quantized table whose packed rows are a dask array (QUANT-DASK): the float bags
    (:func:`embedding_bag`) of the dequantized rows at the input's positions, each position reading its own row;
    padding positions read one extra zero row, which is the padding row of that call, so they stay out of every
    reduction and divisor as padding entries do."""
    import dask.array as da

    x, rows = _quantized_rows(input, packed, bits, dim, xp)
    flat_chunks = _flat_chunks(x)
    n = sum(flat_chunks)
    positions = da.arange(n, dtype=index_dtype(xp, None), chunks=(flat_chunks,))
    if a.padding_idx is not None:
        positions = xp.where(xp.reshape(x, (-1,)) == a.padding_idx, n, positions)
        rows = xp.concat([rows, xp.zeros((1, dim), dtype=rows.dtype)], axis=0)
        a = dataclasses.replace(a, padding_idx=n)
    positions = xp.reshape(positions, tuple(int(s) for s in x.shape))
    return embedding_bag(positions, rows, offsets, lengths, per_sample_weights, a, xp, False)
