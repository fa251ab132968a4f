"""``Embedding`` and ``EmbeddingBag``: torch's modules, for any array namespace."""

from __future__ import annotations

import numbers
from typing import Any, SupportsIndex

import array_api_compat
import numpy as np
from array_api_compat import array_namespace, is_torch_namespace

from . import _api
from . import _validate as v
from ._typing import Array, Device, DType, Namespace, Pullback


def _standard_namespace(xp: Namespace | None) -> Namespace:
    """The array API namespace for a library module (numpy, torch, cupy, array_api_strict, ...)."""
    if xp is None:
        import array_api_compat.numpy as np_compat

        return np_compat
    return array_namespace(xp.asarray(0))


def _check_size(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        msg = f"`{name}` must be a non-negative int, got {value!r}"
        raise ValueError(msg)
    return int(value)


def _init_weight(xp: Namespace, shape: tuple[int, int], dtype: DType | None, device: Device | None,
                 seed: int | np.random.Generator | None) -> Array:
    """N(0, 1) init drawn with NumPy's generator (``seed``: int, numpy Generator or None), then moved."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if dtype is None:
        dtype = xp.__array_namespace_info__().default_dtypes(device=device)["real floating"]
    host = rng.standard_normal(shape)
    if dtype != xp.float64:  # the device may have no float64 (array-api-strict's "no_float64", MPS)
        host = host.astype(np.float32)
    return xp.astype(xp.asarray(host, device=device), dtype)


class _Base:
    num_embeddings: int
    embedding_dim: int
    padding_idx: int | None
    freeze: bool
    weight: Array

    def _setup_weight(self, num_embeddings: int, embedding_dim: int, padding_idx: SupportsIndex | None,
                      _weight: Array | None, _freeze: bool, xp: Namespace | None, device: Device | None,
                      dtype: DType | None, seed: int | np.random.Generator | None) -> None:
        self.num_embeddings = _check_size("num_embeddings", num_embeddings)
        self.embedding_dim = _check_size("embedding_dim", embedding_dim)
        self.padding_idx = v.normalize_padding_idx(padding_idx, self.num_embeddings)
        if _weight is None:
            ns = _standard_namespace(xp)
            weight = _init_weight(ns, (self.num_embeddings, self.embedding_dim), dtype, device, seed)
            if self.padding_idx is not None:  # zeroed without item assignment (immutable JAX arrays)
                dev = array_api_compat.device(weight)
                rows = ns.arange(self.num_embeddings, device=dev)[:, None]
                weight = ns.where(rows == self.padding_idx, ns.zeros((), dtype=weight.dtype, device=dev), weight)
        else:
            v.check_is_array("_weight", _weight)
            ns = array_namespace(_weight)
            if tuple(_weight.shape) != (self.num_embeddings, self.embedding_dim):
                msg = (
                    f"`_weight` must have shape {(self.num_embeddings, self.embedding_dim)}, "
                    f"got {tuple(_weight.shape)}"
                )
                raise ValueError(msg)
            weight = _weight
        if is_torch_namespace(ns):
            # Like torch's Parameter: a new leaf sharing the storage.
            weight = weight.detach().requires_grad_(not _freeze)
        self.freeze = bool(_freeze)
        self.weight = weight

    @classmethod
    def _pretrained_args(cls, embeddings: Array) -> tuple[int, int]:
        v.check_is_array("embeddings", embeddings)
        if embeddings.ndim != 2:
            msg = f"`embeddings` must be 2-D, got shape {tuple(embeddings.shape)}"
            raise ValueError(msg)
        return int(embeddings.shape[0]), int(embeddings.shape[1])


class Embedding(_Base):
    """A lookup table: ``Embedding(N, D)(input)`` is ``xembed.embedding(input, weight, ...)``.

    torch.nn.Embedding's arguments, plus keyword-only ``xp`` (the array library or namespace of the new
    weight, default NumPy), ``device``, ``dtype`` (default: the namespace's default floating dtype) and
    ``seed`` (int or ``numpy.random.Generator``) for the N(0, 1) init.  The padding row is zeroed at
    construction.  On torch the weight is a leaf tensor with ``requires_grad = not _freeze``.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: SupportsIndex | None = None,
                 max_norm: float | None = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                 sparse: bool = False, _weight: Array | None = None, _freeze: bool = False, *,
                 xp: Namespace | None = None, device: Device | None = None, dtype: DType | None = None,
                 seed: int | np.random.Generator | None = None) -> None:
        v.check_renorm_args(max_norm, norm_type)
        self.max_norm, self.norm_type = max_norm, norm_type
        self.scale_grad_by_freq, self.sparse = scale_grad_by_freq, sparse
        self._setup_weight(num_embeddings, embedding_dim, padding_idx, _weight, _freeze, xp, device, dtype, seed)

    def _kwargs(self) -> dict[str, Any]:
        return {"padding_idx": self.padding_idx, "max_norm": self.max_norm, "norm_type": self.norm_type,
                "scale_grad_by_freq": self.scale_grad_by_freq, "sparse": self.sparse}

    def __call__(self, input: Array) -> Array:
        return _api.embedding(input, self.weight, **self._kwargs())

    def vjp(self, input: Array) -> tuple[Array, Pullback]:
        """``(output, pullback)``, see :func:`xembed.embedding_vjp`."""
        return _api.embedding_vjp(input, self.weight, **self._kwargs())

    @classmethod
    def from_pretrained(cls, embeddings: Array, freeze: bool = True, padding_idx: SupportsIndex | None = None,
                        max_norm: float | None = None, norm_type: float = 2.0,
                        scale_grad_by_freq: bool = False, sparse: bool = False) -> Embedding:
        """Wrap an existing (N, D) array, sharing its storage; the padding row is not zeroed."""
        n, d = cls._pretrained_args(embeddings)
        return cls(n, d, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse, _weight=embeddings,
                   _freeze=freeze)

    def __repr__(self) -> str:
        return f"Embedding({self.num_embeddings}, {self.embedding_dim}, {self._kwargs()})"


