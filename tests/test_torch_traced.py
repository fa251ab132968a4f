"""torch users' tools on xembed: dynamic shapes under ``torch.compile`` / ``torch.export``, the generic API
traced with ``fullgraph=True``, ``torch.func`` transforms, and the forward's values in the backward
(CPU, float64; small shapes: compiling is slow).

Rules: ``TORCH-DYNAMIC``, ``TORCH-EXPORT``, ``TORCH-TRACED``, ``TORCH-FUNC``, ``TORCH-SPARSE-TRACED``,
``TORCH-SAVED`` (docs/spec.md, "torch integration").
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch  # the oracle: a missing install must fail, not skip
from torch._dynamo.testing import CompileCounterWithBackend

import xembed
import xembed.torch as xt
from xembed.torch import _traced

F = torch.nn.functional
T = torch.Tensor

IDX = [1, 2, 2, 5, 0, 2, 4, 3]
OFFS = [0, 3, 3, 6]  # bags {1,2,2}, {}, {5,0,2}, {4,3}
D64 = torch.float64


def _w(seed: int = 0, n: int = 6, d: int = 3) -> T:
    return torch.tensor(np.random.default_rng(seed).standard_normal((n, d)), requires_grad=True)


def _batch(b: int, seed: int) -> tuple[T, T]:
    """``b`` ragged bags over 6 rows (lengths 0..3)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 4, b)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return torch.tensor(rng.integers(0, 6, int(lengths.sum()))), torch.tensor(offsets)


# --- torch.compile: one graph for every batch size -----------------------------------------------------

def _graphs_for_batch_sizes(module: torch.nn.Module, dynamic: bool | None) -> tuple[int, list[T], list[T]]:
    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")  # dynamo decides the graphs, whatever the backend
    compiled = torch.compile(module, backend=counter, dynamic=dynamic)
    outs: list[T] = []
    grads: list[T] = []
    for k, b in enumerate([1, 2, 3, 5, 7, 8, 11, 13, 16, 17, 24, 31]):
        idx, offs = _batch(b, k)
        out = compiled(idx, offs)
        module.weight.grad = None
        (out * out).sum().backward()
        outs.append(out.detach())
        assert module.weight.grad is not None
        grads.append(module.weight.grad.clone())
    return counter.frame_count, outs, grads


@pytest.mark.parametrize("dynamic", [None, True], ids=["default", "dynamic"])
@pytest.mark.parametrize("mode", ["sum", "max"])
def test_compile_twelve_batch_sizes_no_more_graphs_than_torch(dynamic: bool | None, mode: str) -> None:
    """TORCH-DYNAMIC: twelve batch sizes through the compiled module build no more graphs than torch's own
    module (no recompile per size), with torch's outputs and gradients."""
    mine = xt.EmbeddingBag(6, 3, mode=mode, padding_idx=2, dtype=D64)
    ref = torch.nn.EmbeddingBag(6, 3, mode=mode, padding_idx=2, dtype=D64)
    ref.load_state_dict(mine.state_dict())
    n_ref, out_ref, grad_ref = _graphs_for_batch_sizes(ref, dynamic)
    n_mine, out_mine, grad_mine = _graphs_for_batch_sizes(mine, dynamic)
    assert n_mine <= n_ref, (n_mine, n_ref)
    for a, b in zip(out_mine + grad_mine, out_ref + grad_ref, strict=True):
        torch.testing.assert_close(a, b)


# --- torch.export with dynamic dims ----------------------------------------------------------------------

def _save_load(ep: torch.export.ExportedProgram) -> torch.nn.Module:
    buf = io.BytesIO()
    torch.export.save(ep, buf)
    buf.seek(0)
    return torch.export.load(buf).module()


