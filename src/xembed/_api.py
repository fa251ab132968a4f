"""Public functions: docstrings, the arguments' checks, then the backend adapter of their namespace (:mod:`._backends`);
the semantics live in :mod:`._core`."""

from __future__ import annotations

from typing import Any, SupportsIndex

from . import _backends as backends
from . import _primitives as prim
from . import _quantized
from . import _validate as v
from ._traced_checks import jit_value_checks
from ._typing import Array, Namespace, Pullback

__all__ = ["embedding", "embedding_bag", "embedding_bag_vjp", "embedding_vjp", "jit_value_checks", "renorm"]


_COMMON_DOC = """Arrays of any array API library are accepted (NumPy, CuPy, torch, JAX, Dask, array-api-strict); the
    output is an array of the weight's library, device and dtype.  The semantics are
    ``torch.nn.functional``'s (torch 2.14 or newer, REF-TORCH-VERSION), with the specification's choices where
    torch's behaviour is undefined.  With ``max_norm``, the referenced rows of a mutable ``weight`` (NumPy,
    CuPy, torch) are renormalised in place, as torch does (RENORM-INPLACE), only after every check passed:
    a call that raises never modifies ``weight`` (ERR-ATOMIC).  JAX and Dask arrays cannot be changed in
    place: the call reads renormed rows and ``weight`` is left as it is (RENORM-FUNCTIONAL, DASK-RENORM).
    On torch tensors whose weight (or per_sample_weights) requires grad, the result is connected to
    autograd (TORCH-AUTOGRAD)."""


def _snapshot(x: Array | None, xp: Namespace) -> Array | None:
    """PULLBACK-SNAPSHOT: a private copy of an argument the pullback reads, so that a caller reusing the
    buffer after the forward (a data loader refilling its index array) changes neither the gradient nor
    what reaches the kernels."""
    return None if x is None else xp.asarray(x, copy=True)


def _embedding(input: Array, weight: Array, padding_idx: Any, max_norm: Any, norm_type: Any,
               scale_grad_by_freq: Any, sparse: Any, xp: Namespace | None, want_vjp: bool) -> Any:
    if isinstance(weight, _quantized.QuantizedTable):  # QUANT-FORWARD
        return _quantized.embedding(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse,
                                    xp, want_vjp)
    out = backends.early_embedding(xp, want_vjp, (input, weight, padding_idx, max_norm, norm_type,
                                                  scale_grad_by_freq, sparse))
    if out is not backends.NOT_TAKEN:
        return out
    ns, (input, weight) = backends.resolve(xp, input=input, weight=weight)
    # every check, metadata first, values last (ERR-*), before anything is modified
    options = v.check_embedding_metadata(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq,
                                         sparse, ns)  # (padding_idx, max_norm, norm_type, sgbf, sparse), checked
    input, plain_weight = prim.plain("input", input, xp=ns), prim.plain("weight", weight, xp=ns)
    if want_vjp:
        input = _snapshot(input, ns)
    call = backends.Lookup(input, weight, plain_weight, *options, want_vjp)
    return backends.adapter_for(ns).embedding(ns, call)


