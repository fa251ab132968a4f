"""The one-kernel route of torch CPU tensors (spec ``PRIM-FAST-TORCH``): the NumPy kernels on views of the
tensors, and under autograd one Function whose backward is the transpose kernel.  Every test proves which
route ran (counting spies on the compiled kernels), and compares with the general path bit for bit."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch  # a missing install must fail, not skip

import xembed
from xembed import _primitives as prim
from xembed._primitives import _numba_forward as nf  # numba missing: fails, does not skip

F = torch.nn.functional
KERNELS = ["bag_forward_kernel", "check_values_kernel", "lookup_kernel", "bag_transpose_kernel",
           "lookup_transpose_kernel"]


class Spy:
    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn, self.calls = fn, 0

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        return self.fn(*args)


@pytest.fixture
def spies(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Spy]]:
    out = {}
    for name in KERNELS:
        out[name] = Spy(getattr(nf, name))
        monkeypatch.setattr(nf, name, out[name])
    with prim.use("numba"):
        yield out


def _bags(dtype: torch.dtype = torch.float64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    lens = rng.choice([0, 1, 2, 5, 9], size=12)
    offsets = torch.tensor(np.concatenate(([0], np.cumsum(lens)[:-1])))
    idx = torch.tensor(rng.integers(0, 10, int(lens.sum())))
    w = torch.tensor(rng.standard_normal((10, 4)), dtype=dtype)
    return w, idx, offsets


def _general_grad(idx: torch.Tensor, w: torch.Tensor, offsets: torch.Tensor | None, g: torch.Tensor,
                  **kw: Any) -> np.ndarray:
    """The general numba path's weight gradient (NumPy arrays, *_vjp: never the one-kernel route)."""
    with prim.use("numba"):
        if offsets is None and "mode" not in kw and idx.ndim != 2:
            _, pullback = xembed.embedding_vjp(idx.numpy(), w.detach().numpy(), **kw)
            return pullback(g.numpy())
        o = None if offsets is None else offsets.numpy()
        _, pullback = xembed.embedding_bag_vjp(idx.numpy(), w.detach().numpy(), o, **kw)
        return pullback(g.numpy())[0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kw", [{"mode": "sum"}, {"mode": "mean"}, {"mode": "max"}, {"mode": "mean", "padding_idx": 3},
                                {"mode": "sum", "padding_idx": -1, "include_last_offset": True}],
                         ids=["sum", "mean", "max", "mean_pad", "sum_negpad_last"])
def test_bag_forward_runs_one_kernel(spies: dict[str, Spy], dtype: torch.dtype, kw: dict[str, Any]) -> None:
    """A forward outside autograd is one kernel, and torch's own result up to rounding."""
    w, idx, offsets = _bags(dtype)
    if kw.get("include_last_offset"):
        offsets = torch.cat([offsets, torch.tensor([idx.shape[0]])])
    out = xembed.embedding_bag(idx, w, offsets, **kw)
    assert spies["bag_forward_kernel"].calls == 1
    assert type(out) is torch.Tensor
    assert out.dtype == dtype
    assert not out.requires_grad
    torch.testing.assert_close(out, F.embedding_bag(idx, w, offsets, **kw))


@pytest.mark.parametrize("kw", [{"mode": "sum"}, {"mode": "mean"}, {"mode": "mean", "padding_idx": 3},
                                {"mode": "sum", "psw": True}, {"mode": "sum", "padding_idx": 0, "psw": True}],
                         ids=["sum", "mean", "mean_pad", "psw", "psw_pad"])
def test_bag_gradient_is_the_general_paths_bit_for_bit(spies: dict[str, Spy], kw: dict[str, Any]) -> None:
    """GRAD-BAG / GRAD-PAD / GRAD-PSW (constant per_sample_weights) through the transpose kernel."""
    w, idx, offsets = _bags(torch.float32)
    kw = dict(kw)
    if kw.pop("psw", False):
        kw["per_sample_weights"] = torch.linspace(-1.0, 2.0, idx.shape[0])
    leaf = w.clone().requires_grad_(True)
    out = xembed.embedding_bag(idx, leaf, offsets, **kw)
    g = torch.tensor(np.random.default_rng(1).standard_normal(out.shape), dtype=torch.float32)
    out.backward(g)
    assert (spies["bag_forward_kernel"].calls, spies["bag_transpose_kernel"].calls) == (1, 1)
    psw = kw.pop("per_sample_weights", None)
    expected = _general_grad(idx, w, offsets, g, per_sample_weights=None if psw is None else psw.numpy(), **kw)
    assert leaf.grad is not None
    np.testing.assert_array_equal(leaf.grad.numpy(), expected)


