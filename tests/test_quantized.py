"""Quantized tables (spec QUANT-*): torch's packed bytes, the forward against torch's quantized ops (sum, the
only mode they compute) and against the float semantics on ``table.dequantize()`` (every other option), on
every backend, under every primitive mode; the errors."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from xembed_testutils import Backend, to_numpy

import xembed
from xembed import _primitives

torch = pytest.importorskip("torch")
Q = torch.ops.quantized
PREPACK = {8: Q.embedding_bag_byte_prepack, 4: Q.embedding_bag_4bit_prepack, 2: Q.embedding_bag_2bit_prepack}
UNPACK = {8: Q.embedding_bag_byte_unpack, 4: Q.embedding_bag_4bit_unpack, 2: Q.embedding_bag_2bit_unpack}
BAG_OP = {8: Q.embedding_bag_byte_rowwise_offsets, 4: Q.embedding_bag_4bit_rowwise_offsets,
          2: Q.embedding_bag_2bit_rowwise_offsets}
BITS = (8, 4, 2)
MODES = ("auto", "native", "fallback")


def _table(rng: np.random.Generator, n: int, dim: int, magnitude: float = 1.0) -> np.ndarray:
    w = (rng.standard_normal((n, dim)) * magnitude).astype(np.float32)
    w[0] = w[0, 0]  # a constant row (range 0)
    if n > 2:
        w[2] = 0.0
    return w


def _torch_packed(w: np.ndarray, bits: int) -> np.ndarray:
    return PREPACK[bits](torch.from_numpy(w)).numpy()


def _layout(rng: np.random.Generator, n_idx: int, num_bags: int) -> np.ndarray:
    """Random offsets (num_bags,) starting at 0, with empty bags, over n_idx indices."""
    cuts = np.sort(rng.integers(0, n_idx + 1, num_bags - 1))
    return np.concatenate([[0], cuts]).astype(np.int64)


# ---------------------------------------------------------------------------------------------------------
# QUANT-PREPACK, QUANT-LAYOUT


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("seed", range(3))
def test_prepack_bytes_equal_torch(backend: Backend, bits: int, seed: int) -> None:
    """QUANT-PREPACK: the packed bytes are torch's, for widths, magnitudes and constant rows."""
    rng = np.random.default_rng(seed)
    dims = [8, 16, 24, 64, 128] + ([1, 3, 7, 9, 13] if bits == 8 else [4, 12, 20])
    for dim in dims:
        for magnitude in (1e-5, 1.0, 300.0) if bits < 8 else (1e-20, 1e-5, 1.0, 1e6, 1e30):
            w = _table(rng, 9, dim, magnitude)
            t = xembed.quantize_rowwise(backend.asarray(w), bits)
            np.testing.assert_array_equal(to_numpy(t.packed), _torch_packed(w, bits),
                                          err_msg=f"D={dim} magnitude={magnitude}")
            assert t.shape == (9, dim)
            assert t.bits == bits
            assert type(t.packed) is type(backend.asarray(w))


@pytest.mark.parametrize("bits", BITS)
def test_dequantize_equals_torch_unpack(backend: Backend, bits: int) -> None:
    """QUANT-LAYOUT: from_packed reads torch's bytes; dequantize() is torch's unpack, bit for bit."""
    rng = np.random.default_rng(1)
    packed = _torch_packed(_table(rng, 17, 32, 3.0), bits)
    t = xembed.QuantizedTable.from_packed(backend.asarray(packed), bits)
    assert t.shape == (17, 32)
    assert t.nbytes == packed.size
    ref = UNPACK[bits](torch.from_numpy(packed)).numpy()
    got = to_numpy(t.dequantize())
    if bits == 8:  # torch's 8-bit unpack fuses code * scale + bias into one rounding (an FMA)
        np.testing.assert_allclose(got, ref, rtol=2 * float(np.finfo(np.float32).eps), atol=1e-6)
    else:
        np.testing.assert_array_equal(got, ref)
    assert str(t.dequantize().dtype).endswith("float32")


