"""xembed on JAX arrays: values and gradients against the torch oracle, eagerly and under
``jax.jit``; ``jax.grad`` / ``jax.vjp`` / ``jax.jvp`` / ``jax.vmap``; the functional renorm; invalid values
eagerly (NumPy's errors) and under jit (NaN rows, opt-in checkify); sparse pullbacks and BCOO.

Spec: JAX-AUTODIFF, JAX-SPARSE-AUTODIFF, RENORM-FUNCTIONAL, JIT-STATIC, JIT-INVALID-INDEX,
JIT-INVALID-OFFSETS, JIT-CHECKIFY, JIT-SPARSE-PAD (docs/spec.md, "JAX: immutable and traced arrays").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import array_api_strict as xps
import jax  # in the `test` extra: a missing install must fail, not skip
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax.experimental import checkify
from torch.nn import functional as tfn

import xembed

jax.config.update("jax_enable_x64", True)  # at import, before any test builds an array

N, D = 9, 3
IDX1 = np.array([1, 2, 4, 5, 4, 3, 2, 8, 2, 2])  # duplicates, padding candidate 2 inside bags
OFFS = np.array([0, 4, 4, 7])  # bag 1 empty
IDX2 = np.array([[3, 1, 3, 6], [0, 3, 6, 6], [2, 2, 2, 2]])  # last row all 2 (all-padding with padding_idx=2)


def _w(seed: int = 0, n: int = N, d: int = D) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d))


def _t(a: Any) -> torch.Tensor:
    return torch.from_numpy(np.array(a))


def backward(out: torch.Tensor, g: Any) -> None:
    out.backward(g)


def grad_of(t: torch.Tensor) -> torch.Tensor:
    assert t.grad is not None
    return t.grad


def torch_bag(idx: np.ndarray, w: np.ndarray, offsets: np.ndarray | None, g: np.ndarray,
              psw: np.ndarray | None = None, **kw: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The oracle: tfn.embedding_bag in float64, its output, weight gradient and psw gradient for ``g``."""
    wt = _t(w).requires_grad_(True)
    pt = None if psw is None else _t(psw).requires_grad_(True)
    out = tfn.embedding_bag(_t(idx), wt, None if offsets is None else _t(offsets), per_sample_weights=pt, **kw)
    backward(out, _t(g))
    gw = wt.grad.to_dense() if wt.grad is not None else torch.zeros_like(wt)
    return out.detach().numpy(), gw.numpy(), None if pt is None else grad_of(pt).numpy()


def torch_emb(idx: np.ndarray, w: np.ndarray, g: np.ndarray, **kw: Any) -> tuple[np.ndarray, np.ndarray]:
    wt = _t(w).requires_grad_(True)
    out = tfn.embedding(_t(idx), wt, **kw)
    backward(out, _t(g))
    gw = wt.grad.to_dense() if wt.grad is not None else torch.zeros_like(wt)
    return out.detach().numpy(), gw.numpy()


def close(a: Any, e: Any, rtol: float = 1e-10, atol: float = 1e-12) -> None:
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(e, dtype=np.float64), rtol=rtol,
                               atol=atol, equal_nan=True)


def maybe_jit(f: Callable[..., Any], jit: bool) -> Callable[..., Any]:
    return jax.jit(f) if jit else f


JIT = pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])


# ----------------------------------------------------------------------------------------------------------
# values and gradients against torch


@JIT
@pytest.mark.parametrize("max_norm", [None, 1.0])
@pytest.mark.parametrize("padding_idx", [None, -7])
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("layout", ["1d", "2d"])
def test_bag_values_and_grads(layout: str, mode: str, padding_idx: int | None, max_norm: float | None,
                              jit: bool) -> None:
    """BAG-*, GRAD-BAG, GRAD-MAX, RENORM-GRAD, JAX-AUTODIFF: output and jax.grad equal torch's."""
    w = _w(1) * 2
    idx, offs = (IDX1, OFFS) if layout == "1d" else (IDX2, None)
    kw: dict[str, Any] = {"mode": mode, "padding_idx": padding_idx, "max_norm": max_norm}
    b = offs.shape[0] if offs is not None else idx.shape[0]
    g = np.random.default_rng(2).standard_normal((b, D))
    ref_out, ref_gw, _ = torch_bag(idx, w, offs, g, **kw)
    o = None if offs is None else jnp.asarray(offs)

    f = maybe_jit(lambda wj, i, o: xembed.embedding_bag(i, wj, o, **kw), jit)
    wj = jnp.asarray(w)
    out = f(wj, jnp.asarray(idx), o)
    assert out.dtype == jnp.float64
    assert out.shape == ref_out.shape
    close(out, ref_out)
    gw = jax.grad(lambda wj: jnp.sum(f(wj, jnp.asarray(idx), o) * g))(wj)
    close(gw, ref_gw)
    close(wj, w, 0, 0)  # RENORM-FUNCTIONAL: the caller's weight is unchanged


