"""The oracle: torch.nn.functional on CPU in float64, plus a pure-NumPy float64 reference of
SPEC.md's gradient formulas.

torch ≤ 2.13 on CPU computes a wrong ``scale_grad_by_freq`` gradient for ``embedding_bag``
(pytorch/pytorch#190063).  With such a torch the oracle uses the NumPy formula for that
gradient instead, so the oracle's bug never turns into a verdict.
"""

from __future__ import annotations

import numpy as np

from xembed_conformance.cases import Case, bag_ranges


def _torch():
    import torch

    return torch


def torch_version_tuple():
    v = _torch().__version__.split("+")[0].split(".")
    return tuple(int("".join(c for c in p if c.isdigit()) or 0) for p in v[:2])


def bag_sgbf_grad_bug() -> bool:
    """True when the installed torch has the CPU embedding_bag scale_grad_by_freq bug."""
    return torch_version_tuple() < (2, 14)


def _t(values, dtype):
    torch = _torch()
    return torch.tensor(np.array(values, copy=True)).to(getattr(torch, dtype))


def oracle_args(case: Case, weight=None, *, max_norm=True, sparse=None, exact_dtypes=False):
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
            kw["per_sample_weights"] = _t(case.psw, case.pdtype if exact_dtypes else "float64")
    return [inp, w], kw


def oracle_forward(case: Case, weight=None, *, max_norm=True):
    """Output and weight after the call (both float64 NumPy)."""
    import torch.nn.functional as F

    args, kw = oracle_args(case, weight, max_norm=max_norm)
    out = getattr(F, case.fn)(*args, **kw)
    return out.numpy(), args[1].numpy()


def oracle_raises(case: Case):
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


def oracle_grads(case: Case, weight):
    """Dense weight gradient and psw gradient (float64 NumPy) for grad_out, computed on
    `weight` (the renormed weight as the target left it) without max_norm, as SPEC says:
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
        gp = psw.grad.numpy() if psw.grad is not None else np.zeros(case.psw.shape)
    return gw.numpy(), gp


def normalized_padding(case: Case):
    p = case.kwargs.get("padding_idx")
    if p is None:
        return None
    return p + case.weight.shape[0] if p < 0 else p


def numpy_grads(case: Case, weight, grad_out=None, psw=None):
    """SPEC.md's gradient formulas in float64 NumPy.

    Returns (dense grad_weight, grad_psw or None, sparse indices, sparse values); the sparse
    layout is torch's uncoalesced COO gradient: one entry per non-padding position, input order.
    """
    W = np.asarray(weight, dtype=np.float64)
    g = np.asarray(case.grad_out if grad_out is None else grad_out, dtype=np.float64)
    pw = case.psw if psw is None else psw
    N, D = W.shape
    flat = case.input.reshape(-1).astype(np.int64)
    pad = normalized_padding(case)
    sgbf = case.kwargs.get("scale_grad_by_freq", False)
    counts = np.bincount(flat, minlength=N) if flat.size else np.zeros(N, np.int64)
    gw = np.zeros((N, D))
    sp_idx: list[int] = []
    sp_val: list[np.ndarray] = []
    gp = None
    if case.fn == "embedding":
        gflat = g.reshape(-1, D)
        for i, idx in enumerate(flat):
            if idx == pad:
                continue
            row = gflat[i] / (counts[idx] if sgbf else 1.0)
            gw[idx] += row
            sp_idx.append(int(idx))
            sp_val.append(row)
    else:
        mode = case.kwargs.get("mode", "mean")
        pflat = None if pw is None else np.asarray(pw, np.float64).reshape(-1)
        if pflat is not None:
            gp = np.zeros(flat.size)
        for b, r in enumerate(bag_ranges(case)):
            members = [i for i in r if flat[i] != pad]
            if mode == "max":
                for dd in range(D):
                    best = None
                    for i in members:
                        if best is None or W[flat[i], dd] > W[flat[best], dd]:
                            best = i
                    if best is not None:
                        gw[flat[best], dd] += g[b, dd]
                continue
            n = max(len(members), 1)
            for i in members:
                idx = flat[i]
                scale = 1.0
                if pflat is not None:
                    scale *= pflat[i]
                    gp[i] = float(np.dot(g[b], W[idx]))
                if sgbf:
                    scale /= counts[idx]
                if mode == "mean":
                    scale /= n
                row = g[b] * scale
                gw[idx] += row
                sp_idx.append(int(idx))
                sp_val.append(row)
        if gp is not None:
            gp = gp.reshape(case.psw.shape)
    values = np.stack(sp_val) if sp_val else np.zeros((0, D))
    return gw, gp, np.asarray(sp_idx, np.int64), values
