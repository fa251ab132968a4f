"""Drive the checks with hypothesis and collect verdicts."""

from __future__ import annotations

import fnmatch
import importlib
import operator
import platform
import time
import traceback
from dataclasses import asdict, dataclass, field

import hypothesis
import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from xembed_conformance import checks as C
from xembed_conformance.backends import make_backend
from xembed_conformance.repro import make_repro

STATUSES = ("pass", "fail", "skip", "extension", "xfail", "xpass", "error")


@dataclass
class Result:
    id: str
    function: str
    option: str
    aspect: str
    status: str
    message: str = ""
    case: str = ""
    repro: str = ""
    hypothesis_notes: list = field(default_factory=list)
    examples: int = 0
    seconds: float = 0.0
    xfail_reason: str = ""


def load_target(spec: str):
    mod, _, attr = spec.partition(":")
    obj = importlib.import_module(mod)
    if attr:
        obj = operator.attrgetter(attr)(obj)
    return obj


def load_xfails(path) -> list[tuple[str, str]]:
    """Known-deviations file: one check-id glob per line, `# reason` after it; `#` lines are comments."""
    out = []
    if not path:
        return out
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            pat, _, reason = line.partition(" #")
            out.append((pat.strip(), reason.strip()))
    return out


def _grad_mode(target, backend, requested):
    if requested == "none":
        return None
    has_vjp = any(callable(getattr(target, f + "_vjp", None)) for f in ("embedding", "embedding_bag"))
    if requested == "autograd" or (requested == "auto" and backend.autograd):
        return "autograd"
    if requested == "vjp" or (requested == "auto" and has_vjp):
        return "vjp" if has_vjp else None
    return None


def _find_violation(exc):
    if isinstance(exc, C.Violation):
        return exc
    for sub in getattr(exc, "exceptions", ()) or ():
        v = _find_violation(sub)
        if v is not None:
            return v
    return None


def run_check(ctx, row, aspect, *, max_examples, seed, spec_str):
    counter = [0]

    def body(data):
        case = row.draw(data, ctx.backend, grad=(aspect == "grad"))
        counter[0] += 1
        if row.kind == "error":
            C.run_error(ctx, case, row.error)
        elif row.kind == "extension":
            C.run_extension(ctx, case)
        elif aspect == "values":
            C.run_values(ctx, case)
        else:
            C.run_grad(ctx, case)

    test = settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
        phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
        report_multiple_bugs=False,
        print_blob=False,
        verbosity=hypothesis.Verbosity.normal,
    )(given(st.data())(body))
    test = hypothesis.seed(seed)(test)
    ctx.extension_seen = False
    res = Result(id=f"{row.fn}::{row.option}::{aspect}", function=row.fn, option=row.option,
                 aspect=aspect, status="pass")
    t0 = time.perf_counter()
    try:
        test()
        if ctx.extension_seen:
            res.status = "extension"
            res.message = "implemented (torch raises NotImplementedError)"
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            raise
        v = _find_violation(e)
        if v is not None:
            res.status = "fail"
            res.message = f"{v.what}: {v.message}"
            res.case = v.case.describe()
            notes = list(getattr(v, "__notes__", []))
            if e is not v:
                notes += [n for n in getattr(e, "__notes__", []) if n not in notes]
            res.hypothesis_notes = [n for n in notes if n.startswith("Draw ")]
            res.repro = make_repro(spec_str, ctx.backend, v.case, aspect,
                                   f"{row.fn} · {row.option} · {aspect}: {v.what}", ctx.grad_mode)
        else:
            res.status = "error"
            res.message = "checker error (not a verdict on the target): " + "".join(
                traceback.format_exception_only(type(e), e)).strip()
            res.hypothesis_notes = ["".join(traceback.format_exception(e))[-3000:]]
    res.examples = counter[0]
    res.seconds = round(time.perf_counter() - t0, 3)
    return res


def run_conformance(impl, backend="numpy", device=None, max_examples=25, seed=0, strict=False,
                    xfails=None, only=None, grad="auto", progress=None):
    """Run every check on target `impl` ("module[:attr]" or an object). Returns the report dict."""
    t_start = time.perf_counter()
    spec_str = impl if isinstance(impl, str) else getattr(impl, "__name__", repr(impl))
    target = load_target(impl) if isinstance(impl, str) else impl
    be = make_backend(backend, device)
    ctx = C.Context(target=target, backend=be, strict=strict, grad_mode=_grad_mode(target, be, grad))
    ctx.expected_device = be.device_of(be.asarray(np.zeros(1), be.float_dtypes[-1]))
    target_ref = impl if isinstance(impl, str) else None
    if target_ref is None:
        try:
            import pickle

            target_ref = pickle.dumps(impl)
        except Exception:  # noqa: BLE001 - unpicklable object: crash-prone calls run in-process
            target_ref = None
    on_gpu = "cuda" in str(ctx.expected_device) or be.name == "cupy"
    if target_ref is not None and (strict or on_gpu):
        ctx.isolated = C.Isolated(target_ref, backend, device, ctx.grad_mode)
    xf = load_xfails(xfails) if isinstance(xfails, (str, bytes)) or hasattr(xfails, "__fspath__") else (xfails or [])
    results = []
    for row in C.build_rows(be):
        for aspect in row.aspects:
            cid = f"{row.fn}::{row.option}::{aspect}"
            if only and not any(cid == p or fnmatch.fnmatchcase(cid, p) for p in only):
                continue
            if not callable(getattr(target, row.fn, None)):
                r = Result(cid, row.fn, row.option, aspect, "skip", f"target has no `{row.fn}`")
            elif row.error is not None and row.error.strict and not strict:
                r = Result(cid, row.fn, row.option, aspect, "skip",
                           "torch leaves this unspecified (or crashes); SPEC's decision is checked with --strict")
            elif aspect == "grad" and ctx.grad_mode is None:
                r = Result(cid, row.fn, row.option, aspect, "skip",
                           "target offers no gradients (no autograd on this backend, no *_vjp)")
            elif aspect == "grad" and ctx.grad_mode == "vjp" and not callable(getattr(target, row.fn + "_vjp", None)):
                r = Result(cid, row.fn, row.option, aspect, "skip", f"target has no `{row.fn}_vjp`")
            else:
                r = run_check(ctx, row, aspect, max_examples=max_examples, seed=seed, spec_str=spec_str)
            for pat, reason in xf:
                if cid == pat or fnmatch.fnmatchcase(cid, pat):
                    if r.status == "fail":
                        r.status, r.xfail_reason = "xfail", reason
                    elif r.status in ("pass", "extension"):
                        r.status, r.xfail_reason = "xpass", reason
                    break
            results.append(r)
            if progress:
                progress(r)
    if ctx.isolated is not None:
        ctx.isolated.close()
    summary = {s: sum(r.status == s for r in results) for s in STATUSES}
    import torch

    return {
        "target": spec_str,
        "backend": be.name,
        "device": str(ctx.expected_device),
        "strict": strict,
        "gradients": ctx.grad_mode or "none",
        "max_examples": max_examples,
        "seed": seed,
        "xfails": str(xfails) if isinstance(xfails, str) else None,
        "oracle": f"torch {torch.__version__} (torch.nn.functional, CPU, float64)",
        "hypothesis": hypothesis.__version__,
        "python": platform.python_version(),
        "elapsed_s": round(time.perf_counter() - t_start, 2),
        "conforms": summary["fail"] == 0 and summary["error"] == 0,
        "summary": summary,
        "results": [asdict(r) for r in results],
    }
