"""Calling the target: build the backend's arrays, call, take gradients, read everything back.

Everything here runs where the target runs -- in the worker process by default
(:mod:`xembed_conformance.isolation`) -- and returns plain picklable data (NumPy arrays and
:class:`Observed` records).  The verdicts are taken in the checker's process (``checks``).
"""

# ruff: noqa: EM101  # Violation(what, message, case): `what` is a label, not the exception's message

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from xembed_conformance.backends import Backend
from xembed_conformance.cases import Case, NDArray
from xembed_conformance.checks.quantized import call_row

# Exception classes that count as "a clear error" (ERR-*): ValueError / IndexError / TypeError /
# NotImplementedError; torch's C++ layer raises RuntimeError for most of the same conditions, so
# RuntimeError is accepted too.  torch's Python layer raises AssertionError for an out-of-range
# padding_idx in F.embedding: accepted only where the reference itself raises AssertionError, and
# never with --strict.
ACCEPTED: tuple[type[BaseException], ...] = (ValueError, IndexError, TypeError, NotImplementedError, RuntimeError)


@dataclass
class Observed:
    """An array the target returned, as the backend adapter sees it."""

    is_array: bool
    type_name: str
    shape: tuple[int, ...]
    dtype: str
    device: str
    values: NDArray | None  # float64 (None when not an array of the backend)


@dataclass
class Target:
    """What runs the calls: the target object, its backend and the gradient protocol."""

    obj: Any
    backend: Backend
    grad_mode: str | None  # "autograd" | "vjp" | None

    def fn(self, name: str) -> Any:
        f = getattr(self.obj, name, None)
        return None if f is None else self.backend.wrap_call(name, f)  # lazy / compiling backends hook in here


def observe(be: Backend, x: Any) -> Observed:
    if not be.is_array(x):
        return Observed(False, type(x).__name__, tuple(getattr(x, "shape", ()) or ()), "", "", None)
    return Observed(True, type(x).__name__, tuple(int(n) for n in x.shape), be.dtype_name(x), be.device_of(x),
                    np.asarray(be.to_numpy(x), dtype=np.float64))


def build_call(be: Backend, case: Case, requires_grad: bool = False) -> tuple[list[Any], dict[str, Any], Any, Any]:
    w = be.asarray(case.weight, case.wdtype)
    if requires_grad:
        w = be.requires_grad(w)
    args = [be.asarray(case.input, case.idtype), w]
    kw = dict(case.kwargs)
    p = None
    if case.fn == "embedding_bag":
        if case.offsets is not None:
            kw["offsets"] = be.asarray(case.offsets, case.odtype)
        if kw.get("lengths") is not None:  # extension rows (EXT-LENGTHS): an array of the backend
            kw["lengths"] = be.asarray(kw["lengths"], case.odtype)
        if case.psw is not None:
            p = be.asarray(case.psw, case.pdtype or case.wdtype)
            if requires_grad:
                p = be.requires_grad(p)
            kw["per_sample_weights"] = p
    return args, kw, w, p


class _Stop(Exception):  # noqa: N818 - internal control flow
    def __init__(self, what: str, message: str):
        super().__init__(message)
        self.what, self.message = what, message


def _call(f: Any, args: list[Any], kw: dict[str, Any], what: str = "call") -> Any:
    try:
        return f(*args, **kw)
    except Exception as e:
        raise _Stop(what, f"raised {type(e).__name__}: {e} on a valid input") from e


def _weight_after(be: Backend, w: Any) -> NDArray:
    return np.asarray(be.to_numpy(be.detach(w)), dtype=np.float64)


def run_valid(t: Target, case: Case, with_grad: bool) -> dict[str, Any]:
    """Call the target on a valid case; with_grad: also the gradients (autograd or vjp)."""
    try:
        return _run_valid(t, case, with_grad)
    except _Stop as s:
        return {"violation": (s.what, s.message)}


