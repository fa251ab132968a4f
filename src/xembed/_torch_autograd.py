"""Connect the core's pullbacks to torch autograd (imported only when torch tensors are passed)."""

from __future__ import annotations

import torch

from ._sparse import SparseGrad


def _to_torch_grad(grad):
    if isinstance(grad, SparseGrad):
        return torch.sparse_coo_tensor(grad.indices[None, :], grad.values, grad.shape, check_invariants=False)
    return grad


class _XembedFunction(torch.autograd.Function):
    """Runs ``compute()`` (returning ``(out, pullback)``) and backpropagates through the pullback.

    ``weight`` and ``per_sample_weights`` are passed only so autograd knows what the output depends on;
    ``compute`` works on detached views of them.
    """

    @staticmethod
    def forward(ctx, weight, per_sample_weights, compute, is_bag):
        out, pullback = compute()
        ctx.pullback = pullback
        ctx.is_bag = is_bag
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        if ctx.is_bag:
            grad_w, grad_psw = ctx.pullback(grad_output)
        else:
            grad_w, grad_psw = ctx.pullback(grad_output), None
        grad_w = _to_torch_grad(grad_w) if ctx.needs_input_grad[0] else None
        grad_psw = grad_psw if ctx.needs_input_grad[1] else None
        return grad_w, grad_psw, None, None


def needs_autograd(weight, per_sample_weights) -> bool:
    if not torch.is_grad_enabled():
        return False
    return weight.requires_grad or (per_sample_weights is not None and per_sample_weights.requires_grad)


def apply(weight, per_sample_weights, compute, is_bag: bool):
    return _XembedFunction.apply(weight, per_sample_weights, compute, is_bag)
