"""The checks: what is run on a target for one drawn case, and the rows of the report."""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from hypothesis import strategies as st

from xembed_conformance import reference as ref
from xembed_conformance.backends import FLOAT_EPS
from xembed_conformance.cases import Case, bag_ranges, draw_case

# Exception classes that count as "a clear error".  SPEC.md asks for ValueError / IndexError /
# TypeError / NotImplementedError; torch's C++ layer raises RuntimeError for most of the same
# conditions, so RuntimeError is accepted too.  torch's Python layer raises AssertionError for an
# out-of-range padding_idx in F.embedding: accepted only where the reference itself raises
# AssertionError, and never with --strict.
ACCEPTED = (ValueError, IndexError, TypeError, NotImplementedError, RuntimeError)


class Violation(AssertionError):
    """The target does not conform on this case."""

    def __init__(self, what: str, message: str, case: Case, **extra):
        super().__init__(f"{what}: {message}")
        self.what = what
        self.message = message
        self.case = case
        self.extra = extra


class InternalError(Exception):
    """The checker (or the reference) misbehaved: never a verdict on the target."""


@dataclass
class Context:
    target: object
    backend: object
    strict: bool = False
    grad_mode: str | None = None  # "autograd" | "vjp" | None
    extension_seen: bool = False
    isolated: object = None  # Isolated worker for crash-prone calls

    def fn(self, name):
        return getattr(self.target, name, None)


# ---------------------------------------------------------------------------------------------
# calling the target


def build_call(ctx: Context, case: Case, requires_grad=False):
    be = ctx.backend
    w = be.asarray(case.weight, case.wdtype)
    if requires_grad:
        w.requires_grad_(True)
    args = [be.asarray(case.input, case.idtype), w]
    kw = dict(case.kwargs)
    p = None
    if case.fn == "embedding_bag":
        if case.offsets is not None:
            kw["offsets"] = be.asarray(case.offsets, case.odtype)
        if case.psw is not None:
            p = be.asarray(case.psw, case.pdtype or case.wdtype)
            if requires_grad:
                p.requires_grad_(True)
            kw["per_sample_weights"] = p
    return args, kw, w, p


def _valid_call(case, f, args, kw, what="call"):
    try:
        return f(*args, **kw)
    except Exception as e:
        raise Violation(what, f"raised {type(e).__name__}: {e} on a valid input", case, exc=e) from e


def _f64(ctx, x):
    return np.asarray(ctx.backend.to_numpy(x), dtype=np.float64)


def n_terms(case: Case) -> int:
    if case.fn == "embedding":
        return 1
    rs = bag_ranges(case)
    return max([len(r) for r in rs] + [1])


def _close(actual, expected, mag, case, c):
    eps = FLOAT_EPS[case.wdtype]
    tol = c * eps * (np.abs(mag) + np.abs(expected))
    return np.abs(actual - expected) <= tol


def check_array(ctx, case, x, expected, mag, what, *, dtype=None, c=None):
    be = ctx.backend
    if not be.is_array(x):
        raise Violation(what, f"expected a {be.name} array, got {type(x).__name__}", case)
    shape = tuple(x.shape)
    if shape != tuple(expected.shape):
        raise Violation(what, f"shape {shape}, expected {tuple(expected.shape)}", case,
                        expected=expected)
    want_dtype = dtype or case.wdtype
    if be.dtype_name(x) != want_dtype:
        raise Violation(what, f"dtype {be.dtype_name(x)}, expected {want_dtype}", case)
    dev = be.device_of(x)
    if dev != ctx.expected_device:
        raise Violation(what, f"device {dev}, expected {ctx.expected_device} (the weight's)", case)
    actual = _f64(ctx, x)
    if expected.size:
        ok = _close(actual, expected, mag, case, c or (4 + n_terms(case)))
        if not ok.all():
            bad = tuple(int(i) for i in np.argwhere(~ok)[0])
            raise Violation(
                what,
                f"value at {bad} is {float(actual[bad])!r}, expected {float(expected[bad])!r} "
                f"(tolerance {c or (4 + n_terms(case))}·eps({case.wdtype})·magnitude)",
                case, expected=expected, actual=actual,
            )


