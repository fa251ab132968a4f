"""xembed.embedding / embedding_vjp against torch.nn.functional.embedding (float64 CPU oracle) on every backend."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch  # the oracle: a missing install must fail, not skip
from xembed_testutils import (
    INDEX_DTYPES,
    assert_bitwise_equal,
    check_embedding,
    rows_with_norms,
    to_numpy,
)

import xembed

N, D = 7, 3
NORM_TYPES = [1.0, 2.0, 3.0, math.inf, 0.5]


def _weight(seed: int = 0, n: int = N, d: int = D) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d))


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize(
    "shape", [(), (0,), (1,), (9,), (3, 4), (2, 3, 2), (2, 0, 3), (1, 1, 1, 5)], ids=str
)
def test_input_shapes(backend, shape, index_dtype):
    idx = np.random.default_rng(1).integers(0, N, size=shape)  # N < size: duplicates
    out, _, _ = check_embedding(backend, idx, _weight(), index_dtype=index_dtype)
    assert tuple(out.shape) == (*tuple(shape), D)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (6,), (2, 5), (2, 2, 3)], ids=str)
def test_input_shapes_sparse_grad(backend, shape, index_dtype, sparse):
    idx = np.random.default_rng(2).integers(0, N, size=shape)
    check_embedding(backend, idx, _weight(), index_dtype=index_dtype, sparse=sparse)


# duplicates within a row and across rows; contains the padding candidates 0, 3 and N-1
IDX_2D = np.array([[3, 1, 3, 6], [0, 3, 6, 6], [2, 2, 5, 3]])


@pytest.mark.parametrize(
    ("scale_grad_by_freq", "sparse"), [(False, False), (True, False), (False, True)], ids=["plain", "sgbf", "sparse"]
)
@pytest.mark.parametrize("padding_idx", [None, 0, 3, 6, -1, -4, -7])
def test_options(backend, padding_idx, scale_grad_by_freq, sparse):
    out, gw, _ = check_embedding(
        backend, IDX_2D, _weight(3), padding_idx=padding_idx, scale_grad_by_freq=scale_grad_by_freq, sparse=sparse
    )
    if padding_idx is not None:
        p = padding_idx % N
        # the padding row is returned as stored, not zeroed ...
        o = to_numpy(out)
        stored = _weight(3)[p]
        assert np.all(o[p == IDX_2D] == stored)
        assert np.any(stored != 0)
        # ... and its gradient is zero
        g = to_numpy(gw.to_dense() if sparse else gw)
        assert np.all(g[p] == 0)


@pytest.mark.parametrize("padding_idx", [None, 2, -1])
@pytest.mark.parametrize("norm_type", NORM_TYPES, ids=lambda p: f"p{p}")
def test_max_norm(backend, norm_type, padding_idx):
    rng = np.random.default_rng(4)
    # norms clearly on both sides of max_norm=1.0; row 5 (unreferenced) is large and must stay untouched
    w = rows_with_norms(rng, [0.3, 2.0, 3.5, 0.7, 1.6, 5.0, 4.0], D, norm_type)
    idx = np.array([[0, 1, 2], [2, 3, 4], [6, 6, 1]])
    _, _, w_after = check_embedding(backend, idx, w, max_norm=1.0, norm_type=norm_type, padding_idx=padding_idx)
    after = to_numpy(w_after)
    assert np.array_equal(after[5], w[5]), "a row not referenced by the input must not be renormalised"
    assert np.array_equal(after[0], w[0]), "rows under max_norm must be untouched (RENORM-STRICT)"
    assert np.array_equal(after[3], w[3]), "rows under max_norm must be untouched (RENORM-STRICT)"
    if padding_idx is not None:
        # the padding row is referenced, so it is renormalised like any other (torch renorms every index)
        assert not np.array_equal(after[padding_idx % N], w[padding_idx % N])


@pytest.mark.parametrize(
    ("scale_grad_by_freq", "sparse"), [(True, False), (False, True)], ids=["sgbf", "sparse"]
)
@pytest.mark.parametrize("norm_type", [2.0, math.inf], ids=lambda p: f"p{p}")
def test_max_norm_with_grad_options(backend, norm_type, scale_grad_by_freq, sparse):
    rng = np.random.default_rng(5)
    w = rows_with_norms(rng, [0.3, 2.0, 3.5, 0.7, 1.6, 5.0, 4.0], D, norm_type)
    check_embedding(
        backend,
        np.array([1, 1, 2, 0, 6, 1]),
        w,
        max_norm=1.5,
        norm_type=norm_type,
        scale_grad_by_freq=scale_grad_by_freq,
        sparse=sparse,
        padding_idx=2,
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    ("norm_type", "row"), [(2.0, [3.0, 4.0]), (1.0, [2.0, -3.0]), (math.inf, [5.0, -1.0])], ids=["p2", "p1", "pinf"]
)
def test_max_norm_is_strict(backend, dtype, norm_type, row):
    """A row whose norm equals max_norm exactly is not renormalised (strict ``>``)."""
    backend.require_dtype(dtype)
    w_np = np.array([row, [6.0, 8.0], [0.5, 0.5]])
    w = backend.asarray(w_np, dtype)
    before = backend.asarray(w_np, dtype)
    xembed.embedding(backend.asarray(np.array([0, 2]), "int64"), w, max_norm=5.0, norm_type=norm_type)
    assert_bitwise_equal(w, before, "rows with norm <= max_norm must be bit-identical")
    check_embedding(backend, np.array([0, 1, 2]), w_np, dtype=dtype, max_norm=5.0, norm_type=norm_type)


def test_max_norm_epsilon(backend):
    """scale = max_norm / (norm + 1e-7): the renormalised row ends strictly below max_norm."""
    w_np = np.array([[6.0, 8.0], [1.0, 0.0]])
    _, _, w_after = check_embedding(backend, np.array([0]), w_np, max_norm=5.0)
    after = to_numpy(w_after)
    expected = w_np[0] * (5.0 / (10.0 + 1e-7))
    np.testing.assert_allclose(after[0], expected, rtol=1e-15, atol=0)
    assert np.linalg.norm(after[0]) < 5.0


def test_max_norm_forward_reads_renormed_rows(backend):
    w_np = np.array([[30.0, 40.0], [0.1, 0.2], [-3.0, 0.0]])
    out, _, w_after = check_embedding(backend, np.array([[0, 1], [2, 0]]), w_np, max_norm=1.0)
    o, after = to_numpy(out), to_numpy(w_after)
    np.testing.assert_array_equal(o[0, 0], after[0])
    np.testing.assert_array_equal(o[1, 1], after[0])
    np.testing.assert_array_equal(o[1, 0], after[2])


def test_max_norm_repeated_calls_idempotent(backend):
    """A second call with the same max_norm finds the rows already under it (norm < max_norm because of +1e-7)."""
    w_np = np.array([[30.0, 40.0], [0.1, 0.2], [-3.0, 0.0]])
    w = backend.asarray(w_np)
    i = backend.asarray(np.array([0, 2]))
    xembed.embedding(i, w, max_norm=1.0)
    once = to_numpy(w)
    xembed.embedding(i, w, max_norm=1.0)
    np.testing.assert_array_equal(to_numpy(w), once)


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"padding_idx": 1},
        {"scale_grad_by_freq": True, "padding_idx": -2},
        {"sparse": True, "padding_idx": 0},
        {"max_norm": 1.0, "norm_type": 2.0},
        {"max_norm": 1.0, "norm_type": 1.0, "sparse": True},
    ],
    ids=["plain", "pad", "sgbf", "sparse", "maxnorm2", "maxnorm1_sparse"],
)
def test_dtypes(backend, dtype, index_dtype, options):
    rng = np.random.default_rng(6)
    if "max_norm" in options:
        w = rows_with_norms(rng, [0.4, 2.0, 3.0, 0.6, 1.7, 2.6, 0.2], 4, options["norm_type"])
    else:
        w = rng.standard_normal((N, 4))
    idx = rng.integers(0, N, size=(3, 5))
    check_embedding(backend, idx, w, dtype=dtype, index_dtype=index_dtype, **options)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_low_precision_gradient_accumulates_in_fp32(backend, dtype):
    """3000 positions of the same row: the gradient is 3000 rounded once to the weight dtype (torch CPU, which
    accumulates in fp16, gives 2048; GRAD-ACC requires fp32 accumulation)."""
    backend.require_dtype(dtype)
    w = backend.asarray(np.ones((4, 2)), dtype)
    idx = backend.asarray(np.full(3000, 1), "int64")
    _out, pullback = xembed.embedding_vjp(idx, w)
    g = pullback(backend.asarray(np.ones((3000, 2)), dtype))
    expected = float(torch.tensor(3000.0).to(getattr(torch, dtype)))  # 3000 (fp16, fp32), 3008 (bf16)
    got = to_numpy(g)
    np.testing.assert_array_equal(got[1], [expected, expected])
    np.testing.assert_array_equal(got[[0, 2, 3]], 0)


@pytest.mark.parametrize("index_dtype", ["int8", "int16", "uint8"])
def test_other_integer_index_dtypes_accepted(backend, index_dtype):
    """xembed accepts any integer dtype for indices (documented extension; torch only int32/int64)."""
    check_embedding(backend, np.array([[1, 0, 6], [6, 6, 2]]), _weight(7), index_dtype=index_dtype, padding_idx=6)


def test_zero_dim_input(backend):
    out, _gw, _ = check_embedding(backend, np.array(4), _weight(8))
    assert tuple(out.shape) == (D,)
    np.testing.assert_array_equal(to_numpy(out), _weight(8)[4])


def test_does_not_modify_weight_without_max_norm(backend):
    w_np = _weight(9) * 100
    w = backend.asarray(w_np)
    xembed.embedding(backend.asarray(np.array([0, 1, 2, 2])), w, padding_idx=1, scale_grad_by_freq=True)
    np.testing.assert_array_equal(to_numpy(w), w_np)


def test_does_not_modify_input(backend):
    i_np = np.array([[1, 2], [2, 6]])
    i = backend.asarray(i_np)
    xembed.embedding_vjp(i, backend.asarray(_weight(10)), padding_idx=-1, max_norm=0.5)[1](
        backend.asarray(np.ones((2, 2, D)))
    )
    np.testing.assert_array_equal(to_numpy(i), i_np)


@pytest.mark.skip_backend("array_api_strict", reason="the standard has no view semantics for slices")
@pytest.mark.skip_backend("jax",
                          reason="immutable arrays: no views, no in-place renorm (RENORM-FUNCTIONAL, test_jax.py)")
@pytest.mark.parametrize("layout", ["strided_view", "transposed"])
def test_max_norm_in_place_on_non_contiguous_weight(backend, layout):
    """Renorm happens in place on the caller's array, also when it is a non-contiguous view."""
    rng = np.random.default_rng(11)
    w_np = rows_with_norms(rng, [3.0, 0.5, 2.0, 4.0], D, 2.0)
    if layout == "strided_view":
        base_np = np.zeros((4, 2 * D))
        base_np[:, ::2] = w_np
        base = backend.asarray(base_np)
        w = base[:, ::2]
    else:
        base = backend.asarray(np.ascontiguousarray(w_np.T))
        w = base.T
    assert not (w.flags["C_CONTIGUOUS"] if hasattr(w, "flags") else w.is_contiguous())
    idx = np.array([0, 1, 3])
    out = xembed.embedding(backend.asarray(idx), w, max_norm=1.0)
    wt = torch.tensor(w_np)
    ref = torch.nn.functional.embedding(torch.tensor(idx), wt, max_norm=1.0)
    np.testing.assert_allclose(to_numpy(out), ref.numpy(), rtol=1e-12)
    np.testing.assert_allclose(to_numpy(w), wt.numpy(), rtol=1e-12)
    # the change is visible through the base array the view came from
    b = to_numpy(base)
    seen = b[:, ::2] if layout == "strided_view" else b.T
    np.testing.assert_allclose(seen, wt.numpy(), rtol=1e-12)
    if layout == "strided_view":
        np.testing.assert_array_equal(b[:, 1::2], 0)


