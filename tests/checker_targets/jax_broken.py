# mypy: disable-error-code="no-untyped-call, no-untyped-def"
# (deliberately torch.nn.functional-shaped, untyped targets: the checker must cope with any signature style)
"""Deliberately broken JAX targets, each wrong in one way that only shows on immutable or traced arrays.  Most
are for the checker's ``jax-jit`` backend: under ``jax.jit`` values cannot be read, so a kernel writer's usual
shortcut is to sanitize them (JIT-INVALID-INDEX / JIT-INVALID-OFFSETS, docs/spec.md); `ignores_max_norm` is for
the eager ``jax`` backend (RENORM-FUNCTIONAL).  They wrap xembed and change one behaviour; `BROKEN_JAX[name]`
gives the backend and the check ids (globs) that must report it.
"""

# ruff: noqa: ARG001  # torch.nn.functional's signatures

from __future__ import annotations

import types

import jax
import jax.numpy as jnp

import xembed


def _target(doc, embedding=xembed.embedding, embedding_bag=xembed.embedding_bag):
    return types.SimpleNamespace(__doc__=doc, embedding=embedding, embedding_bag=embedding_bag)


def _clip(input, weight):
    return jnp.clip(input, 0, weight.shape[0] - 1)


clamps_indices = _target(
    "out-of-range / negative indices are clamped into [0, N) under jit (rows of the wrong embedding)",
    embedding=lambda input, weight, *a, **k: xembed.embedding(_clip(input, weight), weight, *a, **k),
    embedding_bag=lambda input, weight, *a, **k: xembed.embedding_bag(_clip(input, weight), weight, *a, **k),
)

wraps_negative_indices = _target(
    "negative indices wrap around (Python / NumPy indexing) under jit",
    embedding=lambda input, weight, *a, **k: xembed.embedding(
        jnp.where(input < 0, input + weight.shape[0], input), weight, *a, **k),
)


def _emb_all_nan(input, weight, *a, **k):
    out = xembed.embedding(_clip(input, weight), weight, *a, **k)
    bad = jnp.any((input < 0) | (input >= weight.shape[0]))
    return jnp.where(bad, jnp.nan, out)


nan_everywhere_on_bad_index = _target(
    "one bad index makes the whole output NaN (the valid rows must stay exact)", embedding=_emb_all_nan)


def _bag_sanitized_offsets(input, weight, offsets=None, *a, **k):
    if offsets is not None:  # a valid layout, silently: offsets[0] := 0, non-decreasing, at most len(input)
        offsets = jnp.minimum(jax.lax.cummax(offsets.at[0].set(0)), input.shape[0])
    return xembed.embedding_bag(input, weight, offsets, *a, **k)


sanitizes_offsets = _target(
    "invalid offsets are silently repaired into a valid layout under jit (no NaN rows)",
    embedding_bag=_bag_sanitized_offsets,
)



def _bag_no_renorm(input, weight, *a, max_norm=None, **k):
    return xembed.embedding_bag(input, weight, *a, **k)


ignores_max_norm = _target(
    "an immutable weight: max_norm is ignored (the output must read the renormed rows, RENORM-FUNCTIONAL)",
    embedding_bag=_bag_no_renorm,
)

#: name -> (the checker's backend, check ids (globs) that must report the defect)
BROKEN_JAX = {
    "clamps_indices": ("jax-jit", ("*::error: index >= num_embeddings::error", "*::error: negative index::error")),
    "wraps_negative_indices": ("jax-jit", ("embedding::error: negative index::error",)),
    "nan_everywhere_on_bad_index": ("jax-jit", ("embedding::error: *index*::error",)),
    "sanitizes_offsets": ("jax-jit", ("embedding_bag::*offsets*::error",)),
    "ignores_max_norm": ("jax", ("embedding_bag::max_norm, norm_type=2::values",)),
}
