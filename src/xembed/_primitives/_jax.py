"""Native JAX paths of the primitives (contracts in ``_fallback``), jit-, vmap- and autodiff-friendly.

Everything here has static output shapes (no boolean masks, no value-dependent Python control flow), so
it runs eagerly and under ``jax.jit`` / ``jax.vmap``; every operation is linear in the floating inputs
the pullbacks feed it, so :mod:`xembed._jax_autodiff` can transpose the core's pullback.  JAX arrays are
immutable: :func:`put_rows_` returns a new table (the caller must use the return value).

Under ``jit`` values are not checked: :mod:`xembed._jax_autodiff` maps every invalid index to ``N`` (one
past the last row; JAX would wrap negative indices) before the core runs.  Indices ``>= N`` are dropped
by the scatters (``mode="drop"``) and read as NaN by the gathers (``mode="fill"``): never clamped.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .._typing import Array


def bincount(idx: Array, num_rows: int, xp: Any) -> Array:  # noqa: ARG001
    return jnp.bincount(idx, length=num_rows)


def segment_ids(offsets: Array, n: int, xp: Any) -> Array:  # noqa: ARG001
    # O(n): a 1 at every bag start after the first, prefix-summed (== searchsorted(offsets[1:], pos, "right")).
    marks = jnp.zeros((n + 1,), dtype=offsets.dtype).at[offsets[1:]].add(1, mode="drop")
    return jnp.cumsum(marks[:n], dtype=offsets.dtype)


def scatter_add_rows(idx: Array, rows: Array, num_rows: int, xp: Any) -> Array:  # noqa: ARG001
    out = jnp.zeros((num_rows, *rows.shape[1:]), dtype=rows.dtype)
    return out.at[idx].add(rows, mode="drop")


def _scaled_rows(src: Array, src_idx: Array, scale: Array | None, acc_dtype: Any) -> Array:
    rows = jnp.take(src, src_idx, axis=0, mode="fill", fill_value=jnp.nan).astype(acc_dtype)
    if scale is not None:
        rows = rows * scale.astype(acc_dtype)[:, None]
    return rows


def gather_scatter_add(src: Array, src_idx: Array, dst_idx: Array, scale: Array | None, num_rows: int,
                       acc_dtype: Any, xp: Any) -> Array:
    return scatter_add_rows(dst_idx, _scaled_rows(src, src_idx, scale, acc_dtype), num_rows, xp)


def gather_segment_sum(weight: Array, idx: Array, offsets: Array, scale: Array | None, acc_dtype: Any,
                       xp: Any) -> Array:
    num_bags = offsets.shape[0] - 1
    rows = _scaled_rows(weight, idx, scale, acc_dtype)
    seg = segment_ids(offsets, idx.shape[0], xp)
    return jax.ops.segment_sum(rows, seg, num_segments=num_bags, indices_are_sorted=True)


def gather_segment_max(weight: Array, idx: Array, offsets: Array, need_arg: bool,
                       xp: Any) -> tuple[Array, Array | None]:
    """torch's strict-``>`` scan as two segment reductions: the max of a key, then its first position.

    The key is the row value, except a NaN: +inf as the first element of its bag (it sticks and wins
    every tie as the earliest), -inf elsewhere (never chosen).  ``jax.ops.segment_max``'s own gradient
    would split ties; here the winner is the first position attaining the max (BAG-MAX-TIES).
    """
    num_bags = offsets.shape[0] - 1
    n, d = idx.shape[0], weight.shape[1]
    itype = offsets.dtype
    rows = jnp.take(weight, idx, axis=0, mode="fill", fill_value=jnp.nan)
    seg = segment_ids(offsets, n, xp)
    pos = jnp.arange(n, dtype=itype)
    first = (pos == jnp.take(offsets, seg, mode="clip"))[:, None]
    key = jnp.where(jnp.isnan(rows), jnp.where(first, jnp.inf, -jnp.inf), rows)
    best = jax.ops.segment_max(key, seg, num_segments=num_bags, indices_are_sorted=True)
    hit = key == jnp.take(best, seg, axis=0, mode="clip")
    cand = jnp.where(hit, pos[:, None], n)
    argpos = jax.ops.segment_min(cand, seg, num_segments=num_bags, indices_are_sorted=True)
    nonempty = (offsets[1:] > offsets[:-1])[:, None]
    safe = jnp.clip(argpos, 0, max(n - 1, 0))
    if n == 0:
        values = jnp.zeros((num_bags, d), dtype=weight.dtype)
    else:
        values = jnp.where(nonempty, jnp.take_along_axis(rows, safe, axis=0), jnp.zeros((), weight.dtype))
    if not need_arg:
        return values, None
    if n == 0:
        return values, jnp.full((num_bags, d), -1, dtype=itype)
    argrow = jnp.take(idx.astype(itype), safe)
    return values, jnp.where(nonempty, argrow, jnp.asarray(-1, dtype=itype))


def put_rows_(weight: Array, uniq: Array, rows: Array, xp: Any) -> Array:  # noqa: ARG001
    """Functional on JAX: returns ``weight`` with ``weight[uniq] = rows`` (a new array)."""
    return weight.at[uniq].set(rows, mode="drop")