def embedding(input: Array, weight: Array, padding_idx: SupportsIndex | None = None, max_norm: float | None = None,
              norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False, *,
              xp: Namespace | None = None) -> Array:
    """Look up rows of ``weight``: ``out[..., :] = weight[input[...], :]``.

    Parameters
    ----------
    input : array of int
        Indices into the rows of ``weight``, of any shape (0-d and empty included) and any integer dtype.
    weight : array, shape (N, D)
        The table, of a real floating dtype (float16, bfloat16, float32, float64).
    padding_idx : int, optional
        A row whose gradient is always zero; negative values count from the end.  The row itself is
        returned as stored.
    max_norm : float, optional
        Referenced rows whose ``norm_type``-norm exceeds it are renormalised to ``max_norm`` before the
        lookup (see Notes).
    norm_type : float, optional
        The p of the p-norm for ``max_norm``; ``inf`` allowed (default 2).
    scale_grad_by_freq : bool, optional
        Divide each row's gradient by the frequency of its index in ``input``.
    sparse : bool, optional
        The weight gradient is a :class:`xembed.SparseGrad` (a sparse COO tensor under torch autograd).
    xp : module or namespace, optional
        The array namespace; inferred from the arrays when None.

    Returns
    -------
    array
        Shape ``input.shape + (D,)``, the weight's dtype, library and device.

    Raises
    ------
    IndexError
        An index outside ``[0, N)``; the message shows the value and its position.
    TypeError
        ``input`` is not an integer array, ``weight`` not real floating, or the arrays come from
        different libraries.
    ValueError
        ``weight`` is not 2-D, ``padding_idx`` out of range, ``max_norm`` or ``norm_type`` not > 0,
        ``sparse`` with ``scale_grad_by_freq``, or the arrays are on different devices.

    See Also
    --------
    embedding_vjp : The same lookup with its pullback.
    Embedding : A module holding the table.

    Notes
    -----
    Rules of the specification: EMB-SHAPE, EMB-LOOKUP, EMB-PAD-VALUE, PAD-NEGATIVE, PAD-RANGE, ``RENORM-*``,
    GRAD-EMB, GRAD-PAD, GRAD-SGBF, GRAD-SPARSE, ERR-INDEX-RANGE, ERR-INDEX-DTYPE, ERR-WEIGHT,
    ERR-SPARSE-SGBF, ERR-NAMESPACE.

    %(common)s

    Examples
    --------
    >>> import numpy as np, xembed
    >>> W = np.arange(12, dtype=np.float32).reshape(6, 2)
    >>> xembed.embedding(np.array([[0, 5], [2, 2]]), W)
    array([[[ 0.,  1.],
            [10., 11.]],
    <BLANKLINE>
           [[ 4.,  5.],
            [ 4.,  5.]]], dtype=float32)
    """
    return _embedding(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse, xp, False)


def embedding_vjp(input: Array, weight: Array, padding_idx: SupportsIndex | None = None, max_norm: float | None = None,
                  norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False, *,
                  xp: Namespace | None = None) -> tuple[Array, Pullback]:
    """:func:`embedding` and its pullback, for gradients without an autodiff framework.

    Parameters
    ----------
    input, weight : array
        The indices and the (N, D) table, as in :func:`embedding`.
    padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse, xp : optional
        As in :func:`embedding`.

    Returns
    -------
    output : array
        What :func:`embedding` returns.
    pullback : callable
        ``pullback(grad_output)`` returns the weight gradient: a dense (N, D) array of the weight's
        library, device and dtype, or with ``sparse=True`` a :class:`xembed.SparseGrad`.

    Raises
    ------
    IndexError, TypeError, ValueError
        As :func:`embedding`.

    See Also
    --------
    embedding : The forward alone.
    embedding_bag_vjp : The same for bags.

    Notes
    -----
    Rules: GRAD-EMB, GRAD-PAD, GRAD-SGBF, GRAD-SPARSE, GRAD-ACC (float16 / bfloat16 gradients accumulate in
    float32).  On torch tensors the pullback is computed without autograd; on JAX arrays ``jax.vjp`` gives
    the same gradient (JAX-AUTODIFF).  The pullback keeps a copy of ``input``: refilling that buffer after the
    call changes nothing (PULLBACK-SNAPSHOT).

    Examples
    --------
    >>> import numpy as np, xembed
    >>> W = np.arange(12, dtype=np.float32).reshape(6, 2)
    >>> out, pullback = xembed.embedding_vjp(np.array([1, 3, 1]), W, padding_idx=3)
    >>> pullback(np.ones_like(out))[:4]
    array([[0., 0.],
           [2., 2.],
           [0., 0.],
           [0., 0.]], dtype=float32)
    """
    return _embedding(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse, xp, True)


