"""xembed.Embedding / xembed.EmbeddingBag: construction, call, vjp, from_pretrained, freeze."""

from __future__ import annotations

import numpy as np
import pytest
import torch  # the oracle: a missing install must fail, not skip
from xembed_testutils import assert_like_weight, assert_weight_after, dtype_name, to_numpy, to_torch64, xp_assert_close

import xembed

F = torch.nn.functional

N, D = 10, 4
MODULES = [xembed.Embedding, xembed.EmbeddingBag]


def _make(cls, backend, *args, **kw):
    return cls(*args, xp=backend.xp, device=backend.device, **kw)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("cls", MODULES, ids=lambda c: c.__name__)
def test_construction_shape_dtype_device(backend, cls, dtype):
    backend.require_dtype(dtype)
    m = _make(cls, backend, N, D, dtype=getattr(backend.xp, dtype), seed=0)
    w = m.weight
    ref = backend.asarray(np.zeros((1, 1)), dtype)
    assert type(w) is type(ref)
    assert tuple(w.shape) == (N, D)
    assert dtype_name(w) == dtype
    assert str(getattr(w, "device", "cpu")) == str(getattr(ref, "device", "cpu"))


@pytest.mark.parametrize("cls", MODULES, ids=lambda c: c.__name__)
def test_default_dtype_is_float32(backend, cls):
    """MOD-DTYPE: float32 in every namespace, as torch."""
    m = _make(cls, backend, N, D, seed=0)
    assert dtype_name(m.weight) == "float32"


@pytest.mark.parametrize("cls", MODULES, ids=lambda c: c.__name__)
def test_default_namespace_is_numpy(cls):
    m = cls(N, D, seed=0)
    assert isinstance(m.weight, np.ndarray)


@pytest.mark.parametrize("padding_idx", [0, 3, -1])
@pytest.mark.parametrize("cls", MODULES, ids=lambda c: c.__name__)
def test_padding_row_zeroed_at_construction(backend, cls, padding_idx):
    m = _make(cls, backend, N, D, padding_idx=padding_idx, seed=1)
    w = to_numpy(m.weight)
    np.testing.assert_array_equal(w[padding_idx % N], 0)
    others = np.delete(w, padding_idx % N, axis=0)
    assert np.all(others != 0)


@pytest.mark.parametrize("cls", MODULES, ids=lambda c: c.__name__)
def test_seed_reproducibility_and_init_distribution(backend, cls):
    a = to_numpy(_make(cls, backend, 400, 16, seed=7, dtype=backend.xp.float32).weight)
    b = to_numpy(_make(cls, backend, 400, 16, seed=7, dtype=backend.xp.float32).weight)
    c = to_numpy(_make(cls, backend, 400, 16, seed=8, dtype=backend.xp.float32).weight)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # N(0, 1): 6400 draws
    assert abs(a.mean()) < 0.1
    assert 0.9 < a.std() < 1.1


def test_seed_accepts_generator():
    a = xembed.Embedding(5, 3, seed=np.random.default_rng(3)).weight
    b = xembed.Embedding(5, 3, seed=np.random.default_rng(3)).weight
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cls", MODULES, ids=lambda c: c.__name__)
@pytest.mark.parametrize(
    "bad", [{"padding_idx": 10}, {"padding_idx": -11}, {"max_norm": -1.0}, {"norm_type": 0.0}], ids=str
)
def test_constructor_rejects_invalid_options(cls, bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=f"`{name}`"):
        cls(N, D, **bad)


def test_embedding_bag_constructor_rejects_invalid_mode():
    with pytest.raises(ValueError, match="`mode`"):
        xembed.EmbeddingBag(N, D, mode="median")


@pytest.mark.parametrize("cls", MODULES, ids=lambda c: c.__name__)
def test_weight_shape_mismatch(cls):
    with pytest.raises(ValueError, match=r"`_weight` must have shape \(10, 4\), got \(10, 5\)"):
        cls(N, D, _weight=np.zeros((N, D + 1)))


