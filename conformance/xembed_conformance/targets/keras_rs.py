"""Keras-RS ``EmbedReduce`` (Keras 3 on its JAX backend) as a conformance target: ``embedding_bag`` only.

    xembed-conformance --impl xembed_conformance.targets.keras_rs --backend jax

``EmbedReduce`` embeds a batch of bags and reduces each with a combiner (``sum``, ``mean``, ``sqrtn``), optionally
weighting each entry (``weights=``).  The adapter maps ``embedding_bag``'s arguments onto it and adds nothing
of its own to the arithmetic:

- ``mode`` is the combiner (``sum``, ``mean``, and xembed's extension ``sqrtn``; ``per_sample_weights`` are its
  ``weights``, so ``mean`` with weights is the weighted mean of xembed's extension);
- a 2-D ``input`` is passed as it is (one bag per row);
- a 1-D ``input`` with ``offsets`` becomes what ``EmbedReduce`` offers for bags of different lengths on JAX: a
  ``jax.experimental.sparse.BCOO`` matrix of shape ``(bags, longest bag)``, entry ``(b, j)`` the ``j``-th index
  of bag ``b`` (``per_sample_weights`` the same way).  ``EmbedReduce`` has no offsets, so the adapter refuses
  what it cannot lay out (offsets not 1-D integers, not starting at 0, decreasing, past the input's end, empty
  with ``include_last_offset``; per_sample_weights not of the input's shape) with a ValueError naming them: the
  checks of those errors on a 1-D input measure the adapter, not Keras;
- the table is the layer's variable: one layer per table shape, dtype and combiner, called through
  ``layer.stateless_call`` with the caller's weight, and gradients are ``jax.vjp`` of that call
  (``embedding_bag_vjp``).

Options ``EmbedReduce`` does not have (``mode='max'``, ``padding_idx``, ``max_norm``, ``scale_grad_by_freq``,
``sparse=True``) raise NotImplementedError.  There is no ``embedding``: its checks are skipped.  Needs ``keras``
and ``keras-rs`` (``pip install keras keras-rs``); Keras runs on JAX (``KERAS_BACKEND=jax`` is set when unset).
Divergences found: docs/findings.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import sparse as jax_sparse

os.environ.setdefault("KERAS_BACKEND", "jax")  # read once, when keras is first imported
try:
    import keras
    from keras_rs.layers import EmbedReduce
except ImportError as e:
    msg = f"the Keras-RS target needs keras and keras-rs (pip install keras keras-rs): {e}"
    raise ImportError(msg) from e

if keras.backend.backend() != "jax":
    msg = f"the Keras-RS target runs Keras on JAX; Keras was started on {keras.backend.backend()!r} (KERAS_BACKEND)"
    raise ImportError(msg)

COMBINERS = ("sum", "mean", "sqrtn")
_LAYERS: dict[tuple[int, int, str, str], Any] = {}


def _layer(weight: Any, mode: str) -> Any:
    key = (int(weight.shape[0]), int(weight.shape[1]), str(weight.dtype), mode)
    if key not in _LAYERS:
        layer = EmbedReduce(key[0], key[1], combiner=mode, dtype=key[2])
        layer.build((None, None))
        _LAYERS[key] = layer
    return _LAYERS[key]


def _refuse_options(mode: str, max_norm: float | None, scale_grad_by_freq: bool, sparse: bool,
                    padding_idx: int | None) -> None:
    if mode not in COMBINERS:
        msg = f"`mode` {mode!r} is not offered: EmbedReduce's combiners are {', '.join(COMBINERS)}"
        raise NotImplementedError(msg)
    for name, value, default in (("max_norm", max_norm, None), ("scale_grad_by_freq", scale_grad_by_freq, False),
                                 ("sparse", sparse, False), ("padding_idx", padding_idx, None)):
        if value != default:
            msg = f"`{name}`={value!r} is not offered: EmbedReduce has no such option"
            raise NotImplementedError(msg)


def _ragged(input: Any, offsets: Any, include_last_offset: bool, psw: Any) -> tuple[Any, Callable[[Any], Any]]:
    """The BCOO bags of a 1-D input split by offsets, and a function making the BCOO weights from psw values."""
    offs = np.asarray(offsets)
    n = int(input.shape[0])
    if offs.ndim != 1 or offs.dtype.kind not in "iu" or (offs.size and offs[0] != 0):
        msg = f"`offsets` must be a 1-D integer array starting at 0, got {offs.tolist()!r}"
        raise ValueError(msg)
    if include_last_offset and not offs.size:
        msg = "`offsets` must not be empty with `include_last_offset=True`"
        raise ValueError(msg)
    if psw is not None and tuple(psw.shape) != (n,):
        msg = f"`per_sample_weights` must have the input's shape ({n},), got {tuple(psw.shape)}"
        raise ValueError(msg)
    if np.any(np.diff(offs) < 0) or (offs.size and offs[-1] > n):
        msg = f"`offsets` must be non-decreasing and at most len(input)={n}, got {offs.tolist()!r}"
        raise ValueError(msg)
    bounds = offs if include_last_offset else np.append(offs, n)
    starts, lengths = bounds[:-1], np.diff(bounds)
    rows = np.repeat(np.arange(len(starts)), lengths)
    cols = np.arange(int(bounds[-1]) if len(bounds) else 0) - np.repeat(starts, lengths)
    coords = jnp.asarray(np.stack([rows, cols], axis=1).astype(np.int32))
    shape = (len(starts), int(lengths.max(initial=0)))
    taken = int(bounds[-1]) if len(bounds) else 0

    def bcoo(values: Any) -> Any:
        return jax_sparse.BCOO((values[:taken], coords), shape=shape)

    return bcoo(input), bcoo


def _forward(input: Any, weight: Any, offsets: Any, mode: str, include_last_offset: bool,
             per_sample_weights: Any) -> Callable[[Any, Any], Any]:
    """The call as a function of (weight, per_sample_weights)."""
    layer = _layer(weight, mode)
    if input.ndim == 1 and offsets is not None:
        bags, as_bcoo = _ragged(input, offsets, include_last_offset, per_sample_weights)
    elif input.ndim == 2 and offsets is None:
        bags, as_bcoo = input, (lambda values: values)
    else:
        msg = (f"`input` must be 2-D (without `offsets`) or 1-D with `offsets`, got shape {tuple(input.shape)} "
               f"and offsets {'given' if offsets is not None else 'None'}")
        raise ValueError(msg)

    def call(w: Any, psw: Any) -> Any:
        out, _ = layer.stateless_call([w], [], bags, weights=None if psw is None else as_bcoo(psw))
        return out

    return call


def embedding_bag_vjp(input: Any, weight: Any, offsets: Any = None, max_norm: float | None = None,
                      norm_type: float = 2, scale_grad_by_freq: bool = False, mode: str = "mean",
                      sparse: bool = False, per_sample_weights: Any = None, include_last_offset: bool = False,
                      padding_idx: int | None = None) -> tuple[Any, Callable[[Any], tuple[Any, Any]]]:
    del norm_type  # only read with max_norm, which is refused
    _refuse_options(mode, max_norm, scale_grad_by_freq, sparse, padding_idx)
    call = _forward(input, weight, offsets, mode, include_last_offset, per_sample_weights)
    if per_sample_weights is None:
        out, pull = jax.vjp(lambda w: call(w, None), weight)
        return out, lambda g: (pull(g)[0], None)
    out, pull_both = jax.vjp(call, weight, per_sample_weights)
    return out, lambda g: tuple(pull_both(g))


def embedding_bag(input: Any, weight: Any, offsets: Any = None, max_norm: float | None = None,
                  norm_type: float = 2, scale_grad_by_freq: bool = False, mode: str = "mean", sparse: bool = False,
                  per_sample_weights: Any = None, include_last_offset: bool = False,
                  padding_idx: int | None = None) -> Any:
    del norm_type  # only read with max_norm, which is refused
    _refuse_options(mode, max_norm, scale_grad_by_freq, sparse, padding_idx)
    call = _forward(input, weight, offsets, mode, include_last_offset, per_sample_weights)
    return call(weight, per_sample_weights)
