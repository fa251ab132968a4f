"""Backend adapters: what differs between array libraries above the primitives, bound once per namespace.

``_api`` checks a call's arguments and hands the checked call to the :class:`Adapter` of the arrays'
namespace; the adapter decides how it runs there:

* how ``max_norm`` renorms (in place on mutable arrays, on a functional copy on immutable ones);
* how the result is differentiated (torch autograd, JAX ``custom_jvp``, or the pullback alone);
* which whole-call kernel it may choose after the checks (torch's own fused kernels);
* where value checks happen when values cannot be read at the call (traced JAX arrays).

Some calls are decided before the checks, from the argument types alone (:func:`early_embedding`,
:func:`early_embedding_bag`, :func:`early_renorm`): the one-kernel NumPy forward, which checks the values while
it reduces (PRIM-FAST-FORWARD); the same kernels on CPU torch tensors, with their transposes under autograd
(PRIM-FAST-TORCH); torch tensors under tracing, which take the ``xembed::`` custom ops (TORCH-TRACED).

A library's module is imported only when its arrays are passed.  The semantics stay in :mod:`xembed._core`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace, is_dask_namespace, is_jax_namespace, is_torch_namespace

from .. import _validate as v
from .._typing import Array, Namespace
from . import _dask, _numpy, _torch_early
from ._calls import NOT_TAKEN, Adapter, Bag, Lookup

__all__ = ["NOT_TAKEN", "Adapter", "Bag", "Lookup", "adapter_for", "early_embedding", "early_embedding_bag",
           "early_renorm", "resolve"]


_ADAPTERS: dict[int, Adapter] = {}


def adapter_for(ns: Namespace) -> Adapter:
    """The adapter of namespace ``ns`` (built once per namespace)."""
    adapter = _ADAPTERS.get(id(ns))
    if adapter is None:
        if is_torch_namespace(ns):
            module = "_torch"
        elif is_jax_namespace(ns):
            module = "_jax"
        elif is_dask_namespace(ns):
            module = "_dask"
        else:  # NumPy, CuPy, array-api-strict and any other eager library: the standard path
            module = "_eager"
        adapter = _ADAPTERS[id(ns)] = importlib.import_module(f"{__name__}.{module}").ADAPTER
    return adapter


def _library(ns: Namespace) -> str:
    return getattr(ns, "__name__", repr(ns)).removeprefix("array_api_compat.")


_NAMESPACES: dict[tuple[type, ...], tuple[Namespace, bool]] = {}


def resolve(xp: Namespace | None, **arrays: Array | None) -> tuple[Namespace, tuple[Array | None, ...]]:
    """The array API namespace of all array arguments, and the arguments in order as that library reads them
    (NumPy arrays next to dask arrays become one-chunk dask arrays, DASK-DISPATCH).  ERR-NAMESPACE: TypeError on
    mixed libraries or a mismatching ``xp``, ValueError on mixed devices.  Decided once per tuple of argument
    types."""
    key = tuple(type(x) for x in arrays.values() if x is not None)
    known = _NAMESPACES.get(key)
    promote = _dask.involves_dask(arrays) if known is None else known[1]
    values = _dask.promoted(arrays) if promote else tuple(arrays.values())
    present = {k: x for k, x in zip(arrays, values, strict=True) if x is not None}
    if known is None:
        for name, x in present.items():
            v.check_is_array(name, x)
        try:
            ns = array_namespace(*present.values())
        except TypeError as e:
            kinds = ", ".join(f"`{k}`: {type(x).__module__}.{type(x).__name__}" for k, x in present.items())
            msg = f"all arrays must come from one array library, got {kinds}"
            raise TypeError(msg) from e
        _NAMESPACES[key] = (ns, promote)
    else:
        ns = known[0]
    if xp is not None and _library(xp) != _library(ns):
        msg = f"`xp` is {_library(xp)} but the arrays are {_library(ns)} arrays"
        raise TypeError(msg)
    v.check_same_device(present, ns)
    return ns, values


# Early routes: decided from the argument types alone, before the checks.  Each returns NOT_TAKEN when the
# call is not one of its own; the libraries are identified without importing them.  The one-kernel NumPy
# forward comes first: it is the per-call fast path of the most common call.


def early_embedding(xp: Namespace | None, want_vjp: bool, args: tuple[Any, ...]) -> Any:
    """``args``: embedding's positional arguments (input, weight, padding_idx, max_norm, norm_type,
    scale_grad_by_freq, sparse).  Two routes, tested in turn (no loop: this is the per-call fast path)."""
    out = _numpy.early_embedding(xp, want_vjp, args)
    return _torch_early.early_embedding(xp, want_vjp, args) if out is NOT_TAKEN else out


def early_embedding_bag(xp: Namespace | None, want_vjp: bool, args: tuple[Any, ...], lengths: Array | None) -> Any:
    """``args``: embedding_bag's positional arguments (input, weight, offsets, max_norm, norm_type,
    scale_grad_by_freq, mode, sparse, per_sample_weights, include_last_offset, padding_idx)."""
    out = _numpy.early_embedding_bag(xp, want_vjp, args, lengths)
    return _torch_early.early_embedding_bag(xp, want_vjp, args, lengths) if out is NOT_TAKEN else out


def early_renorm(xp: Namespace | None, weight: Array, input: Array) -> tuple[Namespace, Callable[..., Array]] | None:
    """The namespace and the renorm of a traced torch call (``None``: the adapter's renorm).
    The caller checks the arguments in that namespace first."""
    return _torch_early.early_renorm(xp, weight, input)