def _run_valid(t: Target, case: Case, with_grad: bool) -> dict[str, Any]:
    be = t.backend
    f = t.fn(case.fn)
    res: dict[str, Any] = {"violation": None}
    if not with_grad:
        args, kw, w, _ = build_call(be, case)
        out = _call(f, args, kw)
        res.update(output=observe(be, out), weight_after=_weight_after(be, w))
        return res
    assert case.grad_out is not None
    g = be.asarray(case.grad_out, case.wdtype)
    if t.grad_mode == "autograd":
        args, kw, w, p = build_call(be, case, requires_grad=True)
        out = _call(f, args, kw)
        if not be.is_connected(out):
            raise _Stop("grad_weight", "output is not connected to autograd "
                        "(weight.requires_grad=True but out.requires_grad is False)")
        try:
            be.backward(out, g)
        except Exception as e:
            raise _Stop("backward", f"out.backward(grad_output) raised {type(e).__name__}: {e}") from e
        gw = be.grad(w)
        gp = be.grad(p) if p is not None else None
        if gw is None:
            raise _Stop("grad_weight", "weight.grad is None after backward")
        if p is not None and gp is None:
            raise _Stop("grad_per_sample_weights", "per_sample_weights.grad is None after backward")
        sparse = be.sparse_parts(gw)
    else:
        args, kw, w, p = build_call(be, case)
        rv = _call(t.fn(case.fn + "_vjp"), args, kw, what="vjp call")
        try:
            out, pullback = rv
        except Exception as e:
            raise _Stop("vjp call", f"{case.fn}_vjp must return (output, pullback), got {type(rv).__name__}") from e
        try:
            grads = pullback(g)
        except Exception as e:
            raise _Stop("pullback", f"pullback(grad_output) raised {type(e).__name__}: {e}") from e
        if case.fn == "embedding":
            gw, gp = grads, None
        else:
            try:
                gw, gp = grads
            except Exception as e:
                raise _Stop("pullback", "embedding_bag pullback must return "
                            "(grad_weight, grad_per_sample_weights)") from e
            if case.psw is not None and gp is None:
                raise _Stop("grad_per_sample_weights", "pullback returned None for the per_sample_weights gradient")
        sparse = _vjp_sparse_parts(be, gw, bool(case.kwargs.get("sparse")))
    res.update(output=observe(be, be.detach(out)), weight_after=_weight_after(be, w),
               grad_psw=None if gp is None else observe(be, gp))
    if sparse is None:
        res["grad_weight"] = observe(be, gw)
        res["sparse"] = None
    else:
        idx, vals, shape, dense = sparse
        res["grad_weight"] = None
        res["sparse"] = {"indices": idx, "values": None if vals is None else observe(be, vals), "shape": shape,
                         "dense": None if dense is None else observe(be, dense if be.is_array(dense)
                                                                     else dense.to_dense())}
        if be.autograd and dense is not None:
            res["sparse"]["dense"] = observe(be, dense.to_dense())
    return res


def _vjp_sparse_parts(be: Backend, gw: Any, want_sparse: bool) -> tuple[NDArray, Any, tuple[int, ...], Any] | None:
    """A sparse gradient object of the vjp protocol: `.indices`, `.values`, `.shape`, `.to_dense()`."""
    if be.is_array(gw):
        return None
    if not want_sparse and not hasattr(gw, "to_dense"):
        return None
    for attr in ("indices", "values", "shape", "to_dense"):
        if not hasattr(gw, attr):
            raise _Stop("sparse grad_weight layout", f"sparse gradient object {type(gw).__name__} lacks `.{attr}`")
    return (np.asarray(be.to_numpy(gw.indices)).reshape(-1), gw.values, tuple(gw.shape), gw)


def run_invalid(t: Target, case: Case, accepted: tuple[type[BaseException], ...], try_backward: bool) -> dict[str, Any]:
    """Run the target on an invalid case: what it raised (or returned) and the weight after."""
    be = t.backend
    args, kw, w, _ = build_call(be, case)
    f = t.fn(case.fn)
    res: dict[str, Any] = {}
    try:
        out = f(*args, **kw)
    except Exception as e:  # noqa: BLE001 - classified below
        res.update(raised=type(e).__name__, message=str(e), accepted=isinstance(e, accepted), at="call")
    else:
        res.update(raised=None, shape=tuple(getattr(out, "shape", ())))
        if try_backward and t.grad_mode is not None:
            try:
                if t.grad_mode == "autograd":
                    args, kw, w, _ = build_call(be, case, requires_grad=True)
                    o = f(*args, **kw)
                    be.backward(o, be.asarray(np.ones(tuple(o.shape)), case.wdtype))
                else:
                    o, pb = t.fn(case.fn + "_vjp")(*args, **kw)
                    pb(be.asarray(np.ones(tuple(o.shape)), case.wdtype))
            except Exception as e:  # noqa: BLE001
                res.update(raised=type(e).__name__, message=str(e), accepted=isinstance(e, accepted), at="backward")
    try:
        res["weight_after"] = _weight_after(be, w)
    except Exception:  # noqa: BLE001 - e.g. a weight the target replaced by something unreadable
        res["weight_after"] = None
    return res


def run_extension(t: Target, case: Case) -> dict[str, Any]:
    """An extension case: the target may raise (not offered) or return an output."""
    be = t.backend
    args, kw, w, _ = build_call(be, case)
    try:
        out = t.fn(case.fn)(*args, **kw)
    except Exception as e:  # noqa: BLE001
        return {"raised": type(e).__name__, "message": str(e), "accepted": isinstance(e, ACCEPTED),
                "weight_after": _weight_after(be, w)}
    return {"raised": None, "output": observe(be, out), "weight_after": _weight_after(be, w)}


def run_quantized(t: Target, case: Any, row: str) -> dict[str, Any]:
    """A quantized row's case (checks/quantized.py): the op takes torch CPU tensors, whatever the backend."""
    return call_row(t.obj, row, case)


KINDS = {"valid": run_valid, "invalid": run_invalid, "extension": run_extension, "quantized": run_quantized}


def dispatch(t: Target, kind: str, case: Case, kw: dict[str, Any]) -> dict[str, Any]:
    return KINDS[kind](t, case, **kw)  # type: ignore[operator]