@pytest.mark.parametrize("padding_idx", [None, 2])
def test_lookup_gradient_is_the_general_paths_bit_for_bit(spies: dict[str, Spy], padding_idx: int | None) -> None:
    """GRAD-EMB / GRAD-PAD on a 2-D input, the gradient of a repeated index accumulated in order."""
    w = torch.tensor(np.random.default_rng(2).standard_normal((6, 3)), dtype=torch.float32, requires_grad=True)
    idx = torch.tensor([[0, 2, 2], [5, 0, 0]])
    out = xembed.embedding(idx, w, padding_idx=padding_idx)
    g = torch.tensor(np.random.default_rng(3).standard_normal(out.shape), dtype=torch.float32)
    out.backward(g)
    assert (spies["lookup_kernel"].calls, spies["lookup_transpose_kernel"].calls) == (1, 1)
    with prim.use("numba"):
        _, pullback = xembed.embedding_vjp(idx.numpy(), w.detach().numpy(), padding_idx=padding_idx)
    assert w.grad is not None
    np.testing.assert_array_equal(w.grad.numpy(), pullback(g.numpy()))


@pytest.mark.parametrize("kind", ["bag_mean_pad", "bag_psw", "lookup_pad"])
def test_sparse_gradient_is_the_general_paths_entries(spies: dict[str, Spy], kind: str) -> None:
    """GRAD-SPARSE: torch's uncoalesced COO gradient, one entry per non-padding position in position order, the
    general path's indices and values bit for bit; no double backward through it."""
    w, idx, offsets = _bags(torch.float32, seed=13)
    leaf = w.clone().requires_grad_(True)
    psw = torch.linspace(-1.0, 2.0, idx.shape[0])
    calls = {"bag_mean_pad": lambda t: xembed.embedding_bag(idx, t, offsets, mode="mean", padding_idx=3, sparse=True),
             "bag_psw": lambda t: xembed.embedding_bag(idx, t, offsets, mode="sum", per_sample_weights=psw,
                                                       sparse=True),
             "lookup_pad": lambda t: xembed.embedding(idx, t, padding_idx=3, sparse=True)}
    out = calls[kind](leaf)
    g = torch.tensor(np.random.default_rng(14).standard_normal(out.shape), dtype=torch.float32)
    out.backward(g)
    assert leaf.grad is not None
    assert leaf.grad.is_sparse
    assert spies["bag_transpose_kernel"].calls + spies["lookup_transpose_kernel"].calls == 1
    with prim.use("native"):  # the general torch path
        ref = w.clone().requires_grad_(True)
        calls[kind](ref).backward(g)
    assert ref.grad is not None
    assert torch.equal(leaf.grad._indices(), ref.grad._indices())
    assert torch.equal(leaf.grad._values(), ref.grad._values())
    second = w.clone().requires_grad_(True)
    with pytest.raises(NotImplementedError, match="sparse"):
        torch.autograd.grad(calls[kind](second), second, g.requires_grad_(True), create_graph=True)


def _double_backward(fn: Callable[[torch.Tensor], torch.Tensor], w: torch.Tensor, seed: int) -> tuple[Any, Any]:
    """``d/d g <grad_w(g), v>`` and ``grad_w`` itself, with ``create_graph=True``."""
    rng = np.random.default_rng(seed)
    leaf = w.clone().requires_grad_(True)
    out = fn(leaf)
    g = torch.tensor(rng.standard_normal(out.shape), requires_grad=True)
    (grad_w,) = torch.autograd.grad(out, leaf, g, create_graph=True)
    v = torch.tensor(rng.standard_normal(grad_w.shape))
    (gg,) = torch.autograd.grad(grad_w, g, v)
    return grad_w.detach(), gg