def check_weight_after(ctx, case, w_after):
    """max_norm's in-place renorm: the rows SPEC says, by the factor SPEC says, nothing else."""
    _, expected = ref.oracle_forward(case)
    orig = case.weight
    touched = np.any(expected != orig, axis=1)
    eps = FLOAT_EPS[case.wdtype]
    for r in range(orig.shape[0]):
        if touched[r]:
            ok = np.abs(w_after[r] - expected[r]) <= 4 * eps * np.abs(orig[r]) + 1e-300
            if not ok.all():
                same = np.array_equal(w_after[r], orig[r])
                msg = (f"weight row {r} should have been renormed in place to {expected[r].tolist()} "
                       f"(||row||_{case.kwargs.get('norm_type', 2.0)} > max_norm), "
                       + ("but it was left unchanged" if same else f"but is {w_after[r].tolist()}"))
                raise Violation("weight after the call", msg, case, expected=expected, actual=w_after)
        elif not np.array_equal(w_after[r], orig[r], equal_nan=True):
            why = ("it is not renormed: its norm is not > max_norm or it is not in the input"
                   if case.kwargs.get("max_norm") is not None else "no max_norm was given")
            raise Violation(
                "weight after the call",
                f"weight row {r} changed from {orig[r].tolist()} to {w_after[r].tolist()}; {why}",
                case, expected=expected, actual=w_after,
            )


def _abs_case(case: Case) -> Case:
    return replace(case, psw=None if case.psw is None else np.abs(case.psw),
                   grad_out=None if case.grad_out is None else np.abs(case.grad_out))


def run_values(ctx: Context, case: Case):
    f = ctx.fn(case.fn)
    args, kw, w, _ = build_call(ctx, case)
    out = _valid_call(case, f, args, kw)
    w_after = _f64(ctx, w)
    check_weight_after(ctx, case, w_after)
    expected, _ = ref.oracle_forward(case, w_after, max_norm=False)
    mag, _ = ref.oracle_forward(_abs_case(case), np.abs(w_after), max_norm=False)
    if case.kwargs.get("mode") == "max":
        mag = np.abs(expected)
    check_array(ctx, case, out, expected, mag, "output")


def _sparse_parts(ctx, case, gw):
    """(indices, values, shape, dense) of a sparse gradient, or raise Violation."""
    be = ctx.backend
    if ctx.grad_mode == "autograd":
        import torch

        if gw.layout != torch.sparse_coo:
            raise Violation("sparse grad_weight layout",
                            f"sparse=True: expected a sparse COO gradient, got layout {gw.layout}", case)
        idx = gw._indices()
        return (idx.cpu().numpy().reshape(-1), gw._values(), tuple(gw.shape), gw)
    for attr in ("indices", "values", "shape", "to_dense"):
        if not hasattr(gw, attr):
            raise Violation("sparse grad_weight layout",
                            f"sparse=True: gradient object {type(gw).__name__} lacks `.{attr}`", case)
    return (np.asarray(be.to_numpy(gw.indices)).reshape(-1), gw.values, tuple(gw.shape), gw.to_dense())


