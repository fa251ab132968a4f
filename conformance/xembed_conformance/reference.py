"""The oracle: torch.nn.functional on CPU in float64, plus a pure-NumPy float64 reference of
this spec's gradient formulas (docs/spec.md).

torch ≤ 2.13 on CPU computes a wrong ``scale_grad_by_freq`` gradient for ``embedding_bag``
(pytorch/pytorch#190063; REF-TORCH-213-SGBF).  With such a torch the oracle uses the NumPy formula for that
gradient instead, so the oracle's bug never turns into a verdict.
"""

from __future__ import annotations

# ruff: noqa: N812  # torch.nn.functional as F, as torch writes it
from collections.abc import Callable
from typing import Any

import numpy as np

from xembed_conformance.cases import Case, NDArray, bag_bounds, bag_of_position, bag_ranges, normalized_padding, p_norm


def _torch() -> Any:
    import torch

    return torch


def torch_version_tuple() -> tuple[int, ...]:
    v = _torch().__version__.split("+")[0].split(".")
    return tuple(int("".join(c for c in p if c.isdigit()) or 0) for p in v[:2])


def bag_sgbf_grad_bug() -> bool:
    """True when the installed torch has the CPU embedding_bag scale_grad_by_freq bug."""
    return torch_version_tuple() < (2, 14)


def _t(values: Any, dtype: str) -> Any:
    torch = _torch()
    return torch.tensor(np.array(values, copy=True)).to(getattr(torch, dtype))


def oracle_args(case: Case, weight: NDArray | None = None, *, max_norm: bool = True, sparse: bool | None = None,
                exact_dtypes: bool = False) -> tuple[list[Any], dict[str, Any]]:
    """(args, kwargs) for torch.nn.functional, float64 CPU (indices keep their int dtype)."""
    w = _t(case.weight if weight is None else weight, case.wdtype if exact_dtypes else "float64")
    inp = _t(case.input, case.idtype)
    kw = dict(case.kwargs)
    if not max_norm:
        kw.pop("max_norm", None)
        kw.pop("norm_type", None)
    if sparse is not None:
        kw["sparse"] = sparse
        if sparse:
            kw.pop("scale_grad_by_freq", None)
    if case.fn == "embedding_bag":
        if case.offsets is not None:
            kw["offsets"] = _t(case.offsets, case.odtype)
        if case.psw is not None:
            kw["per_sample_weights"] = _t(case.psw, (case.pdtype or case.wdtype) if exact_dtypes else "float64")
    return [inp, w], kw


def oracle_forward(case: Case, weight: NDArray | None = None, *, max_norm: bool = True) -> tuple[NDArray, NDArray]:
    """Output and weight after the call (both float64 NumPy)."""
    import torch.nn.functional as F

    args, kw = oracle_args(case, weight, max_norm=max_norm)
    out = getattr(F, case.fn)(*args, **kw)
    return out.numpy(), args[1].numpy()


def oracle_raises(case: Case) -> tuple[Exception | None, NDArray]:
    """Run the oracle on an invalid case: (exception or None, weight after as NumPy)."""
    import torch.nn.functional as F

    args, kw = oracle_args(case, exact_dtypes=True)
    exc = None
    try:
        out = getattr(F, case.fn)(*args, **kw)
    except Exception as e:  # noqa: BLE001 - we classify the oracle's exception
        exc = e
    else:
        # torch raises some errors only at backward time (sparse + scale_grad_by_freq)
        if args[1].dtype.is_floating_point and out.numel():
            try:
                w = args[1].detach().clone().requires_grad_(True)
                getattr(F, case.fn)(args[0], w, **kw).sum().backward()
            except Exception as e:  # noqa: BLE001
                exc = e
    w = args[1].detach()
    return exc, w.to(_torch().float64).numpy() if w.dtype.is_floating_point else w.numpy()


def oracle_grads(case: Case, weight: NDArray) -> tuple[NDArray, NDArray | None]:
    """Dense weight gradient and psw gradient (float64 NumPy) for grad_out, computed on
    `weight` (the renormed weight as the target left it) without max_norm, as RENORM-GRAD says:
    the gradient is the plain lookup gradient as if the renormed weight were the leaf."""
    import torch.nn.functional as F

    if case.fn == "embedding_bag" and case.kwargs.get("scale_grad_by_freq") and bag_sgbf_grad_bug():
        gw, gp, _, _ = numpy_grads(case, weight)
        return gw, gp
    args, kw = oracle_args(case, weight, max_norm=False, sparse=False)
    w = args[1].requires_grad_(True)
    psw = kw.get("per_sample_weights")
    if psw is not None:
        psw.requires_grad_(True)
    out = getattr(F, case.fn)(*args, **kw)
    out.backward(_t(case.grad_out, "float64"))
    gw = w.grad.to_dense() if w.grad is not None else _torch().zeros_like(w)
    gp = None
    if psw is not None:
        gp = psw.grad.numpy() if psw.grad is not None else np.zeros(np.shape(np.asarray(case.psw)))
    return gw.numpy(), gp


