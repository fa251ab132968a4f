"""``Embedding`` and ``EmbeddingBag``: torch's modules, for any array namespace.

They hold a weight and the options, and call :func:`xembed.embedding` / :func:`xembed.embedding_bag`.  Besides
the call and ``vjp``, they speak torch's module dialect where serving needs it: ``state_dict`` /
``load_state_dict`` with torch's key (``weight``), ``from_pretrained(..., freeze=...)`` and torch's ``repr``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, SupportsIndex

import array_api_compat
import numpy as np
from array_api_compat import array_namespace, is_jax_namespace, is_torch_namespace

from . import _api
from . import _validate as v
from ._typing import Array, Device, DType, Namespace, Pullback

__all__ = ["Embedding", "EmbeddingBag", "IncompatibleKeys"]


class IncompatibleKeys(NamedTuple):
    """What :meth:`Embedding.load_state_dict` did not match (torch's ``_IncompatibleKeys``).

    Attributes
    ----------
    missing_keys : list of str
        Keys the module expected and the state dict lacked.
    unexpected_keys : list of str
        Keys under the prefix that the module does not have.

    Examples
    --------
    >>> import numpy as np, xembed
    >>> xembed.Embedding(3, 2).load_state_dict({}, strict=False)
    IncompatibleKeys(missing_keys=['weight'], unexpected_keys=[])
    """

    missing_keys: list[str]
    unexpected_keys: list[str]


def _standard_namespace(xp: Namespace | None) -> Namespace:
    """The array API namespace for a library module (numpy, torch, cupy, array_api_strict, ...)."""
    if xp is None:
        import array_api_compat.numpy as np_compat

        return np_compat
    return array_namespace(xp.asarray(0))


def _init_weight(xp: Namespace, shape: tuple[int, int], dtype: DType | None, device: Device | None,
                 seed: int | np.random.Generator | None) -> Array:
    """N(0, 1) init drawn with NumPy's generator (``seed``: int, numpy Generator or None), then moved.

    The default dtype is float32 in every namespace, as in torch (MOD-DTYPE): a table trained in torch is
    served in the dtype it was trained in, and NumPy's float64 would double the memory of every lookup.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if dtype is None:
        dtype = xp.float32
    host = rng.standard_normal(shape)
    if dtype != xp.float64:  # the device may have no float64 (array-api-strict's "no_float64", MPS)
        host = host.astype(np.float32)
    return xp.astype(xp.asarray(host, device=device), dtype)


def _to_host(name: str, value: Any) -> np.ndarray:
    """A NumPy copy of a checkpoint value: a NumPy / torch / CuPy / JAX array (torch itself is not imported)."""
    if type(value).__module__.startswith("torch"):
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":  # NumPy has no bfloat16: float32 holds it exactly
            value = value.float()
        return value.numpy()
    if type(value).__module__.startswith("cupy"):
        return value.get()
    try:
        host = np.asarray(value)
    except (TypeError, ValueError) as e:
        msg = f"`{name}` must be an array, got {type(value).__name__}"
        raise TypeError(msg) from e
    if host.dtype == object:
        msg = f"`{name}` must be an array, got {type(value).__name__}"
        raise TypeError(msg)
    return host


class _Base:
    num_embeddings: int
    embedding_dim: int
    padding_idx: int | None
    freeze: bool
    weight: Array

    def _setup_weight(self, num_embeddings: int, embedding_dim: int, padding_idx: SupportsIndex | None,
                      _weight: Array | None, _freeze: bool, xp: Namespace | None, device: Device | None,
                      dtype: DType | None, seed: int | np.random.Generator | None) -> None:
        self.num_embeddings = v.check_size("num_embeddings", num_embeddings)
        self.embedding_dim = v.check_size("embedding_dim", embedding_dim)
        self.padding_idx = v.normalize_padding_idx(padding_idx, self.num_embeddings)
        self.freeze = bool(_freeze)
        if _weight is None:
            ns = _standard_namespace(xp)
            weight = _init_weight(ns, (self.num_embeddings, self.embedding_dim), dtype, device, seed)
            if self.padding_idx is not None:  # zeroed without item assignment (immutable JAX arrays)
                dev = array_api_compat.device(weight)
                rows = ns.arange(self.num_embeddings, device=dev)[:, None]
                weight = ns.where(rows == self.padding_idx, ns.zeros((), dtype=weight.dtype, device=dev), weight)
            self._set_weight(weight)
        else:
            v.check_is_array("_weight", _weight)
            self._check_shape("_weight", _weight)
            self._set_weight(_weight)

    def _set_weight(self, weight: Array) -> None:
        if is_torch_namespace(array_namespace(weight)):
            # Like torch's Parameter: a new leaf sharing the storage, trainable unless frozen (MOD-FREEZE).
            weight = weight.detach().requires_grad_(not self.freeze)
        self.weight = weight

    def _check_shape(self, name: str, weight: Array) -> None:
        expected = (self.num_embeddings, self.embedding_dim)
        if tuple(weight.shape) != expected:
            msg = f"`{name}` must have shape {expected}, got {tuple(weight.shape)}"
            raise ValueError(msg)

    @classmethod
    def _pretrained_args(cls, embeddings: Array) -> tuple[int, int]:
        v.check_is_array("embeddings", embeddings)
        if embeddings.ndim != 2:
            msg = f"`embeddings` must be 2-D, got shape {tuple(embeddings.shape)}"
            raise ValueError(msg)
        return int(embeddings.shape[0]), int(embeddings.shape[1])

    def state_dict(self, *, prefix: str = "") -> dict[str, Array]:
        """The module's state under torch's key: ``{prefix + "weight": weight}``.

        Parameters
        ----------
        prefix : str, optional
            Prepended to the key, as torch does for a submodule (``"embedding."``).

        Returns
        -------
        dict
            One entry, the weight itself (not a copy; detached on torch, as torch's ``state_dict``).

        See Also
        --------
        load_state_dict : The inverse.

        Notes
        -----
        The key is torch's (MOD-STATE-DICT): ``np.savez(path, **module.state_dict())`` writes a file that
        ``torch.nn.Embedding.load_state_dict`` reads back after ``torch.from_numpy``, and the other way round.

        Examples
        --------
        >>> import numpy as np, xembed
        >>> emb = xembed.Embedding(3, 2, seed=0)
        >>> sorted(emb.state_dict(prefix="embedding."))
        ['embedding.weight']
        """
        weight = self.weight.detach() if is_torch_namespace(array_namespace(self.weight)) else self.weight
        return {prefix + "weight": weight}

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, *,
                        prefix: str = "") -> IncompatibleKeys:
        """Replace the weight with the one in ``state_dict`` (torch's keys), e.g. from a torch checkpoint.

        Parameters
        ----------
        state_dict : Mapping of str to array
            A dict of arrays, ``numpy.load("model.npz")``, ``safetensors.numpy.load_file(...)`` or a torch
            ``state_dict()``.  Values may be NumPy, torch, CuPy or JAX arrays of any float dtype.
        strict : bool, optional
            When True (the default), a missing ``weight`` or another key under ``prefix`` is an error.
        prefix : str, optional
            Only keys starting with it are read (a submodule of a bigger model: ``"embedding."``).

        Returns
        -------
        IncompatibleKeys
            The missing and unexpected keys (both empty when ``strict`` is True).

        Raises
        ------
        KeyError
            ``strict`` and the keys are not exactly ``prefix + "weight"``.
        ValueError
            The weight's shape is not ``(num_embeddings, embedding_dim)``.
        TypeError
            ``state_dict`` is not a mapping, or the weight is not a real floating array.

        See Also
        --------
        state_dict : The inverse.

        Notes
        -----
        The values are converted to the module's dtype and written into the existing weight, as torch's
        default ``assign=False`` does: an optimizer holding the weight, or the array ``from_pretrained``
        wrapped, sees them.  Arrays that cannot be written (JAX, a read-only NumPy array) are replaced by a new
        one.  Nothing is modified when an error is raised (MOD-STATE-DICT).

        Examples
        --------
        >>> import numpy as np, xembed
        >>> emb = xembed.Embedding(3, 2)
        >>> checkpoint = {"embedding.weight": np.arange(6.0).reshape(3, 2), "fc.bias": np.zeros(4)}
        >>> emb.load_state_dict(checkpoint, prefix="embedding.")
        IncompatibleKeys(missing_keys=[], unexpected_keys=[])
        >>> emb.weight
        array([[0., 1.],
               [2., 3.],
               [4., 5.]], dtype=float32)
        """
        if not isinstance(state_dict, Mapping):
            msg = f"`state_dict` must be a mapping of names to arrays, got {type(state_dict).__name__}"
            raise TypeError(msg)
        key = prefix + "weight"
        mine = [k for k in state_dict if isinstance(k, str) and k.startswith(prefix)]
        result = IncompatibleKeys([] if key in mine else [key], [k for k in mine if k != key])
        if strict and (result.missing_keys or result.unexpected_keys):
            msg = (f"`state_dict` does not match the module: missing keys {result.missing_keys}, "
                   f"unexpected keys {result.unexpected_keys}")
            raise KeyError(msg)
        if key in mine:
            self._copy_into_weight(self._converted(f"state_dict[{key!r}]", state_dict[key]))
        return result

    def _copy_into_weight(self, new: Array) -> None:
        """Write ``new`` into the weight's storage, as torch's ``load_state_dict`` does, so that an optimizer
        holding the weight, or the array ``from_pretrained`` wrapped, sees the loaded values; an array that cannot
        be written (JAX, a read-only NumPy array) is replaced instead."""
        ns = array_namespace(self.weight)
        if is_torch_namespace(ns):
            self.weight.detach().copy_(new)  # the detached view shares the storage, outside autograd
        elif is_jax_namespace(ns) or (isinstance(self.weight, np.ndarray) and not self.weight.flags.writeable):
            self._set_weight(new)
        else:
            self.weight[...] = new

    def _converted(self, name: str, value: Any) -> Array:
        """``value`` checked, as a new array of the weight's namespace, device and dtype."""
        host = _to_host(name, value)
        if host.dtype.kind != "f":
            msg = f"`{name}` must have a real floating dtype, got {host.dtype}"
            raise TypeError(msg)
        self._check_shape(name, host)
        ns = array_namespace(self.weight)
        new = ns.asarray(host, device=array_api_compat.device(self.weight), copy=True)
        return ns.astype(new, self.weight.dtype)

    def _frozen(self, pullback: Pullback) -> Pullback:
        """With ``freeze``, the weight takes no gradient (MOD-FREEZE), as torch leaves ``weight.grad`` None."""
        if not self.freeze:
            return pullback
        if isinstance(self, EmbeddingBag):
            return lambda grad_output: (None, pullback(grad_output)[1])
        return lambda grad_output: None  # noqa: ARG005

    def _repr_options(self) -> list[str]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(self._repr_options())})"