def run_grad(ctx: Context, case: Case):
    f = ctx.fn(case.fn)
    be = ctx.backend
    g = be.asarray(case.grad_out, case.wdtype)
    if ctx.grad_mode == "autograd":
        args, kw, w, p = build_call(ctx, case, requires_grad=True)
        out = _valid_call(case, f, args, kw)
        if not getattr(out, "requires_grad", False):
            raise Violation("grad_weight", "output is not connected to autograd "
                            "(weight.requires_grad=True but out.requires_grad is False)", case)
        try:
            out.backward(g)
        except Exception as e:
            raise Violation("backward", f"out.backward(grad_output) raised {type(e).__name__}: {e}", case) from e
        gw = w.grad
        gp = p.grad if p is not None else None
        if gw is None:
            raise Violation("grad_weight", "weight.grad is None after backward", case)
        if p is not None and gp is None:
            raise Violation("grad_per_sample_weights", "per_sample_weights.grad is None after backward", case)
    else:
        args, kw, w, p = build_call(ctx, case)
        fv = ctx.fn(case.fn + "_vjp")
        res = _valid_call(case, fv, args, kw, what="vjp call")
        try:
            out, pullback = res
        except Exception as e:
            raise Violation("vjp call", f"{case.fn}_vjp must return (output, pullback), got {type(res).__name__}", case) from e
        try:
            grads = pullback(g)
        except Exception as e:
            raise Violation("pullback", f"pullback(grad_output) raised {type(e).__name__}: {e}", case) from e
        if case.fn == "embedding":
            gw, gp = grads, None
        else:
            try:
                gw, gp = grads
            except Exception as e:
                raise Violation("pullback", "embedding_bag pullback must return (grad_weight, grad_per_sample_weights)", case) from e
            if case.psw is not None and gp is None:
                raise Violation("grad_per_sample_weights", "pullback returned None for the per_sample_weights gradient", case)
    w_after = _f64(ctx, w.detach() if ctx.grad_mode == "autograd" else w)
    check_weight_after(ctx, case, w_after)
    # output of the differentiable call must be right too
    expected, _ = ref.oracle_forward(case, w_after, max_norm=False)
    mag, _ = ref.oracle_forward(_abs_case(case), np.abs(w_after), max_norm=False)
    if case.kwargs.get("mode") == "max":
        mag = np.abs(expected)
    check_array(ctx, case, out.detach() if ctx.grad_mode == "autograd" else out, expected, mag, "output")

    exp_gw, exp_gp = ref.oracle_grads(case, w_after)
    is_max = case.kwargs.get("mode") == "max"
    mag_gw, mag_gp, _, _ = ref.numpy_grads(
        case, w_after if is_max else np.abs(w_after), np.abs(case.grad_out),
        None if case.psw is None else np.abs(case.psw))
    c = 4 + n_terms(case) + (case.input.size if case.kwargs.get("scale_grad_by_freq") else 0)
    if case.kwargs.get("sparse"):
        idx, vals, shape, dense = _sparse_parts(ctx, case, gw)
        _, _, exp_idx, exp_vals = ref.numpy_grads(case, w_after)
        _, _, _, mag_vals = ref.numpy_grads(case, w_after, np.abs(case.grad_out),
                                            None if case.psw is None else np.abs(case.psw))
        if shape != tuple(case.weight.shape):
            raise Violation("sparse grad_weight layout", f"shape {shape}, expected {tuple(case.weight.shape)}", case)
        if idx.tolist() != exp_idx.tolist():
            raise Violation(
                "sparse grad_weight layout",
                f"indices {idx.tolist()}, expected {exp_idx.tolist()} (torch's uncoalesced COO layout: one "
                "entry per non-padding input position, in input order, duplicates kept)", case)
        check_array(ctx, case, vals, exp_vals, mag_vals, "sparse grad_weight values", c=c)
        check_array(ctx, case, dense, exp_gw, mag_gw, "grad_weight (sparse, densified)", c=c)
    else:
        if ctx.grad_mode == "autograd" and gw.layout != __import__("torch").strided:
            raise Violation("grad_weight", f"sparse=False: expected a dense gradient, got layout {gw.layout}", case)
        if ctx.grad_mode != "autograd" and hasattr(gw, "to_dense") and not ctx.backend.is_array(gw):
            raise Violation("grad_weight", f"sparse=False: expected a dense array, got {type(gw).__name__}", case)
        check_array(ctx, case, gw, exp_gw, mag_gw, "grad_weight", c=c)
    if case.psw is not None:
        check_array(ctx, case, gp, exp_gp, mag_gp, "grad_per_sample_weights", c=c)


# ---------------------------------------------------------------------------------------------
# invalid inputs


def _attempt(ctx, case, accepted, try_backward):
    """Run the target on an invalid case.  Returns a plain dict (picklable)."""
    args, kw, w, _ = build_call(ctx, case)
    f = ctx.fn(case.fn)
    res: dict = {}
    try:
        out = f(*args, **kw)
    except BaseException as e:
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        res.update(raised=type(e).__name__, message=str(e), accepted=isinstance(e, accepted), at="call")
    else:
        res.update(raised=None, shape=tuple(getattr(out, "shape", ())))
        if try_backward and ctx.grad_mode is not None:
            try:
                if ctx.grad_mode == "autograd":
                    args, kw, w, _ = build_call(ctx, case, requires_grad=True)
                    o = f(*args, **kw)
                    o.backward(ctx.backend.asarray(np.ones(tuple(o.shape)), case.wdtype))
                else:
                    o, pb = ctx.fn(case.fn + "_vjp")(*args, **kw)
                    pb(ctx.backend.asarray(np.ones(tuple(o.shape)), case.wdtype))
            except BaseException as e:
                if isinstance(e, (KeyboardInterrupt, SystemExit)):
                    raise
                res.update(raised=type(e).__name__, message=str(e), accepted=isinstance(e, accepted),
                           at="backward")
    wa = w.detach() if hasattr(w, "detach") else w
    try:
        res["weight_after"] = np.asarray(ctx.backend.to_numpy(wa))
    except Exception:  # noqa: BLE001
        res["weight_after"] = None
    return res


