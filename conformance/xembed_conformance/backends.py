"""Backend adapters -- the public protocol between the checker and an array library.

The checker generates every value as a float64 / int64 NumPy array (values exact in the requested
dtype) and hands it to a :class:`Backend`, which builds the library's arrays, reads results back,
names their dtype and device, takes gradients (when the library has autograd) and writes the
reproduction snippets.  Adding a library (JAX, Dask, ...) needs no change to the checker:

.. code-block:: python

    from xembed_conformance.backends import Backend, register_backend

    class JaxBackend(Backend):
        name = "jax"
        float_dtypes = ("float16", "bfloat16", "float32")
        renorm_in_place = False  # immutable arrays: max_norm cannot renorm the caller's weight

        def asarray(self, values, dtype):
            import jax.numpy as jnp
            return jnp.asarray(values.astype(jnp.dtype(dtype)))

        def to_numpy(self, x):
            return np.asarray(x, dtype=np.float64 if x.dtype.kind == "f" else None)

        def dtype_name(self, x):
            return str(x.dtype)

        def is_array(self, x):
            import jax
            return isinstance(x, jax.Array)

        def repro_import(self):
            return "import jax.numpy as jnp"

        def repro_convert(self, numpy_expr, dtype):
            return f"jnp.asarray({numpy_expr}.astype(jnp.{dtype}))"

    register_backend("jax", JaxBackend)

then ``xembed-conformance --backend jax`` (from Python: ``run_conformance(..., backend="jax")``), or,
with no registration at all, ``--backend mypkg.backends:JaxBackend``.

Gradients: a backend whose ``autograd`` is True implements :meth:`Backend.requires_grad`,
:meth:`Backend.backward`, :meth:`Backend.grad` and :meth:`Backend.sparse_parts` (torch-style autograd);
otherwise gradients come from the target's ``embedding_vjp`` / ``embedding_bag_vjp`` functions
(docs/conformance.md > Write a target).
"""

from __future__ import annotations

import base64
import importlib
import math
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from xembed_conformance.cases import NDArray

FLOAT_EPS = {
    "float16": 2.0**-10,
    "bfloat16": 2.0**-7,
    "float32": 2.0**-23,
    "float64": 2.0**-52,
}

#: arrays with more elements than this are written into repros as compressed bytes
LITERAL_MAX = 256


class UnknownBackendError(ValueError):
    """--backend names no registered backend (a checker-side error: exit status 2)."""


def _fmt_float(x: Any) -> str:
    if isinstance(x, list):
        return "[" + ", ".join(_fmt_float(v) for v in x) + "]"
    if math.isnan(x):
        return "float('nan')"
    if x in (float("inf"), float("-inf")):
        return "float('inf')" if x > 0 else "-float('inf')"
    return repr(float(x))


def literal(values: NDArray) -> str:
    """Python literal (nested lists) for ``values``; floats use round-trip repr."""
    if values.dtype == np.bool_:
        return repr(values.tolist())
    if np.issubdtype(values.dtype, np.integer):
        return repr(values.astype(np.int64).tolist())
    return _fmt_float(values.astype(np.float64).tolist())


def numpy_literal(values: NDArray) -> str:
    """A NumPy expression (float64, int64 or bool) that rebuilds ``values`` exactly, shape included.

    Small arrays are nested-list literals (``.reshape`` keeps the shape of empty arrays); larger
    ones are the raw bytes, zlib-compressed and base64-encoded (a repro stays pasteable).
    """
    v = np.asarray(values)
    base = "np.bool_" if v.dtype == np.bool_ else ("np.int64" if v.dtype.kind in "iu" else "np.float64")
    v = v.astype(bool if v.dtype == np.bool_ else (np.int64 if v.dtype.kind in "iu" else np.float64))
    if v.size > LITERAL_MAX:
        blob = base64.b64encode(zlib.compress(v.tobytes(), 9)).decode("ascii")
        return (f"np.frombuffer(zlib.decompress(base64.b64decode({blob!r})), dtype={base})"
                f".reshape({tuple(v.shape)!r}).copy()")
    expr = f"np.asarray({literal(v)}, dtype={base})"
    if v.size == 0 or v.ndim == 0:
        expr += f".reshape({tuple(v.shape)!r})"
    return expr