@pytest.mark.parametrize("options", [{}, {"padding_idx": 2, "scale_grad_by_freq": True},
                                     {"max_norm": 1.0, "norm_type": 1.0, "sparse": True}], ids=["plain", "pad_sgbf",
                                                                                               "maxnorm_sparse"])
def test_embedding_call_and_vjp(backend, options):
    m = _make(xembed.Embedding, backend, N, D, seed=3, dtype=backend.xp.float64, **options)
    w0 = to_numpy(m.weight)
    idx_np = np.array([[1, 2, 2], [9, 1, 0]])
    idx = backend.asarray(idx_np)

    wt = torch.tensor(w0, requires_grad=True)
    ref = F.embedding(torch.tensor(idx_np), wt, **options)
    g_np = np.random.default_rng(0).standard_normal(ref.shape)
    ref.backward(torch.tensor(g_np))

    out, pullback = m.vjp(idx)
    assert_like_weight(out, m.weight, (2, 3, D))
    xp_assert_close(out, ref, like=m.weight)
    assert_weight_after(m.weight, w0, idx, wt, options, "module weight after call")
    gw = pullback(backend.asarray(g_np))
    gdense = gw.to_dense() if options.get("sparse") else gw
    assert wt.grad is not None
    xp_assert_close(gdense, wt.grad.to_dense() if wt.grad.is_sparse else wt.grad, like=m.weight)
    # __call__ gives the same output (weight already renormed, so the second renorm is a no-op)
    xp_assert_close(m(idx), ref, like=m.weight)


@pytest.mark.parametrize(
    "options",
    [{"mode": "sum"}, {"mode": "mean", "padding_idx": 1, "include_last_offset": True},
     {"mode": "max", "max_norm": 0.8}, {"mode": "sum", "sparse": True}],
    ids=["sum", "mean_pad_ilo", "max_maxnorm", "sum_sparse"],
)
def test_embedding_bag_call_and_vjp(backend, options):
    m = _make(xembed.EmbeddingBag, backend, N, D, seed=4, dtype=backend.xp.float64, **options)
    w0 = to_numpy(m.weight)
    idx_np = np.array([1, 2, 2, 9, 1, 0, 1])
    offs_np = np.array([0, 3, 3, 7]) if options.get("include_last_offset") else np.array([0, 3, 3])
    psw_np = np.linspace(0.5, 2.0, 7) if options["mode"] == "sum" else None

    wt = torch.tensor(w0, requires_grad=True)
    pt = None if psw_np is None else torch.tensor(psw_np, requires_grad=True)
    ref = F.embedding_bag(torch.tensor(idx_np), wt, torch.tensor(offs_np), per_sample_weights=pt, **options)
    g_np = np.random.default_rng(0).standard_normal(ref.shape)
    ref.backward(torch.tensor(g_np))

    psw = None if psw_np is None else backend.asarray(psw_np)
    out, pullback = m.vjp(backend.asarray(idx_np), backend.asarray(offs_np), psw)
    assert_like_weight(out, m.weight, (3, D))
    xp_assert_close(out, ref, like=m.weight)
    assert_weight_after(m.weight, w0, backend.asarray(idx_np), wt, options, "module weight after call")
    gw, gp = pullback(backend.asarray(g_np))
    gdense = gw.to_dense() if options.get("sparse") else gw
    assert wt.grad is not None
    xp_assert_close(gdense, wt.grad.to_dense() if wt.grad.is_sparse else wt.grad, like=m.weight)
    if psw is None:
        assert gp is None
    else:
        assert pt is not None
        xp_assert_close(gp, pt.grad, like=psw)
    xp_assert_close(m(backend.asarray(idx_np), backend.asarray(offs_np), psw), ref, like=m.weight)


def test_embedding_bag_module_2d_input(backend):
    m = _make(xembed.EmbeddingBag, backend, N, D, seed=5, mode="max", dtype=backend.xp.float64)
    idx_np = np.array([[1, 2, 3], [4, 4, 0]])
    ref = F.embedding_bag(torch.tensor(idx_np), to_torch64(m.weight), mode="max")
    xp_assert_close(m(backend.asarray(idx_np)), ref, like=m.weight)


