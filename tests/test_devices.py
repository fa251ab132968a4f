"""Device handling without a GPU: array_api_strict's extra devices ('device1', and 'no_float64', a device with
no float64).  Outputs, weight-after-call and gradients stay on the weight's device; mixing devices is a
ValueError naming the argument, raised before anything is modified.  (CUDA torch / CuPy run the same checks
through the ``backend`` fixture on a GPU machine.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch  # noqa: F401  (the oracle: a missing install must fail, not skip)
from xembed_testutils import (
    StrictDevice,
    assert_bitwise_equal,
    assert_like_weight,
    check_embedding,
    check_embedding_bag,
    to_numpy,
)

import xembed

# array_api_strict's devices: deselected (one summary line) when array_api_strict is unavailable / not selected
pytestmark = pytest.mark.needs_backend("array_api_strict")


@pytest.fixture(params=["device1", "no_float64"])
def sd(request):
    return StrictDevice(request.param)


def _dtype(sd):
    return sd.float_dtypes[-1]


@pytest.mark.parametrize(
    "options", [{}, {"padding_idx": 1, "scale_grad_by_freq": True}, {"sparse": True, "max_norm": 0.5}],
    ids=["plain", "pad_sgbf", "sparse_maxnorm"],
)
def test_embedding_on_device(sd, options):
    rng = np.random.default_rng(0)
    check_embedding(sd, rng.integers(0, 5, size=(3, 4)), rng.standard_normal((5, 3)), dtype=_dtype(sd),
                    index_dtype="int32", **options)


@pytest.mark.parametrize(
    "options",
    [{"mode": "sum", "psw": True, "max_norm": 0.5}, {"mode": "mean", "padding_idx": 2, "sparse": True},
     {"mode": "max", "include_last_offset": True}],
    ids=["sum_psw_maxnorm", "mean_pad_sparse", "max_ilo"],
)
def test_embedding_bag_on_device(sd, options):
    rng = np.random.default_rng(1)
    options = dict(options)
    idx = rng.integers(0, 5, size=9)
    offs = np.array([0, 2, 2, 6]) if not options.get("include_last_offset") else np.array([0, 2, 2, 6, 9])
    psw = rng.standard_normal(9) if options.pop("psw", False) else None
    check_embedding_bag(sd, idx, rng.standard_normal((5, 3)), offs, psw, dtype=_dtype(sd), **options)


@pytest.mark.parametrize("cls", ["Embedding", "EmbeddingBag"])
def test_module_on_device(sd, cls):
    m = getattr(xembed, cls)(6, 3, xp=sd.xp, device=sd.device, seed=0, padding_idx=0)
    assert m.weight.device == sd.device
    idx = sd.asarray(np.array([[0, 1, 2]]), "int32")
    out = m(idx)
    assert out.device == sd.device
    assert_like_weight(out, m.weight)


@pytest.mark.parametrize("which", ["input", "offsets", "per_sample_weights"])
def test_mixed_devices_raise_value_error(which):
    d1 = StrictDevice("device1")
    d2 = StrictDevice("device2")
    w = d1.asarray(np.full((5, 3), 2.0))
    before = to_numpy(w)
    kw = {
        "input": d1.asarray(np.array([0, 1, 2, 3])),
        "offsets": d1.asarray(np.array([0, 2])),
        "per_sample_weights": d1.asarray(np.ones(4)),
    }
    kw[which] = d2.asarray(to_numpy(kw[which]))
    with pytest.raises(ValueError, match=f"`{which}`"):
        xembed.embedding_bag(kw["input"], w, kw["offsets"], mode="sum", max_norm=1.0,
                             per_sample_weights=kw["per_sample_weights"])
    assert_bitwise_equal(w, before, "weight after a failed mixed-device call")
    if which == "input":
        for fn in (xembed.embedding, xembed.embedding_vjp):
            with pytest.raises(ValueError, match="`input`"):
                fn(kw["input"], w, max_norm=1.0)
        assert_bitwise_equal(w, before, "weight after a failed mixed-device call")


def test_pullback_grad_output_on_other_device():
    """A cotangent on another device is rejected (ValueError or the library's own device error), not silently
    moved."""
    d1 = StrictDevice("device1")
    d2 = StrictDevice("device2")
    w = d1.asarray(np.ones((5, 3)))
    _, pb = xembed.embedding_vjp(d1.asarray(np.array([1, 2])), w)
    with pytest.raises(ValueError, match=r"[Dd]evice"):
        pb(d2.asarray(np.ones((2, 3))))