class EmbeddingBag(_Base):
    """Bags of embeddings reduced by sum / mean / max: ``EmbeddingBag(N, D)(input, offsets)``.

    torch.nn.EmbeddingBag's arguments plus keyword-only ``xp``, ``device``, ``dtype``, ``seed`` (see
    :class:`Embedding`).  Extensions (see :func:`xembed.embedding_bag`): ``mode`` may also be ``'sqrtn'`` or
    ``'min'``, ``per_sample_weights`` work with ``'mean'`` (weighted mean) and ``'sqrtn'``, and the forward
    takes keyword-only ``lengths=`` instead of ``offsets``.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, max_norm: float | None = None,
                 norm_type: float = 2.0, scale_grad_by_freq: bool = False, mode: str = "mean",
                 sparse: bool = False, _weight: Array | None = None, include_last_offset: bool = False,
                 padding_idx: SupportsIndex | None = None, *, xp: Namespace | None = None, device: Device | None = None,
                 dtype: DType | None = None, seed: int | np.random.Generator | None = None,
                 _freeze: bool = False) -> None:
        v.check_renorm_args(max_norm, norm_type)
        v.check_mode(mode)
        self.max_norm, self.norm_type, self.mode = max_norm, norm_type, mode
        self.scale_grad_by_freq, self.sparse = scale_grad_by_freq, sparse
        self.include_last_offset = include_last_offset
        self._setup_weight(num_embeddings, embedding_dim, padding_idx, _weight, _freeze, xp, device, dtype, seed)

    def _kwargs(self) -> dict[str, Any]:
        return {"max_norm": self.max_norm, "norm_type": self.norm_type, "scale_grad_by_freq": self.scale_grad_by_freq,
                "mode": self.mode, "sparse": self.sparse, "include_last_offset": self.include_last_offset,
                "padding_idx": self.padding_idx}

    def __call__(self, input: Array, offsets: Array | None = None,
                 per_sample_weights: Array | None = None, *, lengths: Array | None = None) -> Array:
        return _api.embedding_bag(input, self.weight, offsets, per_sample_weights=per_sample_weights,
                                  lengths=lengths, **self._kwargs())

    def vjp(self, input: Array, offsets: Array | None = None, per_sample_weights: Array | None = None, *,
            lengths: Array | None = None) -> tuple[Array, Pullback]:
        """``(output, pullback)``, see :func:`xembed.embedding_bag_vjp`."""
        return _api.embedding_bag_vjp(input, self.weight, offsets, per_sample_weights=per_sample_weights,
                                      lengths=lengths, **self._kwargs())

    @classmethod
    def from_pretrained(cls, embeddings: Array, freeze: bool = True, max_norm: float | None = None,
                        norm_type: float = 2.0, scale_grad_by_freq: bool = False, mode: str = "mean",
                        sparse: bool = False, include_last_offset: bool = False,
                        padding_idx: SupportsIndex | None = None) -> EmbeddingBag:
        """Wrap an existing (N, D) array, sharing its storage; the padding row is not zeroed."""
        n, d = cls._pretrained_args(embeddings)
        return cls(n, d, max_norm, norm_type, scale_grad_by_freq, mode, sparse, _weight=embeddings,
                   include_last_offset=include_last_offset, padding_idx=padding_idx, _freeze=freeze)

    def __repr__(self) -> str:
        return f"EmbeddingBag({self.num_embeddings}, {self.embedding_dim}, {self._kwargs()})"
