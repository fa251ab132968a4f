"""``xembed.torch.embedding`` / ``embedding_bag``: torch.nn.functional's signatures, traceable.

Eager calls go to :func:`xembed.embedding` / :func:`xembed.embedding_bag` (the eager autograd path:
forward mode, double backward).  Under ``torch.compile`` or ``torch.export``
(``torch.compiler.is_compiling()``), the metadata checks run at trace time and the call becomes the
custom ops of :mod:`._ops`, whose kernels check the values at run time (``TORCH-OPS-VALIDATE``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import _api
from .. import _validate as v
from . import _ops

__all__ = ["embedding", "embedding_bag"]


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


def _refuse_sparse(sparse: bool) -> None:
    if sparse:
        msg = ("`sparse`=True is not supported under torch.compile / torch.export (xembed's traced backward "
               "is dense); use `sparse`=False there, or call eagerly")
        raise NotImplementedError(msg)


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None, max_norm: float | None = None,
              norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    """:func:`xembed.embedding` for torch tensors, traceable by ``torch.compile`` / ``torch.export``."""
    if not torch.compiler.is_compiling():
        return _api.embedding(input, weight, padding_idx, max_norm, norm_type,
                              scale_grad_by_freq, sparse)
    _check_tensors(input=input, weight=weight)
    padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse = v.check_embedding_metadata(
        input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse, _ops.xp)
    _refuse_sparse(sparse)
    if max_norm is not None:
        with torch.no_grad():
            _ops.renorm_op(weight, input, None, False, max_norm, norm_type)
    return _ops.embedding_op(weight, input, padding_idx, scale_grad_by_freq)


def embedding_bag(input: Tensor, weight: Tensor, offsets: Tensor | None = None, max_norm: float | None = None,
                  norm_type: float = 2, scale_grad_by_freq: bool = False, mode: str = "mean",
                  sparse: bool = False, per_sample_weights: Tensor | None = None,
                  include_last_offset: bool = False, padding_idx: int | None = None) -> Tensor:
    """:func:`xembed.embedding_bag` for torch tensors, traceable by ``torch.compile`` / ``torch.export``."""
    if not torch.compiler.is_compiling():
        return _api.embedding_bag(
            input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, mode, sparse, per_sample_weights,
            include_last_offset, padding_idx)
    _check_tensors(input=input, weight=weight, offsets=offsets, per_sample_weights=per_sample_weights)
    a = v.check_bag_metadata(input, weight, offsets, per_sample_weights, mode, max_norm, norm_type,
                             scale_grad_by_freq, sparse, include_last_offset, padding_idx, _ops.xp)
    _refuse_sparse(a.sparse)
    if a.max_norm is not None:
        with torch.no_grad():
            _ops.renorm_op(weight, input, offsets, a.include_last_offset, a.max_norm, a.norm_type)
    return _ops.embedding_bag_op(
        weight, input, offsets, per_sample_weights, a.mode, a.padding_idx, a.scale_grad_by_freq,
        a.include_last_offset)
