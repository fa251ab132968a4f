"""Extensions beyond torch (docs/spec.md, section "Extensions beyond torch"): ``mode='sqrtn'``,
``mode='min'``, the weighted mean (``per_sample_weights`` with ``mode='mean'``) and ``lengths=``.

torch has none of these, so the oracle is :func:`reference` below: the formulas of the spec written directly,
one bag at a time, on float64 torch tensors, with the gradients taken by torch autograd through those formulas
(the weight gradient as the gradient of the gathered per-position rows, summed per row and divided by the index
frequency for ``scale_grad_by_freq`` — GRAD-SGBF applied by definition).  Nothing in it comes from xembed.
The rows are renormed (max_norm) by ``torch.nn.functional.embedding`` on a float64 copy, the SPEC oracle for
RENORM-*.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch  # the reference runs on float64 torch tensors: a missing install must fail, not skip
from xembed_testutils import (
    INDEX_DTYPES,
    Backend,
    assert_bitwise_equal,
    assert_like_weight,
    to_numpy,
    xp_assert_close,
)

import xembed

N, D = 7, 3

# bags: [2,4] [] [4,2,2] [2,2] [1] [0,4,3,2,5,4] [6,6] [6,1,6] [3,5] [1,0]
# empty bag 1; all-padding bags 3 (padding 2) and 6 (padding 6/-1); duplicates within and across bags.
IDX_1D = np.array([2, 4, 4, 2, 2, 2, 2, 1, 0, 4, 3, 2, 5, 4, 6, 6, 6, 1, 6, 3, 5, 1, 0])
LENGTHS = np.array([2, 0, 3, 2, 1, 6, 2, 3, 2, 2])
OFFSETS = np.concatenate([[0], np.cumsum(LENGTHS)[:-1]])
IDX_2D = np.array([[2, 4, 4, 1], [2, 2, 2, 2], [6, 0, 6, 3], [5, 5, 2, 6], [3, 1, 3, 0]])
ZERO_SUM_BAG = 8  # weights 1.25, -1.25: the weighted mean's divisor is 0 (EXT-WMEAN-ZERO)
ZERO_WEIGHTS_BAG = 9  # weights 0, 0: sqrtn's divisor is 0 (EXT-SQRTN-ZERO); the weighted mean's too

# (mode, use per_sample_weights): the four reductions this file is about
EXT_MODES = {
    "sqrtn": ("sqrtn", False),
    "sqrtn_psw": ("sqrtn", True),
    "wmean": ("mean", True),
    "min": ("min", False),
}
# (scale_grad_by_freq, sparse): min takes neither (EXT-MIN-ARGS)
GRAD_OPTIONS = {"plain": (False, False), "sgbf": (True, False), "sparse": (False, True)}
CASES = [
    pytest.param(m, o, id=f"{m}-{o}")
    for m in EXT_MODES
    for o in GRAD_OPTIONS
    if m != "min" or o == "plain"
]


def _weight(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((N, D))


def _psw(shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
    """Weights in ±[0.5, 1.5] (every third one negative), with the two designated zero-divisor bags; every
    other bag's non-padding weights sum to at least 0.15 in absolute value (padding None, 2 or 6)."""
    rng = np.random.default_rng(seed)
    sign = np.where(np.arange(int(np.prod(shape))) % 3 == 2, -1.0, 1.0).reshape(shape)
    w = rng.uniform(0.5, 1.5, shape) * sign
    if shape == IDX_1D.shape:
        w[OFFSETS[ZERO_SUM_BAG] : OFFSETS[ZERO_SUM_BAG] + 2] = [1.25, -1.25]
        w[OFFSETS[ZERO_WEIGHTS_BAG] : OFFSETS[ZERO_WEIGHTS_BAG] + 2] = 0.0
    elif shape == IDX_2D.shape:
        w[3] = [1.0, -1.0, 0.5, -0.5]  # row 3 ([5,5,2,6]): divisor 0 without padding
        w[4] = 0.0
    return w


# ----------------------------------------------------------------------------------------------------------
# the float64 reference of the formulas


