"""Shared helpers for xembed's example-based tests.

The ``Backend`` enum is modelled on array-api-extra's ``Backend``: one member per array library (and device) the
tests run on.  ``conftest.py`` turns it into the ``backend`` / ``xp`` / ``device`` fixtures.

The oracle is always torch.nn.functional on CPU in float64: inputs are built on the backend under test (so a
low-precision weight is quantised there), copied back to a CPU float64/int64 torch tensor with ``to_torch64`` and
fed to ``F.embedding`` / ``F.embedding_bag``.  Expected values are never hard-coded from xembed's output.
"""

from __future__ import annotations

import enum
import importlib
import importlib.util
import math
from typing import Any

import array_api_compat
import numpy as np
import pytest

from xembed_conformance.cases import Case
from xembed_conformance.reference import bag_sgbf_grad_bug, numpy_grads

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
INDEX_DTYPES = ("int32", "int64")


class Backend(enum.Enum):
    """Array libraries (and devices) the tests run on; ``value`` is the pytest id."""

    NUMPY = "numpy"
    ARRAY_API_STRICT = "array_api_strict"
    TORCH = "torch"
    TORCH_CUDA = "torch_cuda"
    CUPY = "cupy"
    JAX = "jax"  # CPU, float64 enabled (jax_enable_x64) so the float64 oracle comparisons apply

    @property
    def modname(self) -> str:
        return "torch" if self is Backend.TORCH_CUDA else self.value

    @property
    def is_gpu(self) -> bool:
        return self in (Backend.TORCH_CUDA, Backend.CUPY)

    @property
    def is_torch(self) -> bool:
        return self in (Backend.TORCH, Backend.TORCH_CUDA)

    @property
    def is_immutable(self) -> bool:
        """JAX: no in-place writes, no views (RENORM-FUNCTIONAL instead of RENORM-INPLACE)."""
        return self is Backend.JAX

    def unavailable_reason(self) -> str | None:
        """Why this backend cannot run here (None when it can).  Only checks availability, never hides errors."""
        if importlib.util.find_spec(self.modname) is None:
            return f"{self.modname} is not installed"
        if self is Backend.TORCH_CUDA:
            import torch

            if not torch.cuda.is_available():
                return "no CUDA device (torch.cuda.is_available() is False)"
        if self is Backend.CUPY:
            try:
                import cupy

                n = cupy.cuda.runtime.getDeviceCount()
            except Exception as exc:  # noqa: BLE001 - cupy without a driver raises various errors
                return f"cupy is installed but no CUDA device is usable ({type(exc).__name__}: {exc})"
            if n == 0:
                return "cupy is installed but no CUDA device is present"
        return None

    @property
    def xp(self) -> Any:
        """The raw namespace users pass arrays from (numpy, array_api_strict, torch, cupy, jax.numpy)."""
        if self is Backend.JAX:
            import jax

            jax.config.update("jax_enable_x64", True)
            return importlib.import_module("jax.numpy")
        return importlib.import_module(self.modname)

    @property
    def device(self) -> Any:
        xp = self.xp
        if self is Backend.TORCH:
            return xp.device("cpu")
        if self is Backend.TORCH_CUDA:
            return xp.device("cuda", xp.cuda.current_device())
        if self is Backend.CUPY:
            return xp.cuda.Device()
        if self is Backend.ARRAY_API_STRICT or self is Backend.JAX:
            return xp.asarray(0).device
        return "cpu"

    @property
    def float_dtypes(self) -> tuple[str, ...]:
        if self is Backend.ARRAY_API_STRICT:
            return ("float32", "float64")
        if self.is_torch or self is Backend.JAX:
            return FLOAT_DTYPES
        return ("float16", "float32", "float64")  # numpy, cupy: no bfloat16

    def has_dtype(self, name: str) -> bool:
        if name in FLOAT_DTYPES:
            return name in self.float_dtypes
        return True

    def require_dtype(self, name: str) -> None:
        if not self.has_dtype(name):
            pytest.skip(f"{self.value} has no {name} dtype")

    def asarray(self, a: Any, dtype: str | None = None) -> Any:
        return from_numpy(self.xp, a, self.device, dtype)

    def marks(self) -> list[pytest.MarkDecorator]:
        """``needs_backend`` (conftest deselects the test, with one summary line per reason, when this backend
        is unavailable or not selected) and ``gpu`` for GPU backends."""
        marks = [pytest.mark.needs_backend(self.value)]
        if self.is_gpu:
            marks.append(pytest.mark.gpu)
        return marks

    def pytest_param(self) -> Any:
        return pytest.param(self, id=self.value, marks=self.marks())


