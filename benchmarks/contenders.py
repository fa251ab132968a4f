"""Contenders of the benchmark suite.

``build(contender, workload, pass_, ctx)`` returns ``(fn, result_getter)`` where ``fn()`` runs the timed
operation once (synchronised on GPU) and returns its result, or ``None`` when the contender does not offer
the pass. Set-up (moving data to the device, the forward of a backward pass) happens outside ``fn``.
"""

from __future__ import annotations

import numpy as np

from .workloads import Workload, bag_structure

BAG_PASSES = ["fwd_sum", "fwd_mean", "fwd_max", "fwd_psw", "bwd_dense", "bwd_sparse"]
LOOKUP_PASSES = ["fwd", "bwd_dense", "bwd_sparse"]

CPU_CONTENDERS = ["torch", "xembed-numba", "xembed-numpy", "xembed-torch", "numpy-take", "prims-numpy",
                  "prims-numpy+argpos", "scipy", "numpy"]
# The primitive mode each xembed contender runs under (``xembed._primitives.use``): `xembed-numpy` is the
# pure-NumPy path (what a user without the `fast` extra gets), `xembed-numba` the compiled one.
XEMBED_MODES = {"xembed-numpy": "native", "xembed-numba": "numba", "xembed-cupy": "native"}
GPU_CONTENDERS = ["torch-cuda", "xembed-cupy", "xembed-torch-cuda", "cupy"]
BASELINE = {"cpu": "torch", "gpu": "torch-cuda"}


def passes_for(w: Workload):
    return LOOKUP_PASSES if w.kind == "lookup" else BAG_PASSES


def _mode(pass_):
    return {"fwd_sum": "sum", "fwd_mean": "mean", "fwd_max": "max", "fwd_psw": "sum"}.get(pass_, "sum")


class Ctx:
    """Per-workload cache of converted arrays (one device copy of the table per backend)."""

    def __init__(self, w: Workload):
        self.w = w
        self.cache = {}

    def get(self, key, make):
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    def drop(self, prefix):
        for k in [k for k in self.cache if k[0] == prefix]:
            del self.cache[k]


# ----------------------------------------------------------------------------------------------------- torch
def _torch_arrays(ctx: Ctx, device: str):
    import torch

    w = ctx.w

    def make():
        W = torch.from_numpy(w.weight) if device == "cpu" else torch.from_numpy(w.weight).to(device)
        inp = torch.from_numpy(w.input).to(device)
        offs = None if w.offsets is None else torch.from_numpy(w.offsets).to(device)
        psw = None if w.psw is None else torch.from_numpy(w.psw).to(device)
        return W, inp, offs, psw

    return ctx.get(("torch", device), make)


def _torch_sync(device):
    if device == "cpu":
        return lambda: None
    import torch

    return torch.cuda.synchronize


def build_torch(w: Workload, pass_: str, ctx: Ctx, device: str, via_xembed: bool):
    import torch
    from torch.nn import functional as tfn

    W, inp, offs, psw = _torch_arrays(ctx, device)
    sync = _torch_sync(device)
    if via_xembed:
        import xembed

        bag_fn, emb_fn = xembed.embedding_bag, xembed.embedding
    else:
        bag_fn, emb_fn = tfn.embedding_bag, tfn.embedding

    def fwd(wx, mode, sparse=False, use_psw=False):
        if w.kind == "lookup":
            return emb_fn(inp, wx, sparse=sparse)
        return bag_fn(inp, wx, offs, mode=mode, sparse=sparse, padding_idx=w.padding_idx,
                      per_sample_weights=psw if use_psw else None)

    if pass_.startswith("fwd"):
        mode = _mode(pass_)
        use_psw = pass_ == "fwd_psw"

        def fn():
            with torch.no_grad():
                r = fwd(W, mode, use_psw=use_psw)
            sync()
            return r

        return fn
    sparse = pass_ == "bwd_sparse"
    Wl = W.detach().requires_grad_(True)  # a leaf sharing the storage
    out = fwd(Wl, "sum", sparse=sparse)
    g = torch.ones_like(out) * 0.5
    sync()

    def fn():
        (gw,) = torch.autograd.grad(out, Wl, g, retain_graph=True)
        sync()
        return gw

    return fn