def numpy_grads(case: Case, weight: NDArray, grad_out: NDArray | None = None,
                psw: NDArray | None = None) -> tuple[NDArray, NDArray | None, NDArray, NDArray]:
    """This spec's gradient formulas (GRAD-EMB, GRAD-PAD, GRAD-SGBF, GRAD-BAG, GRAD-MAX, GRAD-PSW,
    GRAD-SPARSE) in float64 NumPy, vectorized.

    Returns (dense grad_weight, grad_psw or None, sparse indices, sparse values); the sparse
    layout is torch's uncoalesced COO gradient: one entry per non-padding position, input order.
    """
    W = np.asarray(weight, dtype=np.float64)
    g = np.asarray(case.grad_out if grad_out is None else grad_out, dtype=np.float64)
    pw = case.psw if psw is None else psw
    N, D = W.shape
    flat = case.input.reshape(-1).astype(np.int64)
    pad = normalized_padding(case)
    keep = flat != pad if pad is not None else np.ones(flat.size, bool)
    sgbf = case.kwargs.get("scale_grad_by_freq", False)
    counts = np.bincount(flat, minlength=N).astype(np.float64) if flat.size else np.ones(N)
    gw = np.zeros((N, D))
    gp = None
    if case.fn == "embedding":
        rows = g.reshape(-1, D) / (counts[flat][:, None] if sgbf else 1.0)
    else:
        mode = case.kwargs.get("mode", "mean")
        bag = bag_of_position(case)
        keep &= bag >= 0
        if mode == "max":
            for b, r in enumerate(bag_ranges(case)):
                members = np.arange(r.start, r.stop)[keep[r.start:r.stop]]
                if members.size:
                    V = W[flat[members]]
                    # strict '>' scan in input order: ties and a leading NaN stay with the first (BAG-MAX-TIES, -NAN)
                    best = members[np.where(np.isnan(V[0]), 0, np.argmax(np.where(np.isnan(V), -np.inf, V), axis=0))]
                    np.add.at(gw, (flat[best], np.arange(D)), g[b])
            return gw, None, np.zeros(0, np.int64), np.zeros((0, D))
        scale = np.ones(flat.size)
        if pw is not None:
            pflat = np.asarray(pw, np.float64).reshape(-1)
            scale = scale * pflat
            gpf = np.where(keep, np.einsum("ij,ij->i", g[np.maximum(bag, 0)], W[flat]), 0.0) if flat.size \
                else np.zeros(0)
            gp = gpf.reshape(np.shape(pw))
        if sgbf:
            scale = scale / counts[flat]
        if mode == "mean":
            nb = np.bincount(bag[keep], minlength=g.shape[0]).astype(np.float64)
            scale = scale / np.maximum(nb[np.maximum(bag, 0)], 1.0)
        rows = g[np.maximum(bag, 0)] * scale[:, None] if flat.size else np.zeros((0, D))
    np.add.at(gw, flat[keep], rows[keep])
    return gw, gp, flat[keep], rows[keep]


def round_to(values: NDArray, dtype: str) -> NDArray:
    """`values` rounded to `dtype` (round to nearest even, as torch's casts), back in float64."""
    return _t(np.asarray(values, np.float64), "float64").to(getattr(_torch(), dtype)).double().numpy()


def numpy_renorm(case: Case) -> NDArray:
    """RENORM-*: the weight after max_norm's renorm, float64 (for extension rows, where torch cannot run)."""
    W = np.array(case.weight, dtype=np.float64)
    max_norm = case.kwargs.get("max_norm")
    if max_norm is None:
        return W
    p = float(case.kwargs.get("norm_type", 2.0))
    used = np.unique(case.input.reshape(-1))
    norms = p_norm(W[used], p)
    big = norms > max_norm
    W[used[big]] *= (max_norm / (norms[big] + 1e-7))[:, None]
    return W


def bag_reduce(case: Case, weight: NDArray, reduce: Callable[[NDArray, NDArray], NDArray]) -> NDArray:
    """(B, D) float64: ``reduce(rows, positions)`` per bag over its non-padding entries, for extension
    references (`rows`: the bag's weight rows, `positions`: their flattened input positions)."""
    W = np.asarray(weight, np.float64)
    flat = case.input.reshape(-1)
    pad = normalized_padding(case)
    out = np.zeros((len(bag_ranges(case)), W.shape[1]))
    for b, r in enumerate(bag_ranges(case)):
        pos = np.arange(r.start, r.stop)
        if pad is not None:
            pos = pos[flat[pos] != pad]
        out[b] = reduce(W[flat[pos]], pos)
    return out


def ext_bounds(case: Case) -> tuple[NDArray, NDArray]:
    """(starts, ends) of the bags of a valid embedding_bag case, `lengths=` (EXT-LENGTHS) included."""
    lengths = case.kwargs.get("lengths")
    if lengths is None:
        return bag_bounds(case)
    ends = np.cumsum(np.asarray(lengths, np.int64).reshape(-1))
    return ends - np.asarray(lengths, np.int64).reshape(-1), ends


