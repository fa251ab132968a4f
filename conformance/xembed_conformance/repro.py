"""Self-contained, copy-paste reproductions of a failing (shrunk) example, and :func:`recheck`.

A repro holds the case's arrays as NumPy literals that keep shape and dtype (large ones as compressed
bytes), calls the target on the backend's arrays as the checker did, prints torch's float64 reference and the
expected values, and ends with its own verdict on exactly those arrays (the checker's comparison, pasted in):
it needs only the target, NumPy and torch.  A crash repro crashes.  :func:`recheck` judges one case from
Python with the checker itself (the same Violation as the run).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from xembed_conformance.backends import Backend, make_backend, needs_blob_imports, numpy_literal
from xembed_conformance.cases import Case, NDArray
from xembed_conformance.checks.core import Context
from xembed_conformance.checks.rows import build_rows, run_row
from xembed_conformance.execute import Target
from xembed_conformance.isolation import InProcess


def _pyrepr(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "float('nan')"
        if math.isinf(v):
            return "float('inf')" if v > 0 else "-float('inf')"
    return repr(v)


def target_import(spec: str) -> str:
    """Lines binding `target` without the checker: an import, or a file target loaded by path."""
    mod, _, attr = spec.rpartition(":") if ":" in spec and not spec.endswith(".py") else (spec, "", "")
    if mod.endswith(".py") or "/" in mod:
        path = str(Path(mod).resolve())
        lines = ["import importlib.util", "import sys",
                 f"sys.path.insert(0, {str(Path(path).parent)!r})  # the target may import its neighbours",
                 f"_spec = importlib.util.spec_from_file_location('target_module', {path!r})",
                 "target = importlib.util.module_from_spec(_spec)", "_spec.loader.exec_module(target)"]
        lines += [f"target = target.{attr}"] if attr else []
        return "\n".join(lines)
    if attr:
        return f"import {mod}\ntarget = {mod}.{attr}"
    return f"import {spec} as target"


#: pasted into every repro: the backend-neutral read-back and the comparison the checker makes
HELPERS = '''
def to_numpy(x):
    """The target's array as float64 NumPy (torch, CuPy, JAX, array-api-strict or NumPy)."""
    if hasattr(x, "detach"):  # torch
        x = x.detach()
        x = x.to_dense() if x.layout != torch.strided else x
        return x.cpu().double().numpy() if x.is_floating_point() else x.cpu().numpy()
    if hasattr(x, "get"):  # CuPy
        x = x.get()
    try:
        return np.asarray(x).astype(np.float64)
    except (TypeError, ValueError, RuntimeError):
        return np.from_dlpack(x).astype(np.float64)


def compare(actual, expected, tolerance, dtype):
    """'' if `actual` matches `expected` within `tolerance` (per entry; NaN matches NaN), else what differs."""
    if actual is None:
        return "missing"
    if not str(getattr(actual, "dtype", "")).endswith(dtype):
        return f"dtype {getattr(actual, 'dtype', type(actual).__name__)}, expected {dtype}"
    a = to_numpy(actual)
    if a.shape != expected.shape:
        return f"shape {a.shape}, expected {expected.shape}"
    bad = ~((np.abs(a - expected) <= tolerance) | (np.isnan(a) & np.isnan(expected)))
    if not bad.any():
        return ""
    i = tuple(int(k) for k in np.argwhere(bad)[0])
    return (f"value at {i} is {float(a[i])!r}, expected {float(expected[i])!r} (tolerance {tolerance[i]:.3g}; "
            f"{int(bad.sum())} of {bad.size} entries off)")
