"""xembed's torch path as torch library custom ops, for ``torch.compile`` and ``torch.export``.

Each op is opaque to the tracers: a fake (meta) kernel gives the output's shape, dtype and device, and
the real kernel runs the core on real tensors, **value checks included** (index range, offsets rules:
``TORCH-OPS-VALIDATE``), so a compiled or exported program validates its inputs at run time exactly
like the eager call.  Autograd is registered with ``register_autograd``; the backward is another op
(``TORCH-OPS``).  Ops:

* ``xembed::renorm_(weight!, input, offsets?, include_last_offset, max_norm, norm_type)`` — the in-place
  max_norm renorm (validates first: a failing call never touches the weight);
* ``xembed::embedding(weight, input, padding_idx?, scale_grad_by_freq)`` and its backward
  ``xembed::embedding_backward``;
* ``xembed::embedding_bag(weight, input, offsets?, per_sample_weights?, mode, padding_idx?,
  scale_grad_by_freq, include_last_offset)`` and ``xembed::embedding_bag_backward`` (returns the weight
  gradient and the per_sample_weights gradient, an empty tensor when there are none).

The backward ops recompute the forward's bookkeeping through the core (the traced graph cannot hold the
eager path's pullback closure): a compiled backward costs about one forward more than the eager one.
Differentiating the backward ops again (double backward under compile / export) raises.
"""

from __future__ import annotations

from typing import Any

import array_api_compat.torch as xp
import torch
from torch import Tensor

from .. import _core
from .. import _validate as v

__all__ = ["embedding_bag_op", "embedding_op", "renorm_op", "xp"]


def _check_values(weight: Tensor, input: Tensor, offsets: Tensor | None, include_last_offset: bool) -> None:
    if offsets is not None and input.ndim == 1:
        v.check_offsets_values(offsets, input.shape[0], include_last_offset, xp)
    v.check_indices_in_range(input, weight.shape[0], xp)


def _bag_args(mode: str, padding_idx: int | None, scale_grad_by_freq: bool,
              include_last_offset: bool) -> v.BagArgs:
    return v.BagArgs(mode, padding_idx, None, 2.0, scale_grad_by_freq, False, include_last_offset)


def _no_double_backward(_ctx: Any, *_grads: Any) -> Any:
    msg = ("double backward through xembed's custom ops (the torch.compile / torch.export path) is not "
           "supported; differentiate twice in eager mode (xembed.embedding / xembed.embedding_bag)")
    raise NotImplementedError(msg)


# --- renorm -----------------------------------------------------------------------------------------

@torch.library.custom_op("xembed::renorm_", mutates_args=("weight",))
def renorm_op(weight: Tensor, input: Tensor, offsets: Tensor | None, include_last_offset: bool,
              max_norm: float, norm_type: float) -> None:
    """Validate the values, then renorm the rows of ``weight`` referenced by ``input`` in place."""
    _check_values(weight, input, offsets, include_last_offset)
    _core.renorm_(weight, input, max_norm, norm_type, xp)


@renorm_op.register_fake
def _(_weight: Tensor, _input: Tensor, _offsets: Tensor | None, _include_last_offset: bool, _max_norm: float,
      _norm_type: float) -> None:
    return None


# --- embedding --------------------------------------------------------------------------------------

@torch.library.custom_op("xembed::embedding", mutates_args=())
def embedding_op(weight: Tensor, input: Tensor, padding_idx: int | None, scale_grad_by_freq: bool) -> Tensor:
    """``weight[input]`` (``padding_idx`` / ``scale_grad_by_freq`` only shape the gradient)."""
    _check_values(weight, input, None, False)
    return _core.embedding_vjp(input, weight, padding_idx, scale_grad_by_freq, False, xp)[0]


@embedding_op.register_fake
def _(weight: Tensor, input: Tensor, _padding_idx: int | None, _scale_grad_by_freq: bool) -> Tensor:
    return weight.new_empty((*input.shape, weight.shape[1]))


@torch.library.custom_op("xembed::embedding_backward", mutates_args=())
def embedding_backward_op(grad: Tensor, input: Tensor, num_weights: int, padding_idx: int | None,
                          scale_grad_by_freq: bool) -> Tensor:
    """The dense weight gradient of :func:`embedding_op`."""
    dim = grad.shape[-1]
    # The pullback needs only the weight's shape, dtype and device: a zero-stride stand-in (one element).
    stand_in = torch.empty_strided((num_weights, dim), (0, 0), dtype=grad.dtype, device=grad.device)
    pullback = _core.embedding_vjp(input, stand_in, padding_idx, scale_grad_by_freq, False, xp)[1]
    return pullback(grad)


