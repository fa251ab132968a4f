"""The adapter of eager libraries with mutable arrays (NumPy, CuPy, array-api-strict, any other): the max_norm
renorm writes into the caller's weight (RENORM-INPLACE), the result is the core's forward and pullback."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from .. import _core
from .. import _primitives as prim
from .. import _validate as v
from .._typing import Array, Namespace, Pullback
from ._calls import Adapter, Bag, Lookup

# compute(weight, per_sample_weights, need_pullback=True) -> (output, pullback or None)
Compute = Callable[..., tuple[Array, Pullback | None]]


def lookup_compute(ns: Namespace, c: Lookup) -> Compute:
    def compute(w: Array, _psw: Array | None, need_pullback: bool = True) -> tuple[Array, Pullback]:  # noqa: ARG001
        return _core.embedding_vjp(c.input, w, c.padding_idx, c.scale_grad_by_freq, c.sparse, ns)

    return compute


def bag_compute(ns: Namespace, c: Bag) -> Compute:
    def compute(w: Array, psw: Array | None, need_pullback: bool = True) -> tuple[Array, Pullback | None]:
        return _core.embedding_bag_vjp(c.input, w, c.offsets, psw, c.args, ns, need_pullback)

    return compute


def renormed_in_place(ns: Namespace, weight: Array, plain_weight: Array, input: Array, max_norm: float | None,
                      norm_type: float) -> Array:
    """The table the computation reads: ``plain_weight``, or with ``max_norm`` the caller's ``weight`` after the
    in-place renorm (RENORM-INPLACE, the one place it happens; RENORM-WRITABLE checked before any write)."""
    if max_norm is None:
        return plain_weight
    v.check_writable(weight, ns)
    return prim.plain("weight", _core.renorm_(weight, input, max_norm, norm_type, ns), xp=ns)


def finish(compute: Compute, weight: Array, per_sample_weights: Array | None, want_vjp: bool) -> Any:
    """The output (``embedding``), or the output and its pullback (``*_vjp``)."""
    if not want_vjp:
        return compute(weight, per_sample_weights, need_pullback=False)[0]
    return compute(weight, per_sample_weights)


def bag_layout(ns: Namespace, c: Bag) -> Bag:
    """The call with its layout values checked where they can be read (ERR-OFFSETS-*, VAL-EXACT); ``lengths``
    (EXT-LENGTHS) become exactly the offsets ``[0, cumsum(lengths)]`` with a last offset."""
    if c.lengths is not None:
        offsets = v.offsets_from_lengths(c.lengths, c.input.shape[0], ns)
        args = dataclasses.replace(c.args, include_last_offset=True)
        return dataclasses.replace(c, offsets=offsets, lengths=None, args=args)
    if c.input.ndim == 1:
        v.check_offsets_values(c.offsets, c.input.shape[0], c.args.include_last_offset, ns)
    return c


def embedding(ns: Namespace, c: Lookup) -> Any:
    v.check_indices_in_range(c.input, c.weight.shape[0], ns)
    w = renormed_in_place(ns, c.weight, c.plain_weight, c.input, c.max_norm, c.norm_type)
    return finish(lookup_compute(ns, c), w, None, c.want_vjp)


def embedding_bag(ns: Namespace, c: Bag) -> Any:
    c = bag_layout(ns, c)
    v.check_indices_in_range(c.input, c.weight.shape[0], ns)
    w = renormed_in_place(ns, c.weight, c.plain_weight, c.input, c.args.max_norm, c.args.norm_type)
    return finish(bag_compute(ns, c), w, c.per_sample_weights, c.want_vjp)


def renorm(ns: Namespace, weight: Array, input: Array, max_norm: float, norm_type: float) -> Array:
    v.check_indices_in_range(input, weight.shape[0], ns)
    return _core.renorm(weight, input, max_norm, norm_type, ns)


ADAPTER = Adapter("eager", embedding, embedding_bag, renorm)