@JIT
@pytest.mark.parametrize("padding_idx", [None, 2])
@pytest.mark.parametrize("scale_grad_by_freq", [False, True])
def test_bag_per_sample_weights_grad(scale_grad_by_freq: bool, padding_idx: int | None, jit: bool) -> None:
    """BAG-PSW, GRAD-PSW, GRAD-SGBF: jax.grad w.r.t. weight and per_sample_weights equal torch's."""
    w, psw = _w(3), np.random.default_rng(4).standard_normal(IDX1.shape)
    kw: dict[str, Any] = {"mode": "sum", "padding_idx": padding_idx, "scale_grad_by_freq": scale_grad_by_freq}
    g = np.random.default_rng(5).standard_normal((OFFS.shape[0], D))
    ref_out, ref_gw, ref_gp = torch_bag(IDX1, w, OFFS, g, psw, **kw)
    f = maybe_jit(lambda wj, pj, i, o: xembed.embedding_bag(i, wj, o, per_sample_weights=pj, **kw), jit)
    args = (jnp.asarray(IDX1), jnp.asarray(OFFS))
    close(f(jnp.asarray(w), jnp.asarray(psw), *args), ref_out)
    gw, gp = jax.grad(lambda wj, pj: jnp.sum(f(wj, pj, *args) * g), argnums=(0, 1))(jnp.asarray(w), jnp.asarray(psw))
    close(gw, ref_gw)
    close(gp, ref_gp)


@JIT
@pytest.mark.parametrize("max_norm", [None, 0.8])
@pytest.mark.parametrize("scale_grad_by_freq", [False, True])
@pytest.mark.parametrize("padding_idx", [None, 3, -3])
def test_embedding_values_and_grads(padding_idx: int | None, scale_grad_by_freq: bool, max_norm: float | None,
                                    jit: bool) -> None:
    """EMB-*, GRAD-EMB, GRAD-PAD, GRAD-SGBF, RENORM-GRAD under jax.grad."""
    w = _w(6)
    kw: dict[str, Any] = {"padding_idx": padding_idx, "scale_grad_by_freq": scale_grad_by_freq, "max_norm": max_norm}
    g = np.random.default_rng(7).standard_normal((*IDX2.shape, D))
    ref_out, ref_gw = torch_emb(IDX2, w, g, **kw)
    f = maybe_jit(lambda wj, i: xembed.embedding(i, wj, **kw), jit)
    close(f(jnp.asarray(w), jnp.asarray(IDX2)), ref_out)
    close(jax.grad(lambda wj: jnp.sum(f(wj, jnp.asarray(IDX2)) * g))(jnp.asarray(w)), ref_gw)


EDGE_BAGS = [
    pytest.param(np.array([], dtype=np.int64), np.array([0, 0]), {}, id="empty-input"),
    pytest.param(np.array([3, 2, 2]), np.array([0, 1, 3]), {"include_last_offset": True}, id="include-last"),
    pytest.param(np.array([2, 2, 5, 2]), np.array([0, 2]), {"padding_idx": 2}, id="all-padding-bag"),
    pytest.param(np.array([[2, 2], [2, 2]]), None, {"padding_idx": 2}, id="2d-all-padding"),
    pytest.param(np.array([4, 1, 4, 1]), np.array([0, 0, 0, 2]), {}, id="leading-empty-bags"),
]


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize(("idx", "offs", "extra"), EDGE_BAGS)
def test_bag_edge_layouts_under_jit(idx: np.ndarray, offs: np.ndarray | None, extra: dict[str, Any],
                                    mode: str) -> None:
    """BAG-EMPTY, BAG-LAST-OFFSET, BAG-PAD under jit (JIT-STATIC): output and jax.grad equal torch's."""
    w = _w(30)
    b = idx.shape[0] if offs is None else offs.shape[0] - int(extra.get("include_last_offset", False))
    g = np.random.default_rng(31).standard_normal((b, D))
    ref_out, ref_gw, _ = torch_bag(idx, w, offs, g, mode=mode, **extra)
    o = None if offs is None else jnp.asarray(offs)
    f = jax.jit(lambda wj, ij, oj: xembed.embedding_bag(ij, wj, oj, mode=mode, **extra))
    close(f(jnp.asarray(w), jnp.asarray(idx), o), ref_out)
    close(jax.grad(lambda wj: jnp.sum(f(wj, jnp.asarray(idx), o) * g))(jnp.asarray(w)), ref_gw)


