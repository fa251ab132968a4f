"""Every invalid input class of docs/spec.md (the ERR-* rules, PAD-RANGE, RENORM-ARGS, BAG-PSW-MODE, BAG-LAST-OFFSET):

* the exception type,
* the message names the argument in backticks and, where there is one, the offending value — matched by a regex
  anchored on the value's context (``got 0.0$``, ```padding_idx` 6 is out of range``), so a value that merely
  also occurs in the fixed text (the "0" of "> 0", the "6" of "6 rows") does not count,
* the weight is bit-identical after the failed call (ERR-ATOMIC) — every case below runs with ``max_norm`` set
  (unless the case is about ``max_norm`` itself) on a weight whose referenced rows are all above it, so a check
  that ran after the renorm would show up as a modified weight.

Test ids are ``<rule ID>/<case>``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from xembed_testutils import Backend, assert_bitwise_equal, to_numpy

import xembed

N, D = 6, 3
MAX_NORM = 0.5


def _weight_np() -> np.ndarray:
    # every row has 2-norm >= 1 > MAX_NORM: any renorm would change it
    w = np.random.default_rng(0).standard_normal((N, D))
    return w / np.linalg.norm(w, axis=1, keepdims=True) * np.arange(2, 2 + N)[:, None]


class Case:
    """One invalid call: ``rule`` (docs/spec.md ID), ``exc`` its type, ``names`` (one of them must appear in
    backticks), ``value`` a regex that must match the message (the offending value in its context), ``kw`` the
    arguments that differ from the valid defaults."""

    def __init__(self, rule: str, id: str, exc: type[Exception], names: list[str], value: str | None = None,
                 **kw: Any) -> None:
        self.rule, self.id, self.exc, self.names, self.value, self.kw = rule, id, exc, names, value, kw

    @property
    def test_id(self) -> str:
        return f"{self.rule}/{self.id}"


# Each kwarg value is a function of the backend returning the argument (so arrays are made per backend).
def A(a: Any, dtype: str | None = None) -> Callable[[Backend], Any]:
    return lambda bk: bk.asarray(np.asarray(a), dtype)


# Cases whose call and message are the same for both functions (weight, padding and renorm arguments).
SHARED_CASES = [
    Case("ERR-WEIGHT", "weight_1d", ValueError, ["weight"], r"got shape \(6,\)$", weight=A(np.ones(N))),
    Case("ERR-WEIGHT", "weight_3d", ValueError, ["weight"], r"got shape \(6, 3, 2\)$",
         weight=A(np.ones((N, D, 2)))),
    Case("PAD-RANGE", "padding_idx_too_large", ValueError, ["padding_idx"], r"`padding_idx` 6 is out of range",
         padding_idx=6),
    Case("PAD-RANGE", "padding_idx_too_small", ValueError, ["padding_idx"], r"`padding_idx` -7 is out of range",
         padding_idx=-7),
    Case("RENORM-ARGS", "max_norm_zero", ValueError, ["max_norm"], r"got 0\.0$", max_norm=0.0),
    Case("RENORM-ARGS", "max_norm_negative", ValueError, ["max_norm"], r"got -2\.5$", max_norm=-2.5),
    Case("RENORM-ARGS", "norm_type_nan", ValueError, ["norm_type"], r"got nan$", norm_type=math.nan),
]

GOOD_IDX = A([0, 1, 2, 1])
DT = r"got \S*"  # a dtype as the backend spells it: float64, torch.float64

EMBEDDING_CASES = [
    Case("ERR-INDEX-RANGE", "index_too_large", IndexError, ["input"], r"index 17 at position 2 ",
         input=A([0, 1, 17, 2])),
    Case("ERR-INDEX-RANGE", "index_equal_num_embeddings", IndexError, ["input"], r"index 6 at position \(1, 0\) ",
         input=A([[0, 1], [6, 2]])),
    Case("ERR-INDEX-RANGE", "index_negative", IndexError, ["input"], r"index -3 at position 1 ", input=A([0, -3, 2])),
    Case("ERR-INDEX-RANGE", "index_out_of_range_0d", IndexError, ["input"], r"index 9 at position \(\) ",
         input=A(9)),
    Case("ERR-INDEX-DTYPE", "index_float", TypeError, ["input"], DT + "float64$", input=A([0.0, 1.0], "float64")),
    Case("ERR-INDEX-DTYPE", "index_float32", TypeError, ["input"], DT + "float32$", input=A([0.0, 1.0], "float32")),
    Case("ERR-INDEX-DTYPE", "index_bool", TypeError, ["input"], DT + "bool$", input=A([True, False], "bool")),
    Case("ERR-WEIGHT", "weight_int", TypeError, ["weight"], DT + "int64$", weight=A(np.ones((N, D)), "int64")),
    Case("RENORM-ARGS", "norm_type_zero", ValueError, ["norm_type"], r"got 0\.0$", norm_type=0.0),
    Case("RENORM-ARGS", "norm_type_negative", ValueError, ["norm_type"], r"got -2\.0$", norm_type=-2.0),
    Case("ERR-SPARSE-SGBF", "sparse_with_scale_grad_by_freq", ValueError, ["sparse", "scale_grad_by_freq"], None,
         sparse=True, scale_grad_by_freq=True),
    *SHARED_CASES,
]

BAG_IDX = A([0, 1, 2, 1, 3])
BAG_OFFS = A([0, 2])

BAG_CASES = [
    Case("ERR-INDEX-RANGE", "index_too_large", IndexError, ["input"], r"index 17 at position 2 ",
         input=A([0, 1, 17, 2, 3])),
    Case("ERR-INDEX-RANGE", "index_negative", IndexError, ["input"], r"index -1 at position 3 ",
         input=A([0, 1, 2, -1, 3])),
    Case("ERR-INDEX-RANGE", "index_too_large_2d", IndexError, ["input"], r"index 8 at position \(1, 0\) ",
         input=A([[0, 1], [8, 2]]), offsets=None),
    Case("ERR-INDEX-DTYPE", "index_float", TypeError, ["input"], DT + "float64$",
         input=A([0.0, 1.0, 2.0, 1.0, 3.0], "float64")),
    Case("ERR-INDEX-DTYPE", "index_bool", TypeError, ["input"], DT + "bool$",
         input=A([True, False, True, True, False], "bool")),
    Case("ERR-OFFSETS-DTYPE", "offsets_float", TypeError, ["offsets"], DT + "float64$",
         offsets=A([0.0, 2.0], "float64")),
    Case("ERR-OFFSETS-DTYPE", "offsets_bool", TypeError, ["offsets"], DT + "bool$", offsets=A([False, True], "bool")),
    Case("ERR-WEIGHT", "weight_int", TypeError, ["weight"], DT + "int32$", weight=A(np.ones((N, D)), "int32")),
    Case("ERR-PSW", "psw_shape_mismatch", ValueError, ["per_sample_weights"], r"got \(4,\) and \(5,\)$",
         mode="sum", per_sample_weights=A(np.ones(4))),
    Case("ERR-PSW", "psw_shape_mismatch_2d", ValueError, ["per_sample_weights"], r"got \(2, 3\) and \(2, 2\)$",
         mode="sum", input=A([[0, 1], [2, 3]]), offsets=None, per_sample_weights=A(np.ones((2, 3)))),
    Case("ERR-PSW", "psw_dtype_mismatch", TypeError, ["per_sample_weights"], DT + "float32$", mode="sum",
         per_sample_weights=A(np.ones(5), "float32")),
    Case("ERR-PSW", "psw_int", TypeError, ["per_sample_weights"], DT + "int64$", mode="sum",
         per_sample_weights=A(np.ones(5), "int64")),
    Case("BAG-PSW-MODE", "psw_with_max", NotImplementedError, ["per_sample_weights"], r"got `mode`='max'",
         mode="max", per_sample_weights=A(np.ones(5))),
    Case("ERR-OFFSETS-SHAPE", "2d_input_with_offsets", ValueError, ["offsets"], r"of shape \(2,\)$",
         input=A([[0, 1], [2, 3]])),
    Case("ERR-OFFSETS-SHAPE", "1d_input_without_offsets", ValueError, ["offsets"], r"got None$", offsets=None),
    Case("ERR-OFFSETS-SHAPE", "offsets_2d", ValueError, ["offsets"], r"got shape \(1, 2\)$", offsets=A([[0, 2]])),
    Case("ERR-OFFSETS-SHAPE", "offsets_0d", ValueError, ["offsets"], r"got shape \(\)$", offsets=A(0)),
    Case("ERR-INPUT-NDIM", "input_3d", ValueError, ["input"], r"got shape \(2, 2, 2\)$",
         input=A(np.zeros((2, 2, 2), dtype=np.int64)), offsets=None),
    Case("ERR-INPUT-NDIM", "input_0d", ValueError, ["input"], r"got shape \(\)$", input=A(1), offsets=None),
    Case("ERR-MODE", "mode_invalid", ValueError, ["mode"], r"got 'prod'$", mode="prod"),
    Case("ERR-MODE", "mode_uppercase", ValueError, ["mode"], r"got 'SUM'$", mode="SUM"),
    Case("ERR-MAX-SPARSE", "max_with_scale_grad_by_freq", ValueError, ["scale_grad_by_freq"], None, mode="max",
         scale_grad_by_freq=True),
    Case("ERR-MAX-SPARSE", "max_with_sparse", ValueError, ["sparse"], None, mode="max", sparse=True),
    Case("ERR-SPARSE-SGBF", "sparse_with_scale_grad_by_freq", ValueError, ["sparse", "scale_grad_by_freq"], None,
         mode="sum", sparse=True, scale_grad_by_freq=True),
    Case("ERR-OFFSETS-FIRST", "offsets_first_nonzero", ValueError, ["offsets"], r"got 3$", offsets=A([3, 4])),
    Case("ERR-OFFSETS-DECREASING", "offsets_decreasing", ValueError, ["offsets"],
         r"offsets\[2\] = 2 < offsets\[1\] = 4$", offsets=A([0, 4, 2])),
    Case("ERR-OFFSETS-END", "offsets_last_too_large", ValueError, ["offsets"], r"`offsets`\[-1\] = 9 is greater",
         offsets=A([0, 2, 9])),
    Case("BAG-LAST-OFFSET", "ilo_short_last_offset", ValueError, ["offsets", "include_last_offset"], r"got 4$",
         offsets=A([0, 2, 4]), include_last_offset=True),
    Case("ERR-OFFSETS-END", "ilo_last_offset_too_large", ValueError, ["offsets"], r"`offsets`\[-1\] = 7 is greater",
         offsets=A([0, 2, 7]), include_last_offset=True),
    Case("BAG-LAST-OFFSET", "ilo_empty_offsets", ValueError, ["offsets", "include_last_offset"], None,
         offsets=A(np.array([], dtype=np.int64)), include_last_offset=True),
    Case("RENORM-ARGS", "norm_type_zero", ValueError, ["norm_type"], r"got 0$", norm_type=0),
    Case("RENORM-ARGS", "norm_type_negative", ValueError, ["norm_type"], r"got -1\.0$", norm_type=-1.0),
    *SHARED_CASES,
]


def _check_message(exc_info: pytest.ExceptionInfo[Exception], case: Case) -> None:
    msg = str(exc_info.value)
    named = [f"`{n}`" in msg for n in case.names]
    assert any(named), f"message does not name {' or '.join(f'`{n}`' for n in case.names)}: {msg!r}"
    if case.value is not None:
        assert re.search(case.value, msg), f"message does not show the offending value ({case.value!r}): {msg!r}"


def _build(backend, case, defaults):
    kw = dict(defaults)
    kw.update(case.kw)
    kw = {k: (v(backend) if callable(v) else v) for k, v in kw.items()}
    if "max_norm" not in case.kw:
        kw["max_norm"] = MAX_NORM
    return kw


@pytest.mark.parametrize("vjp", [False, True], ids=["fwd", "vjp"])
@pytest.mark.parametrize("case", EMBEDDING_CASES, ids=lambda c: c.test_id)
def test_embedding_invalid(backend, case, vjp):
    kw = _build(backend, case, {"input": GOOD_IDX, "weight": A(_weight_np())})
    weight = kw.pop("weight")
    inp = kw.pop("input")
    before = to_numpy(weight)
    fn = xembed.embedding_vjp if vjp else xembed.embedding
    with pytest.raises(case.exc) as exc_info:
        fn(inp, weight, **kw)
    _check_message(exc_info, case)
    assert_bitwise_equal(weight, before, "weight after a failed call")


@pytest.mark.parametrize("vjp", [False, True], ids=["fwd", "vjp"])
@pytest.mark.parametrize("case", BAG_CASES, ids=lambda c: c.test_id)
def test_embedding_bag_invalid(backend, case, vjp):
    kw = _build(backend, case, {"input": BAG_IDX, "weight": A(_weight_np()), "offsets": BAG_OFFS, "mode": "mean"})
    weight = kw.pop("weight")
    inp = kw.pop("input")
    offsets = kw.pop("offsets")
    before = to_numpy(weight)
    fn = xembed.embedding_bag_vjp if vjp else xembed.embedding_bag
    with pytest.raises(case.exc) as exc_info:
        fn(inp, weight, offsets, **kw)
    _check_message(exc_info, case)
    assert_bitwise_equal(weight, before, "weight after a failed call")


def test_index_error_names_position(backend):
    """ERR-INDEX-RANGE: the message gives the value and its position."""
    w = backend.asarray(_weight_np())
    with pytest.raises(IndexError) as exc_info:
        xembed.embedding(backend.asarray(np.array([0, 1, 2, 12, 1])), w)
    assert re.search(r"index 12 at position 3 of `input`", str(exc_info.value)), str(exc_info.value)


def test_valid_reference_calls_do_not_raise(backend):
    """The defaults the error cases start from are valid (so each case fails for its own reason only)."""
    w = backend.asarray(_weight_np())
    xembed.embedding(GOOD_IDX(backend), w, max_norm=MAX_NORM)
    xembed.embedding_bag(BAG_IDX(backend), w, BAG_OFFS(backend), max_norm=MAX_NORM)
    xembed.embedding_bag(BAG_IDX(backend), w, BAG_OFFS(backend), max_norm=MAX_NORM, mode="sum",
                         per_sample_weights=backend.asarray(np.ones(5)))
    xembed.embedding_bag(BAG_IDX(backend), w, A([0, 2, 5])(backend), include_last_offset=True)
