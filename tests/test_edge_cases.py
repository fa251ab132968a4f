"""Degenerate shapes and memory layouts: embedding_dim 0, an empty table, non-contiguous indices / offsets /
per_sample_weights / cotangents."""

from __future__ import annotations

import numpy as np
import pytest
import torch  # the oracle: a missing install must fail, not skip
from xembed_testutils import assert_like_weight, check_embedding, check_embedding_bag, to_numpy, xp_assert_close

import xembed

F = torch.nn.functional


def test_embedding_dim_zero(backend):
    check_embedding(backend, np.array([[1, 2], [4, 4]]), np.zeros((5, 0)))
    # sparse at D == 0: GRAD-SPARSE keeps one (empty) entry per position (torch 2.14 gives 0 COO entries, so this
    # is checked against docs/spec.md, not the oracle)
    w = backend.asarray(np.zeros((5, 0)))
    _, pb = xembed.embedding_vjp(backend.asarray(np.array([1, 2, 4])), w, sparse=True)
    gw = pb(backend.asarray(np.zeros((3, 0))))
    assert isinstance(gw, xembed.SparseGrad)
    assert tuple(gw.shape) == (5, 0)
    assert gw.nnz == 3
    np.testing.assert_array_equal(to_numpy(gw.indices), [1, 2, 4])
    assert_like_weight(gw.to_dense(), w, (5, 0))


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_embedding_bag_dim_zero(backend, mode):
    check_embedding_bag(backend, np.array([1, 2, 4]), np.zeros((5, 0)), np.array([0, 1]), mode=mode)


def test_empty_table_empty_input(backend):
    check_embedding(backend, np.zeros((0,), dtype=np.int64), np.zeros((0, 3)))
    check_embedding_bag(backend, np.zeros((0,), dtype=np.int64), np.zeros((0, 3)), np.array([0, 0]), mode="sum")


def test_empty_table_rejects_any_index(backend):
    with pytest.raises(IndexError):
        xembed.embedding(backend.asarray(np.array([0])), backend.asarray(np.zeros((0, 3))))


def _non_contiguous(backend, a):
    """A view of ``a`` (same values) with non-unit strides."""
    a = np.asarray(a)
    big = np.repeat(a[..., None], 2, axis=-1)  # (..., 2)
    arr = backend.asarray(big)
    return arr[..., 0]


@pytest.mark.skip_backend("array_api_strict", reason="the standard has no view semantics for slices")
@pytest.mark.parametrize("what", ["input", "grad_output"])
def test_embedding_non_contiguous_arrays(backend, what):
    rng = np.random.default_rng(0)
    idx_np = rng.integers(0, 6, size=(3, 4))
    w_np = rng.standard_normal((6, 3))
    g_np = rng.standard_normal((3, 4, 3))
    idx = _non_contiguous(backend, idx_np) if what == "input" else backend.asarray(idx_np)
    if what == "grad_output":
        g = backend.asarray(np.ascontiguousarray(np.transpose(g_np, (2, 1, 0))))
        g = g.permute(2, 1, 0) if backend.is_torch else g.T
    else:
        g = backend.asarray(g_np)
    w = backend.asarray(w_np)
    wt = torch.tensor(w_np, requires_grad=True)
    ref = F.embedding(torch.tensor(idx_np), wt, padding_idx=2, scale_grad_by_freq=True)
    ref.backward(torch.tensor(g_np))
    out, pb = xembed.embedding_vjp(idx, w, padding_idx=2, scale_grad_by_freq=True)
    xp_assert_close(out, ref, like=w)
    xp_assert_close(pb(g), wt.grad, like=w)


@pytest.mark.skip_backend("array_api_strict", reason="the standard has no view semantics for slices")
def test_embedding_bag_non_contiguous_arrays(backend):
    rng = np.random.default_rng(1)
    idx_np = rng.integers(0, 6, size=9)
    offs_np = np.array([0, 2, 2, 7])
    psw_np = rng.standard_normal(9)
    w_np = rng.standard_normal((6, 3))
    g_np = rng.standard_normal((4, 3))
    wt = torch.tensor(w_np, requires_grad=True)
    pt = torch.tensor(psw_np, requires_grad=True)
    ref = F.embedding_bag(torch.tensor(idx_np), wt, torch.tensor(offs_np), mode="sum", per_sample_weights=pt,
                          padding_idx=1)
    ref.backward(torch.tensor(g_np))
    w = backend.asarray(w_np)
    psw = _non_contiguous(backend, psw_np)
    out, pb = xembed.embedding_bag_vjp(
        _non_contiguous(backend, idx_np), w, _non_contiguous(backend, offs_np), mode="sum",
        per_sample_weights=psw, padding_idx=1,
    )
    assert_like_weight(out, w, (4, 3))
    xp_assert_close(out, ref, like=w)
    gw, gp = pb(_non_contiguous(backend, g_np))
    xp_assert_close(gw, wt.grad, like=w)
    xp_assert_close(gp, pt.grad, like=psw)