def test_spec_choices_under_jit() -> None:
    """BAG-EMPTY-OFFSETS (0 bags) and BAG-2D-ZERO-COLS (B zero rows), where torch fails, under jit; a 0-d and an
    empty embedding input."""
    wj = jnp.asarray(_w(32))
    out = jax.jit(lambda wj, ij, oj: xembed.embedding_bag(ij, wj, oj, mode="max"))(
        wj, jnp.asarray([1, 2, 3]), jnp.zeros((0,), dtype=int))
    assert out.shape == (0, D)
    out = jax.jit(lambda wj, ij: xembed.embedding_bag(ij, wj, mode="mean"))(wj, jnp.zeros((4, 0), dtype=int))
    close(out, np.zeros((4, D)), 0, 0)
    close(jax.jit(lambda wj, ij: xembed.embedding(ij, wj))(wj, jnp.asarray(5)), _w(32)[5], 0, 0)
    assert jax.jit(lambda wj, ij: xembed.embedding(ij, wj))(wj, jnp.zeros((2, 0), dtype=int)).shape == (2, 0, D)


def test_max_ties_first_occurrence_not_split() -> None:
    """BAG-MAX-TIES: the issue's example: two equal rows in a max bag, upstream gradient 0.25: torch (and xembed)
    give all of it to the first occurrence, where the hand-written jax.ops.segment_max gradient splits it
    (0.125 each)."""
    w = jnp.ones((2, 2))
    idx, offs = jnp.asarray([0, 1]), jnp.asarray([0])

    def loss(wj: Any) -> Any:
        return jnp.sum(xembed.embedding_bag(idx, wj, offs, mode="max")) * 0.25

    ref = torch.ones(2, 2, dtype=torch.float64, requires_grad=True)
    backward(tfn.embedding_bag(_t([0, 1]), ref, _t([0]), mode="max").sum() * 0.25, None)
    close(jax.grad(loss)(w), grad_of(ref).numpy())
    close(jax.jit(jax.grad(loss))(w), [[0.25, 0.25], [0.0, 0.0]])
    hand = jax.grad(lambda wj: 0.25 * jnp.sum(jax.ops.segment_max(wj[idx], jnp.zeros(2, int), 1)))(w)
    close(hand, [[0.125, 0.125], [0.125, 0.125]])  # why the custom wiring exists


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_vjp_and_jvp(mode: str) -> None:
    """JAX-AUTODIFF: jax.vjp gives torch's gradient; jax.jvp is its adjoint (<jvp(dW), g> = <dW, vjp(g)>), and
    for sum/mean (linear in the weight) it is the derivative itself: embedding_bag of the tangent."""
    w, dw = _w(8), _w(9)
    g = np.random.default_rng(10).standard_normal((OFFS.shape[0], D))
    _, ref_gw, _ = torch_bag(IDX1, w, OFFS, g, mode=mode)

    def f(wj: Any) -> Any:
        return xembed.embedding_bag(jnp.asarray(IDX1), wj, jnp.asarray(OFFS), mode=mode)

    _, vjp = jax.vjp(f, jnp.asarray(w))
    close(vjp(jnp.asarray(g))[0], ref_gw)
    _, tangent = jax.jit(lambda wj, tj: jax.jvp(f, (wj,), (tj,)))(jnp.asarray(w), jnp.asarray(dw))
    close(float(jnp.sum(tangent * g)), float(np.sum(dw * ref_gw)), rtol=1e-12)
    if mode != "max":
        lin = tfn.embedding_bag(_t(IDX1), _t(dw), _t(OFFS), mode=mode).numpy()
        close(tangent, lin)
    else:  # the tangent of each (bag, feature) is the tangent of the winning row
        am = torch_argrow_max(IDX1, w, OFFS)
        expected = np.where(am >= 0, dw[np.clip(am, 0, None), np.arange(D)], 0.0)
        close(tangent, expected)


