"""Extension rows: behaviour beyond torch, checked against a float64 reference of this spec's
semantics (EXT-*).  An implementation that does not offer an extension (it raises
NotImplementedError, ValueError or TypeError, leaving the weight untouched) gets
"not offered" -- never a failure; one that offers it must match the reference.

Adding an extension is one :func:`register_extension` call (docs/conformance-backends.md > Extensions)::

    from xembed_conformance.checks.extensions import Extension, register_extension
    from xembed_conformance import reference as ref

    def _l1(data, case):                   # make the drawn case use the extension
        case.kwargs["mode"] = "l1"
        return case

    def _l1_ref(case, weight):             # float64 expected output
        return ref.bag_reduce(case, weight, lambda rows, pos: np.abs(rows).sum(0))

    register_extension(Extension("mode='l1'", "embedding_bag", ("EXT-L1",),
                                 Want("embedding_bag", mode="sum"), _l1, _l1_ref))

An extension with a ``gradient`` (a float64 reference of the output, both gradients and the sparse layout,
like :func:`xembed_conformance.reference.ext_bag`) also gets a "grad" aspect: the weight gradient (dense, or
sparse COO with GRAD-SPARSE's layout), and the per_sample_weights gradient, through the target's autograd or
``*_vjp`` exactly as the gradient rows (checks/gradients.py).

Built-in rows: ``mode='sqrtn'``, ``mode='min'``, the weighted mean (per_sample_weights with
``mode='mean'``) and ``lengths=`` (docs/spec.md, "Extensions beyond torch").
"""

# ruff: noqa: EM101, RUF001  # Violation(what, message, case): `what` is a label; row labels use the multiplication sign

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from hypothesis import strategies as st

from xembed_conformance import reference as ref
from xembed_conformance.backends import FLOAT_EPS
from xembed_conformance.cases import Case, NDArray, normalized_padding
from xembed_conformance.checks.core import Context, Tolerance, Violation, check_array, row_terms
from xembed_conformance.checks.gradients import check_grad_parts, near_tie_winners
from xembed_conformance.checks.values import abs_case, check_weight_after, renorm_bound
from xembed_conformance.strategies import Want

GradRef = tuple[NDArray, NDArray, NDArray, NDArray, NDArray | None]


@dataclass(frozen=True)
class Extension:
    """One extension row.

    option: the row's label; fn: "embedding" or "embedding_bag"; spec: its EXT-* rule IDs;
    want: the base cases (a :class:`~xembed_conformance.strategies.Want`);
    apply(data, case) -> case: adds the extension's arguments to a drawn base case;
    reference(case, weight) -> float64 expected output, `weight` already renormed when max_norm is given;
    magnitude(case, weight): the same computation on absolute values (default: reference on |values|),
    the scale of the tolerance;
    gradient(case, weight, magnitude) -> (output, dense grad_weight, sparse indices, sparse values,
    grad_per_sample_weights or None): with it the row also checks gradients (aspect "grad").
    """

    option: str
    fn: str
    spec: tuple[str, ...]
    want: Want
    apply: Callable[[st.DataObject, Case], Case]
    reference: Callable[[Case, NDArray], NDArray]
    magnitude: Callable[[Case, NDArray], NDArray] | None = None
    gradient: Callable[[Case, NDArray, bool], GradRef] | None = None


EXTENSIONS: list[Extension] = []


def register_extension(ext: Extension) -> None:
    """Add an extension row (after the built-in rows of its function)."""
    if any(e.fn == ext.fn and e.option == ext.option for e in EXTENSIONS):
        msg = f"extension {ext.fn}::{ext.option} is already registered"
        raise ValueError(msg)
    EXTENSIONS.append(ext)


def ext_terms(case: Case) -> int:
    """Most terms one output entry sums (the longest bag), `lengths=` cases included."""
    starts, ends = ref.ext_bounds(case)
    return int(max((ends - starts).max(initial=0), 1))