def test_weight_with_requires_grad_errors_leave_weight_untouched():
    """The torch autograd path validates before renorming too."""
    w = torch.tensor(np.full((4, 2), 3.0), requires_grad=True)
    before = w.detach().clone()
    with pytest.raises(IndexError):
        xembed.embedding(torch.tensor([0, 1, 9]), w, max_norm=1.0)
    with pytest.raises(ValueError, match="non-decreasing"):
        xembed.embedding_bag(torch.tensor([0, 1, 2]), w, torch.tensor([0, 3, 2]), max_norm=1.0)
    with pytest.raises(NotImplementedError):
        xembed.embedding_bag(torch.tensor([0, 1, 2]), w, torch.tensor([0, 1]), max_norm=1.0, mode="max",
                             per_sample_weights=torch.ones(3, dtype=torch.float64, requires_grad=True))
    assert torch.equal(w.detach(), before)
    assert w.grad is None


def test_padding_idx_numpy_integer(backend):
    """padding_idx given as a NumPy integer behaves like the int."""
    w = backend.asarray(np.random.default_rng(2).standard_normal((5, 2)))
    i = backend.asarray(np.array([1, 2, 3]))
    a = xembed.embedding_vjp(i, w, padding_idx=np.int64(2))[1](backend.asarray(np.ones((3, 2))))
    b = xembed.embedding_vjp(i, w, padding_idx=2)[1](backend.asarray(np.ones((3, 2))))
    np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


def test_float_weight_values_preserved_exactly(backend):
    """Without max_norm the forward is a pure gather: bit-exact rows, any dtype."""
    for dtype in backend.float_dtypes:
        w_np = np.random.default_rng(3).standard_normal((7, 3))
        w = backend.asarray(w_np, dtype)
        out = xembed.embedding(backend.asarray(np.array([[6, 0], [3, 3]])), w)
        ref = to_numpy(w)[np.array([[6, 0], [3, 3]])]
        assert np.array_equal(to_numpy(out), ref), dtype
        out_max = xembed.embedding_bag(backend.asarray(np.array([[6], [3]])), w, mode="max")
        assert np.array_equal(to_numpy(out_max), to_numpy(w)[[6, 3]]), dtype


@pytest.mark.parametrize("call", ["embedding", "bag_sum_L1", "bag_mean_L1", "bag_max_L1", "bag_max"])
@pytest.mark.skip_backend("jax", reason="immutable arrays: nothing can be written into the output")
def test_output_does_not_alias_weight(backend, call):
    """Writing into the output must never write into the weight (no view of the table is returned)."""
    w_np = np.random.default_rng(4).standard_normal((4, 3))
    w = backend.asarray(w_np)
    i2 = backend.asarray(np.array([[0], [1], [2], [3]]))
    if call == "embedding":
        out = xembed.embedding(backend.asarray(np.arange(4)), w)
    elif call == "bag_max":
        out = xembed.embedding_bag(backend.asarray(np.arange(4)), w, backend.asarray(np.array([0])), mode="max")
    else:
        out = xembed.embedding_bag(i2, w, mode=call.split("_")[1])
    out[...] = 0
    np.testing.assert_array_equal(to_numpy(w), w_np)


def test_torch_inference_path_avoids_torch_divergences():
    """PRIM-TORCH-NATIVE: calls outside autograd may go to torch's own kernels, but never the inputs where
    torch crashes or raises (DIV-1, DIV-2, DIV-3): xembed's results (BAG-2D-ZERO-COLS, BAG-EMPTY-OFFSETS,
    BAG-LAST-OFFSET) and the EXT-* modes come back instead."""
    w = torch.arange(15, dtype=torch.float32).reshape(5, 3)
    out = xembed.embedding_bag(torch.zeros((2, 0), dtype=torch.long), w, mode="sum")
    assert torch.equal(out, torch.zeros((2, 3)))
    out = xembed.embedding_bag(torch.zeros((0,), dtype=torch.long), w, torch.tensor([0]), include_last_offset=True)
    assert out.shape == (0, 3)
    out = xembed.embedding_bag(torch.tensor([1, 2]), w, torch.tensor([], dtype=torch.long))
    assert out.shape == (0, 3)
    out = xembed.embedding_bag(torch.tensor([1, 2]), w, torch.tensor([0]), mode="sqrtn")
    assert torch.allclose(out, (w[1] + w[2])[None] / 2**0.5)
    out = xembed.embedding_bag(torch.tensor([1, 2]), w, torch.tensor([0]), mode="mean",
                               per_sample_weights=torch.tensor([1.0, 3.0]))
    assert torch.allclose(out, (w[1] + 3 * w[2])[None] / 4)
