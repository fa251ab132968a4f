"""``xembed.torch.embedding`` / ``embedding_bag``: torch.nn.functional's signatures, traceable.

Eager calls go to :func:`xembed.embedding` / :func:`xembed.embedding_bag` (the eager autograd path:
forward mode, double backward, sparse gradients).  Under ``torch.compile`` / ``torch.export`` and
``torch.func`` the call becomes the custom ops of :mod:`._ops` (:mod:`._traced`, ``TORCH-TRACED``).
"""

from __future__ import annotations

from torch import Tensor

from .. import _api
from . import _traced

__all__ = ["embedding", "embedding_bag"]


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None, max_norm: float | None = None,
              norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    """:func:`xembed.embedding` for torch tensors, traceable by ``torch.compile`` / ``torch.export``."""
    if _traced.is_traced(weight, input):
        return _traced.embedding(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse)
    return _api.embedding(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse)


def embedding_bag(input: Tensor, weight: Tensor, offsets: Tensor | None = None, max_norm: float | None = None,
                  norm_type: float = 2, scale_grad_by_freq: bool = False, mode: str = "mean",
                  sparse: bool = False, per_sample_weights: Tensor | None = None,
                  include_last_offset: bool = False, padding_idx: int | None = None) -> Tensor:
    """:func:`xembed.embedding_bag` for torch tensors, traceable by ``torch.compile`` / ``torch.export``."""
    if _traced.is_traced(weight, input, offsets, per_sample_weights):
        return _traced.embedding_bag(input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, mode, sparse,
                                     per_sample_weights, include_last_offset, padding_idx)
    return _api.embedding_bag(input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, mode, sparse,
                              per_sample_weights, include_last_offset, padding_idx)
