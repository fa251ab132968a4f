"""Fused CuPy ``RawKernel`` gather-reduce primitives (same contracts as :mod:`._numpy_fast`).

One warp per bag (per unique row for the scatter): the 32 lanes load 32 positions' indices / scales at once
and broadcast them with ``__shfl_sync``; each lane then owns ``VEC`` consecutive columns of the row
(``float4`` loads for float32 tables whose row length is a multiple of 4, ``float2``/``double2`` when a
multiple of 2), so a row is read with fully coalesced 16-byte transactions and the gathered rows never go
through global memory. The reduction order is fixed (positions in order), so results are deterministic;
the scatter-add is a sort + segment sum (no atomics), hence bitwise reproducible.

``gather_segment_sum(weight, idx, offsets, scale=None, acc_dtype=None)`` -> (B, D) ``acc_dtype``
``gather_segment_max(weight, idx, offsets, valid=None)`` -> (values (B, D) weight dtype, argpos (B, D) int64)
``scatter_add_rows(idx, rows, num_rows)`` -> (num_rows, D) ``rows.dtype`` (float32 accumulation for halves)
``gather_scatter_add(src, src_idx, dst_idx, scale, num_rows, acc_dtype=None)`` -> (num_rows, D) ``acc_dtype``

Inputs are trusted (the core validates): indices in range, offsets non-decreasing from 0 to ``len(idx)``.
Import needs CuPy; nothing here runs without a CUDA device.
"""

from __future__ import annotations

import functools
from typing import Any

import cupy as cp

from .._dtypes import acc_numpy_dtype

__all__ = ["gather_scatter_add", "gather_segment_max", "gather_segment_sum", "scatter_add_rows"]

_WARPS = 8  # warps (bags) per block of 256 threads

_CTYPE = {"float16": "__half", "float32": "float", "float64": "double"}

_PRELUDE = r"""
#include <cuda_fp16.h>
__device__ __forceinline__ float  to_acc_f(float x)  { return x; }
__device__ __forceinline__ float  to_acc_f(__half x) { return __half2float(x); }
__device__ __forceinline__ double to_acc_d(double x) { return x; }
__device__ __forceinline__ double to_acc_d(float x)  { return (double)x; }
__device__ __forceinline__ double to_acc_d(__half x) { return (double)__half2float(x); }
"""

# --- sum ---------------------------------------------------------------------------------------------------
# T: table element type; A: accumulator type; V: vector width (1, 2 or 4); VT: vector type of T (if V > 1)
_SUM_SRC = r"""
extern "C" __global__ void __KNAME__(
    const T* __restrict__ W, long long ldw, const long long* __restrict__ idx, const long long* __restrict__ offs,
    const T* __restrict__ scale, A* __restrict__ out, long long B, int D, int has_scale)
{
    const int lane = threadIdx.x & 31;
    const long long bag = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (bag >= B) return;
    const long long s = offs[bag], e = offs[bag + 1];
    const int DV = D / V;                       // vectors per row
    for (int c0 = 0; c0 < DV; c0 += 32) {
        const int c = c0 + lane;
        A acc[V];
        #pragma unroll
        for (int k = 0; k < V; ++k) acc[k] = (A)0;
        for (long long p0 = s; p0 < e; p0 += 32) {
            const int cnt = (int)min((long long)32, e - p0);
            long long my_i = 0;
            A my_s = (A)1;
            if (lane < cnt) {
                my_i = idx[p0 + lane];
                if (has_scale) my_s = TO_ACC(scale[p0 + lane]);
            }
            #pragma unroll 4
            for (int j = 0; j < cnt; ++j) {
                const long long r = __shfl_sync(0xffffffffu, my_i, j);
                const A sc = __shfl_sync(0xffffffffu, my_s, j);
                if (c < DV) {
                    const T* row = W + r * ldw + (long long)c * V;
                    LOAD_AND_ACCUMULATE
                }
            }
        }
        if (c < DV) {
            A* o = out + bag * (long long)D + (long long)c * V;
            STORE
        }
    }
}
"""

