"""The sparse weight gradient returned when ``sparse=True``."""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

from . import _primitives as prim
from ._typing import Array


class SparseGrad:
    """An uncoalesced COO row gradient, laid out exactly like torch's ``sparse=True`` weight gradient.

    One entry per non-padding input position, in input order, duplicates kept.

    Attributes
    ----------
    indices : array, shape (nnz,), default integer dtype (int64)
        Row of the weight each entry adds to.
    values : array, shape (nnz, D), the weight's dtype
        The gradient row contributed by that input position.
    shape : tuple (N, D)
        Shape of the dense gradient (the weight's shape).
    """

    __slots__ = ("indices", "shape", "values")

    def __init__(self, indices: Array, values: Array, shape: tuple[int, int]) -> None:
        self.indices = indices
        self.values = values
        self.shape = (int(shape[0]), int(shape[1]))

    @property
    def nnz(self) -> int:
        return int(self.indices.shape[0])

    def to_dense(self) -> Array:
        """The dense (N, D) gradient; duplicates summed (in float32 at least, then cast back; GRAD-ACC)."""
        from ._core import acc_dtype  # _core imports this module

        xp = array_namespace(self.values)
        acc = acc_dtype(self.values.dtype, xp)
        dense = prim.scatter_add_rows(self.indices, xp.astype(self.values, acc), self.shape[0], xp=xp)
        return xp.astype(dense, self.values.dtype)

    def to_bcoo(self) -> Any:
        """This gradient as a ``jax.experimental.sparse.BCOO`` (jax arrays only): ``indices`` (nnz, 1),
        ``values`` (nnz, D), shape (N, D), duplicates kept (``.sum_duplicates()`` coalesces)."""
        from jax.experimental import sparse

        return sparse.BCOO((self.values, self.indices[:, None]), shape=self.shape)

    def __repr__(self) -> str:
        return f"SparseGrad(nnz={self.nnz}, shape={self.shape}, dtype={self.values.dtype})"
