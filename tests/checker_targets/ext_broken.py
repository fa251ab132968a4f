# mypy: disable-error-code="no-untyped-call, no-untyped-def"
# (deliberately torch.nn.functional-shaped, untyped targets: the checker must cope with any signature style)
"""Deliberately broken *extension* targets (NumPy backend), each wrong in one documented way.

Each wraps xembed on NumPy arrays (the tests may import xembed; the checker never does) and changes one
extension behaviour; `EXT_BROKEN[name]` gives the target, the defect and the check ids that must report it.
Import as ``checker_targets.ext_broken:<NAME>``.
"""

# ruff: noqa: RUF001  # check ids and messages use the multiplication sign

from __future__ import annotations

import types

import numpy as np

import xembed


def _bags(input, offsets, lengths, include_last_offset):
    """(starts, ends) of every bag, flattened positions."""
    if input.ndim == 2:
        B, L = input.shape
        starts = np.arange(B) * L
        return starts, starts + L
    if lengths is not None:
        ends = np.cumsum(np.asarray(lengths, np.int64))
        return ends - np.asarray(lengths, np.int64), ends
    off = np.asarray(offsets, np.int64)
    if include_last_offset:
        return off[:-1], off[1:]
    return off, np.append(off[1:], input.shape[0])


def _per_bag(input, weight, offsets, lengths, include_last_offset, padding_idx, values):
    """Σ values over the non-padding positions of every bag."""
    starts, ends = _bags(input, offsets, lengths, include_last_offset)
    flat = input.reshape(-1)
    keep = np.ones(flat.size, bool) if padding_idx is None else flat != padding_idx % weight.shape[0]
    v = np.where(keep, np.asarray(values, np.float64).reshape(-1), 0.0)
    return np.array([v[s:e].sum() for s, e in zip(starts, ends, strict=True)])


def _bag_sqrtn_count(input, weight, offsets=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
                     mode="mean", sparse=False, per_sample_weights=None, include_last_offset=False,
                     padding_idx=None, *, lengths=None):
    out = xembed.embedding_bag(input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, mode, sparse,
                               per_sample_weights, include_last_offset, padding_idx, lengths=lengths)
    if mode != "sqrtn" or per_sample_weights is None:
        return out
    psw = np.asarray(per_sample_weights, np.float64)
    right = np.sqrt(_per_bag(input, weight, offsets, lengths, include_last_offset, padding_idx, psw * psw))
    wrong = np.sqrt(_per_bag(input, weight, offsets, lengths, include_last_offset, padding_idx, np.ones(psw.shape)))
    factor = np.where((right > 0) & (wrong > 0), right / np.where(wrong > 0, wrong, 1.0), 1.0)
    return (out * factor[:, None]).astype(out.dtype)


def _bag_wmean_count(input, weight, offsets=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
                     mode="mean", sparse=False, per_sample_weights=None, include_last_offset=False,
                     padding_idx=None, *, lengths=None):
    if mode != "mean" or per_sample_weights is None:
        return xembed.embedding_bag(input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, mode, sparse,
                                    per_sample_weights, include_last_offset, padding_idx, lengths=lengths)
    out = xembed.embedding_bag(input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, "sum", sparse,
                               per_sample_weights, include_last_offset, padding_idx, lengths=lengths)
    count = _per_bag(input, weight, offsets, lengths, include_last_offset, padding_idx, np.ones(input.shape))
    return (out / np.maximum(count, 1.0)[:, None]).astype(out.dtype)


def _bag_lengths_reversed(input, weight, offsets=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
                          mode="mean", sparse=False, per_sample_weights=None, include_last_offset=False,
                          padding_idx=None, *, lengths=None):
    return xembed.embedding_bag(input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, mode, sparse,
                                per_sample_weights, include_last_offset, padding_idx,
                                lengths=None if lengths is None else lengths[::-1].copy())


def _bag_vjp_psw2(*args, **kwargs):
    out, pullback = xembed.embedding_bag_vjp(*args, **kwargs)
    mode = kwargs.get("mode", args[6] if len(args) > 6 else "mean")

    def broken(g):
        gw, gp = pullback(g)
        return gw, (gp * 2 if gp is not None and mode == "mean" else gp)

    return out, broken


def _target(doc, embedding_bag=xembed.embedding_bag, embedding_bag_vjp=None):
    t = types.SimpleNamespace(__doc__=doc, embedding=xembed.embedding, embedding_bag=embedding_bag,
                              embedding_vjp=xembed.embedding_vjp)
    if embedding_bag_vjp is not None:
        t.embedding_bag_vjp = embedding_bag_vjp
    return t


sqrtn_count_divisor = _target("mode='sqrtn' with per_sample_weights divides by sqrt(count) instead of "
                              "sqrt(Σ w²) (EXT-SQRTN)", embedding_bag=_bag_sqrtn_count)
wmean_count_divisor = _target("weighted mean divides Σ w·W by the count instead of Σ w (EXT-WMEAN)",
                              embedding_bag=_bag_wmean_count)
lengths_reversed = _target("`lengths` read in reverse order (EXT-LENGTHS)", embedding_bag=_bag_lengths_reversed)
wmean_psw_grad_twice = _target("weighted mean: the per_sample_weights gradient is twice the right one "
                               "(EXT-WMEAN-GRAD)", embedding_bag_vjp=_bag_vjp_psw2)

#: name -> (target, check ids that must fail)
EXT_BROKEN = {
    "sqrtn_count_divisor": (sqrtn_count_divisor, ["embedding_bag::mode='sqrtn' × per_sample_weights::values"]),
    "wmean_count_divisor": (wmean_count_divisor,
                            ["embedding_bag::weighted mean (per_sample_weights × mode='mean')::values"]),
    "lengths_reversed": (lengths_reversed, ["embedding_bag::lengths= (instead of offsets)::values"]),
    "wmean_psw_grad_twice": (wmean_psw_grad_twice,
                             ["embedding_bag::weighted mean (per_sample_weights × mode='mean')::grad"]),
}
