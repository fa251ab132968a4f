"""The adapter of torch tensors (imported only when they are passed).

* Differentiation: torch autograd through one ``autograd.Function`` driven by the core's forward and pullback
  (:mod:`xembed._torch_autograd`, TORCH-AUTOGRAD); the ``*_vjp`` functions compute without it.
* max_norm renorms the caller's tensor in place, outside autograd (RENORM-INPLACE, RENORM-GRAD).
* Whole-call kernels (PRIM-TORCH-NATIVE): after the checks, a call outside autograd whose options torch's own
  fused CPU kernels compute with exactly the specification's semantics is handed to them.  Everything else
  (autograd, forward AD, low precision, max_norm, the EXT-* modes, the inputs where those kernels crash or
  raise: DIV-1..3, mixed index dtypes, CUDA) is computed by the core.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.autograd.forward_ad as fwad

from .. import _core, _torch_autograd
from .. import _primitives as prim
from .. import _validate as v
from .._typing import Array, Namespace
from ._calls import Adapter, Bag, Lookup
from ._eager import Compute, bag_compute, bag_layout, finish, lookup_compute

_FUSED_DTYPES = (torch.float32, torch.float64)
_INDEX_DTYPES = (torch.int32, torch.int64)


def _fusable(weight: torch.Tensor, input: torch.Tensor, per_sample_weights: torch.Tensor | None) -> bool:
    # Not under autograd: torch's embedding / embedding_bag backward is not differentiable again, and xembed's
    # is (TORCH-DOUBLE-BWD); whether a backward will be differentiated is only known at backward time.
    if torch.is_grad_enabled() and (weight.requires_grad or (per_sample_weights is not None
                                                             and per_sample_weights.requires_grad)):
        return False
    return (weight.device.type == "cpu" and weight.dtype in _FUSED_DTYPES and input.dtype in _INDEX_DTYPES
            and not input.requires_grad and fwad._current_level < 0 and prim.mode() != "fallback")


def _lookup_fusable(c: Lookup) -> bool:
    # torch's sparse backward fails for a 0-d input with a padding_idx (DIV-3)
    if c.sparse and c.padding_idx is not None and c.input.ndim == 0:
        return False
    return c.max_norm is None and _fusable(c.weight, c.input, None)


def _bag_fusable(c: Bag) -> bool:
    a = c.args
    if a.max_norm is not None or not _fusable(c.weight, c.input, c.per_sample_weights):
        return False
    # torch's own modes only (EXT-* are xembed's), per_sample_weights with sum only (EXT-WMEAN, EXT-PSW-MODES)
    if a.mode not in ("sum", "mean", "max") or (c.per_sample_weights is not None and a.mode != "sum"):
        return False
    if c.offsets is None:  # torch raises "step must be nonzero" for a (B, 0) input (DIV-2; BAG-2D-ZERO-COLS)
        return c.input.ndim != 2 or c.input.shape[1] > 0
    # torch CPU crashes on empty offsets and on offsets [0] with include_last_offset (DIV-1)
    return c.offsets.dtype == c.input.dtype and c.offsets.shape[0] > (1 if a.include_last_offset else 0)


def _fused(ns: Namespace, input: Array, weight: Array, run: Callable[[], Array]) -> Any:
    """torch's fused kernels check the index range themselves: when one raised, the specification's check
    gives its error (ERR-INDEX-RANGE); any other failure is torch's.  Nothing was modified either way."""
    try:
        return run()
    except (IndexError, RuntimeError) as e:
        v.check_indices_in_range(input, weight.shape[0], ns)
        raise e from None


def _run(ns: Namespace, weight: Array, per_sample_weights: Array | None, input: Array, offsets: Array | None,
         max_norm: float | None, norm_type: float, compute: Compute, kind: str, want_vjp: bool) -> Any:
    """Renorm in place, then compute, connected to autograd when needed (RENORM-GRAD: the renormed weight is
    the leaf; autograd gets the undetached leaves, so that the backward is itself differentiable)."""
    leaves = (weight, per_sample_weights) if _torch_autograd.needs_autograd(weight, per_sample_weights, input,
                                                                            want_vjp) else None
    weight, input = weight.detach(), input.detach()
    per_sample_weights = None if per_sample_weights is None else per_sample_weights.detach()
    if max_norm is not None:
        weight = _core.renorm_(weight, input, max_norm, norm_type, ns)
    if leaves is not None:
        return _torch_autograd.apply(*leaves, compute, kind, (input, offsets))
    return finish(compute, weight, per_sample_weights, want_vjp)


def embedding(ns: Namespace, c: Lookup) -> Any:
    _torch_autograd.refuse_func_transforms(c.weight, None, c.input)  # before any value is read (TORCH-FUNC)
    if not c.want_vjp and _lookup_fusable(c):
        return _fused(ns, c.input, c.weight, lambda: torch.nn.functional.embedding(
            c.input, c.weight, padding_idx=c.padding_idx, scale_grad_by_freq=c.scale_grad_by_freq, sparse=c.sparse))
    v.check_indices_in_range(c.input, c.weight.shape[0], ns)
    return _run(ns, c.weight, None, c.input, None, c.max_norm, c.norm_type, lookup_compute(ns, c), "embedding",
                c.want_vjp)


def embedding_bag(ns: Namespace, c: Bag) -> Any:
    _torch_autograd.refuse_func_transforms(c.weight, c.per_sample_weights, c.input)
    c = bag_layout(ns, c)
    a = c.args
    if not c.want_vjp and _bag_fusable(c):
        return _fused(ns, c.input, c.weight, lambda: torch.nn.functional.embedding_bag(
            c.input, c.weight, c.offsets, mode=a.mode, sparse=a.sparse, per_sample_weights=c.per_sample_weights,
            include_last_offset=a.include_last_offset, padding_idx=a.padding_idx,
            scale_grad_by_freq=a.scale_grad_by_freq))
    v.check_indices_in_range(c.input, c.weight.shape[0], ns)
    return _run(ns, c.weight, c.per_sample_weights, c.input, c.offsets, a.max_norm, a.norm_type, bag_compute(ns, c),
                a.mode, c.want_vjp)


def renorm(ns: Namespace, weight: Array, input: Array, max_norm: float, norm_type: float) -> Array:
    v.check_indices_in_range(input, weight.shape[0], ns)
    return _core.renorm(weight.detach(), input.detach(), max_norm, norm_type, ns)


ADAPTER = Adapter("torch", embedding, embedding_bag, renorm)