@pytest.mark.parametrize(("mode", "include_last_offset"), [("sum", False), ("mean", True), ("max", False)])
def test_export_dynamic_bags_and_indices(mode: str, include_last_offset: bool) -> None:
    """TORCH-EXPORT / TORCH-DYNAMIC: Dims for the number of indices and of bags; saved, loaded and run at other
    sizes with torch's results; the run-time value checks stay in the program."""
    mine = xt.EmbeddingBag(6, 3, mode=mode, include_last_offset=include_last_offset, padding_idx=2, dtype=D64)
    ref = torch.nn.EmbeddingBag(6, 3, mode=mode, include_last_offset=include_last_offset, padding_idx=2, dtype=D64)
    ref.load_state_dict(mine.state_dict())
    idx, offs = torch.tensor(IDX), torch.tensor(OFFS + ([len(IDX)] if include_last_offset else []))
    # torch's own rule: with include_last_offset, B bags are B + 1 offsets and one bag would specialize
    n, b = torch.export.Dim("n", min=2), torch.export.Dim("b", min=3 if include_last_offset else 2)
    ep = torch.export.export(mine, (idx, offs), dynamic_shapes={"input": {0: n}, "offsets": {0: b}})
    loaded = _save_load(ep)
    for k, size in enumerate([5, 19]):
        idx2, offs2 = _batch(size, 100 + k)
        if include_last_offset:
            offs2 = torch.cat([offs2, torch.tensor([idx2.shape[0]])])
        torch.testing.assert_close(loaded(idx2, offs2), ref(idx2, offs2))
    with pytest.raises(IndexError, match="out of range"):
        loaded(torch.tensor([0, 6, 1]), torch.tensor([0, 1, 3][: 3 if include_last_offset else 2]))


def test_export_dynamic_2d_input() -> None:
    """TORCH-EXPORT: a 2-D input with both dims dynamic."""
    mine, ref = xt.EmbeddingBag(6, 3, mode="mean", dtype=D64), torch.nn.EmbeddingBag(6, 3, mode="mean", dtype=D64)
    ref.load_state_dict(mine.state_dict())
    b, length = torch.export.Dim("b", min=2), torch.export.Dim("length", min=2)
    ep = torch.export.export(mine, (torch.tensor(IDX).reshape(4, 2),), dynamic_shapes={"input": {0: b, 1: length}})
    loaded = _save_load(ep)
    other = torch.tensor(np.random.default_rng(5).integers(0, 6, (7, 3)))
    torch.testing.assert_close(loaded(other), ref(other))


# --- the generic API under torch.compile(fullgraph=True) --------------------------------------------------

BAG_OPTIONS: list[dict[str, Any]] = [
    {"mode": "sum", "psw": True, "padding_idx": 2},
    {"mode": "mean", "scale_grad_by_freq": True, "include_last_offset": True},
    {"mode": "max", "max_norm": 0.5},
    {"mode": "min", "padding_idx": 5},
    {"mode": "sqrtn", "psw": True},
    {"mode": "mean", "psw": True, "lengths": True},
]
BAG_IDS = ["sum_psw_pad", "mean_sgbf_ilo", "max_maxnorm", "min_pad", "sqrtn_psw", "wmean_lengths"]


def _bag_call(options: dict[str, Any]) -> tuple[Callable[..., T], tuple[Any, ...]]:
    """A function of (weight, per_sample_weights) calling xembed.embedding_bag with these options, and its
    index arguments."""
    options = dict(options)
    use_psw, use_lengths = options.pop("psw", False), options.pop("lengths", False)
    idx = torch.tensor(IDX)
    offs = torch.tensor(OFFS + ([len(IDX)] if options.get("include_last_offset") else []))
    lengths = torch.tensor([3, 0, 3, 2])

    def call(w: T, psw: T | None, idx: T, offs: T, lengths: T) -> T:
        return xembed.embedding_bag(idx, w, None if use_lengths else offs, per_sample_weights=psw,
                                    lengths=lengths if use_lengths else None, **options)

    psw = torch.tensor(np.random.default_rng(4).uniform(0.5, 2.0, len(IDX)), requires_grad=True) if use_psw else None
    return call, (psw, idx, offs, lengths)


@pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`")  # array_api_compat's type test
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
@pytest.mark.parametrize("options", BAG_OPTIONS, ids=BAG_IDS)
def test_generic_embedding_bag_fullgraph(options: dict[str, Any], backend: str) -> None:
    """TORCH-TRACED: torch.compile(fullgraph=True) of a function calling xembed.embedding_bag: forward (in-place
    renorm included) and backward equal the eager call, every mode, extensions included."""
    call, (psw, *index_args) = _bag_call(options)
    torch._dynamo.reset()
    w, w_ref = _w(), _w()
    psw_ref = None if psw is None else psw.detach().clone().requires_grad_()
    out = torch.compile(call, fullgraph=True, backend=backend)(w, psw, *index_args)
    expected = call(w_ref, psw_ref, *index_args)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(w.detach(), w_ref.detach())
    g = torch.tensor(np.random.default_rng(3).standard_normal(out.shape))
    torch.autograd.backward([out, expected], [g, g])
    torch.testing.assert_close(w.grad, w_ref.grad)
    if psw is not None:
        assert psw_ref is not None
        torch.testing.assert_close(psw.grad, psw_ref.grad)


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_generic_embedding_fullgraph(backend: str) -> None:
    """TORCH-TRACED: xembed.embedding compiled with fullgraph=True, against torch.nn.functional.embedding."""
    torch._dynamo.reset()
    idx = torch.tensor(IDX).reshape(2, 4)
    w, w_ref = _w(), _w()

    def fn(w: T, i: T) -> T:
        return xembed.embedding(i, w, padding_idx=2, max_norm=1.0, scale_grad_by_freq=True)

    out = torch.compile(fn, fullgraph=True, backend=backend)(w, idx)
    expected = F.embedding(idx, w_ref, padding_idx=2, max_norm=1.0, scale_grad_by_freq=True)
    torch.testing.assert_close(out, expected)
    torch.autograd.backward([(out * out).sum(), (expected * expected).sum()])
    torch.testing.assert_close(w.grad, w_ref.grad)


@pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`")  # array_api_compat's type test
def test_generic_compiled_checks_values_at_run_time() -> None:
    """TORCH-OPS-VALIDATE through the generic API: bad lengths, offsets and indices raise the eager errors from
    the compiled program, and a failing call leaves the weight (max_norm) untouched."""
    torch._dynamo.reset()
    w = _w().detach()
    before = w.clone()

    def fn(i: T, o: T | None, lengths: T | None) -> T:
        return xembed.embedding_bag(i, w, o, mode="sum", max_norm=0.1, lengths=lengths)

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    i = torch.tensor([1, 2, 3])
    with pytest.raises(ValueError, match=r"`lengths` must sum to the number of indices in `input` \(3\)"):
        compiled(i, None, torch.tensor([1, 1]))
    with pytest.raises(ValueError, match=r"every entry of `lengths` must be non-negative, but lengths\[1\] = -1"):
        compiled(i, None, torch.tensor([2, -1]))
    with pytest.raises(ValueError, match=r"`offsets` must be non-decreasing"):
        compiled(i, torch.tensor([0, 2, 1]), None)
    with pytest.raises(IndexError, match=r"index 6 at position 2 of `input`"):
        compiled(torch.tensor([1, 2, 6]), torch.tensor([0, 1]), None)
    assert torch.equal(w, before)


def test_vjp_functions_not_traceable() -> None:
    """The *_vjp functions return a Python closure: under torch.func they raise NotImplementedError."""
    with pytest.raises(NotImplementedError, match="not traceable"):
        torch.func.grad(lambda w: xembed.embedding_vjp(torch.tensor([1]), w)[0].sum())(_w().detach())


# --- torch.func ----------------------------------------------------------------------------------------------

FUNC_CASES: list[dict[str, Any]] = [
    {"mode": "sum", "padding_idx": 2, "psw": True},
    {"mode": "mean", "padding_idx": 2},
    {"mode": "max", "max_norm": 1.0},
    {"mode": "sum", "scale_grad_by_freq": True},
]
FUNC_IDS = ["sum_pad_psw", "mean_pad", "max_maxnorm", "sum_sgbf"]


def _pair(options: dict[str, Any]) -> tuple[Callable[..., T], Callable[..., T], T | None]:
    """(xembed, torch) bag functions of (weight, idx (B, L), psw) for these options, and a psw value."""
    options = dict(options)
    use_psw = options.pop("psw", False)
    psw = torch.tensor(np.random.default_rng(4).uniform(0.5, 2.0, len(IDX))).reshape(4, 2) if use_psw else None

    def mine(w: T, idx: T, p: T | None) -> T:
        return xembed.embedding_bag(idx, w, per_sample_weights=p, **options)

    def ref(w: T, idx: T, p: T | None) -> T:
        return F.embedding_bag(idx, w, per_sample_weights=p, **options)

    return mine, ref, psw


