"""Value errors on a traced backend (``jax-jit``): array values cannot be read under ``jax.jit``, so the error
rows whose error depends on those values check the spec's JIT-INVALID-* rules instead of an exception:

- JIT-INVALID-INDEX: an index outside ``[0, N)`` makes its ``embedding`` output row NaN and its whole
  ``embedding_bag`` bag NaN (every mode); every other output entry is exact (never a wrapped or clamped row);
- JIT-INVALID-OFFSETS: offsets that break ERR-OFFSETS-FIRST / -DECREASING / -END or BAG-LAST-OFFSET make every
  output row NaN.

The output's shape, dtype and device are those of a valid call; the weight is left unchanged.
"""

# ruff: noqa: EM101  # Violation(what, message, case): `what` is a label, not the exception's message

from __future__ import annotations

from dataclasses import replace

import numpy as np

from xembed_conformance.cases import Case, NDArray, bag_bounds
from xembed_conformance.checks.core import Context, Tolerance, Violation, bag_terms, check_array
from xembed_conformance.checks.values import check_weight_after, expected_output, renorm_slack

#: spec rules whose errors depend on the values of the arrays (BAG-LAST-OFFSET's value rule too, told apart
#: from its shape rule by the row's option: ``offsets[-1] != len(input)``)
VALUE_ERROR_RULES = frozenset({"ERR-INDEX-RANGE", "ERR-OFFSETS-FIRST", "ERR-OFFSETS-DECREASING", "ERR-OFFSETS-END"})


def is_value_error(option: str, spec: tuple[str, ...]) -> bool:
    """Whether an error row's error depends on array values (under ``jit``: JIT-INVALID-*, no exception)."""
    return bool(VALUE_ERROR_RULES.intersection(spec)) or "offsets[-1] !=" in option


def _expected(case: Case, spec: tuple[str, ...]) -> tuple[Case, NDArray | None]:
    """(the valid case whose output the non-NaN entries must match, which output rows are NaN)."""
    if "ERR-INDEX-RANGE" not in spec:  # offsets rules: every row NaN, whatever the layout
        return case, None
    n = case.weight.shape[0]
    bad = (case.input < 0) | (case.input >= n)
    # a stand-in index for the bad positions: their output rows / bags are NaN anyway, and row 0 is renormed
    # (max_norm) only where it also appears at a valid position -- or in a NaN bag
    valid = replace(case, input=np.where(bad, 0, case.input))
    if case.fn == "embedding":
        return valid, bad
    starts, ends = bag_bounds(valid)
    flat = np.concatenate([[0], np.cumsum(bad.reshape(-1), dtype=np.int64)])
    return valid, (flat[ends] - flat[starts]) > 0


def run_traced_value_error(ctx: Context, case: Case, option: str, spec: tuple[str, ...]) -> None:
    res = ctx.call_valid(case, with_grad=False,
                         why="; under jit a value error cannot raise: the spec's JIT-INVALID-* rules give NaN rows")
    valid, nan_rows = _expected(case, spec)
    if "ERR-INDEX-RANGE" in spec:
        w = check_weight_after(ctx, valid, res["weight_after"])
        expected, mag = expected_output(valid, w)
        slack = renorm_slack(ctx, valid, w)
        tol = Tolerance.for_case(valid, bag_terms(valid), accumulate_f32=True)
    else:  # invalid offsets: no valid layout to compare with; every row NaN
        if not np.array_equal(res["weight_after"], case.weight, equal_nan=True):
            raise Violation("weight after the call", "the weight changed (under jit it is immutable)", case)
        assert case.offsets is not None
        n_bags = case.offsets.shape[0] - int(bool(case.kwargs.get("include_last_offset", False)))
        expected = mag = np.zeros((max(n_bags, 0), case.weight.shape[1]))
        slack, tol = None, Tolerance.for_case(case, 1, accumulate_f32=True)
    expected = expected.copy()
    if nan_rows is None:
        expected[...] = np.nan
    else:
        expected[nan_rows] = np.nan
    check_array(ctx, case, res["output"], expected, mag, f"output ({option.removeprefix('error: ')} under jit, "
                "JIT-INVALID-*: NaN rows)", tol, slack=slack)
