# mypy: disable-error-code="no-untyped-call, no-untyped-def"
# (deliberately torch.nn.functional-shaped, untyped targets: the checker must cope with any signature style)
"""Deliberately broken implementations (torch backend), each wrong in exactly one documented way.

Every one wraps torch.nn.functional and changes one behaviour; `BROKEN[name]` gives the target,
the defect and the check ids (globs) that must report it.  Import as
``checker_targets.broken:<NAME>`` (e.g. ``--impl checker_targets.broken:pad_in_mean_divisor``).
"""

# ruff: noqa: ARG001, ARG004, N812, N803, RUF001, E501  # torch.nn.functional's signatures, its customary `F`, the notation D, check ids with the multiplication sign

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
    ends = [*off[1:], n]
    return torch.tensor([e - s for s, e in zip(off, ends, strict=False)], dtype=torch.long)


def _bag_positions(input, offsets, include_last_offset):
    lens = _bag_lengths(input, offsets, include_last_offset).tolist()
    if input.dim() == 2:
        L = input.shape[1]
        return [list(range(b * L, (b + 1) * L)) for b in range(input.shape[0])]
    starts = offsets.long().tolist()
    return [list(range(s, s + n)) for s, n in zip(starts, lens, strict=False)]


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


def _bag_max_last_tiled(input, weight, *args, **kwargs):
    if weight.dim() == 2 and weight.shape[1] % 16 == 0:
        return _bag_max_last(input, weight, *args, **kwargs)
    return F.embedding_bag(input, weight, *args, **kwargs)


max_ties_to_last_at_tile_width = _target(
    "mode='max' sends the gradient of a tie to the last occurrence, only when embedding_dim is a multiple of 16 "
    "(a 16-wide kernel's tie-breaking)", embedding_bag=_bag_max_last_tiled)


# 3 ---------------------------------------------------------------------------------------------
def _renorm_ge(weight, input, max_norm, norm_type):
    with torch.no_grad():
        for r in torch.unique(input.reshape(-1)).tolist():
            n = torch.linalg.vector_norm(weight[r].double(), ord=norm_type)
            if n >= max_norm:  # BUG: RENORM-STRICT says strict >
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


# kernel-scale defects -----------------------------------------------------------------------------
# Each one is wrong only past a size real kernels trip on (a vector width, a warp, a 16-bit index, a
# per-row counter, float16 accumulation over long bags); the checker's kernel-scale rows must catch them.


def _bag_call(input, weight, offsets=None, max_norm=None, norm_type=2, scale_grad_by_freq=False, mode="mean",
              sparse=False, per_sample_weights=None, include_last_offset=False, padding_idx=None):
    return F.embedding_bag(input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, mode, sparse,
                           per_sample_weights, include_last_offset, padding_idx)


# 13 --------------------------------------------------------------------------------------------
def _tile_mask(out, D):
    if D >= 5 and D % 4:
        mask = torch.ones(D, dtype=out.dtype, device=out.device)
        mask[D - D % 4:] = 0  # BUG: the last partial 4-wide column tile is never written
        return out * mask
    return out


def _emb_tile(input, weight, *args, **kwargs):
    return _tile_mask(F.embedding(input, weight, *args, **kwargs), weight.shape[-1])


def _bag_tile(input, weight, *args, **kwargs):
    return _tile_mask(_bag_call(input, weight, *args, **kwargs), weight.shape[-1])


drops_partial_column_tile = _target("drops the last partial 4-wide column tile when D >= 5",
                                    embedding=_emb_tile, embedding_bag=_bag_tile)


# 14 --------------------------------------------------------------------------------------------
def _bag_first32(input, weight, offsets=None, max_norm=None, norm_type=2, scale_grad_by_freq=False, mode="mean",
                 sparse=False, per_sample_weights=None, include_last_offset=False, padding_idx=None):
    if input.dim() == 2:
        input = input[:, :32]  # BUG: a bag holds at most 32 entries (one warp)
        if per_sample_weights is not None:
            per_sample_weights = per_sample_weights[:, :32]
    elif input.numel():
        keep: list[int] = []
        new_off: list[int] = []
        for pos in _bag_positions(input, offsets, include_last_offset):
            new_off.append(len(keep))
            keep += pos[:32]  # BUG: as above
        if include_last_offset:
            new_off.append(len(keep))
        idx = torch.tensor(keep, dtype=torch.long)
        input = input[idx]
        offsets = torch.tensor(new_off, dtype=offsets.dtype)
        if per_sample_weights is not None:
            per_sample_weights = per_sample_weights[idx]
    return _bag_call(input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, mode, sparse,
                     per_sample_weights, include_last_offset, padding_idx)


