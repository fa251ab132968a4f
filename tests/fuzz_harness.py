"""The fuzz test's worker side (tests/test_fuzz.py): builds a case's arrays from a picklable recipe, runs it on
every primitive path and returns the broken promises it saw (an empty list when the case behaved).

Runs in a child process (``fuzz_harness.serve()``, pickled cases on stdin, pickled findings on stdout) so that
a crash or a hang is seen by the parent as a dead or silent child, never as a dead test run.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PRIMITIVE_MODES = ("auto", "native", "fallback")
TYPED_ERRORS = (ValueError, IndexError, TypeError, NotImplementedError)


@dataclass(frozen=True)
class ArraySpec:
    """An argument array: ``base`` (a plain native NumPy array) and the layout it is handed over in."""

    base: np.ndarray
    layout: tuple[str, ...] = ()  # "big_endian", "reversed", "subclass", "readonly", "masked", "broadcast"


@dataclass(frozen=True)
class Case:
    fn: str  # "embedding" or "embedding_bag"
    backend: str  # "numpy" or "torch"
    args: dict[str, Any]
    invalid: tuple[str, ...] = ()  # empty: a valid call; else the argument names an error may blame
    what: str = ""  # the mutation applied, for the report
    extra: dict[str, Any] = field(default_factory=dict)


class _Tagged(np.ndarray):
    """An ndarray subclass a caller might pass."""


def _numpy_array(spec: ArraySpec) -> Any:
    x = spec.base.copy()  # the call may write into it (max_norm) and the test rewrites it
    for step in spec.layout:
        if step == "big_endian":
            x = x.astype(x.dtype.newbyteorder(">"))
        elif step == "reversed" and x.ndim:  # the same values behind negative strides
            x = np.ascontiguousarray(x[::-1])[::-1]
        elif step == "subclass":
            x = x.view(_Tagged)
        elif step == "readonly":
            x = x.copy()
            x.setflags(write=False)
        elif step == "broadcast":  # zero strides, read-only
            x = np.broadcast_to(x[:1], x.shape) if x.ndim and x.shape[0] else np.broadcast_to(x, x.shape)
        elif step == "masked":
            x = np.ma.masked_array(x, mask=np.zeros(x.shape, dtype=bool))
    return x


def build(spec: Any, backend: str) -> Any:
    if not isinstance(spec, ArraySpec):
        return spec
    x = _numpy_array(spec)
    if backend == "torch":
        import torch

        dtype = getattr(torch, spec.base.dtype.name)
        return torch.tensor(np.asarray(x, dtype=spec.base.dtype), dtype=dtype)
    return x


def _as_np(x: Any) -> np.ndarray:
    return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)


def _blames(message: str, names: tuple[str, ...]) -> bool:
    return any(f"`{n}`" in message for n in names)


def _call(case: Case, vjp: bool) -> tuple[Any, dict[str, Any]]:
    import xembed

    args = {k: build(v, case.backend) for k, v in case.args.items()}
    fn = getattr(xembed, case.fn + ("_vjp" if vjp else ""))
    return fn(**args), args


def _run_invalid(case: Case, mode: str) -> list[str]:
    from xembed import _primitives as prim

    args = {k: build(v, case.backend) for k, v in case.args.items()}
    weight_before = _as_np(args["weight"]).copy() if hasattr(args["weight"], "shape") else None
    import xembed

    try:
        with prim.use(mode):
            getattr(xembed, case.fn)(**args)
    except TYPED_ERRORS as e:
        found = []
        if not _blames(str(e), case.invalid):
            found.append(f"{mode}: {type(e).__name__} does not name any of {case.invalid}: {e}")
        if weight_before is not None and not np.array_equal(_as_np(args["weight"]), weight_before,
                                                            equal_nan=True):
            found.append(f"{mode}: the failing call modified the weight")
        return found
    except Exception as e:  # noqa: BLE001 - the finding is that it is not a typed error
        return [f"{mode}: untyped {type(e).__module__}.{type(e).__name__}: {e}"]
    return [f"{mode}: no error for an invalid call ({case.what})"]


def _tolerance(dtype: np.dtype[Any], scale: float) -> float:
    eps = float(np.finfo(dtype).eps)
    return 64 * eps * max(1.0, scale)


def _reference(case: Case) -> np.ndarray:
    """float64 output from the recipe's base arrays: loops written from the spec, nothing of xembed."""
    a = case.args
    w = a["weight"].base.astype(np.float64)
    idx = a["input"].base.astype(np.int64)
    pad = a.get("padding_idx")
    if pad is not None and pad < 0:
        pad += w.shape[0]
    if a.get("max_norm") is not None:
        w = _renormed(w, idx, a["max_norm"], a.get("norm_type", 2.0), a["weight"].base.dtype)
    if case.fn == "embedding":
        return w[idx.reshape(-1)].reshape((*idx.shape, w.shape[1]))
    bags, psw = _bags(a, idx)
    mode = a.get("mode", "mean")
    out = np.zeros((len(bags), w.shape[1]))
    for b, positions in enumerate(bags):
        keep = [i for i in positions if idx.reshape(-1)[i] != pad]
        rows = w[idx.reshape(-1)[keep]]
        weights = np.ones(len(keep)) if psw is None else psw[keep]
        if not keep:
            continue
        if mode in ("max", "min"):
            out[b] = rows.max(axis=0) if mode == "max" else rows.min(axis=0)
            continue
        total = (rows * weights[:, None]).sum(axis=0)
        div = {"sum": 1.0, "mean": len(keep) if psw is None else weights.sum(),
               "sqrtn": math.sqrt((weights**2).sum())}[mode]
        out[b] = 0.0 if div == 0 else total / div
    return out


