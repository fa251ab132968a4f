"""The conformance checker on dask (issue 13): a ``dask`` backend adapter and a target that computes at the call.

* :class:`DaskBackend` builds dask arrays (2 chunks along every axis, so chunk boundaries are exercised) from the
  checker's NumPy values and reads them back with ``.compute()``.
* This module is also a checker target (``--impl dask_conformance``): xembed on dask arrays whose results are
  computed at the call and handed back as one-chunk dask arrays.  The checker expects an invalid call to raise
  at the call, while xembed's dask path raises its value errors at ``.compute()`` (``DASK-CHECKS``); computing
  inside the target moves them to the call without changing anything else.

Register the backend with the checker (until it has a public backend protocol) by adding ``"dask": DaskBackend``
to ``xembed_conformance.backends.BACKENDS``; ``tests/test_dask.py`` does so for one run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import xembed
from xembed_conformance.backends import Backend, literal


class DaskBackend(Backend):
    name = "dask"
    float_dtypes = ("float16", "float32", "float64")

    def __init__(self, device: str | None = None):
        import dask.array as da

        self.da = da
        super().__init__(device)

    def asarray(self, values: np.ndarray, dtype: str) -> Any:
        a = np.asarray(values).astype(np.dtype(dtype))
        chunks = tuple(max(1, -(-s // 2)) for s in a.shape)
        return self.da.from_array(a, chunks=chunks)  # type: ignore[no-untyped-call]

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x.compute() if isinstance(x, self.da.Array) else x)  # type: ignore[no-untyped-call]

    def dtype_name(self, x: Any) -> str:
        return str(np.dtype(x.dtype).name)

    def device_of(self, x: Any) -> Any:  # noqa: ARG002 - the protocol's signature
        return "cpu"

    def is_array(self, x: Any) -> bool:
        return isinstance(x, self.da.Array)

    def copy(self, x: Any) -> Any:
        return x.copy()

    def repro_imports(self) -> str:
        return "import dask.array as da\nimport numpy as np"

    def repro_array(self, values: np.ndarray, dtype: str) -> str:
        return f"da.from_array(np.asarray({literal(values)}, dtype=np.{dtype}), chunks=2)"


def _one_chunk(x: Any) -> Any:
    import dask.array as da

    if x is None:
        return None
    if isinstance(x, xembed.SparseGrad):
        from xembed._dask import DaskSparseGrad

        return DaskSparseGrad(_one_chunk(x.indices), _one_chunk(x.values), x.shape, (x.shape[0],))
    if isinstance(x, tuple):
        return tuple(_one_chunk(y) for y in x)
    return da.from_array(np.asarray(x.compute()), chunks=-1)  # type: ignore[no-untyped-call]


def embedding(*args: Any, **kwargs: Any) -> Any:
    return _one_chunk(xembed.embedding(*args, **kwargs))


def embedding_bag(*args: Any, **kwargs: Any) -> Any:
    return _one_chunk(xembed.embedding_bag(*args, **kwargs))


def _vjp(fn: Any, *args: Any, **kwargs: Any) -> Any:
    out, pullback = fn(*args, **kwargs)
    return _one_chunk(out), lambda g: _one_chunk(pullback(g))


def embedding_vjp(*args: Any, **kwargs: Any) -> Any:
    return _vjp(xembed.embedding_vjp, *args, **kwargs)


def embedding_bag_vjp(*args: Any, **kwargs: Any) -> Any:
    return _vjp(xembed.embedding_bag_vjp, *args, **kwargs)
