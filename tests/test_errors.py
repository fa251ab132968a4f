"""Every invalid input class of SPEC.md (and the xembed decisions in the project context):

* the exception type,
* the message names the argument in backticks and, where there is one, the offending value,
* the weight is bit-identical after the failed call — every case below runs with ``max_norm`` set (unless the case
  is about ``max_norm`` itself) on a weight whose referenced rows are all above it, so a check that ran after the
  renorm would show up as a modified weight.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from xembed_testutils import assert_bitwise_equal, to_numpy

import xembed

N, D = 6, 3
MAX_NORM = 0.5


def _weight_np() -> np.ndarray:
    # every row has 2-norm >= 1 > MAX_NORM: any renorm would change it
    w = np.random.default_rng(0).standard_normal((N, D))
    return w / np.linalg.norm(w, axis=1, keepdims=True) * np.arange(2, 2 + N)[:, None]


class Case:
    def __init__(self, id, exc, names, value=None, **kw):
        self.id, self.exc, self.names, self.value, self.kw = id, exc, names, value, kw


# Each kwarg value is a function of the backend returning the argument (so arrays are made per backend).
def A(a, dtype=None):
    return lambda bk: bk.asarray(np.asarray(a), dtype)


GOOD_IDX = A([0, 1, 2, 1])

EMBEDDING_CASES = [
    Case("index_too_large", IndexError, ["input"], "17", input=A([0, 1, 17, 2])),
    Case("index_equal_num_embeddings", IndexError, ["input"], "6", input=A([[0, 1], [6, 2]])),
    Case("index_negative", IndexError, ["input"], "-3", input=A([0, -3, 2])),
    Case("index_out_of_range_0d", IndexError, ["input"], "9", input=A(9)),
    Case("index_float", TypeError, ["input"], None, input=A([0.0, 1.0], "float64")),
    Case("index_float32", TypeError, ["input"], None, input=A([0.0, 1.0], "float32")),
    Case("index_bool", TypeError, ["input"], None, input=A([True, False], "bool")),
    Case("weight_int", TypeError, ["weight"], None, weight=A(np.ones((N, D)), "int64")),
    Case("weight_1d", ValueError, ["weight"], None, weight=A(np.ones(N))),
    Case("weight_3d", ValueError, ["weight"], None, weight=A(np.ones((N, D, 2)))),
    Case("padding_idx_too_large", ValueError, ["padding_idx"], "6", padding_idx=6),
    Case("padding_idx_too_small", ValueError, ["padding_idx"], "-7", padding_idx=-7),
    Case("max_norm_zero", ValueError, ["max_norm"], "0", max_norm=0.0),
    Case("max_norm_negative", ValueError, ["max_norm"], "-2.5", max_norm=-2.5),
    Case("norm_type_zero", ValueError, ["norm_type"], "0", norm_type=0.0),
    Case("norm_type_negative", ValueError, ["norm_type"], "-2", norm_type=-2.0),
    Case("norm_type_nan", ValueError, ["norm_type"], "nan", norm_type=math.nan),
    Case("sparse_with_scale_grad_by_freq", ValueError, ["sparse", "scale_grad_by_freq"], None, sparse=True,
         scale_grad_by_freq=True),
]

BAG_IDX = A([0, 1, 2, 1, 3])
BAG_OFFS = A([0, 2])

BAG_CASES = [
    Case("index_too_large", IndexError, ["input"], "17", input=A([0, 1, 17, 2, 3])),
    Case("index_negative", IndexError, ["input"], "-1", input=A([0, 1, 2, -1, 3])),
    Case("index_too_large_2d", IndexError, ["input"], "8", input=A([[0, 1], [8, 2]]), offsets=None),
    Case("index_float", TypeError, ["input"], None, input=A([0.0, 1.0, 2.0, 1.0, 3.0], "float64")),
    Case("index_bool", TypeError, ["input"], None, input=A([True, False, True, True, False], "bool")),
    Case("offsets_float", TypeError, ["offsets"], None, offsets=A([0.0, 2.0], "float64")),
    Case("offsets_bool", TypeError, ["offsets"], None, offsets=A([False, True], "bool")),
    Case("weight_int", TypeError, ["weight"], None, weight=A(np.ones((N, D)), "int32")),
    Case("weight_1d", ValueError, ["weight"], None, weight=A(np.ones(N))),
    Case("weight_3d", ValueError, ["weight"], None, weight=A(np.ones((N, D, 2)))),
    Case("psw_shape_mismatch", ValueError, ["per_sample_weights"], None, mode="sum",
         per_sample_weights=A(np.ones(4))),
    Case("psw_shape_mismatch_2d", ValueError, ["per_sample_weights"], None, mode="sum", input=A([[0, 1], [2, 3]]),
         offsets=None, per_sample_weights=A(np.ones((2, 3)))),
    Case("psw_dtype_mismatch", TypeError, ["per_sample_weights"], None, mode="sum",
         per_sample_weights=A(np.ones(5), "float32")),
    Case("psw_int", TypeError, ["per_sample_weights"], None, mode="sum", per_sample_weights=A(np.ones(5), "int64")),
    Case("psw_with_max", NotImplementedError, ["per_sample_weights"], None, mode="max",
         per_sample_weights=A(np.ones(5))),
    Case("2d_input_with_offsets", ValueError, ["offsets"], None, input=A([[0, 1], [2, 3]])),
    Case("1d_input_without_offsets", ValueError, ["offsets"], None, offsets=None),
    Case("offsets_2d", ValueError, ["offsets"], None, offsets=A([[0, 2]])),
    Case("offsets_0d", ValueError, ["offsets"], None, offsets=A(0)),
    Case("input_3d", ValueError, ["input"], None, input=A(np.zeros((2, 2, 2), dtype=np.int64)), offsets=None),
    Case("input_0d", ValueError, ["input"], None, input=A(1), offsets=None),
    Case("mode_invalid", ValueError, ["mode"], "prod", mode="prod"),
    Case("mode_uppercase", ValueError, ["mode"], "SUM", mode="SUM"),
    Case("max_with_scale_grad_by_freq", ValueError, ["scale_grad_by_freq"], None, mode="max",
         scale_grad_by_freq=True),
    Case("max_with_sparse", ValueError, ["sparse"], None, mode="max", sparse=True),
    Case("sparse_with_scale_grad_by_freq", ValueError, ["sparse", "scale_grad_by_freq"], None, mode="sum",
         sparse=True, scale_grad_by_freq=True),
    Case("offsets_first_nonzero", ValueError, ["offsets"], "3", offsets=A([3, 4])),
    Case("offsets_decreasing", ValueError, ["offsets"], None, offsets=A([0, 4, 2])),
    Case("offsets_last_too_large", ValueError, ["offsets"], "9", offsets=A([0, 2, 9])),
    Case("ilo_short_last_offset", ValueError, ["offsets", "include_last_offset"], "4", offsets=A([0, 2, 4]),
         include_last_offset=True),
    Case("ilo_last_offset_too_large", ValueError, ["offsets"], "7", offsets=A([0, 2, 7]), include_last_offset=True),
    Case("ilo_empty_offsets", ValueError, ["offsets", "include_last_offset"], None,
         offsets=A(np.array([], dtype=np.int64)), include_last_offset=True),
    Case("padding_idx_too_large", ValueError, ["padding_idx"], "6", padding_idx=6),
    Case("padding_idx_too_small", ValueError, ["padding_idx"], "-7", padding_idx=-7),
    Case("max_norm_zero", ValueError, ["max_norm"], "0", max_norm=0.0),
    Case("max_norm_negative", ValueError, ["max_norm"], "-2.5", max_norm=-2.5),
    Case("norm_type_zero", ValueError, ["norm_type"], "0", norm_type=0),
    Case("norm_type_negative", ValueError, ["norm_type"], "-1", norm_type=-1.0),
    Case("norm_type_nan", ValueError, ["norm_type"], "nan", norm_type=math.nan),
]


def _check_message(exc_info, case):
    msg = str(exc_info.value)
    named = [f"`{n}`" in msg for n in case.names]
    assert any(named), f"message does not name {' or '.join('`%s`' % n for n in case.names)}: {msg!r}"
    if case.value is not None:
        assert case.value.lower() in msg.lower(), f"message does not contain the offending value {case.value}: {msg!r}"


def _build(backend, case, defaults):
    kw = dict(defaults)
    kw.update(case.kw)
    kw = {k: (v(backend) if callable(v) else v) for k, v in kw.items()}
    if "max_norm" not in case.kw:
        kw["max_norm"] = MAX_NORM
    return kw


@pytest.mark.parametrize("vjp", [False, True], ids=["fwd", "vjp"])
@pytest.mark.parametrize("case", EMBEDDING_CASES, ids=lambda c: c.id)
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
@pytest.mark.parametrize("case", BAG_CASES, ids=lambda c: c.id)
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
    w = backend.asarray(_weight_np())
    with pytest.raises(IndexError) as exc_info:
        xembed.embedding(backend.asarray(np.array([0, 1, 2, 12, 1])), w)
    msg = str(exc_info.value)
    assert "12" in msg and "3" in msg.replace("12", ""), msg


def test_valid_reference_calls_do_not_raise(backend):
    """The defaults the error cases start from are valid (so each case fails for its own reason only)."""
    w = backend.asarray(_weight_np())
    xembed.embedding(GOOD_IDX(backend), w, max_norm=MAX_NORM)
    xembed.embedding_bag(BAG_IDX(backend), w, BAG_OFFS(backend), max_norm=MAX_NORM)
    xembed.embedding_bag(BAG_IDX(backend), w, BAG_OFFS(backend), max_norm=MAX_NORM, mode="sum",
                         per_sample_weights=backend.asarray(np.ones(5)))
    xembed.embedding_bag(BAG_IDX(backend), w, A([0, 2, 5])(backend), include_last_offset=True)
