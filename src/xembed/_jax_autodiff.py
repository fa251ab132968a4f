"""JAX support: autodiff wiring, max_norm on immutable arrays, and values under ``jit``.

Imported only when jax arrays are passed.  The semantics stay in :mod:`._core` (one forward, one
pullback); this module only

* wires the core's pullback into JAX autodiff with ``jax.custom_jvp``: the JVP rule is the *transpose*
  of the core's pullback (``jax.linear_transpose``), so ``jax.grad`` / ``jax.vjp`` (which transpose the
  JVP back) give exactly the core's — torch's — gradients, and ``jax.jvp`` gives their adjoint
  (JAX-AUTODIFF);
* renorms through the functional :func:`._core.renorm` (the caller's array is immutable and unchanged;
  the renormed table is what the lookup and the gradient see: RENORM-FUNCTIONAL);
* under ``jit`` / ``vmap`` (traced indices: no value checks possible) maps invalid indices and offsets
  to a valid layout and turns the affected output rows into NaN (JIT-INVALID-*), and, inside
  :func:`jit_value_checks`, emits ``jax.experimental.checkify`` checks instead (JIT-CHECKIFY).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from . import _core
from . import _primitives as prim
from ._dtypes import index_dtype
from ._primitives._arrays import jax_has_values as has_values
from ._sparse import SparseGrad
from ._traced_checks import TRACED_CHECKS
from ._typing import Array
from ._validate import BagArgs

jax.tree_util.register_pytree_node(
    SparseGrad, lambda s: ((s.indices, s.values), s.shape),
    lambda shape, ch: SparseGrad._from_core(ch[0], ch[1], shape))


# ----------------------------------------------------------------------------------------------------
# invalid values under jit


def sanitize_indices(input: Array, n_rows: int, xp: Any) -> tuple[Array, Array | None]:
    """Indices as the index dtype with every invalid one mapped to ``n_rows``, and the (input-shaped)
    mask of invalid positions; unchanged (and None) when the values were checked eagerly."""
    itype = index_dtype(xp, None)
    idx = input.astype(itype)
    if has_values(input):
        return idx, None
    bad = (idx < 0) | (idx >= n_rows)
    if TRACED_CHECKS.get():
        from jax.experimental import checkify

        flat = jnp.reshape(bad, (-1,))
        pos = jnp.argmax(flat)
        checkify.check(~jnp.any(flat), "index {} at flat position {} of `input` is out of range for a weight "
                       f"with {n_rows} rows (valid: 0 <= index < {n_rows})",
                       jnp.reshape(idx, (-1,))[pos] if flat.shape[0] else 0, pos)
    return jnp.where(bad, n_rows, idx), bad


def sanitize_offsets(offsets: Array, n: int, include_last_offset: bool) -> tuple[Array, Array | None]:
    """Offsets, or (traced and invalid: OFFSETS rules broken) a valid all-empty layout; and a 0-d flag
    of invalidity (None when the values were checked eagerly)."""
    if has_values(offsets) or offsets.shape[0] == 0:
        return offsets, None
    bad = offsets[0] != 0
    if offsets.shape[0] > 1:
        bad = bad | jnp.any(offsets[1:] < offsets[:-1])
    bad = bad | (offsets[-1] > n)
    if include_last_offset:
        bad = bad | (offsets[-1] != n)
    if TRACED_CHECKS.get():
        from jax.experimental import checkify

        checkify.check(~bad, "`offsets` break the offsets rules (offsets[0] == 0, non-decreasing, "
                       f"offsets[-1] <= len(input) = {n}"
                       + (", == with include_last_offset" if include_last_offset else "")
                       + "): first {}, last {}", offsets[0], offsets[-1])
    safe = jnp.zeros_like(offsets)
    if include_last_offset:
        safe = safe.at[-1].set(n)
    return jnp.where(bad, safe, offsets), bad


def poison(out: Array, bad: Array | None) -> Array:
    """``out`` with NaN in the rows where ``bad`` (broadcast over the last axis) is true."""
    if bad is None:
        return out
    nan = jnp.asarray(jnp.nan, dtype=out.dtype)
    return out + jnp.where(bad, nan, jnp.zeros((), out.dtype))[..., None]


# ----------------------------------------------------------------------------------------------------
# autodiff


Consts = tuple[Array | None, ...]
Compute = Callable[[Array, Array | None, Consts, bool], tuple[Array, Any]]


def _differentiable(compute: Compute, has_psw: bool) -> Callable[[Array, Array | None, Consts], Array]:
    """``f(weight, psw, consts) = compute(weight, psw, consts)[0]`` whose derivatives are the core's pullback.

    ``compute(w, psw, consts, need_pullback)`` returns ``(out, pullback)``; ``pullback(g)`` returns the
    weight gradient (embedding) or ``(grad_weight, grad_psw)`` (embedding_bag), dense.  ``consts`` (the
    integer index arrays) are explicit arguments, never closed over: a custom_jvp must not close over
    traced values.  They are not differentiated.
    """

    @jax.custom_jvp
    def f(weight: Array, psw: Array | None, consts: Consts) -> Array:
        return compute(weight, psw, consts, False)[0]

    @f.defjvp
    def f_jvp(primals: tuple[Array, Array | None, Consts],
              tangents: tuple[Array, Array | None, Consts]) -> tuple[Array, Array]:
        weight, psw, consts = primals
        dweight, dpsw, _ = tangents
        out, pullback = compute(weight, psw, consts, True)

        def cotangents(g: Array) -> tuple[Array, ...]:
            res = pullback(g)
            if not isinstance(res, tuple):
                return (res,)
            return res if has_psw else res[:1]

        transposed = jax.linear_transpose(cotangents, jax.ShapeDtypeStruct(out.shape, out.dtype))  # type: ignore[no-untyped-call]
        (dout,) = transposed((dweight, dpsw) if has_psw else (dweight,))
        return out, dout

    return f


def _renormed(weight: Array, idx: Array, max_norm: float | None, norm_type: float, xp: Any) -> Array:
    if max_norm is None:
        return weight
    return _core.renorm(jax.lax.stop_gradient(weight), idx, max_norm, norm_type, xp)


def embedding(input: Array, weight: Array, padding_idx: int | None, max_norm: float | None, norm_type: float,
              scale_grad_by_freq: bool, sparse: bool, xp: Any, want_vjp: bool) -> Any:
    """``xembed.embedding`` / ``embedding_vjp`` on jax arrays (arguments already validated)."""
    idx, bad = sanitize_indices(input, weight.shape[0], xp)
    if want_vjp:
        w = _renormed(weight, idx, max_norm, norm_type, xp)
        out, pullback = _core.embedding_vjp(idx, w, padding_idx, scale_grad_by_freq, sparse, xp)
        return poison(out, bad), pullback

    def compute(w: Array, _psw: Array | None, consts: Consts, _need: bool) -> tuple[Array, Any]:
        # Autodiff gives dense gradients (a JAX cotangent has the primal's type): sparse=False here.
        (i,) = consts
        w = _renormed(w, i, max_norm, norm_type, xp)
        return _core.embedding_vjp(i, w, padding_idx, scale_grad_by_freq, False, xp)

    return poison(_differentiable(compute, False)(weight, None, (idx,)), bad)


def embedding_bag(input: Array, weight: Array, offsets: Array | None, per_sample_weights: Array | None,
                  a: BagArgs, xp: Any, want_vjp: bool) -> Any:
    """``xembed.embedding_bag`` / ``embedding_bag_vjp`` on jax arrays (arguments already validated)."""
    idx, bad = sanitize_indices(input, weight.shape[0], xp)
    offs_bad = None
    if offsets is not None and input.ndim == 1:
        offsets, offs_bad = sanitize_offsets(offsets, input.shape[0], a.include_last_offset)

    def bagpoison(out: Array) -> Array:
        return poison_bags(out, input.ndim, bad, offsets, offs_bad, a.include_last_offset, xp)

    if want_vjp:
        w = _renormed(weight, idx, a.max_norm, a.norm_type, xp)
        out, pullback = _core.embedding_bag_vjp(idx, w, offsets, per_sample_weights, a, xp)
        return bagpoison(out), pullback

    dense = BagArgs(a.mode, a.padding_idx, a.max_norm, a.norm_type, a.scale_grad_by_freq, False,
                    a.include_last_offset)

    def compute(w: Array, psw: Array | None, consts: Consts, need: bool) -> tuple[Array, Any]:
        i, o = consts
        w = _renormed(w, i, a.max_norm, a.norm_type, xp)
        return _core.embedding_bag_vjp(i, w, o, psw, dense, xp, need)

    f = _differentiable(compute, per_sample_weights is not None)
    return bagpoison(f(weight, per_sample_weights, (idx, offsets)))


def poison_bags(out: Array, ndim: int, bad: Array | None, offsets: Array | None, offs_bad: Array | None,
                include_last_offset: bool, xp: Any) -> Array:
    """JIT-INVALID-*: NaN in every bag (B, D) of ``out`` holding an invalid index (``bad``, input-shaped),
    and everywhere when the offsets were invalid (``offs_bad``); ``out`` itself when the values were checked."""
    if bad is not None:
        one_per_row = ndim == 2
        out = poison(out, jnp.any(bad, axis=1) if one_per_row
                     else _bags_with(bad, offsets, include_last_offset, out.shape[0], xp))
    if offs_bad is not None:
        out = poison(out, jnp.broadcast_to(offs_bad, out.shape[:1]))
    return out


def _bags_with(bad: Array, offsets: Array, include_last_offset: bool, num_bags: int, xp: Any) -> Array:
    """(B,) mask of the bags containing a flagged position of a 1-D input."""
    n = bad.shape[0]
    offs = offsets.astype(index_dtype(xp, None))
    if not include_last_offset:
        offs = jnp.concatenate([offs, jnp.asarray([n], dtype=offs.dtype)])
    seg = prim.segment_ids(offs, n, xp=xp)
    return jax.ops.segment_max(bad.astype(jnp.int8), seg, num_segments=num_bags) > 0


def renorm(weight: Array, input: Array, max_norm: float, norm_type: float, xp: Any) -> Array:
    """``xembed.renorm`` on jax arrays: invalid traced indices change nothing (JIT-INVALID-INDEX)."""
    idx, _ = sanitize_indices(input, weight.shape[0], xp)
    return _core.renorm(weight, idx, max_norm, norm_type, xp)