class Embedding(_Base):
    """A lookup table: ``Embedding(N, D)(input)`` is ``xembed.embedding(input, weight, ...)``.

    Parameters
    ----------
    num_embeddings : int
        Number of rows N of the table.
    embedding_dim : int
        Size D of each row.
    padding_idx : int, optional
        Row whose gradient is always zero; negative values count from the end.  It is zeroed at
        construction (not by ``from_pretrained``).
    max_norm : float, optional
        Rows looked up whose norm exceeds it are renormalised, in place where the array allows it.
    norm_type : float, optional
        The p of the p-norm for ``max_norm`` (default 2).
    scale_grad_by_freq : bool, optional
        Divide each row's gradient by its index's frequency in the input.
    sparse : bool, optional
        ``vjp`` returns a :class:`xembed.SparseGrad` (a sparse COO gradient under torch autograd).
    _weight : array, optional
        Use this (N, D) array as the weight instead of a new one (shares its storage).
    _freeze : bool, optional
        The weight takes no gradient (``from_pretrained``'s ``freeze``).
    xp : module or namespace, optional
        Array library of a new weight (``numpy``, ``torch``, ``jax.numpy``, ...); default NumPy.
    device : device, optional
        Device of a new weight.
    dtype : dtype, optional
        The dtype of a new weight; default float32, as torch.
    seed : int or numpy.random.Generator, optional
        Seed of the N(0, 1) initialisation.

    Attributes
    ----------
    weight : array
        The (N, D) table; on torch a leaf tensor with ``requires_grad = not freeze``.
    freeze : bool
        True when the weight takes no gradient.

    See Also
    --------
    xembed.embedding : The function the module calls.
    xembed.torch.Embedding : A ``torch.nn.Embedding`` subclass, for torch models.

    Notes
    -----
    torch.nn.Embedding's arguments, in its order; the keyword-only ``xp``, ``device``, ``dtype`` and ``seed``
    choose the new weight.  The default dtype is float32 in every namespace (MOD-DTYPE).  The module is not a
    torch module: on torch tensors it is a thin holder around the autograd-aware functions.

    Examples
    --------
    >>> import numpy as np, xembed
    >>> emb = xembed.Embedding(10, 3, padding_idx=0, seed=0)
    >>> emb
    Embedding(10, 3, padding_idx=0)
    >>> emb(np.array([[0, 2], [4, 4]])).shape
    (2, 2, 3)
    >>> emb.weight.dtype
    dtype('float32')
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: SupportsIndex | None = None,
                 max_norm: float | None = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                 sparse: bool = False, _weight: Array | None = None, _freeze: bool = False, *,
                 xp: Namespace | None = None, device: Device | None = None, dtype: DType | None = None,
                 seed: int | np.random.Generator | None = None) -> None:
        """Build the table; the parameters are described in the class docstring."""
        v.check_renorm_args(max_norm, norm_type)
        self.max_norm, self.norm_type = max_norm, norm_type
        self.scale_grad_by_freq, self.sparse = scale_grad_by_freq, sparse
        self._setup_weight(num_embeddings, embedding_dim, padding_idx, _weight, _freeze, xp, device, dtype, seed)

    def _kwargs(self) -> dict[str, Any]:
        return {"padding_idx": self.padding_idx, "max_norm": self.max_norm, "norm_type": self.norm_type,
                "scale_grad_by_freq": self.scale_grad_by_freq, "sparse": self.sparse}

    def __call__(self, input: Array) -> Array:
        """Look up ``input``: :func:`xembed.embedding` with the module's weight and options.

        Parameters
        ----------
        input : array of int
            Indices of any shape.

        Returns
        -------
        array
            Shape ``input.shape + (D,)``.

        Examples
        --------
        >>> import numpy as np, xembed
        >>> xembed.Embedding(10, 3)(np.array([[1, 2], [3, 4]])).shape
        (2, 2, 3)
        """
        return _api.embedding(input, self.weight, **self._kwargs())

    def vjp(self, input: Array) -> tuple[Array, Pullback]:
        """The output and its pullback, as :func:`xembed.embedding_vjp`.

        Parameters
        ----------
        input : array of int
            Indices of any shape.

        Returns
        -------
        output : array
            Shape ``input.shape + (D,)``.
        pullback : callable
            ``pullback(grad_output)`` is the weight gradient; None when the module is frozen (MOD-FREEZE).

        Examples
        --------
        >>> import numpy as np, xembed
        >>> emb = xembed.Embedding(4, 2, seed=0)
        >>> out, pullback = emb.vjp(np.array([1, 1, 3]))
        >>> pullback(np.ones_like(out))[:, 0]
        array([0., 2., 0., 1.], dtype=float32)
        """
        out, pullback = _api.embedding_vjp(input, self.weight, **self._kwargs())
        return out, self._frozen(pullback)

    @classmethod
    def from_pretrained(cls, embeddings: Array, freeze: bool = True, padding_idx: SupportsIndex | None = None,
                        max_norm: float | None = None, norm_type: float = 2.0,
                        scale_grad_by_freq: bool = False, sparse: bool = False) -> Embedding:
        """A module around an existing (N, D) array, sharing its storage.

        Parameters
        ----------
        embeddings : array
            The (N, D) table, of any namespace; not copied, and its padding row is not zeroed.
        freeze : bool, optional
            True (the default, as torch): the weight takes no gradient (MOD-FREEZE).
        padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse : optional
            As in the constructor.

        Returns
        -------
        Embedding
            The module.

        Raises
        ------
        ValueError
            ``embeddings`` is not 2-D.
        TypeError
            ``embeddings`` is not an array.

        Examples
        --------
        >>> import numpy as np, xembed
        >>> emb = xembed.Embedding.from_pretrained(np.eye(3, dtype=np.float32))
        >>> emb(np.array([2]))
        array([[0., 0., 1.]], dtype=float32)
        """
        n, d = cls._pretrained_args(embeddings)
        return cls(n, d, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse, _weight=embeddings,
                   _freeze=freeze)

    def _repr_options(self) -> list[str]:
        """torch.nn.Embedding's ``extra_repr`` (MOD-REPR)."""
        s = [str(self.num_embeddings), str(self.embedding_dim)]
        if self.padding_idx is not None:
            s.append(f"padding_idx={self.padding_idx}")
        if self.max_norm is not None:
            s.append(f"max_norm={self.max_norm}")
        if self.norm_type != 2:
            s.append(f"norm_type={self.norm_type}")
        if self.scale_grad_by_freq:
            s.append(f"scale_grad_by_freq={self.scale_grad_by_freq}")
        if self.sparse:
            s.append("sparse=True")
        return s