def _loss(f: Callable[..., T]) -> Callable[..., T]:
    return lambda w, idx, p: (f(w, idx, p) ** 2).sum()


@pytest.mark.parametrize("options", FUNC_CASES, ids=FUNC_IDS)
def test_func_grad_vjp_jacrev(options: dict[str, Any]) -> None:
    """TORCH-FUNC: torch.func.grad (w.r.t. weight and per_sample_weights), vjp and jacrev equal
    torch.nn.functional's."""
    mine, ref, psw = _pair(options)
    idx = torch.tensor(IDX).reshape(4, 2)
    w = _w().detach()
    argnums = (0, 2) if psw is not None else 0
    got = torch.func.grad(_loss(mine), argnums=argnums)(w.clone(), idx, psw)
    expected = torch.func.grad(_loss(ref), argnums=argnums)(w.clone(), idx, psw)
    torch.testing.assert_close(got, expected)
    g = torch.tensor(np.random.default_rng(6).standard_normal((4, 3)))
    (vjp_mine,) = torch.func.vjp(lambda w: mine(w, idx, psw), w.clone())[1](g)
    (vjp_ref,) = torch.func.vjp(lambda w: ref(w, idx, psw), w.clone())[1](g)
    torch.testing.assert_close(vjp_mine, vjp_ref)
    jac = torch.func.jacrev(lambda w: mine(w, idx, psw))(w.clone())
    jac_ref = torch.autograd.functional.jacobian(lambda w: ref(w, idx, psw), w.clone())  # torch.vmap-free
    torch.testing.assert_close(jac, jac_ref)


@pytest.mark.parametrize("options", FUNC_CASES, ids=FUNC_IDS)
def test_func_per_sample_gradients(options: dict[str, Any]) -> None:
    """TORCH-FUNC: vmap(grad(loss)) over samples (one bag each) equals a loop of torch.nn.functional
    gradients, sample by sample (the weight renormed in the same order)."""
    mine, ref, psw = _pair(options)
    samples = torch.tensor(IDX).reshape(4, 1, 2)
    p = None if psw is None else psw.reshape(4, 1, 2)
    w, w_ref = _w().detach(), _w().detach()
    per_sample = torch.vmap(torch.func.grad(_loss(mine)), in_dims=(None, 0, None if p is None else 0))(w, samples, p)
    loop = torch.stack([torch.func.grad(_loss(ref))(w_ref, samples[k], None if p is None else p[k])
                        for k in range(4)])
    torch.testing.assert_close(per_sample, loop)
    torch.testing.assert_close(w, w_ref)


def test_func_vmap_over_weights_and_indices() -> None:
    """TORCH-FUNC: vmap over a batch of tables, of index arrays (1-D input with offsets) and of offsets."""
    w = _w().detach()
    tables = torch.stack([w, 2 * w, -w])
    got = torch.vmap(lambda t: xembed.embedding_bag(torch.tensor(IDX), t, torch.tensor(OFFS), mode="max"))(tables)
    expected = torch.stack([F.embedding_bag(torch.tensor(IDX), t, torch.tensor(OFFS), mode="max") for t in tables])
    torch.testing.assert_close(got, expected)
    inputs = torch.tensor([IDX, IDX[::-1]])
    got = torch.vmap(lambda i: xembed.embedding_bag(i, w, torch.tensor(OFFS), mode="mean", padding_idx=2))(inputs)
    expected = torch.stack([F.embedding_bag(i, w, torch.tensor(OFFS), mode="mean", padding_idx=2) for i in inputs])
    torch.testing.assert_close(got, expected)
    offsets = torch.tensor([[0, 1, 1, 4], OFFS])
    got = torch.vmap(lambda o: xembed.embedding_bag(torch.tensor(IDX), w, o, mode="sum"))(offsets)
    expected = torch.stack([F.embedding_bag(torch.tensor(IDX), w, o, mode="sum") for o in offsets])
    torch.testing.assert_close(got, expected)
    emb = torch.vmap(lambda i: xembed.embedding(i, w, padding_idx=1))(inputs)
    torch.testing.assert_close(emb, F.embedding(inputs, w, padding_idx=1))