# --- max ---------------------------------------------------------------------------------------------------
_MAX_SRC = r"""
extern "C" __global__ void __KNAME__(
    const T* __restrict__ W, long long ldw, const long long* __restrict__ idx, const long long* __restrict__ offs,
    const unsigned char* __restrict__ valid, T* __restrict__ vals, long long* __restrict__ argpos,
    long long B, int D, int has_valid)
{
    const int lane = threadIdx.x & 31;
    const long long bag = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (bag >= B) return;
    const long long s = offs[bag], e = offs[bag + 1];
    for (int c0 = 0; c0 < D; c0 += 32 * CPL) {
        // each lane owns CPL columns c0 + lane + 32 * k (coalesced across the warp)
        A cur[CPL];
        long long arg[CPL];
        #pragma unroll
        for (int k = 0; k < CPL; ++k) { cur[k] = (A)0; arg[k] = -1; }
        for (long long p0 = s; p0 < e; p0 += 32) {
            const int cnt = (int)min((long long)32, e - p0);
            long long my_i = 0;
            int my_ok = 0;
            if (lane < cnt) {
                my_i = idx[p0 + lane];
                my_ok = has_valid ? (int)valid[p0 + lane] : 1;
            }
            #pragma unroll 4
            for (int j = 0; j < cnt; ++j) {
                const long long r = __shfl_sync(0xffffffffu, my_i, j);
                const int ok = __shfl_sync(0xffffffffu, my_ok, j);
                if (!ok) continue;                    // warp-uniform
                const T* row = W + r * ldw;
                #pragma unroll
                for (int k = 0; k < CPL; ++k) {
                    const int c = c0 + lane + 32 * k;
                    if (c < D) {
                        const A v = TO_ACC(row[c]);
                        // torch's scan: the first valid element initialises, later ones replace iff strictly
                        // greater (ties -> first; a leading NaN sticks; a later NaN is never chosen)
                        if (arg[k] < 0 || v > cur[k]) { cur[k] = v; arg[k] = p0 + j; }
                    }
                }
            }
        }
        #pragma unroll
        for (int k = 0; k < CPL; ++k) {
            const int c = c0 + lane + 32 * k;
            if (c < D) {
                const long long o = bag * (long long)D + c;
                argpos[o] = arg[k];
                vals[o] = arg[k] < 0 ? (T)0.0f : W[idx[arg[k]] * ldw + c];   // the chosen element, bit-exact
            }
        }
    }
}
"""

_cache: dict[tuple[str | int, ...], Any] = {}


def _vec_width(weight: Any, d: int) -> int:
    """Widest vector load allowed by the dtype, the row length ``d``, the row stride and the base alignment."""
    cands: tuple[int, ...]
    if weight.dtype == cp.float32:
        cands = (4, 2)
    elif weight.dtype == cp.float64:
        cands = (2,)
    else:
        return 1
    item = weight.dtype.itemsize
    ldw = weight.strides[0] // item
    ok = [v for v in cands if d % v == 0 and ldw % v == 0 and weight.data.ptr % (v * item) == 0]
    # widest vector that still keeps all 32 lanes busy (D=64 fp32 -> float2, D>=128 -> float4)
    for v in ok:
        if d // v >= 32:
            return v
    return ok[-1] if ok and d // ok[-1] >= 16 else 1