def torch_argrow_max(idx: np.ndarray, w: np.ndarray, offs: np.ndarray) -> np.ndarray:
    _, _, _, arg = torch.embedding_bag(_t(w), _t(idx), _t(offs), False, 2, False, None, False, None)
    bag_sizes = np.diff(np.append(offs, idx.size))
    return np.where(bag_sizes[:, None] > 0, arg.numpy(), -1)


@pytest.mark.parametrize("mode", ["sum", "max"])
def test_vmap_over_inputs(mode: str) -> None:
    """vmap over a batch of 2-D inputs equals per-example calls (and torch), gradients included."""
    w = _w(11)
    batch = np.random.default_rng(12).integers(0, N, size=(4, 3, 5))

    def f(wj: Any, i: Any) -> Any:
        return xembed.embedding_bag(i, wj, mode=mode, padding_idx=0)

    out = jax.vmap(f, in_axes=(None, 0))(jnp.asarray(w), jnp.asarray(batch))
    for k in range(batch.shape[0]):
        ref, _, _ = torch_bag(batch[k], w, None, np.zeros((3, D)), mode=mode, padding_idx=0)
        close(out[k], ref)
    g = np.random.default_rng(13).standard_normal(out.shape)
    gw = jax.grad(lambda wj: jnp.sum(jax.vmap(f, in_axes=(None, 0))(wj, jnp.asarray(batch)) * g))(jnp.asarray(w))
    ref_gw = sum(torch_bag(batch[k], w, None, g[k], mode=mode, padding_idx=0)[1] for k in range(batch.shape[0]))
    close(gw, ref_gw)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_low_precision_jit(dtype: str) -> None:
    """ACC-LOWP / GRAD-ACC on JAX under jit: the weight's dtype out, values at the dtype's tolerance."""
    w = _w(14)
    wj = jnp.asarray(w).astype(dtype)
    wq = np.asarray(wj.astype(jnp.float64))
    g = np.random.default_rng(15).standard_normal((OFFS.shape[0], D))
    ref_out, ref_gw, _ = torch_bag(IDX1, wq, OFFS, g, mode="mean", padding_idx=2)
    f = jax.jit(lambda wj: xembed.embedding_bag(jnp.asarray(IDX1), wj, jnp.asarray(OFFS), mode="mean", padding_idx=2))
    out = f(wj)
    assert out.dtype == wj.dtype
    tol = {"float16": 4e-3, "bfloat16": 2.5e-2, "float32": 2e-5}[dtype]
    close(out, ref_out, tol, tol * 3)
    gw = jax.grad(lambda wj: jnp.sum(f(wj).astype(jnp.float32) * g.astype(np.float32)))(wj)
    assert gw.dtype == wj.dtype
    close(gw, ref_gw, tol, tol * 3)


def test_without_x64() -> None:
    """JAX's default (x64 off): float32 / int32 arrays work; SparseGrad.indices are int32 there."""
    with jax.enable_x64(False):
        wj = jnp.asarray(_w(16), dtype=jnp.float32)
        i = jnp.asarray(IDX2, dtype=jnp.int32)
        out = jax.jit(lambda wj: xembed.embedding_bag(i, wj, mode="sum"))(wj)
        assert out.dtype == jnp.float32
        ref, _, _ = torch_bag(IDX2, np.asarray(wj, dtype=np.float64), None, np.zeros((3, D)), mode="sum")
        close(out, ref, 2e-6, 2e-6)
        _, pb = xembed.embedding_vjp(i, wj, sparse=True)
        sg = pb(jnp.ones((*IDX2.shape, D), dtype=jnp.float32))
        assert sg.indices.dtype == jnp.int32


# ----------------------------------------------------------------------------------------------------------
# functional renorm


