"""The adapter of dask arrays (imported only when they are passed; spec DASK-*).

The core runs on dask arrays through the dask primitives (chunk-pair graphs, :mod:`xembed._primitives._dask`);
:mod:`xembed._dask` adds what only dask needs around a core call: value checks as per-block tasks (they raise
at ``.compute()``), ``max_norm`` on a renormed copy of the table (DASK-RENORM), the chunk layout of the result
and of the gradients.  NumPy arguments next to dask arrays become one-chunk dask arrays (DASK-DISPATCH,
:func:`promoted`, applied by :func:`xembed._backends.resolve`)."""

from __future__ import annotations

from typing import Any

from array_api_compat import is_dask_array

from .._typing import Array, Namespace
from ._calls import Adapter, Bag, Lookup


def involves_dask(arrays: dict[str, Array | None]) -> bool:
    """Whether any argument is a dask array (dask is never imported otherwise)."""
    return any(x is not None and is_dask_array(x) for x in arrays.values())


def promoted(arrays: dict[str, Array | None]) -> tuple[Array | None, ...]:
    """The arguments in order, all of them dask arrays (one of them is)."""
    from .. import _dask

    return _dask.as_dask(**arrays)


def embedding(ns: Namespace, c: Lookup) -> Any:
    from .. import _dask

    return _dask.embedding(c.input, c.weight, c.padding_idx, c.max_norm, c.norm_type, c.scale_grad_by_freq,
                           c.sparse, ns, c.want_vjp)


def embedding_bag(ns: Namespace, c: Bag) -> Any:
    from .. import _dask

    return _dask.embedding_bag(c.input, c.weight, c.offsets, c.lengths, c.per_sample_weights, c.args, ns,
                               c.want_vjp)


def renorm(ns: Namespace, weight: Array, input: Array, max_norm: float, norm_type: float) -> Array:
    from .. import _dask

    return _dask.renorm(weight, input, max_norm, norm_type, ns)


ADAPTER = Adapter("dask", embedding, embedding_bag, renorm)
