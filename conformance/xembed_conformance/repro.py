"""Self-contained, copy-paste reproductions of a failing (shrunk) example, and :func:`recheck`.

A repro holds the case's arrays as NumPy literals that keep shape and dtype (large ones as compressed
bytes), calls the target on the backend's arrays as the checker did, prints torch's float64 reference,
and ends with the checker's verdict on exactly those arrays (:func:`recheck`), which raises the same
:class:`~xembed_conformance.checks.core.Violation` as the run did.  A crash repro crashes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from xembed_conformance.backends import Backend, make_backend, needs_blob_imports, numpy_literal
from xembed_conformance.cases import Case, NDArray


def _pyrepr(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "float('nan')"
        if math.isinf(v):
            return "float('inf')" if v > 0 else "-float('inf')"
    return repr(v)


def target_import(spec: str) -> str:
    mod, _, attr = spec.rpartition(":") if ":" in spec and not spec.endswith(".py") else (spec, "", "")
    if mod.endswith(".py") or "/" in mod:
        lines = ["from xembed_conformance.runner import load_target",
                 f"target = load_target({spec!r})"]
        return "\n".join(lines)
    if attr:
        return f"import {mod}\ntarget = {mod}.{attr}"
    return f"import {spec} as target"


def make_repro(spec: str, backend: Backend, case: Case, aspect: str, headline: str, grad_mode: str | None,
               *, crashed: bool = False, strict: bool = False, check_id: str = "") -> str:
    be = backend
    check_id = check_id or headline.split(": ", 1)[0]
    arrays = case.arrays() + ([("grad_output", case.grad_out, case.wdtype)]
                              if case.grad_out is not None and aspect == "grad" else [])
    lengths = case.kwargs.get("lengths")  # EXT-LENGTHS: an array argument like offsets
    if lengths is not None:
        arrays.insert(2, ("lengths", np.asarray(lengths), case.odtype))
    plain_kwargs = {k: v for k, v in case.kwargs.items() if k != "lengths"}
    L = [f"# conformance failure -- {headline}", f"# case: {case.describe()}"]
    L += [f"# note: {n}" for n in case.notes]
    L += ["# run it where the target is importable", "import numpy as np"]
    if any(needs_blob_imports(v) for _, v, _ in arrays):
        L += ["import base64", "import zlib"]
    if be.repro_import():
        L.append(be.repro_import())
    L += [target_import(spec), "", "# the arrays: exact values, shapes and dtypes"]
    for name, values, _ in arrays:
        L.append(f"{name}_values = {numpy_literal(values)}")
    dtypes = {name: dt for name, _, dt in arrays}
    L += ["", "# the call, as the checker made it"]
    for name, _, dt in arrays:
        L.append(f"{name} = {be.repro_convert(f'{name}_values', dt)}")
    call = "input, weight"
    if case.offsets is not None:
        call += ", offsets=offsets"
    if case.psw is not None:
        call += ", per_sample_weights=per_sample_weights"
    if lengths is not None:
        call += ", lengths=lengths"
    call += "".join(f", {k}={_pyrepr(v)}" for k, v in plain_kwargs.items())
    if crashed:
        L.append("# WARNING: this call crashed the checker's worker process; it may crash this interpreter")
    if aspect == "error" or crashed:
        L += ["try:", f"    out = target.{case.fn}({call})", "except Exception as e:",
              "    print('raised', type(e).__name__, e)", "else:", "    print('no exception raised; output:', out)"]
    elif aspect == "grad" and grad_mode == "autograd":
        L.append("weight.requires_grad_(True)")
        if case.psw is not None:
            L.append("per_sample_weights.requires_grad_(True)")
        L += [f"out = target.{case.fn}({call})", "out.backward(grad_output)", "print('output:', out)",
              "print('grad_weight:', weight.grad)"]
        if case.psw is not None:
            L.append("print('grad_per_sample_weights:', per_sample_weights.grad)")
    elif aspect == "grad":
        L += [f"out, pullback = target.{case.fn}_vjp({call})", "print('output:', out)",
              "print('gradients:', pullback(grad_output))"]
    else:
        L += [f"out = target.{case.fn}({call})", "print('output:', out)"]
    L += ["print('weight after the call:', weight)", ""]
    if aspect != "error":
        ref_call = call.replace("input, weight", "torch.from_numpy(input_values), ref_weight")
        ref_call = ref_call.replace("offsets=offsets", "offsets=torch.from_numpy(offsets_values)")
        ref_call = ref_call.replace("per_sample_weights=per_sample_weights", "per_sample_weights=ref_psw")
        L += ["# reference: torch.nn.functional on CPU in float64 (indices as int64)", "import torch",
              "import torch.nn.functional as F", "ref_weight = torch.from_numpy(weight_values.copy())"]
        if case.psw is not None:
            L.append("ref_psw = torch.from_numpy(per_sample_weights_values.copy())")
        if case.kwargs.get("mode") in ("mean", "max") and case.psw is not None:
            L.append("# (per_sample_weights with this mode: torch raises NotImplementedError)")
        elif case.kwargs.get("mode") in ("sqrtn", "min") or lengths is not None:
            L.append("# (an extension torch does not offer: recheck below uses the float64 reference, EXT-CHECKER)")
        elif aspect == "grad":
            L += ["ref_weight.requires_grad_(True)", f"ref_out = F.{case.fn}({ref_call})",
                  "ref_out.backward(torch.from_numpy(grad_output_values))",
                  "print('reference output:', ref_out)", "print('reference grad_weight:', ref_weight.grad)"]
        else:
            L += [f"print('reference output:', F.{case.fn}({ref_call}))",
                  "print('reference weight after the call:', ref_weight)"]
        L.append("")
    kwargs_literal = "{" + ", ".join(f"{k!r}: {_pyrepr(v)}" for k, v in plain_kwargs.items()) + "}"
    kw = ", ".join(f"{n}=({n}_values, {dtypes[n]!r})" for n, _, _ in arrays)
    L += ["# the verdict: the checker's judgement of exactly these arrays (raises the same Violation)",
          "from xembed_conformance.repro import recheck",
          f"recheck(target, {check_id!r}, backend={be.name!r}, device={be.device!r}, grad={grad_mode or 'none'!r},",
          f"        strict={strict!r}, kwargs={kwargs_literal}, {kw})"]
    return "\n".join(L) + "\n"


def recheck(target: Any, check_id: str, *, backend: str = "numpy", device: str | None = None, grad: str = "auto",
            strict: bool | None = None, kwargs: dict[str, Any] | None = None,
            **arrays: tuple[NDArray, str]) -> None:
    """Judge one case the way check `check_id` does (in this process); raises its Violation if the target
    does not conform, prints "conforms on this case" otherwise."""
    from xembed_conformance.checks.core import Context
    from xembed_conformance.checks.rows import build_rows, run_row
    from xembed_conformance.execute import Target
    from xembed_conformance.isolation import InProcess

    be = make_backend(backend, device)
    row = next(r for r in build_rows(be) if check_id in r.check_ids())
    aspect = check_id.rsplit("::", 1)[1]
    w, wdt = arrays["weight"]
    i, idt = arrays["input"]
    case = Case(fn=row.fn, weight=np.asarray(w, np.float64), wdtype=wdt, input=np.asarray(i), idtype=idt,
                kwargs=dict(kwargs or {}))
    if "offsets" in arrays:
        case.offsets, case.odtype = np.asarray(arrays["offsets"][0]), arrays["offsets"][1]
    if "per_sample_weights" in arrays:
        case.psw, case.pdtype = np.asarray(arrays["per_sample_weights"][0], np.float64), arrays["per_sample_weights"][1]
    if "grad_output" in arrays:
        case.grad_out = np.asarray(arrays["grad_output"][0], np.float64)
    if "lengths" in arrays:
        case.kwargs["lengths"], case.odtype = np.asarray(arrays["lengths"][0]), arrays["lengths"][1]
    gm = None if grad == "none" else grad
    ctx = Context(backend=be, executor=InProcess(Target(target, be, gm)),
                  strict=row.strict_only if strict is None else strict, grad_mode=gm,
                  expected_device=be.expected_device(), grad_f32=row.grad_f32)
    run_row(ctx, row, aspect, case)
    print(f"{check_id}: conforms on this case (not reproduced)")  # noqa: T201 - a repro's last word