def _embedding_bag(input: Array, weight: Array, offsets: Array | None, max_norm: Any, norm_type: Any,
                   scale_grad_by_freq: Any, mode: Any, sparse: Any, per_sample_weights: Array | None,
                   include_last_offset: Any, padding_idx: Any, xp: Namespace | None, want_vjp: bool,
                   lengths: Array | None = None) -> Any:
    positional = (input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, mode, sparse, per_sample_weights,
                  include_last_offset, padding_idx)
    if isinstance(weight, _quantized.QuantizedTable):  # QUANT-FORWARD
        return _quantized.embedding_bag(*positional, xp, want_vjp, lengths)
    out = backends.early_embedding_bag(xp, want_vjp, positional, lengths)
    if out is not backends.NOT_TAKEN:
        return out
    ns, (input, weight, offsets, per_sample_weights, lengths) = backends.resolve(
        xp, input=input, weight=weight, offsets=offsets, per_sample_weights=per_sample_weights, lengths=lengths)
    input, plain_weight, offsets, lengths, per_sample_weights = (
        prim.plain(name, x, xp=ns) for name, x in (("input", input), ("weight", weight), ("offsets", offsets),
                                                   ("lengths", lengths), ("per_sample_weights", per_sample_weights)))
    args = v.check_bag_metadata(input, plain_weight, offsets, per_sample_weights, mode, max_norm, norm_type,
                                scale_grad_by_freq, sparse, include_last_offset, padding_idx, ns, lengths=lengths)
    if want_vjp:
        input, offsets, lengths, per_sample_weights = (_snapshot(x, ns) for x in
                                                       (input, offsets, lengths, per_sample_weights))
    call = backends.Bag(input, weight, plain_weight, offsets, lengths, per_sample_weights, args, want_vjp)
    return backends.adapter_for(ns).embedding_bag(ns, call)


def embedding_bag(input: Array, weight: Array, offsets: Array | None = None, max_norm: float | None = None,
                  norm_type: float = 2, scale_grad_by_freq: bool = False, mode: str = "mean",
                  sparse: bool = False, per_sample_weights: Array | None = None,
                  include_last_offset: bool = False, padding_idx: SupportsIndex | None = None, *,
                  lengths: Array | None = None, xp: Namespace | None = None) -> Array:
    """Reduce bags of rows of ``weight`` (sum, mean, max, ...) without materialising the lookup.

    Parameters
    ----------
    input : array of int
        Either 2-D (B, L): B bags of L indices each; or 1-D, the bags one after the other, delimited by
        ``offsets`` or ``lengths``.  Any integer dtype.
    weight : array, shape (N, D)
        The table, of a real floating dtype.
    offsets : array of int, optional
        For a 1-D ``input``: the position where each bag starts (non-decreasing, starting at 0).  None for a
        2-D ``input``.
    max_norm : float, optional
        Referenced rows whose ``norm_type``-norm exceeds it are renormalised to ``max_norm`` first (see
        Notes).
    norm_type : float, optional
        The p of the p-norm for ``max_norm`` (default 2).
    scale_grad_by_freq : bool, optional
        Divide each row's gradient by the frequency of its index in the whole input.
    mode : {'mean', 'sum', 'max', 'sqrtn', 'min'}, optional
        The reduction.  ``'max'`` and ``'min'`` are per feature, ties to the first occurrence; ``'sqrtn'``
        is ``sum(w_i * W[idx_i]) / sqrt(sum(w_i**2))``.  ``'sqrtn'`` and ``'min'`` are extensions beyond
        torch.
    sparse : bool, optional
        The weight gradient is a :class:`xembed.SparseGrad`.
    per_sample_weights : array, optional
        One weight per position of ``input`` (same shape, the weight's dtype), with ``'sum'``; with
        ``'mean'`` it gives the weighted mean ``sum(w_i * W[idx_i]) / sum(w_i)`` and with ``'sqrtn'`` the
        formula above (extensions beyond torch).
    include_last_offset : bool, optional
        The last entry of ``offsets`` is the end of the last bag; it must equal ``len(input)``.
    padding_idx : int, optional
        A row left out of every bag and of the mean's divisor; negative values count from the end.
    lengths : array of int, optional
        Keyword-only, for a 1-D ``input``: the length of each bag, instead of ``offsets`` (an extension
        beyond torch); ``sum(lengths)`` must equal ``len(input)``.
    xp : module or namespace, optional
        The array namespace; inferred from the arrays when None.

    Returns
    -------
    array
        Shape (B, D), the weight's dtype, library and device.  Empty and all-padding bags give zeros.

    Raises
    ------
    IndexError
        An index outside ``[0, N)``; the message shows the value and its position.
    ValueError
        Invalid ``offsets`` / ``lengths`` (first offset not 0, decreasing, past the end), a bad shape or
        ``mode``, ``max`` / ``min`` with ``sparse`` or ``scale_grad_by_freq``, or arrays on different devices.
    TypeError
        A non-integer ``input`` / ``offsets`` / ``lengths``, ``per_sample_weights`` of another dtype than
        ``weight``, or arrays from different libraries.
    NotImplementedError
        ``per_sample_weights`` with ``'max'`` or ``'min'``.

    See Also
    --------
    embedding_bag_vjp : The same reduction with its pullback.
    EmbeddingBag : A module holding the table.

    Notes
    -----
    Rules of the specification: BAG-LAYOUT-2D, BAG-LAYOUT-1D, BAG-LAST-OFFSET, BAG-SUM, BAG-MEAN,
    BAG-MEAN-PAD, BAG-PAD, BAG-MAX, BAG-MAX-TIES, BAG-EMPTY, BAG-PSW, BAG-INDEX-DTYPES, ``ERR-OFFSETS-*``,
    ERR-PSW, ERR-MODE, ERR-MAX-SPARSE; the extensions EXT-SQRTN, EXT-MIN, EXT-WMEAN, EXT-LENGTHS.

    %(common)s

    Examples
    --------
    >>> import numpy as np, xembed
    >>> W = np.arange(12, dtype=np.float32).reshape(6, 2)
    >>> xembed.embedding_bag(np.array([0, 2, 4, 5, 1]), W, np.array([0, 2]), mode="sum")
    array([[ 4.,  6.],
           [20., 23.]], dtype=float32)
    >>> xembed.embedding_bag(np.array([[0, 2], [4, 5]]), W, mode="max")
    array([[ 4.,  5.],
           [10., 11.]], dtype=float32)

    Ragged bags by their lengths; the padding row 5 is left out of the mean:

    >>> xembed.embedding_bag(np.array([0, 2, 4, 5, 1]), W, lengths=np.array([2, 3]), padding_idx=5)
    array([[2., 3.],
           [5., 6.]], dtype=float32)
    """
    return _embedding_bag(input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, mode, sparse,
                          per_sample_weights, include_last_offset, padding_idx, xp, False, lengths)