def test_float_codecs_bit_exact_on_special_values(backend: Backend) -> None:
    """The standard-only float32 / float16 codecs against NumPy's bit patterns (zeros, subnormals, extremes)."""
    from xembed._primitives import _quantized_fallback as codec

    xp, _ = xembed._backends.resolve(None, x=backend.asarray(np.zeros(1, np.float32)))
    subnormals = [] if backend is Backend.JAX else [1e-45, -3e-39]  # XLA flushes them to zero (QUANT-JAX-FTZ)
    f32 = np.array([0.0, -0.0, 1.0, -2.5, *subnormals, 1.17549435e-38, 3.4028235e38, np.inf, -np.inf, 0.1],
                   dtype=np.float32)
    enc = to_numpy(codec.encode_float32(backend.asarray(f32), xp))
    np.testing.assert_array_equal(enc, f32.view(np.uint8).reshape(-1, 4))
    np.testing.assert_array_equal(to_numpy(codec.decode_float32(backend.asarray(enc), xp)).view(np.uint32),
                                  f32.view(np.uint32))
    f16 = np.array([0.0, -0.0, 1.0, -2.5, 6e-8, -3e-5, 6.1035156e-05, 65504.0, np.inf, 0.1], dtype=np.float16)
    # float16 subnormals are float32 normals: exact on every backend
    enc16 = to_numpy(codec.encode_float16(backend.asarray(f16.astype(np.float32)), xp))
    np.testing.assert_array_equal(enc16, f16.view(np.uint8).reshape(-1, 2))
    dec16 = to_numpy(codec.decode_float16(backend.asarray(enc16), xp))
    np.testing.assert_array_equal(dec16.view(np.uint32), f16.astype(np.float32).view(np.uint32))
    exponents = np.random.default_rng(1).integers(-30, 17, 2000).astype(np.float32)
    x = np.random.default_rng(0).standard_normal(2000).astype(np.float32) * np.float32(2.0) ** exponents
    rounded = to_numpy(codec.round_to_float16(backend.asarray(x), xp))
    with np.errstate(over="ignore"):  # beyond 65504: inf, which is the point
        expected = x.astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(rounded, expected)


# ---------------------------------------------------------------------------------------------------------
# QUANT-ERRORS


def test_errors_name_the_argument() -> None:
    w = np.ones((4, 8), np.float32)
    packed = _torch_packed(w, 4)
    with pytest.raises(ValueError, match="`bits`"):
        xembed.quantize_rowwise(w, 3)
    with pytest.raises(ValueError, match="`bits`"):
        xembed.QuantizedTable.from_packed(packed, True)
    with pytest.raises(TypeError, match=r"`packed`.*uint8"):
        xembed.QuantizedTable.from_packed(packed.astype(np.int16), 4)
    with pytest.raises(ValueError, match=r"`packed`.*3 bytes"):
        xembed.QuantizedTable.from_packed(packed[:, :3], 4)
    with pytest.raises(ValueError, match=r"`packed`.*2-D"):
        xembed.QuantizedTable.from_packed(packed[0], 4)
    with pytest.raises(TypeError, match="`packed`"):
        xembed.QuantizedTable.from_packed([[1, 2]], 8)
    with pytest.raises(ValueError, match=r"`weight`.*multiple of 4"):
        xembed.quantize_rowwise(np.ones((3, 6), np.float32), 2)
    with pytest.raises(TypeError, match="`weight`"):
        xembed.quantize_rowwise(np.ones((3, 8), np.int32), 8)
    bad = w.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="`weight` must be finite"):
        xembed.quantize_rowwise(bad, 8)
    with pytest.raises(ValueError, match="float16's range"):
        xembed.quantize_rowwise(w * 1e6, 4)
    np.testing.assert_array_equal(bad[1, 2:3], [np.nan])  # the weight is never modified
    np.testing.assert_array_equal(packed, _torch_packed(w, 4))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"max_norm": 1.0}, "`max_norm`"),
    ({"scale_grad_by_freq": True}, "`scale_grad_by_freq`"),
    ({"sparse": True}, "`sparse`"),
])
def test_training_options_raise(kwargs: dict[str, Any], match: str) -> None:
    """QUANT-INFERENCE: options that train or modify the table raise NotImplementedError, nothing modified."""
    t = xembed.quantize_rowwise(np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32), 4)
    before = t.packed.copy()
    idx, offs = np.array([0, 1, 4]), np.array([0, 2])
    with pytest.raises(NotImplementedError, match=match):
        xembed.embedding_bag(idx, t, offs, mode="sum", **kwargs)
    with pytest.raises(NotImplementedError, match=match):
        xembed.embedding(idx, t, **kwargs)
    with pytest.raises(NotImplementedError, match="gradients"):
        xembed.embedding_bag_vjp(idx, t, offs)
    with pytest.raises(NotImplementedError, match="gradients"):
        xembed.embedding_vjp(idx, t)
    psw = torch.ones(3, requires_grad=True)
    tt = xembed.QuantizedTable.from_packed(torch.from_numpy(before), 4)
    with pytest.raises(NotImplementedError, match="`per_sample_weights`"):
        xembed.embedding_bag(torch.from_numpy(idx), tt, torch.from_numpy(offs), mode="sum", per_sample_weights=psw)
    np.testing.assert_array_equal(t.packed, before)


