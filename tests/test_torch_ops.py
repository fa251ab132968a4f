"""torch beyond first-order reverse mode: double backward, forward-mode AD,
the ``xembed::`` custom ops under ``torch.compile(fullgraph=True)`` and ``torch.export`` (CPU, float64).

Rules: ``TORCH-DOUBLE-BWD``, ``TORCH-FWD-AD``, ``TORCH-OPS``, ``TORCH-OPS-VALIDATE``, ``TORCH-COMPILE``,
``TORCH-SPARSE-TRACED``, ``TORCH-EXPORT`` (docs/spec.md, "torch integration").
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch  # the oracle: a missing install must fail, not skip
import torch.autograd.forward_ad as fwad

import xembed
import xembed.torch as xt
from xembed.torch import _ops

F = torch.nn.functional
T = torch.Tensor

IDX = [1, 2, 2, 5, 0, 2, 4, 3]
OFFS = [0, 3, 3, 6]  # bags {1,2,2}, {}, {5,0,2}, {4,3}


def _dual(primal: T, tangent: T) -> T:
    return fwad.make_dual(primal, tangent)


def _unpack(x: T) -> tuple[T, T | None]:
    primal, tangent = fwad.unpack_dual(x)
    return primal, tangent


def _w(seed: int = 0, n: int = 6, d: int = 3) -> T:
    return torch.tensor(np.random.default_rng(seed).standard_normal((n, d)), requires_grad=True)


def _psw(seed: int = 1) -> T:
    return torch.tensor(np.random.default_rng(seed).standard_normal(len(IDX)), requires_grad=True)


# Bag cases: (options, gradcheck-able). gradcheck compares with finite differences of the forward, which
# the gradient convention of max_norm (renormed weight treated as the leaf) and scale_grad_by_freq
# (divided by frequency) deliberately departs from; gradgradcheck differentiates the backward, which is
# linear in grad_output in every case, so it runs everywhere.
BAG_CASES: list[tuple[dict[str, Any], bool]] = [
    ({"mode": "sum"}, True),
    ({"mode": "sum", "padding_idx": 2}, True),
    ({"mode": "mean"}, True),
    ({"mode": "mean", "padding_idx": 2}, True),
    ({"mode": "max"}, True),
    ({"mode": "max", "padding_idx": 2}, True),
    ({"mode": "sum", "scale_grad_by_freq": True}, False),
    ({"mode": "mean", "scale_grad_by_freq": True, "padding_idx": 2}, False),
    ({"mode": "mean", "max_norm": 0.5}, False),
    ({"mode": "max", "max_norm": 0.5, "norm_type": 1.0}, False),
    ({"mode": "sum", "include_last_offset": True}, True),
]
BAG_IDS = ["sum", "sum_pad", "mean", "mean_pad", "max", "max_pad", "sum_sgbf", "mean_sgbf_pad",
           "mean_maxnorm", "max_maxnorm", "sum_ilo"]


def _bag_fn(options: dict[str, Any]) -> Callable[..., T]:
    idx, offs = torch.tensor(IDX), torch.tensor(OFFS + ([len(IDX)] if options.get("include_last_offset") else []))

    def fn(w: T, psw: T | None = None) -> T:
        # max_norm renorms in place: work on a copy so that finite differences see an unchanged leaf.
        w = w.clone() if "max_norm" in options else w
        return xembed.embedding_bag(idx, w, offs, per_sample_weights=psw, **options)

    return fn


@pytest.mark.parametrize(("options", "first_order"), BAG_CASES, ids=BAG_IDS)
def test_bag_gradcheck_and_gradgradcheck(options: dict[str, Any], first_order: bool) -> None:
    """TORCH-DOUBLE-BWD: float64 gradgradcheck for every mode (and gradcheck where the convention is the
    true derivative)."""
    fn, w = _bag_fn(options), _w()
    if first_order:
        assert torch.autograd.gradcheck(fn, (w,))
    assert torch.autograd.gradgradcheck(fn, (w,))


@pytest.mark.parametrize("padding_idx", [None, 2])
def test_bag_per_sample_weights_gradgradcheck(padding_idx: int | None) -> None:
    """TORCH-DOUBLE-BWD: with per_sample_weights the weight gradient depends on them and their gradient on
    the weight: both cross derivatives are checked against finite differences."""
    fn = _bag_fn({"mode": "sum", "padding_idx": padding_idx})
    w, psw = _w(), _psw()
    assert torch.autograd.gradcheck(fn, (w, psw))
    assert torch.autograd.gradgradcheck(fn, (w, psw))


@pytest.mark.parametrize("options", [{}, {"padding_idx": 2}, {"padding_idx": -1, "scale_grad_by_freq": True},
                                     {"max_norm": 0.5}], ids=["plain", "pad", "pad_sgbf", "maxnorm"])
def test_embedding_gradgradcheck(options: dict[str, Any]) -> None:
    """TORCH-DOUBLE-BWD for embedding (gradcheck too where the convention is the true derivative)."""
    idx = torch.tensor(IDX).reshape(2, 4)

    def fn(w: T) -> T:
        return xembed.embedding(idx, w.clone() if "max_norm" in options else w, **options)

    w = _w()
    if not options:
        assert torch.autograd.gradcheck(fn, (w,))
    assert torch.autograd.gradgradcheck(fn, (w,))


def test_double_backward_values_per_sample_weights() -> None:
    """TORCH-DOUBLE-BWD, by hand: d/dW <grad_psw, v> = scatter of v_i * g[bag(i)] (here bag 0 only)."""
    w, psw = _w(), _psw()
    idx, offs = torch.tensor([1, 2, 2]), torch.tensor([0])
    out = xembed.embedding_bag(idx, w, offs, mode="sum", per_sample_weights=psw[:3])
    g = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    _, gp = torch.autograd.grad(out, (w, psw), g, create_graph=True)
    vv = torch.tensor([0.3, -1.0, 2.0] + [0.0] * 5, dtype=torch.float64)
    (ggw,) = torch.autograd.grad(gp, w, vv)
    expected = torch.zeros(6, 3, dtype=torch.float64)
    expected[1] = 0.3 * g[0]
    expected[2] = (-1.0 + 2.0) * g[0]
    torch.testing.assert_close(ggw, expected)


def test_sparse_double_backward_raises() -> None:
    """Not supported → NotImplementedError at the second derivative, never a silent zero."""
    w = _w()
    out = xembed.embedding(torch.tensor([1, 2]), w, sparse=True)
    g = torch.ones_like(out, requires_grad=True)
    with pytest.raises(NotImplementedError, match="sparse"):
        torch.autograd.grad(out, w, g, create_graph=True)


# --- forward-mode AD ---------------------------------------------------------------------------------

@pytest.mark.parametrize("options", [{}, {"padding_idx": 2}, {"scale_grad_by_freq": True}, {"max_norm": 0.5},
                                     {"max_norm": 0.5, "norm_type": math.inf}],
                         ids=["plain", "pad", "sgbf", "maxnorm", "maxnorm_inf"])
def test_embedding_forward_ad_matches_torch(options: dict[str, Any]) -> None:
    """TORCH-FWD-AD: F.embedding has forward AD; xembed's primal and tangent equal torch's."""
    idx = torch.tensor(IDX).reshape(4, 2)
    w0 = _w().detach()
    tangent = torch.tensor(np.random.default_rng(9).standard_normal(w0.shape))
    results = []
    for f in (xembed.embedding, F.embedding):
        with fwad.dual_level():
            dual = _dual(w0.clone(), tangent)
            primal, tan = _unpack(f(idx, dual, **options))
            assert tan is not None, "the tangent must not be dropped"
            results.append((primal.clone(), tan.clone(), _unpack(dual)[0].clone()))
    for a, b in zip(results[0], results[1], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-15)


def _bag_tangent_reference(w: np.ndarray, wt: np.ndarray, psw: np.ndarray | None, pt: np.ndarray | None,
                           mode: str, padding_idx: int | None) -> np.ndarray:
    """The analytic tangent, bag by bag in plain NumPy: Σ (psw_t·W + psw·W_t) for sum, the mean of the
    tangent rows for mean, the tangent at the (first) arg-max per feature for max; padding left out."""
    bounds = [*OFFS, len(IDX)]
    out = np.zeros((len(OFFS), w.shape[1]))
    for b in range(len(OFFS)):
        pos = [i for i in range(bounds[b], bounds[b + 1]) if IDX[i] != padding_idx]
        if not pos:
            continue
        if mode == "max":
            rows = np.array([w[IDX[i]] for i in pos])
            arg = np.argmax(rows, axis=0)  # first occurrence on ties
            out[b] = [wt[IDX[pos[arg[d]]], d] for d in range(w.shape[1])]
            continue
        for i in pos:
            out[b] += (1.0 if psw is None else psw[i]) * wt[IDX[i]]
            if pt is not None:
                out[b] += pt[i] * w[IDX[i]]
        if mode == "mean":
            out[b] /= len(pos)
    return out


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("padding_idx", [None, 2])
def test_bag_forward_ad_analytic(mode: str, padding_idx: int | None) -> None:
    """TORCH-FWD-AD for embedding_bag (torch has none): against the analytic tangent."""
    w, wt = _w().detach(), torch.tensor(np.random.default_rng(7).standard_normal((6, 3)))
    with fwad.dual_level():
        out = xembed.embedding_bag(torch.tensor(IDX), _dual(w, wt), torch.tensor(OFFS), mode=mode,
                                   padding_idx=padding_idx)
        primal, tangent = _unpack(out)
    assert tangent is not None
    expected = _bag_tangent_reference(w.numpy(), wt.numpy(), None, None, mode, padding_idx)
    np.testing.assert_allclose(tangent.numpy(), expected, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(primal, F.embedding_bag(torch.tensor(IDX), w, torch.tensor(OFFS), mode=mode,
                                                       padding_idx=padding_idx))


@pytest.mark.parametrize("which", ["both", "weight", "psw"])
def test_bag_forward_ad_per_sample_weights(which: str) -> None:
    """TORCH-FWD-AD: the tangent of a weighted bag is Σ (psw_t·W + psw·W_t)."""
    w, psw = _w().detach(), _psw().detach()
    wt = torch.tensor(np.random.default_rng(7).standard_normal((6, 3)))
    pt = torch.tensor(np.random.default_rng(8).standard_normal(len(IDX)))
    with fwad.dual_level():
        wd = _dual(w, wt) if which != "psw" else w
        pd = _dual(psw, pt) if which != "weight" else psw
        out = xembed.embedding_bag(torch.tensor(IDX), wd, torch.tensor(OFFS), mode="sum", per_sample_weights=pd,
                                   padding_idx=2)
        tangent = _unpack(out)[1]
    assert tangent is not None
    expected = _bag_tangent_reference(w.numpy(), wt.numpy() if which != "psw" else np.zeros((6, 3)),
                                      psw.numpy(), pt.numpy() if which != "weight" else None, "sum", 2)
    np.testing.assert_allclose(tangent.numpy(), expected, rtol=1e-13, atol=1e-15)


def test_forward_ad_module_and_reverse_together() -> None:
    """A dual weight that also requires grad: tangent and backward are both right."""
    w = _w()
    wt = torch.ones(6, 3, dtype=torch.float64)
    with fwad.dual_level():
        out = xembed.embedding_bag(torch.tensor(IDX), _dual(w, wt), torch.tensor(OFFS), mode="mean")
        tangent = _unpack(out)[1]
        _unpack(out)[0].sum().backward()
    assert tangent is not None
    torch.testing.assert_close(tangent, torch.tensor([[1.0] * 3, [0.0] * 3, [1.0] * 3, [1.0] * 3],
                                                     dtype=torch.float64))
    ref = _w()
    F.embedding_bag(torch.tensor(IDX), ref, torch.tensor(OFFS), mode="mean").sum().backward()
    torch.testing.assert_close(w.grad, ref.grad)


# --- custom ops ------------------------------------------------------------------------------------------

def test_opcheck() -> None:
    """TORCH-OPS: torch.library.opcheck (schema, fake kernel, autograd registration, AOT dispatch)."""
    w, psw = _w(), _psw()
    idx, offs = torch.tensor(IDX), torch.tensor(OFFS)
    torch.library.opcheck(_ops.embedding_op, (w, idx.reshape(2, 4), 2, True, False))
    torch.library.opcheck(_ops.embedding_bag_op, (w, idx, offs, psw, None, "sum", 2, False, False, False))
    torch.library.opcheck(_ops.embedding_bag_op, (w, idx, None, psw, torch.tensor([3, 0, 3, 2]), "sqrtn", None,
                                                  False, False, False))


def test_ops_double_backward_raises() -> None:
    """TORCH-OPS: differentiating the backward op raises instead of returning a silent zero."""
    w = _w()
    out = _ops.embedding_bag_op(w, torch.tensor(IDX), torch.tensor(OFFS), None, None, "max", None, False, False,
                                False)
    (g,) = torch.autograd.grad(out.pow(2).sum(), w, create_graph=True)
    with pytest.raises(NotImplementedError, match="double backward"):
        g.sum().backward()


COMPILE_CASES: list[tuple[str, dict[str, Any]]] = [
    ("embedding", {"padding_idx": 2, "scale_grad_by_freq": True}),
    ("embedding", {"max_norm": 0.5}),
    ("bag", {"mode": "sum", "psw": True, "padding_idx": 2}),
    ("bag", {"mode": "mean", "padding_idx": 2}),
    ("bag", {"mode": "max", "max_norm": 0.5}),
]


@pytest.mark.parametrize(("kind", "options"), COMPILE_CASES, ids=["emb_pad_sgbf", "emb_maxnorm", "sum_psw_pad",
                                                                  "mean_pad", "max_maxnorm"])
def test_compile_fullgraph_forward_backward(kind: str, options: dict[str, Any]) -> None:
    """TORCH-COMPILE: ``torch.compile(fullgraph=True)`` traces xembed.torch's functions with no graph break
    (the ``aot_eager`` backend: dynamo + AOT autograd, the part that can break), forward, in-place renorm
    and backward equal to eager torch."""
    options = dict(options)
    use_psw = options.pop("psw", False)
    idx, offs = torch.tensor(IDX), torch.tensor(OFFS)
    w, ref = _w(), _w()
    psw, ref_psw = (_psw(), _psw()) if use_psw else (None, None)
    if kind == "embedding":
        fn = torch.compile(lambda w, i: xt.embedding(i, w, **options), fullgraph=True, backend="aot_eager")
        out, expected = fn(w, idx.reshape(2, 4)), F.embedding(idx.reshape(2, 4), ref, **options)
    else:
        def bag(w: T, i: T, o: T, p: T | None) -> T:
            return xt.embedding_bag(i, w, o, per_sample_weights=p, **options)

        out = torch.compile(bag, fullgraph=True, backend="aot_eager")(w, idx, offs, psw)
        expected = F.embedding_bag(idx, ref, offs, per_sample_weights=ref_psw, **options)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(w.detach(), ref.detach())  # the in-place renorm happened inside the graph
    g = torch.tensor(np.random.default_rng(3).standard_normal(out.shape))
    torch.autograd.backward([out, expected], [g, g])
    torch.testing.assert_close(w.grad, ref.grad)
    if use_psw:
        assert psw is not None
        assert ref_psw is not None
        torch.testing.assert_close(psw.grad, ref_psw.grad)


def test_compile_inductor_module_validates_at_run_time() -> None:
    """TORCH-COMPILE with the default (inductor) backend on a module; TORCH-OPS-VALIDATE: the compiled
    program still raises on a bad index / bad offsets, before touching the weight."""
    m = xt.EmbeddingBag(6, 3, mode="sum", max_norm=0.5, dtype=torch.float64)
    ref = torch.nn.EmbeddingBag(6, 3, mode="sum", max_norm=0.5, dtype=torch.float64)
    ref.load_state_dict(m.state_dict())
    cm = torch.compile(m, fullgraph=True)
    idx, offs = torch.tensor(IDX), torch.tensor(OFFS)
    out = cm(idx, offs)
    expected = ref(idx, offs)
    torch.testing.assert_close(out, expected)
    torch.autograd.backward([out.sum(), expected.sum()])
    torch.testing.assert_close(m.weight.grad, ref.weight.grad)
    before = m.weight.detach().clone()
    with pytest.raises(IndexError, match=r"index 9 at position 1 of `input`"):
        cm(torch.tensor([1, 9]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"`offsets`\[0\] must be 0, got 1"):
        cm(torch.tensor([4, 5]), torch.tensor([1, 1]))
    assert torch.equal(m.weight.detach(), before)


def test_compile_sparse_forward_runs_and_backward_raises_at_trace_time() -> None:
    """TORCH-SPARSE-TRACED: sparse=True only shapes the gradient: a compiled / exported forward runs (equal to
    torch's), and a traced backward raises NotImplementedError when it is compiled (before any step), never a
    silent eager fallback or a dense gradient (torch itself silently returns a dense one)."""
    m = xt.EmbeddingBag(6, 3, mode="sum", sparse=True, dtype=torch.float64)
    ref = torch.nn.EmbeddingBag(6, 3, mode="sum", sparse=True, dtype=torch.float64)
    ref.load_state_dict(m.state_dict())
    idx, offs = torch.tensor(IDX), torch.tensor(OFFS)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(m, backend="aot_eager")(idx, offs), ref(idx, offs))
    torch._dynamo.reset()
    # dynamo reports a backend's exception as BackendCompilerFailed, naming the original
    with pytest.raises(Exception, match=r"NotImplementedError: `sparse`=True: a sparse gradient cannot be traced"):
        torch.compile(m, backend="aot_eager")(idx, offs)
    assert m.weight.grad is None
    ep = torch.export.export(xt.Embedding(6, 3, sparse=True), (torch.tensor([1, 2]),))
    assert any(n.target is torch.ops.xembed.embedding.default for n in ep.graph.nodes)


@pytest.mark.parametrize("mode", ["sum", "max"])
def test_export_round_trip(mode: str) -> None:
    """TORCH-EXPORT: torch.export → save → load → run gives the eager result; the graph holds the op."""
    m = xt.EmbeddingBag(6, 3, mode=mode, padding_idx=2, dtype=torch.float64)
    idx, offs = torch.tensor(IDX), torch.tensor(OFFS)
    ep = torch.export.export(m, (idx, offs))
    assert any(n.target is torch.ops.xembed.embedding_bag.default for n in ep.graph.nodes)
    buf = io.BytesIO()
    torch.export.save(ep, buf)
    buf.seek(0)
    loaded = torch.export.load(buf)
    other_idx = torch.tensor([5, 5, 0, 1, 2, 3, 4, 2])
    torch.testing.assert_close(loaded.module()(other_idx, offs), m(other_idx, offs))
    with pytest.raises(IndexError, match="out of range"):
        loaded.module()(torch.tensor([0, 6, 1, 1, 1, 1, 1, 1]), offs)


def test_vjp_functions_refuse_a_tangent() -> None:
    """The *_vjp functions compute without autograd: a forward-AD tangent raises rather than being dropped."""
    with fwad.dual_level(), pytest.raises(NotImplementedError, match="forward-AD tangent"):
        xembed.embedding_bag_vjp(torch.tensor([[1, 2]]), _dual(_w().detach(), torch.ones(6, 3, dtype=torch.float64)))