def _bags(idx: np.ndarray, offsets: np.ndarray | None, include_last_offset: bool) -> list[list[int]]:
    """Positions (into the flattened input) of every bag."""
    if idx.ndim == 2:
        b, length = idx.shape
        return [list(range(r * length, (r + 1) * length)) for r in range(b)]
    assert offsets is not None
    offs = [int(o) for o in offsets]
    ends = offs[1:] if include_last_offset else [*offs[1:], idx.size]
    starts = offs[:-1] if include_last_offset else offs
    return [list(range(int(s), int(e))) for s, e in zip(starts, ends, strict=True)]


def reference(idx: np.ndarray, bags: list[list[int]], w64: np.ndarray, psw: np.ndarray | None, g: np.ndarray,
              mode: str, padding_idx: int | None, scale_grad_by_freq: bool) -> dict[str, Any]:
    """out, dense weight gradient, sparse entries (row, value) and psw gradient, in float64.

    EXT-SQRTN: ``sum(w_i W_i) / sqrt(sum(w_i^2))``; EXT-WMEAN: ``sum(w_i W_i) / sum(w_i)``; a divisor of 0 (or
    an empty / all-padding bag) gives a constant zero row (so no gradient); EXT-MIN: per feature, a strict ``<``
    scan in input order (ties to the first occurrence).
    """
    flat = idx.reshape(-1).astype(np.int64)
    pad = None if padding_idx is None else padding_idx % N
    rows = torch.tensor(w64[flat], dtype=torch.float64, requires_grad=True)
    pw = None if psw is None else torch.tensor(psw.reshape(-1), dtype=torch.float64, requires_grad=True)
    zero = torch.zeros(D, dtype=torch.float64)
    outs = []
    for positions in bags:
        pos = [i for i in positions if flat[i] != pad]
        if not pos:
            outs.append(zero)
            continue
        if mode == "min":
            best = []
            for d in range(D):
                b = pos[0]
                for i in pos[1:]:
                    if rows[i, d] < rows[b, d]:
                        b = i
                best.append(rows[b, d])
            outs.append(torch.stack(best))
            continue
        w = torch.stack([pw[i] for i in pos]) if pw is not None else torch.ones(len(pos), dtype=torch.float64)
        num = (w[:, None] * rows[pos]).sum(dim=0)
        div = w.sum() if mode == "mean" else torch.sqrt((w * w).sum())  # mean without psw: sum(1) = count
        outs.append(zero if float(div.detach()) == 0.0 else num / div)
    out = torch.stack(outs) if outs else torch.zeros((0, D), dtype=torch.float64)
    if out.requires_grad:
        torch.autograd.backward((out * torch.from_numpy(g)).sum())
    d_rows = np.zeros((flat.size, D)) if rows.grad is None else rows.grad.numpy()
    keep = flat != pad if pad is not None else np.ones(flat.size, dtype=bool)
    freq = np.bincount(flat, minlength=N)
    scale = 1.0 / freq[flat] if scale_grad_by_freq else np.ones(flat.size)
    grad_w = np.zeros((N, D))
    for k in np.flatnonzero(keep):
        grad_w[flat[k]] += d_rows[k] * scale[k]
    grad_psw = None
    if pw is not None and psw is not None:
        grad_psw = (np.zeros(flat.size) if pw.grad is None else pw.grad.numpy()).reshape(psw.shape)
    return {"out": out.detach().numpy(), "grad_w": grad_w, "sparse_idx": flat[keep],
            "sparse_values": d_rows[keep], "grad_psw": grad_psw}


def _renormed(w: np.ndarray, idx: np.ndarray, max_norm: float | None, norm_type: float) -> np.ndarray:
    """The weight after the call's in-place renorm, by torch (the RENORM-* oracle) on a float64 copy."""
    if max_norm is None:
        return w
    t = torch.tensor(w, dtype=torch.float64)
    torch.nn.functional.embedding(torch.tensor(idx.reshape(-1), dtype=torch.int64), t, max_norm=max_norm,
                                  norm_type=norm_type)
    return t.numpy()