def needs_blob_imports(values: NDArray) -> bool:
    return bool(np.asarray(values).size > LITERAL_MAX)


class Backend:
    """Adapter for one array library.  Subclass, set the class attributes, implement the methods
    marked *required*, and :func:`register_backend` it.

    Class attributes:
        name: the ``--backend`` name.
        float_dtypes / int_dtypes: the dtype names (NumPy spelling) the library has; rows for
            other dtypes are not generated.
        autograd: gradients through the library's autograd (see the gradient methods);
            False: through the target's ``*_vjp`` functions.
        renorm_in_place: False for immutable arrays: max_norm's renorm cannot reach the caller's
            weight, so the checker expects the weight unchanged and the output read from the
            renormed rows (RENORM-INPLACE's functional form).
        traced: the target runs traced (``jax.jit``): array values cannot be read, so the error rows whose
            error depends on them check the spec's JIT-INVALID-* NaN rows instead (checks/traced.py).
    """

    name = "?"
    float_dtypes: tuple[str, ...] = ()
    int_dtypes: tuple[str, ...] = ("int32", "int64")
    autograd = False
    renorm_in_place = True
    traced = False

    def __init__(self, device: str | None = None):
        self.device = device

    def close(self) -> None:
        """Undo what the backend changed in the library's process-wide settings (the run is over)."""

    # conversion (required) --------------------------------------------------------------------
    def asarray(self, values: NDArray, dtype: str) -> Any:
        """The library's array of `values` (NumPy) in dtype `dtype` (a NumPy-style name) on the device."""
        raise NotImplementedError

    def to_numpy(self, x: Any) -> NDArray:
        """`x` as a NumPy array (float64 for floating arrays is fine)."""
        raise NotImplementedError

    def dtype_name(self, x: Any) -> str:
        """NumPy-style dtype name of `x` ("float32", "bfloat16", "int64", ...)."""
        raise NotImplementedError

    def is_array(self, x: Any) -> bool:
        """Whether `x` is an array of this library."""
        raise NotImplementedError

    def device_of(self, x: Any) -> str:
        return str(getattr(x, "device", "cpu"))

    def expected_device(self) -> str:
        return self.device_of(self.asarray(np.zeros(1), self.float_dtypes[-1]))

    # gradient protocol (only when autograd is True) --------------------------------------------
    def requires_grad(self, x: Any) -> Any:
        """Mark `x` as a leaf that needs a gradient; return the array to pass to the target."""
        raise NotImplementedError(self._no_autograd())

    def is_connected(self, out: Any) -> bool:
        """Whether `out` carries a gradient history."""
        raise NotImplementedError(self._no_autograd())

    def backward(self, out: Any, grad_out: Any) -> None:
        raise NotImplementedError(self._no_autograd())

    def grad(self, x: Any) -> Any:
        """The gradient accumulated on leaf `x` (None if none)."""
        raise NotImplementedError(self._no_autograd())

    def _no_autograd(self) -> str:
        return f"backend {self.name!r} has no autograd"

    def sparse_parts(self, g: Any) -> tuple[NDArray, Any, tuple[int, ...], Any] | None:
        """(row indices, values array, shape, dense array) of a sparse gradient; None if `g` is dense."""
        del g  # no sparse gradients by default
        return None

    def detach(self, x: Any) -> Any:
        return x

    # calling the target (optional hooks) ------------------------------------------------------------
    def wrap_call(self, name: str, fn: Any) -> Any:
        """The callable the checker calls for the target's function `name` (``embedding``, ``embedding_bag``,
        ``embedding_vjp``, ``embedding_bag_vjp``).  The checker's error catching surrounds the returned callable,
        so a backend whose arrays are lazy computes them here (errors raised at ``.compute()`` are then the call's
        errors), and a compiling mode (``jax-jit``) compiles here.  Default: `fn` unchanged."""
        del name
        return fn

    def skip_reason(self, check_id: str, spec: tuple[str, ...]) -> str | None:
        """Why check `check_id` (checking spec rules `spec`) does not apply to this backend, or None (it runs).
        The reason is printed in the report as the check's skip message."""
        del check_id, spec
        return None

    # reproduction snippets (required for repros) --------------------------------------------------
    def repro_import(self) -> str:
        """Import line(s) a repro needs besides ``import numpy as np``."""
        return ""

    def repro_convert(self, numpy_expr: str, dtype: str) -> str:
        """Expression turning `numpy_expr` (a float64 / int64 / bool NumPy array) into this library's
        array of dtype `dtype`."""
        raise NotImplementedError

    def repro_array(self, values: NDArray, dtype: str) -> str:
        return self.repro_convert(numpy_literal(values), dtype)

    def repro_weight_after(self) -> str:
        """Expression printing the weight after the call, given a variable ``weight``."""
        return "weight"


