"""The sparse weight gradient returned when ``sparse=True``."""

from __future__ import annotations

import operator
from typing import Any

from array_api_compat import array_namespace

from . import _primitives as prim
from ._dtypes import acc_dtype
from ._typing import Array
from ._validate import check_index_dtype, check_indices_in_range, check_is_array


def _check_shape(shape: Any) -> tuple[int, int]:
    ok = isinstance(shape, (tuple, list)) and len(shape) == 2
    if ok:
        try:
            n_rows, dim = (operator.index(d) for d in shape)
        except TypeError:
            ok = False
        else:
            ok = n_rows >= 0 and dim >= 0
    if not ok:
        msg = f"`shape` must be two non-negative ints (num_embeddings, embedding_dim), got {shape!r}"
        raise ValueError(msg)
    return n_rows, dim


class SparseGrad:
    """An uncoalesced COO row gradient, laid out exactly like torch's ``sparse=True`` weight gradient.

    One entry per non-padding input position, in input order, duplicates kept.  The pullbacks of
    ``embedding_vjp`` / ``embedding_bag_vjp`` return one when called with ``sparse=True``.

    Parameters
    ----------
    indices : array of int, shape (nnz,)
        Row of the weight each entry adds to.
    values : array, shape (nnz, D)
        The gradient row contributed by each entry.
    shape : tuple of int
        ``(N, D)``, the shape of the dense gradient (the weight's shape).

    Attributes
    ----------
    indices : array, shape (nnz,), default integer dtype (int64)
        Row of the weight each entry adds to.
    values : array, shape (nnz, D), the weight's dtype
        The gradient row contributed by that input position.
    shape : tuple (N, D)
        Shape of the dense gradient (the weight's shape).

    See Also
    --------
    xembed.embedding_vjp, xembed.embedding_bag_vjp : Return it as the weight gradient with ``sparse=True``.

    Notes
    -----
    The layout is GRAD-SPARSE's; ``to_dense()`` accumulates float16 / bfloat16 in float32 (GRAD-ACC).

    Examples
    --------
    >>> import numpy as np, xembed
    >>> W = np.ones((3, 2), dtype=np.float32)
    >>> out, pullback = xembed.embedding_vjp(np.array([2, 0, 2]), W, sparse=True)
    >>> grad = pullback(np.ones_like(out))
    >>> grad
    SparseGrad(nnz=3, shape=(3, 2), dtype=float32)
    >>> grad.indices
    array([2, 0, 2])
    >>> grad.to_dense()
    array([[1., 1.],
           [0., 0.],
           [2., 2.]], dtype=float32)
    """

    __slots__ = ("indices", "shape", "values")

    def __init__(self, indices: Array, values: Array, shape: tuple[int, int]) -> None:
        """Checked construction (SPARSE-ARGS): ``indices`` 1-D integer with every value in ``[0, N)``,
        ``values`` (nnz, D) real floating, ``shape`` two non-negative ints; a typed error names the argument."""
        check_is_array("indices", indices)
        check_is_array("values", values)
        xp = array_namespace(indices, values)
        n_rows, dim = _check_shape(shape)
        check_index_dtype("indices", indices, xp)
        if indices.ndim != 1 or tuple(values.shape) != (indices.shape[0], dim):
            msg = (f"`indices` must be 1-D (nnz,) and `values` (nnz, {dim}), got shapes {tuple(indices.shape)} "
                   f"and {tuple(values.shape)}")
            raise ValueError(msg)
        if not xp.isdtype(values.dtype, "real floating"):
            msg = f"`values` must have a real floating dtype, got {values.dtype}"
            raise TypeError(msg)
        check_indices_in_range(indices, n_rows, xp, name="indices")
        self.indices, self.values, self.shape = indices, values, (n_rows, dim)

    @classmethod
    def _from_core(cls, indices: Array, values: Array, shape: tuple[int, int]) -> SparseGrad:
        """Construction from the core's own, already valid arrays (no value pass)."""
        grad = cls.__new__(cls)
        grad.indices, grad.values, grad.shape = indices, values, (int(shape[0]), int(shape[1]))
        return grad

    @property
    def nnz(self) -> int:
        """The number of entries.

        Returns
        -------
        int
            One per non-padding input position.

        Examples
        --------
        >>> import numpy as np, xembed
        >>> xembed.SparseGrad(np.array([1, 1]), np.ones((2, 2)), (3, 2)).nnz
        2
        """
        return int(self.indices.shape[0])

    def to_dense(self) -> Array:
        """Sum the entries into the dense gradient.

        Returns
        -------
        array
            The (N, D) gradient; duplicates summed in float32 at least, then cast back (GRAD-ACC).

        Examples
        --------
        >>> import numpy as np, xembed
        >>> xembed.SparseGrad(np.array([1, 1]), np.ones((2, 2)), (3, 2)).to_dense()
        array([[0., 0.],
               [2., 2.],
               [0., 0.]])
        """
        xp = array_namespace(self.values)
        acc = acc_dtype(self.values.dtype, xp)
        dense = prim.scatter_add_rows(self.indices, xp.astype(self.values, acc), self.shape[0], xp=xp)
        return xp.astype(dense, self.values.dtype)

    def to_bcoo(self) -> Any:
        """Convert to JAX's sparse format (jax arrays only).

        Returns
        -------
        jax.experimental.sparse.BCOO
            ``indices`` (nnz, 1), ``values`` (nnz, D), shape (N, D), duplicates kept
            (``.sum_duplicates()`` coalesces).

        Examples
        --------
        >>> import jax.numpy as jnp, xembed
        >>> grad = xembed.SparseGrad(jnp.array([1, 1]), jnp.ones((2, 2)), (3, 2))
        >>> grad.to_bcoo().todense()
        Array([[0., 0.],
               [2., 2.],
               [0., 0.]], dtype=float32)
        """
        from jax.experimental import sparse

        return sparse.BCOO((self.values, self.indices[:, None]), shape=self.shape)

    def __repr__(self) -> str:
        return f"SparseGrad(nnz={self.nnz}, shape={self.shape}, dtype={self.values.dtype})"
