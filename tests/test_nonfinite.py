"""Non-finite values in rows that do not take part (padding rows, unreferenced rows, empty bags) must not leak
into outputs or gradients (torch excludes them cleanly; a masked multiply or one-hot matmul would give
0 * NaN = NaN).  Run on the native primitives and the standard-only fallback."""

from __future__ import annotations

import numpy as np
import pytest
from xembed_testutils import check_embedding, check_embedding_bag, to_numpy

NAN, INF = np.nan, np.inf


def _weight():
    w = np.random.default_rng(0).standard_normal((6, 3))
    w[0] = [NAN, INF, -INF]  # padding row
    w[5] = [INF, NAN, 1.0]  # never referenced
    return w


IDX = np.array([0, 1, 0, 0, 2, 3, 1, 4])
OFFS = np.array([0, 2, 4, 4])  # bags: [0,1] [0,0] (all padding) [] [2,3,1,4]


@pytest.mark.usefixtures("primitives")
@pytest.mark.parametrize(("mode", "sparse"), [("sum", False), ("sum", True), ("mean", False), ("mean", True),
                                         ("max", False)])
def test_padding_and_unreferenced_nonfinite_rows_do_not_leak(backend, mode, sparse):
    out, gw, _, _ = check_embedding_bag(backend, IDX, _weight(), OFFS, mode=mode, padding_idx=0, sparse=sparse)
    assert np.all(np.isfinite(to_numpy(out)))
    g = to_numpy(gw.to_dense() if sparse else gw)
    assert np.all(np.isfinite(g))


@pytest.mark.usefixtures("primitives")
def test_psw_gradient_with_nonfinite_padding_row(backend):
    psw = np.linspace(-1.0, 1.0, len(IDX))
    out, _, gp, _ = check_embedding_bag(backend, IDX, _weight(), OFFS, psw, mode="sum", padding_idx=0)
    assert np.all(np.isfinite(to_numpy(out)))
    gp = to_numpy(gp)
    assert np.all(np.isfinite(gp))
    np.testing.assert_array_equal(gp[IDX == 0], 0)


@pytest.mark.usefixtures("primitives")
def test_2d_bags_nonfinite_padding(backend):
    idx = np.array([[0, 1, 0], [0, 0, 0], [4, 0, 2]])
    for mode in ("sum", "mean", "max"):
        out, *_ = check_embedding_bag(backend, idx, _weight(), mode=mode, padding_idx=0)
        assert np.all(np.isfinite(to_numpy(out)))


@pytest.mark.usefixtures("primitives")
def test_embedding_unreferenced_nonfinite_rows(backend):
    out, gw, _ = check_embedding(backend, np.array([[1, 2], [4, 4]]), _weight(), scale_grad_by_freq=True)
    assert np.all(np.isfinite(to_numpy(out)))
    assert np.all(np.isfinite(to_numpy(gw)))


@pytest.mark.usefixtures("primitives")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_nonfinite_referenced_rows_propagate(backend):
    """Referenced non-finite rows do propagate, exactly as in torch (inf - inf = nan in a sum, etc.)."""
    w = _weight()
    w[1] = [INF, -INF, NAN]
    w[2] = [-INF, 1.0, 2.0]
    for mode in ("sum", "mean", "max"):
        check_embedding_bag(backend, np.array([1, 2, 3, 2, 1]), w, np.array([0, 2, 3]), mode=mode)


@pytest.mark.usefixtures("primitives")
def test_max_norm_skips_nonfinite_unreferenced_and_renorms_referenced(backend):
    w = _weight()
    _, _, _, after = check_embedding_bag(backend, np.array([1, 2, 3]), w, np.array([0, 1]), mode="sum", max_norm=0.5)
    a = to_numpy(after)
    np.testing.assert_array_equal(a[[0, 5]], w[[0, 5]])  # bitwise incl. NaN positions (assert_array_equal: nan==nan)