@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.0, math.inf])
@pytest.mark.parametrize("lib", ["numpy", "torch", "jax", "jax-jit", "array_api_strict"])
def test_renorm_functional_every_backend(lib: str, norm_type: float) -> None:
    """RENORM-FUNCTIONAL: xembed.renorm returns torch's in-place renormed table (to rounding), bit for bit what
    xembed's in-place renorm leaves on a mutable copy, and never modifies its argument."""
    w = _w(17) * 3
    idx = np.array([[0, 1, 1], [4, 8, 0]])
    ref = _t(w)
    tfn.embedding(_t(idx), ref, max_norm=1.5, norm_type=norm_type)  # torch renorms ref in place
    wj: Any
    ij: Any
    if lib == "numpy":
        wj, ij = w.copy(), idx
    elif lib == "torch":
        wj, ij = _t(w).requires_grad_(True), _t(idx)
    elif lib == "array_api_strict":
        wj, ij = xps.asarray(w), xps.asarray(idx)
    else:
        wj, ij = jnp.asarray(w), jnp.asarray(idx)
    if lib == "jax-jit":
        out = jax.jit(lambda wj, ij: xembed.renorm(wj, ij, 1.5, norm_type))(wj, ij)
    else:
        out = xembed.renorm(wj, ij, 1.5, norm_type)
    got = out.detach().numpy() if lib == "torch" else np.asarray(out)
    close(got, ref.numpy(), rtol=1e-15, atol=0)
    if not lib.startswith("jax"):  # a mutable copy of the same library, renormed in place (RENORM-INPLACE)
        inplace: Any = wj.detach().clone() if lib == "torch" else np.array(w) if lib == "numpy" else xps.asarray(w)
        xembed.embedding(ij, inplace, max_norm=1.5, norm_type=norm_type)
        np.testing.assert_array_equal(got, inplace.numpy() if lib == "torch" else np.asarray(inplace))
    before = wj.detach().numpy() if lib == "torch" else np.asarray(wj)
    np.testing.assert_array_equal(before, w)
    if lib == "torch":
        assert not out.requires_grad


def test_renorm_errors() -> None:
    """RENORM-ARGS, ERR-INDEX-RANGE for xembed.renorm (eager jax as NumPy)."""
    for wj, ij in ((np.ones((3, 2)), np.array([0, 3])), (jnp.ones((3, 2)), jnp.asarray([0, 3]))):
        with pytest.raises(IndexError, match="index 3 at position 1 of `input`"):
            xembed.renorm(wj, ij, 1.0)
    with pytest.raises(ValueError, match="`max_norm` must be > 0"):
        xembed.renorm(jnp.ones((3, 2)), jnp.asarray([0]), 0.0)
    with pytest.raises(TypeError, match="`max_norm`"):
        xembed.renorm(jnp.ones((3, 2)), jnp.asarray([0]), None)  # type: ignore[arg-type]


def test_max_norm_training_step_matches_torch() -> None:
    """README example: a jit'd train step with xembed.renorm applied by the loop follows torch's in-place
    max_norm training exactly (weights after 3 SGD steps)."""
    w = _w(18) * 2
    batches = [np.random.default_rng(s).integers(0, N, size=(4, 3)) for s in range(3)]
    wt = _t(w).requires_grad_(True)
    for b in batches:
        loss = (tfn.embedding_bag(_t(b), wt, mode="mean", max_norm=1.0) ** 2).sum()
        backward(loss, None)
        with torch.no_grad():
            wt -= 0.1 * grad_of(wt)
            wt.grad = None

    @jax.jit
    def step(wj: Any, i: Any) -> Any:
        g = jax.grad(lambda wj: jnp.sum(xembed.embedding_bag(i, wj, mode="mean", max_norm=1.0) ** 2))(wj)
        return xembed.renorm(wj, i, 1.0) - 0.1 * g

    wj = jnp.asarray(w)
    for b in batches:
        wj = step(wj, jnp.asarray(b))
    close(wj, wt.detach().numpy())


# ----------------------------------------------------------------------------------------------------------
# invalid values: eagerly NumPy's errors; under jit NaN rows or checkify


def _invalid_cases() -> list[Any]:
    return [
        pytest.param("embedding", {"input": [[0, 9]]}, IndexError, id="index-too-large"),
        pytest.param("embedding", {"input": [-1, 0]}, IndexError, id="index-negative"),
        pytest.param("bag", {"input": [0, 1, 9], "offsets": [0, 2]}, IndexError, id="bag-index"),
        pytest.param("bag", {"input": [0, 1, 2], "offsets": [1, 2]}, ValueError, id="offsets-first"),
        pytest.param("bag", {"input": [0, 1, 2], "offsets": [0, 2, 1]}, ValueError, id="offsets-decreasing"),
        pytest.param("bag", {"input": [0, 1, 2], "offsets": [0, 4]}, ValueError, id="offsets-end"),
        pytest.param("bag", {"input": [0, 1, 2], "offsets": [0, 2], "include_last_offset": True}, ValueError,
                     id="last-offset"),
    ]