def test_argument_errors_are_the_float_ones() -> None:
    """Argument checks run before the quantized path: the float path's typed errors (ERR-*)."""
    t = xembed.quantize_rowwise(np.ones((5, 8), np.float32), 8)
    with pytest.raises(IndexError, match="`input`"):
        xembed.embedding_bag(np.array([0, 5]), t, np.array([0]))
    with pytest.raises(ValueError, match="`mode`"):
        xembed.embedding_bag(np.array([0, 1]), t, np.array([0]), mode="median")
    with pytest.raises(TypeError, match="`per_sample_weights`"):
        xembed.embedding_bag(np.array([0, 1]), t, np.array([0]), mode="sum", per_sample_weights=np.ones(2))
    with pytest.raises(ValueError, match="`padding_idx`"):
        xembed.embedding(np.array([0, 1]), t, padding_idx=7)
    with pytest.raises(TypeError, match="one array library"):
        xembed.embedding_bag(torch.tensor([0, 1]), t, torch.tensor([0]))


# ---------------------------------------------------------------------------------------------------------
# QUANT-FORWARD against torch's quantized ops


def _torch_bag(packed: np.ndarray, bits: int, idx: np.ndarray, offs: np.ndarray, psw: np.ndarray | None,
               include_last_offset: bool) -> np.ndarray:
    p = None if psw is None else torch.from_numpy(psw)
    return BAG_OP[bits](torch.from_numpy(packed), torch.from_numpy(idx), torch.from_numpy(offs), False, 0, False, p,
                        None, include_last_offset).numpy()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bits", BITS)
def test_sum_equals_torch_quantized_op(backend: Backend, bits: int, mode: str) -> None:
    """QUANT-FORWARD: sum, per_sample_weights, include_last_offset and empty bags equal torch's
    ``embedding_bag_*_rowwise_offsets`` within float32 rounding."""
    rng = np.random.default_rng(bits)
    w = _table(rng, 40, 24 if bits > 2 else 16, 2.0)
    packed = _torch_packed(w, bits)
    table = xembed.QuantizedTable.from_packed(backend.asarray(packed), bits)
    with _primitives.use(mode):
        for trial in range(4):
            n = int(rng.integers(0, 60))
            idx = rng.integers(0, 40, n).astype(np.int64)
            offs = _layout(rng, n, 7)
            psw = rng.standard_normal(n).astype(np.float32) if trial % 2 else None
            last = trial >= 2
            offs_arg = np.concatenate([offs, [n]]) if last else offs
            ref = _torch_bag(packed, bits, idx, offs_arg, psw, last)
            got = xembed.embedding_bag(backend.asarray(idx), table, backend.asarray(offs_arg), mode="sum",
                                       per_sample_weights=None if psw is None else backend.asarray(psw),
                                       include_last_offset=last)
            np.testing.assert_allclose(to_numpy(got), ref, rtol=2e-6, atol=2e-5, err_msg=f"trial {trial}")
            assert str(got.dtype).endswith("float32")


def _float_reference(w: np.ndarray, idx: np.ndarray, offs: np.ndarray | None, **kw: Any) -> np.ndarray:
    """The float semantics on the dequantized table: torch's embedding_bag where torch has the option
    (float64, rounded once), xembed's float path for the extensions (sqrtn, min, weighted mean)."""
    if kw.get("mode") in ("sqrtn", "min") or (kw.get("mode") == "mean" and kw.get("per_sample_weights") is not None):
        return np.asarray(xembed.embedding_bag(idx, w, offs, **kw))
    tw = torch.from_numpy(w.astype(np.float64))
    t_kw = {k: (torch.from_numpy(x.astype(np.float64)) if isinstance(x, np.ndarray) else x) for k, x in kw.items()}
    t_offs = None if offs is None else torch.from_numpy(offs)
    return torch.nn.functional.embedding_bag(torch.from_numpy(idx), tw, t_offs, **t_kw).numpy().astype(np.float32)


