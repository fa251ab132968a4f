"""Connect the core's pullbacks to torch autograd (imported only when torch tensors are passed).

The eager path: one ``torch.autograd.Function`` driven by the core's forward and pullback.

* Reverse mode (``TORCH-AUTOGRAD``): ``backward`` runs the core's pullback.  The pullback is made of
  differentiable torch operations on the *undetached* weight, per_sample_weights and ``grad_output``, so
  with ``create_graph=True`` autograd records it and double backward is exact (``TORCH-DOUBLE-BWD``):
  the weight gradient is linear in ``grad_output`` and the per_sample_weights gradient is bilinear in
  (``grad_output``, weight).
* Forward mode (``TORCH-FWD-AD``): the tangent of a lookup is the lookup of the tangent; of a sum / mean
  bag, the same reduction of the tangent rows (plus the bag of ``W`` weighted by the per_sample_weights
  tangent); of a max bag, the tangent at the arg-max, obtained as the transpose of the (linear) pullback.
* Tensors the pullback reads (indices, offsets, per_sample_weights, the weight for the per_sample_weights
  gradient) are saved with ``save_for_backward``: modifying one in place before the backward raises torch's
  error instead of being read (``TORCH-SAVED``).

Calls under ``torch.func`` transforms and ``torch.compile`` / ``torch.export`` never reach this module: they
take the traced path (``TORCH-TRACED``, :mod:`xembed.torch._traced`), because the core reads index values
eagerly, which functorch's wrapped tensors do not allow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.autograd.forward_ad as fwad

from ._sparse import SparseGrad

Compute = Callable[..., tuple[Any, Any]]


def _to_torch_grad(grad: Any) -> torch.Tensor:
    if isinstance(grad, SparseGrad):
        return torch.sparse_coo_tensor(grad.indices[None, :], grad.values, grad.shape, check_invariants=False)
    assert isinstance(grad, torch.Tensor)
    return grad


class _XembedFunction(torch.autograd.Function):
    """Runs ``compute(weight, per_sample_weights)`` (returning ``(out, pullback)``) and differentiates it
    through the pullback (reverse mode) or through ``compute`` itself (forward mode).

    ``kind`` is ``"embedding"`` or the bag mode (``"sum"``, ``"mean"``, ``"max"``).
    """

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, per_sample_weights: torch.Tensor | None, compute: Compute,
                kind: str, indices: tuple[torch.Tensor | None, ...]) -> torch.Tensor:
        out, pullback = compute(weight, per_sample_weights)
        # TORCH-SAVED: what the pullback reads (indices, offsets; per_sample_weights and, for their gradient,
        # the weight), saved so that modifying one in place before the backward raises instead of being read
        saved = (*indices, per_sample_weights, weight if per_sample_weights is not None else None)
        ctx.save_for_backward(*saved)
        ctx.pullback, ctx.compute, ctx.kind = pullback, compute, kind
        ctx.primals = (weight, per_sample_weights)
        ctx.out_shape = tuple(out.shape)
        return out

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:
        _ = ctx.saved_tensors  # raises torch's "modified by an inplace operation" error (TORCH-SAVED)
        pullback = ctx.pullback
        if torch.is_grad_enabled() and ctx.primals[1] is not None:
            # create_graph=True: the forward ran without grad, so what the pullback derived from
            # per_sample_weights there is constant; recompute it with grad to record that dependence.
            pullback = ctx.compute(*ctx.primals)[1]
        if ctx.kind == "embedding":
            grad_w, grad_psw = pullback(grad_output), None
        else:
            grad_w, grad_psw = pullback(grad_output)
        if isinstance(grad_w, SparseGrad) and torch.is_grad_enabled() and grad_output.requires_grad:
            msg = ("double backward (`create_graph`=True) through xembed with `sparse`=True is not supported; "
                   "use `sparse`=False")
            raise NotImplementedError(msg)
        grad_w = _to_torch_grad(grad_w) if ctx.needs_input_grad[0] else None
        grad_psw = grad_psw if ctx.needs_input_grad[1] else None
        return grad_w, grad_psw, None, None, None

    @staticmethod
    def jvp(ctx: Any, weight_t: torch.Tensor | None, psw_t: torch.Tensor | None, *_: Any) -> torch.Tensor:
        weight, psw = ctx.primals
        if ctx.kind == "max":
            return _max_tangent(ctx, weight_t)
        tangent = None
        if weight_t is not None:
            tangent = ctx.compute(weight_t, psw, need_pullback=False)[0]
        if psw_t is not None:  # per_sample_weights: mode='sum' only, bilinear in (weight, psw)
            t_psw = ctx.compute(weight, psw_t, need_pullback=False)[0]
            tangent = t_psw if tangent is None else tangent + t_psw
        if tangent is None:
            return torch.zeros(ctx.out_shape, dtype=weight.dtype, device=weight.device)
        return tangent


def _max_tangent(ctx: Any, weight_t: torch.Tensor | None) -> torch.Tensor:
    """Tangent of a max bag: ``weight_t`` at the arg-max, i.e. the transpose of the linear pullback."""
    weight = ctx.primals[0]
    if weight_t is None:
        return torch.zeros(ctx.out_shape, dtype=weight.dtype, device=weight.device)
    with torch.enable_grad():
        probe = torch.zeros(ctx.out_shape, dtype=weight.dtype, device=weight.device, requires_grad=True)
        grad_w = ctx.pullback(probe)[0]
        (tangent,) = torch.autograd.grad(grad_w, probe, weight_t)
    return tangent


def _has_tangent(t: torch.Tensor | None) -> bool:
    return t is not None and fwad.unpack_dual(t).tangent is not None  # type: ignore[no-untyped-call]


def refuse_func_transforms(weight: torch.Tensor, per_sample_weights: torch.Tensor | None,
                           input: torch.Tensor | None) -> None:
    """A guard: tensors under a ``torch.func`` transform take the traced path (TORCH-TRACED) before this
    module; one reaching it raises NotImplementedError (before any value check reads it), never silently
    detached."""
    is_wrapped = torch._C._functorch.is_functorch_wrapped_tensor
    for name, t in (("weight", weight), ("per_sample_weights", per_sample_weights), ("input", input)):
        if t is not None and is_wrapped(t):
            msg = (f"`{name}` is a torch.func-transformed tensor, which this eager path cannot read; call "
                   "xembed.embedding / xembed.embedding_bag (they take the traced path under torch.func)")
            raise NotImplementedError(msg)


def needs_autograd(weight: torch.Tensor, per_sample_weights: torch.Tensor | None,
                   input: torch.Tensor | None = None, want_vjp: bool = False) -> bool:
    """Whether the call must go through :class:`_XembedFunction` (reverse or forward mode); never for the
    ``*_vjp`` functions (``want_vjp``), which compute without autograd.

    Raises NotImplementedError for ``torch.func``-transformed tensors (see :func:`refuse_func_transforms`) and
    for a forward-AD tangent given to a ``*_vjp`` function, instead of silently detaching them.
    """
    refuse_func_transforms(weight, per_sample_weights, input)
    if fwad._current_level >= 0 and (_has_tangent(weight) or _has_tangent(per_sample_weights)):
        if want_vjp:
            msg = ("`weight` or `per_sample_weights` carries a forward-AD tangent, which the *_vjp functions "
                   "(computed without autograd) would drop; call xembed.embedding / xembed.embedding_bag")
            raise NotImplementedError(msg)
        return True
    if want_vjp or not torch.is_grad_enabled():
        return False
    return weight.requires_grad or (per_sample_weights is not None and per_sample_weights.requires_grad)


def apply(weight: torch.Tensor, per_sample_weights: torch.Tensor | None, compute: Compute, kind: str,
          indices: tuple[torch.Tensor | None, ...] = ()) -> torch.Tensor:
    """The autograd-connected output of ``compute`` (called with the undetached tensors); ``indices`` are the
    index arrays ``compute`` reads (input, offsets), checked for in-place modification at backward time."""
    return _XembedFunction.apply(weight, per_sample_weights, compute, kind, indices)
