"""Invalid inputs: the call must raise a clear error and leave the weight untouched (ERR-*, ERR-ATOMIC).

Each error row is a valid case (drawn like the value rows) plus a *mutation* that makes it invalid in
exactly one way.  Rows whose verdict is this spec's own decision (torch crashes or does something
else) are marked ``strict`` and live in :mod:`xembed_conformance.checks.strict`.
"""

# ruff: noqa: EM101, ARG001  # Violation's `what` is a label; every mutation has the (data, case, backend) signature

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from xembed_conformance import reference as ref
from xembed_conformance.backends import FLOAT_EPS, Backend
from xembed_conformance.cases import Case
from xembed_conformance.checks.core import Context, InternalError, Violation
from xembed_conformance.execute import ACCEPTED

Mutation = Callable[[st.DataObject, Case, Backend], Case]


@dataclass(frozen=True)
class ErrorSpec:
    expects: str  # what the spec says, e.g. "IndexError naming the value"
    strict: bool = False  # unspecified by the reference: checked only with --strict
    lenient: bool = False  # returning an empty (0, D) result also conforms
    backward_ok: bool = False  # (non-strict) raising at backward time also conforms


@dataclass(frozen=True)
class ErrorRow:
    option: str
    mutate: Mutation
    error: ErrorSpec
    spec: tuple[str, ...]
    want: dict[str, Any]


def run_error(ctx: Context, case: Case, spec: ErrorSpec) -> None:
    accepted = ACCEPTED
    oracle_w = None
    if not spec.strict:
        oexc, oracle_w = ref.oracle_raises(case)
        if oexc is None:
            msg = f"the reference torch.nn.functional.{case.fn} did not raise on {case.describe()}"
            raise InternalError(msg)
        if isinstance(oexc, AssertionError) and not ctx.strict:
            accepted = (*ACCEPTED, AssertionError)
    res = ctx.call("invalid", case, accepted=accepted, try_backward=spec.backward_ok and not ctx.strict)
    judged = {"accepted": [c.__name__ for c in accepted], "must_name": case.must_name if ctx.strict else ()}
    if "device-side assert" in str(res.get("message", "")) or "CUDA error" in str(res.get("message", "")):
        ctx.executor.close()  # a device-side assert poisons the CUDA context: next call gets a fresh worker
    if res["raised"] is None:
        if not (spec.lenient and tuple(res.get("shape", ())) == (0, case.weight.shape[-1])):
            raise Violation("error", f"no exception raised; expected {spec.expects}", case, **judged)
    elif not res["accepted"]:
        raise Violation("error", f"raised {res['raised']}: {res['message']!s}; expected {spec.expects} "
                        f"(accepted classes: {', '.join(c.__name__ for c in accepted)})", case, **judged)
    elif not res["message"].strip():
        raise Violation("error", f"raised {res['raised']} with an empty message; expected {spec.expects}", case,
                        **judged)
    elif ctx.strict and not all(s in res["message"] for s in case.must_name):
        raise Violation("error", f"raised {res['raised']}: {res['message']!s}; expected {spec.expects}: the "
                        f"message must show {' and '.join(case.must_name)}", case, **judged)
    wa = res.get("weight_after")
    if wa is None:
        return
    orig = case.weight
    wa64 = np.asarray(wa, dtype=np.float64)
    same = wa64.shape == orig.shape and np.array_equal(wa64, orig, equal_nan=True)
    like_ref = oracle_w is not None and wa64.shape == oracle_w.shape and np.allclose(
        wa64, np.asarray(oracle_w, np.float64), rtol=4 * FLOAT_EPS.get(case.wdtype, 1e-7), atol=0, equal_nan=True)
    if not same and not (like_ref and not ctx.strict):
        changed = np.argwhere(wa64 != orig)[0].tolist() if wa64.shape == orig.shape else "shape"
        raise Violation("weight after a failing call",
                        f"the call raised but the weight changed (first at {changed}); a failing call must "
                        "leave the weight untouched (ERR-ATOMIC)", case, **judged)


def _d(data: st.DataObject, strat: st.SearchStrategy[Any], label: str) -> Any:
    return data.draw(strat, label=label)


# mutations producing invalid cases ---------------------------------------------------------------


def _oob(data: st.DataObject, c: Case, be: Backend) -> Case:
    flat = c.input.reshape(-1)
    j = _d(data, st.integers(0, flat.size - 1), "position of the bad index")
    flat[j] = c.weight.shape[0] + _d(data, st.integers(0, 3), "index - num_embeddings")
    c.notes.append(f"input position {j} holds {flat[j]} >= num_embeddings={c.weight.shape[0]}")
    c.must_name = (str(flat[j]),)
    return c


