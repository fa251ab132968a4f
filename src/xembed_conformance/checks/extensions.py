"""Extension rows: behaviour beyond torch, checked against a float64 reference of this spec's
semantics (EXT-*).  An implementation that does not offer an extension (it raises
NotImplementedError, ValueError or TypeError, leaving the weight untouched) gets
"not offered" -- never a failure; one that offers it must match the reference.

Adding an extension is one :func:`register_extension` call (docs/conformance.md > Extensions)::

    from xembed_conformance.checks.extensions import Extension, register_extension
    from xembed_conformance import reference as ref

    def _sqrtn(data, case):                # make the drawn case use the extension
        case.kwargs["mode"] = "sqrtn"
        return case

    def _sqrtn_ref(case, weight):          # float64 expected output
        return ref.bag_reduce(case, weight, lambda rows: rows.sum(0) / max(len(rows), 1) ** 0.5)

    register_extension(Extension("mode='sqrtn'", "embedding_bag", ("EXT-SQRTN",),
                                 Want("embedding_bag", mode="sum"), _sqrtn, _sqrtn_ref))
"""

# ruff: noqa: EM101  # Violation(what, message, case): `what` is a label, not the exception's message

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from xembed_conformance import reference as ref
from xembed_conformance.backends import FLOAT_EPS
from xembed_conformance.cases import Case, NDArray
from xembed_conformance.checks.core import Context, Tolerance, Violation, bag_terms, check_array
from xembed_conformance.checks.values import abs_case, check_weight_after
from xembed_conformance.strategies import Want


@dataclass(frozen=True)
class Extension:
    """One extension row.

    option: the row's label; fn: "embedding" or "embedding_bag"; spec: its EXT-* rule IDs;
    want: the base cases (a :class:`~xembed_conformance.strategies.Want`);
    apply(data, case) -> case: adds the extension's arguments to a drawn base case;
    reference(case, weight) -> float64 expected output, `weight` already renormed when max_norm is given;
    magnitude(case, weight): the same computation on absolute values (default: reference on |values|),
    the scale of the tolerance.
    """

    option: str
    fn: str
    spec: tuple[str, ...]
    want: Want
    apply: Callable[[st.DataObject, Case], Case]
    reference: Callable[[Case, NDArray], NDArray]
    magnitude: Callable[[Case, NDArray], NDArray] | None = None


EXTENSIONS: list[Extension] = []


def register_extension(ext: Extension) -> None:
    """Add an extension row (after the built-in rows of its function)."""
    if any(e.fn == ext.fn and e.option == ext.option for e in EXTENSIONS):
        msg = f"extension {ext.fn}::{ext.option} is already registered"
        raise ValueError(msg)
    EXTENSIONS.append(ext)


def run_extension(ctx: Context, case: Case, ext: Extension) -> None:
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
    w = check_weight_after(ctx, case, res["weight_after"], expected=w_expected)
    expected = ext.reference(case, w)
    mag = (ext.magnitude or (lambda c, x: np.abs(ext.reference(abs_case(c), np.abs(x)))))(case, w)
    check_array(ctx, case, res["output"], expected, mag, "output (extension)",
                Tolerance.for_case(case, bag_terms(case), accumulate_f32=True))


# built-in: per_sample_weights with mode='mean' / 'max' (torch: NotImplementedError) ------------------


def _psw_mode(data: st.DataObject, case: Case) -> Case:  # noqa: ARG001 - the drawn case already has it
    return case


def _psw_mode_reference(case: Case, weight: NDArray) -> NDArray:
    """EXT-PSW-MODE: scale each row by its weight, then reduce with the mode."""
    mode = case.mode
    assert case.psw is not None
    psw = case.psw.reshape(-1)

    def reduce(rows: NDArray, pos: NDArray) -> Any:
        scaled = rows * psw[pos][:, None]
        if not len(rows):
            return np.zeros(weight.shape[1])
        return scaled.max(axis=0) if mode == "max" else scaled.sum(axis=0) / len(rows)

    return ref.bag_reduce(case, weight, reduce)


register_extension(Extension(
    "per_sample_weights with mode='mean'/'max' (torch: NotImplementedError)", "embedding_bag", ("EXT-PSW-MODE",),
    Want("embedding_bag", psw_ext=True, shape="any", norm_type=(None, 2.0), bite=False),
    _psw_mode, _psw_mode_reference,
    magnitude=lambda c, w: np.abs(_psw_mode_reference(c, w)) if c.mode == "max"
    else np.abs(_psw_mode_reference(abs_case(c), np.abs(w))),
))