def _bags(a: dict[str, Any], idx: np.ndarray) -> tuple[list[list[int]], np.ndarray | None]:
    psw = a.get("per_sample_weights")
    psw = None if psw is None else psw.base.astype(np.float64).reshape(-1)
    if idx.ndim == 2:
        b, length = idx.shape
        return [list(range(r * length, (r + 1) * length)) for r in range(b)], psw
    n = idx.shape[0]
    if a.get("lengths") is not None:
        ends = np.cumsum(a["lengths"].base.astype(np.int64)).tolist()
        starts = [0, *ends[:-1]][: len(ends)]
    else:
        offs = a["offsets"].base.astype(np.int64).tolist()
        if not offs:  # no bags
            return [], psw
        if a.get("include_last_offset"):
            starts, ends = offs[:-1], offs[1:]
        else:
            starts, ends = offs, [*offs[1:], n]
    return [list(range(s, e)) for s, e in zip(starts, ends, strict=True)], psw


def _renormed(w: np.ndarray, idx: np.ndarray, max_norm: float, p: float, dtype: np.dtype[Any]) -> np.ndarray:
    w = w.copy()
    for r in np.unique(idx):
        norm = np.linalg.norm(w[r], ord=p) if w.shape[1] else 0.0
        if norm > max_norm:
            w[r] = (w[r] * (max_norm / (norm + 1e-7))).astype(dtype)
    return w


def _run_valid(case: Case) -> list[str]:
    from xembed import _primitives as prim

    found: list[str] = []
    expected = _reference(case)
    dtype = case.args["weight"].base.dtype
    scale = float(np.max(np.abs(case.args["weight"].base), initial=0.0)) * max(1, case.args["input"].base.size)
    tol = _tolerance(dtype, scale)
    grads: dict[str, Any] = {}
    for mode in PRIMITIVE_MODES:
        try:
            with prim.use(mode):
                (out, pullback), args = _call(case, vjp=True)
                g = np.random.default_rng(0).standard_normal(tuple(out.shape)).astype(dtype)
                g_arr = build(ArraySpec(g), case.backend)
                first = pullback(g_arr)
                _mutate(args)  # PULLBACK-SNAPSHOT: buffers refilled after the forward change nothing
                second = pullback(g_arr)
        except Exception as e:  # noqa: BLE001 - any exception on a valid call is the finding
            found.append(f"{mode}: valid call raised {type(e).__name__}: {e}")
            continue
        got = _as_np(out).astype(np.float64)
        if got.shape != expected.shape or not np.allclose(got, expected, rtol=tol, atol=tol, equal_nan=True):
            found.append(f"{mode}: output differs from the float64 reference (tol {tol:.2g})")
        if not _same_grads(first, second):
            found.append(f"{mode}: the pullback changed after the caller rewrote its buffers")
        grads[mode] = _dense(first)
    found += _paths_agree(grads, tol)
    return found


def _mutate(args: dict[str, Any]) -> None:
    for name in ("input", "offsets", "per_sample_weights", "lengths", "weight"):
        x = args.get(name)
        if x is None or not hasattr(x, "shape") or math.prod(x.shape) == 0:
            continue
        with contextlib.suppress(ValueError, RuntimeError, TypeError):  # a read-only buffer cannot be refilled
            x[...] = {"per_sample_weights": 3.5, "weight": 0.0}.get(name, 7)


def _dense(grad: Any) -> list[np.ndarray]:
    parts = grad if isinstance(grad, tuple) else (grad,)
    return [_as_np(p.to_dense() if hasattr(p, "to_dense") else p).astype(np.float64) for p in parts
            if p is not None]


def _same_grads(a: Any, b: Any) -> bool:
    return all(np.array_equal(x, y, equal_nan=True) for x, y in zip(_dense(a), _dense(b), strict=True))


def _paths_agree(grads: dict[str, list[np.ndarray]], tol: float) -> list[str]:
    modes = list(grads)
    found = []
    for m in modes[1:]:
        for x, y in zip(grads[modes[0]], grads[m], strict=True):
            if x.shape != y.shape or not np.allclose(x, y, rtol=tol, atol=tol, equal_nan=True):
                found.append(f"gradients differ between primitive paths {modes[0]} and {m}")
    return found


def check(case: Case) -> list[str]:
    """The promises the case broke (ERR-ATOMIC, typed errors naming an argument, agreement on valid input)."""
    if case.fn == "_selftest_crash":  # the parent's crash and hang detection is tested with these
        os.abort()
    if case.fn == "_selftest_hang":
        time.sleep(3600)
    if case.invalid:
        return [f for mode in PRIMITIVE_MODES for f in _run_invalid(case, mode)]
    return _run_valid(case)


def serve() -> None:
    """Read pickled cases from stdin until EOF; answer each with a pickled list of findings."""
    import warnings

    warnings.simplefilter("ignore")  # a warning is not a finding here; the test suite proper treats them
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        header = stdin.readline()
        if not header:
            return
        case = pickle.loads(stdin.read(int(header)))
        payload = pickle.dumps(check(case))
        stdout.write(b"%d\n" % len(payload) + payload)
        stdout.flush()