class StrictDevice:
    """array_api_strict on one of its non-default devices ('device1', 'no_float64', ...): a CPU-only way to test
    that xembed keeps arrays on the caller's device and rejects mixed devices.  Same interface as ``Backend``."""

    is_gpu = False
    is_torch = False
    modname = "array_api_strict"

    def __init__(self, name: str):
        import array_api_strict

        self.xp = array_api_strict
        self.device = array_api_strict.Device(name)
        self.value = f"array_api_strict_{name}"
        dtypes = array_api_strict.__array_namespace_info__().dtypes(device=self.device)
        self.float_dtypes = tuple(d for d in ("float32", "float64") if d in dtypes)

    def has_dtype(self, name: str) -> bool:
        return name in self.float_dtypes if name in FLOAT_DTYPES else True

    def require_dtype(self, name: str) -> None:
        if not self.has_dtype(name):
            pytest.skip(f"{self.value} has no {name} dtype")

    def asarray(self, a: Any, dtype: str | None = None) -> Any:
        return from_numpy(self.xp, a, self.device, dtype)

    def __repr__(self) -> str:
        return self.value


def selected_backends() -> list[Backend]:
    """Backends the ``backend`` fixture runs over: all of them, or those named in the comma-separated
    ``XEMBED_TEST_BACKENDS`` environment variable (e.g. ``numpy,torch``; used by the nox sessions).  Unknown
    names are an error, so a typo never silently runs nothing; so is naming a backend that cannot run here
    (explicitly asked for, it must not pass by running nothing).  Without the variable every backend is listed
    and conftest deselects the unavailable ones with one summary line per reason."""
    import os

    raw = os.environ.get("XEMBED_TEST_BACKENDS", "").strip()
    if not raw:
        return list(Backend)
    names = [n.strip() for n in raw.split(",") if n.strip()]
    known = {b.value: b for b in Backend}
    unknown = [n for n in names if n not in known]
    if unknown:
        msg = f"XEMBED_TEST_BACKENDS: unknown backend(s) {unknown}; known: {sorted(known)}"
        raise pytest.UsageError(
            msg)
    unavailable = [f"{n} ({known[n].unavailable_reason()})" for n in names if known[n].unavailable_reason()]
    if unavailable:
        msg = f"XEMBED_TEST_BACKENDS names backend(s) that cannot run here: {unavailable}"
        raise pytest.UsageError(msg)
    return [known[n] for n in names]


# ----------------------------------------------------------------------------------------------------------
# conversions


def from_numpy(xp: Any, a: Any, device: Any = None, dtype: str | None = None) -> Any:
    """A copy of the NumPy array ``a`` as an array of namespace ``xp`` on ``device`` with dtype named ``dtype``."""
    a = np.asarray(a)
    name = xp.__name__
    if dtype is None:
        dtype = a.dtype.name
    if name == "numpy":
        return np.array(a, dtype=dtype, copy=True)
    if name == "torch":
        import torch

        if dtype == "bfloat16":
            return torch.tensor(a.astype(np.float32), device=device).to(torch.bfloat16)
        return torch.tensor(a.astype(dtype), device=device)
    if name == "cupy":
        if device is None:
            return xp.array(a.astype(dtype), copy=True)
        with device:
            return xp.array(a.astype(dtype), copy=True)
    if name == "jax.numpy":
        if dtype == "bfloat16":
            return xp.asarray(a.astype(np.float32), device=device).astype(xp.bfloat16)
        return xp.asarray(a.astype(dtype), device=device)
    if name == "array_api_strict":
        if dtype not in ("float32", "float64") and dtype.startswith("float"):
            pytest.skip(f"array_api_strict has no {dtype} dtype")
        if device is None:
            return xp.asarray(a.astype(dtype), copy=True)
        return xp.asarray(a.astype(dtype), copy=True, device=device)
    msg = f"unknown namespace {name}"
    raise AssertionError(msg)