class EmbeddingBag(_Base):
    """Bags of embeddings reduced without materialising the lookup: ``EmbeddingBag(N, D)(input, offsets)``.

    Parameters
    ----------
    num_embeddings, embedding_dim : int
        The shape (N, D) of the table.
    max_norm, norm_type, scale_grad_by_freq : optional
        As in :class:`Embedding`.
    mode : {'mean', 'sum', 'max', 'sqrtn', 'min'}, optional
        The reduction of each bag; ``'sqrtn'`` and ``'min'`` are extensions beyond torch.
    sparse : bool, optional
        ``vjp`` returns a :class:`xembed.SparseGrad` weight gradient.
    _weight : array, optional
        Use this (N, D) array as the weight instead of a new one (shares its storage).
    include_last_offset : bool, optional
        The last entry of ``offsets`` is the end of the last bag.
    padding_idx : int, optional
        Row left out of every bag; negative values count from the end.  Zeroed at construction.
    xp, device, dtype, seed, _freeze : optional
        As in :class:`Embedding`: the library, device, dtype (default float32) and seed of a new weight, and
        whether the weight takes no gradient.

    Attributes
    ----------
    weight, freeze
        As in :class:`Embedding`.

    See Also
    --------
    xembed.embedding_bag : The function the module calls.
    xembed.torch.EmbeddingBag : A ``torch.nn.EmbeddingBag`` subclass, for torch models.

    Notes
    -----
    torch.nn.EmbeddingBag's arguments, in its order, plus the keyword-only ``xp``, ``device``, ``dtype`` and
    ``seed``.  The extensions of :func:`xembed.embedding_bag` (EXT-MODES, EXT-WMEAN, EXT-LENGTHS) are
    available: ``mode='sqrtn'`` / ``'min'``, ``per_sample_weights`` with ``'mean'`` and ``'sqrtn'``, and
    ``lengths=`` instead of ``offsets``.

    Examples
    --------
    >>> import numpy as np, xembed
    >>> bag = xembed.EmbeddingBag(10, 3, mode="sum", seed=0)
    >>> bag
    EmbeddingBag(10, 3, mode='sum')
    >>> bag(np.array([1, 2, 4, 5, 4]), np.array([0, 2])).shape
    (2, 3)
    >>> bag(np.array([1, 2, 4, 5, 4]), lengths=np.array([2, 3])).shape
    (2, 3)
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, max_norm: float | None = None,
                 norm_type: float = 2.0, scale_grad_by_freq: bool = False, mode: str = "mean",
                 sparse: bool = False, _weight: Array | None = None, include_last_offset: bool = False,
                 padding_idx: SupportsIndex | None = None, *, xp: Namespace | None = None, device: Device | None = None,
                 dtype: DType | None = None, seed: int | np.random.Generator | None = None,
                 _freeze: bool = False) -> None:
        """Build the table; the parameters are described in the class docstring."""
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
        """Reduce the bags: :func:`xembed.embedding_bag` with the module's weight and options.

        Parameters
        ----------
        input : array of int
            (B, L) bags, or 1-D with ``offsets`` or ``lengths``.
        offsets : array of int, optional
            Start of each bag of a 1-D ``input``.
        per_sample_weights : array, optional
            One weight per position of ``input``.
        lengths : array of int, optional
            Length of each bag of a 1-D ``input``, instead of ``offsets``.

        Returns
        -------
        array
            Shape (B, D).

        Examples
        --------
        >>> import numpy as np, xembed
        >>> bag = xembed.EmbeddingBag.from_pretrained(np.eye(3, dtype=np.float32), mode="sum")
        >>> bag(np.array([0, 1, 1, 2]), lengths=np.array([3, 1]))
        array([[1., 2., 0.],
               [0., 0., 1.]], dtype=float32)
        """
        return _api.embedding_bag(input, self.weight, offsets, per_sample_weights=per_sample_weights,
                                  lengths=lengths, **self._kwargs())

    def vjp(self, input: Array, offsets: Array | None = None, per_sample_weights: Array | None = None, *,
            lengths: Array | None = None) -> tuple[Array, Pullback]:
        """The output and its pullback, as :func:`xembed.embedding_bag_vjp`.

        Parameters
        ----------
        input : array of int
            The bags, as in :meth:`__call__`.
        offsets, per_sample_weights, lengths : array, optional
            As in :meth:`__call__`.

        Returns
        -------
        output : array
            Shape (B, D).
        pullback : callable
            ``pullback(grad_output)`` is ``(grad_weight, grad_per_sample_weights)``; ``grad_weight`` is None
            when the module is frozen (MOD-FREEZE), ``grad_per_sample_weights`` None without weights.

        Examples
        --------
        >>> import numpy as np, xembed
        >>> bag = xembed.EmbeddingBag.from_pretrained(np.ones((4, 2), dtype=np.float32), mode="sum")
        >>> out, pullback = bag.vjp(np.array([[1, 2]]), per_sample_weights=np.array([[0.5, 2.0]], np.float32))
        >>> pullback(np.ones_like(out))
        (None, array([[2., 2.]], dtype=float32))
        """
        out, pullback = _api.embedding_bag_vjp(input, self.weight, offsets, per_sample_weights=per_sample_weights,
                                               lengths=lengths, **self._kwargs())
        return out, self._frozen(pullback)

    @classmethod
    def from_pretrained(cls, embeddings: Array, freeze: bool = True, max_norm: float | None = None,
                        norm_type: float = 2.0, scale_grad_by_freq: bool = False, mode: str = "mean",
                        sparse: bool = False, include_last_offset: bool = False,
                        padding_idx: SupportsIndex | None = None) -> EmbeddingBag:
        """A module around an existing (N, D) array, sharing its storage.

        Parameters
        ----------
        embeddings : array
            The (N, D) table, of any namespace; not copied, and its padding row is not zeroed.
        freeze : bool, optional
            True (the default, as torch): the weight takes no gradient (MOD-FREEZE).
        max_norm, norm_type, scale_grad_by_freq, mode, sparse, include_last_offset, padding_idx : optional
            As in the constructor.

        Returns
        -------
        EmbeddingBag
            The module.

        Raises
        ------
        ValueError
            ``embeddings`` is not 2-D, or an option is invalid.
        TypeError
            ``embeddings`` is not an array.

        Examples
        --------
        >>> import numpy as np, xembed
        >>> bag = xembed.EmbeddingBag.from_pretrained(np.eye(3, dtype=np.float32), mode="max")
        >>> bag(np.array([[0, 2]]))
        array([[1., 0., 1.]], dtype=float32)
        """
        n, d = cls._pretrained_args(embeddings)
        return cls(n, d, max_norm, norm_type, scale_grad_by_freq, mode, sparse, _weight=embeddings,
                   include_last_offset=include_last_offset, padding_idx=padding_idx, _freeze=freeze)

    def _repr_options(self) -> list[str]:
        """torch.nn.EmbeddingBag's ``extra_repr``, plus the two options torch's leaves out (MOD-REPR)."""
        s = [str(self.num_embeddings), str(self.embedding_dim)]
        if self.max_norm is not None:
            s.append(f"max_norm={self.max_norm!r}")
        if self.norm_type != 2:
            s.append(f"norm_type={self.norm_type!r}")
        if self.scale_grad_by_freq:
            s.append(f"scale_grad_by_freq={self.scale_grad_by_freq!r}")
        s.append(f"mode={self.mode!r}")
        if self.padding_idx is not None:
            s.append(f"padding_idx={self.padding_idx!r}")
        if self.sparse:
            s.append("sparse=True")
        if self.include_last_offset:
            s.append("include_last_offset=True")
        return s
