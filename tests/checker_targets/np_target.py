# mypy: disable-error-code="no-untyped-call, no-untyped-def"
# (deliberately torch.nn.functional-shaped, untyped targets: the checker must cope with any signature style)
"""A small, independent pure-NumPy target (loops, float64 accumulation) with the vjp protocol.

Used to show the checker works on code that is neither torch nor xembed, through
``embedding_vjp`` / ``embedding_bag_vjp``.  `no_grad` is the same target without the vjp
functions (its gradient checks must be reported "skip"); `sparse_coalesced` returns a coalesced
sparse gradient (must be reported failing).
"""

# ruff: noqa: ARG001, EM101, EM102  # torch.nn.functional's signatures; error messages built inline like torch's

from __future__ import annotations

import types

import numpy as np


class SparseGrad:
    def __init__(self, indices, values, shape):
        self.indices, self.values, self.shape = indices, values, shape

    def to_dense(self):
        out = np.zeros(self.shape, self.values.dtype)
        np.add.at(out, self.indices, self.values)
        return out


_INT = (np.int32, np.int64)


def _check_index(x, name):
    if not isinstance(x, np.ndarray) or x.dtype.type not in _INT:
        raise TypeError(f"`{name}` must be an int32/int64 array")


def _prep(input, weight, padding_idx, max_norm, norm_type):
    _check_index(input, "input")
    if not isinstance(weight, np.ndarray) or weight.ndim != 2 or weight.dtype.kind != "f":
        raise ValueError("`weight` must be a 2-D floating array")
    N = weight.shape[0]
    if input.size and (input.min() < 0 or input.max() >= N):
        raise IndexError(f"`input` holds an index out of range [0, {N})")
    if padding_idx is not None:
        if not -N <= padding_idx < N:
            raise ValueError(f"`padding_idx` {padding_idx} out of range")
        padding_idx = padding_idx % N
    return padding_idx


def _renorm(weight, input, max_norm, norm_type):
    if max_norm is None:
        return
    for r in np.unique(input):
        row = weight[r].astype(np.float64)
        n = np.abs(row).max() if norm_type == np.inf else (np.abs(row) ** norm_type).sum() ** (1 / norm_type)
        if n > max_norm:
            weight[r] = row * weight.dtype.type(max_norm / (n + 1e-7))


def embedding_vjp(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
                  sparse=False):
    pad = _prep(input, weight, padding_idx, max_norm, norm_type)
    if sparse and scale_grad_by_freq:
        raise ValueError("`sparse` with `scale_grad_by_freq` is not supported")
    _renorm(weight, input, max_norm, norm_type)
    out = weight[input]
    flat = input.reshape(-1).astype(np.int64)
    counts = np.bincount(flat, minlength=weight.shape[0])

    def pullback(g):
        g = g.reshape(-1, weight.shape[1]).astype(np.float64)
        keep = flat != pad if pad is not None else np.ones(flat.shape, bool)
        scale = 1.0 / counts[flat] if scale_grad_by_freq else np.ones(flat.shape)
        vals = (g * scale[:, None])[keep]
        if sparse:
            return SparseGrad(flat[keep], vals.astype(weight.dtype), weight.shape)
        gw = np.zeros(weight.shape)
        np.add.at(gw, flat[keep], vals)
        return gw.astype(weight.dtype)

    return out, pullback


def embedding(input, weight, *args, **kwargs):
    return embedding_vjp(input, weight, *args, **kwargs)[0]


def _bags(input, offsets, include_last_offset):
    if input.ndim == 2:
        if offsets is not None:
            raise ValueError("`offsets` must be None for a 2-D `input`")
        B, L = input.shape
        return input.reshape(-1), [(b * L, (b + 1) * L) for b in range(B)]
    if input.ndim != 1:
        raise ValueError("`input` must be 1-D or 2-D")
    if offsets is None:
        raise ValueError("`offsets` is required for a 1-D `input`")
    _check_index(offsets, "offsets")
    if offsets.ndim != 1:
        raise ValueError("`offsets` must be 1-D")
    off = offsets.astype(np.int64).tolist()
    n = input.shape[0]
    if include_last_offset:
        if not off or off[-1] != n:
            raise ValueError("`offsets`: with include_last_offset, offsets[-1] must equal len(input)")
        ends, off = off[1:], off[:-1]
    else:
        ends = [*off[1:], n]
    if off and off[0] != 0:
        raise ValueError("`offsets`[0] must be 0")
    if any(e < s for s, e in zip(off, ends, strict=False)) or any(e > n for e in ends):
        raise ValueError("`offsets` must be non-decreasing and <= len(input)")
    return input, list(zip(off, ends, strict=False))


