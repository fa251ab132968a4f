"""``xembed.torch.Embedding`` / ``EmbeddingBag``: ``torch.nn.Embedding`` / ``EmbeddingBag`` subclasses.

They inherit torch's parameters, initialisation (N(0, 1), padding row zeroed), ``from_pretrained``,
``reset_parameters``, ``extra_repr`` and ``state_dict`` layout (one key, ``weight``), so a state_dict
moves between them and torch's modules both ways (``TORCH-MODULES``).  What differs: the forward is
xembed's (:mod:`xembed.torch`'s functions: eager autograd path, custom ops under compile / export), and
bad constructor arguments raise typed errors naming the argument instead of torch's AssertionError.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch
from torch import Tensor

from .. import _validate as v
from ._functional import embedding, embedding_bag

__all__ = ["Embedding", "EmbeddingBag"]


def _check_size(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        msg = f"`{name}` must be a non-negative int, got {value!r}"
        raise ValueError(msg)
    return int(value)


def _check_common(num_embeddings: Any, embedding_dim: Any, padding_idx: Any, max_norm: Any, norm_type: Any,
                  scale_grad_by_freq: Any, sparse: Any, _weight: Any) -> tuple[int, int, int | None]:
    n = _check_size("num_embeddings", num_embeddings)
    d = _check_size("embedding_dim", embedding_dim)
    v.check_renorm_args(max_norm, norm_type)
    v.check_flag("scale_grad_by_freq", scale_grad_by_freq)
    v.check_flag("sparse", sparse)
    if _weight is not None:
        if not isinstance(_weight, torch.Tensor):
            msg = f"`_weight` must be a torch.Tensor, got {type(_weight).__name__}"
            raise TypeError(msg)
        if tuple(_weight.shape) != (n, d):
            msg = f"`_weight` must have shape {(n, d)}, got {tuple(_weight.shape)}"
            raise ValueError(msg)
    return n, d, v.normalize_padding_idx(padding_idx, n)


def _check_pretrained(embeddings: Any) -> None:
    if not isinstance(embeddings, torch.Tensor):
        msg = f"`embeddings` must be a torch.Tensor, got {type(embeddings).__name__}"
        raise TypeError(msg)
    if embeddings.ndim != 2:
        msg = f"`embeddings` must be 2-D, got shape {tuple(embeddings.shape)}"
        raise ValueError(msg)


class Embedding(torch.nn.Embedding):
    """``torch.nn.Embedding`` computed by xembed (same arguments, attributes and state_dict)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 max_norm: float | None = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                 sparse: bool = False, _weight: Tensor | None = None, _freeze: bool = False,
                 device: Any = None, dtype: Any = None) -> None:
        n, d, padding_idx = _check_common(num_embeddings, embedding_dim, padding_idx, max_norm, norm_type,
                                          scale_grad_by_freq, sparse, _weight)
        super().__init__(n, d, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse, _weight, _freeze,
                         device, dtype)

    def forward(self, input: Tensor) -> Tensor:
        return embedding(input, self.weight, self.padding_idx, self.max_norm, self.norm_type,
                         self.scale_grad_by_freq, self.sparse)

    @classmethod
    def from_pretrained(cls, embeddings: Tensor, freeze: bool = True, padding_idx: int | None = None,
                        max_norm: float | None = None, norm_type: float = 2.0,
                        scale_grad_by_freq: bool = False, sparse: bool = False) -> Embedding:
        """As ``torch.nn.Embedding.from_pretrained``: wraps ``embeddings`` (shared storage)."""
        _check_pretrained(embeddings)
        module = super().from_pretrained(  # type: ignore[no-untyped-call]
            embeddings, freeze, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse)
        assert isinstance(module, Embedding)
        return module


class EmbeddingBag(torch.nn.EmbeddingBag):
    """``torch.nn.EmbeddingBag`` computed by xembed (same arguments, attributes and state_dict)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, max_norm: float | None = None,
                 norm_type: float = 2.0, scale_grad_by_freq: bool = False, mode: str = "mean",
                 sparse: bool = False, _weight: Tensor | None = None, include_last_offset: bool = False,
                 padding_idx: int | None = None, device: Any = None, dtype: Any = None) -> None:
        n, d, padding_idx = _check_common(num_embeddings, embedding_dim, padding_idx, max_norm, norm_type,
                                          scale_grad_by_freq, sparse, _weight)
        if not isinstance(mode, str) or mode not in v.MODES:
            msg = f"`mode` must be one of 'sum', 'mean', 'max', got {mode!r}"
            raise ValueError(msg)
        v.check_flag("include_last_offset", include_last_offset)
        super().__init__(n, d, max_norm, norm_type, scale_grad_by_freq, mode, sparse, _weight,
                         include_last_offset, padding_idx, device, dtype)

    def forward(self, input: Tensor, offsets: Tensor | None = None,
                per_sample_weights: Tensor | None = None) -> Tensor:
        return embedding_bag(input, self.weight, offsets, self.max_norm, self.norm_type,
                             self.scale_grad_by_freq, self.mode, self.sparse, per_sample_weights,
                             self.include_last_offset, self.padding_idx)

    @classmethod
    def from_pretrained(cls, embeddings: Tensor, freeze: bool = True, max_norm: float | None = None,
                        norm_type: float = 2.0, scale_grad_by_freq: bool = False, mode: str = "mean",
                        sparse: bool = False, include_last_offset: bool = False,
                        padding_idx: int | None = None) -> EmbeddingBag:
        """As ``torch.nn.EmbeddingBag.from_pretrained``: wraps ``embeddings`` (shared storage)."""
        _check_pretrained(embeddings)
        module = super().from_pretrained(embeddings, freeze, max_norm, norm_type, scale_grad_by_freq, mode,
                                         sparse, include_last_offset, padding_idx)
        assert isinstance(module, EmbeddingBag)
        return module
