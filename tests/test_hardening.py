"""Hostile and unusual inputs at the seams between paths: each case once crashed the interpreter, hung, modified
the weight, returned a silently different result or raised an untyped error (VAL-EXACT, ARR-NORMALIZE,
RENORM-WRITABLE, EMB-NDIM, GRAD-OUTPUT-ARGS, SPARSE-ARGS, PULLBACK-SNAPSHOT).

The crash-prone cases run in a child process (``run_isolated``): a regression shows up as a failed test
naming the signal, not as a dead test run.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import pytest
from xembed_testutils import assert_bitwise_equal

import xembed
from xembed import _validate

PRIMITIVE_MODES = ["auto", "native", "fallback"]


def _weight(n: int = 10, d: int = 4) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, d)).astype(np.float32) * 3


def run_isolated(code: str, timeout: float = 120) -> str:
    """Run ``code`` in a fresh interpreter; fail on a crash (negative return code), a hang or an exception."""
    try:
        res = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                             timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the child process did not finish in {timeout} s (hang)")
    assert res.returncode == 0, f"child exited with {res.returncode}:\n{res.stdout}\n{res.stderr}"
    return res.stdout


# --- VAL-EXACT: lengths and offsets in exact integer arithmetic ------------------------------------------

WRAPPING_LENGTHS = [
    # the int64 sum wraps to len(input) = 3 (once a segfault in the compiled kernels, a hang in pure NumPy)
    pytest.param(np.array([2**62] * 3 + [2**62 + 3], dtype=np.int64), r"lengths\[0\] = 4611686018427387904",
                 id="int64-sum-wraps"),
    # uint64 beyond int64's range: wrapped to -1 by a cast, the sum was 3 and the weight got renormed
    pytest.param(np.array([2**64 - 1, 4], dtype=np.uint64), r"lengths\[0\] = 18446744073709551615",
                 id="uint64-above-int64"),
    pytest.param(np.array([-1, 4], dtype=np.int64), r"non-negative, but lengths\[0\] = -1", id="negative"),
    pytest.param(np.array([1, 1], dtype=np.uint8), r"sum\(lengths\) = 2$", id="short-sum"),
]


@pytest.mark.parametrize(("lengths", "message"), WRAPPING_LENGTHS)
def test_val_exact_lengths_refused_before_renorm(lengths, message):
    """VAL-EXACT: every primitive path and mode refuses the lengths with a ValueError naming them, before the
    max_norm renorm (one child process runs them all)."""
    code = f"""
        import numpy as np, xembed
        from xembed import _primitives as prim
        W = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32) * 3
        W0 = W.copy()
        lengths = np.array({lengths.tolist()!r}, dtype=np.{lengths.dtype})
        for prim_mode in {PRIMITIVE_MODES!r}:
            for mode in ("sum", "min", "max", "mean"):
                with prim.use(prim_mode):
                    try:
                        xembed.embedding_bag(np.array([1, 2, 3]), W, lengths=lengths, mode=mode, max_norm=0.5)
                    except ValueError as e:
                        print(prim_mode, mode, "ValueError:", e)
                    else:
                        print(prim_mode, mode, "no error")
        print("unchanged:", np.array_equal(W, W0))
    """
    lines = run_isolated(code).splitlines()
    assert len(lines) == 4 * len(PRIMITIVE_MODES) + 1, lines
    for line in lines[:-1]:
        assert "ValueError:" in line, line
        assert "`lengths`" in line, line
        assert re.search(message, line), line
    assert lines[-1] == "unchanged: True"


def test_val_exact_derived_offsets_go_through_the_offsets_checks():
    """VAL-EXACT: a running sum that wrapped (decreasing derived offsets) is refused, naming `lengths`."""
    wrapped = np.array([0, 2**63 - 1, -(2**63)], dtype=np.int64)
    with pytest.raises(ValueError, match=r"running sum of `lengths` overflows .* at lengths\[1\]"):
        _validate.check_offsets_values(wrapped, 3, True, xembed._backends.resolve(None, x=wrapped)[0], source="lengths")


@pytest.mark.parametrize("prim_mode", PRIMITIVE_MODES)
def test_val_exact_unsigned_offsets_and_indices_above_int64(prim_mode):
    """VAL-EXACT: uint64 values beyond int64's range are reported exactly, never wrapped to negatives."""
    w = _weight()
    w0 = w.copy()
    big = 2**64 - 2
    with xembed._primitives.use(prim_mode):
        with pytest.raises(IndexError, match=rf"index {big} at position 1 of `input`"):
            xembed.embedding(np.array([1, big], dtype=np.uint64), w, max_norm=0.5)
        with pytest.raises(ValueError, match=rf"`offsets`\[-1\] = {big} is greater"):
            xembed.embedding_bag(np.array([1, 2], dtype=np.uint64), w, np.array([0, big], dtype=np.uint64),
                                 max_norm=0.5)
    assert_bitwise_equal(w, w0)