class NumpyBackend(Backend):
    name = "numpy"
    float_dtypes: tuple[str, ...] = ("float16", "float32", "float64")

    def asarray(self, values: NDArray, dtype: str) -> Any:
        return np.asarray(values).astype(np.dtype(dtype))

    def to_numpy(self, x: Any) -> NDArray:
        return np.asarray(x)

    def dtype_name(self, x: Any) -> str:
        return np.asarray(x).dtype.name if isinstance(x, np.ndarray) else type(x).__name__

    def device_of(self, x: Any) -> str:  # noqa: ARG002 - NumPy arrays live on the CPU
        return "cpu"

    def is_array(self, x: Any) -> bool:
        return isinstance(x, np.ndarray)

    def repro_convert(self, numpy_expr: str, dtype: str) -> str:
        return f"{numpy_expr}.astype(np.{'bool_' if dtype == 'bool' else dtype})"


class TorchBackend(Backend):
    name = "torch"
    float_dtypes: tuple[str, ...] = ("float16", "bfloat16", "float32", "float64")
    autograd = True

    def __init__(self, device: str | None = None):
        import torch

        self.torch = torch
        super().__init__(device or "cpu")

    def asarray(self, values: NDArray, dtype: str) -> Any:
        t = self.torch
        arr = np.asarray(values)
        if dtype == "bool":
            return t.tensor(arr.astype(bool), device=self.device)
        src = arr.astype(np.float64) if dtype in FLOAT_EPS else np.array(arr, copy=True)
        return t.from_numpy(np.array(src, copy=True, order="C")).to(dtype=getattr(t, dtype), device=self.device)

    def to_numpy(self, x: Any) -> NDArray:
        x = x.detach()
        if x.layout != self.torch.strided:
            x = x.to_dense()
        x = x.cpu()
        if x.dtype in (self.torch.float16, self.torch.bfloat16):
            x = x.to(self.torch.float64)
        return x.resolve_conj().resolve_neg().numpy()

    def dtype_name(self, x: Any) -> str:
        return str(x.dtype).removeprefix("torch.")

    def is_array(self, x: Any) -> bool:
        return isinstance(x, self.torch.Tensor)

    def requires_grad(self, x: Any) -> Any:
        return x.requires_grad_(True)

    def is_connected(self, out: Any) -> bool:
        return bool(getattr(out, "requires_grad", False))

    def backward(self, out: Any, grad_out: Any) -> None:
        out.backward(grad_out)

    def grad(self, x: Any) -> Any:
        return x.grad

    def detach(self, x: Any) -> Any:
        return x.detach()

    def sparse_parts(self, g: Any) -> tuple[NDArray, Any, tuple[int, ...], Any] | None:
        if g.layout == self.torch.strided:
            return None
        if g.layout != self.torch.sparse_coo:
            return (np.zeros(0, np.int64), None, tuple(g.shape), None)
        return (g._indices().cpu().numpy().reshape(-1), g._values(), tuple(g.shape), g)

    def repro_import(self) -> str:
        return "import torch"

    def repro_convert(self, numpy_expr: str, dtype: str) -> str:
        return f"torch.from_numpy({numpy_expr}).to(dtype=torch.{dtype}, device={self.device!r})"