wrong_past_32_per_bag = _target("only the first 32 entries of a bag are reduced", embedding_bag=_bag_first32)


# 15 --------------------------------------------------------------------------------------------
def _u16(input):
    return input & 0xFFFF if input.dtype in (torch.int32, torch.int64) else input  # BUG: 16-bit index


def _emb_u16(input, weight, *args, **kwargs):
    return F.embedding(_u16(input), weight, *args, **kwargs)


def _bag_u16(input, weight, *args, **kwargs):
    return _bag_call(_u16(input), weight, *args, **kwargs)


index_16_bit_overflow = _target("indices are truncated to 16 bits (rows past 65,535 wrap around)",
                                embedding=_emb_u16, embedding_bag=_bag_u16)


# 16 --------------------------------------------------------------------------------------------
def _bag_lowp_acc(input, weight, offsets=None, max_norm=None, norm_type=2, scale_grad_by_freq=False, mode="mean",
                  sparse=False, per_sample_weights=None, include_last_offset=False, padding_idx=None):
    out = _bag_call(input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, mode, sparse,
                    per_sample_weights, include_last_offset, padding_idx)
    if weight.dtype not in (torch.float16, torch.bfloat16) or mode == "max" or not input.numel():
        return out
    flat = input.reshape(-1)
    bags = ([list(range(b * input.shape[1], (b + 1) * input.shape[1])) for b in range(input.shape[0])]
            if input.dim() == 2 else _bag_positions(input, offsets, include_last_offset))
    w = weight.detach()
    psw = None if per_sample_weights is None else per_sample_weights.detach().reshape(-1)
    Lmax = max((len(b) for b in bags), default=0)
    acc = torch.zeros(out.shape, dtype=weight.dtype)
    count = torch.zeros(out.shape[0], dtype=weight.dtype)
    for k in range(Lmax):  # BUG: the running sum is kept in the weight's 16-bit dtype
        rows = [(b, bag[k]) for b, bag in enumerate(bags) if len(bag) > k and flat[bag[k]] != (
            -1 if padding_idx is None else padding_idx % weight.shape[0])]
        if not rows:
            continue
        bi = torch.tensor([b for b, _ in rows])
        pi = torch.tensor([p for _, p in rows])
        term = w[flat[pi]] if psw is None else w[flat[pi]] * psw[pi][:, None]
        acc[bi] = acc[bi] + term
        count[bi] = count[bi] + 1
    if mode == "mean":
        acc = acc / count.clamp(min=1)[:, None]
    return out + (acc - out).detach()


lowp_accumulates_in_lowp = _target("float16 / bfloat16 sums accumulate in the 16-bit dtype (long bags drift)",
                                   embedding_bag=_bag_lowp_acc)


# 17 --------------------------------------------------------------------------------------------
def _bag_psw_pad(input, weight, offsets=None, max_norm=None, norm_type=2, scale_grad_by_freq=False, mode="mean",
                 sparse=False, per_sample_weights=None, include_last_offset=False, padding_idx=None):
    out = _bag_call(input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, mode, sparse,
                    per_sample_weights, include_last_offset, padding_idx)
    if per_sample_weights is None or padding_idx is None or not input.numel():
        return out
    pad = padding_idx % weight.shape[0]
    flat = input.reshape(-1)
    p = per_sample_weights.reshape(-1)
    bags = ([list(range(b * input.shape[1], (b + 1) * input.shape[1])) for b in range(input.shape[0])]
            if input.dim() == 2 else _bag_positions(input, offsets, include_last_offset))
    extra = []
    for bag in bags:
        at_pad = [i for i in bag if int(flat[i]) == pad]
        s = p[at_pad].sum() if at_pad else p.sum() * 0
        extra.append(s * weight.detach()[pad])
    if not extra:
        return out
    e = torch.stack(extra)
    return out + (e - e.detach())  # BUG: same value, but psw gets a gradient at padding positions


psw_grad_not_zero_at_padding = _target("the per_sample_weights gradient is not zeroed at padding positions",
                                       embedding_bag=_bag_psw_pad)


# 18 --------------------------------------------------------------------------------------------
class _GradRowScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, factor):
        ctx.save_for_backward(factor)
        return w.view_as(w)

    @staticmethod
    def backward(ctx, g):
        (factor,) = ctx.saved_tensors
        return g * factor[:, None].to(g.dtype), None