@pytest.mark.parametrize("case", ["bag_sum", "bag_mean_pad", "lookup_pad"])
def test_double_backward_matches_the_general_path(spies: dict[str, Spy], case: str) -> None:
    """TORCH-DOUBLE-BWD: the transpose's backward is the forward (padding rows zero for a lookup, as the
    general path's differentiable pullback gives)."""
    w, idx, offsets = _bags(torch.float64, seed=4)
    fns = {"bag_sum": lambda t: xembed.embedding_bag(idx, t, offsets, mode="sum"),
           "bag_mean_pad": lambda t: xembed.embedding_bag(idx, t, offsets, mode="mean", padding_idx=3),
           "lookup_pad": lambda t: xembed.embedding(idx.reshape(-1, 1), t, padding_idx=3)}
    fast = _double_backward(fns[case], w, 5)
    assert spies["bag_transpose_kernel"].calls + spies["lookup_transpose_kernel"].calls == 1
    with prim.use("native"):  # the general torch path
        general = _double_backward(fns[case], w, 5)
    torch.testing.assert_close(fast, general, rtol=1e-12, atol=1e-12)


def test_gradgradcheck() -> None:
    w, idx, offsets = _bags(torch.float64, seed=6)
    with prim.use("numba"):
        assert torch.autograd.gradgradcheck(lambda t: xembed.embedding_bag(idx, t, offsets, mode="mean"),
                                            (w.clone().requires_grad_(True),))
        assert torch.autograd.gradgradcheck(lambda t: xembed.embedding(idx, t, padding_idx=1),
                                            (w.clone().requires_grad_(True),))


@pytest.mark.parametrize("case", ["max", "psw_grad", "sgbf", "forward_ad", "native", "lengths"])
def test_calls_it_leaves_to_the_general_path(spies: dict[str, Spy], case: str) -> None:
    """Under autograd: max, a per_sample_weights gradient, scale_grad_by_freq; forward AD; the native
    mode; lengths=.  The general path computes them (its results are tested elsewhere)."""
    w, idx, offsets = _bags(torch.float64)
    leaf = w.clone().requires_grad_(True)
    options: dict[str, dict[str, Any]] = {
        "max": {"mode": "max"}, "sgbf": {"scale_grad_by_freq": True},
        "psw_grad": {"per_sample_weights": torch.ones(idx.shape, dtype=w.dtype, requires_grad=True)}}
    kw = options.get(case, {})
    if case == "forward_ad":
        import torch.autograd.forward_ad as fwad

        with fwad.dual_level():
            xembed.embedding_bag(idx, fwad.make_dual(w, torch.ones_like(w)), offsets)
    elif case == "native":
        with prim.use("native"):
            xembed.embedding_bag(idx, leaf, offsets).sum().backward()
    elif case == "lengths":
        xembed.embedding_bag(idx, leaf, lengths=torch.diff(offsets, append=torch.tensor([idx.shape[0]])))
    else:
        xembed.embedding_bag(idx, leaf, offsets, **kw).sum().backward()
    assert all(s.calls == 0 for s in spies.values())


