"""torch tensors through xembed: autograd-connected outputs whose ``.backward()`` gives torch's gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch  # the oracle: a missing install must fail, not skip
from xembed_testutils import bag_grad_reference, selected_backends, to_torch64, xp_assert_close

import xembed
from xembed_conformance.reference import bag_sgbf_grad_bug

F = torch.nn.functional


@pytest.fixture(params=[b.pytest_param() for b in selected_backends() if b.is_torch] or [
    pytest.param(None, marks=pytest.mark.skip(reason="no torch backend selected by XEMBED_TEST_BACKENDS"))])
def tb(request):
    """torch backends only (CPU, and CUDA when present)."""
    return request.param


def _leaf(a, tb, dtype="float64"):
    return tb.asarray(a, dtype).requires_grad_(True)


def _ref_leaf(t):
    return to_torch64(t).requires_grad_(True)


def _dense(g):
    return g.to_dense() if g.is_sparse else g


EMB_OPTIONS = [
    {},
    {"padding_idx": 1},
    {"padding_idx": -1, "scale_grad_by_freq": True},
    {"sparse": True},
    {"sparse": True, "padding_idx": 0},
    {"max_norm": 1.0},
    {"max_norm": 0.7, "norm_type": math.inf, "sparse": True},
]
EMB_IDS = ["plain", "pad", "negpad_sgbf", "sparse", "sparse_pad", "maxnorm", "maxnorm_inf_sparse"]


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
@pytest.mark.parametrize("options", EMB_OPTIONS, ids=EMB_IDS)
def test_embedding_backward(tb, options, dtype):
    rng = np.random.default_rng(0)
    w = _leaf(rng.standard_normal((6, 3)) * 2, tb, dtype)
    idx_np = np.array([[0, 1, 1], [5, 0, 1]])
    idx = tb.asarray(idx_np)
    wt = _ref_leaf(w)
    ref = F.embedding(torch.tensor(idx_np), wt, **options)
    g_np = rng.standard_normal(ref.shape)

    out = xembed.embedding(idx, w, **options)
    assert isinstance(out, torch.Tensor)
    assert out.requires_grad
    assert out.grad_fn is not None
    assert out.dtype == w.dtype
    assert out.device == w.device
    xp_assert_close(out, ref, like=w)
    out.backward(tb.asarray(g_np, dtype))
    ref.backward(torch.tensor(g_np))
    xp_assert_close(w.detach(), wt.detach(), like=w, err_msg="weight after call")
    assert w.grad is not None
    if options.get("sparse"):
        assert w.grad.is_sparse, "sparse=True must give a sparse COO weight.grad, like torch"
        gi = w.grad._indices().cpu().numpy()
        np.testing.assert_array_equal(gi, wt.grad._indices().numpy())
        xp_assert_close(w.grad._values(), wt.grad._values(), like=w)
    else:
        assert not w.grad.is_sparse
        assert w.grad.dtype == w.dtype
        assert w.grad.device == w.device
    xp_assert_close(_dense(w.grad), _dense(wt.grad), like=w)


BAG_OPTIONS = [
    {"mode": "sum"},
    {"mode": "mean", "padding_idx": 2},
    {"mode": "max", "padding_idx": -1},
    {"mode": "sum", "scale_grad_by_freq": True},
    {"mode": "mean", "sparse": True, "padding_idx": 2},
    {"mode": "sum", "sparse": True, "include_last_offset": True},
    {"mode": "max", "max_norm": 1.0, "norm_type": 1.0},
]
BAG_IDS = ["sum", "mean_pad", "max_negpad", "sum_sgbf", "mean_sparse_pad", "sum_sparse_ilo", "max_maxnorm"]


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
@pytest.mark.parametrize("options", BAG_OPTIONS, ids=BAG_IDS)
def test_embedding_bag_backward(tb, options, dtype):
    rng = np.random.default_rng(1)
    w = _leaf(rng.standard_normal((6, 3)) * 2, tb, dtype)
    idx_np = np.array([1, 2, 2, 5, 0, 2, 2, 3])
    offs_np = np.array([0, 3, 3, 6]) if not options.get("include_last_offset") else np.array([0, 3, 3, 6, 8])
    wt = _ref_leaf(w)
    ref = F.embedding_bag(torch.tensor(idx_np), wt, torch.tensor(offs_np), **options)
    g_np = rng.standard_normal(ref.shape)
    out = xembed.embedding_bag(tb.asarray(idx_np), w, tb.asarray(offs_np), **options)
    assert out.requires_grad
    assert out.grad_fn is not None
    assert out.dtype == w.dtype
    assert out.device == w.device
    xp_assert_close(out, ref, like=w)
    out.backward(tb.asarray(g_np, dtype))
    ref.backward(torch.tensor(g_np))
    if options.get("scale_grad_by_freq") and bag_sgbf_grad_bug():
        wt.grad = bag_grad_reference(wt.detach(), idx_np, offs_np, None, g_np, options)
    xp_assert_close(w.detach(), wt.detach(), like=w, err_msg="weight after call")
    assert w.grad.is_sparse == bool(options.get("sparse"))
    if options.get("sparse"):
        np.testing.assert_array_equal(w.grad._indices().cpu().numpy(), wt.grad._indices().numpy())
        xp_assert_close(w.grad._values(), wt.grad._values(), like=w)
    xp_assert_close(_dense(w.grad), _dense(wt.grad), like=w)


@pytest.mark.parametrize("weight_requires_grad", [True, False])
@pytest.mark.parametrize("options", [{}, {"padding_idx": 2}, {"max_norm": 1.0}, {"sparse": True}],
                         ids=["plain", "pad", "maxnorm", "sparse"])
def test_per_sample_weights_backward(tb, options, weight_requires_grad):
    rng = np.random.default_rng(2)
    w = tb.asarray(rng.standard_normal((6, 3)) * 2).requires_grad_(weight_requires_grad)
    psw = _leaf(rng.standard_normal(8), tb)
    idx_np = np.array([1, 2, 2, 5, 0, 2, 2, 3])
    offs_np = np.array([0, 3, 3, 6])
    wt = _ref_leaf(w)
    pt = _ref_leaf(psw)
    ref = F.embedding_bag(torch.tensor(idx_np), wt, torch.tensor(offs_np), mode="sum", per_sample_weights=pt,
                          **options)
    g_np = rng.standard_normal(ref.shape)
    out = xembed.embedding_bag(tb.asarray(idx_np), w, tb.asarray(offs_np), mode="sum", per_sample_weights=psw,
                               **options)
    assert out.requires_grad
    out.backward(tb.asarray(g_np))
    ref.backward(torch.tensor(g_np))
    xp_assert_close(psw.grad, pt.grad, like=psw, err_msg="per_sample_weights.grad")
    if weight_requires_grad:
        xp_assert_close(_dense(w.grad), _dense(wt.grad), like=w)
    else:
        assert w.grad is None


def test_no_requires_grad_gives_plain_tensor(tb):
    w = tb.asarray(np.ones((4, 2)))
    out = xembed.embedding(tb.asarray(np.array([1, 2])), w)
    assert not out.requires_grad
    out = xembed.embedding_bag(tb.asarray(np.array([[1, 2]])), w)
    assert not out.requires_grad


def test_gradients_accumulate_over_backward_calls(tb):
    w = _leaf(np.ones((4, 2)), tb)
    idx = tb.asarray(np.array([1, 1, 3]))
    xembed.embedding(idx, w).sum().backward()
    xembed.embedding(idx, w).sum().backward()
    np.testing.assert_array_equal(w.grad.cpu().numpy(), [[0, 0], [4, 4], [0, 0], [2, 2]])


def test_max_norm_on_leaf_requiring_grad(tb):
    """The in-place renorm of a leaf that requires grad must not trip autograd (torch does it under no_grad)."""
    w = _leaf(np.array([[3.0, 4.0], [0.1, 0.1], [6.0, 8.0]]), tb)
    out = xembed.embedding(tb.asarray(np.array([0, 2])), w, max_norm=1.0)
    assert w.is_leaf
    assert w.requires_grad
    np.testing.assert_allclose(np.linalg.norm(w.detach().cpu().numpy()[[0, 2]], axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(w.detach().cpu().numpy()[1], [0.1, 0.1])
    out.sum().backward()
    np.testing.assert_array_equal(w.grad.cpu().numpy(), [[1, 1], [0, 0], [1, 1]])


def test_output_participates_in_larger_graph(tb):
    rng = np.random.default_rng(3)
    w = _leaf(rng.standard_normal((5, 3)), tb)
    lin = _leaf(rng.standard_normal((3, 2)), tb)
    idx_np = np.array([[0, 4], [4, 4]])
    loss = (xembed.embedding(tb.asarray(idx_np), w) @ lin).tanh().sum()
    loss.backward()
    wt, lt = _ref_leaf(w), _ref_leaf(lin)
    (F.embedding(torch.tensor(idx_np), wt) @ lt).tanh().sum().backward()
    xp_assert_close(w.grad, wt.grad, like=w)
    xp_assert_close(lin.grad, lt.grad, like=lin)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_gradcheck(mode):
    """Finite differences on the torch path (float64, CPU): weight and (sum) per_sample_weights."""
    rng = np.random.default_rng(4)
    w = torch.tensor(rng.standard_normal((5, 3)), requires_grad=True)
    idx = torch.tensor([0, 2, 2, 4, 1, 3])
    offs = torch.tensor([0, 2, 2, 4])
    if mode == "sum":
        psw = torch.tensor(rng.standard_normal(6), requires_grad=True)
        fn = lambda w, p: xembed.embedding_bag(idx, w, offs, mode=mode, per_sample_weights=p)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (w, psw))
    else:
        fn_pad = lambda w: xembed.embedding_bag(idx, w, offs, mode=mode, padding_idx=1)  # noqa: E731
        assert torch.autograd.gradcheck(fn_pad, (w,))
    # (no padding_idx / scale_grad_by_freq here: both deliberately differ from the true derivative)
    fn_e = lambda w: xembed.embedding(idx.reshape(2, 3), w)  # noqa: E731
    assert torch.autograd.gradcheck(fn_e, (w,))


def test_no_grad_and_inference_mode_give_plain_tensors(tb):
    w = _leaf(np.ones((4, 2)), tb)
    idx = tb.asarray(np.array([1, 2]))
    with torch.no_grad():
        out = xembed.embedding(idx, w)
    assert not out.requires_grad
    with torch.inference_mode():
        out = xembed.embedding_bag(tb.asarray(np.array([[1, 2]])), w, mode="max")
    assert not out.requires_grad
    assert w.grad is None


def test_non_leaf_weight_backpropagates_to_its_source(tb):
    base = _leaf(np.random.default_rng(5).standard_normal((5, 3)), tb)
    w = base * 3.0
    idx_np = np.array([0, 4, 4, 1])
    offs_np = np.array([0, 1])
    xembed.embedding_bag(tb.asarray(idx_np), w, tb.asarray(offs_np), mode="mean").sum().backward()
    bt = _ref_leaf(base)
    F.embedding_bag(torch.tensor(idx_np), bt * 3.0, torch.tensor(offs_np), mode="mean").sum().backward()
    xp_assert_close(base.grad, bt.grad, like=base)


def test_nn_parameter_weight(tb):
    p = torch.nn.Parameter(tb.asarray(np.random.default_rng(6).standard_normal((5, 3))))
    idx_np = np.array([[0, 4], [4, 2]])
    out = xembed.embedding(tb.asarray(idx_np), p, padding_idx=2)
    assert out.requires_grad
    assert out.dtype == p.dtype
    assert out.device == p.device
    out.pow(2).sum().backward()
    pt = _ref_leaf(p)
    F.embedding(torch.tensor(idx_np), pt, padding_idx=2).pow(2).sum().backward()
    xp_assert_close(p.grad, pt.grad, like=p)


def test_psw_requires_grad_only_weight_sparse_flag(tb):
    """sparse=True but only per_sample_weights requires grad: psw gets its gradient, the weight none."""
    w = tb.asarray(np.random.default_rng(7).standard_normal((5, 3)))
    psw = _leaf(np.array([1.0, -2.0, 0.5]), tb)
    out = xembed.embedding_bag(tb.asarray(np.array([[1, 2, 2]])), w, mode="sum", sparse=True,
                               per_sample_weights=psw.reshape(1, 3))
    out.sum().backward()
    wt = to_torch64(w)
    expected = wt[[1, 2, 2]].sum(dim=1)
    xp_assert_close(psw.grad, expected, like=psw)
