"""Train in torch, serve on NumPy: the modules' state_dict / load_state_dict, freeze, default dtype and repr
(MOD-*), against torch's own modules; and examples/serve_torch_model.py end to end."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import array_api_strict
import numpy as np
import pytest
import torch  # the oracle: a missing install must fail, not skip
from xembed_testutils import dtype_name

import xembed

ROOT = Path(__file__).resolve().parent.parent
N, D = 7, 3

TORCH_OPTIONS = {
    "Embedding": [{}, {"padding_idx": 0}, {"padding_idx": -2, "max_norm": 1.5, "norm_type": 1.0},
                  {"scale_grad_by_freq": True, "sparse": True}],
    "EmbeddingBag": [{}, {"mode": "sum"}, {"mode": "max", "padding_idx": 2, "max_norm": 2.0},
                     {"norm_type": 3.0, "scale_grad_by_freq": True}],
}


def _pairs():
    for name, options in TORCH_OPTIONS.items():
        for opts in options:
            yield pytest.param(name, opts, id=f"{name}-{opts}")


@pytest.mark.parametrize(("name", "options"), list(_pairs()))
def test_repr_is_torchs(name, options):
    """MOD-REPR: the repr is torch's module repr for the same arguments."""
    ours = getattr(xembed, name)(N, D, **options, seed=0)
    theirs = getattr(torch.nn, name)(N, D, **options)
    assert repr(ours) == repr(theirs)


def test_bag_repr_names_what_torch_leaves_out():
    """MOD-REPR: EmbeddingBag also shows sparse and include_last_offset (torch's repr hides both)."""
    bag = xembed.EmbeddingBag(N, D, mode="sum", sparse=True, include_last_offset=True)
    assert repr(bag) == "EmbeddingBag(7, 3, mode='sum', sparse=True, include_last_offset=True)"


@pytest.mark.parametrize("cls", [xembed.Embedding, xembed.EmbeddingBag], ids=lambda c: c.__name__)
@pytest.mark.parametrize("xp_name", ["numpy", "torch", "array_api_strict"])
def test_default_dtype_is_float32(cls, xp_name):
    """MOD-DTYPE: a new weight is float32 in every namespace, as torch's modules."""
    xp = {"numpy": np, "torch": torch, "array_api_strict": array_api_strict}[xp_name]
    m = cls(N, D, xp=xp, seed=0)
    assert dtype_name(m.weight) == "float32"
    assert str(torch.nn.Embedding(N, D).weight.dtype) == "torch.float32"


@pytest.mark.parametrize("name", ["Embedding", "EmbeddingBag"])
def test_state_dict_keys_are_torchs(name):
    """MOD-STATE-DICT: the same keys as torch's module, at top level and under a prefix."""
    ours = getattr(xembed, name)(N, D, seed=0)
    theirs = getattr(torch.nn, name)(N, D)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    model = torch.nn.Sequential(theirs)
    assert list(ours.state_dict(prefix="0.")) == list(model.state_dict())
    assert ours.state_dict()["weight"] is ours.weight


def test_state_dict_on_torch_is_detached_and_shared():
    m = xembed.Embedding(N, D, xp=torch, seed=0)
    w = m.state_dict()["weight"]
    assert not w.requires_grad
    assert w.data_ptr() == m.weight.data_ptr()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_load_torch_state_dict_directly(dtype):
    """MOD-STATE-DICT: a torch state_dict (tensors of any float dtype) loads into a NumPy module, converted to the
    module's dtype; the output equals torch's module on the same weight."""
    theirs = torch.nn.EmbeddingBag(N, D, mode="sum").to(dtype)
    ours = xembed.EmbeddingBag(N, D, mode="sum")
    assert ours.load_state_dict(theirs.state_dict()) == ([], [])
    assert ours.weight.dtype == np.float32
    np.testing.assert_array_equal(ours.weight, theirs.weight.detach().float().numpy())
    idx = np.array([[1, 2, 6], [0, 0, 3]])
    expected = theirs.float()(torch.from_numpy(idx)).detach().numpy()
    np.testing.assert_allclose(ours(idx), expected, rtol=1e-6)


def test_npz_round_trip_both_ways(tmp_path):
    """MOD-STATE-DICT: np.savez of xembed's state_dict loads into torch's module, and torch's into xembed's."""
    ours = xembed.Embedding(N, D, seed=3)
    np.savez(tmp_path / "ours.npz", **ours.state_dict())
    theirs = torch.nn.Embedding(N, D)
    with np.load(tmp_path / "ours.npz") as f:
        theirs.load_state_dict({k: torch.from_numpy(f[k]) for k in f.files})
    np.testing.assert_array_equal(theirs.weight.detach().numpy(), ours.weight)

    torch.nn.init.normal_(theirs.weight)
    np.savez(tmp_path / "theirs.npz", **{k: t.detach().numpy() for k, t in theirs.state_dict().items()})
    with np.load(tmp_path / "theirs.npz") as f:
        ours.load_state_dict(f)
    np.testing.assert_array_equal(ours.weight, theirs.weight.detach().numpy())


