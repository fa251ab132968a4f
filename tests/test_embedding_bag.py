"""xembed.embedding_bag / embedding_bag_vjp against torch.nn.functional.embedding_bag (float64 CPU oracle)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch  # the oracle: a missing install must fail, not skip
from xembed_testutils import (
    INDEX_DTYPES,
    assert_like_weight,
    check_embedding_bag,
    rows_with_norms,
    to_numpy,
)

import xembed

N, D = 7, 3
MODES = ["sum", "mean", "max"]
NORM_TYPES = [1.0, 2.0, 3.0, math.inf, 0.5]

# bags: [2,4] [] [4,2,2] [2,2] [1] [0,4,3,2,5,4] [6,6] [6,1,6]  (empty bag; duplicates within and across bags;
# all-padding bags for padding_idx 2 and 6/-1)
IDX_1D = np.array([2, 4, 4, 2, 2, 2, 2, 1, 0, 4, 3, 2, 5, 4, 6, 6, 6, 1, 6])
OFFSETS = np.array([0, 2, 2, 5, 7, 8, 14, 16])
IDX_2D = np.array([[2, 4, 4, 1], [2, 2, 2, 2], [6, 0, 6, 3], [5, 5, 2, 6]])

GRAD_OPTIONS = {
    "sum": [(False, False), (True, False), (False, True)],
    "mean": [(False, False), (True, False), (False, True)],
    "max": [(False, False)],
}
MODE_OPTS = [
    pytest.param(m, sgbf, sp, id=f"{m}-{'sgbf' if sgbf else 'sparse' if sp else 'plain'}")
    for m in MODES
    for sgbf, sp in GRAD_OPTIONS[m]
]


def _weight(seed: int = 0, n: int = N, d: int = D) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d))


N_IDX_1D = len(IDX_1D)


def _offsets(include_last_offset: bool, offsets=OFFSETS, n=N_IDX_1D) -> np.ndarray:
    return np.append(offsets, n) if include_last_offset else offsets


@pytest.mark.parametrize("include_last_offset", [False, True], ids=["", "ilo"])
@pytest.mark.parametrize("padding_idx", [None, 2, 6, -1, -5])
@pytest.mark.parametrize(("mode", "scale_grad_by_freq", "sparse"), MODE_OPTS)
def test_offsets(backend, mode, scale_grad_by_freq, sparse, padding_idx, include_last_offset):
    out, *_ = check_embedding_bag(
        backend,
        IDX_1D,
        _weight(1),
        _offsets(include_last_offset),
        mode=mode,
        scale_grad_by_freq=scale_grad_by_freq,
        sparse=sparse,
        padding_idx=padding_idx,
        include_last_offset=include_last_offset,
    )
    o = to_numpy(out)
    assert o.shape == (len(OFFSETS), D)
    np.testing.assert_array_equal(o[1], 0, err_msg="empty bag must give zeros")
    if padding_idx is not None and padding_idx % N in (2, 6):
        all_pad_bag = 3 if padding_idx % N == 2 else 6
        np.testing.assert_array_equal(o[all_pad_bag], 0, err_msg="all-padding bag must give zeros")


@pytest.mark.parametrize("include_last_offset", [False, True], ids=["", "ilo_ignored"])
@pytest.mark.parametrize("padding_idx", [None, 2, -1])
@pytest.mark.parametrize(("mode", "scale_grad_by_freq", "sparse"), MODE_OPTS)
def test_2d_input(backend, mode, scale_grad_by_freq, sparse, padding_idx, include_last_offset):
    out, *_ = check_embedding_bag(
        backend,
        IDX_2D,
        _weight(2),
        mode=mode,
        scale_grad_by_freq=scale_grad_by_freq,
        sparse=sparse,
        padding_idx=padding_idx,
        include_last_offset=include_last_offset,
    )
    assert tuple(out.shape) == (4, D)
    if padding_idx == 2:
        np.testing.assert_array_equal(to_numpy(out)[1], 0)


@pytest.mark.parametrize(("sparse", "scale_grad_by_freq"), [(False, False), (True, False), (False, True)],
                         ids=["dense", "sparse", "sgbf"])
@pytest.mark.parametrize("padding_idx", [None, 2, -1])
@pytest.mark.parametrize("layout", ["offsets", "offsets_ilo", "2d"])
def test_per_sample_weights(backend, layout, padding_idx, sparse, scale_grad_by_freq):
    rng = np.random.default_rng(3)
    if layout == "2d":
        idx, offs, ilo = IDX_2D, None, False
    else:
        ilo = layout == "offsets_ilo"
        idx, offs = IDX_1D, _offsets(ilo)
    psw = rng.standard_normal(idx.shape)
    _, _, gp, _ = check_embedding_bag(
        backend, idx, _weight(3), offs, psw, mode="sum", sparse=sparse, padding_idx=padding_idx,
        include_last_offset=ilo, scale_grad_by_freq=scale_grad_by_freq,
    )
    if padding_idx is not None:
        np.testing.assert_array_equal(to_numpy(gp)[idx == padding_idx % N], 0)


@pytest.mark.parametrize("norm_type", NORM_TYPES, ids=lambda p: f"p{p}")
def test_per_sample_weights_with_max_norm(backend, norm_type):
    """psw gradient = dot(g, renormed row): the gradient sees the weight as renormalised by the call."""
    rng = np.random.default_rng(4)
    w = rows_with_norms(rng, [0.3, 2.0, 3.5, 0.7, 1.6, 5.0, 4.0], D, norm_type)
    psw = rng.standard_normal(len(IDX_1D))
    check_embedding_bag(backend, IDX_1D, w, OFFSETS, psw, mode="sum", max_norm=1.0, norm_type=norm_type,
                        padding_idx=1)
    check_embedding_bag(backend, IDX_1D, w, OFFSETS, psw, mode="sum", max_norm=1.0, norm_type=norm_type,
                        padding_idx=2, scale_grad_by_freq=True)


@pytest.mark.parametrize("padding_idx", [None, 2])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("norm_type", NORM_TYPES, ids=lambda p: f"p{p}")
def test_max_norm(backend, norm_type, mode, padding_idx):
    rng = np.random.default_rng(5)
    # row 2 (also the padding row) is large: torch renorms every referenced index, padding included
    w = rows_with_norms(rng, [0.3, 2.0, 3.5, 0.7, 1.6, 5.0, 4.0], D, norm_type)
    _, _, _, w_after = check_embedding_bag(
        backend, IDX_1D[:14], w, OFFSETS[:6], mode=mode, max_norm=1.0, norm_type=norm_type, padding_idx=padding_idx
    )
    after = to_numpy(w_after)
    np.testing.assert_array_equal(after[6], w[6], err_msg="unreferenced row must be untouched")
    np.testing.assert_array_equal(after[0], w[0])
    assert not np.array_equal(after[2], w[2]), "referenced padding row is renormalised too"


@pytest.mark.parametrize(("mode", "scale_grad_by_freq", "sparse"), [p for p in MODE_OPTS if p.values[0] != "max"])
def test_max_norm_with_grad_options(backend, mode, scale_grad_by_freq, sparse):
    rng = np.random.default_rng(6)
    w = rows_with_norms(rng, [0.3, 2.0, 3.5, 0.7, 1.6, 5.0, 4.0], D, 2.0)
    check_embedding_bag(backend, IDX_1D, w, OFFSETS, mode=mode, max_norm=1.2, scale_grad_by_freq=scale_grad_by_freq,
                        sparse=sparse, padding_idx=-1)


def test_spec_scale_grad_by_freq_example(backend):
    """REF-TORCH-213-SGBF / GRAD-SGBF: indices [4,4,2,6,4,2,1], offsets [0,3,5], sum, eye(8), grad ones → every
    present row sums to 8 (torch <= 2.13 CPU gave 12 for row 4 and 2.67 for row 6)."""
    idx = np.array([4, 4, 2, 6, 4, 2, 1])
    w = backend.asarray(np.eye(8))
    _out, pullback = xembed.embedding_bag_vjp(
        backend.asarray(idx), w, backend.asarray(np.array([0, 3, 5])), mode="sum", scale_grad_by_freq=True
    )
    gw, gp = pullback(backend.asarray(np.ones((3, 8))))
    assert gp is None
    sums = to_numpy(gw).sum(axis=1)
    np.testing.assert_allclose(sums[[1, 2, 4, 6]], 8.0, rtol=1e-12)
    np.testing.assert_array_equal(sums[[0, 3, 5, 7]], 0.0)
    check_embedding_bag(backend, idx, np.eye(8), np.array([0, 3, 5]), mode="sum", scale_grad_by_freq=True)


@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_scale_grad_by_freq_counts_over_all_bags(backend, mode):
    _, _gw, _, _ = check_embedding_bag(
        backend, np.array([3, 1, 3, 3, 0, 1]), _weight(7, 5), np.array([0, 2, 3]), mode=mode,
        scale_grad_by_freq=True,
    )


def test_max_ties_first_occurrence(backend):
    """max: strict '>' scan in input order, ties go to the first occurrence (per feature)."""
    w_np = np.array(
        [
            [1.0, 5.0, -2.0],
            [1.0, 3.0, -2.0],  # ties row 0 in features 0 and 2
            [0.0, 5.0, -2.0],  # ties row 0 in features 1 and 2
            [7.0, 7.0, 7.0],
        ]
    )
    idx = np.array([0, 1, 2, 2, 1, 0, 1, 1])
    offs = np.array([0, 3, 6])
    gout = np.random.default_rng(21).standard_normal((3, 3))
    _, gw, _, _ = check_embedding_bag(backend, idx, w_np, offs, mode="max", grad_output=gout)
    g = to_numpy(gw)
    # bag 0 = [0,1,2] → features from row 0, 0, 0; bag 1 = [2,1,0] → row 1 (f0), row 2 (f1), row 2 (f2);
    # bag 2 = [1,1] → row 1 for all features (first of the duplicates)
    expected = np.zeros_like(w_np)
    expected[0, :] += gout[0]
    expected[1, 0] += gout[1, 0]
    expected[2, 1:] += gout[1, 1:]
    expected[1, :] += gout[2]
    np.testing.assert_allclose(g, expected, rtol=1e-12)


def test_max_nan_rule(backend):
    """NaN survives max only as the first element of its bag (nothing is '>' NaN and NaN is not '>' anything)."""
    nan = math.nan
    w_np = np.array([[nan, 1.0], [2.0, nan], [0.5, 0.5]])
    idx = np.array([0, 1, 2, 1, 0, 2, 2, 0])
    offs = np.array([0, 3, 6])
    out, *_ = check_embedding_bag(backend, idx, w_np, offs, mode="max")
    o = to_numpy(out)
    assert np.isnan(o[0, 0])
    assert o[0, 1] == 1.0
    assert o[1, 0] == 2.0
    assert np.isnan(o[1, 1])
    np.testing.assert_array_equal(o[2], [0.5, 1.0])


@pytest.mark.parametrize("offsets_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_index_and_offsets_dtypes(backend, mode, index_dtype, offsets_dtype):
    check_embedding_bag(backend, IDX_1D, _weight(8), OFFSETS, mode=mode, index_dtype=index_dtype,
                        offsets_dtype=offsets_dtype, padding_idx=2)


@pytest.mark.parametrize("dtypes", [("uint8", "int16"), ("int16", "int32"), ("int8", "uint8")], ids=str)
def test_other_integer_dtypes_accepted(backend, dtypes):
    """Any integer dtype is accepted for input and offsets (xembed extension; torch only int32/int64)."""
    check_embedding_bag(backend, IDX_1D, _weight(9), OFFSETS, mode="mean", index_dtype=dtypes[0],
                        offsets_dtype=dtypes[1])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize(
    "options",
    [
        {"mode": "sum"},
        {"mode": "mean", "padding_idx": 2},
        {"mode": "max", "padding_idx": -1},
        {"mode": "sum", "psw": True, "padding_idx": 6},
        {"mode": "mean", "sparse": True, "include_last_offset": True},
        {"mode": "sum", "scale_grad_by_freq": True, "max_norm": 1.0},
    ],
    ids=["sum", "mean_pad", "max_pad", "sum_psw", "mean_sparse_ilo", "sum_sgbf_maxnorm"],
)
def test_dtypes(backend, dtype, options):
    rng = np.random.default_rng(10)
    options = dict(options)
    psw = rng.standard_normal(len(IDX_1D)) if options.pop("psw", False) else None
    if "max_norm" in options:
        w = rows_with_norms(rng, [0.4, 2.0, 3.0, 0.6, 1.7, 2.6, 0.2], 4, 2.0)
    else:
        w = rng.standard_normal((N, 4))
    check_embedding_bag(backend, IDX_1D, w, _offsets(options.get("include_last_offset", False)), psw,
                        dtype=dtype, **options)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_low_precision_accumulation(backend, dtype):
    """fp16/bf16 sums and dense gradients accumulate in fp32 and are rounded once."""
    backend.require_dtype(dtype)
    tdt = getattr(torch, dtype)
    w = backend.asarray(np.ones((3, 2)), dtype)
    idx = backend.asarray(np.full(3000, 1), "int64")
    offs = backend.asarray(np.array([0]), "int64")
    out, pullback = xembed.embedding_bag_vjp(idx, w, offs, mode="sum")
    expected = float(torch.tensor(3000.0).to(tdt))  # 3000 for fp16/fp32, 3008 for bf16 (never 2048 / 256)
    np.testing.assert_array_equal(to_numpy(out), [[expected, expected]])
    gw, _ = pullback(backend.asarray(np.ones((1, 2)), dtype))
    np.testing.assert_array_equal(to_numpy(gw)[1], [expected, expected])


@pytest.mark.parametrize("dtype", ["float16"])  # a param, so conftest skips backends without float16
def test_fp16_mean_rounding(backend, dtype):
    """fp16 mean of {2048, 1, 0}: torch CPU 682.5 (rounds the sum first), CUDA 683 (divides in fp32): both OK
    (ACC-LOWP)."""
    w = backend.asarray(np.array([[2048.0, 2048.0], [1.0, 1.0], [0.0, 0.0]]), dtype)
    out = xembed.embedding_bag(backend.asarray(np.array([0, 1, 2])), w, backend.asarray(np.array([0])), mode="mean")
    assert_like_weight(out, w, (1, 2))
    o = to_numpy(out)
    assert np.all((o == 682.5) | (o == 683.0)), o


@pytest.mark.parametrize("mode", MODES)
def test_empty_input_empty_bags(backend, mode):
    out, gw, _, _ = check_embedding_bag(backend, np.array([], dtype=np.int64), _weight(11), np.array([0, 0, 0]),
                                        mode=mode)
    np.testing.assert_array_equal(to_numpy(out), np.zeros((3, D)))
    np.testing.assert_array_equal(to_numpy(gw), 0)


@pytest.mark.parametrize("mode", MODES)
def test_include_last_offset_single_offset_gives_zero_bags(backend, mode):
    out, *_ = check_embedding_bag(backend, np.array([], dtype=np.int64), _weight(12), np.array([0]), mode=mode,
                                  include_last_offset=True)
    assert tuple(out.shape) == (0, D)


@pytest.mark.parametrize("mode", MODES)
def test_2d_input_zero_bags(backend, mode):
    out, *_ = check_embedding_bag(backend, np.zeros((0, 4), dtype=np.int64), _weight(13), mode=mode)
    assert tuple(out.shape) == (0, D)


@pytest.mark.parametrize("mode", MODES)
def test_2d_input_bags_of_length_zero(backend, mode):
    """(B, 0) input = B empty bags → zeros (BAG-2D-ZERO-COLS, BAG-EMPTY).  torch 2.14 raises a cryptic
    RuntimeError ('step must be nonzero') here, so this case is checked against docs/spec.md, not the oracle (DIV-2)."""
    w = backend.asarray(_weight(14))
    out, pullback = xembed.embedding_bag_vjp(backend.asarray(np.zeros((3, 0), dtype=np.int64)), w, mode=mode)
    assert_like_weight(out, w, (3, D))
    np.testing.assert_array_equal(to_numpy(out), 0)
    gw, _ = pullback(backend.asarray(np.ones((3, D))))
    np.testing.assert_array_equal(to_numpy(gw), 0)


def test_empty_offsets_without_flag(backend):
    """BAG-EMPTY-OFFSETS: offsets=[] without include_last_offset and a non-empty input gives 0 bags and no
    gradient to any index (torch 2.14 CPU segfaults here, DIV-1).  Runs in a subprocess so that a crash inside a
    native kernel is reported as a failure instead of killing the test run."""
    code = f"""