'''

#: the failing part of a check (Violation.what) -> the variable of the repro that holds it
OBSERVED = {"output": "out", "grad_weight": "grad_weight", "grad_weight (sparse, densified)": "grad_weight",
            "sparse grad_weight values": "grad_weight_values", "grad_per_sample_weights": "grad_per_sample_weights",
            "weight after the call": "weight"}


def _observed(what: str) -> str:
    """The repro's variable holding the failing part ("output (extension)" is the output)."""
    return OBSERVED.get(what) or OBSERVED.get(what.split(" (", 1)[0], "")


def make_repro(spec: str, backend: Backend, case: Case, aspect: str, headline: str, grad_mode: str | None,
               *, crashed: bool = False, violation: Any = None) -> str:
    """A script that needs only the target, NumPy, torch (and the backend's library): it calls the target as the
    checker did, prints what came back and the expected values, and ends with the verdict on exactly these
    arrays (exit status 1: reproduced; 0: conforms on this case).  A crash repro crashes."""
    be = backend
    extra = dict(getattr(violation, "extra", {}) or {})
    what = getattr(violation, "what", headline.rsplit(": ", 1)[-1])
    arrays = case.arrays() + ([("grad_output", case.grad_out, case.wdtype)]
                              if case.grad_out is not None and aspect == "grad" else [])
    lengths = case.kwargs.get("lengths")  # EXT-LENGTHS: an array argument like offsets
    if lengths is not None:
        arrays.insert(2, ("lengths", np.asarray(lengths), case.odtype))
    plain_kwargs = {k: v for k, v in case.kwargs.items() if k != "lengths"}
    L = [f"# conformance failure -- {headline}", f"# case: {case.describe()}"]
    L += [f"# note: {n}" for n in case.notes]
    L += ["# needs only the target, NumPy and torch; exit status 1: the failure is reproduced",
          "import numpy as np", "import torch"]
    if any(needs_blob_imports(v) for _, v, _ in arrays) or any(
            needs_blob_imports(np.asarray(v)) for k, v in extra.items() if k in ("expected", "tolerance")):
        L += ["import base64", "import zlib"]
    if be.repro_import() and be.repro_import() != "import torch":
        L.append(be.repro_import())
    L += [target_import(spec), HELPERS, "# the arrays: exact values, shapes and dtypes"]
    L += [f"{name}_values = {numpy_literal(values)}" for name, values, _ in arrays]
    L += ["", "# the call, as the checker made it"]
    L += [f"{name} = {be.repro_convert(f'{name}_values', dt)}" for name, _, dt in arrays]
    call = _call_args(case, lengths is not None, plain_kwargs)
    if crashed:
        L.append("# WARNING: this call crashed the checker's worker process; it will likely crash this interpreter")
    L += _call_lines(case, aspect, grad_mode, call)
    L += _reference_lines(case, aspect, call, lengths is not None)
    L += _verdict_lines(what, extra, aspect, headline)
    return "\n".join(L) + "\n"


def _call_args(case: Case, has_lengths: bool, plain_kwargs: dict[str, Any]) -> str:
    call = "input, weight"
    if case.offsets is not None:
        call += ", offsets=offsets"
    if case.psw is not None:
        call += ", per_sample_weights=per_sample_weights"
    if has_lengths:
        call += ", lengths=lengths"
    return call + "".join(f", {k}={_pyrepr(v)}" for k, v in plain_kwargs.items())


def _call_lines(case: Case, aspect: str, grad_mode: str | None, call: str) -> list[str]:
    """Every step in one try block: an exception is recorded (`raised`), printed, and judged at the end."""
    weight_before = "weight_before = to_numpy(weight)" if aspect == "error" else ""
    L = ["out = grad_weight = grad_weight_values = grad_weight_indices = grad_per_sample_weights = raised = None",
         weight_before,
         "step = 'call'", "try:"]
    if aspect == "grad" and grad_mode == "autograd":
        L += ["    weight.requires_grad_(True)"]
        L += ["    per_sample_weights.requires_grad_(True)"] if case.psw is not None else []
        L += [f"    out = target.{case.fn}({call})", "    print('output:', out)", "    step = 'backward'",
              "    out.backward(grad_output)", "    grad_weight = weight.grad",
              "    print('grad_weight:', grad_weight)"]
        L += ["    grad_per_sample_weights = per_sample_weights.grad",
              "    print('grad_per_sample_weights:', grad_per_sample_weights)"] if case.psw is not None else []
        L += ["    if grad_weight is not None and grad_weight.layout == torch.sparse_coo:",
              "        grad_weight_values = grad_weight._values()",
              "        grad_weight_indices = grad_weight._indices().reshape(-1).tolist()"]
    elif aspect == "grad":
        L += ["    step = 'vjp call'", f"    out, pullback = target.{case.fn}_vjp({call})", "    print('output:', out)",
              "    step = 'pullback'", "    grads = pullback(grad_output)"]
        L += (["    grad_weight, grad_per_sample_weights = grads"] if case.fn == "embedding_bag"
              else ["    grad_weight = grads"])
        L += ["    print('gradients:', grads)", "    if hasattr(grad_weight, 'to_dense'):",
              "        grad_weight_indices = to_numpy(grad_weight.indices).reshape(-1).astype(int).tolist()",
              "        grad_weight_values, grad_weight = grad_weight.values, grad_weight.to_dense()"]
    else:
        L += [f"    out = target.{case.fn}({call})", "    print('output:', out)"]
    L += ["except Exception as e:  # judged below", "    raised = e",
          "    print(f'the {step} raised {type(e).__name__}: {e}')",
          "print('weight after the call:', weight)", ""]
    return [line for line in L if line]


def _reference_lines(case: Case, aspect: str, call: str, has_lengths: bool) -> list[str]:
    """torch's float64 result on the same arrays, where torch defines it (gradients included)."""
    if aspect == "error":
        return []
    mode = case.kwargs.get("mode")
    if mode in ("sqrtn", "min") or has_lengths or (mode in ("mean", "max") and case.psw is not None):
        return [("# (an extension torch does not offer: the expected values below are the checker's float64 "
                "reference, EXT-CHECKER)"), ""]
    ref_call = call.replace("input, weight", "torch.from_numpy(input_values), ref_weight")
    ref_call = ref_call.replace("offsets=offsets", "offsets=torch.from_numpy(offsets_values)")
    ref_call = ref_call.replace("per_sample_weights=per_sample_weights", "per_sample_weights=ref_psw")
    L = ["# reference: torch.nn.functional on CPU in float64 (indices as int64)", "import torch.nn.functional as F",
         "ref_weight = torch.from_numpy(weight_values.copy())"]
    L += ["ref_psw = torch.from_numpy(per_sample_weights_values.copy())"] if case.psw is not None else []
    if aspect == "grad":
        L += ["ref_weight.requires_grad_(True)"]
        L += ["ref_psw.requires_grad_(True)"] if case.psw is not None else []
        L += [f"ref_out = F.{case.fn}({ref_call})", "ref_out.backward(torch.from_numpy(grad_output_values))",
              "print('reference output:', ref_out)", "print('reference grad_weight:', ref_weight.grad)"]
        L += ["print('reference grad_per_sample_weights:', ref_psw.grad)"] if case.psw is not None else []
    else:
        L += [f"print('reference output:', F.{case.fn}({ref_call}))",
              "print('reference weight after the call:', ref_weight)"]
    return [*L, ""]


def _verdict_lines(what: str, extra: dict[str, Any], aspect: str, headline: str) -> list[str]:
    L = ["# the verdict on exactly these arrays"]
    if aspect == "error":
        accepted = tuple(extra.get("accepted") or ("ValueError", "IndexError", "TypeError", "NotImplementedError",
                                                   "RuntimeError"))
        L += [f"accepted = ({', '.join(accepted)},)", f"must_show = {tuple(extra.get('must_name') or ())!r}",
              "if raised is None:", "    problem = 'error: no exception raised'",
              "elif not isinstance(raised, accepted) or not str(raised).strip():",
              "    problem = f'error: raised {type(raised).__name__}: {raised} (expected one of "
              + ", ".join(accepted) + " with a message)'",
              "elif not all(s in str(raised) for s in must_show):",
              "    problem = f'error: the message must show {must_show}: {raised}'",
              "elif not np.array_equal(to_numpy(weight), weight_before, equal_nan=True):",
              "    problem = 'weight after a failing call: the call raised but the weight changed (ERR-ATOMIC)'",
              "else:", "    problem = ''"]
    elif "expected_indices" in extra:
        L += [f"expected_indices = {np.asarray(extra['expected_indices']).tolist()!r}",
              "print('expected COO row indices (one per non-padding position, in input order):', expected_indices)",
              "if raised is not None:", "    problem = f'the {step} raised {type(raised).__name__}: {raised}'",
              "elif grad_weight_indices != expected_indices:",
              "    problem = f'sparse grad_weight layout: indices {grad_weight_indices}, expected {expected_indices}'",
              "else:", "    problem = ''"]
    elif _observed(what) and "expected" in extra:
        L += [f"expected = {numpy_literal(np.asarray(extra['expected'], np.float64))}",
              f"tolerance = {numpy_literal(np.asarray(extra['tolerance'], np.float64))}",
              f"print('expected {what}:', expected)",
              "if raised is not None:", "    problem = f'the {step} raised {type(raised).__name__}: {raised}'",
              "else:",
              f"    problem = compare({_observed(what)}, expected, tolerance, {extra.get('dtype', '')!r})",
              f"    problem = problem and {what + ': '!r} + problem"]
    else:  # the call / vjp / pullback / backward raised, a device, a layout: the checker's own words
        L += ["if raised is not None:", "    problem = f'the {step} raised {type(raised).__name__}: {raised}'",
              "else:  # not recomputed by this script",
              f"    problem = {'the checker found (not recomputed here): ' + headline!r}"]
    L += ["print('verdict:', ('DOES NOT CONFORM -- ' + problem) if problem else 'conforms on this case')",
          "raise SystemExit(1 if problem else 0)"]
    return L


def recheck(target: Any, check_id: str, *, backend: str = "numpy", device: str | None = None, grad: str = "auto",
            strict: bool | None = None, kwargs: dict[str, Any] | None = None,
            **arrays: tuple[NDArray, str]) -> None:
    """Judge one case the way check `check_id` does (in this process); raises its Violation if the target
    does not conform, prints "conforms on this case" otherwise."""
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


def quantized_repro(spec: str, row_id: str, case: str) -> str:
    """A script re-running one case of a quantized row with the checker's own check (QViolation when the target
    does not conform on it)."""
    return "\n".join([
        "import numpy as np", "from xembed_conformance.checks.quantized import QCase, rows_by_id",
        target_import(spec), f"case = {case}",
        f"rows_by_id()[{row_id!r}].check(target, case)  # raises QViolation: the target does not conform",
        "print('conforms on this case (not reproduced)')"])
