"""Value checks: the output (values, dtype, shape, device) and the weight after the call
(EMB-*, BAG-*, RENORM-INPLACE / RENORM-STRICT / RENORM-SCALE: the rows the spec says, by the factor it
says, nothing else; ACC-LOWP: float16 / bfloat16 sums and means accumulate in float32)."""

# ruff: noqa: EM101  # Violation(what, message, case): `what` is a label, not the exception's message

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from xembed_conformance import reference as ref
from xembed_conformance.backends import FLOAT_EPS
from xembed_conformance.cases import Case, NDArray
from xembed_conformance.checks.core import Context, Tolerance, Violation, bag_terms, check_array


def abs_case(case: Case) -> Case:
    return replace(case, psw=None if case.psw is None else np.abs(case.psw),
                   grad_out=None if case.grad_out is None else np.abs(case.grad_out))


def renormed_weight(case: Case) -> NDArray:
    """The weight after max_norm's renorm (float64, rounded to the weight dtype)."""
    _, expected = ref.oracle_forward(case)
    return ref.round_to(expected, case.wdtype)


def norm_terms(case: Case) -> float:
    """Error amplification of a row norm computed in the weight's dtype (RENORM-NORM)."""
    p = float(case.kwargs.get("norm_type", 2.0))
    return case.weight.shape[1] / min(p, 1.0)


def renorm_allowance(case: Case) -> float:
    """How far a renormed entry may be from torch's renorm, in units of eps * |original entry|:
    the norm may be computed in the weight's dtype (torch does): D terms, error amplified 1/p for p < 1."""
    return 4 + norm_terms(case)


def check_weight_after(ctx: Context, case: Case, w_after: NDArray, expected: NDArray | None = None) -> NDArray:
    """The weight the target left; returns the weight the output must have been read from.
    `expected`: the renormed weight (default: torch's renorm, rounded to the weight dtype)."""
    orig = case.weight
    if case.kwargs.get("max_norm") is None:
        expected = orig
    elif expected is None:
        expected = renormed_weight(case)
    else:
        expected = ref.round_to(expected, case.wdtype)
    if not ctx.backend.renorm_in_place:
        # immutable arrays: the renorm cannot reach the caller's weight; the output reads renormed rows
        if not np.array_equal(w_after, orig, equal_nan=True):
            raise Violation("weight after the call", "an immutable weight changed", case, expected=orig,
                            tolerance=np.zeros(orig.shape), dtype=case.wdtype)
        return expected
    touched = np.any((expected != orig) & ~(np.isnan(expected) & np.isnan(orig)), axis=1)  # NaN: BAG-MAX-NAN
    close = np.abs(w_after - expected) <= renorm_allowance(case) * FLOAT_EPS[case.wdtype] * np.abs(orig) + 1e-300
    bad_touched = touched & ~close.all(axis=1)
    bad_untouched = ~touched & ~np.all((w_after == orig) | (np.isnan(w_after) & np.isnan(orig)), axis=1)
    judged = {"expected": expected, "dtype": case.wdtype,  # for the repro's own verdict
              "tolerance": np.where(touched[:, None], renorm_allowance(case) * FLOAT_EPS[case.wdtype] * np.abs(orig),
                                    0.0)}
    if bad_touched.any():
        r = int(np.argmax(bad_touched))
        same = np.array_equal(w_after[r], orig[r])
        msg = (f"weight row {r} should have been renormed in place to {expected[r].tolist()} "
               f"(||row||_{case.kwargs.get('norm_type', 2.0)} > max_norm), "
               + ("but it was left unchanged" if same else f"but is {w_after[r].tolist()}"))
        raise Violation("weight after the call", msg, case, **judged)
    if bad_untouched.any():
        r = int(np.argmax(bad_untouched))
        why = ("it is not renormed: its norm is not > max_norm or it is not in the input"
               if case.kwargs.get("max_norm") is not None else "no max_norm was given")
        raise Violation("weight after the call",
                        f"weight row {r} changed from {orig[r].tolist()} to {w_after[r].tolist()}; {why}", case,
                        **judged)
    return w_after


def expected_output(case: Case, weight: NDArray) -> tuple[NDArray, NDArray]:
    """(expected output, magnitude) for the forward read from `weight` (max_norm already applied)."""
    expected, _ = ref.oracle_forward(case, weight, max_norm=False)
    if case.mode == "max" and case.fn == "embedding_bag":
        return expected, np.abs(expected)
    mag, _ = ref.oracle_forward(abs_case(case), np.abs(weight), max_norm=False)
    return expected, mag


def renorm_bound(ctx: Context, case: Case, weight: NDArray) -> NDArray | None:
    """Where the renormed rows stay inside the target (immutable arrays), how far each entry of the rows the
    target read may be from `weight` (torch's renorm): the rounding the in-place check allows (RENORM-NORM).
    None where the checker sees the target's renormed weight (or there is no max_norm)."""
    if ctx.backend.renorm_in_place or case.kwargs.get("max_norm") is None:
        return None
    touched = np.any(weight != case.weight, axis=1, keepdims=True)
    return np.where(touched, renorm_allowance(case) * FLOAT_EPS[case.wdtype] * np.abs(case.weight), 0.0)


def renorm_slack(ctx: Context, case: Case, weight: NDArray) -> NDArray | None:
    """renorm_bound carried through the forward like a magnitude (max: the largest bound in the bag)."""
    bound = renorm_bound(ctx, case, weight)
    return None if bound is None else ref.oracle_forward(abs_case(case), bound, max_norm=False)[0]


def judge_output(ctx: Context, case: Case, res: dict[str, Any]) -> None:
    w = check_weight_after(ctx, case, res["weight_after"])
    expected, mag = expected_output(case, w)
    check_array(ctx, case, res["output"], expected, mag, "output",
                Tolerance.for_case(case, bag_terms(case), accumulate_f32=True),
                slack=renorm_slack(ctx, case, w))


def run_values(ctx: Context, case: Case) -> None:
    res = ctx.call_valid(case, with_grad=False)
    judge_output(ctx, case, res)