def test_saved_indices_modified_in_place_raise_at_backward(spies: dict[str, Spy]) -> None:
    """TORCH-SAVED: the input the gradient reads is saved; changing it after the forward raises."""
    w, idx, offsets = _bags(torch.float64)
    leaf = w.clone().requires_grad_(True)
    out = xembed.embedding_bag(idx, leaf, offsets)
    idx.add_(0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()
    assert spies["bag_transpose_kernel"].calls == 0


@pytest.mark.parametrize("size", ["small", "large"])
def test_bad_values_raise_the_specified_errors_and_modify_nothing(spies: dict[str, Spy], size: str) -> None:
    """A value the kernels reject sends the call to the general path, which raises the ERR-* error: the one
    kernel (small), the check before torch's own kernel (a large sum)."""
    n, dim = (4, 4) if size == "small" else (600, 64)
    w = torch.tensor(np.random.default_rng(9).standard_normal((10, dim)))
    before = w.clone()
    bad_index = torch.zeros(n, dtype=torch.int64)
    bad_index[-1] = 10
    with pytest.raises(IndexError, match="input"):
        xembed.embedding_bag(bad_index, w, torch.tensor([0, 1]), mode="sum")
    with pytest.raises(ValueError, match="offsets"):
        xembed.embedding_bag(torch.zeros(n, dtype=torch.int64), w, torch.tensor([0, 3, 2]), mode="sum")
    with pytest.raises(IndexError, match="input"):
        xembed.embedding(torch.tensor([-1]), w.requires_grad_(True))
    assert torch.equal(w.detach(), before)
    kernel = "bag_forward_kernel" if size == "small" else "check_values_kernel"
    assert spies[kernel].calls == 2


def test_a_large_sum_checks_then_runs_torchs_kernel(spies: dict[str, Spy]) -> None:
    """PRIM-TORCH-NATIVE after the one checking pass: torch's result exactly."""
    rng = np.random.default_rng(10)
    w = torch.tensor(rng.standard_normal((50, 64)), dtype=torch.float32)
    idx = torch.tensor(rng.integers(0, 50, 700))
    offsets = torch.tensor([0, 3, 3, 300])
    psw = torch.tensor(rng.standard_normal(700), dtype=torch.float32)
    last = torch.tensor([0, 3, 3, 300, 700])
    for offs, kw in ((offsets, {}), (offsets, {"padding_idx": 7}),
                     (last, {"per_sample_weights": psw, "include_last_offset": True})):
        out = xembed.embedding_bag(idx, w, offs, mode="sum", **kw)
        torch.testing.assert_close(out, F.embedding_bag(idx, w, offs, mode="sum", **kw), rtol=0, atol=0)
    assert (spies["check_values_kernel"].calls, spies["bag_forward_kernel"].calls) == (3, 0)


def test_views_strides_parameters_and_thread_count(spies: dict[str, Spy]) -> None:
    """A transposed (non-contiguous) table, an nn.Parameter, a broadcast gradient; the output owns its memory;
    torch's thread count is left alone (the kernels are serial)."""
    threads = torch.get_num_threads()
    base = torch.tensor(np.random.default_rng(8).standard_normal((4, 10)))
    p = torch.nn.Parameter(base.t())  # (10, 4), strides (1, 10)
    idx = torch.tensor([1, 9, 9, 0])
    out = xembed.embedding(idx, p)
    out.sum().backward()  # the gradient arrives expanded (stride 0)
    ref = p.detach().clone().requires_grad_(True)
    F.embedding(idx, ref).sum().backward()
    torch.testing.assert_close(p.grad, ref.grad)
    assert spies["lookup_kernel"].calls == 1
    assert spies["lookup_transpose_kernel"].calls == 1
    out2 = xembed.embedding(idx, base.t())
    out2.zero_()
    assert base.abs().sum() > 0
    assert torch.get_num_threads() == threads


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kw", [{"mode": "sum"}, {"mode": "mean", "padding_idx": 3}, {"mode": "max"}],
                         ids=["sum", "mean_pad", "max"])
def test_16_bit_tables_accumulate_in_float32(spies: dict[str, Spy], dtype: torch.dtype, kw: dict[str, Any]) -> None:
    """ACC-LOWP on the kernels: each value widened exactly, reduced in float32, rounded once, so the bags are the
    float32 bags of the widened table, rounded; lookups copy the stored bits."""
    w, idx, offsets = _bags(torch.float32, seed=11)
    w16 = (w * 300).to(dtype)
    out = xembed.embedding_bag(idx, w16, offsets, **kw)
    assert out.dtype == dtype
    expected = xembed.embedding_bag(idx, w16.float(), offsets, **kw).to(dtype)
    assert torch.equal(out, expected)
    torch.testing.assert_close(out, F.embedding_bag(idx, w16, offsets, **kw))
    rows = xembed.embedding(idx, w16, padding_idx=kw.get("padding_idx"))
    assert torch.equal(rows.view(torch.int16), w16[idx].view(torch.int16))
    assert spies["bag_forward_kernel"].calls == 2
    assert spies["lookup_kernel"].calls == 1


def test_16_bit_gradients_take_the_general_path(spies: dict[str, Spy]) -> None:
    """GRAD-ACC for float16 / bfloat16 tables is the general path's (the transposes are float32 / float64)."""
    w, idx, offsets = _bags(torch.float32, seed=12)
    leaf = w.to(torch.bfloat16).requires_grad_(True)
    xembed.embedding_bag(idx, leaf, offsets, mode="sum").float().sum().backward()
    assert leaf.grad is not None
    assert all(s.calls == 0 for s in spies.values())