CASES = [
    {"mode": "mean"}, {"mode": "max"}, {"mode": "min"}, {"mode": "sqrtn"},
    {"mode": "mean", "psw": True}, {"mode": "sqrtn", "psw": True},
    {"mode": "sum", "padding_idx": 3}, {"mode": "mean", "padding_idx": 3}, {"mode": "max", "padding_idx": 3},
    {"mode": "sum", "psw": True, "padding_idx": 3}, {"mode": "mean", "include_last_offset": True},
    {"mode": "mean", "lengths": True}, {"mode": "max", "two_d": True}, {"mode": "mean", "two_d": True},
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("bits", BITS)
def test_options_equal_float_semantics(backend: Backend, bits: int, case: dict[str, Any], mode: str) -> None:
    """QUANT-FORWARD: every other mode and option equals the float semantics on ``table.dequantize()``
    (padding entries left out of the reduction and the mean's divisor; empty and all-padding bags 0)."""
    rng = np.random.default_rng(7 + bits)
    w = _table(rng, 12, 16, 1.5)
    table = xembed.quantize_rowwise(backend.asarray(w), bits)
    deq = to_numpy(table.dequantize())
    n = 30
    idx = rng.integers(0, 12, n).astype(np.int64)
    idx[5:9] = 3  # an all-padding bag when padding_idx=3
    offs: np.ndarray | None = np.array([0, 2, 5, 9, 9, 20], np.int64)
    kw: dict[str, Any] = {"mode": case["mode"]}
    if "padding_idx" in case:
        kw["padding_idx"] = case["padding_idx"]
    if case.get("psw"):
        kw["per_sample_weights"] = rng.uniform(-1, 2, n).astype(np.float32)
    if case.get("two_d"):
        idx, offs = idx.reshape(5, 6), None
        kw.pop("per_sample_weights", None)
    ref_offs = offs
    if case.get("include_last_offset"):
        offs = ref_offs = np.concatenate([offs, [n]])
        kw["include_last_offset"] = True
    ref = _float_reference(deq, idx, ref_offs, **kw)
    args = {k: (backend.asarray(x) if isinstance(x, np.ndarray) else x) for k, x in kw.items()}
    if case.get("lengths"):
        args["lengths"] = backend.asarray(np.diff(np.concatenate([offs, [n]])))
        offs = None
    with _primitives.use(mode):
        got = xembed.embedding_bag(backend.asarray(idx), table, None if offs is None else backend.asarray(offs),
                                   **args)
    np.testing.assert_allclose(to_numpy(got), ref, rtol=2e-6, atol=2e-5)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bits", BITS)
def test_embedding_equals_dequantized_rows(backend: Backend, bits: int, mode: str) -> None:
    """QUANT-FORWARD: ``embedding(input, table)`` is ``table.dequantize()[input]`` exactly (any input shape)."""
    rng = np.random.default_rng(3)
    table = xembed.quantize_rowwise(backend.asarray(_table(rng, 10, 8)), bits)
    deq = to_numpy(table.dequantize())
    for shape in [(), (0,), (7,), (3, 4)]:
        idx = rng.integers(0, 10, shape).astype(np.int64)
        with _primitives.use(mode):
            got = xembed.embedding(backend.asarray(idx), table, padding_idx=2)
        np.testing.assert_array_equal(to_numpy(got), deq[idx])


def test_numba_kernels_on_large_bags_match_fallback() -> None:
    """The fused kernels' parallel build (work above the serial threshold) against the standard-only path."""
    pytest.importorskip("numba")
    rng = np.random.default_rng(5)
    for bits in BITS:
        table = xembed.quantize_rowwise(_table(rng, 3000, 64), bits)
        idx = rng.integers(0, 3000, 8000)
        offs = _layout(rng, 8000, 300)
        psw = rng.standard_normal(8000).astype(np.float32)
        for kw in ({"mode": "sum", "per_sample_weights": psw}, {"mode": "sum"}, {"mode": "max"}, {"mode": "min"}):
            with _primitives.use("numba"):
                fused = xembed.embedding_bag(idx, table, offs, **kw)
            with _primitives.use("fallback"):
                ref = xembed.embedding_bag(idx, table, offs, **kw)
            if kw["mode"] == "sum":  # fused multiply-adds in the kernel, separate roundings in the fallback
                np.testing.assert_allclose(fused, ref, rtol=1e-5, atol=1e-4)
            else:  # both are dequantized values: code * scale + bias
                np.testing.assert_array_equal(fused, ref)
        with _primitives.use("numba"):
            np.testing.assert_array_equal(xembed.embedding(idx, table), table.dequantize()[idx])


def test_torch_cpu_tensors_run_the_fused_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """QUANT-PRIM: torch CPU tensors reach the fused kernels through NumPy views; the result is a tensor equal to
    the NumPy arrays' bit for bit (the same kernel)."""
    pytest.importorskip("numba")
    from xembed._primitives import _quantized_numba as qn

    rng = np.random.default_rng(9)
    w = _table(rng, 40, 16)
    idx, offs = rng.integers(0, 40, 50), _layout(rng, 50, 7)
    psw = rng.standard_normal(50).astype(np.float32)
    options: tuple[dict[str, Any], ...] = ({"mode": "sum", "per_sample_weights": psw},
                                           {"mode": "max", "padding_idx": 3})
    tables = {bits: xembed.quantize_rowwise(w, bits) for bits in BITS}
    expected = {bits: [xembed.embedding_bag(idx, t, offs, **kw) for kw in options] for bits, t in tables.items()}
    calls: list[str] = []

    def spy(name: str) -> Any:
        original = getattr(qn, name)

        def counted(*args: Any) -> Any:
            calls.append(name)
            return original(*args)

        return counted

    for name in ("gather_rows", "gather_segment_sum", "gather_segment_extreme"):
        monkeypatch.setattr(qn, name, spy(name))
    for bits, table in tables.items():
        ttable = xembed.QuantizedTable.from_packed(torch.from_numpy(table.packed), bits)
        for kw, ref in zip(options, expected[bits], strict=True):
            targs = {k: torch.from_numpy(x) if isinstance(x, np.ndarray) else x for k, x in kw.items()}
            got = xembed.embedding_bag(torch.from_numpy(idx), ttable, torch.from_numpy(offs), **targs)
            assert isinstance(got, torch.Tensor)
            np.testing.assert_array_equal(got.numpy(), ref)
        got = xembed.embedding(torch.from_numpy(idx), ttable)
        np.testing.assert_array_equal(got.numpy(), table.dequantize()[idx])
    assert sorted(calls) == sorted(["gather_rows", "gather_segment_sum", "gather_segment_extreme"] * len(BITS))


def test_numba_kernel_builds_have_distinct_cache_entries() -> None:
    """The serial and parallel builds of the fused kernel are cached apart (one would load the other)."""
    pytest.importorskip("numba")
    from xembed._primitives import _quantized_numba as qn

    paths = {(k._cache._cache_path, k._cache._impl._filename_base) for k in qn.KERNELS}
    assert len(paths) == len(qn.KERNELS) == 2
    assert [k.targetoptions.get("parallel", False) for k in qn.KERNELS] == [False, True]


# ---------------------------------------------------------------------------------------------------------
# QUANT-JIT


@pytest.mark.needs_backend("jax")
@pytest.mark.parametrize("bits", BITS)
def test_jax_jit(bits: int) -> None:
    """QUANT-JIT: the quantized forward traces under jax.jit (padding parked, invalid indices give NaN bags)."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(11)
    w = _table(rng, 20, 16)
    table = xembed.quantize_rowwise(jnp.asarray(w), bits)
    idx = rng.integers(0, 20, 25)
    offs = np.array([0, 4, 4, 10], np.int64)
    psw = rng.standard_normal(25).astype(np.float32)

    @jax.jit
    def f(i: Any, o: Any, p: Any) -> Any:
        return xembed.embedding_bag(i, table, o, mode="sum", per_sample_weights=p, padding_idx=1)

    got = np.asarray(f(jnp.asarray(idx), jnp.asarray(offs), jnp.asarray(psw)))
    eager = np.asarray(xembed.embedding_bag(jnp.asarray(idx), table, jnp.asarray(offs), mode="sum",
                                            per_sample_weights=jnp.asarray(psw), padding_idx=1))
    np.testing.assert_allclose(got, eager, rtol=1e-6, atol=1e-6)
    bad = idx.copy()
    bad[5] = 99  # in bag 2
    out = np.asarray(f(jnp.asarray(bad), jnp.asarray(offs), jnp.asarray(psw)))
    assert np.isnan(out[2]).all()
    np.testing.assert_allclose(out[[0, 1, 3]], eager[[0, 1, 3]], rtol=1e-6, atol=1e-6)
    rows = jax.jit(lambda i: xembed.embedding(i, table))(jnp.asarray(idx))
    # XLA contracts code * scale + bias into an FMA under jit: one rounding instead of two
    np.testing.assert_allclose(np.asarray(rows), np.asarray(table.dequantize())[idx], rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------------------
# QUANT-TORCH-INTEROP


@pytest.mark.parametrize("bits", [8, 4])
def test_from_torch_module_state_dict_and_weight(bits: int) -> None:
    """QUANT-TORCH-INTEROP: a torch.ao.nn.quantized.EmbeddingBag (module, state dict, quantized weight) gives the
    table its own forward runs on."""
    from torch.ao.nn.quantized import EmbeddingBag
    from torch.ao.quantization import float_qparams_weight_only_qconfig, float_qparams_weight_only_qconfig_4bit

    torch.manual_seed(0)
    float_bag = torch.nn.EmbeddingBag(30, 16, mode="sum")
    float_bag.qconfig = float_qparams_weight_only_qconfig if bits == 8 else float_qparams_weight_only_qconfig_4bit
    with warnings.catch_warnings():  # torch deprecates its quantized tensors (warned once per process)
        warnings.simplefilter("ignore", UserWarning)
        module = EmbeddingBag.from_float(float_bag)
    idx, offs = torch.randint(0, 30, (40,)), torch.tensor([0, 3, 3, 17])
    psw = torch.rand(40)
    ref = module(idx, offs, per_sample_weights=psw)
    for source in (module, module.state_dict(), module.weight()):
        table = xembed.QuantizedTable.from_torch(source)
        assert table.bits == bits
        assert table.shape == (30, 16)
        got = xembed.embedding_bag(idx, table, offs, mode="sum", per_sample_weights=psw)
        torch.testing.assert_close(got, ref, rtol=2e-6, atol=2e-5)
    with pytest.raises(TypeError, match="`source`"):
        xembed.QuantizedTable.from_torch(torch.zeros(3, 4))


# ---------------------------------------------------------------------------------------------------------
# xembed.torch.QuantizedEmbeddingBag (QUANT-TORCH-MODULE)


def _torch_quantized_bag(bits: int, include_last_offset: bool = False) -> Any:
    from torch.ao.nn.quantized import EmbeddingBag
    from torch.ao.quantization import float_qparams_weight_only_qconfig, float_qparams_weight_only_qconfig_4bit

    torch.manual_seed(1)
    float_bag = torch.nn.EmbeddingBag(40, 16, mode="sum", include_last_offset=include_last_offset)
    float_bag.qconfig = float_qparams_weight_only_qconfig if bits == 8 else float_qparams_weight_only_qconfig_4bit
    with warnings.catch_warnings():  # torch deprecates its quantized tensors (warned once per process)
        warnings.simplefilter("ignore", UserWarning)
        return EmbeddingBag.from_float(float_bag)


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("include_last_offset", [False, True])
def test_torch_module_from_torch_equals_torch_module(bits: int, include_last_offset: bool) -> None:
    """QUANT-TORCH-MODULE: over the bytes of a torch.ao.nn.quantized.EmbeddingBag, the same sums; the state dict
    round trip keeps them."""
    import xembed.torch as xt

    ref_module = _torch_quantized_bag(bits, include_last_offset)
    module = xt.QuantizedEmbeddingBag.from_torch(ref_module)
    assert (module.bits, module.include_last_offset, module.mode) == (bits, include_last_offset, "sum")
    g = torch.Generator().manual_seed(2)
    idx, psw = torch.randint(0, 40, (50,), generator=g), torch.rand(50, generator=g)
    offs = torch.tensor([0, 4, 4, 31, 50] if include_last_offset else [0, 4, 4, 31])
    for kw in ({}, {"per_sample_weights": psw}):
        torch.testing.assert_close(module(idx, offs, **kw), ref_module(idx, offs, **kw), rtol=2e-6, atol=2e-5)
    loaded = xt.QuantizedEmbeddingBag(40, 16, bits=bits, include_last_offset=include_last_offset)
    loaded.load_state_dict(module.state_dict())
    assert list(module.state_dict()) == ["packed"]
    assert not list(module.parameters())
    torch.testing.assert_close(loaded(idx, offs), module(idx, offs), rtol=0, atol=0)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("mode", ["sum", "mean", "max", "sqrtn", "min"])
def test_torch_module_from_float_is_the_float_semantics_on_the_dequantized_table(bits: int, mode: str) -> None:
    """QUANT-TORCH-MODULE: ``from_float`` of a float module keeps its options; the forward is the float
    semantics on the dequantized table."""
    import xembed.torch as xt

    torch.manual_seed(3)
    float_bag = torch.nn.EmbeddingBag(30, 8, mode="sum", padding_idx=2)
    module = xt.QuantizedEmbeddingBag.from_float(float_bag, bits=bits, mode=mode)
    assert (module.padding_idx, module.mode, module.bits) == (2, mode, bits)
    deq = xembed.quantize_rowwise(float_bag.weight, bits).dequantize()
    idx = torch.tensor([[1, 2, 5], [2, 2, 2], [7, 0, 29]])
    ref = xembed.embedding_bag(idx, deq, mode=mode, padding_idx=2)
    torch.testing.assert_close(module(idx), ref, rtol=2e-6, atol=2e-5)
    # CPU tensors run on NumPy views (the numba kernels); the table of torch tensors takes the array code
    torch.testing.assert_close(module(idx), xembed.embedding_bag(idx, module.table, mode=mode, padding_idx=2),
                               rtol=2e-6, atol=2e-5)
    if mode in ("sum", "mean", "max"):
        torch.testing.assert_close(ref, torch.nn.functional.embedding_bag(idx, deq, mode=mode, padding_idx=2))


def test_torch_module_under_torch_compile() -> None:
    """QUANT-TORCH-MODULE: inside a compiled model the lookup runs eagerly (same result); fullgraph refuses it
    with the reason, torch.export with NotImplementedError."""
    import xembed.torch as xt

    module = xt.QuantizedEmbeddingBag.from_float(torch.randn(20, 8), bits=4, mode="mean")
    idx, offs = torch.tensor([3, 4, 19, 0]), torch.tensor([0, 1])
    torch.testing.assert_close(torch.compile(module, backend="eager")(idx, offs), module(idx, offs), rtol=0, atol=0)
    torch._dynamo.reset()  # dynamo would reuse the graph-broken compilation of forward
    with pytest.raises(Exception, match="runs eagerly"):  # dynamo's Unsupported names the reason
        torch.compile(module, backend="eager", fullgraph=True)(idx, offs)
    with pytest.raises(NotImplementedError, match="cannot be exported"):
        torch.export.export(module, (idx, offs))


def test_torch_module_errors_and_zero_table() -> None:
    """QUANT-TORCH-MODULE: bad arguments raise typed errors naming them; a new module's table is zeros."""
    import xembed.torch as xt

    module = xt.QuantizedEmbeddingBag(5, 8, bits=2, padding_idx=-1)
    assert module.padding_idx == 4
    assert module.packed.shape == (5, 2 + 4)
    assert module.packed.dtype == torch.uint8
    torch.testing.assert_close(module(torch.tensor([[0, 3]])), torch.zeros(1, 8), rtol=0, atol=0)
    for kwargs, error, match in (({"bits": 3}, ValueError, "`bits`"), ({"mode": "median"}, ValueError, "`mode`"),
                                 ({"bits": 4, "embedding_dim": 3}, ValueError, "`embedding_dim`"),
                                 ({"num_embeddings": 0}, ValueError, "`num_embeddings`"),
                                 ({"include_last_offset": "yes"}, TypeError, "`include_last_offset`"),
                                 ({"padding_idx": 9}, ValueError, "`padding_idx`")):
        args: dict[str, Any] = {"num_embeddings": 5, "embedding_dim": 8, **kwargs}
        with pytest.raises(error, match=match):
            xt.QuantizedEmbeddingBag(**args)
    with pytest.raises(TypeError, match="`source`"):
        xt.QuantizedEmbeddingBag.from_float([[1.0, 2.0]])  # type: ignore[arg-type]
    with pytest.raises(NotImplementedError, match="inference"):
        module(torch.tensor([[0, 3]]), per_sample_weights=torch.ones(1, 2, requires_grad=True))
