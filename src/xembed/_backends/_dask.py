"""Early routes for dask arrays (DASK-DISPATCH): any dask argument sends the call to the blockwise graphs of
:mod:`xembed._dask` (which check the arguments themselves: metadata at the call, values at ``.compute()``).
dask is never imported here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from array_api_compat import is_dask_array

from .._typing import Array, Namespace
from ._calls import NOT_TAKEN


def _involves_dask(*arrays: Any) -> bool:
    return any(x is not None and is_dask_array(x) for x in arrays)


def early_embedding(xp: Namespace | None, want_vjp: bool, input: Array, weight: Array, *options: Any) -> Any:
    if not _involves_dask(input, weight):
        return NOT_TAKEN
    from .. import _dask

    args = (input, weight, *options, xp, want_vjp)
    return _dask.embedding(*args)


def early_embedding_bag(xp: Namespace | None, want_vjp: bool, input: Array, weight: Array, offsets: Array | None,
                        *options: Any, lengths: Array | None) -> Any:
    if not _involves_dask(input, weight, offsets, options[5], lengths):
        return NOT_TAKEN
    from .. import _dask

    args = (input, weight, offsets, *options, xp, want_vjp, lengths)
    return _dask.embedding_bag(*args)


def early_renorm(xp: Namespace | None, weight: Array, input: Array) -> tuple[Namespace, Callable[..., Array]] | None:
    if not _involves_dask(input, weight):
        return None
    from .. import _dask

    return _dask._dask_namespace(xp), lambda ns, w, i, max_norm, p: _dask.renorm(w, i, max_norm, p, ns)
