"""Native torch paths of the primitives (contracts in ``_fallback``). Tensors arrive detached.

Where torch's own fused kernels have exactly the primitive's contract they are used: the
embedding_bag sum kernel (fp32/fp64 accumulate in their own dtype) and the max kernel (strict ``>``
scan, ties to the first occurrence, a leading NaN sticks — the reference semantics, on CPU and CUDA).
"""

from __future__ import annotations

from typing import Any

import torch

_MODE_MAX = 2  # torch.embedding_bag mode code


def index_bounds(x: torch.Tensor, _xp: Any) -> tuple[int, int]:
    if x.device.type == "cpu":  # a zero-copy NumPy view: two SIMD passes cost less than one torch dispatch
        a = x.detach().numpy()
        return int(a.min()), int(a.max())
    lo, hi = torch.aminmax(x)
    return tuple(torch.stack([lo, hi]).tolist())  # one device->host transfer


def offsets_first_decrease(offsets: torch.Tensor, xp: Any) -> int:
    if offsets.device.type == "cpu":
        from . import _numpy

        return _numpy.offsets_first_decrease(offsets.detach().numpy(), xp)
    from . import _fallback

    return _fallback.offsets_first_decrease(offsets, xp)


def bincount(idx, num_rows, xp):
    return torch.bincount(idx, minlength=num_rows)


def scatter_add_rows(idx, rows, num_rows, xp):
    out = torch.zeros((num_rows, rows.shape[1]), dtype=rows.dtype, device=rows.device)
    return out.index_add_(0, idx, rows)


def gather_scatter_add(src, src_idx, dst_idx, scale, num_rows, acc_dtype, xp):
    rows = src.index_select(0, src_idx).to(acc_dtype)
    if scale is not None:
        rows = rows * scale.to(acc_dtype)[:, None]
    return scatter_add_rows(dst_idx, rows, num_rows, xp)


def gather_segment_sum(weight, idx, offsets, scale, acc_dtype, xp):
    if weight.dtype == acc_dtype:
        # torch's fused kernel has exactly this contract for fp32/fp64 (full offsets, last = n).
        if scale is not None:
            scale = scale.to(weight.dtype)
        return torch.nn.functional.embedding_bag(
            idx, weight, offsets, mode="sum", per_sample_weights=scale, include_last_offset=True)
    from ._fallback import segment_ids

    rows = weight.index_select(0, idx).to(acc_dtype)
    if scale is not None:
        rows = rows * scale.to(acc_dtype)[:, None]
    out = torch.zeros((offsets.shape[0] - 1, weight.shape[1]), dtype=acc_dtype, device=weight.device)
    return out.index_add_(0, segment_ids(offsets, idx.shape[0], xp), rows)


def gather_segment_max(weight, idx, offsets, need_arg, xp):
    values, _, bag_size, argrow = torch.embedding_bag(
        weight, idx, offsets, False, _MODE_MAX, False, None, True, None)
    if not need_arg:
        return values, None
    # Empty bags: torch CPU reports row 0, CUDA -1; the contract says -1.
    empty = (offsets[1:] == offsets[:-1])[:, None]
    return values, torch.where(empty, torch.full_like(argrow, -1), argrow)


def put_rows_(weight, uniq, rows, xp):
    with torch.no_grad():
        weight[uniq] = rows
    return weight


# ------------------------------------------------------------------------------------------------------------
# Whole-call fast path (spec ``PRIM-TORCH-NATIVE``): after xembed validated a call, the options for which
# torch.nn.functional's own fused CPU kernels (forward and autograd backward) have exactly xembed's semantics
# are handed to them whole.  Everything else (low precision, max_norm, mode='max' under autograd, empty
# offsets, mixed index dtypes, CUDA) takes xembed's own path.
_FUSED_DTYPES = (torch.float32, torch.float64)
_INDEX_DTYPES = (torch.int32, torch.int64)


def _fusable(weight: torch.Tensor, input: torch.Tensor) -> bool:
    return (weight.device.type == "cpu" and weight.dtype in _FUSED_DTYPES and input.dtype in _INDEX_DTYPES
            and not input.requires_grad)


def can_fuse_embedding(input: torch.Tensor, weight: torch.Tensor, max_norm: float | None) -> bool:
    return max_norm is None and _fusable(weight, input)


def fused_embedding(input: torch.Tensor, weight: torch.Tensor, padding_idx: int | None, scale_grad_by_freq: bool,
                    sparse: bool) -> torch.Tensor:
    return torch.nn.functional.embedding(input, weight, padding_idx=padding_idx,
                                         scale_grad_by_freq=scale_grad_by_freq, sparse=sparse)


def can_fuse_bag(input: torch.Tensor, weight: torch.Tensor, offsets: torch.Tensor | None,
                 _per_sample_weights: torch.Tensor | None, a: Any) -> bool:
    if a.max_norm is not None or not _fusable(weight, input):
        return False
    if a.mode == "max" and torch.is_grad_enabled() and weight.requires_grad:
        return False
    return offsets is None or (offsets.dtype == input.dtype and offsets.shape[0] > 0)


def fused_bag(input: torch.Tensor, weight: torch.Tensor, offsets: torch.Tensor | None,
              per_sample_weights: torch.Tensor | None, a: Any) -> torch.Tensor:
    return torch.nn.functional.embedding_bag(
        input, weight, offsets, mode=a.mode, sparse=a.sparse, per_sample_weights=per_sample_weights,
        include_last_offset=a.include_last_offset, padding_idx=a.padding_idx,
        scale_grad_by_freq=a.scale_grad_by_freq)