def embedding_bag_vjp(input: Array, weight: Array, offsets: Array | None = None,
                      max_norm: float | None = None, norm_type: float = 2, scale_grad_by_freq: bool = False,
                      mode: str = "mean", sparse: bool = False, per_sample_weights: Array | None = None,
                      include_last_offset: bool = False, padding_idx: SupportsIndex | None = None, *,
                      lengths: Array | None = None, xp: Namespace | None = None) -> tuple[Array, Pullback]:
    """:func:`embedding_bag` and its pullback, for gradients without an autodiff framework.

    Parameters
    ----------
    input, weight : array
        The indices and the (N, D) table, as in :func:`embedding_bag`.
    offsets, max_norm, norm_type, scale_grad_by_freq, mode, sparse : optional
        As in :func:`embedding_bag`.
    per_sample_weights, include_last_offset, padding_idx, lengths, xp : optional
        As in :func:`embedding_bag`.

    Returns
    -------
    output : array
        What :func:`embedding_bag` returns.
    pullback : callable
        ``pullback(grad_output)`` returns ``(grad_weight, grad_per_sample_weights)``: ``grad_weight`` dense
        (N, D) or, with ``sparse=True``, a :class:`xembed.SparseGrad`; ``grad_per_sample_weights`` has the
        shape of ``per_sample_weights``, or is None when none were given.

    Raises
    ------
    IndexError, TypeError, ValueError, NotImplementedError
        As :func:`embedding_bag`.

    See Also
    --------
    embedding_bag : The forward alone.
    embedding_vjp : The same for a plain lookup.

    Notes
    -----
    Rules: GRAD-BAG, GRAD-MAX, GRAD-PSW, GRAD-SGBF, GRAD-SPARSE, GRAD-ACC, and for the extensions
    EXT-SQRTN-GRAD, EXT-WMEAN-GRAD, EXT-MIN-GRAD.  On torch tensors the pullback is computed without
    autograd.  The pullback keeps copies of the index arrays and ``per_sample_weights``, and the rows the
    per_sample_weights gradient reads: writing into any argument after the call changes nothing
    (PULLBACK-SNAPSHOT).

    Examples
    --------
    >>> import numpy as np, xembed
    >>> W = np.arange(12, dtype=np.float32).reshape(6, 2)
    >>> psw = np.array([[1.0, 0.5], [2.0, 1.0]], dtype=np.float32)
    >>> out, pullback = xembed.embedding_bag_vjp(np.array([[0, 2], [4, 4]]), W, mode="sum",
    ...                                          per_sample_weights=psw)
    >>> grad_weight, grad_psw = pullback(np.ones_like(out))
    >>> grad_weight[4]
    array([3., 3.], dtype=float32)
    >>> grad_psw
    array([[ 1.,  9.],
           [17., 17.]], dtype=float32)
    """
    return _embedding_bag(input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, mode, sparse,
                          per_sample_weights, include_last_offset, padding_idx, xp, True, lengths)


