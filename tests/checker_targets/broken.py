"""Deliberately broken implementations (torch backend), each wrong in exactly one documented way.

Every one wraps torch.nn.functional and changes one behaviour; `BROKEN[name]` gives the target,
the defect and the check ids (globs) that must report it.  Import as
``checker_targets.broken:<NAME>`` (e.g. ``--impl checker_targets.broken:pad_in_mean_divisor``).
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F


def _bag_lengths(input, offsets, include_last_offset):
    if input.dim() == 2:
        return torch.full((input.shape[0],), input.shape[1], dtype=torch.long)
    off = offsets.long().tolist()
    n = input.shape[0]
    if include_last_offset:
        return torch.tensor([off[i + 1] - off[i] for i in range(len(off) - 1)], dtype=torch.long)
    ends = off[1:] + [n]
    return torch.tensor([e - s for s, e in zip(off, ends)], dtype=torch.long)


def _bag_positions(input, offsets, include_last_offset):
    lens = _bag_lengths(input, offsets, include_last_offset).tolist()
    if input.dim() == 2:
        L = input.shape[1]
        return [list(range(b * L, (b + 1) * L)) for b in range(input.shape[0])]
    starts = offsets.long().tolist()
    return [list(range(s, s + n)) for s, n in zip(starts, lens)]


def _target(doc, embedding=F.embedding, embedding_bag=F.embedding_bag):
    return types.SimpleNamespace(__doc__=doc, embedding=embedding, embedding_bag=embedding_bag)


# 1 ---------------------------------------------------------------------------------------------
def _bag_pad_divisor(input, weight, offsets=None, max_norm=None, norm_type=2, scale_grad_by_freq=False,
                     mode="mean", sparse=False, per_sample_weights=None, include_last_offset=False,
                     padding_idx=None):
    if mode != "mean" or padding_idx is None:
        return F.embedding_bag(input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, mode, sparse,
                               per_sample_weights, include_last_offset, padding_idx)
    s = F.embedding_bag(input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, "sum", sparse,
                        per_sample_weights, include_last_offset, padding_idx)
    n = _bag_lengths(input, offsets, include_last_offset).clamp(min=1).to(s.dtype)
    return s / n[:, None]


pad_in_mean_divisor = _target("mean divides by the bag length including padding entries",
                              embedding_bag=_bag_pad_divisor)


# 2 ---------------------------------------------------------------------------------------------
def _bag_max_last(input, weight, offsets=None, max_norm=None, norm_type=2, scale_grad_by_freq=False,
                  mode="mean", sparse=False, per_sample_weights=None, include_last_offset=False,
                  padding_idx=None):
    if mode == "max" and input.numel():
        flat = input.reshape(-1)
        perm = []
        for pos in _bag_positions(input, offsets, include_last_offset):
            perm += pos[::-1]
        covered = set(perm)
        perm += [i for i in range(flat.numel()) if i not in covered]
        input = flat[torch.tensor(perm, dtype=torch.long)].reshape(input.shape)
    return F.embedding_bag(input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, mode, sparse,
                           per_sample_weights, include_last_offset, padding_idx)


max_ties_to_last = _target("mode='max' breaks ties towards the last occurrence (gradient goes there)",
                           embedding_bag=_bag_max_last)


# 3 ---------------------------------------------------------------------------------------------
def _renorm_ge(weight, input, max_norm, norm_type):
    with torch.no_grad():
        for r in torch.unique(input.reshape(-1)).tolist():
            n = torch.linalg.vector_norm(weight[r].double(), ord=norm_type)
            if n >= max_norm:  # BUG: SPEC says strict >
                weight[r] *= (max_norm / (n + 1e-7)).to(weight.dtype)


def _emb_ge(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
            sparse=False):
    if max_norm is not None:
        _renorm_ge(weight, input, max_norm, norm_type)
    return F.embedding(input, weight, padding_idx, None, norm_type, scale_grad_by_freq, sparse)


renorm_uses_ge = _target("max_norm renorms rows whose norm == max_norm (>= instead of >)", embedding=_emb_ge)


# 4 ---------------------------------------------------------------------------------------------
def _emb_copy(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    if max_norm is not None:
        weight = weight.clone()  # BUG: renorm applied to a copy, not in place
    return F.embedding(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse)


renorm_not_in_place = _target("max_norm renorms a copy: output right, caller's weight unchanged",
                              embedding=_emb_copy)


# 5 ---------------------------------------------------------------------------------------------
def _bag_no_sgbf(input, weight, offsets=None, max_norm=None, norm_type=2, scale_grad_by_freq=False,
                 mode="mean", sparse=False, per_sample_weights=None, include_last_offset=False,
                 padding_idx=None):
    return F.embedding_bag(input, weight, offsets, max_norm, norm_type, False, mode, sparse,
                           per_sample_weights, include_last_offset, padding_idx)


grad_ignores_scale_grad_by_freq = _target("embedding_bag's gradient ignores scale_grad_by_freq",
                                          embedding_bag=_bag_no_sgbf)


# 6 ---------------------------------------------------------------------------------------------
def _emb_clamp(input, weight, *args, **kwargs):
    if input.dtype in (torch.int32, torch.int64):
        input = input.clamp(0, weight.shape[0] - 1)  # BUG: no error on out-of-range indices
    return F.embedding(input, weight, *args, **kwargs)


no_out_of_range_error = _target("out-of-range / negative indices are clamped instead of raising",
                                embedding=_emb_clamp)


# 7 ---------------------------------------------------------------------------------------------
def _bag_dirty_ok(input, weight, *args, **kwargs):
    try:
        F.embedding_bag(input, weight.detach().clone(), *args, **kwargs)
    except Exception:
        with torch.no_grad():
            if weight.numel():
                weight.view(-1)[0] += 1  # BUG: the weight is modified before the error is raised
        raise
    return F.embedding_bag(input, weight, *args, **kwargs)


modifies_weight_before_raising = _target("a failing embedding_bag call changes the weight",
                                         embedding_bag=_bag_dirty_ok)


# 8 ---------------------------------------------------------------------------------------------
def _bag_psw2(input, weight, offsets=None, max_norm=None, norm_type=2, scale_grad_by_freq=False,
              mode="mean", sparse=False, per_sample_weights=None, include_last_offset=False,
              padding_idx=None):
    if per_sample_weights is not None:
        # same forward value, doubled gradient w.r.t. per_sample_weights
        per_sample_weights = 2 * per_sample_weights - per_sample_weights.detach()
    return F.embedding_bag(input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, mode, sparse,
                           per_sample_weights, include_last_offset, padding_idx)


psw_grad_wrong = _target("the per_sample_weights gradient is twice the right one", embedding_bag=_bag_psw2)


# 9 ---------------------------------------------------------------------------------------------
class _Coalesce(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w):
        return w.view_as(w)

    @staticmethod
    def backward(ctx, g):
        return g.coalesce() if g.is_sparse else g


def _emb_coalesced(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
                   sparse=False):
    if max_norm is not None:
        with torch.no_grad():
            torch.embedding_renorm_(weight, input, max_norm, norm_type)
    w = _Coalesce.apply(weight) if sparse else weight
    return F.embedding(input, w, padding_idx, None, norm_type, scale_grad_by_freq, sparse)


sparse_grad_coalesced = _target("sparse=True returns a coalesced gradient (sorted, duplicates summed)",
                                embedding=_emb_coalesced)


# 10 --------------------------------------------------------------------------------------------
def _emb_negpad(input, weight, padding_idx=None, *args, **kwargs):
    if padding_idx is not None and padding_idx < 0:
        padding_idx = None  # BUG: negative padding_idx ignored instead of counting from the end
    return F.embedding(input, weight, padding_idx, *args, **kwargs)


negative_padding_ignored = _target("negative padding_idx is ignored (padding row gets a gradient)",
                                   embedding=_emb_negpad)


# 11 --------------------------------------------------------------------------------------------
def _bag_ilo(input, weight, offsets=None, max_norm=None, norm_type=2, scale_grad_by_freq=False,
             mode="mean", sparse=False, per_sample_weights=None, include_last_offset=False, padding_idx=None):
    return F.embedding_bag(input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, mode, sparse,
                           per_sample_weights, False, padding_idx)


include_last_offset_ignored = _target("include_last_offset is ignored (one bag too many)", embedding_bag=_bag_ilo)


# 12 --------------------------------------------------------------------------------------------
def _bag_max_empty(input, weight, offsets=None, max_norm=None, norm_type=2, scale_grad_by_freq=False,
                   mode="mean", sparse=False, per_sample_weights=None, include_last_offset=False,
                   padding_idx=None):
    out = F.embedding_bag(input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, mode, sparse,
                          per_sample_weights, include_last_offset, padding_idx)
    if mode == "max":
        empty = _bag_lengths(input, offsets, include_last_offset) == 0
        out = torch.where(empty[:, None], torch.full_like(out, -float("inf")), out)
    return out


max_empty_bag_not_zero = _target("mode='max' returns -inf for an empty bag instead of zeros",
                                 embedding_bag=_bag_max_empty)


# name -> (target, defect, check-id globs that must fail)
BROKEN = {
    "pad_in_mean_divisor": (pad_in_mean_divisor, ["embedding_bag::padding_idx >= 0::values", "embedding_bag::all-padding bags::values"]),
    "max_ties_to_last": (max_ties_to_last, ["embedding_bag::mode='max'::grad", "embedding_bag::duplicate indices::grad"]),
    "renorm_uses_ge": (renorm_uses_ge, ["embedding::max_norm, norm_type=1::values", "embedding::max_norm, norm_type=inf::values"]),
    "renorm_not_in_place": (renorm_not_in_place, ["embedding::max_norm, norm_type=2::values"]),
    "grad_ignores_scale_grad_by_freq": (grad_ignores_scale_grad_by_freq, ["embedding_bag::scale_grad_by_freq::grad"]),
    "no_out_of_range_error": (no_out_of_range_error, ["embedding::error: index >= num_embeddings::error", "embedding::error: negative index::error"]),
    "modifies_weight_before_raising": (modifies_weight_before_raising, ["embedding_bag::error: offsets[0] != 0::error"]),
    "psw_grad_wrong": (psw_grad_wrong, ["embedding_bag::per_sample_weights (mode='sum')::grad"]),
    "sparse_grad_coalesced": (sparse_grad_coalesced, ["embedding::sparse::grad"]),
    "negative_padding_ignored": (negative_padding_ignored, ["embedding::padding_idx < 0::grad"]),
    "include_last_offset_ignored": (include_last_offset_ignored, ["embedding_bag::include_last_offset::values"]),
    "max_empty_bag_not_zero": (max_empty_bag_not_zero, ["embedding_bag::empty bags::values"]),
}