# ---------------------------------------------------------------------------------------------------- xembed
def build_xembed_array(w: Workload, pass_: str, ctx: Ctx, backend: str, mode: str = "native"):
    from xembed import _primitives as prim

    if mode == "numba" and not prim.numba_available():
        print("  (xembed-numba skipped: numba is not installed; pip install \"xembed[fast]\")")
        return None
    with prim.use(mode):  # the forward of a backward pass runs here, outside the timing
        fn = _build_xembed_array(w, pass_, ctx, backend)

    def in_mode():
        with prim.use(mode):
            return fn()

    return in_mode


def _build_xembed_array(w: Workload, pass_: str, ctx: Ctx, backend: str):
    import xembed

    if backend == "numpy":
        xpmod = np
        sync = lambda: None  # noqa: E731
        arrs = ctx.get(("numpy",), lambda: (w.weight, w.input, w.offsets, w.psw))
    else:
        import cupy as cp

        xpmod = cp
        sync = cp.cuda.Device().synchronize
        arrs = ctx.get(("cupy",), lambda: tuple(None if a is None else cp.asarray(a)
                                                for a in (w.weight, w.input, w.offsets, w.psw)))
    W, inp, offs, psw = arrs

    def kw(mode, sparse=False, use_psw=False):
        if w.kind == "lookup":
            return {"sparse": sparse}
        return {"offsets": offs, "mode": mode, "sparse": sparse, "padding_idx": w.padding_idx,
                "per_sample_weights": psw if use_psw else None}

    if pass_.startswith("fwd"):
        mode = _mode(pass_)
        use_psw = pass_ == "fwd_psw"
        f = xembed.embedding if w.kind == "lookup" else xembed.embedding_bag

        def fn():
            r = f(inp, W, **kw(mode, use_psw=use_psw))
            sync()
            return r

        return fn
    sparse = pass_ == "bwd_sparse"
    if w.kind == "lookup":
        out, pb = xembed.embedding_vjp(inp, W, **kw("sum", sparse))
    else:
        out, pb = xembed.embedding_bag_vjp(inp, W, **kw("sum", sparse))
    g = xpmod.full(out.shape, 0.5, dtype=out.dtype)
    sync()

    def fn():
        r = pb(g)
        r = r[0] if isinstance(r, tuple) else r
        sync()
        return r

    return fn


# ------------------------------------------------------------------------------------------------- baselines
def compacted_bags(w: Workload, idx, offs, valid):
    """Padding compacted out of a bag structure, as a NumPy user would: (idx, offsets, psw)."""
    if valid is None:
        return idx, offs, w.psw
    cv = np.concatenate([[0], np.cumsum(valid)])
    return idx[valid], cv[offs], w.psw.reshape(-1)[valid]


def build_numpy(w: Workload, pass_: str, ctx: Ctx):
    """Plain NumPy: take + np.add.reduceat (forward), np.add.at (dense backward)."""
    W = w.weight
    idx, offs, valid = ctx.get(("np_struct",), lambda: bag_structure(w))
    if w.kind == "lookup":
        flat = w.input.reshape(-1)
        if pass_ == "fwd":
            return lambda: W.take(flat, axis=0).reshape((*w.input.shape, w.D))
        g = np.full((flat.shape[0], w.D), 0.5, W.dtype)
        if pass_ == "bwd_dense":
            def fn():
                gw = np.zeros_like(W)
                np.add.at(gw, flat, g)
                return gw
            return fn
        return lambda: (flat.copy(), g.copy())  # the COO gradient: indices + per-position rows
    # bags: compact padding out first (what a NumPy user would write)
    cidx, coffs, psw = compacted_bags(w, idx, offs, valid)
    B = offs.shape[0] - 1
    lens = np.diff(coffs)
    starts = coffs[:-1]
    nonempty = lens > 0
    seg = np.repeat(np.arange(B), lens)
    if pass_.startswith("fwd"):
        mode = _mode(pass_)
        use_psw = pass_ == "fwd_psw"

        def fn():
            rows = W.take(cidx, axis=0)
            if use_psw:
                rows *= psw[:, None]
            out = np.zeros((B, w.D), W.dtype)
            ufunc = np.maximum if mode == "max" else np.add
            out[nonempty] = ufunc.reduceat(rows, starts[nonempty], axis=0)
            if mode == "mean":
                out /= np.maximum(lens, 1)[:, None]
            return out

        return fn
    g = np.full((B, w.D), 0.5, W.dtype)
    if pass_ == "bwd_dense":
        def fn():
            gw = np.zeros_like(W)
            np.add.at(gw, cidx, g[seg])
            return gw
        return fn
    return lambda: (cidx.copy(), g[seg])


