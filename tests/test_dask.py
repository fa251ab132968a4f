"""xembed on dask arrays (spec section "Dask"), run on a ``distributed.LocalCluster`` with 2 worker
processes; values and gradients against the torch oracle (float64 CPU) or, for the NaN cases torch's CPU
kernel also decides, against xembed on NumPy."""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch  # the oracle: a missing install must fail, not skip
import torch.nn.functional as F  # noqa: N812 - the usual name

import xembed

# in the `test` extra: a missing install must fail, not skip (typed Any: dask ships no annotations)
dask: Any = importlib.import_module("dask")
da: Any = importlib.import_module("dask.array")
distributed: Any = importlib.import_module("distributed")

N, D = 23, 3
W_CHUNK = 5  # 5 weight chunks: 5, 5, 5, 5, 3 rows
RNG = np.random.default_rng(1313)
WEIGHT = RNG.standard_normal((N, D))
# 1-D input: 40 positions in chunks of 7; bags straddle chunk boundaries, bag 1 and bag 7 are empty
IDX_1D = RNG.integers(0, N, 40)
IDX_1D[[5, 6, 12]] = 4  # padding positions (padding_idx=4), one bag all padding
OFFSETS = np.array([0, 3, 3, 5, 7, 13, 21, 21, 26, 39])
IDX_2D = RNG.integers(0, N, (9, 5))
IDX_2D[2] = 4  # an all-padding bag


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """One LocalCluster per module: 2 worker processes, 1 thread each (``DASK-DISTRIBUTED``); its dashboard on a
    free port (``None`` means port 8787, and a second cluster on the machine would then fail to start)."""
    src = str(Path(xembed.__file__).resolve().parents[1])
    env = {"PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  env=env) as cluster, distributed.Client(cluster) as c:
        yield c


def run(client: Any, *xs: Any) -> Any:
    out = dask.compute(*xs, scheduler=client)
    return out[0] if len(xs) == 1 else out


def t64(a: np.ndarray, grad: bool = False) -> torch.Tensor:
    t = torch.from_numpy(np.array(a))
    t = t.double() if t.is_floating_point() else t.long()
    return t.requires_grad_(grad)


def dweight(w: np.ndarray = WEIGHT) -> Any:
    return da.from_array(w, chunks=(W_CHUNK, D))


def test_cluster_has_two_worker_processes(client: Any) -> None:
    """``DASK-DISTRIBUTED``: the tests below run on worker processes, not in this one."""
    workers = client.scheduler_info()["workers"]
    assert len(workers) == 2
    pids = client.run(os.getpid)
    assert os.getpid() not in pids.values()


# --------------------------------------------------------------------------------------------------------
# embedding
# --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("padding_idx", [None, 4, -2])
@pytest.mark.parametrize(("sgbf", "sparse"), [(False, False), (True, False), (False, True)])
def test_embedding_values_and_grads(client: Any, padding_idx: int | None, sgbf: bool, sparse: bool) -> None:
    """``DASK-PARTIALS``, ``DASK-CHUNKS``, ``DASK-GRAD``, ``DASK-SGBF``, ``DASK-SPARSE``: an N-d input in blocks, the
    weight in row chunks, against torch's forward and autograd gradient (EMB-LOOKUP, GRAD-EMB, GRAD-PAD,
    GRAD-SGBF, GRAD-SPARSE)."""
    idx = RNG.integers(0, N, (4, 5, 2))
    idx[0, 0, 0] = 4
    x = da.from_array(idx, chunks=(3, 2, 1))
    out, pullback = xembed.embedding_vjp(x, dweight(), padding_idx=padding_idx, scale_grad_by_freq=sgbf,
                                         sparse=sparse)
    assert isinstance(out, da.Array)
    assert out.chunks == (*x.chunks, (D,))
    g = RNG.standard_normal(out.shape)
    wt = t64(WEIGHT, grad=True)
    ref = F.embedding(t64(idx), wt, padding_idx=padding_idx, scale_grad_by_freq=sgbf, sparse=sparse)
    ref.backward(t64(g))
    gw = pullback(da.from_array(g, chunks=(2, 5, 2, D)))
    if sparse:
        assert isinstance(gw, xembed.SparseGrad)
        assert isinstance(gw.indices, da.Array)
        assert isinstance(gw.values, da.Array)
        assert wt.grad is not None
        coo = wt.grad
        o, gi, gv, dense = run(client, out, gw.indices, gw.values, gw.to_dense())
        np.testing.assert_array_equal(gi, coo._indices()[0].numpy())
        np.testing.assert_allclose(gv, coo._values().numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dense, coo.to_dense().numpy(), rtol=1e-12, atol=1e-12)
        assert gw.to_dense().chunks == dweight().chunks
    else:
        assert gw.chunks == dweight().chunks
        o, gd = run(client, out, gw)
        assert wt.grad is not None
        np.testing.assert_allclose(gd, wt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(o, ref.detach().numpy())


def test_embedding_0d_and_empty(client: Any) -> None:
    """``DASK-PARTIALS``: a 0-d input and an empty input (EMB-SHAPE)."""
    o0 = xembed.embedding(da.from_array(np.array(7)), dweight())
    oe = xembed.embedding(da.from_array(np.zeros((0, 3), dtype=np.int64)), dweight())
    r0, re_ = run(client, o0, oe)
    np.testing.assert_array_equal(r0, WEIGHT[7])
    assert re_.shape == (0, 3, D)


# --------------------------------------------------------------------------------------------------------
# embedding_bag
# --------------------------------------------------------------------------------------------------------

def _option_cases(flags: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[Any]:
    """``(mode, *flags)`` rows as params named ``mode-flag-...`` after the flags that are on."""
    return [pytest.param(*row, id=row[0] + "".join(f"-{f}" for f, on in zip(flags, row[1:], strict=True) if on))
            for row in rows]


BAG_CASES = _option_cases(("sgbf", "sparse", "psw"), [
    ("sum", False, False, False), ("sum", True, False, False), ("sum", False, True, False),
    ("sum", False, False, True), ("sum", False, True, True), ("sum", True, False, True),
    ("mean", False, False, False), ("mean", True, False, False), ("mean", False, True, False),
    ("max", False, False, False),
])


def _bag_check(client: Any, idx: np.ndarray, x: Any, offsets: np.ndarray | None, offs: Any, mode: str,
               sgbf: bool, sparse: bool, psw: np.ndarray | None, pswd: Any, padding_idx: int | None,
               ilo: bool = False) -> None:
    out, pullback = xembed.embedding_bag_vjp(x, dweight(), offs, mode=mode, scale_grad_by_freq=sgbf,
                                             sparse=sparse, per_sample_weights=pswd, padding_idx=padding_idx,
                                             include_last_offset=ilo)
    assert isinstance(out, da.Array)
    wt = t64(WEIGHT, grad=True)
    pt = None if psw is None else t64(psw, grad=True)
    ref = F.embedding_bag(t64(idx), wt, None if offsets is None else t64(offsets), mode=mode,
                          scale_grad_by_freq=sgbf, sparse=sparse, per_sample_weights=pt, padding_idx=padding_idx,
                          include_last_offset=ilo)
    g = RNG.standard_normal(tuple(ref.shape))
    ref.backward(t64(g))
    gw, gp = pullback(g)
    assert wt.grad is not None
    if sparse:
        o, gi, gv = run(client, out, gw.indices, gw.values)
        np.testing.assert_array_equal(gi, wt.grad._indices()[0].numpy())
        np.testing.assert_allclose(gv, wt.grad._values().numpy(), rtol=1e-12, atol=1e-12)
        dense = gw.to_dense()
        assert dense.chunks == dweight().chunks
        np.testing.assert_allclose(run(client, dense), wt.grad.to_dense().numpy(), rtol=1e-12, atol=1e-12)
    else:
        assert gw.chunks == dweight().chunks
        o, gd = run(client, out, gw)
        np.testing.assert_allclose(gd, wt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(o, ref.detach().numpy(), rtol=1e-12, atol=1e-12)
    if psw is None:
        assert gp is None
    else:
        assert pt is not None
        assert pt.grad is not None
        assert gp.chunks == x.chunks  # DASK-GRAD: chunked like the input
        np.testing.assert_allclose(run(client, gp), pt.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("mode", "sgbf", "sparse", "psw"), BAG_CASES)
@pytest.mark.parametrize("padding_idx", [None, 4])
def test_bag_2d(client: Any, mode: str, sgbf: bool, sparse: bool, psw: bool, padding_idx: int | None) -> None:
    """``DASK-COMBINE``, ``DASK-CHUNKS``, ``DASK-GRAD``, ``DASK-SGBF``, ``DASK-SPARSE``: a 2-D input chunked along
    bags; output chunked like the input's bags; gradients against torch (BAG-*, GRAD-*)."""
    x = da.from_array(IDX_2D, chunks=(4, 5))
    p = RNG.standard_normal(IDX_2D.shape) if psw else None
    pd = None if p is None else da.from_array(p, chunks=(2, 5))
    _bag_check(client, IDX_2D, x, None, None, mode, sgbf, sparse, p, pd, padding_idx)
    out = xembed.embedding_bag(x, dweight(), mode=mode, padding_idx=padding_idx)
    assert out.chunks == (x.chunks[0], (D,))


@pytest.mark.parametrize(("mode", "sgbf", "sparse", "psw"), BAG_CASES)
@pytest.mark.parametrize(("padding_idx", "ilo"), [(None, False), (4, True)])
def test_bag_1d_straddling(client: Any, mode: str, sgbf: bool, sparse: bool, psw: bool, padding_idx: int | None,
                           ilo: bool) -> None:
    """``DASK-COMBINE``, ``DASK-CHUNKS``: a 1-D input chunked along positions with bags straddling chunk boundaries
    and empty bags; output chunked like the offsets (BAG-LAYOUT-1D, BAG-LAST-OFFSET, BAG-EMPTY)."""
    offsets = np.r_[OFFSETS, IDX_1D.shape[0]] if ilo else OFFSETS
    x = da.from_array(IDX_1D, chunks=7)
    offs = da.from_array(offsets, chunks=3)
    p = RNG.standard_normal(IDX_1D.shape) if psw else None
    pd = None if p is None else da.from_array(p, chunks=7)
    _bag_check(client, IDX_1D, x, offsets, offs, mode, sgbf, sparse, p, pd, padding_idx, ilo)
    out = xembed.embedding_bag(x, dweight(), offs, mode=mode, include_last_offset=ilo)
    expected_bags = OFFSETS.shape[0]
    assert out.shape == (expected_bags, D)
    assert sum(out.chunks[0]) == expected_bags
    assert len(out.chunks[0]) > 1


def test_bag_max_ties_and_nan_across_chunks(client: Any) -> None:
    """``DASK-COMBINE``: max partials from different weight and input chunks keep the first occurrence on ties
    and the NaN-first rule (BAG-MAX, BAG-MAX-TIES, BAG-MAX-NAN) — against xembed on NumPy, whose conformance to
    torch is tested elsewhere."""
    w = WEIGHT.copy()
    w[17] = w[2]  # equal rows in different weight chunks: ties
    w[21, 1] = np.nan
    w[8, 0] = np.nan
    idx = np.array([2, 17, 17, 2, 21, 3, 8, 21, 2, 17, 5, 8, 8, 21])
    offsets = np.array([0, 3, 4, 7, 10])
    x, offs = da.from_array(idx, chunks=3), da.from_array(offsets, chunks=2)
    out, pb = xembed.embedding_bag_vjp(x, dweight(w), offs, mode="max")
    e, pe = xembed.embedding_bag_vjp(idx, w, offsets, mode="max")
    g = RNG.standard_normal(e.shape)
    o, gw = run(client, out, pb(g)[0])
    np.testing.assert_array_equal(o, e)
    np.testing.assert_allclose(gw, pe(g)[0], rtol=1e-15, atol=1e-15)  # sums of g: the order may differ
    # the ties alone, against torch (NaN-free bags)
    ref = F.embedding_bag(t64(idx[:4]), t64(w, grad=True), t64(np.array([0, 3])), mode="max")
    np.testing.assert_array_equal(run(client, xembed.embedding_bag(x[:4], dweight(w), da.from_array(
        np.array([0, 3])), mode="max")), ref.detach().numpy())


def test_bag_zero_bags_and_empty(client: Any) -> None:
    """``DASK-COMBINE``: empty offsets (0 bags) and an empty 2-D input (BAG-EMPTY-OFFSETS, BAG-2D-ZERO-COLS)."""
    x = da.from_array(IDX_1D, chunks=7)
    out, pb = xembed.embedding_bag_vjp(x, dweight(), da.from_array(np.zeros(0, dtype=np.int64)), mode="sum",
                                       per_sample_weights=da.from_array(np.ones(40), chunks=7))
    gw, gp = pb(np.zeros((0, D)))
    o, w, p = run(client, out, gw, gp)
    assert o.shape == (0, D)
    np.testing.assert_array_equal(w, np.zeros((N, D)))
    np.testing.assert_array_equal(p, np.zeros(40))
    o2 = run(client, xembed.embedding_bag(da.zeros((3, 0), dtype=np.int64), dweight(), mode="mean"))
    np.testing.assert_array_equal(o2, np.zeros((3, D)))


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_bag_low_precision(client: Any, dtype: str) -> None:
    """``DASK-COMBINE``: low precision accumulates in float32 (ACC-LOWP), against xembed on NumPy."""
    w = WEIGHT.astype(dtype)
    x = da.from_array(IDX_2D, chunks=(4, 5))
    out, pb = xembed.embedding_bag_vjp(x, dweight(w), mode="mean")
    e, pe = xembed.embedding_bag_vjp(IDX_2D, w, mode="mean")
    g = RNG.standard_normal(e.shape).astype(dtype)
    o, gw = run(client, out, pb(g)[0])
    assert o.dtype == np.dtype(dtype)
    assert gw.dtype == np.dtype(dtype)
    np.testing.assert_allclose(o, e, rtol=2e-3 if dtype == "float16" else 1e-6, atol=1e-3)
    np.testing.assert_allclose(gw, pe(g)[0], rtol=2e-3 if dtype == "float16" else 1e-6, atol=1e-3)


# --------------------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------------------

def _eager_message(fn: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises((IndexError, ValueError)) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_index_error_inside_graph(client: Any) -> None:
    """``DASK-CHECKS``: an out-of-range index raises at ``.compute()`` the eager path's IndexError, naming
    ``input``, the value and its global position (ERR-INDEX-RANGE) — for the output and for the gradient."""
    bad = IDX_2D.copy()
    bad[6, 3] = N + 5
    x = da.from_array(bad, chunks=(4, 5))
    msg = _eager_message(xembed.embedding_bag, bad, WEIGHT)
    assert "position (6, 3) of `input`" in msg
    out, pb = xembed.embedding_bag_vjp(x, dweight(), mode="sum")  # building the graph does not raise
    with pytest.raises(IndexError, match=re.escape(msg)):
        run(client, out)
    with pytest.raises(IndexError, match=re.escape(msg)):
        run(client, pb(np.ones((9, D)))[0])
    bad1 = IDX_1D.copy()
    bad1[30] = -1
    msg1 = _eager_message(xembed.embedding, bad1, WEIGHT)
    with pytest.raises(IndexError, match=re.escape(msg1)):
        run(client, xembed.embedding(da.from_array(bad1, chunks=7), dweight()))
    with pytest.raises(IndexError, match=re.escape(msg1)):
        run(client, xembed.embedding_bag(da.from_array(bad1, chunks=7), dweight(), da.from_array(OFFSETS)))


@pytest.mark.parametrize(("offsets", "ilo"), [
    pytest.param(np.array([1, 3, 5, 20]), False, id="first"),
    pytest.param(np.array([0, 3, 8, 7, 20, 30]), False, id="decreasing-across-chunks"),
    pytest.param(np.array([0, 3, 5, 41]), False, id="end"),
    pytest.param(np.array([0, 3, 5, 39]), True, id="last-offset"),
])
def test_offsets_errors_inside_graph(client: Any, offsets: np.ndarray, ilo: bool) -> None:
    """``DASK-CHECKS``: offsets rules at ``.compute()``, same messages as the eager path (ERR-OFFSETS-*)."""
    msg = _eager_message(xembed.embedding_bag, IDX_1D, WEIGHT, offsets, include_last_offset=ilo)
    out = xembed.embedding_bag(da.from_array(IDX_1D, chunks=7), dweight(), da.from_array(offsets, chunks=3),
                               include_last_offset=ilo)
    with pytest.raises(ValueError, match=re.escape(msg)):
        run(client, out)


def test_metadata_errors_at_call() -> None:
    """``DASK-CHECKS``: errors that need no values are raised at the call, as on every backend."""
    x = da.from_array(IDX_2D, chunks=(4, 5))
    with pytest.raises(ValueError, match="`mode`"):
        xembed.embedding_bag(x, dweight(), mode="median")
    with pytest.raises(TypeError, match="`input`"):
        xembed.embedding(da.from_array(IDX_2D.astype(float)), dweight())
    with pytest.raises(ValueError, match="`grad_output`"):
        xembed.embedding_vjp(x, dweight())[1](np.ones((2, 2)))
    with pytest.raises(TypeError, match="`xp`"):
        xembed.embedding(x, dweight(), xp=np)


@pytest.mark.parametrize("norm_type", [2.0, 1.0])
def test_max_norm_embedding(client: Any, norm_type: float) -> None:
    """``DASK-RENORM`` (RENORM-FUNCTIONAL): the output reads the renormed rows, the caller's dask weight is
    unchanged, the gradient is torch's (computed with the renormed weight as the leaf) and chunked like the weight;
    ``xembed.renorm`` returns the renormed table lazily, chunked like the weight."""
    w = WEIGHT * 3.0
    x = da.from_array(IDX_2D, chunks=(4, 2))
    dw = dweight(w)
    out, pullback = xembed.embedding_vjp(x, dw, max_norm=1.0, norm_type=norm_type)
    g = RNG.standard_normal(out.shape)
    wt = t64(w, grad=True)
    ref = F.embedding(t64(IDX_2D), wt, max_norm=1.0, norm_type=norm_type)  # renorms wt in place
    ref.backward(t64(g))
    gw = pullback(da.from_array(g, chunks=(3, 5, D)))
    table = xembed.renorm(dw, x, 1.0, norm_type)
    assert isinstance(table, da.Array)
    assert table.chunks == dw.chunks
    assert gw.chunks == dw.chunks
    o, gd, tab, w_after = run(client, out, gw, table, dw)
    np.testing.assert_allclose(o, ref.detach().numpy(), rtol=1e-12, atol=0)
    assert wt.grad is not None
    np.testing.assert_allclose(gd, wt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tab, wt.detach().numpy(), rtol=1e-12, atol=0)
    assert not np.array_equal(tab, w)  # the test renorms something
    np.testing.assert_array_equal(w_after, w)  # the caller's weight is unchanged


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_max_norm_bag_1d_straddling(client: Any, mode: str) -> None:
    """``DASK-RENORM``: embedding_bag with max_norm on a 1-D input whose bags straddle chunks: values, weight and
    per_sample_weights gradients against torch (which renorms its leaf in place), the caller's weight unchanged."""
    w = WEIGHT * 3.0
    psw = RNG.standard_normal(IDX_1D.shape) if mode == "sum" else None
    dw = dweight(w)
    out, pullback = xembed.embedding_bag_vjp(
        da.from_array(IDX_1D, chunks=7), dw, da.from_array(OFFSETS, chunks=4), max_norm=1.5, mode=mode,
        per_sample_weights=None if psw is None else da.from_array(psw, chunks=7))
    wt = t64(w, grad=True)
    pt = None if psw is None else t64(psw, grad=True)
    ref = F.embedding_bag(t64(IDX_1D), wt, t64(OFFSETS), max_norm=1.5, mode=mode, per_sample_weights=pt)
    g = RNG.standard_normal(tuple(ref.shape))
    ref.backward(t64(g))
    gw, gp = pullback(da.from_array(g, chunks=(4, D)))
    o, gd, w_after = run(client, out, gw, dw)
    np.testing.assert_allclose(o, ref.detach().numpy(), rtol=1e-12, atol=1e-12)
    assert wt.grad is not None
    np.testing.assert_allclose(gd, wt.grad.numpy(), rtol=1e-12, atol=1e-12)
    if pt is not None:
        assert pt.grad is not None
        np.testing.assert_allclose(run(client, gp), pt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(w_after, w)


def test_max_norm_index_error_at_compute(client: Any) -> None:
    """``DASK-RENORM``, ``DASK-CHECKS``: an out-of-range index under max_norm (and in ``xembed.renorm``) raises the
    clear IndexError at ``.compute()``; no renormed value is produced."""
    bad = IDX_2D.copy()
    bad[1, 2] = N
    for lazy in (xembed.embedding(da.from_array(bad, chunks=(4, 2)), dweight(), max_norm=1.0),
                 xembed.renorm(dweight(), da.from_array(bad, chunks=(4, 2)), 1.0)):
        with pytest.raises(IndexError, match=f"index {N} .*`input`"):
            run(client, lazy)


EXT_CASES = _option_cases(("psw", "sparse", "sgbf"), [
    ("sqrtn", False, False, False), ("sqrtn", False, True, False), ("sqrtn", True, False, True),
    ("sqrtn", True, True, False), ("min", False, False, False), ("mean", True, False, False),
    ("mean", True, True, False), ("mean", True, False, True),
])


def _ext_check(client: Any, idx: np.ndarray, x: Any, offsets: np.ndarray | None, offs: Any, mode: str,
               psw: np.ndarray | None, pswd: Any, sparse: bool, sgbf: bool, padding_idx: int | None,
               lengths: Any = None) -> None:
    """The extensions on dask against xembed on NumPy (their reference): output and both gradients."""
    eager_lengths = None if lengths is None else np.asarray(lengths)
    ref, ref_pb = xembed.embedding_bag_vjp(idx, WEIGHT, offsets, mode=mode, per_sample_weights=psw, sparse=sparse,
                                           scale_grad_by_freq=sgbf, padding_idx=padding_idx, lengths=eager_lengths)
    out, pb = xembed.embedding_bag_vjp(x, dweight(), offs, mode=mode, per_sample_weights=pswd, sparse=sparse,
                                       scale_grad_by_freq=sgbf, padding_idx=padding_idx, lengths=lengths)
    g = RNG.standard_normal(ref.shape)
    (rgw, rgp), (gw, gp) = ref_pb(g), pb(g)
    np.testing.assert_allclose(run(client, out), ref, rtol=1e-12, atol=1e-12)
    if sparse:
        gi, gv = run(client, gw.indices, gw.values)
        np.testing.assert_array_equal(gi, rgw.indices)
        np.testing.assert_allclose(gv, rgw.values, rtol=1e-12, atol=1e-12)
        gw = gw.to_dense()
        rgw = rgw.to_dense()
    assert gw.chunks == dweight().chunks
    np.testing.assert_allclose(run(client, gw), rgw, rtol=1e-12, atol=1e-12)
    if psw is not None:
        assert gp.chunks == x.chunks
        np.testing.assert_allclose(run(client, gp), rgp, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("mode", "psw", "sparse", "sgbf"), EXT_CASES)
@pytest.mark.parametrize("padding_idx", [None, 4])
def test_extensions_1d_straddling(client: Any, mode: str, psw: bool, sparse: bool, sgbf: bool,
                                  padding_idx: int | None) -> None:
    """``DASK-COMBINE``, ``DASK-GRAD``: sqrtn, min and the weighted mean (EXT-SQRTN, EXT-MIN, EXT-WMEAN) with bags
    straddling chunks, empty bags and an all-padding bag, against xembed on NumPy."""
    p = RNG.standard_normal(IDX_1D.shape) if psw else None
    if p is not None:
        p[[14, 15]] = [1.0, -1.0]  # a bag whose weights sum to 0 (EXT-WMEAN-ZERO)
    pd = None if p is None else da.from_array(p, chunks=7)
    _ext_check(client, IDX_1D, da.from_array(IDX_1D, chunks=7), OFFSETS, da.from_array(OFFSETS, chunks=3), mode,
               p, pd, sparse, sgbf, padding_idx)


@pytest.mark.parametrize(("mode", "psw", "sparse", "sgbf"), EXT_CASES[:5])
def test_extensions_2d(client: Any, mode: str, psw: bool, sparse: bool, sgbf: bool) -> None:
    """``DASK-CHUNKS``: the extensions on a 2-D input chunked along bags, with padding, against xembed on NumPy."""
    p = RNG.standard_normal(IDX_2D.shape) if psw else None
    pd = None if p is None else da.from_array(p, chunks=(2, 5))
    _ext_check(client, IDX_2D, da.from_array(IDX_2D, chunks=(4, 5)), None, None, mode, p, pd, sparse, sgbf, 4)


@pytest.mark.parametrize("mode", ["sum", "mean", "max", "sqrtn", "min"])
def test_lengths(client: Any, mode: str) -> None:
    """``DASK-CHECKS`` (EXT-LENGTHS): ``lengths=`` on dask, chunked otherwise than the input, empty bags included,
    against xembed on NumPy; output chunked like the lengths."""
    lengths = np.diff(np.r_[OFFSETS, IDX_1D.shape[0]])
    dl = da.from_array(lengths, chunks=4)
    _ext_check(client, IDX_1D, da.from_array(IDX_1D, chunks=7), None, None, mode, None, None, False, False, 4,
               lengths=dl)
    assert xembed.embedding_bag(da.from_array(IDX_1D, chunks=7), dweight(), lengths=dl).chunks[0] == dl.chunks[0]


@pytest.mark.parametrize(("lengths", "match"), [
    (np.array([3, -1, 38]), r"every entry of `lengths` must be non-negative, but lengths\[1\] = -1"),
    (np.array([3, 2, 41]), r"at most the number of indices in `input` \(40\), but lengths\[2\] = 41"),
    (np.array([3, 2, 30]), r"`lengths` must sum to the number of indices in `input` \(40\), got sum\(lengths\) = 35"),
])
def test_lengths_errors_at_compute(client: Any, lengths: np.ndarray, match: str) -> None:
    """``DASK-CHECKS``: the lengths rules (EXT-LENGTHS-VALUES) at ``.compute()``, with the eager path's messages."""
    with pytest.raises(ValueError, match=match):
        xembed.embedding_bag(IDX_1D, WEIGHT, lengths=lengths)
    lazy = xembed.embedding_bag(da.from_array(IDX_1D, chunks=7), dweight(), lengths=da.from_array(lengths, chunks=2))
    with pytest.raises(ValueError, match=match):
        run(client, lazy)


# --------------------------------------------------------------------------------------------------------
# graph structure
# --------------------------------------------------------------------------------------------------------

def _direct_deps(arr: Any, keys: set[Any]) -> list[int]:
    """For every task of ``arr``'s graph, how many of ``keys`` it takes directly."""
    from dask.core import get_dependencies

    graph = dict(arr.__dask_graph__())
    return [len(set(get_dependencies(graph, k)) & keys) for k in graph]


@pytest.mark.parametrize("layout", ["2d", "1d"])
def test_no_task_gathers_table_or_input(layout: str) -> None:
    """``DASK-CHUNKS``: no task of the forward or gradient graph takes more than one weight chunk or more than
    one input chunk (the table and the batch are never gathered)."""
    w = dweight()
    if layout == "2d":
        x, offs = da.from_array(IDX_2D, chunks=(2, 5)), None
    else:
        x, offs = da.from_array(IDX_1D, chunks=7), da.from_array(OFFSETS, chunks=3)
    out, pb = xembed.embedding_bag_vjp(x, w, offs, mode="mean", scale_grad_by_freq=True)
    gw, _ = pb(da.ones(out.shape, chunks=out.chunks))
    wkeys = {w.__dask_keys__()[i][0] for i in range(w.numblocks[0])}
    xkeys = set(x.__dask_keys__()) if layout == "1d" else {k for row in x.__dask_keys__() for k in row}
    assert len(wkeys) == 5
    for arr in (out, gw):  # (the mean's weight gradient does not read the weight)
        assert max(_direct_deps(arr, wkeys)) == (1 if arr is out else 0)
        assert max(_direct_deps(arr, xkeys)) == 1


def test_numpy_arguments_mix(client: Any) -> None:
    """``DASK-CHUNKS``: NumPy arrays next to dask arrays are taken as one-chunk dask arrays."""
    out = xembed.embedding_bag(da.from_array(IDX_1D, chunks=7), WEIGHT, OFFSETS, mode="sum")
    assert isinstance(out, da.Array)
    np.testing.assert_allclose(run(client, out), xembed.embedding_bag(IDX_1D, WEIGHT, OFFSETS, mode="sum"),
                               rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------------------------
# graph shapes (no cluster: the synchronous scheduler)
# --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_segment_ids_match_searchsorted_for_any_chunking(seed: int) -> None:
    """``DASK-PARTIALS``: the bag of every position, assembled per position chunk from the offsets chunks that
    span it, equals ``searchsorted(offsets[1:], positions, side="right")`` for random bags (empty ones
    included) under random chunkings of both."""
    from xembed._primitives import _dask as prims

    rng = np.random.default_rng(seed)
    for _ in range(40):
        lengths = rng.integers(0, 5, int(rng.integers(1, 30))) * (rng.random() < 0.8)
        offsets, n = np.r_[0, np.cumsum(lengths)], int(lengths.sum())
        positions = da.core.normalize_chunks(int(rng.integers(1, n + 2)), (n,))[0] if n else ()
        with prims.use_layout(prims.Layout(rows=(1,), positions=tuple(positions))):
            seg = prims.segment_ids(da.from_array(offsets, chunks=int(rng.integers(1, offsets.size + 1))), n, np)
        expected = np.searchsorted(offsets[1:], np.arange(n), side="right")
        np.testing.assert_array_equal(seg.compute(scheduler="synchronous"), expected)


def _tasks(x: Any, stage: str) -> int:
    return sum(1 for k in dict(x.__dask_graph__()) if isinstance(k, tuple) and re.match(f"xembed-{stage}-", k[0]))


def test_2d_bags_route_each_partial_to_its_own_bag_chunks() -> None:
    """``DASK-CHUNKS``: the bags of a 2-D input are known per position chunk, so each chunk's partial goes only to
    the bag chunks it overlaps (as many routing tasks as position chunks when they line up), and the dense
    gradient reads ``grad_output`` only from the chunks of those bags -- not every pair of chunks, which a 1-D
    input with the same bags (the offsets' values are known only at ``.compute()``) needs."""
    idx = RNG.integers(0, N, (64, 5))
    x2 = da.from_array(idx, chunks=(8, 5))
    x1, offsets = x2.reshape(-1), da.from_array(np.arange(64) * 5, chunks=8)
    out2, pb2 = xembed.embedding_bag_vjp(x2, dweight(), mode="sum")
    out1, pb1 = xembed.embedding_bag_vjp(x1, dweight(), offsets, mode="sum")
    assert _tasks(out2, "segment-sum-route") == 8
    assert _tasks(out1, "segment-sum-route") == 64
    g = da.from_array(RNG.standard_normal((64, D)), chunks=(8, D))
    assert _tasks(pb2(g)[0], "src-piece") == 8
    assert _tasks(pb1(g)[0], "src-piece") == 64
    for out, grad in ((out2, pb2(g)[0]), (out1, pb1(g)[0])):
        o, gw = dask.compute(out, grad, scheduler="synchronous")
        wt = t64(WEIGHT, grad=True)
        ref = F.embedding_bag(t64(idx), wt, mode="sum")
        ref.backward(t64(g.compute()))
        assert wt.grad is not None
        np.testing.assert_allclose(o, ref.detach().numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(gw, wt.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_2d_psw_gradient_is_chunked_like_the_input_rows() -> None:
    """``DASK-GRAD``: with a 2-D input chunked along both axes, the per_sample_weights gradient is chunked like the
    first-axis-chunked input (one chunk along the bag length), and equals torch's."""
    idx, psw = RNG.integers(0, N, (9, 5)), RNG.standard_normal((9, 5))
    _, pullback = xembed.embedding_bag_vjp(da.from_array(idx, chunks=(4, 2)), dweight(), mode="sum",
                                           per_sample_weights=da.from_array(psw, chunks=(3, 5)))
    g = RNG.standard_normal((9, D))
    grad_psw = pullback(g)[1]
    assert grad_psw.chunks == ((4, 4, 1), (5,))
    pt = t64(psw, grad=True)
    F.embedding_bag(t64(idx), t64(WEIGHT), mode="sum", per_sample_weights=pt).backward(t64(g))
    assert pt.grad is not None
    np.testing.assert_allclose(grad_psw.compute(scheduler="synchronous"), pt.grad.numpy(), rtol=1e-12,
                               atol=1e-12)


# --------------------------------------------------------------------------------------------------------
# the conformance checker
# --------------------------------------------------------------------------------------------------------

@pytest.mark.heavy(300)
def test_conformance_checker_strict_on_dask(client: Any) -> None:
    """``DASK-DISTRIBUTED``, ``DASK-CHECKS``, ``DASK-RENORM``: the checker's ``dask`` backend (``--strict``, 2
    examples per check), in the checker's process so that the LocalCluster computes every result: every check
    passes, max_norm rows (immutable weight: the output read from the renormed rows) and value errors raised at
    ``.compute()`` included."""
    from xembed_conformance.runner import run_conformance

    assert distributed.default_client() is client
    rep = run_conformance("xembed", backend="dask", max_examples=2, seed=0, strict=True, isolate=False)
    bad = {r["id"]: r["message"][:300] for r in rep["results"] if r["status"] in ("fail", "error")}
    assert not bad, bad
    assert not any(r["status"] == "skip" for r in rep["results"])
    assert rep["summary"]["pass"] >= 150, rep["summary"]


@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_bag_int32_input(client: Any, mode: str) -> None:
    """``DASK-PARTIALS``: int32 indices (1-D with int64 offsets, and 2-D) go through the native segment sum (found
    by the checker's dask backend: numba rejected an int32 index array against int64 bag bounds)."""
    x2 = IDX_2D.astype(np.int32)
    out2 = xembed.embedding_bag(da.from_array(x2, chunks=(4, 2)), dweight(), mode=mode)
    out1 = xembed.embedding_bag(da.from_array(IDX_1D.astype(np.int32), chunks=7), dweight(),
                                da.from_array(OFFSETS, chunks=4), mode=mode)
    o2, o1 = run(client, out2, out1)
    np.testing.assert_allclose(o2, F.embedding_bag(t64(IDX_2D), t64(WEIGHT), mode=mode).numpy(), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(o1, F.embedding_bag(t64(IDX_1D), t64(WEIGHT), t64(OFFSETS), mode=mode).numpy(),
                               rtol=1e-12, atol=1e-12)
