"""What every check shares: the verdict exception, the run context, the comparison with tolerances."""

# Violation(what, message, case): `what` is a label, not the exception's message

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from xembed_conformance.backends import FLOAT_EPS, Backend
from xembed_conformance.cases import Case, NDArray, bag_bounds, normalized_padding
from xembed_conformance.execute import Observed

LOW_PRECISION = ("float16", "bfloat16")


class Violation(AssertionError):  # noqa: N818 - a verdict, not an error of the checker
    """The target does not conform on this case."""

    def __init__(self, what: str, message: str, case: Case, **extra: Any):
        super().__init__(f"{what}: {message}")
        self.what = what
        self.message = message
        self.case = case
        self.extra = extra


class CrashBudgetSpent(BaseException):
    """The target crashed the worker `CRASH_BUDGET` times in one check: stop shrinking (every crash costs a
    worker restart) and report the last crashing case."""

    def __init__(self, violation: Violation):
        super().__init__(str(violation))
        self.violation = violation


CRASH_BUDGET = 4


class InternalError(Exception):
    """The checker (or the reference) misbehaved: never a verdict on the target."""


class Executor(Protocol):
    isolated: bool

    def call(self, kind: str, case: Case, **kw: Any) -> dict[str, Any]: ...

    def close(self) -> None: ...


@dataclass
class Context:
    backend: Backend
    executor: Executor
    strict: bool = False
    grad_mode: str | None = None  # "autograd" | "vjp" | None
    expected_device: str = "cpu"
    outcome: str = ""  # set by extension checks: "offered" / "not offered"
    crashes: int = 0  # worker crashes in the current check
    grad_f32: bool = False  # this row: float16 / bfloat16 gradients must accumulate in float32 (GRAD-ACC)

    def call(self, kind: str, case: Case, **kw: Any) -> dict[str, Any]:
        res = self.executor.call(kind, case, **kw)
        if "crashed" in res:
            v = Violation("crash", f"the target crashed the worker process ({res['crashed']}); "
                          "the checker restarted it", case, crashed=True)
            self.crashes += 1
            if self.crashes >= CRASH_BUDGET:
                raise CrashBudgetSpent(v)
            raise v
        return res

    def call_valid(self, case: Case, *, with_grad: bool, why: str = "") -> dict[str, Any]:
        """Call the target on a valid case: the result, or the Violation the call reported (it raised, returned
        no output, ...), its message followed by ``why``."""
        res = self.call("valid", case, with_grad=with_grad)
        if res["violation"]:
            what, message = res["violation"]
            raise Violation(what, message + why, case)
        return res


# tolerances (TOL-COMPARE, ACC-LOWP, GRAD-ACC) --------------------------------------------------------


def bag_terms(case: Case) -> int:
    """Most terms one output entry sums (the longest bag; 1 for embedding)."""
    if case.fn == "embedding":
        return 1
    starts, ends = bag_bounds(case)
    return int(max((ends - starts).max(initial=0), 1))


def row_terms(case: Case) -> int:
    """Most terms one weight-gradient entry sums (the most repeated non-padding row)."""
    flat = case.input.reshape(-1)
    pad = normalized_padding(case)
    if pad is not None:
        flat = flat[flat != pad]
    return int(np.bincount(flat).max()) if flat.size else 1


@dataclass(frozen=True)
class Tolerance:
    """|actual - expected| <= rel * |expected| + c * eps * magnitude (magnitude: the same computation
    on absolute values).  ``eps`` is the accumulation dtype's: the weight dtype's, or float32's where
    this spec requires float32 accumulation for float16 / bfloat16 (forward always, ACC-LOWP; gradients
    with --strict, GRAD-ACC)."""

    c: float
    eps: float
    rel: float

    @staticmethod
    def for_case(case: Case, terms: int, accumulate_f32: bool) -> Tolerance:
        eps_w = FLOAT_EPS[case.wdtype]
        if accumulate_f32 and case.wdtype in LOW_PRECISION:
            return Tolerance(4 + terms, FLOAT_EPS["float32"], 2 * eps_w)  # two roundings: the sum, the mean
        return Tolerance(4 + terms, eps_w, 0.0)

    def bound(self, expected: NDArray, mag: NDArray, slack: NDArray | None = None) -> NDArray:
        """The largest |actual - expected| allowed, per entry.  `slack`: a further absolute allowance per entry
        (an input the target may round differently)."""
        tol = self.rel * np.abs(expected) + self.c * self.eps * (np.abs(mag) + np.abs(expected))
        return tol if slack is None else tol + slack

    def ok(self, actual: NDArray, expected: NDArray, mag: NDArray, slack: NDArray | None = None) -> NDArray:
        tol = self.bound(expected, mag, slack)
        return (np.abs(actual - expected) <= tol) | (np.isnan(actual) & np.isnan(expected))

    def __str__(self) -> str:
        extra = f" + {self.rel:.3g}·|expected|" if self.rel else ""
        return f"{self.c:g}·{self.eps:.3g}·magnitude{extra}"


def check_array(ctx: Context, case: Case, x: Observed | None, expected: NDArray, mag: NDArray, what: str,
                tol: Tolerance, *, dtype: str | None = None, slack: NDArray | None = None) -> None:
    """`slack`: see Tolerance.ok (the renorm's rounding where the checker cannot see the renormed weight)."""
    be = ctx.backend
    want_dtype = dtype or case.wdtype
    # what a repro needs to judge the array by itself: the expected values, the tolerance per entry, the dtype
    judged = {"expected": expected, "tolerance": tol.bound(expected, mag, slack), "dtype": want_dtype}
    if x is None:
        raise Violation(what, "missing", case, **judged)
    if not x.is_array:
        raise Violation(what, f"expected a {be.name} array, got {x.type_name}", case, **judged)
    if x.shape != tuple(expected.shape):
        raise Violation(what, f"shape {x.shape}, expected {tuple(expected.shape)}", case, **judged)
    if x.dtype != want_dtype:
        raise Violation(what, f"dtype {x.dtype}, expected {want_dtype}", case, **judged)
    if x.device != ctx.expected_device:
        raise Violation(what, f"device {x.device}, expected {ctx.expected_device} (the weight's)", case)
    actual = x.values
    assert actual is not None
    if expected.size:
        ok = tol.ok(actual, expected, mag, slack)
        if not ok.all():
            bad = tuple(int(i) for i in np.argwhere(~ok)[0])
            nbad = int((~ok).sum())
            raise Violation(
                what,
                f"value at {bad} is {float(actual[bad])!r}, expected {float(expected[bad])!r} "
                f"(tolerance {tol}{'' if slack is None else f' + renorm slack {float(slack[bad]):.3g}'}; "
                f"{nbad} of {ok.size} entries off)",
                case, actual=actual, **judged,
            )
