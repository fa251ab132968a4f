"""Self-contained, copy-paste reproductions of a failing (shrunk) example."""

from __future__ import annotations

import math

import numpy as np

from xembed_conformance.backends import literal
from xembed_conformance.cases import Case


def _pyrepr(v):
    if isinstance(v, float):
        if math.isnan(v):
            return "float('nan')"
        if math.isinf(v):
            return "float('inf')" if v > 0 else "-float('inf')"
    return repr(v)


def target_import(spec: str) -> str:
    mod, _, attr = spec.partition(":")
    if attr:
        return f"import {mod}\ntarget = {mod}.{attr}"
    return f"import {mod} as target"


def _torch_literal(values, dtype):
    return f"torch.tensor({literal(np.asarray(values))}, dtype=torch.{dtype})"


def make_repro(spec: str, backend, case: Case, aspect: str, headline: str, grad_mode: str | None) -> str:
    be = backend
    L = [f"# conformance failure — {headline}",
         f"# case: {case.describe()}"]
    for n in case.notes:
        L.append(f"# note: {n}")
    L += ["# run from the repository root (or anywhere the target is importable)",
          "import numpy as np"]
    if be.repro_imports() != "import numpy as np":
        L.append(be.repro_imports())
    L.append(target_import(spec))
    L.append("")
    L.append(f"weight = {be.repro_array(case.weight, case.wdtype)}")
    L.append(f"input = {be.repro_array(case.input, case.idtype)}")
    call = "input, weight"
    ref_call = f"{_torch_literal(case.input, case.idtype)}, ref_weight"
    if case.fn == "embedding_bag":
        if case.offsets is not None:
            L.append(f"offsets = {be.repro_array(case.offsets, case.odtype)}")
            call += ", offsets=offsets"
            ref_call += f", offsets={_torch_literal(case.offsets, case.odtype)}"
        if case.psw is not None:
            L.append(f"per_sample_weights = {be.repro_array(case.psw, case.pdtype or case.wdtype)}")
            call += ", per_sample_weights=per_sample_weights"
            pd = "float64" if aspect != "error" else (case.pdtype or case.wdtype)
            ref_call += ", per_sample_weights=ref_psw"
    for k, v in case.kwargs.items():
        call += f", {k}={_pyrepr(v)}"
        ref_call += f", {k}={_pyrepr(v)}"
    if case.grad_out is not None and aspect == "grad":
        L.append(f"grad_output = {be.repro_array(case.grad_out, case.wdtype)}")
    L.append("")
    crash = "crash" in headline or "strict: decreasing" in headline or "include_last_offset with offsets[-1]" in headline \
        or "empty offsets with non-empty" in headline
    if aspect == "error":
        if crash:
            L.append("# WARNING: this call may crash the interpreter (it does with torch on CPU)")
        L += ["try:", f"    out = target.{case.fn}({call})",
              "except Exception as e:",
              "    print('raised', type(e).__name__, e)",
              "else:",
              "    print('no exception raised; output:', out)",
              "print('weight after the call:', weight)"]
    elif aspect == "grad" and grad_mode == "autograd":
        L.append("weight.requires_grad_(True)")
        if case.psw is not None:
            L.append("per_sample_weights.requires_grad_(True)")
        L += [f"out = target.{case.fn}({call})", "out.backward(grad_output)",
              "print('output:', out)", "print('grad_weight:', weight.grad)"]
        if case.psw is not None:
            L.append("print('grad_per_sample_weights:', per_sample_weights.grad)")
    elif aspect == "grad":
        L += [f"out, pullback = target.{case.fn}_vjp({call})", "grads = pullback(grad_output)",
              "print('output:', out)", "print('gradients:', grads)",
              "for g in (grads if isinstance(grads, tuple) else (grads,)):",
              "    if hasattr(g, 'indices'):  # sparse gradient: layout",
              "        print('sparse indices:', g.indices, 'values:', g.values)"]
    else:
        L += [f"out = target.{case.fn}({call})",
              "print('output:', out)", "print('weight after the call:', weight)"]
    # the reference
    exact = aspect == "error"
    wd = case.wdtype if exact else "float64"
    L += ["", "# reference: torch.nn.functional on CPU" + ("" if exact else " in float64"),
          "import torch", "import torch.nn.functional as F",
          f"ref_weight = {_torch_literal(case.weight, wd)}"]
    if case.fn == "embedding_bag" and case.psw is not None:
        L.append(f"ref_psw = {_torch_literal(case.psw, (case.pdtype or case.wdtype) if exact else 'float64')}")
    if aspect == "error":
        L += ["try:", f"    print('reference output:', F.{case.fn}({ref_call}))",
              "except Exception as e:", "    print('reference raised', type(e).__name__, e)"]
    elif aspect == "grad":
        L.append("ref_weight.requires_grad_(True)")
        if case.fn == "embedding_bag" and case.psw is not None:
            L.append("ref_psw.requires_grad_(True)")
        L += [f"ref_out = F.{case.fn}({ref_call})",
              f"ref_out.backward({_torch_literal(case.grad_out, 'float64')})",
              "print('reference output:', ref_out)", "print('reference grad_weight:', ref_weight.grad)"]
        if case.fn == "embedding_bag" and case.psw is not None:
            L.append("print('reference grad_per_sample_weights:', ref_psw.grad)")
    else:
        L += [f"ref_out = F.{case.fn}({ref_call})", "print('reference output:', ref_out)",
              "print('reference weight after the call:', ref_weight)"]
    return "\n".join(L) + "\n"
