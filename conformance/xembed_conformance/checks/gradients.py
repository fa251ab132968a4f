"""Gradient checks: weight and per_sample_weights gradients, dense and sparse (GRAD-*, RENORM-GRAD).

Non-strict, float16 / bfloat16 gradients may accumulate in the weight's dtype (torch CPU does);
with --strict they must accumulate in float32 (GRAD-ACC)."""

# ruff: noqa: EM101  # Violation(what, message, case): `what` is a label, not the exception's message

from __future__ import annotations

from typing import Any

import numpy as np

from xembed_conformance import reference as ref
from xembed_conformance.cases import Case, NDArray, normalized_padding
from xembed_conformance.checks.core import Context, Tolerance, Violation, check_array, row_terms
from xembed_conformance.checks.values import check_weight_after, judge_output, renorm_bound


def run_grad(ctx: Context, case: Case) -> None:
    res = ctx.call_valid(case, with_grad=True)
    judge_output(ctx, case, res)
    w_after = check_weight_after(ctx, case, res["weight_after"])
    judge_grads(ctx, case, res, w_after)


def judge_grads(ctx: Context, case: Case, res: dict[str, Any], w_after: Any) -> None:
    exp_gw, exp_gp = ref.oracle_grads(case, w_after)
    is_max = case.mode == "max" and case.fn == "embedding_bag"
    assert case.grad_out is not None
    abs_go = np.abs(case.grad_out)
    abs_psw = None if case.psw is None else np.abs(case.psw)
    mag_gw, mag_gp, _, mag_vals = ref.numpy_grads(case, w_after if is_max else np.abs(w_after), abs_go, abs_psw)
    _, _, exp_idx, exp_vals = ref.numpy_grads(case, w_after) if case.kwargs.get("sparse") else (0, 0, None, None)
    # the per_sample_weights gradient is linear in the rows read: their renorm rounding, as a magnitude
    bound = renorm_bound(ctx, case, w_after)
    slack_gp = None if bound is None or case.psw is None else ref.numpy_grads(case, bound, abs_go, abs_psw)[1]
    tol = Tolerance.for_case(case, row_terms(case), accumulate_f32=ctx.grad_f32)
    exp_gw = near_tie_winners(case, res, w_after, bound, exp_gw, tol)
    check_grad_parts(ctx, case, res, (exp_gw, exp_gp, exp_idx, exp_vals), (mag_gw, mag_gp, mag_vals), tol,
                     slack_gp=slack_gp)


def near_tie_winners(case: Case, res: dict[str, Any], w: NDArray, bound: NDArray | None, exp_gw: NDArray,
                     tol: Tolerance) -> NDArray:
    """mode='max' / 'min' on an immutable weight with max_norm: the target picked its winner among rows it
    renormed itself, which may differ from `w` (torch's renorm) by `bound` (values.renorm_bound).  Where two
    different rows of a bag come that close to the bag's extreme in a column, either may win: the expected dense
    gradient takes the target's own split of those columns' gradient among those candidate rows, provided it
    lands on candidates only and sums, per column, to what those bags send.  Elsewhere unchanged (exact)."""
    gw = res.get("grad_weight")
    if (bound is None or case.fn != "embedding_bag" or case.mode not in ("max", "min") or case.grad_out is None
            or gw is None or gw.values is None or gw.values.shape != exp_gw.shape):
        return exp_gw
    sign = 1.0 if case.mode == "max" else -1.0
    flat = case.input.reshape(-1)
    pad = normalized_padding(case)
    starts, ends = ref.ext_bounds(case)
    g = np.asarray(case.grad_out, np.float64).reshape(starts.size, exp_gw.shape[1])
    base = exp_gw.copy()
    allowed = np.zeros(exp_gw.shape, bool)
    mass, abs_mass = np.zeros(exp_gw.shape[1]), np.zeros(exp_gw.shape[1])
    for b, (s0, e0) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        rows = flat[s0:e0] if pad is None else flat[s0:e0][flat[s0:e0] != pad]
        if rows.size < 2:
            continue
        v, bd = sign * w[rows], bound[rows]
        win = np.argmax(v, axis=0)  # first occurrence, as the reference
        cols = np.arange(v.shape[1])
        near = v >= v[win, cols] - bd - bd[win, cols]
        # a row equal to the winner's in the original table renorms identically: its tie stays exact
        rid = np.unique(case.weight[rows], axis=0, return_inverse=True)[1].reshape(-1)
        cand = near & (rid[:, None] != rid[win][None, :])
        for d in np.flatnonzero(cand.any(axis=0)):
            cand[win[d], d] = True
            base[rows[win[d]], d] -= g[b, d]
            allowed[rows[cand[:, d]], d] = True
            mass[d] += g[b, d]
            abs_mass[d] += abs(g[b, d])
    if not allowed.any():
        return exp_gw
    actual = gw.values
    split = np.where(allowed, actual - base, 0.0).sum(axis=0)
    if not np.all(np.abs(split - mass) <= tol.c * tol.eps * abs_mass + tol.rel * abs_mass):
        return exp_gw  # the columns' gradient went elsewhere: the plain comparison reports it
    return np.where(allowed, actual, base)