def ext_bag(case: Case, weight: NDArray, grad_out: NDArray | None = None, *,
            magnitude: bool = False) -> tuple[NDArray, NDArray, NDArray, NDArray, NDArray | None]:
    """Float64 reference of the extension rules (EXT-SQRTN*, EXT-WMEAN*, EXT-MIN*, EXT-PAD, EXT-SGBF,
    EXT-SPARSE, EXT-LENGTHS) and of torch's sum / mean / max (for `lengths=` cases), gradients included.

    `weight`: already renormed (EXT-RENORM).  Returns (output, dense grad_weight, sparse indices, sparse values
    (one entry per non-padding position, input order), grad_per_sample_weights or None); the gradients are
    zeros when the case has no grad_out.  `magnitude=True`: the same computation on absolute values with every
    difference turned into a sum and the divisor's rounding error folded in (the scale of the tolerance).
    """
    mode = case.mode
    W = np.asarray(weight, np.float64)
    N, D = W.shape
    flat = case.input.reshape(-1).astype(np.int64)
    n = flat.size
    starts, ends = ext_bounds(case)
    B = starts.size
    g = np.zeros((B, D)) if (case.grad_out if grad_out is None else grad_out) is None \
        else np.asarray(case.grad_out if grad_out is None else grad_out, np.float64).reshape(B, D)
    has_psw = case.psw is not None
    w = np.asarray(case.psw, np.float64).reshape(-1) if has_psw else np.ones(n)
    pad = normalized_padding(case)
    bag = np.repeat(np.arange(B), ends - starts)
    keep = np.ones(n, bool) if pad is None else flat != pad
    if case.kwargs.get("scale_grad_by_freq"):
        s: NDArray = 1.0 / np.bincount(flat, minlength=N)[flat] if n else np.ones(0)
    else:
        s = np.ones(n)
    if magnitude:  # min / max: the selected entries themselves, in absolute value
        W, g = (W if mode in ("min", "max") else np.abs(W)), np.abs(g)
    out = np.zeros((B, D))
    d_rows = np.zeros((n, D))
    g_psw = np.zeros(n)
    if mode in ("min", "max"):
        sign = 1.0 if mode == "min" else -1.0
        for b in range(B):
            P = np.arange(starts[b], ends[b])[keep[starts[b]:ends[b]]]
            if not P.size:
                continue
            R = sign * W[flat[P]]
            # strict '<' scan in input order: ties and a leading NaN stay with the first (EXT-MIN-TIES, -NAN)
            k = np.where(np.isnan(R[0]), 0, np.argmin(np.where(np.isnan(R), np.inf, R), axis=0))
            out[b] = sign * R[k, np.arange(D)]
            np.add.at(d_rows, (P[k], np.arange(D)), g[b])
        if magnitude:
            out = np.abs(out)
    else:
        wk = np.where(keep, w, 0.0)
        if mode == "sum":
            S: NDArray = np.ones(B)
        elif mode == "mean":
            S = np.bincount(bag, wk, minlength=B) if has_psw else np.bincount(bag[keep], minlength=B).astype(float)
        elif mode == "sqrtn":
            S = np.sqrt(np.bincount(bag, wk * wk, minlength=B))
        else:
            msg = f"ext_bag: no reference for mode {mode!r}"
            raise ValueError(msg)
        zero = S == 0  # EXT-SQRTN-ZERO / EXT-WMEAN-ZERO / BAG-EMPTY
        Sp = np.where(zero, 1.0, np.abs(S) if magnitude else S)
        # the rounding of a weighted mean's divisor (Σ w_i, may cancel) amplifies the error by Σ|w_i| / |S|
        amp = np.ones(B)
        if magnitude and mode == "mean" and has_psw:
            amp = 1.0 + np.bincount(bag, np.abs(wk), minlength=B) / Sp
        wabs = np.abs(wk) if magnitude else wk
        live = keep & ~zero[bag] if n else keep
        coef = np.where(live, wabs / Sp[bag] if n else wabs, 0.0)
        np.add.at(out, bag[live], coef[live, None] * W[flat[live]])
        out = out * amp[:, None]
        d_rows = coef[:, None] * g[bag] * (amp[bag, None] if n else 1.0)
        if has_psw and n:
            dots = np.einsum("ij,ij->i", W[flat], g[bag])
            o = np.einsum("ij,ij->i", out[bag], g[bag])
            if mode == "sum":
                g_psw = dots
            elif mode == "mean":
                g_psw = (dots + o if magnitude else dots - o) / Sp[bag] * amp[bag]
            else:  # sqrtn
                g_psw = (dots + coef * o if magnitude else dots - coef * o) / Sp[bag]
            g_psw = np.where(live, g_psw, 0.0)
    gw = np.zeros((N, D))
    np.add.at(gw, flat[keep], d_rows[keep] * s[keep, None])
    gp = g_psw.reshape(np.shape(np.asarray(case.psw))) if has_psw else None
    return out, gw, flat[keep], d_rows[keep] * s[keep, None], gp