def is_torch_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy copy of any backend array (bfloat16 → float32, exactly)."""
    if isinstance(x, np.ndarray | np.generic):
        return np.array(x, copy=True)
    mod = type(x).__module__
    if mod.startswith("torch"):
        import torch

        t = x.detach()
        if t.is_sparse:
            t = t.to_dense()
        if t.dtype == torch.bfloat16:
            t = t.to(torch.float32)
        return t.cpu().numpy().copy()
    if mod.startswith("cupy"):
        return x.get()
    if mod.startswith("array_api_strict"):
        return np.array(np.from_dlpack(x), copy=True)
    if mod.startswith("jax") and str(x.dtype) == "bfloat16":
        return np.array(x.astype("float32"), copy=True)
    return np.array(x, copy=True)


def to_torch64(x: Any) -> Any:
    """A CPU torch copy of any backend array: floating → float64, integer → int64, bool stays bool."""
    import torch

    a = to_numpy(x)
    if a.dtype.kind == "f":
        a = a.astype(np.float64)
    elif a.dtype.kind in "iu":
        a = a.astype(np.int64)
    return torch.from_numpy(np.array(a, order="C", copy=True))  # (np.ascontiguousarray makes 0-d 1-d)


def dtype_name(x: Any) -> str:
    """'float32', 'int64', ... for an array of any backend."""
    return str(x.dtype).split(".")[-1]


def device_of(x: Any) -> Any:
    return getattr(x, "device", "cpu")


# ----------------------------------------------------------------------------------------------------------
# assertions

# (rtol, atol) against a float64 oracle computed from the (already quantised) inputs.
TOLERANCES = {
    "float64": (1e-10, 1e-12),
    "float32": (2e-5, 2e-5),
    "float16": (4e-3, 4e-3),
    "bfloat16": (2.5e-2, 2.5e-2),
}


def assert_like_weight(out: Any, weight: Any, shape: tuple[int, ...] | None = None, what: str = "output") -> None:
    """``out`` is an array of the weight's namespace (and array type), dtype and device, and of ``shape`` when
    given (EMB-SHAPE: outputs and gradients live where the weight lives)."""
    # (a torch.nn.Parameter's gradient is a plain Tensor: either may subclass the other)
    assert isinstance(out, type(weight)) or isinstance(weight, type(out)), (
        f"{what}: type {type(out)} is not the weight's {type(weight)}")
    ns_out, ns_w = array_api_compat.array_namespace(out), array_api_compat.array_namespace(weight)
    assert ns_out is ns_w, f"{what}: namespace {ns_out.__name__} is not the weight's {ns_w.__name__}"
    assert dtype_name(out) == dtype_name(weight), f"{what}: dtype {out.dtype} != weight dtype {weight.dtype}"
    assert str(device_of(out)) == str(device_of(weight)), f"{what}: device {device_of(out)} != {device_of(weight)}"
    if shape is not None:
        assert tuple(out.shape) == tuple(shape), f"{what}: shape {tuple(out.shape)} != {tuple(shape)}"


def xp_assert_close(actual: Any, desired: Any, *, like: Any, err_msg: str = "", scale: float = 1.0) -> None:
    """The one comparison of the tests (as scipy's / array-api-extra's ``xp_assert_close``): ``actual`` must
    have the namespace, array type, dtype and device of ``like`` (the array it must live with: the weight, the
    per_sample_weights) and ``desired``'s shape; then its values must match ``desired`` (the float64 oracle,
    any library) within the tolerance of ``actual``'s dtype (TOL-COMPARE), relative to the largest finite
    ``|desired|`` (at least ``scale``).  NaNs must sit at the same places."""
    assert_like_weight(actual, like, tuple(desired.shape), err_msg or "array")
    a = to_numpy(actual).astype(np.float64)
    e = to_numpy(desired).astype(np.float64)
    rtol, atol = TOLERANCES[dtype_name(like)]
    finite = np.abs(e[np.isfinite(e)])
    if finite.size:
        scale = max(scale, float(finite.max()))
    np.testing.assert_allclose(a, e, rtol=rtol, atol=atol * scale, equal_nan=True, err_msg=err_msg)


def assert_bitwise_equal(a: Any, b: Any, what: str = "") -> None:
    x, y = to_numpy(a), to_numpy(b)
    assert x.shape == y.shape, f"{what}: shape {x.shape} != {y.shape}"
    assert x.dtype == y.dtype, f"{what}: dtype {x.dtype} != {y.dtype}"
    assert np.array_equal(x.view(np.uint8), y.view(np.uint8)), f"{what}: arrays differ bitwise\n{x}\n{y}"


def rows_with_norms(rng: np.random.Generator, norms: list[float], dim: int, p: float) -> np.ndarray:
    """Random rows whose p-norms are exactly-ish the given values (torch.norm semantics for p)."""
    rows = rng.standard_normal((len(norms), dim))
    for k, n in enumerate(norms):
        rows[k] *= n / pnorm(rows[k], p)
    return rows


def pnorm(row: np.ndarray, p: float) -> float:
    if math.isinf(p):
        return float(np.max(np.abs(row)))
    return float(np.sum(np.abs(row) ** p) ** (1.0 / p))


# ----------------------------------------------------------------------------------------------------------
# oracle comparisons


def _ref_grad_dense(wt: Any) -> Any:
    import torch

    if wt.grad is None:
        return torch.zeros_like(wt)
    return wt.grad.to_dense() if wt.grad.is_sparse else wt.grad


def check_weight_grad(gw: Any, wt: Any, w: Any, sparse: bool) -> None:
    """Compare xembed's weight gradient ``gw`` with the torch oracle leaf ``wt`` (after backward); GRAD-SPARSE's
    layout when ``sparse``."""
    import xembed

    n, d = tuple(w.shape)
    if not sparse:
        assert not isinstance(gw, xembed.SparseGrad), "sparse=False must give a dense gradient"
        xp_assert_close(gw, _ref_grad_dense(wt), like=w, err_msg="weight gradient")
        return
    assert isinstance(gw, xembed.SparseGrad), f"sparse=True must give xembed.SparseGrad, got {type(gw)}"
    assert tuple(gw.shape) == (n, d), f"SparseGrad.shape {gw.shape} != {(n, d)}"
    ref = wt.grad
    assert ref is not None
    assert ref.is_sparse
    ref_idx = ref._indices()[0].numpy()
    ref_val = ref._values()
    assert dtype_name(gw.indices) == "int64", f"SparseGrad.indices dtype {gw.indices.dtype}"
    assert tuple(gw.indices.shape) == (ref_idx.shape[0],), f"indices shape {tuple(gw.indices.shape)} vs {ref_idx.shape}"
    np.testing.assert_array_equal(to_numpy(gw.indices), ref_idx, err_msg="SparseGrad.indices (order/duplicates)")
    assert gw.nnz == ref_idx.shape[0], f"SparseGrad.nnz {gw.nnz} != {ref_idx.shape[0]}"
    xp_assert_close(gw.values, ref_val, like=w, err_msg="SparseGrad.values")
    xp_assert_close(gw.to_dense(), ref.to_dense(), like=w, err_msg="SparseGrad.to_dense()")


def assert_weight_after(w: Any, weight: np.ndarray, i: Any, wt: Any, kw: dict[str, Any], what: str) -> Any:
    """RENORM-INPLACE on mutable arrays: ``w`` equals torch's weight after the call; returns ``w``.
    On immutable arrays (JAX, RENORM-FUNCTIONAL) ``w`` is unchanged, ``xembed.renorm`` gives torch's
    renormed weight, and that renormed table (the weight the call read) is returned."""
    import xembed

    if not type(w).__module__.startswith("jax"):
        xp_assert_close(w, wt.detach(), like=w, err_msg=what)
        return w
    xp_assert_close(w, weight, like=w, err_msg=f"{what} (immutable: unchanged)")
    if kw.get("max_norm") is None:
        return w
    renormed = xembed.renorm(w, i, kw["max_norm"], kw.get("norm_type", 2.0))
    xp_assert_close(renormed, wt.detach(), like=w, err_msg=f"xembed.renorm vs torch's {what}")
    return renormed


def check_embedding(
    backend: Backend,
    idx: Any,
    weight: np.ndarray,
    *,
    dtype: str = "float64",
    index_dtype: str = "int64",
    seed: int = 0,
    grad_output: np.ndarray | None = None,
    **kw: Any,
) -> tuple[Any, Any, Any]:
    """Run xembed.embedding / embedding_vjp on ``backend`` and compare output, weight-after-call and gradient
    with torch F.embedding in float64.  ``grad_output`` (NumPy) is the cotangent; when None it is drawn from
    ``numpy.random.default_rng(seed)`` (pass it when the test needs to know it).
    Returns (output, weight gradient, weight after the call)."""
    import torch

    import xembed

    F = torch.nn.functional

    backend.require_dtype(dtype)
    rng = np.random.default_rng(seed)
    w = backend.asarray(weight, dtype)
    w_plain = backend.asarray(weight, dtype)
    i = backend.asarray(np.asarray(idx), index_dtype)

    wt = to_torch64(w).requires_grad_(True)
    ref = F.embedding(to_torch64(i), wt, **kw)
    g = backend.asarray(rng.standard_normal(tuple(ref.shape)) if grad_output is None else grad_output, dtype)
    ref.backward(to_torch64(g))

    out, pullback = xembed.embedding_vjp(i, w, **kw)
    xp_assert_close(out, ref, like=w, err_msg="embedding_vjp output")
    w = assert_weight_after(w, weight, i, wt, kw, "weight after embedding_vjp")
    gw = pullback(g)
    check_weight_grad(gw, wt, w, sparse=kw.get("sparse", False))

    out_plain = xembed.embedding(i, w_plain, **kw)
    xp_assert_close(out_plain, ref, like=w_plain, err_msg="embedding output")
    assert_weight_after(w_plain, weight, i, wt, kw, "weight after embedding")
    return out, gw, w


def check_embedding_bag(
    backend: Backend,
    idx: Any,
    weight: np.ndarray,
    offsets: Any = None,
    per_sample_weights: Any = None,
    *,
    dtype: str = "float64",
    index_dtype: str = "int64",
    offsets_dtype: str = "int64",
    seed: int = 0,
    grad_output: np.ndarray | None = None,
    **kw: Any,
) -> tuple[Any, Any, Any, Any]:
    """Run xembed.embedding_bag / embedding_bag_vjp on ``backend``, compare output, weight-after-call, weight
    gradient and per_sample_weights gradient with torch F.embedding_bag in float64.  ``grad_output``: as in
    :func:`check_embedding`.  On a torch with the REF-TORCH-213-SGBF bug the scale_grad_by_freq weight
    gradient comes from the checker's float64 reference (``xembed_conformance.reference.numpy_grads``).
    Returns (output, weight gradient, psw gradient, weight after the call)."""
    import torch

    import xembed

    F = torch.nn.functional

    backend.require_dtype(dtype)
    rng = np.random.default_rng(seed)
    w = backend.asarray(weight, dtype)
    w_plain = backend.asarray(weight, dtype)
    i = backend.asarray(np.asarray(idx), index_dtype)
    o = None if offsets is None else backend.asarray(np.asarray(offsets), offsets_dtype)
    p = None if per_sample_weights is None else backend.asarray(per_sample_weights, dtype)

    wt = to_torch64(w).requires_grad_(True)
    pt = None if p is None else to_torch64(p).requires_grad_(True)
    ref = F.embedding_bag(
        to_torch64(i), wt, None if o is None else to_torch64(o), per_sample_weights=pt, **kw
    )
    g = backend.asarray(rng.standard_normal(tuple(ref.shape)) if grad_output is None else grad_output, dtype)
    ref.backward(to_torch64(g))
    if kw.get("scale_grad_by_freq") and bag_sgbf_grad_bug():
        wt.grad = bag_grad_reference(wt.detach(), i, o, p, to_numpy(g), kw)

    out, pullback = xembed.embedding_bag_vjp(i, w, o, per_sample_weights=p, **kw)
    xp_assert_close(out, ref, like=w, err_msg="embedding_bag_vjp output")
    w = assert_weight_after(w, weight, i, wt, kw, "weight after embedding_bag_vjp")
    res = pullback(g)
    assert isinstance(res, tuple), "embedding_bag_vjp pullback must return (grad_weight, grad_psw)"
    assert len(res) == 2, "embedding_bag_vjp pullback must return (grad_weight, grad_psw)"
    gw, gp = res
    check_weight_grad(gw, wt, w, sparse=kw.get("sparse", False))
    if p is None:
        assert gp is None, "grad of per_sample_weights must be None when none were given"
    else:
        assert pt is not None
        xp_assert_close(gp, pt.grad, like=p, err_msg="per_sample_weights gradient")

    out_plain = xembed.embedding_bag(i, w_plain, o, per_sample_weights=p, **kw)
    xp_assert_close(out_plain, ref, like=w_plain, err_msg="embedding_bag output")
    assert_weight_after(w_plain, weight, i, wt, kw, "weight after embedding_bag")
    return out, gw, gp, w


# ----------------------------------------------------------------------------------------------------------
# the oracle's known bug (REF-TORCH-213-SGBF): the checker's detector and float64 reference, shared with the tests


def bag_grad_reference(weight: Any, i: Any, o: Any, p: Any, g: np.ndarray, kw: dict[str, Any]) -> Any:
    """The dense embedding_bag weight gradient (float64 CPU torch tensor) from the checker's float64 reference
    of docs/spec.md's GRAD-BAG / GRAD-SGBF formulas (``xembed_conformance.reference.numpy_grads``), for arrays of
    any backend (``i`` input, ``o`` offsets or None, ``p`` per_sample_weights or None, ``g`` the cotangent)."""
    import torch

    case = Case(fn="embedding_bag", weight=to_numpy(weight).astype(np.float64), wdtype="float64",
                input=to_numpy(i).astype(np.int64), offsets=None if o is None else to_numpy(o).astype(np.int64),
                psw=None if p is None else to_numpy(p).astype(np.float64), pdtype="float64",
                kwargs=dict(kw), grad_out=np.asarray(g, dtype=np.float64))
    gw, _, _, _ = numpy_grads(case, case.weight)
    return torch.from_numpy(gw)