def run_extension(ctx: Context, case: Case, ext: Extension) -> None:
    """EXT-CHECKER: not offered (a clear error, weight untouched), or the float64 reference's output; with a
    grad_output (the row's "grad" aspect) also the weight / per_sample_weights gradients and sparse layout."""
    res = ctx.call("extension", case)
    w_expected = ref.numpy_renorm(case) if case.kwargs.get("max_norm") is not None else case.weight
    if res["raised"] is not None:
        if not res["accepted"]:
            raise Violation("extension", f"raised {res['raised']}: {res['message']}; an extension not offered "
                            "must raise NotImplementedError, ValueError or TypeError", case)
        renormed_first = not ctx.strict and np.allclose(res["weight_after"], ref.round_to(w_expected, case.wdtype),
                                                        rtol=4 * FLOAT_EPS[case.wdtype], atol=0)
        # non-strict: torch renorms (max_norm) in place before raising NotImplementedError; tolerated
        if not np.array_equal(res["weight_after"], case.weight, equal_nan=True) and not renormed_first:
            raise Violation("weight after a failing call", "the call raised (extension not offered) but changed "
                            "the weight (ERR-ATOMIC)", case)
        if not ctx.outcome:
            ctx.outcome = "not offered"
        return
    ctx.outcome = "offered"
    if case.grad_out is not None and ext.gradient is not None:
        res = ctx.call_valid(case, with_grad=True, why=" (the plain call was accepted: the extension is offered)")
    w = check_weight_after(ctx, case, res["weight_after"], expected=w_expected)
    tol = Tolerance.for_case(case, ext_terms(case), accumulate_f32=True)
    if ext.gradient is not None:
        expected, *_ = ext.gradient(case, w, False)
        mag = ext.gradient(case, w, True)[0]
    else:
        expected = ext.reference(case, w)
        mag = (ext.magnitude or (lambda c, x: np.abs(ext.reference(abs_case(c), np.abs(x)))))(case, w)
    bound = renorm_bound(ctx, case, w)
    check_array(ctx, case, res["output"], expected, mag, "output (extension)", tol,
                slack=None if bound is None else _renorm_slack(case, bound))
    if case.grad_out is None or ext.gradient is None:
        return
    _, gw, sp_idx, sp_vals, gp = ext.gradient(case, w, False)
    _, mag_gw, _, mag_vals, mag_gp = ext.gradient(case, w, True)
    tol = Tolerance.for_case(case, row_terms(case), accumulate_f32=ctx.grad_f32)
    gw = near_tie_winners(case, res, w, bound, gw, tol)
    check_grad_parts(ctx, case, res, (gw, gp, sp_idx, sp_vals), (mag_gw, mag_gp, mag_vals), tol,
                     slack_gp=None if bound is None or case.psw is None else ext_grad_slack(case, bound))


def _renorm_slack(case: Case, bound: NDArray) -> NDArray:
    """values.renorm_bound through an extension's forward: min / max move by at most the largest bound in the
    bag, the other modes are linear in the rows (their magnitude computation on the bound)."""
    if case.mode in ("min", "max"):
        return ref.ext_bag(replace(case, kwargs={**case.kwargs, "mode": "max"}), bound)[0]
    return ref.ext_bag(case, bound, magnitude=True)[0]


def ext_grad_slack(case: Case, bound: NDArray) -> NDArray | None:
    """The per_sample_weights gradient is linear in the rows read (psw fixed): its magnitude on the bound."""
    return ref.ext_bag(case, bound, magnitude=True)[4]


# the extensions of docs/spec.md, "Extensions beyond torch" ---------------------------------------------

_BAG = "embedding_bag"
_EXT_COMMON = ("EXT-PAD", "EXT-RENORM", "EXT-DTYPES", "EXT-CHECKER")


def _ext_bag(case: Case, weight: NDArray, magnitude: bool) -> GradRef:
    return ref.ext_bag(case, weight, magnitude=magnitude)


def _ext_out(case: Case, weight: NDArray) -> NDArray:
    return ref.ext_bag(case, weight)[0]


def _exact_in(value: float, dtype: str) -> bool:
    return bool(ref.round_to(np.asarray([value]), dtype)[0] == value)