def build_scipy(w: Workload, pass_: str, ctx: Ctx):
    """scipy.sparse CSR (bags x V) @ W (forward sum / mean / psw) and CSR.T @ G (dense backward)."""
    if w.kind == "lookup" or pass_ in ("fwd_max", "bwd_sparse"):
        return None
    import scipy.sparse as sp

    W = w.weight
    idx, offs, valid = ctx.get(("np_struct",), lambda: bag_structure(w))
    cidx, coffs, psw = compacted_bags(w, idx, offs, valid)
    B = offs.shape[0] - 1
    lens = np.diff(coffs)
    mode = _mode(pass_)

    def data():
        if pass_ == "fwd_psw":
            return psw
        if mode == "mean" and pass_ == "fwd_mean":
            return np.repeat((1.0 / np.maximum(lens, 1)).astype(W.dtype), lens)
        return np.ones(cidx.shape[0], W.dtype)

    d = data()
    if pass_.startswith("fwd"):
        return lambda: sp.csr_matrix((d, cidx, coffs), shape=(B, w.V)) @ W
    g = np.full((B, w.D), 0.5, W.dtype)
    return lambda: sp.csr_matrix((d, cidx, coffs), shape=(B, w.V)).T @ g


def build_cupy(w: Workload, pass_: str, ctx: Ctx):
    """Plain CuPy: take + cupyx.scatter_add / scatter_max."""
    import cupy as cp
    import cupyx

    sync = cp.cuda.Device().synchronize
    W = ctx.get(("cupy",), lambda: tuple(None if a is None else cp.asarray(a)
                                         for a in (w.weight, w.input, w.offsets, w.psw)))[0]

    def make_struct():
        idx, offs, valid = bag_structure(w)
        cidx, coffs, psw = compacted_bags(w, idx, offs, valid)
        lens = np.diff(coffs)
        seg = np.repeat(np.arange(lens.shape[0]), lens)
        return cp.asarray(cidx), cp.asarray(seg), cp.asarray(lens), (None if psw is None else cp.asarray(psw))

    if w.kind == "lookup":
        flat = ctx.get(("cupy_flat",), lambda: cp.asarray(w.input.reshape(-1)))
        if pass_ == "fwd":
            def fn():
                r = W.take(flat, axis=0)
                sync()
                return r
            return fn
        g = cp.full((flat.shape[0], w.D), 0.5, W.dtype)
        if pass_ == "bwd_dense":
            def fn():
                gw = cp.zeros_like(W)
                cupyx.scatter_add(gw, flat, g)
                sync()
                return gw
            return fn
        def fn():
            r = (flat.copy(), g.copy())
            sync()
            return r
        return fn
    cidx, seg, lens, psw = ctx.get(("cupy_struct",), make_struct)
    B = int(lens.shape[0])
    if pass_.startswith("fwd"):
        mode = _mode(pass_)
        use_psw = pass_ == "fwd_psw"

        def fn():
            rows = W.take(cidx, axis=0)
            if use_psw:
                rows *= psw[:, None]
            if mode == "max":
                out = cp.full((B, w.D), -cp.inf, W.dtype)
                cupyx.scatter_max(out, seg, rows)
                out[lens == 0] = 0
            else:
                out = cp.zeros((B, w.D), W.dtype)
                cupyx.scatter_add(out, seg, rows)
                if mode == "mean":
                    out /= cp.maximum(lens, 1)[:, None].astype(W.dtype)
            sync()
            return out

        return fn
    g = cp.full((B, w.D), 0.5, W.dtype)
    if pass_ == "bwd_dense":
        def fn():
            gw = cp.zeros_like(W)
            cupyx.scatter_add(gw, cidx, g[seg])
            sync()
            return gw
        return fn

    def fn():
        r = (cidx.copy(), g[seg])
        sync()
        return r

    return fn


def _numpy_fast():
    try:
        from xembed._primitives import _numpy_fast as nf
    except ImportError:
        import importlib.util
        import pathlib

        p = pathlib.Path(__file__).resolve().parents[1] / "src/xembed/_primitives/_numpy_fast.py"
        spec = importlib.util.spec_from_file_location("_numpy_fast", p)
        nf = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(nf)
    return nf