# --- PULLBACK-SNAPSHOT ----------------------------------------------------------------------------------

@pytest.mark.parametrize("prim_mode", PRIMITIVE_MODES)
@pytest.mark.parametrize("mode", ["sum", "mean", "max", "sqrtn"])
def test_pullback_snapshot_reused_index_buffer(prim_mode, mode):
    """PULLBACK-SNAPSHOT: refilling the index and offsets buffers after the forward (as a data loader does)
    changes nothing: the gradient equals the one pulled back before the buffers changed."""
    w = _weight()
    idx, offs = np.array([1, 2, 3, 4, 1]), np.array([0, 2])
    psw = np.linspace(0.5, 1.5, 5).astype(np.float32) if mode != "max" else None
    with xembed._primitives.use(prim_mode):
        out, pullback = xembed.embedding_bag_vjp(idx.copy(), w, offs.copy(), mode=mode, per_sample_weights=psw)
        g = np.random.default_rng(1).standard_normal(out.shape).astype(np.float32)
        expected = pullback(g)
        idx2, offs2 = idx.copy(), offs.copy()
        out2, pullback2 = xembed.embedding_bag_vjp(idx2, w, offs2, mode=mode,
                                                   per_sample_weights=None if psw is None else psw.copy())
        idx2[:] = 9
        offs2[:] = [0, 5]
        got = pullback2(g)
    assert_bitwise_equal(out2, out)
    assert_bitwise_equal(got[0], expected[0])
    if psw is not None:
        assert_bitwise_equal(got[1], expected[1])


def test_pullback_snapshot_weight_and_psw_written_after_forward():
    """PULLBACK-SNAPSHOT: the per_sample_weights gradient uses the rows and weights of the forward."""
    w, psw = _weight(), np.array([0.5, 2.0, 1.0], dtype=np.float32)
    idx, offs = np.array([1, 2, 3]), np.array([0, 1])
    out, pullback = xembed.embedding_bag_vjp(idx, w.copy(), offs, mode="sum", per_sample_weights=psw.copy())
    g = np.ones(out.shape, dtype=np.float32)
    expected = pullback(g)
    w2, psw2 = w.copy(), psw.copy()
    _, pullback2 = xembed.embedding_bag_vjp(idx, w2, offs, mode="sum", per_sample_weights=psw2)
    w2[:] = 0  # an optimizer step before the pullback
    psw2[:] = 7
    got = pullback2(g)
    assert_bitwise_equal(got[0], expected[0])
    assert_bitwise_equal(got[1], expected[1])
    assert np.any(got[1] != 0)


@pytest.mark.parametrize("sparse", [False, True])
def test_pullback_snapshot_embedding(sparse):
    """PULLBACK-SNAPSHOT: embedding_vjp, dense and sparse (the SparseGrad indices are the forward's)."""
    w = _weight()
    idx = np.array([[1, 2], [3, 1]])
    out, pullback = xembed.embedding_vjp(idx, w, sparse=sparse)
    idx[:] = 0
    grad = pullback(np.ones(out.shape, dtype=np.float32))
    dense = grad.to_dense() if sparse else grad
    assert dense[0].tolist() == [0.0] * 4
    assert dense[1].tolist() == [2.0] * 4


