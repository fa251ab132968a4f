"""Compiled CPU primitives for NumPy arrays (extra ``xembed[fast]`` = numba; contracts in ``_fallback``).

One fused kernel per primitive: the row gather and the reduction in one loop, no ``n x D`` intermediate,
parallel over bags (``numba.prange``) with the thread count numba is configured for (``NUMBA_NUM_THREADS``,
:func:`numba.set_num_threads`).  Small calls run a serial build of the same kernel (no thread start-up).
Kernels are compiled on first use and cached on disk (``cache=True``; ``NUMBA_CACHE_DIR`` moves the cache);
the serial and parallel builds are distinct functions, hence distinct cache entries.

Threads: the parallel builds run on numba's ``workqueue`` threading layer unless ``NUMBA_THREADING_LAYER``
says otherwise (chosen when this module is imported, if numba's pool has not started yet).  numba's
``omp`` layer shares the OpenMP runtime with torch and would set torch's thread count at every launch;
``workqueue`` leaves it (and any other OpenMP user's) alone.  Whatever the layer, a parallel launch
restores torch's thread count if it changed.

Kernels are used for float32 / float64 weights accumulating in their own dtype; other dtypes (float16,
bfloat16) go, explicitly, to the pure-NumPy implementations of :mod:`._numpy`.  Every kernel is
deterministic and independent of the thread count: a bag (or, for the backward, a column block of the
gradient) is reduced by one thread in position order.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import types as types_
from collections.abc import Iterator
from typing import Any

import numba
import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba.core import cgutils, types
from numba.extending import intrinsic

from .._typing import Array
from . import _numpy

__all__ = ["gather_scatter_add", "gather_segment_max", "gather_segment_sum", "index_bounds",
           "offsets_first_decrease"]

_FAST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# Work (rows x D) below which the serial build runs.
_PARALLEL_MIN_WORK = 1 << 17
# The workqueue threading layer must not launch parallel kernels from two Python threads at once; parallel
# launches are serialised (each already uses every thread numba is allowed).
_PARALLEL_LOCK = threading.Lock()


def _choose_threading_layer() -> None:
    """Run the parallel kernels on numba's ``workqueue`` layer unless the user picked one.

    numba's default order prefers ``omp``, which shares the process' OpenMP runtime with torch (same
    ``libgomp``): every launch would set torch's thread count to numba's.  ``tbb`` needs the separate
    ``tbb`` package; ``workqueue`` is always there and ran the 2-thread forward faster than ``omp`` (measured
    in docs/performance.md).  ``NUMBA_THREADING_LAYER`` in the environment wins; a pool numba has already
    started (by other numba code) keeps its layer.
    """
    config: Any = numba.config
    if "NUMBA_THREADING_LAYER" not in os.environ and str(config.THREADING_LAYER) == "default":
        config.THREADING_LAYER = "workqueue"


_choose_threading_layer()


@contextlib.contextmanager
def _torch_threads_kept() -> Iterator[None]:
    """torch's thread count as it was before the block, whatever numba's layer did to it (``omp`` sets
    the shared OpenMP runtime's count when its pool starts and at every launch)."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else 0
    try:
        yield
    finally:
        if torch is not None and torch.get_num_threads() != before:
            torch.set_num_threads(before)


@contextlib.contextmanager
def _parallel_launch() -> Iterator[None]:
    """One parallel launch at a time, torch's thread count kept."""
    with _torch_threads_kept(), _PARALLEL_LOCK:
        yield


def _parallel_threads(work: int) -> int:
    """numba's thread count when a call doing ``work`` (rows x D) runs a parallel build, else 0 (the
    serial build: thread start-up costs a few microseconds)."""
    if work < _PARALLEL_MIN_WORK:
        return 0
    with _torch_threads_kept():  # the first call starts numba's pool
        threads = int(numba.get_num_threads())
    return threads if threads > 1 else 0


# Rows gathered ahead of use: a random row of a large table is a DRAM miss (~100 ns); prefetching the row
# PREFETCH positions ahead keeps several misses in flight (what fbgemm does), ~15-25 % on V=1e6 tables.
PREFETCH = 8


def element_pointer(context: Any, builder: Any, signature: Any, args: Any) -> Any:
    """LLVM pointer to ``arr[row, col]`` for an intrinsic ``(arr, row, col)``: no bounds check, not even under
    ``NUMBA_BOUNDSCHECK`` (callers pass validated rows only)."""
    aryty = signature.args[0]
    ary = context.make_array(aryty)(context, builder, args[0])
    return cgutils.get_item_pointer(  # type: ignore[no-untyped-call]
        context, builder, aryty, ary, [args[1], args[2]], wraparound=False)


@intrinsic
def _prefetch(_typingctx: Any, arr: Any, row: Any, col: Any) -> Any:  # pragma: no cover - compiled
    """``llvm.prefetch`` of the cache line holding ``arr[row, col]`` (read, high locality)."""
    sig = types.void(arr, row, col)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        ptr = element_pointer(context, builder, signature, args)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")  # type: ignore[no-untyped-call]
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


def _segment_sum(weight: Any, idx: Any, offsets: Any, scale: Any, has_scale: bool, out: Any,
                 line: int) -> None:  # pragma: no cover - compiled
    num_bags = offsets.shape[0] - 1
    dim = weight.shape[1]
    n = idx.shape[0]
    for b in numba.prange(num_bags):
        for i in range(offsets[b], offsets[b + 1]):
            if i + PREFETCH < n:
                ahead = idx[i + PREFETCH]
                for c in range(0, dim, line):
                    _prefetch(weight, ahead, c)  # type: ignore[call-arg]
            r = idx[i]
            if has_scale:
                s = scale[i]
                for d in range(dim):
                    out[b, d] += s * weight[r, d]
            else:
                for d in range(dim):
                    out[b, d] += weight[r, d]


def _segment_max(weight: Any, idx: Any, offsets: Any, out: Any, arg: Any, need_arg: bool,
                 line: int) -> None:  # pragma: no cover - compiled
    num_bags = offsets.shape[0] - 1
    dim = weight.shape[1]
    n = idx.shape[0]
    for b in numba.prange(num_bags):
        start, stop = offsets[b], offsets[b + 1]
        if start == stop:
            for d in range(dim):
                out[b, d] = 0
                if need_arg:
                    arg[b, d] = -1
            continue
        r0 = idx[start]
        for d in range(dim):
            out[b, d] = weight[r0, d]
            if need_arg:
                arg[b, d] = r0
        for i in range(start + 1, stop):
            if i + PREFETCH < n:
                ahead = idx[i + PREFETCH]
                for c in range(0, dim, line):
                    _prefetch(weight, ahead, c)  # type: ignore[call-arg]
            r = idx[i]
            for d in range(dim):
                v = weight[r, d]
                if v > out[b, d]:  # strict: ties keep the first, a leading NaN sticks, a later NaN never wins
                    out[b, d] = v
                    if need_arg:
                        arg[b, d] = r


def _gather_scatter(src: Any, src_idx: Any, dst_idx: Any, scale: Any, has_scale: bool, out: Any,
                    blocks: int) -> None:  # pragma: no cover - compiled
    # One thread per column block: every out[r, d] accumulates in position order, whatever the threads.
    n = dst_idx.shape[0]
    dim = src.shape[1]
    width = (dim + blocks - 1) // blocks
    for blk in numba.prange(blocks):
        d0 = blk * width
        d1 = min(dim, d0 + width)
        for i in range(n):
            r = dst_idx[i]
            g = src_idx[i]
            if has_scale:
                s = scale[i]
                for d in range(d0, d1):
                    out[r, d] += s * src[g, d]
            else:
                for d in range(d0, d1):
                    out[r, d] += src[g, d]


def _bounds(x: Any) -> tuple[Any, Any]:  # pragma: no cover - compiled
    # min / max without branches: the loop vectorises (integers only: no NaN to order)
    lo = x[0]
    hi = x[0]
    for i in range(1, x.shape[0]):
        v = x[i]
        lo = min(lo, v)
        hi = max(hi, v)
    return lo, hi


def _first_decrease(offsets: Any) -> int:  # pragma: no cover - compiled
    for p in range(1, offsets.shape[0]):
        if offsets[p] < offsets[p - 1]:
            return p
    return -1


def _jit(fn: Any, parallel: bool) -> Any:
    return numba.njit(parallel=parallel, cache=True, nogil=True, fastmath=False)(fn)


def _variant(fn: Any, parallel: bool) -> Any:
    """The serial or parallel build of ``fn``, compiled from a copy of it named ``<name>_serial`` /
    ``<name>_parallel``.

    numba names a cache entry after the function's qualified name and keys it by signature and CPU, not by
    the ``parallel`` flag: two builds of one function would load whichever was cached first.  Distinct
    names give distinct cache files.
    """
    suffix = "_parallel" if parallel else "_serial"
    copy = types_.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix, fn.__defaults__,
                               fn.__closure__)
    copy.__qualname__ = fn.__qualname__ + suffix
    copy.__module__ = fn.__module__
    return _jit(copy, parallel)