def renorm(weight: Array, input: Array, max_norm: float, norm_type: float = 2.0, *,
           xp: Namespace | None = None) -> Array:
    """The max_norm renorm as a function: a new table, ``weight`` unchanged.

    Every row of ``weight`` referenced by ``input`` whose ``norm_type``-norm exceeds ``max_norm``
    (strictly) is scaled by ``max_norm / (norm + 1e-7)``; the other rows are copied bit for bit.

    Parameters
    ----------
    weight : array, shape (N, D)
        The table, of a real floating dtype.
    input : array of int
        The indices whose rows are renormed, of any shape.
    max_norm : float
        The largest norm a referenced row keeps; > 0.
    norm_type : float, optional
        The p of the p-norm (default 2); ``inf`` allowed.
    xp : module or namespace, optional
        The array namespace; inferred from the arrays when None.

    Returns
    -------
    array
        A new (N, D) table; on torch a tensor outside autograd, on Dask a lazy array chunked like ``weight``.

    Raises
    ------
    IndexError
        An index outside ``[0, N)`` (on traced JAX arrays such an index changes nothing instead).
    TypeError
        ``max_norm`` is None or not real, ``input`` not integer, ``weight`` not real floating.
    ValueError
        ``max_norm`` or ``norm_type`` not > 0, ``weight`` not 2-D.

    See Also
    --------
    embedding : Renorms in place with ``max_norm`` on mutable arrays.

    Notes
    -----
    The same rows and values as the in-place renorm of ``embedding(..., max_norm=...)``
    (RENORM-FUNCTIONAL, RENORM-STRICT, RENORM-SCALE, RENORM-NORM).  JAX arrays are immutable: there the
    call with ``max_norm`` renorms only the copy it reads, and a training loop applies
    ``weight = xembed.renorm(weight, input, max_norm)`` itself.

    Examples
    --------
    >>> import numpy as np, xembed
    >>> W = np.array([[3.0, 4.0], [0.3, 0.4]])
    >>> xembed.renorm(W, np.array([0, 1]), max_norm=1.0).round(6)
    array([[0.6, 0.8],
           [0.3, 0.4]])
    """
    early = backends.early_renorm(xp, weight, input)
    if early is None:
        ns, (input, weight) = backends.resolve(xp, input=input, weight=weight)
    else:
        ns = early[0]
    v.check_weight(weight, ns)
    v.check_index_dtype("input", input, ns)
    checked_max, p = v.check_renorm_args(max_norm, norm_type)
    if checked_max is None:
        msg = "`max_norm` must be a real number, got None"
        raise TypeError(msg)
    if early is not None:  # TORCH-TRACED
        return early[1](ns, weight, input, checked_max, p)
    input, weight = prim.plain("input", input, xp=ns), prim.plain("weight", weight, xp=ns)
    return backends.adapter_for(ns).renorm(ns, weight, input, checked_max, p)


# Under ``python -OO`` docstrings are stripped (``__doc__`` is None): fill in only when there is one.
for _f in (embedding, embedding_bag):
    if _f.__doc__ is not None:
        _f.__doc__ = _f.__doc__.replace("%(common)s", _COMMON_DOC)
del _f