def _sum_kernel(tname: str, aname: str, v: int) -> Any:
    V = v  # the kernel's macro name
    key = ("sum", tname, aname, V)
    k = _cache.get(key)
    if k is not None:
        return k
    T, A = _CTYPE[tname], _CTYPE[aname]
    to_acc = "to_acc_d" if A == "double" else "to_acc_f"
    if V == 1:
        load = "acc[0] += sc * " + to_acc + "(row[0]);"
        store = "o[0] = acc[0];"
    else:
        vt = {("float", 4): "float4", ("float", 2): "float2", ("double", 2): "double2"}[(T, V)]
        comps = "xyzw"[:V]
        load = f"const {vt} v = __ldg(reinterpret_cast<const {vt}*>(row));\n" + "\n".join(
            f"                    acc[{i}] += sc * {to_acc}(v.{ch});" for i, ch in enumerate(comps))
        store = "\n".join(f"            o[{i}] = acc[{i}];" for i in range(V))
    name = f"xembed_seg_sum_{tname}_{aname}_v{V}"
    src = (_PRELUDE + f"#define T {T}\n#define A {A}\n#define V {V}\n#define TO_ACC {to_acc}\n"
           + _SUM_SRC.replace("__KNAME__", name).replace("LOAD_AND_ACCUMULATE", load).replace("STORE", store))
    k = cp.RawKernel(src, name, options=("--std=c++14",))
    _cache[key] = k
    return k


def _max_kernel(tname: str, cpl: int) -> Any:
    CPL = cpl  # the kernel's macro name
    key = ("max", tname, CPL)
    k = _cache.get(key)
    if k is not None:
        return k
    T = _CTYPE[tname]
    A = "double" if T == "double" else "float"
    to_acc = "to_acc_d" if A == "double" else "to_acc_f"
    name = f"xembed_seg_max_{tname}_c{CPL}"
    src = (_PRELUDE + f"#define T {T}\n#define A {A}\n#define CPL {CPL}\n#define TO_ACC {to_acc}\n"
           + _MAX_SRC.replace("__KNAME__", name))
    k = cp.RawKernel(src, name, options=("--std=c++14",))
    _cache[key] = k
    return k


_default_acc = acc_numpy_dtype  # CuPy dtypes are NumPy dtypes


def _prep_weight(weight: Any) -> Any:
    if weight.ndim != 2:
        msg = f"`weight` must be 2-D, got shape {weight.shape}"
        raise ValueError(msg)
    if weight.dtype.name not in _CTYPE:
        msg = f"`weight` dtype {weight.dtype} is not supported by the CuPy kernels"
        raise TypeError(msg)
    if weight.strides[1] != weight.dtype.itemsize or weight.strides[0] % weight.dtype.itemsize:
        weight = cp.ascontiguousarray(weight)
    return weight


def _i64(a: Any) -> Any:
    return cp.ascontiguousarray(cp.asarray(a), dtype=cp.int64)