class ArrayApiStrictBackend(Backend):
    name = "array_api_strict"
    float_dtypes: tuple[str, ...] = ("float32", "float64")

    def __init__(self, device: str | None = None):
        import array_api_strict

        self.xp = array_api_strict
        super().__init__(device)

    def asarray(self, values: NDArray, dtype: str) -> Any:
        return self.xp.asarray(np.asarray(values).astype(np.dtype(dtype)))

    def to_numpy(self, x: Any) -> NDArray:
        try:
            return np.from_dlpack(x)
        except Exception:  # noqa: BLE001 - bool arrays have no DLPack export on some versions
            return np.asarray(x)

    def dtype_name(self, x: Any) -> str:
        return str(x.dtype).split(".")[-1]

    def is_array(self, x: Any) -> bool:
        return isinstance(x, self.xp._array_object.Array)

    def repro_import(self) -> str:
        return "import array_api_strict as xp"

    def repro_convert(self, numpy_expr: str, dtype: str) -> str:
        return f"xp.asarray({numpy_expr}.astype(np.{'bool_' if dtype == 'bool' else dtype}))"


class CupyBackend(Backend):
    name = "cupy"
    float_dtypes: tuple[str, ...] = ("float16", "float32", "float64")

    def __init__(self, device: str | None = None):
        import cupy

        self.cp = cupy
        super().__init__(device or "cuda")

    def asarray(self, values: NDArray, dtype: str) -> Any:
        return self.cp.asarray(np.asarray(values).astype(np.dtype(dtype)))

    def to_numpy(self, x: Any) -> NDArray:
        return self.cp.asnumpy(x)

    def dtype_name(self, x: Any) -> str:
        return str(x.dtype.name)

    def is_array(self, x: Any) -> bool:
        return isinstance(x, self.cp.ndarray)

    def repro_import(self) -> str:
        return "import cupy as cp"

    def repro_convert(self, numpy_expr: str, dtype: str) -> str:
        return f"cp.asarray({numpy_expr}.astype(np.{'bool_' if dtype == 'bool' else dtype}))"


def jax_settings(jax: Any) -> dict[str, Any]:
    """What the checker's JAX backends set: ``jax_enable_x64`` (float64 rows, int64 indices) and XLA's
    compilations kept in ``~/.cache/xembed-conformance/jax`` (``$XDG_CACHE_HOME/...``), unless the user chose a
    cache directory.  On JAX, compiling each new array shape is most of a run's time, and a run draws the same
    shapes again from the same seed.  No size limit: JAX's size-limited cache takes a file lock and lists the
    directory on every access, which costs more than it saves when several processes compile at once."""
    settings: dict[str, Any] = {"jax_enable_x64": True}
    if not (jax.config.jax_compilation_cache_dir or os.environ.get("JAX_COMPILATION_CACHE_DIR")):
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        settings["jax_compilation_cache_dir"] = str(Path(base) / "xembed-conformance" / "jax")
        settings["jax_persistent_cache_min_compile_time_secs"] = 0.0  # the default, 1 s, keeps none of ours
    return settings


class JaxBackend(Backend):
    """JAX, eager.  Immutable arrays: ``renorm_in_place = False`` (RENORM-FUNCTIONAL: the weight is
    unchanged, the output reads the renormed rows).  Gradients through the target's ``*_vjp`` functions.
    ``jax_enable_x64`` is switched on (float64 rows, int64 indices), and XLA's compilations persist across runs
    (:func:`jax_settings`), until :meth:`close`."""

    name = "jax"
    float_dtypes: tuple[str, ...] = ("float16", "bfloat16", "float32", "float64")
    renorm_in_place = False

    def __init__(self, device: str | None = None):
        jax: Any = importlib.import_module("jax")  # typed Any: the checker is typed without jax's stubs
        settings = jax_settings(jax)
        self._restore = {name: getattr(jax.config, name) for name in settings}
        for name, value in settings.items():
            jax.config.update(name, value)
        self.jax, self.jnp = jax, importlib.import_module("jax.numpy")
        super().__init__(device)

    def close(self) -> None:
        """JAX's settings as they were before the run: a program (or test session) that runs the checker in its
        own process gets back its dtypes and its compilation cache."""
        for name, value in self._restore.items():
            self.jax.config.update(name, value)
        self._restore = {}

    def asarray(self, values: NDArray, dtype: str) -> Any:
        a = np.asarray(values)
        if dtype == "bfloat16":
            return self.jnp.asarray(a.astype(np.float32)).astype(self.jnp.bfloat16)
        return self.jnp.asarray(a.astype(np.dtype("bool" if dtype == "bool" else dtype)))

    def to_numpy(self, x: Any) -> NDArray:
        if str(x.dtype) in ("float16", "bfloat16"):
            x = x.astype("float64")
        return np.asarray(x)

    def dtype_name(self, x: Any) -> str:
        return str(x.dtype)

    def device_of(self, x: Any) -> str:
        return str(next(iter(x.devices())))

    def is_array(self, x: Any) -> bool:
        return isinstance(x, self.jax.Array)

    def repro_import(self) -> str:
        return "import jax\njax.config.update('jax_enable_x64', True)\nimport jax.numpy as jnp"

    def repro_convert(self, numpy_expr: str, dtype: str) -> str:
        if dtype == "bfloat16":
            return f"jnp.asarray({numpy_expr}.astype(np.float32)).astype(jnp.bfloat16)"
        return f"jnp.asarray({numpy_expr}.astype(np.{'bool_' if dtype == 'bool' else dtype}))"