def check_extension(backend: Backend, idx: np.ndarray, weight: np.ndarray, *, offsets: np.ndarray | None = None,
                    lengths: np.ndarray | None = None, psw: np.ndarray | None = None, mode: str,
                    dtype: str = "float64", index_dtype: str = "int64", seed: int = 0,
                    **kw: Any) -> dict[str, Any]:
    """Run embedding_bag_vjp and embedding_bag on ``backend`` and compare output, weight after the call, weight
    gradient (dense or SparseGrad layout) and psw gradient with :func:`reference`."""
    backend.require_dtype(dtype)
    w = backend.asarray(weight, dtype)
    w_plain = backend.asarray(weight, dtype)
    i = backend.asarray(idx, index_dtype)
    o = None if offsets is None else backend.asarray(offsets, index_dtype)
    ln = None if lengths is None else backend.asarray(lengths, index_dtype)
    p = None if psw is None else backend.asarray(psw, dtype)
    ilo = kw.get("include_last_offset", False)
    if lengths is not None:
        bags = _bags(idx, np.concatenate([[0], np.cumsum(lengths)]), True)
    else:
        bags = _bags(idx, offsets, ilo)
    w64 = _renormed(to_numpy(w).astype(np.float64), idx, kw.get("max_norm"), kw.get("norm_type", 2.0))
    g = backend.asarray(np.random.default_rng(seed).standard_normal((len(bags), D)), dtype)
    p64 = None if p is None else to_numpy(p).astype(np.float64)
    ref = reference(idx, bags, w64, p64, to_numpy(g).astype(np.float64), mode, kw.get("padding_idx"),
                    kw.get("scale_grad_by_freq", False))

    out, pullback = xembed.embedding_bag_vjp(i, w, o, mode=mode, per_sample_weights=p, lengths=ln, **kw)
    assert_like_weight(out, w, (len(bags), D), "output")
    xp_assert_close(out, ref["out"], like=w, err_msg="output")
    if backend.is_immutable:  # RENORM-FUNCTIONAL: the caller's weight is unchanged, xembed.renorm gives w64
        xp_assert_close(w, weight, like=w, err_msg="weight after the call (immutable: unchanged)")
        if kw.get("max_norm") is not None:
            renormed = xembed.renorm(w, i, kw["max_norm"], kw.get("norm_type", 2.0))
            xp_assert_close(renormed, w64, like=w, err_msg="xembed.renorm")
    else:
        xp_assert_close(w, w64, like=w, err_msg="weight after the call")
    gw, gp = pullback(g)
    if kw.get("sparse"):
        assert isinstance(gw, xembed.SparseGrad), f"sparse=True must give a SparseGrad, got {type(gw)}"
        assert gw.shape == (N, D)
        np.testing.assert_array_equal(to_numpy(gw.indices), ref["sparse_idx"], err_msg="SparseGrad.indices")
        assert_like_weight(gw.values, w, (ref["sparse_idx"].size, D), "SparseGrad.values")
        xp_assert_close(gw.values, ref["sparse_values"], like=w, err_msg="SparseGrad.values")
        xp_assert_close(gw.to_dense(), ref["grad_w"], like=w, err_msg="SparseGrad.to_dense()")
    else:
        assert_like_weight(gw, w, (N, D), "weight gradient")
        xp_assert_close(gw, ref["grad_w"], like=w, err_msg="weight gradient")
    if p is None:
        assert gp is None
    else:
        assert_like_weight(gp, p, tuple(p.shape), "per_sample_weights gradient")
        xp_assert_close(gp, ref["grad_psw"], like=p, err_msg="per_sample_weights gradient")

    out_plain = xembed.embedding_bag(i, w_plain, o, mode=mode, per_sample_weights=p, lengths=ln, **kw)
    xp_assert_close(out_plain, ref["out"], like=w, err_msg="embedding_bag output")
    return {"out": out, "grad_w": gw, "grad_psw": gp, "ref": ref}


def _layout(layout: str) -> dict[str, Any]:
    if layout == "2d":
        return {"idx": IDX_2D}
    if layout == "lengths":
        return {"idx": IDX_1D, "lengths": LENGTHS}
    if layout == "offsets_ilo":
        return {"idx": IDX_1D, "offsets": np.append(OFFSETS, IDX_1D.size), "include_last_offset": True}
    return {"idx": IDX_1D, "offsets": OFFSETS}