def gather_segment_sum(weight: Any, idx: Any, offsets: Any, scale: Any | None = None, acc_dtype: Any = None) -> Any:
    """``out[b] = sum_{i in [offsets[b], offsets[b+1])} scale[i] * weight[idx[i]]`` accumulated in ``acc_dtype``."""
    weight = _prep_weight(weight)
    _N, D = weight.shape
    acc = cp.dtype(acc_dtype) if acc_dtype is not None else _default_acc(weight.dtype)
    if acc.name not in ("float32", "float64"):
        msg = f"`acc_dtype` must be float32 or float64, got {acc}"
        raise TypeError(msg)
    if weight.dtype == cp.float64 and acc == cp.float32:
        acc = cp.dtype(cp.float64)  # never accumulate a wider table in a narrower type
    offsets = _i64(offsets)
    B = int(offsets.shape[0]) - 1
    out = cp.empty((max(B, 0), D), dtype=acc)
    if B <= 0 or D == 0:
        return out
    idx = _i64(idx)
    has_scale = scale is not None
    sc = cp.ascontiguousarray(scale, dtype=weight.dtype) if has_scale else idx  # dummy pointer when absent
    V = _vec_width(weight, D)
    if acc != weight.dtype and V > 1:
        V = 1  # vector loads only where table and accumulator share the type (fp32 / fp64)
    k = _sum_kernel(weight.dtype.name, acc.name, V)
    ldw = weight.strides[0] // weight.dtype.itemsize
    grid = ((B + _WARPS - 1) // _WARPS,)
    k(grid, (32 * _WARPS,), (weight, cp.int64(ldw), idx, offsets, sc, out, cp.int64(B), cp.int32(D),
                             cp.int32(1 if has_scale else 0)))
    return out


def gather_segment_max(weight: Any, idx: Any, offsets: Any, valid: Any | None = None) -> tuple[Any, Any]:
    """torch's strict ``>`` scan per bag and feature -> ``(values, argpos)`` (argpos -1 / value 0 when empty)."""
    weight = _prep_weight(weight)
    _N, D = weight.shape
    offsets = _i64(offsets)
    B = int(offsets.shape[0]) - 1
    vals = cp.empty((max(B, 0), D), dtype=weight.dtype)
    argpos = cp.empty((max(B, 0), D), dtype=cp.int64)
    if B <= 0 or D == 0:
        return vals, argpos
    idx = _i64(idx)
    has_valid = valid is not None
    vmask = cp.ascontiguousarray(valid, dtype=cp.bool_).view(cp.uint8) if has_valid else idx
    CPL = 4 if D >= 128 else (2 if D >= 64 else 1)
    k = _max_kernel(weight.dtype.name, CPL)
    ldw = weight.strides[0] // weight.dtype.itemsize
    grid = ((B + _WARPS - 1) // _WARPS,)
    k(grid, (32 * _WARPS,), (weight, cp.int64(ldw), idx, offsets, vmask, vals, argpos, cp.int64(B), cp.int32(D),
                             cp.int32(1 if has_valid else 0)))
    return vals, argpos


def _sort_segments(idx: Any) -> tuple[Any, Any, Any]:
    """Sort ``idx`` (stable): returns (order, unique values, segment offsets (U+1,))."""
    idx = _i64(idx)
    n = int(idx.shape[0])
    order = cp.argsort(idx, kind="stable") if _argsort_has_kind() else cp.argsort(idx)
    sidx = idx[order]
    brk = cp.flatnonzero(sidx[1:] != sidx[:-1]) + 1
    seg = cp.concatenate([cp.zeros(1, cp.int64), brk.astype(cp.int64), cp.full(1, n, cp.int64)])
    uniq = sidx[seg[:-1]]
    return order, uniq, seg


@functools.cache
def _argsort_has_kind() -> bool:
    """Whether ``cupy.argsort`` takes ``kind`` (probed once)."""
    try:
        cp.argsort(cp.zeros(2, cp.int64), kind="stable")
    except Exception:  # noqa: BLE001 - older CuPy: no `kind` (its sort is a stable radix sort anyway)
        return False
    return True


def scatter_add_rows(idx: Any, rows: Any, num_rows: int) -> Any:
    """``out[idx[i]] += rows[i]`` (duplicates accumulate), deterministic: sort + one warp per unique row."""
    rows = cp.asarray(rows)
    D = rows.shape[1]
    out = cp.zeros((int(num_rows), D), dtype=rows.dtype)
    if int(cp.asarray(idx).shape[0]) == 0 or D == 0:
        return out
    order, uniq, seg = _sort_segments(idx)
    sums = gather_segment_sum(rows, order, seg, None, _default_acc(rows.dtype))
    out[uniq] = sums.astype(rows.dtype, copy=False)
    return out


def gather_scatter_add(src: Any, src_idx: Any, dst_idx: Any, scale: Any | None, num_rows: int,
                       acc_dtype: Any = None) -> Any:
    """Fused dense backward ``out[dst_idx[i]] += scale[i] * src[src_idx[i]]`` without an n x D intermediate."""
    src = cp.asarray(src)
    acc = cp.dtype(acc_dtype) if acc_dtype is not None else _default_acc(src.dtype)
    D = src.shape[1]
    out = cp.zeros((int(num_rows), D), dtype=acc)
    if int(cp.asarray(dst_idx).shape[0]) == 0 or D == 0:
        return out
    order, uniq, seg = _sort_segments(dst_idx)
    sc = None if scale is None else cp.asarray(scale)[order]
    out[uniq] = gather_segment_sum(src, _i64(src_idx)[order], seg, sc, acc)
    return out
