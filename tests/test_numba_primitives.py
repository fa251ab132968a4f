"""The compiled numba primitives (extra ``xembed[fast]``) and the primitive-mode switch (spec ``PRIM-*``).

Every test here proves the numba kernels actually ran (a counting spy wraps the compiled dispatcher the
module calls), so a silent fall back to another path fails them.  numba is part of the ``test`` extra:
a missing install fails here, it does not skip.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import numba  # a missing install must fail, not skip
import numpy as np
import pytest

import xembed
from xembed import _primitives as prim
from xembed._primitives import _numba as nk
from xembed._primitives import _numba_forward as nf


class Spy:
    """Counts the calls of one compiled kernel of :mod:`xembed._primitives._numba`."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.calls = 0

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        return self.fn(*args)


_MAX_THREADS: int = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
KERNEL_NAMES = ["segment_sum_serial", "segment_sum_parallel", "segment_max_serial", "segment_max_parallel",
                "gather_scatter_serial", "gather_scatter_parallel", "bounds_kernel", "first_decrease_kernel"]
FUSED_NAMES = ["bag_forward_kernel", "lookup_kernel"]  # PRIM-FAST-FORWARD


@pytest.fixture
def spies(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Spy]]:
    out = {}
    for name in KERNEL_NAMES:
        spy = Spy(getattr(nk, name))
        monkeypatch.setattr(nk, name, spy)
        out[name] = spy
    for name in FUSED_NAMES:
        spy = Spy(getattr(nf, name))
        monkeypatch.setattr(nf, name, spy)
        out[name] = spy
    with prim.use("numba"):
        yield out


def _ran(spies: dict[str, Spy], prefix: str) -> int:
    return sum(s.calls for k, s in spies.items() if k.startswith(prefix))


def ref_bag(weight: np.ndarray, idx: np.ndarray, offsets: np.ndarray, mode: str, psw: np.ndarray | None = None,
            padding_idx: int | None = None) -> np.ndarray:
    """Naive loops (float64): torch's embedding_bag semantics (BAG-SUM/MEAN/MAX/PAD/EMPTY/PSW)."""
    B = len(offsets) - 1
    out = np.zeros((B, weight.shape[1]), np.float64)
    for b in range(B):
        rows = [(i, weight[idx[i]].astype(np.float64)) for i in range(offsets[b], offsets[b + 1])
                if idx[i] != padding_idx]
        if not rows:
            continue
        if mode == "max":
            cur = rows[0][1].copy()
            for _, r in rows[1:]:
                cur = np.where(r > cur, r, cur)
            out[b] = cur
        else:
            s = sum((1.0 if psw is None else float(psw[i])) * r for i, r in rows)
            out[b] = s / len(rows) if mode == "mean" else s
    return out