def _call(fn: str, lib: Any, w: Any, case: dict[str, Any]) -> Any:
    kw = {k: v for k, v in case.items() if k not in ("input", "offsets")}
    i = lib.asarray(case["input"])
    if fn == "embedding":
        return xembed.embedding(i, w, **kw)
    return xembed.embedding_bag(i, w, lib.asarray(case["offsets"]), mode="sum", **kw)


@pytest.mark.parametrize(("fn", "case", "exc"), _invalid_cases())
def test_eager_errors_as_numpy(fn: str, case: dict[str, Any], exc: type[Exception]) -> None:
    """ERR-*: eager jax arrays raise NumPy's exception with NumPy's message (value checks run: they are concrete)."""
    with pytest.raises(exc) as np_err:
        _call(fn, np, np.ones((N, D)), case)
    with pytest.raises(exc) as jax_err:
        _call(fn, jnp, jnp.ones((N, D)), case)
    assert str(jax_err.value) == str(np_err.value)
    with pytest.raises(exc):  # also under jax.grad (the indices stay concrete)
        jax.grad(lambda wj: jnp.sum(_call(fn, jnp, wj, case)))(jnp.ones((N, D)))


def test_jit_invalid_index_gives_nan_rows_never_clamped() -> None:
    """JIT-INVALID-INDEX: under jit an out-of-range or negative index gives a NaN output row (embedding) or a NaN
    bag (every mode: a max bag too, whatever the position); other rows are exact; its gradient contribution is
    dropped; the weight stays unchanged."""
    w = _w(19)
    wj = jnp.asarray(w)
    out = jax.jit(lambda wj, i: xembed.embedding(i, wj))(wj, jnp.asarray([[1, N], [-1, 2]]))
    assert np.isnan(np.asarray(out[0, 1])).all()
    assert np.isnan(np.asarray(out[1, 0])).all()
    close(out[0, 0], w[1])
    close(out[1, 1], w[2])
    for mode in ("sum", "mean", "max"):
        f = jax.jit(lambda wj, i, o, mode=mode: xembed.embedding_bag(i, wj, o, mode=mode))
        out = f(wj, jnp.asarray([0, 1, 4, N + 3, 2, -5]), jnp.asarray([0, 3, 5]))
        ref, _, _ = torch_bag(np.array([0, 1, 4]), w, np.array([0]), np.zeros((1, D)), mode=mode)
        close(out[0], ref[0])
        assert np.isnan(np.asarray(out[1:])).all(), mode
    gw = jax.jit(jax.grad(lambda wj: jnp.nansum(xembed.embedding(jnp.asarray([1, N, 1]), wj))))(wj)
    expected = np.zeros_like(w)
    expected[1] = 2.0
    close(gw, expected)
    close(jax.jit(lambda wj: xembed.renorm(wj, jnp.asarray([-1, N]), 0.1))(wj), w, 0, 0)


@pytest.mark.parametrize(("offsets", "last"), [([1, 2], False), ([0, 2, 1], False), ([0, 4], False), ([0, 2], True)],
                         ids=["first", "decreasing", "end", "last-offset"])
def test_jit_invalid_offsets_give_all_nan(offsets: list[int], last: bool) -> None:
    """JIT-INVALID-OFFSETS: under jit, offsets breaking ERR-OFFSETS-* make the whole output NaN."""
    f = jax.jit(lambda wj, o: xembed.embedding_bag(jnp.asarray([0, 1, 2]), wj, o, include_last_offset=last))
    out = f(jnp.asarray(_w(20)), jnp.asarray(offsets))
    assert out.shape == (len(offsets) - last, D)
    assert np.isnan(np.asarray(out)).all()


