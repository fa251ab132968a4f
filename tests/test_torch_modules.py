"""``xembed.torch.Embedding`` / ``EmbeddingBag``: torch.nn drop-ins (rule ``TORCH-MODULES``).

state_dict both ways with torch's modules, from_pretrained, ``.to()``, ``.parameters()``, typed
constructor errors, and training step for step like torch's (SparseAdam / SGD with sparse gradients,
Adam with dense ones).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch  # the oracle: a missing install must fail, not skip

import xembed
import xembed.torch as xt

IDX = torch.tensor([1, 2, 2, 5, 0, 2, 4, 3, 9, 9])
OFFS = torch.tensor([0, 3, 3, 6])


def test_subclasses_and_state_dict_round_trip() -> None:
    """Same state_dict key (``weight``): xembed → torch and torch → xembed load strictly."""
    torch.manual_seed(0)
    m = xt.EmbeddingBag(10, 4, mode="max", padding_idx=2)
    assert isinstance(m, torch.nn.EmbeddingBag)
    assert list(m.state_dict()) == ["weight"]
    assert [p is m.weight for p in m.parameters()] == [True]
    ref = torch.nn.EmbeddingBag(10, 4, mode="max", padding_idx=2)
    ref.load_state_dict(m.state_dict())
    torch.testing.assert_close(m(IDX, OFFS), ref(IDX, OFFS), rtol=0, atol=0)
    back = xt.EmbeddingBag(10, 4, mode="max", padding_idx=2)
    back.load_state_dict(torch.nn.EmbeddingBag(10, 4, padding_idx=2).state_dict())
    e = xt.Embedding(10, 4, padding_idx=-1)
    assert e.padding_idx == 9
    assert torch.equal(e.weight[9], torch.zeros(4))
    r = torch.nn.Embedding(10, 4, padding_idx=9)
    r.load_state_dict(e.state_dict())
    torch.testing.assert_close(e(IDX), r(IDX), rtol=0, atol=0)
    e.load_state_dict(torch.nn.Embedding(10, 4).state_dict())
    assert repr(e) == "Embedding(10, 4, padding_idx=9)"


def test_from_pretrained_shares_storage_and_freezes() -> None:
    w = torch.randn(5, 3)
    e = xt.Embedding.from_pretrained(w, padding_idx=0)
    assert isinstance(e, xt.Embedding)
    assert e.weight.data_ptr() == w.data_ptr()
    assert not e.weight.requires_grad
    assert not e(torch.tensor([0, 1])).requires_grad
    b = xt.EmbeddingBag.from_pretrained(w, freeze=False, mode="sum")
    assert isinstance(b, xt.EmbeddingBag)
    assert b.weight.requires_grad
    torch.testing.assert_close(b(torch.tensor([[0, 1]])), (w[0] + w[1])[None])
    with pytest.raises(ValueError, match="`embeddings` must be 2-D"):
        xt.Embedding.from_pretrained(torch.zeros(3))
    with pytest.raises(TypeError, match=r"`embeddings` must be a torch\.Tensor"):
        xt.EmbeddingBag.from_pretrained([[1.0]])  # type: ignore[arg-type]


def test_to_dtype_and_device() -> None:
    m = xt.EmbeddingBag(10, 4, mode="sum", device="cpu", dtype=torch.float64)
    assert m.weight.dtype == torch.float64
    m.to(torch.float32)
    assert m.weight.dtype == torch.float32
    assert isinstance(m.weight, torch.nn.Parameter)
    out = m(IDX, OFFS)
    assert out.dtype == torch.float32
    assert out.device.type == "cpu"
    m.to("meta")
    assert m.weight.device.type == "meta"


@pytest.mark.parametrize(("cls", "kwargs", "error", "match"), [
    (xt.Embedding, {"padding_idx": 10}, ValueError, "`padding_idx` 10 is out of range"),
    (xt.Embedding, {"max_norm": -1.0}, ValueError, "`max_norm` must be > 0"),
    (xt.Embedding, {"_weight": torch.zeros(3, 4)}, ValueError, r"`_weight` must have shape \(10, 4\)"),
    (xt.EmbeddingBag, {"mode": "prod"}, ValueError, "`mode` must be one of"),
    (xt.EmbeddingBag, {"padding_idx": -11}, ValueError, "`padding_idx` -11 is out of range"),
    (xt.EmbeddingBag, {"sparse": "yes"}, TypeError, "`sparse` must be a bool"),
])
def test_constructor_errors_are_typed(cls: Callable[..., Any], kwargs: dict[str, Any], error: type[Exception],
                                      match: str) -> None:
    """torch raises AssertionError here; xembed a typed error naming the argument."""
    with pytest.raises(error, match=match):
        cls(10, 4, **kwargs)


def _train(make: Callable[[], torch.nn.EmbeddingBag], opt_cls: type[torch.optim.Optimizer], steps: int,
           **opt_kwargs: Any) -> tuple[list[torch.Tensor], torch.Tensor]:
    torch.manual_seed(0)
    model = make()
    head = torch.nn.Linear(4, 1, dtype=torch.float64)
    emb_params = list(model.parameters())
    opts = [opt_cls(emb_params, **opt_kwargs), torch.optim.SGD(head.parameters(), lr=0.1)]
    psw = torch.linspace(0.5, 1.5, len(IDX), dtype=torch.float64)
    losses = []
    for step in range(steps):
        for o in opts:
            o.zero_grad()
        idx = (IDX + step) % 10
        out = model(idx, OFFS, per_sample_weights=psw) if model.mode == "sum" else model(idx, OFFS)
        loss = head(out).tanh().pow(2).sum()
        loss.backward()
        for o in opts:
            o.step()
        losses.append(loss.detach())
    return losses, model.weight.detach().clone()


@pytest.mark.parametrize(("opt_cls", "opt_kwargs", "mode", "sparse"), [
    (torch.optim.SparseAdam, {"lr": 0.05}, "sum", True),
    (torch.optim.SparseAdam, {"lr": 0.05}, "mean", True),
    (torch.optim.SGD, {"lr": 0.3}, "mean", True),
    (torch.optim.Adam, {"lr": 0.05}, "max", False),
], ids=["sparseadam_sum_psw", "sparseadam_mean", "sgd_sparse_mean", "adam_max"])
def test_training_matches_torch_step_for_step(opt_cls: type[torch.optim.Optimizer], opt_kwargs: dict[str, Any],
                                              mode: str, sparse: bool) -> None:
    """TORCH-MODULES: 3 optimizer steps with xembed.torch.EmbeddingBag equal torch.nn.EmbeddingBag's
    (losses and weights after every step, padding row untouched)."""
    kwargs: dict[str, Any] = {"mode": mode, "sparse": sparse, "padding_idx": 9, "dtype": torch.float64}
    ours, w_ours = _train(lambda: xt.EmbeddingBag(10, 4, **kwargs), opt_cls, 3, **opt_kwargs)
    ref, w_ref = _train(lambda: torch.nn.EmbeddingBag(10, 4, **kwargs), opt_cls, 3, **opt_kwargs)
    torch.testing.assert_close(torch.stack(ours), torch.stack(ref), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(w_ours, w_ref, rtol=1e-12, atol=1e-12)
    assert torch.equal(w_ours[9], torch.zeros(4, dtype=torch.float64))
    assert not torch.equal(w_ours, _train(lambda: xt.EmbeddingBag(10, 4, **kwargs), opt_cls, 0)[1])


def test_sparse_module_gradient_is_sparse_coo() -> None:
    m = xt.Embedding(10, 4, sparse=True)
    m(IDX).sum().backward()
    assert m.weight.grad is not None
    assert m.weight.grad.is_sparse


def test_backend_agnostic_module_unchanged() -> None:
    """The backend-agnostic xembed.Embedding stays a plain class (not a torch module)."""
    assert not issubclass(xembed.Embedding, torch.nn.Module)
    assert issubclass(xt.Embedding, torch.nn.Module)