def test_safetensors_file_loads_without_torch(tmp_path):
    """MOD-STATE-DICT: a torch state_dict saved with safetensors loads through safetensors' NumPy reader."""
    safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="safetensors is in the `test` extra")
    import safetensors.torch

    theirs = torch.nn.Sequential(torch.nn.EmbeddingBag(N, D, mode="max"))
    safetensors.torch.save_file(theirs.state_dict(), str(tmp_path / "model.safetensors"))
    ours = xembed.EmbeddingBag(N, D, mode="max")
    ours.load_state_dict(safetensors_numpy.load_file(str(tmp_path / "model.safetensors")), prefix="0.")
    idx = np.array([[1, 2, 6], [0, 0, 3]])
    np.testing.assert_array_equal(ours(idx), theirs(torch.from_numpy(idx)).detach().numpy())


def test_load_keeps_namespace_dtype_and_freeze():
    """The loaded weight takes the module's namespace and dtype; on torch, requires_grad follows freeze."""
    frozen = xembed.EmbeddingBag.from_pretrained(torch.zeros(N, D, dtype=torch.float64))
    frozen.load_state_dict({"weight": np.ones((N, D), np.float32)})
    assert isinstance(frozen.weight, torch.Tensor)
    assert frozen.weight.dtype == torch.float64
    assert not frozen.weight.requires_grad
    trainable = xembed.Embedding(N, D, xp=torch)
    trainable.load_state_dict({"weight": np.ones((N, D))})
    assert trainable.weight.requires_grad
    assert trainable.weight.is_leaf


def test_load_writes_into_the_weight_like_torch():
    """MOD-STATE-DICT: as torch's load_state_dict, the values go into the existing storage: the array wrapped by
    from_pretrained and an optimizer's reference to a torch weight see them."""
    wrapped = np.zeros((N, D), np.float32)
    emb = xembed.Embedding.from_pretrained(wrapped)
    emb.load_state_dict({"weight": np.ones((N, D))})
    assert emb.weight is wrapped
    np.testing.assert_array_equal(wrapped, 1.0)
    theirs = torch.nn.Embedding.from_pretrained(torch.zeros(N, D))
    source = theirs.weight.data
    theirs.load_state_dict({"weight": torch.ones(N, D)})
    assert float(source.sum()) == N * D  # torch does the same

    trainable = xembed.Embedding(N, D, xp=torch)
    optimizer = torch.optim.SGD([trainable.weight], lr=1.0)
    trainable.load_state_dict({"weight": np.full((N, D), 2.0)})
    assert optimizer.param_groups[0]["params"][0] is trainable.weight
    assert trainable.weight.requires_grad
    trainable(torch.tensor([1])).sum().backward()
    optimizer.step()
    assert float(trainable.weight.detach()[1, 0]) == 1.0

    frozen = np.ones((N, D), np.float32)
    frozen.flags.writeable = False
    emb = xembed.Embedding.from_pretrained(frozen)
    emb.load_state_dict({"weight": np.zeros((N, D))})
    assert emb.weight is not frozen
    np.testing.assert_array_equal(emb.weight, 0.0)
    np.testing.assert_array_equal(frozen, 1.0)


def test_prefix_and_strict():
    checkpoint = {"embedding.weight": np.ones((N, D)), "fc.weight": np.ones((2, D)), "embedding.extra": np.ones(1)}
    m = xembed.EmbeddingBag(N, D)
    with pytest.raises(KeyError, match=r"`state_dict`.*unexpected keys \['embedding.extra'\]"):
        m.load_state_dict(checkpoint, prefix="embedding.")
    result = m.load_state_dict(checkpoint, strict=False, prefix="embedding.")
    assert result.missing_keys == []
    assert result.unexpected_keys == ["embedding.extra"]
    np.testing.assert_array_equal(m.weight, 1.0)
    with pytest.raises(KeyError, match=r"missing keys \['weight'\]"):
        m.load_state_dict({})
    assert m.load_state_dict({}, strict=False) == (["weight"], [])


@pytest.mark.parametrize(
    ("state", "error", "match"),
    [({"weight": np.ones((N, D + 1))}, ValueError, r"`state_dict\['weight'\]` must have shape \(7, 3\), got \(7, 4\)"),
     ({"weight": np.ones((N, D), np.int64)}, TypeError, r"`state_dict\['weight'\]` must have a real floating dtype"),
     ({"weight": "not an array"}, TypeError, r"`state_dict\['weight'\]` must have a real floating dtype, got <U12"),
     ({"weight": object()}, TypeError, r"`state_dict\['weight'\]` must be an array, got object"),
     ([("weight", np.ones((N, D)))], TypeError, "`state_dict` must be a mapping")],
    ids=["shape", "int", "str", "object", "list"],
)
def test_load_errors_leave_the_weight_untouched(state, error, match):
    m = xembed.Embedding(N, D, seed=1)
    before = m.weight.copy()
    with pytest.raises(error, match=match):
        m.load_state_dict(state)
    np.testing.assert_array_equal(m.weight, before)