def test_jit_checkify_opt_in() -> None:
    """JIT-CHECKIFY: inside xembed.jit_value_checks() a checkify-wrapped jit function reports the bad index /
    offsets naming the argument and the value; valid inputs report nothing."""
    def f(wj: Any, i: Any, o: Any) -> Any:
        return xembed.embedding_bag(i, wj, o, mode="sum")

    wj = jnp.asarray(_w(21))
    with xembed.jit_value_checks():
        checked = jax.jit(checkify.checkify(f))
        err, out = checked(wj, jnp.asarray([0, 7, N + 2]), jnp.asarray([0, 1]))
        msg = err.get()
        assert msg is not None
        assert "index 11 at flat position 2 of `input`" in msg
        err, _ = checked(wj, jnp.asarray([0, 1, 2]), jnp.asarray([0, 5]))
        assert "`offsets`" in str(err.get())
        err, out = checked(wj, jnp.asarray([0, 1, 2]), jnp.asarray([0, 1]))
        assert err.get() is None
        close(out, tfn.embedding_bag(_t([0, 1, 2]), _t(_w(21)), _t([0, 1]), mode="sum").numpy())
        err, _ = checked(wj, jnp.asarray([0, 7, N + 2]), jnp.asarray([0, 1]))
        with pytest.raises(checkify.JaxRuntimeError, match="index 11"):
            err.throw()


# ----------------------------------------------------------------------------------------------------------
# sparse, modules, metadata errors


@JIT
def test_sparse_pullback_and_bcoo(jit: bool) -> None:
    """GRAD-SPARSE: embedding_bag_vjp(sparse=True) gives a SparseGrad of jax arrays with torch's layout (under
    jit too: SparseGrad is a pytree); to_bcoo() is a jax.experimental.sparse.BCOO of the same gradient."""
    w = _w(22)
    g = np.random.default_rng(23).standard_normal((OFFS.shape[0], D))
    wt = _t(w).requires_grad_(True)
    backward(tfn.embedding_bag(_t(IDX1), wt, _t(OFFS), mode="mean", sparse=True, padding_idx=None), _t(g))

    def f(wj: Any, gj: Any) -> Any:
        _, pb = xembed.embedding_bag_vjp(jnp.asarray(IDX1), wj, jnp.asarray(OFFS), mode="mean", sparse=True)
        return pb(gj)[0]

    sg = maybe_jit(f, jit)(jnp.asarray(w), jnp.asarray(g))
    assert isinstance(sg, xembed.SparseGrad)
    assert isinstance(sg.values, jax.Array)
    np.testing.assert_array_equal(np.asarray(sg.indices), grad_of(wt)._indices()[0].numpy())
    close(sg.values, grad_of(wt)._values().numpy())
    bcoo = sg.to_bcoo()
    from jax.experimental import sparse

    assert isinstance(bcoo, sparse.BCOO)
    assert bcoo.shape == (N, D)
    close(bcoo.todense(), grad_of(wt).to_dense().numpy())
    close(sg.to_dense(), grad_of(wt).to_dense().numpy())


def test_sparse_padding_traced_is_a_clear_error() -> None:
    """JIT-SPARSE-PAD: sparse=True + padding_idx in a pullback under jit raises (nnz depends on values); the
    forward works under jit; eager works."""
    wj, i = jnp.asarray(_w(24)), jnp.asarray([[1, 2], [2, 3]])
    _, pb = xembed.embedding_vjp(i, wj, padding_idx=2, sparse=True)
    assert pb(jnp.ones((2, 2, D))).nnz == 2
    with pytest.raises(NotImplementedError, match="`sparse`=True with `padding_idx`"):
        jax.jit(lambda wj, i: xembed.embedding_vjp(i, wj, padding_idx=2, sparse=True)[1](jnp.ones((2, 2, D))))(wj, i)
    # the forward alone needs no values: it works under jit (embedding_bag too, every mode)
    f = jax.jit(lambda wj, i: xembed.embedding_vjp(i, wj, padding_idx=2, sparse=True)[0])
    close(f(wj, i), _w(24)[np.asarray(i)])
    for mode in ("sum", "mean", "sqrtn"):
        fb = jax.jit(lambda wj, i, mode=mode: xembed.embedding_bag_vjp(i, wj, padding_idx=2, sparse=True, mode=mode)[0])
        close(fb(wj, i), np.asarray(xembed.embedding_bag(np.asarray(i), _w(24), padding_idx=2, mode=mode)))
    with pytest.raises(NotImplementedError, match="`sparse`=True with `padding_idx`"):
        jax.jit(lambda wj, i: xembed.embedding_bag_vjp(i, wj, padding_idx=2, sparse=True)[1](jnp.ones((2, D))))(wj, i)