# ----------------------------------------------------------------------------------------------------------
# values and gradients


@pytest.mark.parametrize("layout", ["offsets", "offsets_ilo", "2d", "lengths"])
@pytest.mark.parametrize("padding_idx", [None, 2, -1])
@pytest.mark.parametrize(("ext", "option"), CASES)
def test_against_reference(backend: Backend, ext: str, option: str, padding_idx: int | None, layout: str) -> None:
    """EXT-SQRTN(-GRAD, -ZERO), EXT-WMEAN(-GRAD, -ZERO), EXT-MIN(-GRAD), EXT-LENGTHS with EXT-PAD, EXT-SGBF and
    EXT-SPARSE (GRAD-SPARSE layout), on every layout (BAG-LAYOUT-1D/2D, BAG-LAST-OFFSET)."""
    mode, with_psw = EXT_MODES[ext]
    sgbf, sparse = GRAD_OPTIONS[option]
    lay = _layout(layout)
    idx = lay.pop("idx")
    psw = _psw(idx.shape) if with_psw else None
    res = check_extension(backend, idx, _weight(1), psw=psw, mode=mode, padding_idx=padding_idx,
                          scale_grad_by_freq=sgbf, sparse=sparse, **lay)
    out = to_numpy(res["out"])
    if idx.ndim == 1:
        np.testing.assert_array_equal(out[1], 0, err_msg="empty bag → zeros")
        if padding_idx == 2:
            np.testing.assert_array_equal(out[3], 0, err_msg="all-padding bag → zeros")
        if with_psw and ext == "wmean":
            np.testing.assert_array_equal(out[ZERO_SUM_BAG], 0, err_msg="weights summing to 0 → zeros")
        if with_psw:
            np.testing.assert_array_equal(out[ZERO_WEIGHTS_BAG], 0, err_msg="all-zero weights → zeros")
    if with_psw and padding_idx is not None:
        np.testing.assert_array_equal(to_numpy(res["grad_psw"])[idx == padding_idx % N], 0,
                                      err_msg="padding positions get no psw gradient")


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # 0 * inf inside the sum
def test_zero_divisor_bags_get_no_gradient(backend: Backend) -> None:
    """EXT-WMEAN-ZERO, EXT-SQRTN-ZERO: zero output, zero weight and psw gradients for that bag — even when a
    row of the bag is not finite (TensorFlow's div_no_nan)."""
    w = _weight(2)
    w[3, 0] = np.inf
    idx = np.array([3, 5, 1, 0, 2])
    offs = np.array([0, 2, 4])
    for mode, psw in (("mean", [1.5, -1.5, 1.0, 1.0, 2.0]), ("sqrtn", [0.0, 0.0, 1.0, 1.0, 2.0])):
        out, pullback = xembed.embedding_bag_vjp(backend.asarray(idx), backend.asarray(w), backend.asarray(offs),
                                                 mode=mode, per_sample_weights=backend.asarray(np.array(psw)))
        gw, gp = pullback(backend.asarray(np.ones((3, D))))
        np.testing.assert_array_equal(to_numpy(out)[0], 0)
        np.testing.assert_array_equal(to_numpy(gw)[[3, 5]], 0)
        np.testing.assert_array_equal(to_numpy(gp)[:2], 0)
        assert np.all(np.isfinite(to_numpy(gw)[[0, 1, 2]]))
        assert np.all(np.isfinite(to_numpy(gp)))


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("ext", list(EXT_MODES))
def test_dtypes(backend: Backend, ext: str, dtype: str, index_dtype: str) -> None:
    """EXT-DTYPES: every float dtype (low precision accumulates in float32) and int32 indices, lengths and
    offsets.  Weights are positive here so the low-precision divisors are well conditioned."""
    mode, with_psw = EXT_MODES[ext]
    psw = np.abs(_psw(IDX_1D.shape)) + 0.25 if with_psw else None
    check_extension(backend, IDX_1D, _weight(3), offsets=OFFSETS, psw=psw, mode=mode, dtype=dtype,
                    index_dtype=index_dtype, padding_idx=6)
    check_extension(backend, IDX_1D, _weight(3), lengths=LENGTHS, psw=psw, mode=mode, dtype=dtype,
                    index_dtype=index_dtype)