class Isolated:
    """A spawned worker process that runs crash-prone calls (torch segfaults on some invalid
    offsets): a crash of the target is reported as a failure instead of killing the checker.
    (fork is not used: forking a process that has run torch can deadlock.)"""

    def __init__(self, target_ref, backend_name, device, grad_mode, timeout=120):
        self.args = (target_ref, backend_name, device, grad_mode)
        self.timeout = timeout
        self.proc = None
        self.conn = None

    def _start(self):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child,) + self.args, daemon=True)
        self.proc.start()
        child.close()

    def call(self, case, allow_assertion, try_backward):
        if self.proc is None or not self.proc.is_alive():
            self._start()
        self.conn.send((case, allow_assertion, try_backward))
        if self.conn.poll(self.timeout):
            try:
                return self.conn.recv()
            except EOFError:
                pass
        else:
            self.proc.kill()
            self.proc.join()
            self.proc = None
            return {"crashed": f"no answer within {self.timeout} s"}
        self.proc.join(10)
        code = self.proc.exitcode
        self.proc = None
        return {"crashed": f"signal {-code}" if code is not None and code < 0 else f"exit status {code}"}

    def close(self):
        if self.proc is not None and self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.proc = None


def _worker_main(conn, target_ref, backend_name, device, grad_mode):
    from xembed_conformance.backends import make_backend

    if isinstance(target_ref, str):
        from xembed_conformance.runner import load_target

        target = load_target(target_ref)
    else:
        target = pickle.loads(target_ref)
    be = make_backend(backend_name, device)
    ctx = Context(target=target, backend=be, grad_mode=grad_mode)
    while True:
        try:
            case, allow_assertion, try_backward = conn.recv()
        except EOFError:
            return
        accepted = ACCEPTED + ((AssertionError,) if allow_assertion else ())
        try:
            res = _attempt(ctx, case, accepted, try_backward)
        except BaseException as e:  # noqa: BLE001
            res = {"raised": type(e).__name__, "message": str(e), "accepted": False, "at": "call",
                   "weight_after": None}
        conn.send(res)


@dataclass
class ErrorSpec:
    expects: str  # what SPEC says, e.g. "IndexError naming the value"
    strict: bool = False  # unspecified by the reference: checked only with --strict
    crash_prone: bool = False  # may crash the interpreter (torch does): run in a subprocess
    lenient: bool = False  # returning an empty (0, D) result also conforms
    backward_ok: bool = False  # (default mode) raising at backward time also conforms


def run_error(ctx: Context, case: Case, spec: ErrorSpec):
    accepted = ACCEPTED
    oracle_w = None
    if not spec.strict:
        oexc, oracle_w = ref.oracle_raises(case)
        if oexc is None:
            raise InternalError(f"the reference torch.nn.functional.{case.fn} did not raise on {case.describe()}")
        if isinstance(oexc, AssertionError) and not ctx.strict:
            accepted = ACCEPTED + (AssertionError,)
    try_backward = spec.backward_ok and not ctx.strict
    on_gpu = "cuda" in str(ctx.expected_device) or ctx.backend.name == "cupy"
    if (spec.crash_prone or on_gpu) and ctx.isolated is not None:
        # on a GPU every invalid call runs in the worker: a device-side assert poisons the CUDA context
        res = ctx.isolated.call(case, AssertionError in accepted, try_backward)
        if "device-side assert" in str(res.get("message", "")) or "CUDA error" in str(res.get("message", "")):
            ctx.isolated.close()
    else:
        res = _attempt(ctx, case, accepted, try_backward)
    if "crashed" in res:
        raise Violation("error", f"the process crashed ({res['crashed']}) instead of raising; "
                        f"expected {spec.expects}", case, crashed=True)
    if res["raised"] is None:
        if spec.lenient and tuple(res.get("shape", ())) == (0, case.weight.shape[-1]):
            pass
        else:
            raise Violation("error", f"no exception raised; expected {spec.expects}", case)
    elif not res["accepted"]:
        raise Violation("error", f"raised {res['raised']}: {res['message']!s}; expected {spec.expects} "
                        f"(accepted classes: {', '.join(c.__name__ for c in accepted)})", case)
    elif not res["message"].strip():
        raise Violation("error", f"raised {res['raised']} with an empty message; expected {spec.expects}", case)
    wa = res.get("weight_after")
    if wa is None:
        return
    orig = case.weight
    wa64 = np.asarray(wa, dtype=np.float64)
    same = wa64.shape == orig.shape and np.array_equal(wa64, orig, equal_nan=True)
    like_ref = oracle_w is not None and wa64.shape == oracle_w.shape and np.allclose(
        wa64, np.asarray(oracle_w, np.float64), rtol=4 * FLOAT_EPS.get(case.wdtype, 1e-7), atol=0, equal_nan=True)
    if not same and not (like_ref and not ctx.strict):
        raise Violation("weight after a failing call",
                        f"the call raised but the weight changed from {orig.tolist()} to {wa64.tolist()}; "
                        "a failing call must leave the weight untouched", case)