def build_prims(w: Workload, pass_: str, ctx: Ctx, need_argpos: bool = False):
    """The fast NumPy primitives called directly (what xembed-numpy runs once they are wired in).

    Padding is compacted out first (as the core does); mean divides the sum by the bag sizes.
    """
    nf = _numpy_fast()
    W = w.weight
    if w.kind == "lookup":
        flat = w.input.reshape(-1)
        if pass_ == "fwd":
            return lambda: W.take(flat, axis=0).reshape((*w.input.shape, w.D))
        if pass_ == "bwd_dense":
            g = np.full((flat.shape[0], w.D), 0.5, W.dtype)
            return lambda: nf.scatter_add_rows(flat, g, w.V)
        return None
    idx, offs, valid = ctx.get(("np_struct",), lambda: bag_structure(w))
    psw = None if w.psw is None else w.psw.reshape(-1)

    def compact():
        if valid is None:
            return idx, offs, psw
        cv = np.zeros(idx.shape[0] + 1, np.int64)
        np.cumsum(valid, out=cv[1:])
        return idx[valid], cv[offs], (None if psw is None else psw[valid])

    B = offs.shape[0] - 1
    if pass_.startswith("fwd"):
        mode = _mode(pass_)
        use_psw = pass_ == "fwd_psw"

        def fn():
            ci, co, cp_ = compact()
            if mode == "max":
                # forward only: what xembed.embedding_bag (no vjp) needs; the vjp path also needs argpos
                return nf.gather_segment_max(W, ci, co, need_argpos=need_argpos)[0]
            out = nf.gather_segment_sum(W, ci, co, cp_ if use_psw else None, W.dtype)
            if mode == "mean":
                out /= np.maximum(np.diff(co), 1)[:, None].astype(W.dtype)
            return out

        return fn
    if pass_ == "bwd_dense":
        g = np.full((B, w.D), 0.5, W.dtype)

        def fn():
            ci, co, _ = compact()
            seg = np.repeat(np.arange(B), np.diff(co))
            return nf.gather_scatter_add(g, seg, ci, None, w.V)

        return fn
    return None


def build_take_floor(w: Workload, pass_: str, ctx: Ctx):
    """The NumPy floor of a forward: ``np.take`` of the rows the call reads (non-padding), nothing else."""
    if not pass_.startswith("fwd"):
        return None
    idx, _, valid = ctx.get(("np_struct",), lambda: bag_structure(w))
    rows = idx if valid is None else idx[valid]
    W = w.weight
    # a 1-tuple: the gathered rows are not the call's result, so the suite does not compare them
    return lambda: (W.take(rows, axis=0),)


def build(contender: str, w: Workload, pass_: str, ctx: Ctx):
    if contender == "prims-numpy":
        return build_prims(w, pass_, ctx)
    if contender == "prims-numpy+argpos":
        # max forward that also returns the arg positions (what the vjp path needs)
        return build_prims(w, pass_, ctx, need_argpos=True) if pass_ == "fwd_max" else None
    if contender == "torch":
        return build_torch(w, pass_, ctx, "cpu", via_xembed=False)
    if contender == "xembed-torch":
        return build_torch(w, pass_, ctx, "cpu", via_xembed=True)
    if contender == "torch-cuda":
        return build_torch(w, pass_, ctx, "cuda", via_xembed=False)
    if contender == "xembed-torch-cuda":
        return build_torch(w, pass_, ctx, "cuda", via_xembed=True)
    if contender in ("xembed-numpy", "xembed-numba"):
        return build_xembed_array(w, pass_, ctx, "numpy", XEMBED_MODES[contender])
    if contender == "xembed-cupy":
        return build_xembed_array(w, pass_, ctx, "cupy")
    if contender == "numpy-take":
        return build_take_floor(w, pass_, ctx)
    if contender == "numpy":
        return build_numpy(w, pass_, ctx)
    if contender == "scipy":
        return build_scipy(w, pass_, ctx)
    if contender == "cupy":
        return build_cupy(w, pass_, ctx)
    msg = f"unknown contender {contender!r}"
    raise ValueError(msg)


def to_numpy(r):
    """Best-effort conversion of a contender's result to a dense NumPy array (None when not comparable)."""
    if isinstance(r, tuple):
        return None  # a COO pair from a baseline
    mod = type(r).__module__
    if mod.startswith("torch"):
        if r.is_sparse:
            return None
        return r.detach().cpu().numpy()
    if mod.startswith("cupy"):
        return r.get()
    if hasattr(r, "to_dense") and not isinstance(r, np.ndarray):
        return None  # xembed.SparseGrad: not compared (layout checked by the test-suite)
    return np.asarray(r)