def test_low_precision_accumulates_in_float32(backend: Backend) -> None:
    """EXT-DTYPES: 3000 float16 ones, weighted 1: the float32-accumulated sqrtn is sqrt(3000) (a float16 sum
    would stop at 2048)."""
    backend.require_dtype("float16")
    w = backend.asarray(np.ones((2, 1)), "float16")
    idx = backend.asarray(np.zeros(3000, dtype=np.int64))
    out = xembed.embedding_bag(idx, w, backend.asarray(np.array([0])), mode="sqrtn")
    np.testing.assert_allclose(to_numpy(out).astype(np.float64), [[np.sqrt(3000)]], rtol=1e-3)
    out = xembed.embedding_bag(idx, w, backend.asarray(np.array([0])), mode="mean",
                               per_sample_weights=backend.asarray(np.full(3000, 0.5), "float16"))
    np.testing.assert_array_equal(to_numpy(out).astype(np.float64), [[1.0]])


@pytest.mark.parametrize("norm_type", [1.0, 2.0, np.inf])
@pytest.mark.parametrize("ext", list(EXT_MODES))
def test_max_norm(backend: Backend, ext: str, norm_type: float) -> None:
    """EXT-RENORM: the rows are renormed in place first (RENORM-*); values and both gradients see the renormed
    rows (RENORM-GRAD)."""
    mode, with_psw = EXT_MODES[ext]
    w = _weight(4) * np.arange(1, N + 1)[:, None]
    psw = _psw(IDX_1D.shape) if with_psw else None
    check_extension(backend, IDX_1D, w, offsets=OFFSETS, psw=psw, mode=mode, max_norm=1.5, norm_type=norm_type,
                    padding_idx=2, scale_grad_by_freq=mode != "min")


def test_min_ties_and_nan(backend: Backend) -> None:
    """EXT-MIN, EXT-MIN-TIES, EXT-MIN-NAN, EXT-MIN-GRAD: ties go to the first occurrence (it gets the whole
    gradient); a NaN survives only as the bag's first element (BAG-MAX-NAN mirrored); -0.0 vs 0.0 is a tie."""
    w = np.array([[1.0, 0.0, np.nan], [1.0, -0.0, 2.0], [3.0, 5.0, 1.0], [np.nan, 7.0, 0.5]])
    idx = np.array([0, 1, 2, 2, 3, 1, 0])
    offs = np.array([0, 3, 5])
    out, pullback = xembed.embedding_bag_vjp(backend.asarray(idx), backend.asarray(w), backend.asarray(offs),
                                             mode="min")
    o = to_numpy(out)
    np.testing.assert_array_equal(o[0], [1.0, 0.0, np.nan])  # bag [0,1,2]: ties → row 0; NaN first sticks
    assert not np.signbit(o[0, 1]), "the first of the tied zeros (+0.0) wins"
    np.testing.assert_array_equal(o[1], [3.0, 5.0, 0.5])  # bag [2,3]: the later NaN is never chosen
    np.testing.assert_array_equal(o[2], [1.0, -0.0, 2.0])  # bag [1,0]: 1.0 tie → row 1; 0.0 tie → row 1 (-0.0)
    gw = to_numpy(pullback(backend.asarray(np.arange(1.0, 10.0).reshape(3, 3)))[0])
    expected = np.zeros_like(w)
    expected[0] += [1.0, 2.0, 3.0]  # bag 0: every feature won by row 0
    expected[2] += [4.0, 5.0, 0.0]
    expected[3] += [0.0, 0.0, 6.0]
    expected[1] += [7.0, 8.0, 9.0]  # bag 2: every feature won by row 1 (first occurrence)
    np.testing.assert_array_equal(gw, expected)