def run_extension(ctx: Context, case: Case):
    """per_sample_weights with mode != 'sum': torch raises NotImplementedError; a target may
    raise (conforms) or implement it (reported as "extension")."""
    oexc, oracle_w = ref.oracle_raises(case)
    if not isinstance(oexc, NotImplementedError):
        raise InternalError(f"reference did not raise NotImplementedError on {case.describe()}: {oexc!r}")
    res = _attempt(ctx, case, ACCEPTED, False)
    if res["raised"] is None:
        ctx.extension_seen = True
        return
    if not res["accepted"]:
        raise Violation("error", f"raised {res['raised']}: {res['message']}; expected NotImplementedError "
                        "(or an implementation: extension)", case)
    wa = np.asarray(res["weight_after"], np.float64)
    if not (np.array_equal(wa, case.weight) or (not ctx.strict and np.allclose(wa, oracle_w, rtol=1e-2, atol=0))):
        raise Violation("weight after a failing call", "the call raised but changed the weight", case)


# ---------------------------------------------------------------------------------------------
# rows of the report


@dataclass
class Row:
    option: str
    fn: str
    kind: str  # "valid" | "error" | "extension"
    draw: Callable  # (data, backend) -> Case
    error: ErrorSpec | None = None
    dtype: str | None = None  # row exists only if the backend has this dtype
    aspects: tuple = ()

    def check_ids(self):
        return [f"{self.fn}::{self.option}::{a}" for a in self.aspects]


def _valid_row(option, fn, dtype=None, **force):
    def draw(data, backend, grad=False):
        dt = force.pop("dtype", None) if False else None  # noqa: F841
        kw = dict(force)
        if dtype is not None:
            kw["dtype"] = dtype
        return draw_case(data, fn, backend.float_dtypes, backend.int_dtypes, grad=grad, **kw)

    return Row(option, fn, "valid", draw, dtype=dtype, aspects=("values", "grad"))


def _error_row(option, fn, mutate, spec: ErrorSpec, **force):
    def draw(data, backend, grad=False):
        base = dict(shape="any", mode="any") if fn == "embedding_bag" else dict(shape="any")
        base.update(force)
        case = draw_case(data, fn, backend.float_dtypes, backend.int_dtypes, **base)
        return mutate(data, case, backend)

    return Row(option, fn, "error", draw, error=spec, aspects=("error",))


def _d(data, strat, label):
    return data.draw(strat, label=label)


# mutations producing invalid cases ---------------------------------------------------------------


def _oob(data, c, be):
    flat = c.input.reshape(-1)
    j = _d(data, st.integers(0, flat.size - 1), "position of the bad index")
    flat[j] = c.weight.shape[0] + _d(data, st.integers(0, 3), "index - num_embeddings")
    c.notes.append(f"input position {j} holds {flat[j]} >= num_embeddings={c.weight.shape[0]}")
    return c


def _neg(data, c, be):
    flat = c.input.reshape(-1)
    j = _d(data, st.integers(0, flat.size - 1), "position of the bad index")
    flat[j] = _d(data, st.integers(-c.weight.shape[0] - 2, -1), "negative index")
    c.notes.append(f"input position {j} holds negative index {flat[j]}")
    return c


def _float_input(data, c, be):
    c.input = c.input.astype(np.float64)
    c.idtype = _d(data, st.sampled_from(be.float_dtypes), "float dtype of the indices")
    return c


def _bool_input(data, c, be):
    c.input = (c.input % 2).astype(bool)
    c.idtype = "bool"
    return c


def _float_offsets(data, c, be):
    c.offsets = c.offsets.astype(np.float64)
    c.odtype = _d(data, st.sampled_from(be.float_dtypes), "float dtype of the offsets")
    return c


def _pad_oob(data, c, be):
    N = c.weight.shape[0]
    c.kwargs["padding_idx"] = _d(data, st.sampled_from([N, N + 1, -N - 1, -N - 3]), "out-of-range padding_idx")
    return c


def _weight_1d(data, c, be):
    c.weight = c.weight[:, 0].copy()
    return c


def _weight_int(data, c, be):
    c.wdtype = "int64"
    c.weight = np.round(c.weight)
    c.kwargs.pop("max_norm", None)
    c.kwargs.pop("norm_type", None)
    c.psw = None
    return c