@embedding_backward_op.register_fake
def _(grad: Tensor, _input: Tensor, num_weights: int, _padding_idx: int | None,
      _scale_grad_by_freq: bool) -> Tensor:
    return grad.new_empty((num_weights, grad.shape[-1]))


def _embedding_setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:  # noqa: ARG001 (torch passes `output=`)
    weight, input, ctx.padding_idx, ctx.scale_grad_by_freq = inputs
    ctx.num_weights = weight.shape[0]
    ctx.save_for_backward(input)


def _embedding_backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None]:
    if not ctx.needs_input_grad[0]:
        return None, None, None, None
    (input,) = ctx.saved_tensors
    grad_w = embedding_backward_op(grad, input, ctx.num_weights, ctx.padding_idx, ctx.scale_grad_by_freq)
    return grad_w, None, None, None


embedding_op.register_autograd(_embedding_backward, setup_context=_embedding_setup)
embedding_backward_op.register_autograd(_no_double_backward)


# --- embedding_bag ----------------------------------------------------------------------------------

@torch.library.custom_op("xembed::embedding_bag", mutates_args=())
def embedding_bag_op(weight: Tensor, input: Tensor, offsets: Tensor | None, per_sample_weights: Tensor | None,
                     mode: str, padding_idx: int | None, scale_grad_by_freq: bool,
                     include_last_offset: bool) -> Tensor:
    """The (B, D) bag reduction."""
    _check_values(weight, input, offsets, include_last_offset)
    a = _bag_args(mode, padding_idx, scale_grad_by_freq, include_last_offset)
    return _core.embedding_bag_vjp(input, weight, offsets, per_sample_weights, a, xp, False)[0]


def _num_bags(input: Tensor, offsets: Tensor | None, include_last_offset: bool) -> int:
    if input.ndim == 2 or offsets is None:
        return int(input.shape[0])
    return int(offsets.shape[0]) - (1 if include_last_offset else 0)


@embedding_bag_op.register_fake
def _(weight: Tensor, input: Tensor, offsets: Tensor | None, _per_sample_weights: Tensor | None, _mode: str,
      _padding_idx: int | None, _scale_grad_by_freq: bool, include_last_offset: bool) -> Tensor:
    return weight.new_empty((_num_bags(input, offsets, include_last_offset), weight.shape[1]))


@torch.library.custom_op("xembed::embedding_bag_backward", mutates_args=())
def embedding_bag_backward_op(grad: Tensor, weight: Tensor, input: Tensor, offsets: Tensor | None,
                              per_sample_weights: Tensor | None, mode: str, padding_idx: int | None,
                              scale_grad_by_freq: bool, include_last_offset: bool) -> tuple[Tensor, Tensor]:
    """``(grad_weight, grad_per_sample_weights)``; the latter is empty without per_sample_weights."""
    a = _bag_args(mode, padding_idx, scale_grad_by_freq, include_last_offset)
    pullback = _core.embedding_bag_vjp(input, weight, offsets, per_sample_weights, a, xp, True)[1]
    assert pullback is not None
    grad_w, grad_psw = pullback(grad)
    return grad_w, (grad.new_empty((0,)) if grad_psw is None else grad_psw)


@embedding_bag_backward_op.register_fake
def _(grad: Tensor, weight: Tensor, _input: Tensor, _offsets: Tensor | None,
      per_sample_weights: Tensor | None, _mode: str, _padding_idx: int | None, _scale_grad_by_freq: bool,
      _include_last_offset: bool) -> tuple[Tensor, Tensor]:
    psw = grad.new_empty((0,)) if per_sample_weights is None else torch.empty_like(per_sample_weights)
    return torch.empty_like(weight), psw


def _bag_setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:  # noqa: ARG001 (torch passes `output=`)
    weight, input, offsets, psw, ctx.mode, ctx.padding_idx, ctx.scale_grad_by_freq, ctx.ilo = inputs
    ctx.save_for_backward(weight, input, offsets, psw)


def _bag_backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
    weight, input, offsets, psw = ctx.saved_tensors
    grad_w, grad_psw = embedding_bag_backward_op(
        grad, weight, input, offsets, psw, ctx.mode, ctx.padding_idx, ctx.scale_grad_by_freq, ctx.ilo)
    return (grad_w if ctx.needs_input_grad[0] else None, None, None,
            grad_psw if psw is not None and ctx.needs_input_grad[3] else None, None, None, None, None)


embedding_bag_op.register_autograd(_bag_backward, setup_context=_bag_setup)
embedding_bag_backward_op.register_autograd(_no_double_backward)