def test_func_embedding_padding_grad_and_functional_call() -> None:
    """TORCH-FUNC: grad of embedding with padding_idx (no storage RuntimeError), and functional_call of the
    drop-in module under grad, against torch's module."""
    idx = torch.tensor(IDX).reshape(2, 4)
    w = _w().detach()
    got = torch.func.grad(lambda w: (xembed.embedding(idx, w, padding_idx=2) ** 2).sum())(w)
    expected = torch.func.grad(lambda w: (F.embedding(idx, w, padding_idx=2) ** 2).sum())(w)
    torch.testing.assert_close(got, expected)
    mine, ref = xt.EmbeddingBag(6, 3, mode="sum", dtype=D64), torch.nn.EmbeddingBag(6, 3, mode="sum", dtype=D64)
    params = {"weight": w}

    def loss(module: torch.nn.Module) -> Callable[[dict[str, T]], T]:
        return lambda p: torch.func.functional_call(module, p, (torch.tensor(IDX), torch.tensor(OFFS))).sum()

    torch.testing.assert_close(torch.func.grad(loss(mine))(params)["weight"],
                               torch.func.grad(loss(ref))(params)["weight"])


def test_func_forward_mode() -> None:
    """TORCH-FUNC / TORCH-FWD-AD under torch.func: jvp of embedding equals torch.nn.functional's (padding rows
    included); of a sum bag it is the bag of the weight tangent plus Σ psw_t · W[idx]; jacfwd equals jacrev
    for sum, weighted mean and sqrtn, w.r.t. weight and per_sample_weights, zero-divisor bags included."""
    idx, offs = torch.tensor(IDX), torch.tensor(OFFS)
    w = _w().detach()
    t = torch.tensor(np.random.default_rng(8).standard_normal(w.shape))
    tangent = torch.func.jvp(lambda w: xembed.embedding(idx, w, padding_idx=2), (w,), (t,))[1]
    torch.testing.assert_close(tangent, torch.func.jvp(lambda w: F.embedding(idx, w, padding_idx=2), (w,), (t,))[1])
    p = torch.tensor(np.random.default_rng(9).uniform(0.5, 2.0, len(IDX)))
    pt = torch.tensor(np.random.default_rng(10).standard_normal(len(IDX)))
    for mode in ("sum", "mean", "sqrtn"):
        def bag(w: T, p: T, mode: str = mode) -> T:
            return xembed.embedding_bag(idx, w, offs, mode=mode, per_sample_weights=p, padding_idx=2)

        torch.testing.assert_close(torch.func.jvp(lambda w: bag(w, p), (w,), (t,))[1], bag(t, p))
        jacobians = [jac(bag, argnums=(0, 1))(w, p) for jac in (torch.func.jacfwd, torch.func.jacrev)]
        torch.testing.assert_close(*jacobians)
    p[:3] = 0.0  # the first bag's weights sum to 0: zeros, and a zero tangent (EXT-WMEAN-ZERO)
    for mode in ("mean", "sqrtn"):
        def zero_bag(p: T, mode: str = mode) -> T:
            return xembed.embedding_bag(idx, w, offs, mode=mode, per_sample_weights=p)

        torch.testing.assert_close(torch.func.jacfwd(zero_bag)(p), torch.func.jacrev(zero_bag)(p))
    def sum_bag(w: T, p: T) -> T:
        return xembed.embedding_bag(idx, w, offs, mode="sum", per_sample_weights=p, padding_idx=2)

    torch.testing.assert_close(torch.func.jvp(sum_bag, (w, p), (t, pt))[1], sum_bag(t, p) + sum_bag(w, pt))


