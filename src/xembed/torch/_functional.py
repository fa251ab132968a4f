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
    """Look up rows of ``weight``, with ``torch.nn.functional.embedding``'s signature; traceable.

    Parameters
    ----------
    input : torch.Tensor
        Integer indices of any shape.
    weight : torch.Tensor
        The ``(N, D)`` table.
    padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse : optional
        As for :func:`xembed.embedding`.

    Returns
    -------
    torch.Tensor
        Shape ``input.shape + (D,)``.

    See Also
    --------
    xembed.embedding : The same for any array library.

    Notes
    -----
    Eager calls run :func:`xembed.embedding`; traced ones the ``xembed::`` ops (TORCH-TRACED).

    Examples
    --------
    >>> import torch, xembed.torch as xt
    >>> xt.embedding(torch.tensor([2]), torch.eye(3))
    tensor([[0., 0., 1.]])
    """
    if _traced.is_traced(weight, input):
        return _traced.embedding(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse)
    return _api.embedding(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse)


def embedding_bag(input: Tensor, weight: Tensor, offsets: Tensor | None = None, max_norm: float | None = None,
                  norm_type: float = 2, scale_grad_by_freq: bool = False, mode: str = "mean",
                  sparse: bool = False, per_sample_weights: Tensor | None = None,
                  include_last_offset: bool = False, padding_idx: int | None = None) -> Tensor:
    """Reduce bags of rows of ``weight``, with ``torch.nn.functional.embedding_bag``'s signature; traceable.

    Parameters
    ----------
    input : torch.Tensor
        1-D indices with ``offsets``, or 2-D ``(B, L)``.
    weight : torch.Tensor
        The ``(N, D)`` table.
    offsets, max_norm, norm_type, scale_grad_by_freq, mode, sparse, per_sample_weights, include_last_offset, \
padding_idx : optional
        As for :func:`xembed.embedding_bag`.

    Returns
    -------
    torch.Tensor
        Shape ``(B, D)``.

    See Also
    --------
    xembed.embedding_bag : The same for any array library.

    Notes
    -----
    Eager calls run :func:`xembed.embedding_bag`; traced ones the ``xembed::`` ops (TORCH-TRACED).

    Examples
    --------
    >>> import torch, xembed.torch as xt
    >>> xt.embedding_bag(torch.tensor([[0, 2]]), torch.eye(3), mode="sum")
    tensor([[1., 0., 1.]])
    """
    if _traced.is_traced(weight, input, offsets, per_sample_weights):
        return _traced.embedding_bag(input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, mode, sparse,
                                     per_sample_weights, include_last_offset, padding_idx)
    return _api.embedding_bag(input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, mode, sparse,
                              per_sample_weights, include_last_offset, padding_idx)
