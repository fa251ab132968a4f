"""Native torch paths of the primitives (contracts in ``_fallback``). Tensors arrive detached.

Where torch's own fused kernels have exactly the primitive's contract they are used: the
embedding_bag sum kernel (fp32/fp64 accumulate in their own dtype) and the max kernel (strict ``>``
scan, ties to the first occurrence, a leading NaN sticks — the reference semantics, on CPU and CUDA).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.autograd.forward_ad as fwad

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


# ------------------------------------------------------------------------------------------------------------
# Whole-call fast path (spec ``PRIM-TORCH-NATIVE``): after xembed validated a call, the options for which
# torch.nn.functional's own fused CPU kernels have exactly xembed's semantics are handed to them whole, for
# calls outside autograd (inference).  Everything else (autograd, forward AD, torch.func, low precision,
# max_norm, the EXT-* modes, the inputs where torch crashes or raises (DIV-1..3), mixed index dtypes, CUDA)
# takes xembed's own path.
_FUSED_DTYPES = (torch.float32, torch.float64)
_INDEX_DTYPES = (torch.int32, torch.int64)


def _plain(t: torch.Tensor | None) -> bool:
    """Not a torch.func-wrapped tensor (TORCH-FUNC: xembed raises there) and no forward-AD level active
    (TORCH-FWD-AD: xembed's own jvp, which torch lacks for embedding_bag)."""
    return t is None or not torch._C._functorch.is_functorch_wrapped_tensor(t)


def _fusable(weight: torch.Tensor, input: torch.Tensor, per_sample_weights: torch.Tensor | None = None) -> bool:
    # Not under autograd: torch's embedding / embedding_bag backward is not differentiable again, and xembed's
    # is (TORCH-DOUBLE-BWD); whether a backward will be differentiated is only known at backward time.
    if torch.is_grad_enabled() and (weight.requires_grad or (per_sample_weights is not None
                                                             and per_sample_weights.requires_grad)):
        return False
    return (weight.device.type == "cpu" and weight.dtype in _FUSED_DTYPES and input.dtype in _INDEX_DTYPES
            and not input.requires_grad and fwad._current_level < 0
            and _plain(weight) and _plain(input) and _plain(per_sample_weights))


def can_fuse_embedding(input: torch.Tensor, weight: torch.Tensor, max_norm: float | None,
                       padding_idx: int | None = None, sparse: bool = False) -> bool:
    # torch's sparse backward fails for a 0-d input with a padding_idx (DIV-3)
    if sparse and padding_idx is not None and input.ndim == 0:
        return False
    return max_norm is None and _fusable(weight, input)


def fused_embedding(input: torch.Tensor, weight: torch.Tensor, padding_idx: int | None, scale_grad_by_freq: bool,
                    sparse: bool) -> torch.Tensor:
    return torch.nn.functional.embedding(input, weight, padding_idx=padding_idx,
                                         scale_grad_by_freq=scale_grad_by_freq, sparse=sparse)


def can_fuse_bag(input: torch.Tensor, weight: torch.Tensor, offsets: torch.Tensor | None,
                 per_sample_weights: torch.Tensor | None, a: Any) -> bool:
    if a.max_norm is not None or not _fusable(weight, input, per_sample_weights):
        return False
    # torch's own modes only (EXT-* are xembed's), per_sample_weights with sum only (EXT-WMEAN, EXT-PSW-MODES)
    if a.mode not in ("sum", "mean", "max") or (per_sample_weights is not None and a.mode != "sum"):
        return False
    if offsets is None:  # torch raises "step must be nonzero" for a (B, 0) input (DIV-2; BAG-2D-ZERO-COLS)
        return input.ndim != 2 or input.shape[1] > 0
    # torch CPU crashes on empty offsets and on offsets [0] with include_last_offset (DIV-1)
    return offsets.dtype == input.dtype and offsets.shape[0] > (1 if a.include_last_offset else 0)


def fused_bag(input: torch.Tensor, weight: torch.Tensor, offsets: torch.Tensor | None,
              per_sample_weights: torch.Tensor | None, a: Any) -> torch.Tensor:
    return torch.nn.functional.embedding_bag(
        input, weight, offsets, mode=a.mode, sparse=a.sparse, per_sample_weights=per_sample_weights,
        include_last_offset=a.include_last_offset, padding_idx=a.padding_idx,
        scale_grad_by_freq=a.scale_grad_by_freq)
def gather_segment_min(weight: Any, idx: Any, offsets: Any, need_arg: bool, xp: Any) -> tuple[Any, Any]:
    # the native max on the negated gathered rows (contract in ``_fallback.gather_segment_min``)
    from ._fallback import segment_min_via_max

    return segment_min_via_max(gather_segment_max, weight, idx, offsets, need_arg, xp)
