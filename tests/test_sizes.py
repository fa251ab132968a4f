"""Bigger random cases (still small enough to be fast) that reach the size-dependent branches of the native
primitives: many bags of very different lengths, bags longer than 256 / 65536 entries (max-scan position
dtypes), one bag larger than a gather block, equal-length 2-D bags — on the native primitives and, where the
package offers it, on the standard-only fallback forced on every backend."""

from __future__ import annotations

import numpy as np
import pytest
from xembed_testutils import check_embedding, check_embedding_bag, to_numpy

# These sizes target the native kernels' size-dependent branches; JAX under the forced fallback runs each size op
# by op (minutes for the module) and has none.  The fallback on JAX is tested on small cases by test_extensions and
# test_nonfinite.
pytestmark = pytest.mark.skip_backend("jax", primitives="fallback", reason="the sizes target native kernels; "
                                      "fallback-on-JAX is covered by the small cases of test_extensions and "
                                      "test_nonfinite")


def _random_offsets(lengths):
    return np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64), int(np.sum(lengths))


@pytest.mark.usefixtures("primitives")
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize(
    ("mode", "extra"),
    [("sum", {}), ("sum", {"psw": True}), ("mean", {"padding_idx": 3}), ("max", {"padding_idx": 3}),
     ("mean", {"scale_grad_by_freq": True}), ("sum", {"sparse": True, "psw": True})],
    ids=["sum", "sum_psw", "mean_pad", "max_pad", "mean_sgbf", "sum_sparse_psw"],
)
def test_ragged_bags(backend, mode, extra, dtype):
    rng = np.random.default_rng(20)
    lengths = rng.choice([0, 1, 2, 3, 7, 40, 300], size=25)
    offsets, n = _random_offsets(lengths)
    idx = rng.integers(0, 40, size=n)
    extra = dict(extra)
    psw = rng.standard_normal(n) if extra.pop("psw", False) else None
    check_embedding_bag(backend, idx, rng.standard_normal((40, 5)), offsets, psw, mode=mode, dtype=dtype, **extra)


@pytest.mark.usefixtures("primitives")
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_equal_length_2d_bags(backend, mode):
    rng = np.random.default_rng(21)
    idx = rng.integers(0, 30, size=(64, 17))
    check_embedding_bag(backend, idx, rng.standard_normal((30, 6)), mode=mode, padding_idx=0)


@pytest.mark.usefixtures("primitives")
@pytest.mark.parametrize("mode", ["sum", "max"])
def test_long_bags(backend, mode):
    """One bag of 70 000 entries (over 65 536 positions, over a 1 MiB gather block at D=4 float64) among short
    ones; max over it must still pick the first occurrence of the maximum."""
    rng = np.random.default_rng(22)
    lengths = np.array([3, 70_000, 0, 5, 300])
    offsets, n = _random_offsets(lengths)
    idx = rng.integers(0, 50, size=n)
    w = rng.standard_normal((50, 4))
    w[7] = w[11] = 10.0  # rows 7 and 11 tie for the max in every feature: the first one in each bag wins
    check_embedding_bag(backend, idx, w, offsets, mode=mode)


@pytest.mark.usefixtures("primitives")
def test_long_bag_max_with_nan_first(backend):
    rng = np.random.default_rng(23)
    w = rng.standard_normal((10, 3))
    w[9, 1] = np.nan
    idx = np.concatenate(([9], rng.integers(0, 9, size=400), [9], rng.integers(0, 9, size=400)))
    offsets = np.array([0, 401])  # bag 0 starts with row 9 (NaN kept), bag 1 starts elsewhere (NaN ignored)
    idx[401] = 0
    idx[500] = 9  # NaN row in the middle of bag 1
    out, *_ = check_embedding_bag(backend, idx, w, offsets, mode="max")
    o = to_numpy(out)
    assert np.isnan(o[0, 1])
    assert not np.isnan(o[1, 1])


@pytest.mark.usefixtures("primitives")
def test_embedding_many_duplicates(backend):
    rng = np.random.default_rng(24)
    idx = rng.integers(0, 20, size=(50, 40))
    check_embedding(backend, idx, rng.standard_normal((20, 8)), scale_grad_by_freq=True, padding_idx=5)
    check_embedding(backend, idx, rng.standard_normal((20, 8)), sparse=True, max_norm=1.0, norm_type=3.0)


@pytest.mark.usefixtures("primitives")
@pytest.mark.parametrize("dtype", ["float16"])  # a param, so conftest skips backends without float16
def test_embedding_many_duplicates_low_precision(backend, dtype):
    rng = np.random.default_rng(25)
    idx = rng.integers(0, 20, size=(50, 40))
    check_embedding(backend, idx, rng.standard_normal((20, 8)), dtype=dtype, padding_idx=-1)


@pytest.mark.usefixtures("primitives")
def test_renorm_many_rows(backend):
    rng = np.random.default_rng(25)
    w = rng.standard_normal((200, 6)) * rng.uniform(0.1, 3.0, size=(200, 1))
    idx = rng.integers(0, 200, size=500)
    _, _, _, after = check_embedding_bag(backend, idx, w, np.array([0, 100, 250]), mode="mean", max_norm=1.5)
    referenced = np.zeros(200, bool)
    referenced[idx] = True
    np.testing.assert_array_equal(to_numpy(after)[~referenced], w[~referenced])
