"""Correctness tests of the fast NumPy primitives (src/xembed/_primitives/_numpy_fast.py) against naive loops.

Part of the test-suite (the primitives' contracts are in src/xembed/_primitives/_fallback.py).
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pytest

from xembed._primitives import _numpy_fast as nf


def ref_sum(weight, idx, offsets, scale):
    B = len(offsets) - 1
    out = np.zeros((B, weight.shape[1]), np.float64)
    for b in range(B):
        for i in range(offsets[b], offsets[b + 1]):
            s = 1.0 if scale is None else float(scale[i])
            out[b] += s * weight[idx[i]].astype(np.float64)
    return out


def ref_max(weight, idx, offsets, valid):
    B = len(offsets) - 1
    D = weight.shape[1]
    vals = np.zeros((B, D), weight.dtype)
    arg = np.full((B, D), -1, np.int64)
    for b in range(B):
        for d in range(D):
            for i in range(offsets[b], offsets[b + 1]):
                if valid is not None and not valid[i]:
                    continue
                x = weight[idx[i], d]
                if arg[b, d] == -1 or x > vals[b, d]:
                    vals[b, d] = x
                    arg[b, d] = i
    return vals, arg


def random_case(rng, *, n_bags, n_rows, dim, maxlen, dtype=np.float32, idx_dtype=np.int64, empty_frac=0.2):
    lens = rng.integers(0, maxlen + 1, n_bags)
    lens[rng.random(n_bags) < empty_frac] = 0
    offsets = np.zeros(n_bags + 1, np.int64)
    np.cumsum(lens, out=offsets[1:])
    n = int(offsets[-1])
    idx = rng.integers(0, n_rows, n).astype(idx_dtype)
    weight = rng.standard_normal((n_rows, dim)).astype(dtype)
    return weight, idx, offsets


def _seed(*parts: Any) -> int:
    """A seed that is the same in every run (``hash(str)`` is salted per process)."""
    return zlib.crc32(repr(parts).encode())


CASES = [
    {"n_bags": 1, "n_rows": 3, "dim": 1, "maxlen": 1},
    {"n_bags": 7, "n_rows": 5, "dim": 3, "maxlen": 4},
    {"n_bags": 40, "n_rows": 50, "dim": 8, "maxlen": 30},
    {"n_bags": 300, "n_rows": 1000, "dim": 16, "maxlen": 12},
    {"n_bags": 5, "n_rows": 20, "dim": 4, "maxlen": 200},  # long bags relative to small blocks
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("idx_dtype", [np.int64, np.int32])
@pytest.mark.parametrize("with_scale", [False, True])
@pytest.mark.parametrize("block_bytes", [None, 256])
def test_gather_segment_sum(case, dtype, idx_dtype, with_scale, block_bytes):
    rng = np.random.default_rng(_seed(case, dtype, with_scale))
    weight, idx, offsets = random_case(rng, dtype=dtype, idx_dtype=idx_dtype, **case)
    scale = rng.standard_normal(len(idx)).astype(dtype) if with_scale else None
    acc = np.float32 if dtype == np.float16 else dtype
    got = nf.gather_segment_sum(weight, idx, offsets, scale, acc, block_bytes=block_bytes)
    assert got.dtype == np.dtype(acc)
    assert got.shape == (len(offsets) - 1, weight.shape[1])
    want = ref_sum(weight, idx, offsets, scale)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1, np.abs(want).max(initial=0)))


def test_gather_segment_sum_fp16_accumulates_in_fp32():
    weight = np.ones((2, 3), np.float16)
    idx = np.zeros(3000, np.int64)
    offsets = np.array([0, 3000])
    got = nf.gather_segment_sum(weight, idx, offsets, None, np.float32)
    assert got.dtype == np.float32
    assert (got == 3000).all()


def test_gather_segment_sum_fixed_length_and_all_empty():
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((10, 4)).astype(np.float32)
    idx = rng.integers(0, 10, 12)
    offsets = np.arange(0, 13, 3)
    np.testing.assert_allclose(nf.gather_segment_sum(weight, idx, offsets, None, np.float32),
                               ref_sum(weight, idx, offsets, None), rtol=1e-5, atol=1e-5)
    out = nf.gather_segment_sum(weight, idx[:0], np.zeros(4, np.int64), None, np.float32)
    assert out.shape == (3, 4)
    assert not out.any()
    out = nf.gather_segment_sum(weight, idx[:0], np.zeros(1, np.int64), None, np.float32)
    assert out.shape == (0, 4)


def test_gather_segment_sum_padding_slots_do_not_leak_inf():
    # a block pads shorter bags; the padded slots must contribute exactly 0 even if row 0 is inf
    weight = np.array([[np.inf, 1.0], [1.0, 2.0]], np.float32)
    idx = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1])
    offsets = np.array([0, 8, 9, 18])
    got = nf.gather_segment_sum(weight, idx, offsets, None, np.float32)
    np.testing.assert_array_equal(got, [[8, 16], [1, 2], [np.inf, 17]])
    scale = np.ones(len(idx), np.float32)
    got = nf.gather_segment_sum(weight, idx, offsets, scale, np.float32)
    np.testing.assert_array_equal(got, [[8, 16], [1, 2], [np.inf, 17]])


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("idx_dtype", [np.int64, np.int32])
@pytest.mark.parametrize("with_valid", [False, True])
@pytest.mark.parametrize("block_bytes", [None, 256])
def test_gather_segment_max(case, dtype, idx_dtype, with_valid, block_bytes):
    rng = np.random.default_rng(_seed(case, dtype, with_valid))
    weight, idx, offsets = random_case(rng, dtype=dtype, idx_dtype=idx_dtype, **case)
    # ties, NaNs, infinities, signed zeros
    weight = np.round(weight).astype(dtype)
    flat = weight.reshape(-1)
    k = flat.size
    flat[rng.random(k) < 0.05] = np.nan
    flat[rng.random(k) < 0.03] = -np.inf
    flat[rng.random(k) < 0.03] = -0.0
    valid = rng.random(len(idx)) < 0.7 if with_valid else None
    vals, arg = nf.gather_segment_max(weight, idx, offsets, valid, block_bytes=block_bytes)
    rv, ra = ref_max(weight, idx, offsets, valid)
    assert vals.dtype == weight.dtype
    assert arg is not None
    assert arg.dtype == np.int64
    np.testing.assert_array_equal(arg, ra)
    np.testing.assert_array_equal(vals, rv)  # NaN == NaN for assert_array_equal
    assert (np.signbit(vals) == np.signbit(rv)).all()
    vals2, none = nf.gather_segment_max(weight, idx, offsets, valid, need_argpos=False, block_bytes=block_bytes)
    assert none is None
    np.testing.assert_array_equal(vals2, rv)
    assert (np.signbit(vals2) == np.signbit(rv)).all()


def test_gather_segment_max_semantics_examples():
    nan = np.nan
    weight = np.array([[1.0], [1.0], [nan], [2.0], [-0.0], [0.0]], np.float32)
    idx = np.array([0, 1, 2, 0, 3, 2, 4, 5, 0, 1])
    offsets = np.array([0, 2, 4, 6, 8, 8, 10])
    valid = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0], bool)
    vals, arg = nf.gather_segment_max(weight, idx, offsets, valid)
    assert arg is not None
    # tie -> first; leading NaN sticks; later NaN never chosen; -0 vs 0 -> first; empty; all-invalid
    np.testing.assert_array_equal(arg[:, 0], [0, 2, 4, 6, -1, -1])
    np.testing.assert_array_equal(vals[:, 0], [1.0, nan, 2.0, -0.0, 0.0, 0.0])
    assert np.signbit(vals[3, 0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("idx_dtype", [np.int64, np.int32])
@pytest.mark.parametrize(("n", "n_rows", "dim"), [(0, 5, 3), (1, 5, 3), (50, 7, 4), (500, 1000, 8), (300, 3, 2)])
def test_scatter_add_rows(dtype, idx_dtype, n, n_rows, dim):
    rng = np.random.default_rng(n * 7 + n_rows)
    idx = rng.integers(0, n_rows, n).astype(idx_dtype)
    rows = rng.standard_normal((n, dim)).astype(dtype)
    got = nf.scatter_add_rows(idx, rows, n_rows)
    want = np.zeros((n_rows, dim), np.float64)
    for i, r in zip(idx, rows, strict=True):
        want[i] += r.astype(np.float64)
    assert got.dtype == np.dtype(dtype)
    assert got.shape == (n_rows, dim)
    tol = 1e-10 if dtype == np.float64 else (1e-2 if dtype == np.float16 else 1e-4)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1, np.abs(want).max(initial=0)))


def test_scatter_add_rows_deterministic_and_fp32_accumulation():
    idx = np.zeros(3000, np.int64)
    rows = np.ones((3000, 2), np.float16)
    got = nf.scatter_add_rows(idx, rows, 2)
    assert got[0, 0] == 3000
    assert got[1, 0] == 0
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 10, 1000)
    rows = rng.standard_normal((1000, 5)).astype(np.float32)
    a = nf.scatter_add_rows(idx, rows, 10)
    b = nf.scatter_add_rows(idx, rows, 10)
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("with_scale", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_gather_scatter_add(with_scale, dtype):
    rng = np.random.default_rng(3)
    M, n, N, D = 7, 200, 15, 5
    src = rng.standard_normal((M, D)).astype(dtype)
    si = rng.integers(0, M, n).astype(np.int32)
    di = rng.integers(0, N, n)
    scale = rng.standard_normal(n).astype(dtype) if with_scale else None
    got = nf.gather_scatter_add(src, si, di, scale, N)
    want = np.zeros((N, D))
    for i in range(n):
        want[di[i]] += (1.0 if scale is None else float(scale[i])) * src[si[i]].astype(np.float64)
    acc = np.float32 if dtype == np.float16 else dtype
    assert got.dtype == np.dtype(acc)
    assert got.shape == (N, D)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


def test_non_contiguous_weight():
    rng = np.random.default_rng(5)
    big = rng.standard_normal((40, 12)).astype(np.float32)
    weight = big[::2, ::3]  # (20, 4), not contiguous
    _, idx, offsets = random_case(rng, n_bags=30, n_rows=20, dim=4, maxlen=9)
    got = nf.gather_segment_sum(weight, idx, offsets, None, np.float32)
    np.testing.assert_allclose(got, ref_sum(weight, idx, offsets, None), rtol=1e-5, atol=1e-5)
    vals, arg = nf.gather_segment_max(weight, idx, offsets, None)
    rv, ra = ref_max(weight, idx, offsets, None)
    np.testing.assert_array_equal(arg, ra)
    np.testing.assert_array_equal(vals, rv)
    got = nf.gather_segment_sum(weight, idx, offsets, None, np.float32, block_bytes=64)
    np.testing.assert_allclose(got, ref_sum(weight, idx, offsets, None), rtol=1e-5, atol=1e-5)
