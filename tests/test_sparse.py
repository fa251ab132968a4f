"""GRAD-SPARSE: sparse=True gives xembed.SparseGrad laid out like torch's uncoalesced COO gradient (one entry per
non-padding input position, input order, duplicates kept; values already scaled by psw and 1/count for mean)."""

from __future__ import annotations

import numpy as np
import pytest
import torch  # the oracle: a missing install must fail, not skip
from xembed_testutils import assert_like_weight, check_embedding, check_embedding_bag, dtype_name, to_numpy

import xembed

N, D = 6, 2


def _w(seed=0):
    return np.random.default_rng(seed).standard_normal((N, D))


def test_embedding_layout(backend):
    idx = np.array([[4, 1, 4], [0, 2, 1]])
    g = np.random.default_rng(20).standard_normal((2, 3, D))
    _, gw, _ = check_embedding(backend, idx, _w(), sparse=True, padding_idx=2, grad_output=g)
    assert isinstance(gw, xembed.SparseGrad)
    np.testing.assert_array_equal(to_numpy(gw.indices), [4, 1, 4, 0, 1])  # input order, duplicates, no padding
    assert dtype_name(gw.indices) == "int64"
    assert type(gw.indices) is type(gw.values)
    assert gw.shape == (N, D)
    np.testing.assert_allclose(to_numpy(gw.values), g.reshape(-1, D)[[0, 1, 2, 3, 5]], rtol=1e-12)


@pytest.mark.parametrize("shape", [(0,), (3, 0)], ids=str)
def test_embedding_empty_input(backend, shape):
    _, gw, _ = check_embedding(backend, np.zeros(shape, dtype=np.int64), _w(), sparse=True)
    assert tuple(gw.values.shape) == (0, D)
    assert tuple(gw.indices.shape) == (0,)
    np.testing.assert_array_equal(to_numpy(gw.to_dense()), 0)


def test_embedding_all_padding(backend):
    _, gw, _ = check_embedding(backend, np.array([3, 3, 3]), _w(), sparse=True, padding_idx=3)
    assert tuple(gw.indices.shape) == (0,)
    assert tuple(gw.values.shape) == (0, D)


def test_embedding_0d_input(backend):
    _, gw, _ = check_embedding(backend, np.array(5), _w(), sparse=True)
    np.testing.assert_array_equal(to_numpy(gw.indices), [5])
    assert tuple(gw.values.shape) == (1, D)


@pytest.mark.parametrize("padding_idx", [None, 2])
def test_bag_mean_values_are_scaled(backend, padding_idx):
    idx = np.array([2, 4, 4, 2, 1, 5])
    offs = np.array([0, 3, 3])
    w = backend.asarray(_w())
    _out, pb = xembed.embedding_bag_vjp(backend.asarray(idx), w, backend.asarray(offs), mode="mean", sparse=True,
                                       padding_idx=padding_idx)
    g_np = np.arange(1.0, 7.0).reshape(3, D)
    gw, gp = pb(backend.asarray(g_np))
    assert gp is None
    keep = idx != padding_idx if padding_idx is not None else np.ones(len(idx), bool)
    np.testing.assert_array_equal(to_numpy(gw.indices), idx[keep])
    bag = np.array([0, 0, 0, 2, 2, 2])
    counts = np.array([keep[bag == b].sum() for b in range(3)])
    expected = g_np[bag] / np.maximum(counts[bag], 1)[:, None]
    np.testing.assert_allclose(to_numpy(gw.values), expected[keep], rtol=1e-12)
    check_embedding_bag(backend, idx, _w(), offs, mode="mean", sparse=True, padding_idx=padding_idx)


def test_bag_psw_values(backend):
    idx = np.array([[1, 3], [3, 3]])
    psw = np.array([[2.0, -1.0], [0.5, 4.0]])
    check_embedding_bag(backend, idx, _w(1), None, psw, mode="sum", sparse=True)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_to_dense_sums_duplicates(backend, dtype):
    backend.require_dtype(dtype)
    w = backend.asarray(np.ones((3, D)), dtype)
    _, pb = xembed.embedding_vjp(backend.asarray(np.full(3000, 2)), w, sparse=True)
    gw = pb(backend.asarray(np.ones((3000, D)), dtype))
    assert isinstance(gw, xembed.SparseGrad), type(gw)
    assert gw.nnz == 3000  # one entry per position, duplicates kept
    dense = gw.to_dense()
    assert_like_weight(dense, w, (3, D))
    expected = float(torch.tensor(3000.0).to(getattr(torch, dtype)))
    np.testing.assert_array_equal(to_numpy(dense)[2], expected)
    np.testing.assert_array_equal(to_numpy(dense)[:2], 0)


def test_sparse_grad_matches_torch_uncoalesced_with_options(backend):
    rng = np.random.default_rng(3)
    idx = rng.integers(0, N, size=(4, 5))
    check_embedding(backend, idx, _w(2), sparse=True, padding_idx=-2, max_norm=0.8, norm_type=3.0)
    check_embedding_bag(backend, idx.reshape(-1), _w(2), np.array([0, 4, 4, 11, 20]), rng.standard_normal(20),
                        mode="sum", sparse=True, padding_idx=0, max_norm=0.8, include_last_offset=True)