@pytest.mark.parametrize("prim_mode", PRIMITIVE_MODES)
def test_pullback_snapshot_out_of_range_written_after_forward(prim_mode):
    """An out-of-range value written into the index buffer after the forward never reaches a kernel (once a
    segfault in the compiled scatter)."""
    out = run_isolated(f"""
        import numpy as np, xembed
        W = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
        idx, offs = np.array([1, 2, 3, 4]), np.array([0, 2])
        with xembed._primitives.use({prim_mode!r}):
            for mode in ("sum", "mean", "max"):
                out, pullback = xembed.embedding_bag_vjp(idx, W, offs, mode=mode)
                expected = pullback(np.ones_like(out))[0]
                idx[:] = 10**9
                got = pullback(np.ones_like(out))[0]
                print(mode, np.array_equal(got, expected))
                idx[:] = [1, 2, 3, 4]
    """)
    assert out.split("\n")[:3] == ["sum True", "mean True", "max True"]


# --- ARR-NORMALIZE ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("prim_mode", PRIMITIVE_MODES)
def test_arr_normalize_masked_input_refused(prim_mode):
    """ARR-NORMALIZE: a masked array is a TypeError naming the argument (its masked 1000 and -5 were once
    clipped and wrapped by the pure-NumPy gather)."""
    w = _weight()
    masked = np.ma.masked_array([1, 1000, -5], mask=[False, True, True])
    with xembed._primitives.use(prim_mode):
        with pytest.raises(TypeError, match=r"`input` must not be a masked array"):
            xembed.embedding(masked, w)
        with pytest.raises(TypeError, match=r"`offsets` must not be a masked array"):
            xembed.embedding_bag(np.array([1, 2]), w, np.ma.masked_array([0, 1], mask=[False, True]))
        with pytest.raises(TypeError, match=r"`weight` must not be a masked array"):
            xembed.embedding_bag(np.array([1, 2]), np.ma.masked_array(w), np.array([0, 1]))
        with pytest.raises(TypeError, match=r"`weight` must not be a masked array"):
            xembed.embedding(np.array([1, 2]), np.ma.masked_array(w), max_norm=0.1)
        with pytest.raises(TypeError, match=r"`input` must not be a masked array"):
            xembed.renorm(w, masked, 0.5)
    assert_bitwise_equal(w, _weight())


@pytest.mark.parametrize("mode", ["sum", "mean", "max", "min", "sqrtn"])
def test_arr_normalize_big_endian_agrees_on_every_path(mode):
    """ARR-NORMALIZE: big-endian indices, offsets, per_sample_weights and weight give, on every primitive path,
    the bits the native-order arrays give (the compiled path once raised numba's internal TypingError)."""
    w = _weight()
    idx, offs = np.array([1, 2, 3, 9, 0]), np.array([0, 2, 2])
    psw = np.linspace(0.5, 1.5, 5).astype(np.float32) if mode in ("sum", "mean", "sqrtn") else None
    for prim_mode in PRIMITIVE_MODES:
        with xembed._primitives.use(prim_mode):
            expected = xembed.embedding_bag(idx, w, offs, mode=mode, per_sample_weights=psw)
            got = xembed.embedding_bag(idx.astype(">i8"), w.astype(">f4"), offs.astype(">i4"), mode=mode,
                                       per_sample_weights=None if psw is None else psw.astype(">f4"))
        assert got.dtype == np.float32
        assert got.dtype.isnative
        assert_bitwise_equal(got, expected, prim_mode)


def test_arr_normalize_big_endian_weight_renormed_in_place():
    """ARR-NORMALIZE + RENORM-INPLACE: the caller's big-endian weight is the one renormed."""
    w = _weight()
    w_be = w.astype(">f4")
    expected = xembed.embedding(np.array([1, 2]), w, max_norm=0.5)
    got = xembed.embedding(np.array([1, 2]), w_be, max_norm=0.5)
    assert_bitwise_equal(got, expected)
    assert np.array_equal(w_be.astype(np.float32), w)