def random_bags(rng: np.random.Generator, num_bags: int, num_rows: int, dim: int, maxlen: int,
                dtype: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lens = rng.integers(0, maxlen + 1, num_bags)
    lens[rng.random(num_bags) < 0.2] = 0
    offsets = np.zeros(num_bags + 1, np.int64)
    np.cumsum(lens, out=offsets[1:])
    idx = rng.integers(0, num_rows, int(offsets[-1]))
    return rng.standard_normal((num_rows, dim)).astype(dtype), idx, offsets


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("padding_idx", [None, 3])
@pytest.mark.parametrize("vjp", [False, True], ids=["forward", "vjp"])
def test_public_bag_forward_runs_numba(spies: dict[str, Spy], dtype: Any, mode: str, padding_idx: int | None,
                                       vjp: bool) -> None:
    """BAG-SUM / BAG-MEAN / BAG-MAX / BAG-PAD / BAG-EMPTY through the public API on the numba path: a
    forward call is one fused kernel (PRIM-FAST-FORWARD), the vjp's forward the checks and a segment kernel."""
    rng = np.random.default_rng(0)
    w, idx, offsets = random_bags(rng, 40, 20, 7, 9, dtype)
    if vjp:
        out, _ = xembed.embedding_bag_vjp(idx, w, offsets[:-1], mode=mode, padding_idx=padding_idx)
    else:
        out = xembed.embedding_bag(idx, w, offsets[:-1], mode=mode, padding_idx=padding_idx)
    ref = ref_bag(w, idx, offsets, mode, padding_idx=padding_idx)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    assert out.dtype == dtype
    assert spies["bag_forward_kernel"].calls == (0 if vjp else 1)
    assert _ran(spies, "segment_max" if mode == "max" else "segment_sum") == (1 if vjp else 0)
    assert spies["bounds_kernel"].calls == (1 if vjp else 0)
    assert spies["first_decrease_kernel"].calls == (1 if vjp else 0)


def test_public_psw_and_backward_run_numba(spies: dict[str, Spy]) -> None:
    """BAG-PSW forward and GRAD-BAG dense backward (the fused gather-scatter kernel) on the numba path."""
    rng = np.random.default_rng(1)
    w, idx, offsets = random_bags(rng, 30, 15, 5, 8, np.float64)
    psw: np.ndarray = np.asarray(rng.standard_normal(idx.shape[0]))
    out, pullback = xembed.embedding_bag_vjp(idx, w, offsets[:-1], mode="sum", per_sample_weights=psw)
    np.testing.assert_allclose(out, ref_bag(w, idx, offsets, "sum", psw=psw), rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(out.shape)
    gw, _ = pullback(g)
    seg = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    ref = np.zeros_like(w)
    np.add.at(ref, idx, psw[:, None] * g[seg])
    np.testing.assert_allclose(gw, ref, rtol=1e-12, atol=1e-12)
    assert _ran(spies, "segment_sum") == 1
    assert _ran(spies, "gather_scatter") == 1


def test_max_scan_semantics_numba(spies: dict[str, Spy]) -> None:
    """BAG-MAX-TIES / BAG-MAX-NAN / signed zeros: the strict ``>`` scan, first occurrence wins."""
    w = np.array([[np.nan, 1.0, -0.0], [5.0, 1.0, 0.0], [np.nan, 2.0, 0.0]], np.float32)
    idx = np.array([0, 1, 2, 1, 2, 0])
    offsets = np.array([0, 3, 6])
    values, argrow = prim.gather_segment_max(w, idx, offsets, True, xp=np)
    assert argrow is not None
    assert np.isnan(values[0, 0])
    assert argrow[0, 0] == 0  # a leading NaN sticks
    assert values[1, 0] == 5.0
    assert argrow[1, 0] == 1  # a later NaN never wins
    assert values[0, 1] == 2.0
    assert argrow[0, 1] == 2
    assert argrow[1, 1] == 2  # tie 1.0 / 2.0 / 1.0 -> the 2.0 of row 2
    assert np.signbit(values[0, 2])
    assert argrow[0, 2] == 0  # -0.0 first: +0.0 is not strictly greater
    assert _ran(spies, "segment_max") == 1


def test_parallel_kernels_bitwise_equal_serial(spies: dict[str, Spy], monkeypatch: pytest.MonkeyPatch) -> None:
    """The parallel builds give bit-identical results to the serial ones (one thread per bag / column block)."""
    rng = np.random.default_rng(2)
    w, idx, offsets = random_bags(rng, 200, 50, 40, 30, np.float32)
    g = rng.standard_normal((200, 40)).astype(np.float32)
    seg = np.repeat(np.arange(200), np.diff(offsets))
    serial = (prim.gather_segment_sum(w, idx, offsets, None, np.float32, xp=np),
              prim.gather_segment_max(w, idx, offsets, True, xp=np),
              prim.gather_scatter_add(g, seg, idx, None, 50, np.float32, xp=np))
    monkeypatch.setattr(nk, "_PARALLEL_MIN_WORK", 0)
    old = numba.get_num_threads()
    numba.set_num_threads(min(2, _MAX_THREADS))
    try:
        par = (prim.gather_segment_sum(w, idx, offsets, None, np.float32, xp=np),
               prim.gather_segment_max(w, idx, offsets, True, xp=np),
               prim.gather_scatter_add(g, seg, idx, None, 50, np.float32, xp=np))
    finally:
        numba.set_num_threads(old)
    np.testing.assert_array_equal(serial[0], par[0])
    np.testing.assert_array_equal(serial[1][0], par[1][0])
    np.testing.assert_array_equal(serial[1][1], par[1][1])
    np.testing.assert_array_equal(serial[2], par[2])
    if _MAX_THREADS > 1:
        assert spies["segment_sum_parallel"].calls == 1
        assert spies["gather_scatter_parallel"].calls == 1


def test_value_checks_numba(spies: dict[str, Spy]) -> None:
    """ERR-INDEX-RANGE and ERR-OFFSETS-DECREASING are found by the one-pass numba kernels."""
    w = np.ones((4, 2), np.float32)
    with pytest.raises(IndexError, match=r"index 4 at position 2 of `input`"):
        xembed.embedding_bag(np.array([0, 1, 4]), w, np.array([0]))
    with pytest.raises(ValueError, match=r"offsets\[2\] = 1 < offsets\[1\] = 2"):
        xembed.embedding_bag(np.array([0, 1, 3]), w, np.array([0, 2, 1]))
    # the offsets check runs first: the second call never reaches the index pass
    assert spies["bounds_kernel"].calls == 1
    assert spies["first_decrease_kernel"].calls == 1
    assert prim.index_bounds(np.array([[3, -2], [7, 0]], np.int16), xp=np) == (-2, 7)


def test_low_precision_goes_to_numpy_explicitly(spies: dict[str, Spy]) -> None:
    """ACC-LOWP: float16 is not a numba kernel dtype; it takes the pure-NumPy primitive (float32 accumulation)."""
    rng = np.random.default_rng(3)
    w, idx, offsets = random_bags(rng, 10, 8, 3, 5, np.float16)
    out = xembed.embedding_bag(idx, w, offsets[:-1], mode="sum")
    np.testing.assert_allclose(out.astype(np.float64), ref_bag(w, idx, offsets, "sum"), rtol=2e-3, atol=2e-3)
    assert _ran(spies, "segment_sum") == 0


def test_mode_switch_is_context_local() -> None:
    """PRIM-MODE: ``use`` sets a ContextVar: a thread running meanwhile keeps its own (default) mode."""
    default = prim.mode()
    target = "fallback" if default != "fallback" else "native"
    seen: dict[str, str] = {}
    entered = threading.Event()

    def other() -> None:
        entered.wait()
        seen["other"] = prim.mode()

    t = threading.Thread(target=other)
    t.start()
    with prim.use(target):
        entered.set()
        t.join()
        assert prim.mode() == target
    assert seen["other"] == default
    assert prim.mode() == default
    with pytest.raises(ValueError, match="`mode` must be one of"), prim.use("fast"):
        pass


def test_tables_per_mode() -> None:
    """PRIM-MODE: numba / auto use the compiled kernels, native the pure-NumPy ones, fallback the standard's."""
    import array_api_compat.numpy as cnp

    with prim.use("numba"):
        assert prim.table(cnp).gather_segment_sum is nk.gather_segment_sum
    with prim.use("auto"):
        assert prim.table(cnp).gather_segment_sum is nk.gather_segment_sum
    with prim.use("native"):
        from xembed._primitives import _numpy

        assert prim.table(cnp).gather_segment_sum is _numpy.gather_segment_sum
    with prim.use("fallback"):
        from xembed._primitives import _fallback

        assert prim.table(cnp).gather_segment_sum is _fallback.gather_segment_sum


def test_numba_mode_without_numba_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """PRIM-MODE: ``numba`` without numba installed is an ImportError naming the extra (never a silent path)."""
    import array_api_compat.numpy as cnp

    monkeypatch.setattr(prim, "_numba_ok", {"numba": False})
    monkeypatch.setattr(prim, "_tables", {})
    with prim.use("numba"), pytest.raises(ImportError, match=r"xembed\[fast\]"):
        prim.table(cnp)
    with prim.use("auto"):
        from xembed._primitives import _numpy

        assert prim.table(cnp).gather_segment_sum is _numpy.gather_segment_sum