def _max_norm_nonpos(data, c, be):
    c.kwargs["max_norm"] = _d(data, st.sampled_from([0.0, -1.0, -0.5]), "max_norm <= 0")
    return c


def _norm_type_bad(data, c, be):
    c.kwargs["max_norm"] = 1.0
    c.kwargs["norm_type"] = _d(data, st.sampled_from([0.0, -1.0, -2.0, math.nan]), "norm_type <= 0 or NaN")
    return c


def _sparse_sgbf(data, c, be):
    c.kwargs["sparse"] = True
    c.kwargs["scale_grad_by_freq"] = True
    return c


def _off0(data, c, be):
    c.offsets = c.offsets.copy()
    c.offsets[0] = _d(data, st.integers(1, max(int(c.input.shape[0]), 1)), "offsets[0] (must be 0)")
    c.offsets = np.maximum.accumulate(c.offsets)
    return c


def _off_last(data, c, be):
    c.offsets = np.append(c.offsets, c.input.shape[0] + _d(data, st.integers(1, 3), "offsets[-1] - len(input)"))
    return c


def _off_decreasing(data, c, be):
    L = int(c.input.shape[0])
    a = _d(data, st.integers(1, max(L, 1)), "offsets[1]")
    b = _d(data, st.integers(0, a - 1), "offsets[2] (< offsets[1]: decreasing)")
    c.offsets = np.asarray([0, a, b], np.int64)
    c.kwargs.pop("include_last_offset", None)
    c.psw = None if c.psw is None else c.psw
    return c


def _ilo_short(data, c, be):
    c.kwargs["include_last_offset"] = True
    c.offsets = np.append(c.offsets[c.offsets < c.input.shape[0]], [])
    c.offsets = c.offsets.astype(np.int64)
    from hypothesis import assume
    assume(c.offsets.size >= 1 and c.offsets[-1] < c.input.shape[0])
    return c


def _ilo_empty(data, c, be):
    c.kwargs["include_last_offset"] = True
    c.offsets = np.zeros(0, np.int64)
    return c


def _empty_offsets(data, c, be):
    c.offsets = np.zeros(0, np.int64)
    c.kwargs.pop("include_last_offset", None)
    return c