class JaxJitBackend(JaxBackend):
    """JAX under ``jax.jit``: every call is ``jax.jit(functools.partial(fn, **options))(arrays)`` --
    options (Python values) static, arrays traced; ``*_vjp`` calls jit the forward and the pullback separately.
    A ``sparse=True`` pullback with ``padding_idx`` runs eagerly (JIT-SPARSE-PAD: the number of sparse entries
    depends on the values).  Error rows whose error depends on array values check JIT-INVALID-*'s NaN rows."""

    name = "jax-jit"
    traced = True

    def _split(self, kw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        arrays = {k: v for k, v in kw.items() if isinstance(v, self.jax.Array)}
        return arrays, {k: v for k, v in kw.items() if k not in arrays}

    def wrap_call(self, name: str, fn: Any) -> Any:
        import functools

        jit = self.jax.jit

        if not name.endswith("_vjp"):
            def call(*args: Any, **kw: Any) -> Any:
                arrays, static = self._split(kw)
                return jit(functools.partial(fn, **static))(*args, **arrays)

            return call

        def call_vjp(*args: Any, **kw: Any) -> Any:
            arrays, static = self._split(kw)
            f = functools.partial(fn, **static)
            out = jit(lambda *a, **k: f(*a, **k)[0])(*args, **arrays)

            def pullback(g: Any) -> Any:
                if static.get("sparse") and static.get("padding_idx") is not None:  # JIT-SPARSE-PAD: eager only
                    return f(*args, **arrays)[1](g)
                return jit(lambda g_, *a, **k: f(*a, **k)[1](g_))(g, *args, **arrays)

            return out, pullback

        return call_vjp

    def repro_import(self) -> str:
        return super().repro_import() + "\n# the checker called the functions under jax.jit (options static)"


class DaskBackend(Backend):
    """Dask arrays: every array in 2 chunks along every axis (chunk boundaries are exercised).  The
    target's lazy results are computed at the call (``.compute()``, by the current scheduler -- a
    ``dask.distributed`` client when one is set), so value errors raised at ``.compute()`` (DASK-CHECKS) are
    the call's errors; outputs stay dask arrays with their chunks.  ``renorm_in_place = False`` (DASK-RENORM)."""

    name = "dask"
    float_dtypes: tuple[str, ...] = ("float16", "float32", "float64")
    renorm_in_place = False

    def __init__(self, device: str | None = None):
        self.dask: Any = importlib.import_module("dask")  # typed Any: dask ships no annotations
        self.da: Any = importlib.import_module("dask.array")
        super().__init__(device)

    def asarray(self, values: NDArray, dtype: str) -> Any:
        a = np.asarray(values).astype(np.dtype(dtype))
        return self.da.from_array(a, chunks=tuple(max(1, -(-s // 2)) for s in a.shape))

    def to_numpy(self, x: Any) -> NDArray:
        return np.asarray(x.compute() if isinstance(x, self.da.Array) else x)

    def dtype_name(self, x: Any) -> str:
        return str(np.dtype(x.dtype).name)

    def device_of(self, x: Any) -> str:  # noqa: ARG002 - NumPy blocks live on the CPU
        return "cpu"

    def is_array(self, x: Any) -> bool:
        return isinstance(x, self.da.Array)

    def _persist(self, x: Any) -> Any:
        if isinstance(x, self.da.Array):
            chunks = x.chunks
            # computed here, so the graph's value errors (DASK-CHECKS) are the call's errors (a distributed
            # client's persist() would return futures and raise only later); the result keeps its chunks
            # (unknown chunk sizes, a sparse gradient with padding_idx: the checker reads shapes)
            value = x.compute()
            if any(math.isnan(c) for cs in chunks for c in cs):
                return self.da.from_array(value)
            return self.da.from_array(value, chunks=chunks)
        if isinstance(x, tuple):
            return tuple(self._persist(y) for y in x)
        if isinstance(getattr(x, "indices", None), self.da.Array):  # a sparse gradient of dask arrays
            x.indices, x.values = self._persist(x.indices), self._persist(x.values)
        return x

    def wrap_call(self, name: str, fn: Any) -> Any:
        if not name.endswith("_vjp"):
            return lambda *args, **kw: self._persist(fn(*args, **kw))

        def call_vjp(*args: Any, **kw: Any) -> Any:
            out, pullback = fn(*args, **kw)
            return self._persist(out), lambda g: self._persist(pullback(g))

        return call_vjp

    def repro_import(self) -> str:
        return "import dask.array as da"

    def repro_convert(self, numpy_expr: str, dtype: str) -> str:
        return f"da.from_array({numpy_expr}.astype(np.{'bool_' if dtype == 'bool' else dtype}), chunks=2)"

    def repro_weight_after(self) -> str:
        return "weight.compute()"


BackendFactory = Callable[[str | None], Backend]
_REGISTRY: dict[str, BackendFactory] = {
    "numpy": NumpyBackend,
    "torch": TorchBackend,
    "array_api_strict": ArrayApiStrictBackend,
    "cupy": CupyBackend,
    "jax": JaxBackend,
    "jax-jit": JaxJitBackend,
    "dask": DaskBackend,
}
#: kept for callers of the old name
BACKENDS = _REGISTRY


def register_backend(name: str, factory: BackendFactory, *, replace: bool = False) -> None:
    """Make ``--backend NAME`` build its adapter with ``factory(device)`` (usually a Backend subclass)."""
    if name in _REGISTRY and not replace:
        msg = f"backend {name!r} is already registered (pass replace=True to override it)"
        raise ValueError(msg)
    _REGISTRY[name] = factory


def registered_backends() -> list[str]:
    return sorted(_REGISTRY)


def resolve_backend(name: str) -> BackendFactory:
    """The factory for `name`: a registered name, or ``module:attr`` naming a Backend subclass."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:
        mod, _, attr = name.partition(":")
        try:
            obj = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as e:
            msg = f"cannot load backend {name!r}: {type(e).__name__}: {e}"
            raise UnknownBackendError(msg) from e
        if not callable(obj):
            msg = f"backend {name!r} is not a Backend class or factory"
            raise UnknownBackendError(msg)
        return obj
    msg = f"unknown backend {name!r}; choose from {registered_backends()} or give module:BackendClass"
    raise UnknownBackendError(msg)


def make_backend(name: str, device: str | None = None) -> Backend:
    return resolve_backend(name)(device)


# torch-version detection lives with the reference; exported here too (tests import it from either module)
from xembed_conformance.reference import bag_sgbf_grad_bug, torch_version_tuple  # noqa: E402

__all__ = [
    "BACKENDS", "FLOAT_EPS", "ArrayApiStrictBackend", "Backend", "BackendFactory", "CupyBackend", "DaskBackend",
    "JaxBackend", "JaxJitBackend", "NumpyBackend", "TorchBackend", "UnknownBackendError", "bag_sgbf_grad_bug",
    "literal", "make_backend", "numpy_literal", "register_backend", "registered_backends", "resolve_backend",
    "torch_version_tuple",
]