@pytest.mark.parametrize("case", ["jvp_max", "hessian", "grad_of_grad", "sparse"])
def test_func_unsupported_raise_not_implemented(case: str) -> None:
    """TORCH-FUNC: forward mode of the non-linear bags, second derivatives and sparse=True raise
    NotImplementedError naming what is unsupported (never a silent zero or a storage RuntimeError)."""
    idx, offs, w = torch.tensor(IDX), torch.tensor(OFFS), _w().detach()

    def f(w: T, sparse: bool = False) -> T:
        return xembed.embedding(idx, w, sparse=sparse).pow(2).sum()

    calls: dict[str, tuple[Callable[[], object], str]] = {
        "jvp_max": (lambda: torch.func.jvp(lambda w: xembed.embedding_bag(idx, w, offs, mode="max"), (w,), (w,)),
                    r"torch\.func\.jvp, jacfwd\) of embedding_bag with `mode`='max'"),
        "hessian": (lambda: torch.func.hessian(f)(w), "second derivative"),
        "grad_of_grad": (lambda: torch.func.grad(lambda w: torch.func.grad(f)(w).sum())(w), "double backward"),
        "sparse": (lambda: torch.func.grad(lambda w: f(w, True))(w), r"`sparse`=True"),
    }
    call, match = calls[case]
    with pytest.raises(NotImplementedError, match=match):
        call()


# --- the forward's values in the backward ---------------------------------------------------------------

def _modify_after_forward(f: Callable[..., T], what: str, mode: str, use_psw: bool) -> str:
    w = _w() * 1.0  # not a leaf: may be modified in place
    idx, offs = torch.tensor(IDX), torch.tensor(OFFS)
    psw = torch.ones(len(IDX), dtype=D64, requires_grad=True) if use_psw else None
    out = f(idx, w, offs, mode=mode, per_sample_weights=psw)
    modified = {"input": idx, "offsets": offs, "weight": w, "per_sample_weights": psw}[what]
    assert modified is not None
    with torch.no_grad():
        modified.mul_(1)
    try:
        out.sum().backward()
    except RuntimeError as e:
        return "raised" if "modified by an inplace operation" in str(e) else repr(e)
    return "ran"


@pytest.mark.parametrize(("what", "mode", "use_psw"), [
    ("input", "sum", False), ("offsets", "mean", False), ("input", "max", False), ("weight", "sum", False),
    ("weight", "sum", True), ("per_sample_weights", "sum", True)])
@pytest.mark.parametrize("path", ["eager", "ops"])
def test_inplace_modification_after_forward_like_torch(what: str, mode: str, use_psw: bool, path: str) -> None:
    """TORCH-SAVED: modifying in place a tensor the backward reads raises torch's error, exactly where
    torch.nn.functional raises (and runs where torch's backward does not read it), on the eager path and on
    the ops' path (the one compile / export / torch.func take, called here directly)."""
    f = xembed.embedding_bag if path == "eager" else _traced.embedding_bag
    assert _modify_after_forward(f, what, mode, use_psw) == _modify_after_forward(F.embedding_bag, what, mode, use_psw)


def test_renorm_traced_and_vmapped() -> None:
    """TORCH-TRACED / TORCH-FUNC for xembed.renorm: compiled with fullgraph=True, and under torch.vmap over
    tables or over index arrays (one renormed table per entry) equal to the eager calls; under grad it raises
    (its result is outside autograd: a silent zero derivative otherwise)."""
    w, idx = _w().detach(), torch.tensor([1, 2])
    compiled = torch.compile(lambda w, i: xembed.renorm(w, i, 1.0), fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(w, idx), xembed.renorm(w, idx, 1.0))
    inputs, tables = torch.tensor([[1, 2], [3, 3]]), torch.stack([w, 2 * w])
    torch.testing.assert_close(torch.vmap(lambda i: xembed.renorm(w, i, 1.0))(inputs),
                               torch.stack([xembed.renorm(w, i, 1.0) for i in inputs]))
    torch.testing.assert_close(torch.vmap(lambda t: xembed.renorm(t, idx, 1.0))(tables),
                               torch.stack([xembed.renorm(t, idx, 1.0) for t in tables]))
    with pytest.raises(NotImplementedError, match=r"renorm is not supported under torch\.func's grad"):
        torch.func.grad(lambda w: xembed.renorm(w, idx, 1.0).sum())(w)
