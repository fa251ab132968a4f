"""The dtype rules, stated once.

* Accumulation (ACC-LOWP, GRAD-ACC): sums, norms and gradients of float16 / bfloat16 tables accumulate in
  float32; float32 and float64 accumulate in their own dtype.  :func:`acc_dtype` states it for any namespace,
  :func:`acc_numpy_dtype` for the NumPy dtypes the compiled kernels see (NumPy, CuPy and Dask blocks).
* Indices: the core computes with the namespace's default indexing dtype (:func:`index_dtype`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._typing import Device, DType, Namespace

__all__ = ["acc_dtype", "acc_numpy_dtype", "index_dtype"]

_ACC: dict[tuple[int, DType], DType] = {}
_INDEX: dict[tuple[int, Any], DType] = {}


def acc_dtype(dtype: DType, xp: Namespace) -> DType:
    """The accumulation dtype of ``dtype`` in namespace ``xp`` (cached per namespace and dtype)."""
    key = (id(xp), dtype)
    acc = _ACC.get(key)
    if acc is None:
        acc = _ACC[key] = xp.float32 if xp.finfo(dtype).bits < 32 else dtype
    return acc


def acc_numpy_dtype(dtype: Any) -> np.dtype[Any]:
    """:func:`acc_dtype` for a NumPy dtype (``ml_dtypes.bfloat16`` included, whose ``finfo`` NumPy lacks)."""
    dt = np.dtype(dtype)
    low = (dt.kind == "f" and dt.itemsize < 4) or dt.name == "bfloat16"
    return np.dtype(np.float32) if low else dt


def index_dtype(xp: Namespace, dev: Device) -> DType:
    """The namespace's default indexing dtype on ``dev`` (int64 on every backend we know).

    Cached per namespace and device, except where the answer follows a run-time flag: JAX's default dtypes
    follow ``jax_enable_x64`` (JAX-DTYPES)."""
    key = (id(xp), dev)
    dt = _INDEX.get(key)
    if dt is None:
        dt = xp.__array_namespace_info__().default_dtypes(device=dev)["indexing"]
        if "jax" not in getattr(xp, "__name__", ""):
            _INDEX[key] = dt
    return dt
