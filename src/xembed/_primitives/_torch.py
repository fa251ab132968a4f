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


def bincount(idx: torch.Tensor, num_rows: int, _xp: Any) -> torch.Tensor:
    return torch.bincount(idx, minlength=num_rows)


def scatter_add_rows(idx: torch.Tensor, rows: torch.Tensor, num_rows: int, _xp: Any) -> torch.Tensor:
    out = torch.zeros((num_rows, rows.shape[1]), dtype=rows.dtype, device=rows.device)
    return out.index_add_(0, idx, rows)


def gather_scatter_add(src: torch.Tensor, src_idx: torch.Tensor, dst_idx: torch.Tensor, scale: torch.Tensor | None,
                       num_rows: int, acc_dtype: torch.dtype, xp: Any) -> torch.Tensor:
    rows = src.index_select(0, src_idx).to(acc_dtype)
    if scale is not None:
        rows = rows * scale.to(acc_dtype)[:, None]
    return scatter_add_rows(dst_idx, rows, num_rows, xp)


def gather_segment_sum(weight: torch.Tensor, idx: torch.Tensor, offsets: torch.Tensor, scale: torch.Tensor | None,
                       acc_dtype: torch.dtype, xp: Any) -> torch.Tensor:
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


def gather_segment_max(weight: torch.Tensor, idx: torch.Tensor, offsets: torch.Tensor, need_arg: bool,
                       _xp: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    values, _, _bag_size, argrow = torch.embedding_bag(
        weight, idx, offsets, False, _MODE_MAX, False, None, True, None)
    if not need_arg:
        return values, None
    # Empty bags: torch CPU reports row 0, CUDA -1; the contract says -1.
    empty = (offsets[1:] == offsets[:-1])[:, None]
    return values, torch.where(empty, torch.full_like(argrow, -1), argrow)


def put_rows_(weight: torch.Tensor, uniq: torch.Tensor, rows: torch.Tensor, _xp: Any) -> torch.Tensor:
    with torch.no_grad():
        weight[uniq] = rows
    return weight