def test_arr_normalize_subclass_and_strides():
    """ARR-NORMALIZE: an ndarray subclass is read as a plain array; negative and zero strides are read as is."""

    class Tagged(np.ndarray):
        pass

    w = _weight()
    idx = np.array([3, 1, 2, 2, 0, 5])
    expected = xembed.embedding_bag(idx[::-1].copy(), w, np.array([0, 3]), mode="max")
    for prim_mode in PRIMITIVE_MODES:
        with xembed._primitives.use(prim_mode):
            got = xembed.embedding_bag(idx.view(Tagged)[::-1], w.view(Tagged), np.array([0, 3]), mode="max")
            assert type(got) is np.ndarray
            assert_bitwise_equal(got, expected)
            bcast = np.broadcast_to(np.array([4]), (6,))
            assert_bitwise_equal(xembed.embedding(bcast, w), np.repeat(w[4:5], 6, axis=0))


def test_arr_normalize_torch_unsigned():
    """ARR-NORMALIZE on torch: uint16 / uint32 indices and lengths work like int64 (they once failed with
    '"lt_cpu" not implemented'); uint64 is a TypeError naming the argument."""
    torch = pytest.importorskip("torch")
    w = torch.tensor(_weight())
    expected = xembed.embedding_bag(torch.tensor([1, 2, 3]), w, lengths=torch.tensor([1, 2]), mode="sum")
    for dt in (torch.uint16, torch.uint32):
        got = xembed.embedding_bag(torch.tensor([1, 2, 3], dtype=dt), w, lengths=torch.tensor([1, 2], dtype=dt),
                                   mode="sum")
        assert torch.equal(got, expected)
        with pytest.raises(IndexError, match=r"index 200 at position 1 of `input`"):
            xembed.embedding(torch.tensor([1, 200], dtype=dt), w, max_norm=0.5)
        with pytest.raises(ValueError, match=r"lengths\[1\] = 7"):
            xembed.embedding_bag(torch.tensor([1, 2, 3]), w, lengths=torch.tensor([1, 7], dtype=dt))
    for name, kw in (("input", {"input": torch.tensor([1, 2], dtype=torch.uint64), "offsets": torch.tensor([0])}),
                     ("lengths", {"input": torch.tensor([1, 2]), "lengths": torch.tensor([2], dtype=torch.uint64)})):
        with pytest.raises(TypeError, match=rf"`{name}` has dtype torch.uint64"):
            xembed.embedding_bag(weight=w, **kw)


# --- typed errors naming the argument ----------------------------------------------------------------------

@pytest.mark.parametrize("prim_mode", PRIMITIVE_MODES)
def test_renorm_writable_read_only_weight(prim_mode):
    """RENORM-WRITABLE: a read-only weight with max_norm is a ValueError naming `weight`, nothing written (it
    once failed inside the renorm with numpy's 'assignment destination is read-only')."""
    w = _weight()
    w.setflags(write=False)
    w0 = w.copy()
    with xembed._primitives.use(prim_mode):
        with pytest.raises(ValueError, match=r"`weight` is read-only, but `max_norm`"):
            xembed.embedding(np.array([1, 2]), w, max_norm=0.1)
        with pytest.raises(ValueError, match=r"`weight` is read-only"):
            xembed.embedding_bag(np.array([[1, 2]]), np.broadcast_to(w0, w0.shape), max_norm=1e9)
        # without max_norm a read-only weight is fine
        assert_bitwise_equal(xembed.embedding(np.array([1]), w), w0[1:2])
    assert_bitwise_equal(w, w0)


@pytest.mark.parametrize("arg", ["max_norm", "norm_type"])
def test_renorm_args_beyond_float64(arg):
    """RENORM-ARGS: an int beyond float64's range is a ValueError naming the argument (was OverflowError)."""
    w = _weight()
    kw: dict[str, Any] = {"max_norm": 1.0, arg: 10**400}
    with pytest.raises(ValueError, match=rf"`{arg}` must be representable as a float64, got an integer of 401"):
        xembed.embedding(np.array([1]), w, **kw)


def test_emb_ndim_limit():
    """EMB-NDIM: 64 input dimensions is a ValueError naming `input` (was numpy's unnamed dimension error)."""
    w = _weight()
    with pytest.raises(ValueError, match=r"`input` must have fewer than 64 dimensions .* got 64"):
        xembed.embedding(np.zeros((1,) * 64, dtype=np.int64), w)
    assert xembed.embedding(np.zeros((1,) * 40, dtype=np.int64), w).shape == (1,) * 40 + (4,)