def embedding_bag_vjp(input, weight, offsets=None, max_norm=None, norm_type=2, scale_grad_by_freq=False,
                      mode="mean", sparse=False, per_sample_weights=None, include_last_offset=False,
                      padding_idx=None):
    if mode not in ("sum", "mean", "max"):
        raise ValueError(f"`mode` {mode!r}")
    if mode == "max" and (sparse or scale_grad_by_freq):
        raise ValueError("`mode`='max' supports neither sparse nor scale_grad_by_freq")
    if sparse and scale_grad_by_freq:
        raise ValueError("`sparse` with `scale_grad_by_freq` is not supported")
    if not isinstance(weight, np.ndarray) or weight.ndim != 2:
        raise ValueError("`weight` must be 2-D")
    pad = _prep(input, weight, padding_idx, max_norm, norm_type)
    flat, bags = _bags(input, offsets, include_last_offset)
    psw = None
    if per_sample_weights is not None:
        if per_sample_weights.shape != input.shape:
            raise ValueError("`per_sample_weights` shape must equal `input`'s")
        if per_sample_weights.dtype != weight.dtype:
            raise TypeError("`per_sample_weights` dtype must equal `weight`'s")
        if mode != "sum":
            raise NotImplementedError("`per_sample_weights` only with mode='sum'")
        psw = per_sample_weights.reshape(-1).astype(np.float64)
    _renorm(weight, flat, max_norm, norm_type)
    flat = flat.astype(np.int64)
    W = weight.astype(np.float64)
    D = weight.shape[1]
    counts = np.bincount(flat, minlength=weight.shape[0])
    out = np.zeros((len(bags), D))
    arg = {}
    for b, (s, e) in enumerate(bags):
        members = [i for i in range(s, e) if flat[i] != pad]
        if not members:
            continue
        if mode == "max":
            for d in range(D):
                best = members[0]
                for i in members[1:]:
                    if W[flat[i], d] > W[flat[best], d]:
                        best = i
                out[b, d] = W[flat[best], d]
                arg[b, d] = best
        else:
            rows = W[flat[members]] * (psw[members, None] if psw is not None else 1.0)
            out[b] = rows.sum(0)
            if mode == "mean":
                out[b] = np.float64(out[b].astype(weight.dtype)) / len(members)

    def pullback(g):
        g = g.astype(np.float64)
        gw = np.zeros(weight.shape)
        gp = None if psw is None else np.zeros(flat.shape)
        idx, vals = [], []
        for b, (s, e) in enumerate(bags):
            members = [i for i in range(s, e) if flat[i] != pad]
            if mode == "max":
                for d in range(D):
                    if (b, d) in arg:
                        gw[flat[arg[b, d]], d] += g[b, d]
                continue
            for i in members:
                sc = (psw[i] if psw is not None else 1.0) / (counts[flat[i]] if scale_grad_by_freq else 1.0)
                if mode == "mean":
                    sc /= len(members)
                gw[flat[i]] += g[b] * sc
                idx.append(flat[i])
                vals.append(g[b] * sc)
                if gp is not None:
                    gp[i] = g[b] @ W[flat[i]]
        gp = None if gp is None else gp.reshape(input.shape).astype(weight.dtype)
        if sparse:
            v = np.asarray(vals).reshape(-1, D).astype(weight.dtype)
            return SparseGrad(np.asarray(idx, np.int64), v, weight.shape), gp
        return gw.astype(weight.dtype), gp

    return out.astype(weight.dtype), pullback


def embedding_bag(input, weight, *args, **kwargs):
    return embedding_bag_vjp(input, weight, *args, **kwargs)[0]


no_grad = types.SimpleNamespace(embedding=embedding, embedding_bag=embedding_bag)


def _coalesced_vjp(*args, **kwargs):
    out, pb = embedding_vjp(*args, **kwargs)

    def pullback(g):
        r = pb(g)
        if isinstance(r, SparseGrad):
            u = np.unique(r.indices)
            dense = r.to_dense()
            return SparseGrad(u, dense[u], r.shape)
        return r

    return out, pullback


sparse_coalesced = types.SimpleNamespace(embedding=embedding, embedding_vjp=_coalesced_vjp)