def test_sparse_under_autodiff_is_dense() -> None:
    """JAX-SPARSE-AUTODIFF: through jax.grad a sparse=True call gives the dense gradient (a JAX cotangent has the
    primal's type); its values are torch's."""
    w = _w(25)
    g = np.random.default_rng(26).standard_normal((*IDX2.shape, D))
    _, ref = torch_emb(IDX2, w, g, sparse=True)
    gw = jax.grad(lambda wj: jnp.sum(xembed.embedding(jnp.asarray(IDX2), wj, sparse=True) * g))(jnp.asarray(w))
    assert isinstance(gw, jax.Array)
    assert gw.shape == (N, D)
    close(gw, ref)


def test_modules_on_jax() -> None:
    """Embedding / EmbeddingBag with xp=jax.numpy: padding row zeroed at construction, callable under jit."""
    emb = xembed.Embedding(N, D, padding_idx=0, xp=jnp, seed=0)
    assert isinstance(emb.weight, jax.Array)
    np.testing.assert_array_equal(np.asarray(emb.weight[0]), 0.0)
    i = jnp.asarray([[0, 3], [8, 8]])
    close(jax.jit(emb)(i), np.asarray(emb.weight)[np.asarray(i)])
    bag = xembed.EmbeddingBag.from_pretrained(jnp.asarray(_w(27)), mode="max")
    ref, _, _ = torch_bag(IDX2, _w(27), None, np.zeros((3, D)), mode="max")
    close(jax.jit(bag.__call__)(jnp.asarray(IDX2)), ref)


def test_metadata_errors_under_jit() -> None:
    """Metadata checks need no values: they raise under jit exactly as eagerly."""
    wj = jnp.ones((N, D))
    with pytest.raises(TypeError, match="`input` must have an integer dtype"):
        jax.jit(lambda wj: xembed.embedding(jnp.ones(3), wj))(wj)
    with pytest.raises(ValueError, match="`padding_idx` 9 is out of range"):
        jax.jit(lambda wj, i: xembed.embedding(i, wj, padding_idx=9))(wj, jnp.asarray([1]))
    with pytest.raises(NotImplementedError, match="per_sample_weights"):
        jax.jit(lambda wj, i: xembed.embedding_bag(i, wj, mode="max", per_sample_weights=jnp.ones((1, 2))))(
            wj, jnp.asarray([[1, 2]]))
    with pytest.raises(TypeError, match="one array library"):
        xembed.embedding(np.asarray([1]), wj)


# --------------------------------------------------------------------------------------------------------
# the conformance checker's jax-jit backend on value errors (JIT-INVALID-*)
# --------------------------------------------------------------------------------------------------------

_VALUE_ERROR_ROWS = ["*::error: index >= num_embeddings::error", "*::error: negative index::error",
                     "*offsets*::error"]


def test_checker_jit_value_error_rows_check_nan_rows() -> None:
    """Under jax-jit the checker's value-dependent error rows check JIT-INVALID-INDEX / -OFFSETS (NaN rows where
    the spec says, exact rows elsewhere) instead of an exception -- none is skipped -- and xembed passes them."""
    from xembed_conformance.runner import run_conformance

    rep = run_conformance("xembed", backend="jax-jit", max_examples=20, seed=0, strict=True, isolate=False,
                          only=_VALUE_ERROR_ROWS)
    status = {r["id"]: r["status"] for r in rep["results"]}
    assert set(status.values()) == {"pass"}, status
    # index >= N and negative index for both functions; offsets[0], offsets[-1] > len, decreasing, last offset
    assert len(status) >= 8, status


def _broken_jax_targets() -> dict[str, tuple[str, tuple[str, ...]]]:
    from checker_targets.jax_broken import BROKEN_JAX

    return BROKEN_JAX


@pytest.mark.parametrize("name", sorted(_broken_jax_targets()))
def test_checker_catches_broken_jax_targets(name: str) -> None:
    """A jit target that clamps, wraps or silently repairs invalid values (or NaNs the valid rows too) is caught
    by the checker's jax-jit backend, on the rows its defect breaks; an eager target that ignores max_norm on
    an immutable weight is caught although the checker allows the renorm's rounding there."""
    from xembed_conformance.runner import run_conformance

    backend, ids = _broken_jax_targets()[name]
    rep = run_conformance(f"checker_targets.jax_broken:{name}", backend=backend, max_examples=30, seed=0,
                          strict=True, isolate=False, only=list(ids))
    status = {r["id"]: r["status"] for r in rep["results"]}
    assert not rep["conforms"], f"{name} was not caught: {status}"
    assert "error" not in status.values(), status
    assert all(r["message"].startswith("output") for r in rep["results"] if r["status"] == "fail"), status