@pytest.mark.parametrize("cls", MODULES, ids=lambda c: c.__name__)
@pytest.mark.skip_backend("jax", reason="immutable arrays: no shared storage to write through")
def test_from_pretrained_shares_storage_and_keeps_padding_row(backend, cls):
    emb_np = np.arange(N * D, dtype=np.float64).reshape(N, D) + 1.0
    emb = backend.asarray(emb_np)
    m = cls.from_pretrained(emb, padding_idx=2)
    # padding row NOT zeroed
    np.testing.assert_array_equal(to_numpy(m.weight)[2], emb_np[2])
    # shares the array: a change to the original is visible through the module
    emb[0, 0] = -42.0
    assert float(to_numpy(m.weight)[0, 0]) == -42.0
    assert tuple(m.weight.shape) == (N, D)


@pytest.mark.parametrize("cls", MODULES, ids=lambda c: c.__name__)
@pytest.mark.skip_backend("jax", reason="immutable arrays: the caller's array is never renormed (RENORM-FUNCTIONAL)")
def test_from_pretrained_max_norm_renorms_callers_array(backend, cls):
    emb_np = np.full((N, D), 3.0)
    emb = backend.asarray(emb_np)
    m = cls.from_pretrained(emb, max_norm=1.0)
    idx = backend.asarray(np.array([[1, 2]])) if cls is xembed.EmbeddingBag else backend.asarray(np.array([1, 2]))
    m(idx)
    after = to_numpy(emb)
    np.testing.assert_allclose(np.linalg.norm(after[1]), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(after[0], 3.0)


@pytest.mark.parametrize("cls", MODULES, ids=lambda c: c.__name__)
def test_from_pretrained_rejects_non_2d(backend, cls):
    with pytest.raises(ValueError, match="`embeddings`"):
        cls.from_pretrained(backend.asarray(np.ones(5)))


@pytest.mark.parametrize("freeze", [True, False])
@pytest.mark.parametrize("cls", MODULES, ids=lambda c: c.__name__)
def test_torch_freeze_semantics(cls, freeze):
    emb = torch.randn(N, D, dtype=torch.float64)
    m = cls.from_pretrained(emb, freeze=freeze)
    assert m.weight.requires_grad is (not freeze)
    assert m.weight.is_leaf
    assert m.weight.data_ptr() == emb.data_ptr(), "from_pretrained must share storage"
    idx = torch.tensor([[1, 2, 2]]) if cls is xembed.EmbeddingBag else torch.tensor([1, 2, 2])
    out = m(idx)
    assert out.requires_grad is (not freeze)
    if not freeze:
        out.sum().backward()
        ref_w = emb.clone().requires_grad_(True)
        ref = F.embedding_bag(idx, ref_w) if cls is xembed.EmbeddingBag else F.embedding(idx, ref_w)
        ref.sum().backward()
        torch.testing.assert_close(m.weight.grad, ref_w.grad)


@pytest.mark.parametrize("cls", MODULES, ids=lambda c: c.__name__)
def test_torch_module_weight_trains(cls):
    """A torch module built directly is trainable (requires_grad like nn.Embedding) and max_norm works on it."""
    m = cls(N, D, xp=torch, dtype=torch.float64, seed=0, max_norm=0.5)
    assert m.weight.requires_grad
    assert m.weight.is_leaf
    idx = torch.tensor([[0, 3, 3]]) if cls is xembed.EmbeddingBag else torch.tensor([0, 3, 3])
    w_before = m.weight.detach().clone()
    out = m(idx)
    out.sum().backward()
    ref_w = w_before.clone().requires_grad_(True)
    ref = (F.embedding_bag(idx, ref_w, max_norm=0.5) if cls is xembed.EmbeddingBag
           else F.embedding(idx, ref_w, max_norm=0.5))
    ref.sum().backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(m.weight.detach(), ref_w.detach())
    torch.testing.assert_close(m.weight.grad, ref_w.grad)