def _zero_divisor_bag(data: st.DataObject, case: Case, mode: str) -> None:
    """Maybe make one bag's divisor exactly 0 (EXT-WMEAN-ZERO: weights summing to 0; EXT-SQRTN-ZERO: all 0)."""
    if case.psw is None or not data.draw(st.booleans(), label=f"a bag whose {mode} divisor is 0"):
        return
    starts, ends = ref.ext_bounds(case)
    flat, psw = case.input.reshape(-1), case.psw.reshape(-1)
    pad = normalized_padding(case)
    live = [b for b in range(starts.size) if any(flat[i] != pad for i in range(starts[b], ends[b]))]
    if not live:
        return
    b = live[data.draw(st.integers(0, len(live) - 1), label="bag with a zero divisor")]
    P = [i for i in range(starts[b], ends[b]) if flat[i] != pad]
    if mode == "sqrtn":
        psw[P] = 0.0
        return
    rest = float(psw[P[:-1]].sum())
    if _exact_in(-rest, case.pdtype or case.wdtype):
        psw[P[-1]] = -rest


def _sqrtn(data: st.DataObject, case: Case) -> Case:
    case.kwargs["mode"] = "sqrtn"
    _zero_divisor_bag(data, case, "sqrtn")
    return case


def _wmean(data: st.DataObject, case: Case) -> Case:
    case.kwargs["mode"] = "mean"
    _zero_divisor_bag(data, case, "mean")
    return case


def _min(data: st.DataObject, case: Case) -> Case:  # noqa: ARG001 - nothing more to draw
    case.kwargs["mode"] = "min"
    return case


def _lengths(data: st.DataObject, case: Case) -> Case:
    """The same bags given by `lengths=` (EXT-LENGTHS): a 2-D input is flattened, include_last_offset dropped."""
    starts, ends = ref.ext_bounds(case)
    if case.input.ndim == 2:
        case.input = case.input.reshape(-1)
        if case.psw is not None:
            case.psw = case.psw.reshape(-1)
        case.odtype = data.draw(st.sampled_from(["int32", "int64"]), label="lengths dtype")
    case.kwargs.pop("include_last_offset", None)
    case.offsets = None
    case.kwargs["lengths"] = (ends - starts).astype(np.int64)
    return case


_SIZES = ("tiny", "tiny", "wide", "long bags", "many bags", "hot rows")
_KW: dict[str, Any] = {"shape": "any", "padding": "any", "norm_type": (None, 1.0, 2.0), "bite": False,
                          "scale": _SIZES}

for _ext in (
    Extension("mode='sqrtn'", _BAG, ("EXT-SQRTN", "EXT-SQRTN-ZERO", "EXT-SQRTN-GRAD", "EXT-SGBF", "EXT-SPARSE",
                                     *_EXT_COMMON),
              Want(_BAG, mode="sum", sgbf="any", sparse="any", **_KW), _sqrtn, _ext_out, gradient=_ext_bag),
    Extension("mode='sqrtn' × per_sample_weights", _BAG,
              ("EXT-SQRTN", "EXT-SQRTN-ZERO", "EXT-SQRTN-GRAD", "EXT-PSW-MODES", "EXT-SGBF", "EXT-SPARSE",
               *_EXT_COMMON),
              Want(_BAG, mode="sum", psw=True, sgbf="any", sparse="any", **_KW), _sqrtn, _ext_out,
              gradient=_ext_bag),
    Extension("mode='min'", _BAG, ("EXT-MODES", "EXT-MIN", "EXT-MIN-TIES", "EXT-MIN-GRAD", *_EXT_COMMON),
              Want(_BAG, mode="max", **_KW), _min, _ext_out, gradient=_ext_bag),
    Extension("empty bags × mode='min'", _BAG, ("EXT-MIN", "EXT-MIN-GRAD"),
              Want(_BAG, mode="max", empty_bag=True, padding="any"), _min, _ext_out, gradient=_ext_bag),
    Extension("weighted mean (per_sample_weights × mode='mean')", _BAG,
              ("EXT-WMEAN", "EXT-WMEAN-ZERO", "EXT-WMEAN-GRAD", "EXT-PSW-MODES", "EXT-SGBF", "EXT-SPARSE",
               *_EXT_COMMON),
              Want(_BAG, mode="sum", psw=True, sgbf="any", sparse="any", **_KW), _wmean, _ext_out,
              gradient=_ext_bag),
    Extension("lengths= (instead of offsets)", _BAG, ("EXT-LENGTHS", "EXT-DTYPES", "EXT-CHECKER"),
              Want(_BAG, mode="any", psw="any", ilo="any", odtype="any", padding="any", shape=("offsets", "2d")),
              _lengths, _ext_out, gradient=_ext_bag),
):
    register_extension(_ext)
