"""The one-kernel NumPy forwards (spec ``PRIM-FAST-FORWARD``): bit-identical to the general numba path, the
same errors, and the general path for everything they do not take."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import xembed
from xembed import _primitives as prim
from xembed._primitives import _numba as nk
from xembed._primitives import _numba_forward as nf  # numba missing: fails, does not skip

DEFAULTS: dict[str, Any] = {"max_norm": None, "norm_type": 2.0, "scale_grad_by_freq": False, "mode": "mean",
                            "sparse": False, "per_sample_weights": None, "include_last_offset": False,
                            "padding_idx": None}


def fused_bag(input: Any, weight: Any, offsets: Any = None, **kw: Any) -> Any:
    return nf.embedding_bag(input, weight, offsets, **{**DEFAULTS, **kw})


def general_bag(input: Any, weight: Any, offsets: Any = None, **kw: Any) -> Any:
    """The general numba path (a vjp call never takes the fused forward)."""
    with prim.use("numba"):
        return xembed.embedding_bag_vjp(input, weight, offsets, **kw)[0]


def _bags(rng: np.random.Generator, idx_dtype: Any, dtype: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lens = rng.choice([0, 1, 2, 5, 17], size=30)
    offsets = np.concatenate(([0], np.cumsum(lens)[:-1])).astype(idx_dtype)
    idx = rng.integers(0, 12, int(lens.sum())).astype(idx_dtype)
    w = rng.standard_normal((12, 9)).astype(dtype)
    w[2, 3] = np.nan
    w[4] = w[5]  # ties in max
    return w, idx, offsets


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("idx_dtype", [np.int32, np.int64])
@pytest.mark.parametrize(("mode", "extra"), [
    ("sum", {}), ("mean", {}), ("max", {}), ("sum", {"padding_idx": 4}), ("mean", {"padding_idx": -8}),
    ("max", {"padding_idx": 5}), ("sum", {"psw": True}), ("sum", {"psw": True, "padding_idx": 0}),
    ("mean", {"include_last_offset": True}), ("sum", {"sparse": True, "scale_grad_by_freq": False}),
])
def test_bag_bit_identical_to_general_path(dtype: Any, idx_dtype: Any, mode: str, extra: dict[str, Any]) -> None:
    """BAG-SUM / MEAN / MAX / PAD / PSW / EMPTY / LAST-OFFSET, with NaNs and ties: the same bits as the general path."""
    rng = np.random.default_rng(0)
    w, idx, offsets = _bags(rng, idx_dtype, dtype)
    kw = dict(extra, mode=mode)
    if kw.pop("psw", False):
        kw["per_sample_weights"] = np.asarray(rng.standard_normal(idx.shape[0]), dtype)
    if kw.get("include_last_offset"):
        offsets = np.concatenate([offsets, [idx.shape[0]]]).astype(idx_dtype)
    out = fused_bag(idx, w, offsets, **kw)
    assert out is not None
    np.testing.assert_array_equal(out, general_bag(idx, w, offsets, **kw))
    assert out.dtype == dtype


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_2d_bags_and_empty(mode: str) -> None:
    """BAG-LAYOUT-2D with padding, a (B, 0) input, and no rows at all."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((10, 4)).astype(np.float32)
    idx = rng.integers(0, 10, (6, 5))
    for inp in (idx, idx[:, :0], idx[:0]):
        out = fused_bag(inp, w, mode=mode, padding_idx=0)
        assert out is not None
        np.testing.assert_array_equal(out, general_bag(inp, w, mode=mode, padding_idx=0))


@pytest.mark.parametrize(("idx", "offsets", "kw", "error", "match"), [
    ([0, 1, 4], [0], {}, IndexError, r"index 4 at position 2 of `input`"),
    ([0, -1, 2], [0, 1], {}, IndexError, r"index -1 at position 1 of `input`"),
    ([0, 1, 3], [0, 2, 1], {}, ValueError, r"offsets\[2\] = 1 < offsets\[1\] = 2"),
    ([0, 1, 3], [1, 2], {}, ValueError, r"`offsets`\[0\] must be 0, got 1"),
    ([0, 1, 3], [0, 5], {}, ValueError, r"`offsets`\[-1\] = 5 is greater"),
    ([0, 1, 3], [0, 2], {"include_last_offset": True}, ValueError, r"must equal the number of indices"),
    ([0, 9], [], {}, IndexError, r"index 9 at position 1"),
])
def test_bad_values_raise_the_general_error(idx: list[int], offsets: list[int], kw: dict[str, Any],
                                            error: type[Exception], match: str) -> None:
    """ERR-INDEX-RANGE / ERR-OFFSETS-*: the kernel finds a bad value, the general path raises its error."""
    w = np.ones((4, 2), np.float32)
    i, o = np.asarray(idx, np.int64), np.asarray(offsets, np.int64)
    assert fused_bag(i, w, o, **kw) is None
    with prim.use("numba"), pytest.raises(error, match=match):
        xembed.embedding_bag(i, w, o, **kw)


