"""Namespace / device handling: outputs live in the weight's namespace, dtype and device; mixing namespaces is a
TypeError, mixing devices a ValueError; a failed call leaves the weight untouched."""

from __future__ import annotations

import itertools

import array_api_compat
import numpy as np
import pytest
from xembed_testutils import Backend, assert_bitwise_equal, assert_like_weight, selected_backends, to_numpy

import xembed


def _pair_params():
    params = []
    selected = set(selected_backends())
    for a, b in itertools.permutations(Backend, 2):
        if a.modname == b.modname or not ({a, b} & selected):
            continue
        marks = a.marks() + [m for m in b.marks() if m.name != "gpu" or not a.is_gpu]
        params.append(pytest.param(a, b, id=f"{a.value}-{b.value}", marks=marks))
    return params


def _weight():
    return np.random.default_rng(0).standard_normal((5, 3)) * 4  # norms well above max_norm=1


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_output_namespace_dtype_device(backend, dtype):
    backend.require_dtype(dtype)
    w = backend.asarray(_weight(), dtype)
    out = xembed.embedding(backend.asarray(np.array([[0, 1], [4, 4]])), w)
    assert_like_weight(out, w, (2, 2, 3))
    out = xembed.embedding_bag(backend.asarray(np.array([0, 1, 4])), w, backend.asarray(np.array([0, 1])),
                               mode="max")
    assert_like_weight(out, w, (2, 3))
    assert array_api_compat.array_namespace(out) is array_api_compat.array_namespace(w)


def test_explicit_xp_argument(backend):
    w = backend.asarray(_weight())
    i = backend.asarray(np.array([0, 3, 3]))
    o = backend.asarray(np.array([0, 1]))
    ns = array_api_compat.array_namespace(w)
    np.testing.assert_array_equal(to_numpy(xembed.embedding(i, w, xp=ns)), to_numpy(xembed.embedding(i, w)))
    np.testing.assert_array_equal(to_numpy(xembed.embedding_bag(i, w, o, xp=ns)),
                                  to_numpy(xembed.embedding_bag(i, w, o)))
    _out, pb = xembed.embedding_vjp(i, w, xp=ns)
    assert_like_weight(pb(backend.asarray(np.ones((3, 3)))), w, (5, 3))


@pytest.mark.parametrize(("a", "b"), _pair_params())
@pytest.mark.parametrize("which", ["input", "offsets", "per_sample_weights"])
def test_mixed_namespaces_raise_type_error(a, b, which):
    """``which`` comes from backend a, everything else (weight included) from backend b."""
    w = b.asarray(_weight())
    before = to_numpy(w)
    kw = {
        "input": b.asarray(np.array([0, 1, 2, 3])),
        "offsets": b.asarray(np.array([0, 2])),
        "per_sample_weights": b.asarray(np.ones(4)),
    }
    kw[which] = a.asarray(to_numpy(kw[which]))
    with pytest.raises(TypeError):
        xembed.embedding_bag(kw["input"], w, kw["offsets"], mode="sum", max_norm=1.0,
                             per_sample_weights=kw["per_sample_weights"])
    assert_bitwise_equal(w, before, "weight after failed mixed-namespace call")
    if which == "input":
        with pytest.raises(TypeError):
            xembed.embedding(kw["input"], w, max_norm=1.0)
        with pytest.raises(TypeError):
            xembed.embedding_vjp(kw["input"], w, max_norm=1.0)
        assert_bitwise_equal(w, before, "weight after failed mixed-namespace call")


def test_numpy_input_torch_weight_is_type_error():
    import torch  # a test dependency (the oracle): a missing install must fail, not skip

    w = torch.ones(4, 2, dtype=torch.float64)
    with pytest.raises(TypeError):
        xembed.embedding(np.array([0, 1]), w)


@pytest.mark.gpu
@pytest.mark.needs_backend("torch_cuda")
@pytest.mark.parametrize("which", ["input", "offsets", "per_sample_weights"])
def test_mixed_devices_raise_value_error(which):
    """ERR-NAMESPACE: arrays on different devices → ValueError naming an argument; weight untouched."""
    import torch

    w = torch.tensor(_weight(), device="cuda")
    before = to_numpy(w)
    kw = {
        "input": torch.tensor([0, 1, 2, 3], device="cuda"),
        "offsets": torch.tensor([0, 2], device="cuda"),
        "per_sample_weights": torch.ones(4, dtype=torch.float64, device="cuda"),
    }
    kw[which] = kw[which].cpu()
    with pytest.raises(ValueError, match=f"`{which}`"):
        xembed.embedding_bag(kw["input"], w, kw["offsets"], mode="sum", max_norm=1.0,
                             per_sample_weights=kw["per_sample_weights"])
    assert_bitwise_equal(w, before, "weight after failed mixed-device call")
    if which == "input":
        with pytest.raises(ValueError, match="`input`"):
            xembed.embedding(kw["input"], w, max_norm=1.0)
        assert_bitwise_equal(w, before, "weight after failed mixed-device call")


def test_numpy_use_imports_no_other_backend():
    """README: a backend library is imported only when its arrays are passed (NumPy use must not pull in torch or
    CuPy, which would cost seconds of import time)."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, xembed\n"
        "w = np.ones((5, 2))\n"
        "xembed.embedding(np.array([1, 2]), w, max_norm=0.5)\n"
        "xembed.embedding_bag_vjp(np.array([1, 2]), w, np.array([0]), mode='max')[1](np.ones((1, 2)))\n"
        "xembed.Embedding(4, 2, seed=0)(np.array([0]))\n"
        "bad = [m for m in ('torch', 'cupy', 'jax') if m in sys.modules]\n"
        "print('IMPORTED', bad)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "IMPORTED []" in res.stdout, res.stdout