def test_grad_output_args():
    """GRAD-OUTPUT-ARGS: None or another library's array is a TypeError naming `grad_output`."""
    torch = pytest.importorskip("torch")
    w = _weight()
    _, pullback = xembed.embedding_vjp(np.array([1, 2]), w)
    with pytest.raises(TypeError, match=r"`grad_output` must be an array of the output's library, got NoneType"):
        pullback(None)
    with pytest.raises(TypeError, match=r"`grad_output` must be an array .* got torch.Tensor"):
        pullback(torch.ones(2, 4))
    _, bag_pullback = xembed.embedding_bag_vjp(np.array([[1, 2]]), w)
    with pytest.raises(TypeError, match=r"`grad_output`"):
        bag_pullback([[1.0] * 4])


def test_sparse_args_checked():
    """SPARSE-ARGS: a caller-built SparseGrad is checked; a negative index is never wrapped by to_dense()."""
    values = np.ones((1, 4), np.float32)
    with pytest.raises(IndexError, match=r"index -1 at position 0 of `indices`"):
        xembed.SparseGrad(np.array([-1]), values, (10, 4))
    with pytest.raises(IndexError, match=r"index 10 at position 0 of `indices`"):
        xembed.SparseGrad(np.array([10]), values, (10, 4))
    with pytest.raises(ValueError, match=r"`values` \(nnz, 3\)"):
        xembed.SparseGrad(np.array([1]), values, (10, 3))
    with pytest.raises(ValueError, match=r"`shape` must be two non-negative ints"):
        xembed.SparseGrad(np.array([1]), values, (10, -4))
    with pytest.raises(TypeError, match=r"`indices` must have an integer dtype"):
        xembed.SparseGrad(np.array([1.0]), values, (10, 4))
    grad = xembed.SparseGrad(np.array([9, 9]), np.ones((2, 4), np.float32), (10, 4))
    assert grad.to_dense()[9].tolist() == [2.0] * 4


def test_numba_boundscheck_run_catches_out_of_bounds(tmp_path):
    """The CI run with ``NUMBA_BOUNDSCHECK=1`` (and a fresh kernel cache, since numba's cache does not key on
    that flag) turns an out-of-bounds read in a compiled kernel into an IndexError instead of a memory read."""
    pytest.importorskip("numba")
    out = run_isolated(f"""
        import os
        os.environ["NUMBA_BOUNDSCHECK"] = "1"
        os.environ["NUMBA_CACHE_DIR"] = {str(tmp_path)!r}
        import numpy as np
        from xembed import _primitives as prim
        w = np.ones((4, 3), np.float32)
        with prim.use("numba"):
            try:
                prim.gather_segment_sum(w, np.array([1, 50]), np.array([0, 1, 2]), None, np.float32, xp=np)
            except IndexError as e:
                print("IndexError:", e)
    """)
    assert out.startswith("IndexError: index is out of bounds"), out


def test_val_exact_lengths_on_jax_eager_and_traced():
    """VAL-EXACT on JAX (int32 without x64): eagerly a ValueError naming `lengths`; under jit the derived offsets
    follow JIT-INVALID-OFFSETS (every row NaN), never a silently wrapped sum (once silently wrong on JAX)."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    w = jnp.asarray(_weight())
    idx = jnp.array([1, 2, 3])
    wrapping = jnp.array([2**30, 2**30 + 3], dtype=jnp.int32)  # the int32 running sum wraps
    with pytest.raises(ValueError, match=r"lengths\[0\] = 1073741824"):
        xembed.embedding_bag(idx, w, lengths=wrapping, mode="sum")
    traced = jax.jit(lambda lengths: xembed.embedding_bag(idx, w, lengths=lengths, mode="sum"))
    for bad in (wrapping, jnp.array([-1, 4], dtype=jnp.int32)):
        assert bool(jnp.all(jnp.isnan(traced(bad))))
    good = traced(jnp.array([1, 2], dtype=jnp.int32))
    assert_bitwise_equal(good, xembed.embedding_bag(idx, w, lengths=jnp.array([1, 2]), mode="sum"))