def test_declines_what_it_does_not_take(monkeypatch: pytest.MonkeyPatch) -> None:
    """Subclasses, other byte orders, max_norm, the extensions and parallel-sized calls go to the general path."""
    monkeypatch.setattr(nk, "_parallel_threads", lambda work: 2 if work >= 1 << 17 else 0)
    w = np.ones((6, 3), np.float32)
    idx, offs = np.array([0, 1, 2]), np.array([0, 2])
    assert fused_bag(idx, w, offs) is not None
    declined = [
        fused_bag(np.ma.masked_array(idx), w, offs),
        fused_bag(idx, w.astype(">f4"), offs),
        fused_bag(idx, w.astype(np.float16), offs, per_sample_weights=np.ones(3, np.float32), mode="sum"),
        fused_bag(idx, w.view(np.int32), offs),
        fused_bag(idx.astype(np.uint8), w, offs),
        fused_bag(idx, w, offs, max_norm=1.0),
        fused_bag(idx, w, offs, mode="sqrtn"),
        fused_bag(idx, w, offs, per_sample_weights=np.ones(3, np.float32), mode="mean"),
        fused_bag(idx, w, offs, padding_idx=6),
        fused_bag(idx, w, offs, padding_idx=True),
        fused_bag(idx, w, offs, sparse=1),
        fused_bag(idx, w, offs, norm_type=float("nan")),
        fused_bag(idx, w, offs, mode="max", sparse=True),
        fused_bag(idx, w, None),
        fused_bag(np.zeros(1 << 16, np.int64), np.ones((4, 8), np.float32), offs),
    ]
    assert all(d is None for d in declined)


def test_one_thread_takes_every_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """With numba on one thread the general path would be serial too: the one kernel takes any size."""
    monkeypatch.setattr(nk, "_parallel_threads", lambda _work: 0)
    idx = np.zeros(1 << 16, np.int64)
    out = fused_bag(idx, np.ones((4, 8), np.float32), np.array([0, 5]), mode="sum")
    assert out is not None
    np.testing.assert_array_equal(out, [[5.0] * 8, [float((1 << 16) - 5)] * 8])


@pytest.mark.parametrize(("mode", "extra"), [("sum", {}), ("mean", {"padding_idx": 4}), ("max", {}),
                                             ("sum", {"psw": True, "padding_idx": 0})])
def test_float16_tables_accumulate_in_float32_as_the_general_path(mode: str, extra: dict[str, Any]) -> None:
    """ACC-LOWP: float16 values widened exactly, summed in float32, rounded once: the general path's bits."""
    rng = np.random.default_rng(3)
    w, idx, offsets = _bags(rng, np.int64, np.float16)
    w[7] = np.float16(2048.0)  # 2048 + 1 + 1 is 2048 summed in float16, 2050 in float32
    w[9] = np.float16(1.0)
    w[8, 0] = np.float16("inf")
    idx[:3] = [7, 9, 9]
    kw = dict(extra, mode=mode)
    if kw.pop("psw", False):
        kw["per_sample_weights"] = np.asarray(rng.standard_normal(idx.shape[0]), np.float16)
    out = fused_bag(idx, w, offsets, **kw)
    assert out is not None
    assert out.dtype == np.float16
    with np.errstate(invalid="ignore"):  # inf - inf in a bag: NaN, and NumPy's matmul says so
        expected = general_bag(idx, w, offsets, **kw)
    np.testing.assert_array_equal(out, expected)
    one_bag = fused_bag(np.array([7, 9, 9]), w, np.array([0]), mode="sum")
    assert one_bag is not None
    assert one_bag[0, 1] == 2050  # float16 accumulation would give 2048
    lookup = nf.embedding(idx, w, None, None, 2.0, False, False)
    assert lookup is not None
    np.testing.assert_array_equal(lookup.view(np.uint16), w[idx].view(np.uint16))


@pytest.mark.parametrize("shape", [(), (0,), (7,), (3, 4)])
def test_embedding_lookup(shape: tuple[int, ...]) -> None:
    """EMB-LOOKUP / EMB-SHAPE (0-d and empty inputs) and ERR-INDEX-RANGE through the fused lookup."""
    rng = np.random.default_rng(2)
    w = rng.standard_normal((9, 5))
    idx = rng.integers(0, 9, shape)
    out = nf.embedding(idx, w, None, None, 2.0, False, False)
    assert out is not None
    np.testing.assert_array_equal(out, w[idx])
    assert nf.embedding(np.array([1, 9]), w, None, None, 2.0, False, False) is None
    with prim.use("numba"), pytest.raises(IndexError, match=r"index -1 at position 1 of `input`"):
        xembed.embedding(np.array([1, -1]), w)