def test_freeze_numpy_vjp_gives_no_weight_gradient():
    """MOD-FREEZE: a frozen module's pullback gives None for the weight (torch leaves weight.grad None); the
    per_sample_weights gradient is still computed."""
    w = np.arange(N * D, dtype=np.float32).reshape(N, D)
    idx = np.array([[1, 2, 2]])
    emb = xembed.Embedding.from_pretrained(w)
    out, pullback = emb.vjp(idx)
    assert pullback(np.ones_like(out)) is None

    psw = np.array([[1.0, 2.0, 0.5]], np.float32)
    bag = xembed.EmbeddingBag.from_pretrained(w, mode="sum")
    out, pullback = bag.vjp(idx, per_sample_weights=psw)
    gw, gp = pullback(np.ones_like(out))
    assert gw is None
    _, reference = xembed.embedding_bag_vjp(idx, w, mode="sum", per_sample_weights=psw)
    np.testing.assert_array_equal(gp, reference(np.ones_like(out))[1])

    thawed = xembed.EmbeddingBag.from_pretrained(w, freeze=False, mode="sum")
    out, pullback = thawed.vjp(idx, per_sample_weights=psw)
    np.testing.assert_array_equal(pullback(np.ones_like(out))[0], reference(np.ones_like(out))[0])


def test_serve_torch_model_example(tmp_path):
    """examples/serve_torch_model.py: trains torch's tutorial model, saves it, serves it with xembed on NumPy
    and exits 0 only when logits and predicted classes match torch's; the .npz and .pt it wrote then serve in a
    process where torch cannot be imported."""
    spec = importlib.util.spec_from_file_location("serve_torch_model", ROOT / "examples" / "serve_torch_model.py")
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert example.main(["--out", str(tmp_path)]) == 0
    code = (
        "import sys; sys.modules['torch'] = None\n"
        f"sys.path.insert(0, {str(ROOT / 'examples')!r})\n"
        "import numpy as np, serve_torch_model as s\n"
        "docs, labels = s.make_documents(np.random.default_rng(5), 200)\n"
        "for name in ('model.npz', 'model.pt'):\n"
        f"    clf = s.TextClassifier.load({str(tmp_path)!r} + '/' + name)\n"
        "    print('ACCURACY', (clf.predict(docs) == labels).mean())\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    accuracies = [float(line.split()[1]) for line in res.stdout.splitlines() if line.startswith("ACCURACY")]
    assert len(accuracies) == 2, res.stdout
    assert min(accuracies) > 0.9, res.stdout


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64])
def test_load_torch_state_dict_reads_torch_save_without_torch(tmp_path, dtype):
    """MOD-STATE-DICT: ``xembed.load_torch_state_dict`` reads a ``torch.save``'d state dict with NumPy only:
    every tensor equal to what torch.load gives (bfloat16 as float32), views of a shared storage included."""
    base = torch.arange(24, dtype=torch.float64).reshape(6, 4).to(dtype)
    state = {"emb.weight": base, "tied.weight": base[1:5, ::2], "scalar": torch.tensor(3, dtype=dtype),
             "empty": torch.zeros(0, 4, dtype=dtype)}
    torch.save(state, tmp_path / "ckpt.pt")
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np, xembed\n"
        f"state = xembed.load_torch_state_dict({str(tmp_path / 'ckpt.pt')!r})\n"
        f"np.savez({str(tmp_path / 'out.npz')!r}, **state)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    with np.load(tmp_path / "out.npz") as got:
        assert sorted(got.files) == sorted(state)
        for key, tensor in torch.load(tmp_path / "ckpt.pt").items():
            expected = tensor.float().numpy() if dtype == torch.bfloat16 else tensor.numpy()
            assert got[key].dtype == expected.dtype, key
            np.testing.assert_array_equal(got[key], expected, err_msg=key)


def test_load_torch_state_dict_serves_a_module(tmp_path):
    theirs = torch.nn.Sequential(torch.nn.Embedding(N, D, padding_idx=0))
    torch.save(theirs.state_dict(), tmp_path / "model.pt")
    ours = xembed.Embedding(N, D, padding_idx=0)
    ours.load_state_dict(xembed.load_torch_state_dict(tmp_path / "model.pt"), prefix="0.")
    idx = np.array([[0, 3], [6, 1]])
    np.testing.assert_array_equal(ours(idx), theirs(torch.from_numpy(idx)).detach().numpy())


def test_load_torch_state_dict_refuses_what_is_not_a_state_dict(tmp_path):
    """A pickled module (code would have to run to rebuild it) and a file that is not a checkpoint are
    ValueErrors naming `path`; nothing from the file is executed."""
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")
    with pytest.raises(ValueError, match=r"`path` .*module\.pt.*torch\.nn\.modules\.linear\.Linear"):
        xembed.load_torch_state_dict(tmp_path / "module.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"`path` .* is not a checkpoint in torch's zip format"):
        xembed.load_torch_state_dict(tmp_path / "text.pt")
    torch.save([torch.ones(2)], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="holds a list, not a state dict of tensors"):
        xembed.load_torch_state_dict(tmp_path / "list.pt")