segment_sum_serial = _variant(_segment_sum, False)
segment_sum_parallel = _variant(_segment_sum, True)
segment_max_serial = _variant(_segment_max, False)
segment_max_parallel = _variant(_segment_max, True)
gather_scatter_serial = _variant(_gather_scatter, False)
gather_scatter_parallel = _variant(_gather_scatter, True)
bounds_kernel = _jit(_bounds, False)
first_decrease_kernel = _jit(_first_decrease, False)
PARALLEL_KERNELS = (segment_sum_parallel, segment_max_parallel, gather_scatter_parallel)

KERNELS = (segment_sum_serial, segment_sum_parallel, segment_max_serial, segment_max_parallel,
           gather_scatter_serial, gather_scatter_parallel, bounds_kernel, first_decrease_kernel)


def _fast(*dtypes: Any) -> bool:
    return all(np.dtype(t) in _FAST_DTYPES for t in dtypes)


def _line(a: np.ndarray) -> int:
    """Elements per 64-byte cache line along a row (the prefetch stride)."""
    return max(1, 64 // a.strides[1]) if a.ndim == 2 and a.strides[1] > 0 else 1


def _c(a: Array) -> np.ndarray:
    return np.ascontiguousarray(a)


def gather_segment_sum(weight: Array, idx: Array, offsets: Array, scale: Array | None, acc_dtype: Any,
                       xp: Any) -> Array:
    if not (_fast(weight.dtype) and np.dtype(acc_dtype) == weight.dtype
            and (scale is None or scale.dtype == weight.dtype)):
        return _numpy.gather_segment_sum(weight, idx, offsets, scale, acc_dtype, xp)
    num_bags, dim = offsets.shape[0] - 1, weight.shape[1]
    out = np.zeros((num_bags, dim), dtype=weight.dtype)
    has_scale = scale is not None
    sc = _c(scale) if has_scale else np.empty(0, dtype=weight.dtype)
    if _parallel_threads(idx.shape[0] * dim):
        with _parallel_launch():
            segment_sum_parallel(weight, _c(idx), _c(offsets), sc, has_scale, out, _line(weight))
    else:
        segment_sum_serial(weight, _c(idx), _c(offsets), sc, has_scale, out, _line(weight))
    return out


def gather_segment_max(weight: Array, idx: Array, offsets: Array, need_arg: bool,
                       xp: Any) -> tuple[Array, Array | None]:
    if not _fast(weight.dtype):
        return _numpy.gather_segment_max(weight, idx, offsets, need_arg, xp)
    num_bags, dim = offsets.shape[0] - 1, weight.shape[1]
    out = np.empty((num_bags, dim), dtype=weight.dtype)
    arg = np.empty((num_bags, dim) if need_arg else (0, 0), dtype=np.int64)
    if _parallel_threads(idx.shape[0] * dim):
        with _parallel_launch():
            segment_max_parallel(weight, _c(idx), _c(offsets), out, arg, need_arg, _line(weight))
    else:
        segment_max_serial(weight, _c(idx), _c(offsets), out, arg, need_arg, _line(weight))
    return out, (arg if need_arg else None)


def gather_scatter_add(src: Array, src_idx: Array, dst_idx: Array, scale: Array | None, num_rows: int,
                       acc_dtype: Any, xp: Any) -> Array:
    if not (_fast(src.dtype) and np.dtype(acc_dtype) == src.dtype
            and (scale is None or scale.dtype == src.dtype)):
        return _numpy.gather_scatter_add(
            src, src_idx, dst_idx, scale, num_rows, acc_dtype, xp)
    dim = src.shape[1]
    out = np.zeros((int(num_rows), dim), dtype=src.dtype)
    has_scale = scale is not None
    sc = _c(scale) if has_scale else np.empty(0, dtype=src.dtype)
    threads = _parallel_threads(dst_idx.shape[0] * dim)
    if threads:
        blocks = max(1, min(threads, dim // 16))
        with _parallel_launch():
            gather_scatter_parallel(_c(src), _c(src_idx), _c(dst_idx), sc, has_scale, out, blocks)
    else:
        gather_scatter_serial(_c(src), _c(src_idx), _c(dst_idx), sc, has_scale, out, 1)
    return out


def index_bounds(x: Array, _xp: Any) -> tuple[int, int]:
    lo, hi = bounds_kernel(_c(x).reshape(-1))
    return int(lo), int(hi)


def offsets_first_decrease(offsets: Array, _xp: Any) -> int:
    return int(first_decrease_kernel(_c(offsets))) if offsets.shape[0] >= 2 else -1