def check_grad_parts(ctx: Context, case: Case, res: dict[str, Any], expected: tuple[Any, Any, Any, Any],
                     mags: tuple[Any, Any, Any], tol: Tolerance, slack_gp: Any = None) -> None:
    """Compare the target's gradients (`res` of a "valid" call with_grad) with the expected
    (dense grad_weight, grad_psw or None, sparse indices, sparse values) and their magnitudes
    (dense, psw, sparse values); also used by the extension rows (EXT-CHECKER).  `slack_gp`: the renorm
    rounding's share of the per_sample_weights gradient (immutable weights, values.renorm_bound)."""
    exp_gw, exp_gp, exp_idx, exp_vals = expected
    mag_gw, mag_gp, mag_vals = mags
    if case.kwargs.get("sparse"):
        sp = res["sparse"]
        if sp is None:
            raise Violation("sparse grad_weight layout", "sparse=True: expected a sparse (COO) gradient, got "
                            f"a dense {res['grad_weight'].type_name}", case)
        if sp["values"] is None:
            raise Violation("sparse grad_weight layout", "sparse=True: expected a COO gradient, got another "
                            "sparse layout", case)
        if tuple(sp["shape"]) != tuple(case.weight.shape):
            raise Violation("sparse grad_weight layout", f"shape {sp['shape']}, expected {case.weight.shape}", case)
        idx = np.asarray(sp["indices"]).reshape(-1)
        if idx.tolist() != exp_idx.tolist():
            raise Violation(
                "sparse grad_weight layout",
                f"indices {_head(idx)}, expected {_head(exp_idx)} (torch's uncoalesced COO layout, GRAD-SPARSE: "
                "one entry per non-padding input position, in input order, duplicates kept)", case,
                expected_indices=exp_idx)
        check_array(ctx, case, sp["values"], exp_vals, mag_vals, "sparse grad_weight values",
                    Tolerance.for_case(case, 1, accumulate_f32=ctx.grad_f32))
        check_array(ctx, case, sp["dense"], exp_gw, mag_gw, "grad_weight (sparse, densified)", tol)
    else:
        if res["sparse"] is not None:
            raise Violation("grad_weight", "sparse=False: expected a dense gradient, got a sparse one", case)
        check_array(ctx, case, res["grad_weight"], exp_gw, mag_gw, "grad_weight", tol)
    if case.psw is not None:
        assert exp_gp is not None
        assert mag_gp is not None
        check_array(ctx, case, res["grad_psw"], exp_gp, mag_gp, "grad_per_sample_weights",
                    Tolerance.for_case(case, case.weight.shape[1], accumulate_f32=ctx.grad_f32), slack=slack_gp)


def _head(a: Any, n: int = 12) -> str:
    v = np.asarray(a).tolist()
    return repr(v) if len(v) <= n else repr(v[:n])[:-1] + f", ... ({len(v)} entries)]"