def _neg(data: st.DataObject, c: Case, be: Backend) -> Case:
    flat = c.input.reshape(-1)
    j = _d(data, st.integers(0, flat.size - 1), "position of the bad index")
    flat[j] = _d(data, st.integers(-c.weight.shape[0] - 2, -1), "negative index")
    c.notes.append(f"input position {j} holds negative index {flat[j]}")
    c.must_name = (str(flat[j]),)
    return c


def _float_input(data: st.DataObject, c: Case, be: Backend) -> Case:
    c.idtype = _d(data, st.sampled_from(be.float_dtypes), "float dtype of the indices")
    # float16 ends at 65504: larger indices (tables past 65,536 rows) are clipped, not cast to inf
    c.input = (np.minimum(c.input, 65504) if c.idtype == "float16" else c.input).astype(np.float64)
    return c


def _bool_input(data: st.DataObject, c: Case, be: Backend) -> Case:
    c.input = (c.input % 2).astype(bool)
    c.idtype = "bool"
    return c


def _float_offsets(data: st.DataObject, c: Case, be: Backend) -> Case:
    assert c.offsets is not None
    c.offsets = c.offsets.astype(np.float64)
    c.odtype = _d(data, st.sampled_from(be.float_dtypes), "float dtype of the offsets")
    return c


def _pad_oob(data: st.DataObject, c: Case, be: Backend) -> Case:
    N = c.weight.shape[0]
    c.kwargs["padding_idx"] = _d(data, st.sampled_from([N, N + 1, -N - 1, -N - 3]), "out-of-range padding_idx")
    return c


def _weight_1d(data: st.DataObject, c: Case, be: Backend) -> Case:
    c.weight = c.weight[:, 0].copy()
    return c


def _weight_int(data: st.DataObject, c: Case, be: Backend) -> Case:
    c.wdtype = "int64"
    c.weight = np.round(c.weight)
    c.kwargs.pop("max_norm", None)
    c.kwargs.pop("norm_type", None)
    c.psw = None
    return c


def _max_norm_nonpos(data: st.DataObject, c: Case, be: Backend) -> Case:
    c.kwargs["max_norm"] = _d(data, st.sampled_from([0.0, -1.0, -0.5]), "max_norm <= 0")
    return c


def _norm_type_bad(data: st.DataObject, c: Case, be: Backend) -> Case:
    c.kwargs["max_norm"] = 1.0
    c.kwargs["norm_type"] = _d(data, st.sampled_from([0.0, -1.0, -2.0, math.nan]), "norm_type <= 0 or NaN")
    return c


def _sparse_sgbf(data: st.DataObject, c: Case, be: Backend) -> Case:
    c.kwargs["sparse"] = True
    c.kwargs["scale_grad_by_freq"] = True
    return c


def _off0(data: st.DataObject, c: Case, be: Backend) -> Case:
    assert c.offsets is not None
    c.offsets = c.offsets.copy()
    c.offsets[0] = _d(data, st.integers(1, max(int(c.input.shape[0]), 1)), "offsets[0] (must be 0)")
    c.offsets = np.maximum.accumulate(c.offsets)
    return c


def _off_last(data: st.DataObject, c: Case, be: Backend) -> Case:
    assert c.offsets is not None
    c.offsets = np.append(c.offsets, c.input.shape[0] + _d(data, st.integers(1, 3), "offsets[-1] - len(input)"))
    return c


def _off_decreasing(data: st.DataObject, c: Case, be: Backend) -> Case:
    L = int(c.input.shape[0])
    a = _d(data, st.integers(1, max(L, 1)), "offsets[1]")
    b = _d(data, st.integers(0, a - 1), "offsets[2] (< offsets[1]: decreasing)")
    c.offsets = np.asarray([0, a, b], np.int64)
    c.kwargs.pop("include_last_offset", None)
    return c


def _ilo_short(data: st.DataObject, c: Case, be: Backend) -> Case:
    c.kwargs["include_last_offset"] = True
    assert c.offsets is not None
    c.offsets = np.append(c.offsets[c.offsets < c.input.shape[0]], [])
    c.offsets = c.offsets.astype(np.int64)
    assume(c.offsets.size >= 1 and c.offsets[-1] < c.input.shape[0])
    return c