def test_empty_input_and_zero_bags(backend: Backend) -> None:
    """EXT-SQRTN-ZERO, EXT-WMEAN-ZERO, EXT-MIN, EXT-LENGTHS: empty bags everywhere, and zero bags from empty
    lengths: zeros, no gradient, shapes kept."""
    w = backend.asarray(_weight(5))
    empty = backend.asarray(np.array([], dtype=np.int64))
    for mode in ("sqrtn", "min", "mean"):
        psw = backend.asarray(np.array([])) if mode == "mean" else None
        out, pullback = xembed.embedding_bag_vjp(empty, w, lengths=backend.asarray(np.array([0, 0])), mode=mode,
                                                 per_sample_weights=psw)
        assert tuple(out.shape) == (2, D)
        np.testing.assert_array_equal(to_numpy(out), 0)
        gw, gp = pullback(backend.asarray(np.ones((2, D))))
        np.testing.assert_array_equal(to_numpy(gw), 0)
        assert gp is None or tuple(gp.shape) == (0,)
        out = xembed.embedding_bag(empty, w, lengths=empty, mode=mode, per_sample_weights=psw)
        assert tuple(out.shape) == (0, D)


def test_lengths_equals_offsets(backend: Backend) -> None:
    """EXT-LENGTHS: identical (bitwise) to offsets = [0, cumsum(lengths)[:-1]], gradients included."""
    w = backend.asarray(_weight(6))
    i = backend.asarray(IDX_1D)
    psw = backend.asarray(_psw(IDX_1D.shape))
    g = backend.asarray(np.random.default_rng(7).standard_normal((LENGTHS.size, D)))
    for mode in ("sum", "mean", "max", "sqrtn", "min"):
        p = psw if mode in ("sum", "mean", "sqrtn") else None
        a, pa = xembed.embedding_bag_vjp(i, w, backend.asarray(OFFSETS), mode=mode, per_sample_weights=p,
                                         padding_idx=2)
        b, pb = xembed.embedding_bag_vjp(i, w, mode=mode, per_sample_weights=p, padding_idx=2,
                                         lengths=backend.asarray(LENGTHS))
        assert_bitwise_equal(a, b, f"{mode} output")
        for x, y in zip(pa(g), pb(g), strict=True):
            if x is None:
                assert y is None
            else:
                assert_bitwise_equal(x, y, f"{mode} gradient")


@pytest.mark.usefixtures("primitives")
def test_fallback_primitives(backend: Backend) -> None:
    """EXT-SQRTN, EXT-WMEAN, EXT-MIN through the native and the standard-only primitives (gather_segment_min's
    fallback)."""
    for mode, with_psw in EXT_MODES.values():
        check_extension(backend, IDX_1D, _weight(8), lengths=LENGTHS, mode=mode, padding_idx=-1,
                        psw=_psw(IDX_1D.shape) if with_psw else None)


def test_module(backend: Backend) -> None:
    """EXT-MODES, EXT-LENGTHS: EmbeddingBag accepts the new modes and ``lengths=`` in its forward and vjp."""
    w = backend.asarray(_weight(9))
    bag = xembed.EmbeddingBag.from_pretrained(w, mode="sqrtn", padding_idx=6)
    i, ln = backend.asarray(IDX_1D), backend.asarray(LENGTHS)
    p = backend.asarray(_psw(IDX_1D.shape))
    expected = xembed.embedding_bag(i, w, lengths=ln, mode="sqrtn", padding_idx=6, per_sample_weights=p)
    assert_bitwise_equal(bag(i, per_sample_weights=p, lengths=ln), expected, "module forward")
    out, _ = bag.vjp(i, lengths=ln, per_sample_weights=p)
    assert_bitwise_equal(out, expected, "module vjp")
    assert xembed.EmbeddingBag(3, 2, mode="min").mode == "min"
    with pytest.raises(ValueError, match="`mode`"):
        xembed.EmbeddingBag(3, 2, mode="median")


# ----------------------------------------------------------------------------------------------------------
# torch autograd


