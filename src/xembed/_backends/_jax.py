"""The adapter of JAX: immutable arrays (the renorm is functional, RENORM-FUNCTIONAL), differentiation through
``jax.custom_jvp``, and traced arrays whose values are checked as JIT-* says (:mod:`xembed._jax_autodiff`)."""

from __future__ import annotations

from typing import Any

from .. import _validate as v
from .._typing import Array, Namespace
from ._calls import Adapter, Bag, Lookup
from ._eager import bag_layout


def embedding(ns: Namespace, c: Lookup) -> Any:
    from .. import _jax_autodiff

    v.check_indices_in_range(c.input, c.weight.shape[0], ns)  # eager arrays; traced ones: JIT-INVALID-INDEX
    return _jax_autodiff.embedding(c.input, c.plain_weight, c.padding_idx, c.max_norm, c.norm_type,
                                   c.scale_grad_by_freq, c.sparse, ns, c.want_vjp)


def embedding_bag(ns: Namespace, c: Bag) -> Any:
    from .. import _jax_autodiff

    c = bag_layout(ns, c)  # eager values; traced ones: JIT-INVALID-OFFSETS
    v.check_indices_in_range(c.input, c.weight.shape[0], ns)
    return _jax_autodiff.embedding_bag(c.input, c.plain_weight, c.offsets, c.per_sample_weights, c.args, ns,
                                       c.want_vjp)


def renorm(ns: Namespace, weight: Array, input: Array, max_norm: float, norm_type: float) -> Array:
    from .. import _jax_autodiff

    v.check_indices_in_range(input, weight.shape[0], ns)
    return _jax_autodiff.renorm(weight, input, max_norm, norm_type, ns)


ADAPTER = Adapter("jax", embedding, embedding_bag, renorm)