import numpy as np, xembed
from xembed_testutils import Backend, to_numpy
bk = Backend({backend.value!r})
w = bk.asarray(np.random.default_rng(15).standard_normal(({N}, {D})))
out, pb = xembed.embedding_bag_vjp(bk.asarray(np.array([1, 2])), w, bk.asarray(np.array([], dtype=np.int64)),
                                   mode="sum", per_sample_weights=bk.asarray(np.ones(2)))
assert tuple(out.shape) == (0, {D}), out.shape
gw, gp = pb(bk.asarray(np.ones((0, {D}))))
assert not to_numpy(gw).any(), to_numpy(gw)
assert tuple(gp.shape) == (2,) and not to_numpy(gp).any(), to_numpy(gp)
print("OK zero bags")
"""
    # the child finds xembed_testutils as pytest does (the `pythonpath` ini option): through PYTHONPATH
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).parent),
                                                                   os.environ.get("PYTHONPATH")])))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                         check=False)
    assert res.returncode == 0, f"rc={res.returncode}\nstdout={res.stdout}\nstderr={res.stderr[-3000:]}"
    assert res.stdout.startswith("OK zero bags"), f"stdout={res.stdout}\nstderr={res.stderr[-3000:]}"


def test_default_mode_is_mean(backend):
    w = backend.asarray(_weight(16))
    i = backend.asarray(IDX_1D)
    o = backend.asarray(OFFSETS)
    default = to_numpy(xembed.embedding_bag(i, w, o))
    np.testing.assert_array_equal(default, to_numpy(xembed.embedding_bag(i, w, o, mode="mean")))