def _2d_with_offsets(data, c, be):
    B = _d(data, st.integers(1, 3), "number of bags")
    c.input = np.resize(c.input, (B, max(c.input.size // B, 1))) if c.input.size else np.zeros((B, 1), np.int64)
    c.input = np.clip(c.input, 0, c.weight.shape[0] - 1)
    c.offsets = np.arange(B, dtype=np.int64)
    c.kwargs.pop("include_last_offset", None)
    c.psw = None
    return c


def _1d_without_offsets(data, c, be):
    c.offsets = None
    c.kwargs.pop("include_last_offset", None)
    return c


def _offsets_2d(data, c, be):
    c.offsets = c.offsets.reshape(1, -1)
    return c


def _input_0d(data, c, be):
    c.input = np.asarray(c.input.reshape(-1)[0] if c.input.size else 0, dtype=np.int64)
    c.offsets = np.zeros(1, np.int64)
    c.kwargs.pop("include_last_offset", None)
    c.psw = None
    return c


def _input_3d(data, c, be):
    c.input = c.input.reshape(1, 1, -1)
    c.offsets = None
    c.kwargs.pop("include_last_offset", None)
    c.psw = None
    return c


def _bad_mode(data, c, be):
    c.kwargs["mode"] = _d(data, st.sampled_from(["prod", "MEAN", "min", ""]), "invalid mode")
    c.psw = None
    return c


def _max_sgbf(data, c, be):
    c.kwargs.update(mode="max", scale_grad_by_freq=True)
    c.kwargs.pop("sparse", None)
    return c


def _max_sparse(data, c, be):
    c.kwargs.update(mode="max", sparse=True)
    c.kwargs.pop("scale_grad_by_freq", None)
    return c


def _psw_shape(data, c, be):
    c.kwargs["mode"] = "sum"
    n = c.input.size + _d(data, st.sampled_from([-1, 1, 2]), "per_sample_weights length - len(input)")
    if n < 0:
        n = 1
    c.psw = np.ones(n) / 2
    c.pdtype = c.wdtype
    return c


def _psw_dtype(data, c, be):
    c.kwargs["mode"] = "sum"
    c.psw = np.ones(c.input.shape) / 2
    c.pdtype = _d(data, st.sampled_from([t for t in be.float_dtypes if t != c.wdtype]), "per_sample_weights dtype")
    return c


EMB_ERROR_ROWS = [
    ("error: index >= num_embeddings", _oob, ErrorSpec("IndexError naming the value"), dict(shape=("1d", "nd"))),
    ("error: negative index", _neg, ErrorSpec("IndexError (negative indices are never wrapped)"), dict(shape=("1d", "nd"))),
    ("error: non-integer indices", _float_input, ErrorSpec("TypeError"), {}),
    ("error: bool indices", _bool_input, ErrorSpec("TypeError"), {}),
    ("error: padding_idx out of range", _pad_oob, ErrorSpec("ValueError"), {}),
    ("error: weight not 2-D", _weight_1d, ErrorSpec("ValueError"), {}),
    ("error: sparse + scale_grad_by_freq", _sparse_sgbf,
     ErrorSpec("ValueError at the call (torch: RuntimeError at backward)", backward_ok=True), dict(shape="1d")),
    ("strict: sparse + scale_grad_by_freq raises at the call", _sparse_sgbf,
     ErrorSpec("ValueError at the call", strict=True), dict(shape="1d")),
    ("strict: max_norm <= 0", _max_norm_nonpos, ErrorSpec("ValueError", strict=True), {}),
    ("strict: norm_type <= 0 or NaN", _norm_type_bad, ErrorSpec("ValueError", strict=True), {}),
    ("strict: weight not floating", _weight_int, ErrorSpec("TypeError", strict=True), {}),
]

_NONEMPTY_OFFSETS = dict(shape="offsets", ilo=False)
BAG_ERROR_ROWS = [
    ("error: index >= num_embeddings", _oob, ErrorSpec("IndexError naming the value"), dict(shape=("offsets", "2d"), dup=True)),
    ("error: negative index", _neg, ErrorSpec("IndexError"), dict(shape=("offsets", "2d"), dup=True)),
    ("error: non-integer indices", _float_input, ErrorSpec("TypeError"), {}),
    ("error: float offsets", _float_offsets, ErrorSpec("TypeError"), dict(shape="offsets")),
    ("error: offsets[0] != 0", _off0, ErrorSpec("ValueError naming the position"), dict(shape="offsets", dup=True)),
    ("error: offsets[-1] > len(input)", _off_last, ErrorSpec("ValueError"), dict(shape="offsets")),
    ("error: 2-D input with offsets", _2d_with_offsets, ErrorSpec("ValueError"), dict(shape="offsets")),
    ("error: 1-D input without offsets", _1d_without_offsets, ErrorSpec("ValueError"), dict(shape="offsets")),
    ("error: offsets not 1-D", _offsets_2d, ErrorSpec("ValueError"), dict(shape="offsets")),
    ("error: input 0-d", _input_0d, ErrorSpec("ValueError"), dict(shape="offsets")),
    ("error: input 3-D", _input_3d, ErrorSpec("ValueError"), dict(shape=("offsets", "2d"))),
    ("error: invalid mode", _bad_mode, ErrorSpec("ValueError"), {}),
    ("error: mode='max' + scale_grad_by_freq", _max_sgbf, ErrorSpec("ValueError"), dict(psw=False)),
    ("error: mode='max' + sparse", _max_sparse, ErrorSpec("ValueError"), dict(psw=False)),
    ("error: per_sample_weights shape", _psw_shape, ErrorSpec("ValueError"), {}),
    ("error: per_sample_weights dtype", _psw_dtype, ErrorSpec("TypeError"), {}),
    ("error: weight not 2-D", _weight_1d, ErrorSpec("ValueError"), dict(psw=False)),
    ("error: padding_idx out of range", _pad_oob, ErrorSpec("ValueError"), {}),
    ("error: include_last_offset with empty offsets", _ilo_empty, ErrorSpec("ValueError"), dict(shape="offsets")),
    ("error: sparse + scale_grad_by_freq", _sparse_sgbf,
     ErrorSpec("ValueError at the call (torch: RuntimeError at backward)", backward_ok=True),
     dict(shape="offsets", mode=("sum", "mean"), dup=True)),
    ("strict: sparse + scale_grad_by_freq raises at the call", _sparse_sgbf,
     ErrorSpec("ValueError at the call", strict=True), dict(shape="offsets", mode=("sum", "mean"))),
    ("strict: decreasing offsets", _off_decreasing,
     ErrorSpec("ValueError naming the position", strict=True, crash_prone=True), dict(shape="offsets", dup=True)),
    ("strict: include_last_offset with offsets[-1] != len(input)", _ilo_short,
     ErrorSpec("ValueError", strict=True, crash_prone=True), dict(shape="offsets", dup=True)),
    ("strict: empty offsets with non-empty input", _empty_offsets,
     ErrorSpec("an error or 0 bags", strict=True, crash_prone=True, lenient=True), dict(shape="offsets", dup=True)),
    ("strict: max_norm <= 0", _max_norm_nonpos, ErrorSpec("ValueError", strict=True), {}),
    ("strict: norm_type <= 0 or NaN", _norm_type_bad, ErrorSpec("ValueError", strict=True), {}),
    ("strict: weight not floating", _weight_int, ErrorSpec("TypeError", strict=True), {}),
    ("strict: bool indices", _bool_input, ErrorSpec("TypeError", strict=True), {}),
]


def build_rows(backend) -> list[Row]:
    rows: list[Row] = []
    E = "embedding"
    rows += [
        _valid_row("defaults (1-D input)", E, shape="1d"),
        _valid_row("input 0-d", E, shape="0d"),
        _valid_row("input empty", E, shape="empty"),
        _valid_row("input N-D", E, shape="nd"),
        _valid_row("int32 indices", E, idtype="int32"),
        _valid_row("duplicate indices", E, dup=True),
        _valid_row("padding_idx >= 0", E, padding="pos"),
        _valid_row("padding_idx < 0", E, padding="neg"),
    ]
    B = "embedding_bag"
    rows += [
        _valid_row("defaults (mode='mean', 1-D + offsets)", B, shape="offsets"),
        _valid_row("mode='sum'", B, mode="sum"),
        _valid_row("mode='mean'", B, mode="mean"),
        _valid_row("mode='max'", B, mode="max"),
        _valid_row("input 1-D + offsets", B, shape="offsets", mode="any"),
        _valid_row("input 2-D (fixed-length bags)", B, shape="2d", mode="any"),
        _valid_row("input empty", B, shape="empty", mode="any"),
        _valid_row("empty bags", B, empty_bag=True, mode="any"),
        _valid_row("all-padding bags", B, allpad_bag=True, padding=("pos", "neg"), mode="any"),
        _valid_row("duplicate indices", B, dup=True, mode="any"),
        _valid_row("padding_idx >= 0", B, padding="pos", mode="any"),
        _valid_row("padding_idx < 0", B, padding="neg", mode="any"),
        _valid_row("include_last_offset", B, shape="offsets", ilo=True, mode="any"),
        _valid_row("per_sample_weights (mode='sum')", B, mode="sum", psw=True),
        _valid_row("int32 indices", B, idtype="int32", mode="any"),
        _valid_row("int32 offsets (mixed with int64 indices)", B, shape="offsets", odtype="int32", mode="any"),
    ]
    for fn in (E, B):
        m = {"mode": "any"} if fn == B else {}
        if fn == B:
            m["psw"] = "any"
        for label, nt in (("1", 1.0), ("2", 2.0), ("3", 3.0), ("inf", math.inf), ("fractional", "frac")):
            rows.append(_valid_row(f"max_norm, norm_type={label}", fn, norm_type=nt, **m))
        mm = {"mode": ("sum", "mean")} if fn == B else {}
        rows.append(_valid_row("scale_grad_by_freq", fn, sgbf=True, dup=True, **mm))
        rows.append(_valid_row("sparse", fn, sparse=True, **mm))
        for dt in ("float16", "bfloat16", "float32", "float64"):
            if dt in backend.float_dtypes:
                rows.append(_valid_row(f"weight {dt}", fn, dtype=dt, **({"mode": "any", "psw": "any"} if fn == B else {})))
        rows.append(_valid_row(
            "all options combined", fn, shape="any", idtype="any", padding="any", norm_type="any",
            sgbf="any", sparse="any", bite=False,
            **({"mode": "any", "psw": "any", "ilo": "any", "odtype": "any"} if fn == B else {})))

    def ext_draw(data, backend, grad=False):
        return draw_case(data, B, backend.float_dtypes, backend.int_dtypes, psw="ext", shape="any",
                         norm_type=(None, 2.0), bite=False)

    rows.append(Row("per_sample_weights with mode='mean'/'max' (torch: NotImplementedError)", B,
                    "extension", ext_draw, aspects=("values",)))
    for fn, table in ((E, EMB_ERROR_ROWS), (B, BAG_ERROR_ROWS)):
        for option, mutate, spec, force in table:
            rows.append(_error_row(option, fn, mutate, spec, **force))
    return rows
