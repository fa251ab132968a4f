"""The traced path of ``embedding`` / ``embedding_bag`` / ``renorm`` on torch tensors (``TORCH-TRACED``).

Under ``torch.compile`` / ``torch.export`` (``torch.compiler.is_compiling()``) and under ``torch.func``
transforms (an argument is a functorch-wrapped tensor), :func:`xembed.embedding` /
:func:`xembed.embedding_bag` (and :mod:`xembed.torch`'s functions and modules) come here: the metadata checks
run in Python (no tensor values are read), the renorm and the lookup are the custom ops of :mod:`._ops`, whose
real kernels check the values at run time (``TORCH-OPS-VALIDATE``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .. import _validate as v
from .._primitives._arrays import plain_torch
from . import _ops

__all__ = ["embedding", "embedding_bag", "is_traced", "renorm", "xp"]

xp = _ops.xp

_is_wrapped = torch._C._functorch.is_functorch_wrapped_tensor


def _under_func(tensors: tuple[Any, ...]) -> bool:
    """One of them is a ``torch.func``-transformed tensor (whose values cannot be read in Python)."""
    return any(isinstance(t, torch.Tensor) and _is_wrapped(t) for t in tensors)


def is_traced(*tensors: Any) -> bool:
    """Whether a call on these torch tensors must take the traced path: compiling / exporting, or under a
    ``torch.func`` transform."""
    return torch.compiler.is_compiling() or _under_func(tensors)


def _check_tensors(**arrays: Tensor | None) -> None:
    present = {k: x for k, x in arrays.items() if x is not None}
    for name, x in present.items():
        if not isinstance(x, torch.Tensor):
            msg = f"`{name}` must be a torch.Tensor, got {type(x).__name__}"
            raise TypeError(msg)
    # torch's own device comparison: array_api_compat's device() is not traceable by dynamo.
    (name0, x0), *rest = present.items()
    for name, x in rest:
        if x.device != x0.device:
            msg = (f"`{name}` is on device {x.device!r} but `{name0}` is on {x0.device!r}; "
                   "all arrays must be on the same device")
            raise ValueError(msg)


def _differentiable(*tensors: Tensor | None) -> bool:
    """Under a torch.func transform (not compiling): call the ops' Functions, which torch.func can
    differentiate (it refuses the ops' own autograd registration)."""
    return not torch.compiler.is_compiling() and _under_func(tensors)


def embedding(input: Tensor, weight: Tensor, padding_idx: Any = None, max_norm: Any = None, norm_type: Any = 2.0,
              scale_grad_by_freq: Any = False, sparse: Any = False) -> Tensor:
    """:func:`xembed.embedding` as the ``xembed::`` ops."""
    _check_tensors(input=input, weight=weight)
    input = plain_torch("input", input)  # ARR-NORMALIZE: uint16 / uint32 widened, uint64 refused (dtypes only)
    padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse = v.check_embedding_metadata(
        input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse, _ops.xp)
    if max_norm is not None:
        with torch.no_grad():
            _ops.renorm_op(weight, input, None, None, False, max_norm, norm_type)
    args = (weight, input, padding_idx, scale_grad_by_freq, sparse)
    if _differentiable(weight, input):
        return _ops.EmbeddingFunction.apply(*args)
    return _ops.embedding_op(*args)


def embedding_bag(input: Tensor, weight: Tensor, offsets: Tensor | None = None, max_norm: Any = None,
                  norm_type: Any = 2, scale_grad_by_freq: Any = False, mode: Any = "mean", sparse: Any = False,
                  per_sample_weights: Tensor | None = None, include_last_offset: Any = False,
                  padding_idx: Any = None, lengths: Tensor | None = None) -> Tensor:
    """:func:`xembed.embedding_bag` as the ``xembed::`` ops."""
    _check_tensors(input=input, weight=weight, offsets=offsets, per_sample_weights=per_sample_weights,
                   lengths=lengths)
    # ARR-NORMALIZE, from the dtypes only: uint16 / uint32 widened, uint64 refused
    input = plain_torch("input", input)
    offsets = None if offsets is None else plain_torch("offsets", offsets)
    lengths = None if lengths is None else plain_torch("lengths", lengths)
    a = v.check_bag_metadata(input, weight, offsets, per_sample_weights, mode, max_norm, norm_type,
                             scale_grad_by_freq, sparse, include_last_offset, padding_idx, _ops.xp, lengths=lengths)
    if a.max_norm is not None:
        with torch.no_grad():
            _ops.renorm_op(weight, input, offsets, lengths, a.include_last_offset, a.max_norm, a.norm_type)
    args = (weight, input, offsets, per_sample_weights, lengths, a.mode, a.padding_idx, a.scale_grad_by_freq,
            a.include_last_offset, a.sparse)
    if _differentiable(weight, input, offsets, per_sample_weights, lengths):
        return _ops.BagFunction.apply(*args)
    return _ops.embedding_bag_op(*args)


def _transforms() -> list[str]:
    """The active torch.func transforms, outermost first (``Grad``, ``Vmap``, ``Jvp``, ...)."""
    if torch.compiler.is_compiling():  # dynamo cannot call this; a compiled graph is not inside a transform
        return []
    stack = torch._C._functorch.get_interpreter_stack() or []
    return [interpreter.key().name for interpreter in stack]


def renorm(weight: Tensor, input: Tensor, max_norm: float, norm_type: float) -> Tensor:
    """:func:`xembed.renorm` traced (checked arguments): a renormed copy of the table, under torch.compile /
    torch.export and torch.vmap (a batch of tables or of index arrays: one renormed table per entry).  Under
    torch.func.grad / vjp / jacrev / jvp it raises: the copy is outside autograd (RENORM-FUNCTIONAL), which a
    transform would take as a zero derivative."""
    _check_tensors(input=input, weight=weight)
    input = plain_torch("input", input)  # ARR-NORMALIZE (dtype only)
    differentiating = [t for t in _transforms() if t != "Vmap"]
    if differentiating:
        msg = (f"xembed.renorm is not supported under torch.func's {differentiating[-1].lower()} transform: its "
               "result is a new table outside autograd (a zero derivative); renorm outside the transform, or "
               "use `max_norm` of xembed.embedding / embedding_bag")
        raise NotImplementedError(msg)
    with torch.no_grad():
        # + a 0-d zero taken from `input`: under vmap over index arrays the copy is batched too (one table each)
        out = weight.detach().clone() + input.new_zeros((), dtype=weight.dtype)
        _ops.renorm_op(out, input, None, None, False, max_norm, norm_type)
    return out