@pytest.mark.parametrize(("ext", "sparse"), [(e, s) for e in EXT_MODES for s in (False, True) if e != "min" or not s])
def test_torch_autograd(ext: str, sparse: bool) -> None:
    """EXT-SQRTN-GRAD, EXT-WMEAN-GRAD, EXT-MIN-GRAD: autograd through the new modes gives the reference gradients
    (weight and per_sample_weights); sparse gives a sparse COO weight gradient (min has none: EXT-MIN-ARGS)."""
    mode, with_psw = EXT_MODES[ext]
    w = torch.tensor(_weight(10), requires_grad=True)
    p = torch.tensor(_psw(IDX_1D.shape), requires_grad=True) if with_psw else None
    out = xembed.embedding_bag(torch.tensor(IDX_1D), w, mode=mode, per_sample_weights=p, padding_idx=2,
                               sparse=sparse, lengths=torch.tensor(LENGTHS))
    g = np.random.default_rng(11).standard_normal((LENGTHS.size, D))
    torch.autograd.backward((out * torch.from_numpy(g)).sum())
    ref = reference(IDX_1D, _bags(IDX_1D, OFFSETS, False), _weight(10), None if p is None else p.detach().numpy(),
                    g, mode, 2, False)
    np.testing.assert_allclose(out.detach().numpy(), ref["out"], rtol=1e-12, atol=1e-12)
    assert w.grad is not None
    assert w.grad.is_sparse == sparse
    np.testing.assert_allclose(w.grad.to_dense().numpy(), ref["grad_w"], rtol=1e-12, atol=1e-12)
    if p is not None:
        assert p.grad is not None
        np.testing.assert_allclose(p.grad.numpy(), ref["grad_psw"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("ext", list(EXT_MODES))
def test_torch_gradcheck(ext: str) -> None:
    """EXT-SQRTN-GRAD, EXT-WMEAN-GRAD, EXT-MIN-GRAD: torch.autograd.gradcheck (finite differences) of weight and
    per_sample_weights through the new modes."""
    mode, with_psw = EXT_MODES[ext]
    w = torch.tensor(_weight(12), requires_grad=True)
    idx = torch.tensor(IDX_1D[:19])  # no zero-divisor bag: the derivative exists everywhere
    lengths = torch.tensor(LENGTHS[:8])
    p = torch.tensor(_psw((19,)), requires_grad=True) if with_psw else None

    def f(weight: torch.Tensor, *psw: torch.Tensor) -> torch.Tensor:
        return xembed.embedding_bag(idx, weight, mode=mode, per_sample_weights=psw[0] if psw else None,
                                    padding_idx=6, lengths=lengths)

    assert torch.autograd.gradcheck(f, (w,) if p is None else (w, p), eps=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------------------------------------
# errors (raised before anything is modified)

BAG_IDX = np.array([0, 1, 2, 1, 3])
MAX_NORM = 0.5

ErrorCase = tuple[str, type[Exception], list[str], str | None, dict[str, Any]]
ERROR_CASES: list[ErrorCase] = [
    # (id, exception, argument names (one must appear in backticks), offending value or None, kwargs)
    ("min_psw", NotImplementedError, ["per_sample_weights"], "min", {"mode": "min", "psw": np.ones(5)}),
    ("max_psw", NotImplementedError, ["per_sample_weights"], "max", {"mode": "max", "psw": np.ones(5)}),
    ("min_sparse", ValueError, ["sparse"], "min", {"mode": "min", "sparse": True}),
    ("min_sgbf", ValueError, ["scale_grad_by_freq"], "min", {"mode": "min", "scale_grad_by_freq": True}),
    ("sqrtn_sparse_sgbf", ValueError, ["sparse", "scale_grad_by_freq"], None,
     {"mode": "sqrtn", "sparse": True, "scale_grad_by_freq": True}),
    ("wmean_sparse_sgbf", ValueError, ["sparse", "scale_grad_by_freq"], None,
     {"mode": "mean", "psw": np.ones(5), "sparse": True, "scale_grad_by_freq": True}),
    ("wmean_psw_shape", ValueError, ["per_sample_weights"], None, {"mode": "mean", "psw": np.ones(4)}),
    ("sqrtn_psw_dtype", TypeError, ["per_sample_weights"], "float32",
     {"mode": "sqrtn", "psw": np.ones(5, dtype=np.float32)}),
    ("mode_unknown", ValueError, ["mode"], "median", {"mode": "median"}),
    ("lengths_and_offsets", ValueError, ["lengths", "offsets"], None,
     {"offsets": np.array([0, 2]), "lengths": np.array([2, 3])}),
    ("lengths_2d_input", ValueError, ["lengths"], "(1, 5)", {"input": BAG_IDX[None, :], "lengths": np.array([5])}),
    ("lengths_ilo", ValueError, ["lengths", "include_last_offset"], "True",
     {"lengths": np.array([2, 3]), "include_last_offset": True}),
    ("lengths_negative", ValueError, ["lengths"], "-1", {"lengths": np.array([3, -1, 3])}),
    ("lengths_sum_short", ValueError, ["lengths"], "4", {"lengths": np.array([2, 2])}),
    ("lengths_sum_long", ValueError, ["lengths"], "6", {"lengths": np.array([2, 4])}),
    ("lengths_2d", ValueError, ["lengths"], "(1, 2)", {"lengths": np.array([[2, 3]])}),
    ("lengths_float", TypeError, ["lengths"], "float", {"lengths": np.array([2.0, 3.0])}),
    ("lengths_not_array", TypeError, ["lengths"], "list", {"lengths": [2, 3]}),
    ("lengths_index_out_of_range", IndexError, ["input"], "9", {"input": np.array([0, 1, 9, 1, 3]),
                                                                "lengths": np.array([2, 3])}),
]


@pytest.mark.parametrize("vjp", [False, True], ids=["fwd", "vjp"])
@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: c[0])
def test_invalid(backend: Backend, case: ErrorCase, vjp: bool) -> None:
    """Every invalid combination of the extensions (EXT-MODES, EXT-MIN-ARGS, EXT-PSW-MODES, EXT-LENGTHS-ARGS,
    EXT-LENGTHS-VALUES, ERR-SPARSE-SGBF): a typed error naming the argument (and value), the weight untouched
    (ERR-ATOMIC: every case runs with max_norm below every row's norm)."""
    _, exc, names, value, kw = case
    kw = dict(kw)
    w_np = _weight(13) / np.linalg.norm(_weight(13), axis=1, keepdims=True) * 2.0  # every norm 2 > MAX_NORM
    w = backend.asarray(w_np)
    before = to_numpy(w)

    def arr(x: Any) -> Any:
        return backend.asarray(x) if isinstance(x, np.ndarray) else x

    inp = arr(kw.pop("input", BAG_IDX))
    offsets = arr(kw.pop("offsets", None))
    psw = arr(kw.pop("psw", None))
    lengths = arr(kw.pop("lengths", None))
    if offsets is None and lengths is None and inp.ndim == 1:
        offsets = backend.asarray(np.array([0, 2]))
    fn = xembed.embedding_bag_vjp if vjp else xembed.embedding_bag
    with pytest.raises(exc) as info:
        fn(inp, w, offsets, per_sample_weights=psw, lengths=lengths, max_norm=MAX_NORM, **kw)
    msg = str(info.value)
    assert any(f"`{n}`" in msg for n in names), f"message names none of {names}: {msg!r}"
    if value is not None:
        assert value.lower() in msg.lower(), f"message lacks the offending value {value!r}: {msg!r}"
    assert_bitwise_equal(w, before, "weight after a failed call")


def test_valid_defaults_of_the_error_cases(backend: Backend) -> None:
    """The defaults the error cases start from are valid, so each case fails for its own reason only."""
    w = backend.asarray(_weight(13))
    i = backend.asarray(BAG_IDX)
    for mode in ("min", "sqrtn"):
        xembed.embedding_bag(i, w, backend.asarray(np.array([0, 2])), mode=mode, max_norm=MAX_NORM)
    xembed.embedding_bag(i, w, lengths=backend.asarray(np.array([2, 3])), max_norm=MAX_NORM)
    xembed.embedding_bag(i, w, lengths=backend.asarray(np.array([2, 3])), mode="mean", sparse=True,
                         per_sample_weights=backend.asarray(np.ones(5)))