def _emb_u8_count(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
                  sparse=False):
    if scale_grad_by_freq and input.numel() and not sparse:
        counts = torch.bincount(input.reshape(-1).long(), minlength=weight.shape[0]).double()
        wrapped = torch.remainder(counts, 256)  # BUG: the per-row duplicate counter is 8 bits wide
        factor = torch.where(wrapped > 0, counts / wrapped.clamp(min=1), torch.ones_like(counts))
        if max_norm is not None:
            with torch.no_grad():
                torch.embedding_renorm_(weight, input, max_norm, norm_type)
        return F.embedding(input, _GradRowScale.apply(weight, factor), padding_idx, None, norm_type, True, sparse)
    return F.embedding(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse)


duplicate_count_8_bit = _target("scale_grad_by_freq counts duplicates in 8 bits (wrong past 255 repeats)",
                                embedding=_emb_u8_count)


# 19 --------------------------------------------------------------------------------------------
def _bag_segfault(input, weight, *args, **kwargs):
    if input.numel() > 1000:
        import ctypes

        ctypes.string_at(0)  # BUG: reads address 0 -- a segfault, the kernel writer's daily bread
    return _bag_call(input, weight, *args, **kwargs)


segfaults_on_long_inputs = _target("segfaults on inputs of more than 1,000 positions", embedding_bag=_bag_segfault)


# name -> (target, defect, check-id globs that must fail)
BROKEN = {
    "pad_in_mean_divisor": (pad_in_mean_divisor, ["embedding_bag::padding_idx >= 0::values", "embedding_bag::all-padding bags::values"]),
    "max_ties_to_last": (max_ties_to_last, ["embedding_bag::mode='max'::grad", "embedding_bag::duplicate indices::grad"]),
    "max_ties_to_last_at_tile_width": (max_ties_to_last_at_tile_width, ["embedding_bag::mode='max'::grad"]),
    "renorm_uses_ge": (renorm_uses_ge, ["embedding::max_norm, norm_type=1::values", "embedding::max_norm, norm_type=inf::values"]),
    "renorm_not_in_place": (renorm_not_in_place, ["embedding::max_norm, norm_type=2::values"]),
    "grad_ignores_scale_grad_by_freq": (grad_ignores_scale_grad_by_freq, ["embedding_bag::scale_grad_by_freq::grad"]),
    "no_out_of_range_error": (no_out_of_range_error, ["embedding::error: index >= num_embeddings::error", "embedding::error: negative index::error"]),
    "modifies_weight_before_raising": (modifies_weight_before_raising, ["embedding_bag::error: offsets[0] != 0::error"]),
    "psw_grad_wrong": (psw_grad_wrong, ["embedding_bag::per_sample_weights (mode='sum')::grad"]),
    "sparse_grad_coalesced": (sparse_grad_coalesced, ["embedding::sparse::grad"]),
    "negative_padding_ignored": (negative_padding_ignored, ["embedding::padding_idx < 0::grad"]),
    "include_last_offset_ignored": (include_last_offset_ignored, ["embedding_bag::include_last_offset::values"]),
    "max_empty_bag_not_zero": (max_empty_bag_not_zero, ["embedding_bag::empty bags × mode='max'::values"]),
    "drops_partial_column_tile": (drops_partial_column_tile, [
        "embedding::scale: embedding_dim 4..320*::values", "embedding_bag::scale: embedding_dim 4..320*::values"]),
    "wrong_past_32_per_bag": (wrong_past_32_per_bag, ["embedding_bag::scale: long bags*::values"]),
    "index_16_bit_overflow": (index_16_bit_overflow, [
        "embedding::scale: table > 65,536 rows::values", "embedding_bag::scale: table > 65,536 rows::values"]),
    "lowp_accumulates_in_lowp": (lowp_accumulates_in_lowp, [
        "embedding_bag::weight float16 × mode='sum'::values", "embedding_bag::weight bfloat16 × mode='mean'::values",
        "embedding_bag::scale: long bags*::values"]),
    "psw_grad_not_zero_at_padding": (psw_grad_not_zero_at_padding, [
        "embedding_bag::per_sample_weights × padding_idx::grad"]),
    "duplicate_count_8_bit": (duplicate_count_8_bit, ["embedding::scale_grad_by_freq × long inputs::grad"]),
}
#: crash isolation: a target that kills the process; its long-input checks must fail, the run go on
CRASHING = (segfaults_on_long_inputs, ["embedding_bag::scale: long bags*::values", "embedding_bag::mode='sum'::values"])
