"""``xembed.torch.Embedding`` / ``EmbeddingBag``: ``torch.nn.Embedding`` / ``EmbeddingBag`` subclasses.

They inherit torch's parameters, initialisation (N(0, 1), padding row zeroed), ``from_pretrained``,
``reset_parameters``, ``extra_repr`` and ``state_dict`` layout (one key, ``weight``), so a state_dict
moves between them and torch's modules both ways (``TORCH-MODULES``).  What differs: the forward is
xembed's (:mod:`xembed.torch`'s functions: eager autograd path, custom ops under compile / export), and
bad constructor arguments raise typed errors naming the argument instead of torch's AssertionError.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .. import _validate as v
from ._functional import embedding, embedding_bag

__all__ = ["Embedding", "EmbeddingBag"]


def _check_common(num_embeddings: Any, embedding_dim: Any, padding_idx: Any, max_norm: Any, norm_type: Any,
                  scale_grad_by_freq: Any, sparse: Any, _weight: Any) -> tuple[int, int, int | None]:
    n = v.check_size("num_embeddings", num_embeddings)
    d = v.check_size("embedding_dim", embedding_dim)
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
    """``torch.nn.Embedding`` computed by xembed (same arguments, attributes and state_dict).

    Parameters
    ----------
    num_embeddings, embedding_dim : int
        The table's shape ``(N, D)``.
    padding_idx : int, optional
        A row that is returned as stored and gets no gradient (negative counts from the end).
    max_norm : float, optional
        Rows looked up whose ``norm_type``-norm exceeds it are renormalised in place first.
    norm_type : float, default 2.0
        The p of the norm for ``max_norm``.
    scale_grad_by_freq : bool, default False
        Divide each row's gradient by its frequency in the batch.
    sparse : bool, default False
        Make the weight gradient a sparse COO tensor.
    _weight : torch.Tensor, optional
        An initial table of shape ``(N, D)`` (torch's private argument).
    _freeze : bool, default False
        Whether ``_weight`` stays out of autograd (torch's private argument).
    device, dtype : optional
        Where and in which floating dtype the table is created.

    Raises
    ------
    ValueError
        A negative size, a ``padding_idx`` out of range or ``max_norm`` / ``norm_type`` not > 0.
    TypeError
        A flag that is not a bool, or a ``_weight`` that is not a tensor.

    See Also
    --------
    xembed.embedding : The function it computes.

    Notes
    -----
    TORCH-MODULES; traced under ``torch.compile`` / ``torch.export`` as the ``xembed::`` ops (TORCH-TRACED).

    Examples
    --------
    >>> import torch, xembed.torch as xt
    >>> emb = xt.Embedding(10, 3, padding_idx=0)
    >>> emb(torch.tensor([[0, 2], [4, 0]])).shape
    torch.Size([2, 2, 3])
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 max_norm: float | None = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                 sparse: bool = False, _weight: Tensor | None = None, _freeze: bool = False,
                 device: Any = None, dtype: Any = None) -> None:
        n, d, padding_idx = _check_common(num_embeddings, embedding_dim, padding_idx, max_norm, norm_type,
                                          scale_grad_by_freq, sparse, _weight)
        super().__init__(n, d, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse, _weight, _freeze,
                         device, dtype)

    def forward(self, input: Tensor) -> Tensor:
        """Look up the rows of ``input``.

        Parameters
        ----------
        input : torch.Tensor
            Integer indices of any shape.

        Returns
        -------
        torch.Tensor
            Shape ``input.shape + (D,)``.

        Examples
        --------
        >>> import torch, xembed.torch as xt
        >>> xt.Embedding(5, 2)(torch.tensor([1, 4])).shape
        torch.Size([2, 2])
        """
        return embedding(input, self.weight, self.padding_idx, self.max_norm, self.norm_type,
                         self.scale_grad_by_freq, self.sparse)

    @classmethod
    def from_pretrained(cls, embeddings: Tensor, freeze: bool = True, padding_idx: int | None = None,
                        max_norm: float | None = None, norm_type: float = 2.0,
                        scale_grad_by_freq: bool = False, sparse: bool = False) -> Embedding:
        """Wrap a pretrained table, as ``torch.nn.Embedding.from_pretrained`` does (shared storage).

        Parameters
        ----------
        embeddings : torch.Tensor
            The ``(N, D)`` table.
        freeze : bool, default True
            Keep the table out of autograd.
        padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse : optional
            As for the constructor.

        Returns
        -------
        Embedding
            The module over ``embeddings``.

        Examples
        --------
        >>> import torch, xembed.torch as xt
        >>> xt.Embedding.from_pretrained(torch.eye(3))(torch.tensor([2]))
        tensor([[0., 0., 1.]])
        """
        _check_pretrained(embeddings)
        module = super().from_pretrained(  # type: ignore[no-untyped-call]
            embeddings, freeze, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse)
        assert isinstance(module, Embedding)
        return module


class EmbeddingBag(torch.nn.EmbeddingBag):
    """``torch.nn.EmbeddingBag`` computed by xembed (same arguments, attributes and state_dict).

    Parameters
    ----------
    num_embeddings, embedding_dim : int
        The table's shape ``(N, D)``.
    max_norm : float, optional
        Rows looked up whose ``norm_type``-norm exceeds it are renormalised in place first.
    norm_type : float, default 2.0
        The p of the norm for ``max_norm``.
    scale_grad_by_freq : bool, default False
        Divide each row's gradient by its frequency in the batch.
    mode : {"mean", "sum", "max", "sqrtn", "min"}, default "mean"
        The reduction of each bag (``sqrtn`` and ``min`` are xembed's extensions).
    sparse : bool, default False
        Make the weight gradient a sparse COO tensor.
    _weight : torch.Tensor, optional
        An initial table of shape ``(N, D)`` (torch's private argument).
    include_last_offset : bool, default False
        ``offsets`` ends with the end of the last bag.
    padding_idx : int, optional
        A row left out of every bag and of the mean's divisor.
    device, dtype : optional
        Where and in which floating dtype the table is created.

    Raises
    ------
    ValueError
        A negative size, an unknown ``mode``, a ``padding_idx`` out of range or ``max_norm`` / ``norm_type``
        not > 0.
    TypeError
        A flag that is not a bool, or a ``_weight`` that is not a tensor.

    See Also
    --------
    xembed.embedding_bag : The function it computes.

    Notes
    -----
    TORCH-MODULES; traced under ``torch.compile`` / ``torch.export`` as the ``xembed::`` ops (TORCH-TRACED).

    Examples
    --------
    >>> import torch, xembed.torch as xt
    >>> bag = xt.EmbeddingBag(10, 3, mode="sum")
    >>> bag(torch.tensor([1, 2, 4, 5]), torch.tensor([0, 2])).shape
    torch.Size([2, 3])
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, max_norm: float | None = None,
                 norm_type: float = 2.0, scale_grad_by_freq: bool = False, mode: str = "mean",
                 sparse: bool = False, _weight: Tensor | None = None, include_last_offset: bool = False,
                 padding_idx: int | None = None, device: Any = None, dtype: Any = None) -> None:
        n, d, padding_idx = _check_common(num_embeddings, embedding_dim, padding_idx, max_norm, norm_type,
                                          scale_grad_by_freq, sparse, _weight)
        if not isinstance(mode, str) or mode not in v.MODES:
            msg = f"`mode` must be one of {', '.join(map(repr, v.MODES))}, got {mode!r}"
            raise ValueError(msg)
        v.check_flag("include_last_offset", include_last_offset)
        super().__init__(n, d, max_norm, norm_type, scale_grad_by_freq, mode, sparse, _weight,
                         include_last_offset, padding_idx, device, dtype)

    def forward(self, input: Tensor, offsets: Tensor | None = None,
                per_sample_weights: Tensor | None = None) -> Tensor:
        """Reduce the bags of ``input``.

        Parameters
        ----------
        input : torch.Tensor
            1-D indices with ``offsets``, or 2-D ``(B, L)``: B bags of length L.
        offsets : torch.Tensor, optional
            Start of each bag in a 1-D ``input``.
        per_sample_weights : torch.Tensor, optional
            A weight per index (``sum``, ``mean`` and ``sqrtn``).

        Returns
        -------
        torch.Tensor
            Shape ``(B, D)``.

        Examples
        --------
        >>> import torch, xembed.torch as xt
        >>> xt.EmbeddingBag(5, 2)(torch.tensor([[1, 4], [0, 0]])).shape
        torch.Size([2, 2])
        """
        return embedding_bag(input, self.weight, offsets, self.max_norm, self.norm_type,
                             self.scale_grad_by_freq, self.mode, self.sparse, per_sample_weights,
                             self.include_last_offset, self.padding_idx)

    @classmethod
    def from_pretrained(cls, embeddings: Tensor, freeze: bool = True, max_norm: float | None = None,
                        norm_type: float = 2.0, scale_grad_by_freq: bool = False, mode: str = "mean",
                        sparse: bool = False, include_last_offset: bool = False,
                        padding_idx: int | None = None) -> EmbeddingBag:
        """Wrap a pretrained table, as ``torch.nn.EmbeddingBag.from_pretrained`` does (shared storage).

        Parameters
        ----------
        embeddings : torch.Tensor
            The ``(N, D)`` table.
        freeze : bool, default True
            Keep the table out of autograd.
        max_norm, norm_type, scale_grad_by_freq, mode, sparse, include_last_offset, padding_idx : optional
            As for the constructor.

        Returns
        -------
        EmbeddingBag
            The module over ``embeddings``.

        Examples
        --------
        >>> import torch, xembed.torch as xt
        >>> xt.EmbeddingBag.from_pretrained(torch.eye(3), mode="sum")(torch.tensor([[0, 2]]))
        tensor([[1., 0., 1.]])
        """
        _check_pretrained(embeddings)
        module = super().from_pretrained(embeddings, freeze, max_norm, norm_type, scale_grad_by_freq, mode,
                                         sparse, include_last_offset, padding_idx)
        assert isinstance(module, EmbeddingBag)
        return module