@pytest.mark.parametrize("norm_type", NORM_TYPES, ids=lambda p: f"p{p}")
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_low_precision_renorm_matches_torch_same_dtype(backend, dtype, norm_type):
    """Weight-after-call in low precision vs torch CPU renormalising its own copy in the same dtype: equal to
    within one unit in the last place (norm rounded to the dtype, scale from float64, multiply rounded once)."""
    backend.require_dtype(dtype)
    rng = np.random.default_rng(30)
    w_np = rng.standard_normal((40, 8)) * rng.uniform(0.2, 4.0, size=(40, 1))
    w = backend.asarray(w_np, dtype)
    wt = torch.tensor(to_numpy(w)).to(getattr(torch, dtype))
    idx = np.arange(40)
    xembed.embedding(backend.asarray(idx), w, max_norm=1.0, norm_type=norm_type)
    if backend.is_immutable:  # RENORM-FUNCTIONAL: the table the call read is xembed.renorm's
        w = xembed.renorm(w, backend.asarray(idx), max_norm=1.0, norm_type=norm_type)
    torch.nn.functional.embedding(torch.tensor(idx), wt, max_norm=1.0, norm_type=norm_type)
    # float32: the norms differ by an ulp or two between summation orders, hence 4 ulps
    ulp = {"float16": 2.0**-10, "bfloat16": 2.0**-7, "float32": 2.0**-21}[dtype]
    np.testing.assert_allclose(to_numpy(w).astype(np.float64), wt.to(torch.float64).numpy(), rtol=ulp, atol=0)
