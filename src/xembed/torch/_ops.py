"""xembed's torch path as torch library custom ops, for ``torch.compile``, ``torch.export`` and ``torch.func``.

Each op is opaque to the tracers: a fake (meta) kernel gives the output's shape, dtype and device with every
size symbolic (the number of bags and of indices are never read as Python ints, so a compiled graph serves
every batch size, ``TORCH-DYNAMIC``), and the real kernel runs the core on real tensors, **value checks
included** (index range, offsets and lengths rules: ``TORCH-OPS-VALIDATE``), so a compiled or exported
program validates its inputs at run time exactly like the eager call.  Autograd is registered with
``register_autograd`` (and the same formulas drive :class:`BagFunction` / :class:`EmbeddingFunction` under
``torch.func``); the backward is another op (``TORCH-OPS``).  Every op has a batching rule for
``torch.vmap`` (``TORCH-FUNC``).  Ops:

* ``xembed::renorm_(weight!, input, offsets?, lengths?, include_last_offset, max_norm, norm_type)`` — the
  in-place max_norm renorm (validates first: a failing call never touches the weight);
* ``xembed::embedding(weight, input, padding_idx?, scale_grad_by_freq, sparse)`` and its backward
  ``xembed::embedding_backward``;
* ``xembed::embedding_bag(weight, input, offsets?, per_sample_weights?, lengths?, mode, padding_idx?,
  scale_grad_by_freq, include_last_offset, sparse)`` and ``xembed::embedding_bag_backward`` (returns the
  weight gradient and the per_sample_weights gradient, an empty tensor when there are none).

The backward ops recompute the forward's bookkeeping through the core (the traced graph cannot hold the
eager path's pullback closure).  They read only what the gradient needs: the saved indices, offsets and
per_sample_weights, and the weight only for a per_sample_weights gradient or a max / min / sqrtn / weighted
mean bag — saved with ``save_for_backward``, so modifying one of them in place after the forward makes the
backward raise torch's "modified by an inplace operation" error (``TORCH-SAVED``).  The traced gradient is
dense: ``sparse=True`` raises NotImplementedError when a backward is traced (``TORCH-SPARSE-TRACED``).
Differentiating the backward ops again (double backward under compile / export / torch.func) raises.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import array_api_compat.torch as xp
import torch
from torch import Tensor

from .. import _core
from .. import _validate as v

__all__ = ["BagFunction", "EmbeddingFunction", "embedding_bag_op", "embedding_op", "renorm_op", "xp"]


def _offsets_from(input: Tensor, offsets: Tensor | None, lengths: Tensor | None,
                  include_last_offset: bool) -> tuple[Tensor | None, bool]:
    """Validate the offsets / lengths values (ERR-OFFSETS-*, EXT-LENGTHS-VALUES) and give the offsets the
    core reads (lengths become full offsets with a last entry)."""
    if lengths is not None:
        offsets = v.offsets_from_lengths(lengths, input.shape[0], xp)
        return offsets, True
    if offsets is not None and input.ndim == 1:
        v.check_offsets_values(offsets, input.shape[0], include_last_offset, xp)
    return offsets, include_last_offset


def _bag_args(mode: str, padding_idx: int | None, scale_grad_by_freq: bool, include_last_offset: bool) -> v.BagArgs:
    return v.BagArgs(mode, padding_idx, None, 2.0, scale_grad_by_freq, False, include_last_offset)


def _no_double_backward(ctx: Any, *grad_outputs: Any) -> Any:
    msg = ("double backward through xembed's custom ops (the torch.compile / torch.export / torch.func path) is "
           "not supported; differentiate twice in eager mode with torch.autograd (xembed.embedding / "
           "xembed.embedding_bag)")
    raise NotImplementedError(msg)


def _refuse_sparse_backward(sparse: bool, needs_weight_grad: bool) -> None:
    if sparse and needs_weight_grad:
        msg = ("`sparse`=True: a sparse gradient cannot be traced (torch.compile / torch.export / torch.func "
               "build a dense one); use `sparse`=False there, or train eagerly")
        raise NotImplementedError(msg)


# --- batching rules (torch.vmap) ---------------------------------------------------------------------

def _select(args: Sequence[Any], in_dims: Sequence[int | None], k: int) -> list[Any]:
    return [a if d is None else a.select(d, k) for a, d in zip(args, in_dims, strict=True)]


def _loop_rule(op: Callable[..., Any]) -> Callable[..., Any]:
    """A batching rule that runs ``op`` once per batch entry and stacks the results along dim 0: exact for
    every option (the ops take ragged bags, which no single batched call describes)."""

    def rule(info: Any, in_dims: tuple[int | None, ...], *args: Any) -> tuple[Any, Any]:
        results = [op(*_select(args, in_dims, k)) for k in range(info.batch_size)]
        if isinstance(results[0], tuple):
            return tuple(torch.stack(list(r)) for r in zip(*results, strict=True)), (0,) * len(results[0])
        return torch.stack(results), 0

    return rule


# --- renorm -----------------------------------------------------------------------------------------

@torch.library.custom_op("xembed::renorm_", mutates_args=("weight",))
def renorm_op(weight: Tensor, input: Tensor, offsets: Tensor | None, lengths: Tensor | None,
              include_last_offset: bool, max_norm: float, norm_type: float) -> None:
    """Validate the values, then renorm the rows of ``weight`` referenced by ``input`` in place."""
    _offsets_from(input, offsets, lengths, include_last_offset)
    v.check_indices_in_range(input, weight.shape[0], xp)
    _core.renorm_(weight, input, max_norm, norm_type, xp)


@renorm_op.register_fake
def _(_weight: Tensor, _input: Tensor, _offsets: Tensor | None, _lengths: Tensor | None,
      _include_last_offset: bool, _max_norm: float, _norm_type: float) -> None:
    return None


@renorm_op.register_vmap
def _(info: Any, in_dims: tuple[int | None, ...], *args: Any) -> tuple[None, None]:
    # one batch entry after the other: renorming a row twice changes nothing (its norm is then below
    # max_norm), so an unbatched weight ends up renormed at the union of the entries' indices
    for k in range(info.batch_size):
        renorm_op(*_select(args, in_dims, k))
    return None, None


# --- embedding --------------------------------------------------------------------------------------

@torch.library.custom_op("xembed::embedding", mutates_args=())
def embedding_op(weight: Tensor, input: Tensor, padding_idx: int | None, scale_grad_by_freq: bool,
                 sparse: bool) -> Tensor:  # noqa: ARG001 (sparse: gradient only)
    """``weight[input]`` (``padding_idx`` / ``scale_grad_by_freq`` / ``sparse`` only shape the gradient)."""
    v.check_indices_in_range(input, weight.shape[0], xp)
    return _core.embedding_vjp(input, weight, padding_idx, scale_grad_by_freq, False, xp)[0]


@embedding_op.register_fake
def _(weight: Tensor, input: Tensor, _padding_idx: int | None, _scale_grad_by_freq: bool, _sparse: bool) -> Tensor:
    return weight.new_empty((*input.shape, weight.shape[1]))


@embedding_op.register_vmap
def _(info: Any, in_dims: tuple[int | None, ...], weight: Tensor, input: Tensor, *options: Any) -> tuple[Tensor, int]:
    weight_dim, input_dim = in_dims[0], in_dims[1]
    if weight_dim is None and input_dim is not None:  # one table, a batch of index arrays: one lookup
        return embedding_op(weight, input.movedim(input_dim, 0), *options), 0
    return _loop_rule(embedding_op)(info, in_dims, weight, input, *options)


@torch.library.custom_op("xembed::embedding_backward", mutates_args=())
def embedding_backward_op(grad: Tensor, input: Tensor, num_weights: int, padding_idx: int | None,
                          scale_grad_by_freq: bool) -> Tensor:
    """The dense weight gradient of :func:`embedding_op`."""
    # The pullback needs only the weight's shape, dtype and device: a zero-stride stand-in (one element).
    stand_in = grad.new_zeros(()).expand(num_weights, grad.shape[-1])
    pullback = _core.embedding_vjp(input, stand_in, padding_idx, scale_grad_by_freq, False, xp)[1]
    return pullback(grad)


@embedding_backward_op.register_fake
def _(grad: Tensor, _input: Tensor, num_weights: int, _padding_idx: int | None, _scale_grad_by_freq: bool) -> Tensor:
    return grad.new_empty((num_weights, grad.shape[-1]))


embedding_backward_op.register_vmap(_loop_rule(embedding_backward_op))


def _embedding_setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:  # noqa: ARG001 (torch passes `output=`)
    weight, input, ctx.padding_idx, ctx.scale_grad_by_freq, ctx.sparse = inputs
    ctx.num_weights = weight.shape[0]
    ctx.save_for_backward(input)


def _embedding_backward(ctx: Any, grad: Tensor, backward_op: Callable[..., Tensor] | None = None,
                        ) -> tuple[Tensor | None, None, None, None, None]:
    if not ctx.needs_input_grad[0]:
        return None, None, None, None, None
    _refuse_sparse_backward(ctx.sparse, True)
    (input,) = ctx.saved_tensors
    backward_op = backward_op or embedding_backward_op
    grad_w = backward_op(grad, input, ctx.num_weights, ctx.padding_idx, ctx.scale_grad_by_freq)
    return grad_w, None, None, None, None


embedding_op.register_autograd(_embedding_backward, setup_context=_embedding_setup)
embedding_backward_op.register_autograd(_no_double_backward)


# --- embedding_bag ----------------------------------------------------------------------------------

@torch.library.custom_op("xembed::embedding_bag", mutates_args=())
def embedding_bag_op(weight: Tensor, input: Tensor, offsets: Tensor | None, per_sample_weights: Tensor | None,
                     lengths: Tensor | None, mode: str, padding_idx: int | None, scale_grad_by_freq: bool,
                     include_last_offset: bool, sparse: bool) -> Tensor:  # noqa: ARG001 (sparse: gradient only)
    """The (B, D) bag reduction."""
    offsets, include_last_offset = _offsets_from(input, offsets, lengths, include_last_offset)
    v.check_indices_in_range(input, weight.shape[0], xp)
    a = _bag_args(mode, padding_idx, scale_grad_by_freq, include_last_offset)
    return _core.embedding_bag_vjp(input, weight, offsets, per_sample_weights, a, xp, False)[0]


def _num_bags(input: Tensor, offsets: Tensor | None, lengths: Tensor | None, include_last_offset: bool) -> Any:
    # shapes stay symbolic (SymInt): int() here would specialize the graph on the number of bags
    if lengths is not None:
        return lengths.shape[0]
    if input.ndim == 2 or offsets is None:
        return input.shape[0]
    return offsets.shape[0] - (1 if include_last_offset else 0)


@embedding_bag_op.register_fake
def _(weight: Tensor, input: Tensor, offsets: Tensor | None, _per_sample_weights: Tensor | None,
      lengths: Tensor | None, _mode: str, _padding_idx: int | None, _scale_grad_by_freq: bool,
      include_last_offset: bool, _sparse: bool) -> Tensor:
    return weight.new_empty((_num_bags(input, offsets, lengths, include_last_offset), weight.shape[1]))


def _batched(x: Tensor, dim: int | None, size: int) -> Tensor:
    """``x`` with its batch dimension first (broadcast to ``size`` entries when it has none)."""
    return x.expand(size, *x.shape) if dim is None else x.movedim(dim, 0)


@embedding_bag_op.register_vmap
def _(info: Any, in_dims: tuple[int | None, ...], *args: Any) -> tuple[Tensor, int]:
    weight, input, offsets, psw, lengths, *options = args
    input_dim, psw_dim = in_dims[1], in_dims[3]
    if in_dims[0] is not None or offsets is not None or lengths is not None or input_dim is None:
        return _loop_rule(embedding_bag_op)(info, in_dims, *args)
    # one table, a batch of (B, L) inputs: the K * B bags of one call (bags are independent in the forward)
    k = info.batch_size
    rows = _batched(input, input_dim, k).flatten(0, 1)
    psw = None if psw is None else _batched(psw, psw_dim, k).flatten(0, 1)
    out = embedding_bag_op(weight, rows, None, psw, None, *options)
    return out.unflatten(0, (k, -1)), 0


@torch.library.custom_op("xembed::embedding_bag_backward", mutates_args=())
def embedding_bag_backward_op(grad: Tensor, weight: Tensor | None, num_weights: int, input: Tensor,
                              offsets: Tensor | None, per_sample_weights: Tensor | None, lengths: Tensor | None,
                              mode: str, padding_idx: int | None, scale_grad_by_freq: bool,
                              include_last_offset: bool) -> tuple[Tensor, Tensor]:
    """``(grad_weight, grad_per_sample_weights)``; the latter is empty without per_sample_weights.
    ``weight`` is None when the gradient does not read it (then a zero-stride stand-in of
    ``num_weights`` rows gives the pullback its shape)."""
    if weight is None:
        weight = grad.new_zeros(()).expand(num_weights, grad.shape[-1])
    if lengths is not None:
        offsets, include_last_offset = v.lengths_to_offsets(lengths, xp), True
    a = _bag_args(mode, padding_idx, scale_grad_by_freq, include_last_offset)
    pullback = _core.embedding_bag_vjp(input, weight, offsets, per_sample_weights, a, xp, True)[1]
    assert pullback is not None
    grad_w, grad_psw = pullback(grad)
    return grad_w, (grad.new_empty((0,)) if grad_psw is None else grad_psw)


@embedding_bag_backward_op.register_fake
def _(grad: Tensor, _weight: Tensor | None, num_weights: int, _input: Tensor, _offsets: Tensor | None,
      per_sample_weights: Tensor | None, _lengths: Tensor | None, _mode: str, _padding_idx: int | None,
      _scale_grad_by_freq: bool, _include_last_offset: bool) -> tuple[Tensor, Tensor]:
    psw = grad.new_empty((0,)) if per_sample_weights is None else torch.empty_like(per_sample_weights)
    return grad.new_empty((num_weights, grad.shape[1])), psw


@embedding_bag_backward_op.register_vmap
def _(info: Any, in_dims: tuple[int | None, ...], *args: Any) -> tuple[tuple[Tensor, Tensor], tuple[int, None]]:
    grad, weight, num_weights, input, offsets, psw, lengths, mode, padding_idx, *options = args
    if (weight is not None or psw is not None or offsets is not None or lengths is not None
            or input.ndim - (in_dims[3] is not None) != 2):
        return _loop_rule(embedding_bag_backward_op)(info, in_dims, *args)
    # Per-entry weight gradients of a (B, L) input whose gradient reads only the indices (sum / mean, no
    # per_sample_weights): entry k's indices move to rows k*N.. of one (K*N, D) gradient; padding positions
    # keep padding_idx (no gradient) and frequencies (scale_grad_by_freq) stay per entry.
    k = info.batch_size
    rows = _batched(input, in_dims[3], k)
    shift = torch.arange(k, dtype=rows.dtype, device=rows.device).view(k, 1, 1) * num_weights
    shifted = rows + shift
    if padding_idx is not None:
        shifted = torch.where(rows == padding_idx, rows, shifted)
    grads = _batched(grad, in_dims[0], k).flatten(0, 1)
    grad_w, grad_psw = embedding_bag_backward_op(
        grads, None, k * num_weights, shifted.flatten(0, 1), None, None, None, mode, padding_idx, *options)
    return (grad_w.unflatten(0, (k, num_weights)), grad_psw), (0, None)


def _bag_reads_weight(mode: str, per_sample_weights: Tensor | None) -> bool:
    """Whether the backward reads the weight's values: the per_sample_weights gradient (any mode) and the
    arg-max / arg-min (recomputed) do; the weight gradient of the other modes needs only the indices."""
    return per_sample_weights is not None or mode in ("max", "min")


def _bag_setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:  # noqa: ARG001 (torch passes `output=`)
    weight, input, offsets, psw, lengths, ctx.mode, ctx.padding_idx, ctx.sgbf, ctx.ilo, ctx.sparse = inputs
    ctx.num_weights = weight.shape[0]
    ctx.reads_weight = _bag_reads_weight(ctx.mode, psw)
    ctx.save_for_backward(weight if ctx.reads_weight else None, input, offsets, psw, lengths)


def _bag_backward(ctx: Any, grad: Tensor, backward_op: Callable[..., Any] | None = None) -> tuple[Tensor | None, ...]:
    needs_w, needs_psw = ctx.needs_input_grad[0], ctx.needs_input_grad[3]
    _refuse_sparse_backward(ctx.sparse, needs_w)
    weight, input, offsets, psw, lengths = ctx.saved_tensors
    grad_w, grad_psw = (backward_op or embedding_bag_backward_op)(
        grad, weight, ctx.num_weights, input, offsets, psw, lengths, ctx.mode, ctx.padding_idx, ctx.sgbf, ctx.ilo)
    return (grad_w if needs_w else None, None, None, grad_psw if psw is not None and needs_psw else None,
            None, None, None, None, None, None)


embedding_bag_op.register_autograd(_bag_backward, setup_context=_bag_setup)
embedding_bag_backward_op.register_autograd(_no_double_backward)


# --- torch.func ---------------------------------------------------------------------------------------
# The ops' registered autograd is not usable under torch.func transforms (torch builds it as an
# autograd.Function without setup_context); these Functions run the same formulas, and torch.vmap
# batches their forward and backward through the ops' batching rules (generate_vmap_rule).  Inside them
# the ops are called below autograd: the Function is the one autograd node.

def _embedding_tangent(ctx: Any, weight_t: Tensor | None, *_: Any) -> Tensor:
    """Forward mode (torch.func.jvp / jacfwd): the lookup of the weight tangent, padding rows included
    (torch.nn.functional.embedding's tangent; TORCH-FWD-AD)."""
    weight, *args = ctx.forward_inputs
    if weight_t is None:
        weight_t = torch.zeros_like(weight)
    return _below_autograd(embedding_op, weight_t, *args)


def _psw_tangent(ctx: Any, psw_t: Tensor) -> Tensor:
    """The tangent of a bag from a per_sample_weights tangent ``pt`` (TORCH-FWD-AD), per bag ``b``:
    sum ``Σ pt_i W_i``; weighted mean ``(Σ pt_i W_i - out_b Σ pt_i) / Σ w_i``; sqrtn
    ``(Σ pt_i W_i - out_b Σ pt_i w_i / R_b) / R_b`` with ``R_b = sqrt(Σ w_i²)``; 0 where the divisor is 0
    (EXT-WMEAN-ZERO, EXT-SQRTN-ZERO).  Every sum is a ``sum`` bag of the same layout."""
    weight, input, offsets, psw, lengths, mode, *options = ctx.forward_inputs

    def bag_sum(table: Tensor, scale: Tensor) -> Tensor:
        return _below_autograd(embedding_bag_op, table, input, offsets, scale, lengths, "sum", *options)

    weighted = bag_sum(weight, psw_t)
    if mode == "sum":
        return weighted
    ones = weight.new_ones((weight.shape[0], 1))
    if mode == "mean":
        divisor, spread = bag_sum(ones, psw), bag_sum(ones, psw_t)
    else:  # sqrtn
        divisor = bag_sum(ones, psw * psw).sqrt()
        spread = bag_sum(ones, psw_t * psw) / divisor
    tangent = (weighted - ctx.forward_output * spread) / divisor
    return torch.where(divisor == 0, torch.zeros_like(tangent), tangent)


def _bag_tangent(ctx: Any, weight_t: Tensor | None, _input_t: Any, _offsets_t: Any, psw_t: Tensor | None,
                 *_: Any) -> Tensor:
    """Forward mode: the bag of the weight tangent (sum, mean, sqrtn are linear in the weight) plus the
    per_sample_weights term (:func:`_psw_tangent`); max / min raise NotImplementedError (TORCH-FWD-AD)."""
    weight, input, offsets, psw, lengths, mode, *options = ctx.forward_inputs
    if mode in ("max", "min"):
        msg = (f"forward-mode AD under torch.func (torch.func.jvp, jacfwd) of embedding_bag with `mode`={mode!r} is "
               "not supported by xembed; use torch.func.grad / vjp / jacrev, or torch.autograd.forward_ad outside "
               "torch.func")
        raise NotImplementedError(msg)
    if weight_t is None:
        weight_t = torch.zeros_like(weight)
    tangent = _below_autograd(embedding_bag_op, weight_t, input, offsets, psw, lengths, mode, *options)
    if psw_t is not None:
        tangent = tangent + _psw_tangent(ctx, psw_t)
    return tangent


def _no_forward_mode(ctx: Any, *grad_inputs: Any) -> Any:
    msg = "forward-mode AD through xembed's backward ops (a second derivative) is not supported"
    raise NotImplementedError(msg)


def _below_autograd(op: Callable[..., Any], *args: Any) -> Any:
    with torch._C._AutoDispatchBelowAutograd():
        return op(*args)


class _BackwardFunction(torch.autograd.Function):
    """A backward op as one autograd node under torch.func, whose own derivative raises."""

    generate_vmap_rule = True

    @staticmethod
    def forward(op: Callable[..., Any], *args: Any) -> Any:
        return _below_autograd(op, *args)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        pass

    backward = staticmethod(_no_double_backward)
    jvp = staticmethod(_no_forward_mode)


def _transformable(name: str, op: Callable[..., Any], setup: Callable[..., None], formula: Callable[..., Any],
                   backward_op: Callable[..., Any], tangent: Callable[..., Tensor]) -> type[torch.autograd.Function]:
    """An autograd.Function running ``op`` whose backward is ``formula`` with ``backward_op`` as one node, and
    whose forward-mode derivative is ``tangent``."""

    def forward(*args: Any) -> Any:
        return _below_autograd(op, *args)

    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        setup(ctx, inputs, output)
        ctx.forward_inputs, ctx.forward_output = inputs, output  # what the tangent reads (nothing is saved for it)
        ctx.set_materialize_grads(False)  # an input without a tangent stays None (not a zero tensor) in `tangent`

    def backward(ctx: Any, grad: Tensor) -> Any:
        return formula(ctx, grad, lambda *a: _BackwardFunction.apply(backward_op, *a))

    doc = f"{name}: the ``xembed::`` op differentiable under ``torch.func`` (grad, vjp, jacrev, vmap)."
    return type(name, (torch.autograd.Function,), {
        "__doc__": doc, "generate_vmap_rule": True, "forward": staticmethod(forward),
        "setup_context": staticmethod(setup_context), "backward": staticmethod(backward),
        "jvp": staticmethod(tangent)})


EmbeddingFunction = _transformable("EmbeddingFunction", embedding_op, _embedding_setup, _embedding_backward,
                                   embedding_backward_op, _embedding_tangent)
BagFunction = _transformable("BagFunction", embedding_bag_op, _bag_setup, _bag_backward, embedding_bag_backward_op,
                             _bag_tangent)