def _ilo_empty(data: st.DataObject, c: Case, be: Backend) -> Case:
    c.kwargs["include_last_offset"] = True
    c.offsets = np.zeros(0, np.int64)
    return c


def _empty_offsets(data: st.DataObject, c: Case, be: Backend) -> Case:
    c.offsets = np.zeros(0, np.int64)
    c.kwargs.pop("include_last_offset", None)
    return c


def _2d_with_offsets(data: st.DataObject, c: Case, be: Backend) -> Case:
    B = _d(data, st.integers(1, 3), "number of bags")
    c.input = np.resize(c.input, (B, max(c.input.size // B, 1))) if c.input.size else np.zeros((B, 1), np.int64)
    c.input = np.clip(c.input, 0, c.weight.shape[0] - 1)
    c.offsets = np.arange(B, dtype=np.int64)
    c.kwargs.pop("include_last_offset", None)
    c.psw = None
    return c


def _1d_without_offsets(data: st.DataObject, c: Case, be: Backend) -> Case:
    c.offsets = None
    c.kwargs.pop("include_last_offset", None)
    return c


def _offsets_2d(data: st.DataObject, c: Case, be: Backend) -> Case:
    assert c.offsets is not None
    c.offsets = c.offsets.reshape(1, -1)
    return c


def _input_0d(data: st.DataObject, c: Case, be: Backend) -> Case:
    c.input = np.asarray(c.input.reshape(-1)[0] if c.input.size else 0, dtype=np.int64)
    c.offsets = np.zeros(1, np.int64)
    c.kwargs.pop("include_last_offset", None)
    c.psw = None
    return c


def _input_3d(data: st.DataObject, c: Case, be: Backend) -> Case:
    c.input = c.input.reshape(1, 1, -1)
    c.offsets = None
    c.kwargs.pop("include_last_offset", None)
    c.psw = None
    return c


def _bad_mode(data: st.DataObject, c: Case, be: Backend) -> Case:
    c.kwargs["mode"] = _d(data, st.sampled_from(["prod", "MEAN", "median", ""]), "invalid mode")
    c.psw = None
    return c


def _max_sgbf(data: st.DataObject, c: Case, be: Backend) -> Case:
    c.kwargs.update(mode="max", scale_grad_by_freq=True)
    c.kwargs.pop("sparse", None)
    return c


def _max_sparse(data: st.DataObject, c: Case, be: Backend) -> Case:
    c.kwargs.update(mode="max", sparse=True)
    c.kwargs.pop("scale_grad_by_freq", None)
    return c


def _psw_shape(data: st.DataObject, c: Case, be: Backend) -> Case:
    c.kwargs["mode"] = "sum"
    n = c.input.size + _d(data, st.sampled_from([-1, 1, 2]), "per_sample_weights length - len(input)")
    if n < 0:
        n = 1
    c.psw = np.ones(n) / 2
    c.pdtype = c.wdtype
    return c


def _psw_dtype(data: st.DataObject, c: Case, be: Backend) -> Case:
    c.kwargs["mode"] = "sum"
    c.psw = np.ones(c.input.shape) / 2
    c.pdtype = _d(data, st.sampled_from([t for t in be.float_dtypes if t != c.wdtype]), "per_sample_weights dtype")
    return c


E, B = "embedding", "embedding_bag"
_A = "ERR-ATOMIC"
ERROR_ROWS: list[tuple[str, ErrorRow]] = [
    (E, ErrorRow("error: index >= num_embeddings", _oob, ErrorSpec("IndexError (with --strict: naming the value)"),
                 ("ERR-INDEX-RANGE", _A), {"shape": ("1d", "nd")})),
    (E, ErrorRow("error: negative index", _neg,
                 ErrorSpec("IndexError (negative indices are never wrapped; with --strict: naming the value)"),
                 ("ERR-INDEX-RANGE", _A), {"shape": ("1d", "nd")})),
    (E, ErrorRow("error: non-integer indices", _float_input, ErrorSpec("TypeError"), ("ERR-INDEX-DTYPE", _A), {})),
    (E, ErrorRow("error: bool indices", _bool_input, ErrorSpec("TypeError"), ("ERR-INDEX-DTYPE", _A), {})),
    (E, ErrorRow("error: padding_idx out of range", _pad_oob, ErrorSpec("ValueError"), ("PAD-RANGE", _A), {})),
    (E, ErrorRow("error: weight not 2-D", _weight_1d, ErrorSpec("ValueError"), ("ERR-WEIGHT", _A), {})),
    (E, ErrorRow("error: sparse + scale_grad_by_freq", _sparse_sgbf,
                 ErrorSpec("ValueError at the call (torch: RuntimeError at backward)", backward_ok=True),
                 ("ERR-SPARSE-SGBF", _A), {"shape": "1d"})),
    (B, ErrorRow("error: index >= num_embeddings", _oob, ErrorSpec("IndexError (with --strict: naming the value)"),
                 ("ERR-INDEX-RANGE", _A), {"shape": ("offsets", "2d"), "dup": True})),
    (B, ErrorRow("error: negative index", _neg, ErrorSpec("IndexError (with --strict: naming the value)"),
                 ("ERR-INDEX-RANGE", _A), {"shape": ("offsets", "2d"), "dup": True})),
    (B, ErrorRow("error: non-integer indices", _float_input, ErrorSpec("TypeError"), ("ERR-INDEX-DTYPE", _A), {})),
    (B, ErrorRow("error: float offsets", _float_offsets, ErrorSpec("TypeError"), ("ERR-OFFSETS-DTYPE", _A),
                 {"shape": "offsets"})),
    (B, ErrorRow("error: offsets[0] != 0", _off0, ErrorSpec("ValueError"),
                 ("ERR-OFFSETS-FIRST", _A), {"shape": "offsets", "dup": True})),
    (B, ErrorRow("error: offsets[-1] > len(input)", _off_last, ErrorSpec("ValueError"), ("ERR-OFFSETS-END", _A),
                 {"shape": "offsets"})),
    (B, ErrorRow("error: 2-D input with offsets", _2d_with_offsets, ErrorSpec("ValueError"),
                 ("ERR-OFFSETS-SHAPE", _A), {"shape": "offsets"})),
    (B, ErrorRow("error: 1-D input without offsets", _1d_without_offsets, ErrorSpec("ValueError"),
                 ("ERR-OFFSETS-SHAPE", _A), {"shape": "offsets"})),
    (B, ErrorRow("error: offsets not 1-D", _offsets_2d, ErrorSpec("ValueError"), ("ERR-OFFSETS-SHAPE", _A),
                 {"shape": "offsets"})),
    (B, ErrorRow("error: input 0-d", _input_0d, ErrorSpec("ValueError"), ("ERR-INPUT-NDIM", _A), {"shape": "offsets"})),
    (B, ErrorRow("error: input 3-D", _input_3d, ErrorSpec("ValueError"), ("ERR-INPUT-NDIM", _A),
                 {"shape": ("offsets", "2d")})),
    (B, ErrorRow("error: invalid mode", _bad_mode, ErrorSpec("ValueError"), ("ERR-MODE", _A), {})),
    (B, ErrorRow("error: mode='max' + scale_grad_by_freq", _max_sgbf, ErrorSpec("ValueError"),
                 ("ERR-MAX-SPARSE", _A), {"psw": False})),
    (B, ErrorRow("error: mode='max' + sparse", _max_sparse, ErrorSpec("ValueError"), ("ERR-MAX-SPARSE", _A),
                 {"psw": False})),
    (B, ErrorRow("error: per_sample_weights shape", _psw_shape, ErrorSpec("ValueError"), ("ERR-PSW", _A), {})),
    (B, ErrorRow("error: per_sample_weights dtype", _psw_dtype, ErrorSpec("TypeError"), ("ERR-PSW", _A), {})),
    (B, ErrorRow("error: weight not 2-D", _weight_1d, ErrorSpec("ValueError"), ("ERR-WEIGHT", _A), {"psw": False})),
    (B, ErrorRow("error: padding_idx out of range", _pad_oob, ErrorSpec("ValueError"), ("PAD-RANGE", _A), {})),
    (B, ErrorRow("error: include_last_offset with empty offsets", _ilo_empty, ErrorSpec("ValueError"),
                 ("BAG-LAST-OFFSET", _A), {"shape": "offsets"})),
    (B, ErrorRow("error: sparse + scale_grad_by_freq", _sparse_sgbf,
                 ErrorSpec("ValueError at the call (torch: RuntimeError at backward)", backward_ok=True),
                 ("ERR-SPARSE-SGBF", _A), {"shape": "offsets", "mode": ("sum", "mean"), "dup": True})),
]
__all__ = ["ERROR_ROWS", "ErrorRow", "ErrorSpec", "Mutation", "run_error"]
