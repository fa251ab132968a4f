# mypy: disable-error-code="no-untyped-call, no-untyped-def"
"""Deliberately broken quantized targets (torch's quantized op signatures), each wrong in one documented way.

Each is :mod:`checker_targets.quant_xembed` with one op replaced; ``QUANT_BROKEN[name]`` gives the target and
the check ids that must report it.  Import as ``checker_targets.quant_broken:<NAME>``.
"""

from __future__ import annotations

import ctypes
import types

import numpy as np
import torch

import xembed
from checker_targets import quant_xembed as good

OPS = ("embedding_bag_byte_rowwise_offsets", "embedding_bag_4bit_rowwise_offsets",
       "embedding_bag_2bit_rowwise_offsets", "embedding_bag_byte_prepack", "embedding_bag_4bit_prepack",
       "embedding_bag_2bit_prepack")


def _target(doc, **replaced):
    ns = types.SimpleNamespace(**{op: getattr(good, op) for op in OPS})
    for op, fn in replaced.items():
        setattr(ns, op, fn)
    ns.__doc__ = doc
    return ns


def _float_bag(rows, indices, offsets, mode, per_sample_weights, include_last_offset, padding_idx):
    return xembed.embedding_bag(indices, torch.from_numpy(rows.astype(np.float32)), offsets,
                                mode=good._MODES[mode], per_sample_weights=per_sample_weights,
                                include_last_offset=include_last_offset, padding_idx=padding_idx)


def _nibbles_swapped(weight, indices, offsets=None, scale_grad_by_freq=False, mode=0, pruned_weights=False,
                     per_sample_weights=None, compressed_indices_mapping=None, include_last_offset=False,
                     padding_idx=None):
    packed = weight.clone()
    codes = packed[:, :-4]
    packed[:, :-4] = (codes >> 4) | ((codes & 15) << 4)  # element 2j read from the high nibble
    return good.embedding_bag_4bit_rowwise_offsets(packed, indices, offsets, scale_grad_by_freq, mode,
                                                   pruned_weights, per_sample_weights, compressed_indices_mapping,
                                                   include_last_offset, padding_idx)


def _scale_bias_float32(weight, indices, offsets=None, scale_grad_by_freq=False, mode=0,  # noqa: ARG001
                        pruned_weights=False, per_sample_weights=None, compressed_indices_mapping=None,  # noqa: ARG001
                        include_last_offset=False, padding_idx=None):
    packed = weight.numpy()
    table = xembed.QuantizedTable.from_packed(packed, 4)
    deq = np.asarray(table.dequantize())
    scale16 = packed[:, -4:-2].copy().view(np.float16).astype(np.float32)
    bias16 = packed[:, -2:].copy().view(np.float16).astype(np.float32)
    codes = (deq - bias16) / np.where(scale16 == 0, 1, scale16)
    as_f32 = packed[:, -4:].copy().view(np.float32)[:, 0]  # the 4 trailing bytes read as one float32 scale, no bias
    rows = codes * as_f32[:, None]
    return _float_bag(rows, indices, offsets, mode, per_sample_weights, include_last_offset, padding_idx)


def _bias_dropped(weight, indices, offsets=None, scale_grad_by_freq=False, mode=0, pruned_weights=False,
                  per_sample_weights=None, compressed_indices_mapping=None, include_last_offset=False,
                  padding_idx=None):
    packed = weight.clone()
    packed[:, -4:] = 0  # float32 bias 0.0
    return good.embedding_bag_byte_rowwise_offsets(packed, indices, offsets, scale_grad_by_freq, mode,
                                                   pruned_weights, per_sample_weights, compressed_indices_mapping,
                                                   include_last_offset, padding_idx)


def _prepack_round_half_up(weight):
    w = weight.numpy().astype(np.float32)
    lo, hi = w.min(axis=1), w.max(axis=1)
    spread = hi - lo
    inverse = np.float32(255) / (spread + np.float32(1e-8))
    codes = np.clip(np.floor((w - lo[:, None]) * inverse[:, None] + np.float32(0.5)), 0, 255).astype(np.uint8)
    tail = np.stack([spread / np.float32(255), lo], axis=1).astype(np.float32).view(np.uint8)
    return torch.from_numpy(np.concatenate([codes, tail], axis=1))


def _padding_in_mean(weight, indices, offsets=None, scale_grad_by_freq=False, mode=0, pruned_weights=False,
                     per_sample_weights=None, compressed_indices_mapping=None, include_last_offset=False,
                     padding_idx=None):
    if mode != 1 or padding_idx is None:
        return good.embedding_bag_byte_rowwise_offsets(weight, indices, offsets, scale_grad_by_freq, mode,
                                                       pruned_weights, per_sample_weights,
                                                       compressed_indices_mapping, include_last_offset, padding_idx)
    total = good.embedding_bag_byte_rowwise_offsets(weight, indices, offsets, scale_grad_by_freq, 0,
                                                    pruned_weights, per_sample_weights, compressed_indices_mapping,
                                                    include_last_offset, padding_idx)
    ends = offsets[1:] if include_last_offset else torch.cat([offsets[1:], torch.tensor([len(indices)])])
    starts = offsets[:-1] if include_last_offset else offsets
    return total / torch.clamp(ends - starts, min=1).to(total.dtype)[:, None]  # padding entries counted


def _segfaults_past_one_row(weight):
    if weight.shape[0] > 1:
        ctypes.string_at(0)  # reads address 0: the process dies of SIGSEGV
    return good.embedding_bag_byte_prepack(weight)


#: crashes the process (not in QUANT_BROKEN): the checker must survive it (crash isolation)
SEGFAULTS = _target("8-bit prepack segfaults on tables of more than one row",
                    embedding_bag_byte_prepack=_segfaults_past_one_row)
NIBBLES_SWAPPED = _target("4-bit rows read with the nibble order swapped (element 2j from the high nibble)",
                          embedding_bag_4bit_rowwise_offsets=_nibbles_swapped)
SCALE_BIAS_FLOAT32 = _target("4-bit rows' trailing 4 bytes read as one float32 scale (no float16 scale and bias)",
                             embedding_bag_4bit_rowwise_offsets=_scale_bias_float32)
BIAS_DROPPED = _target("8-bit rows dequantized without their bias (code * scale)",
                       embedding_bag_byte_rowwise_offsets=_bias_dropped)
PREPACK_ROUND_HALF_UP = _target("8-bit prepack rounds half up (floor(x + 0.5)) instead of half to even",
                                embedding_bag_byte_prepack=_prepack_round_half_up)
PADDING_IN_MEAN = _target("8-bit mode=1 (mean) divides by the bag length, padding entries included",
                          embedding_bag_byte_rowwise_offsets=_padding_in_mean)

_B4 = "embedding_bag_4bit_rowwise_offsets::"
_B8 = "embedding_bag_byte_rowwise_offsets::"
_ROWS = tuple(f"{option}::values" for option in (
    "mode=0 (sum)", "empty bags", "per_sample_weights", "include_last_offset", "mode=1 (mean)", "mode=2 (max)",
    "padding_idx × mode=1 (mean)", "padding_idx × mode=0 (sum)"))  # noqa: RUF001

QUANT_BROKEN = {
    "NIBBLES_SWAPPED": (NIBBLES_SWAPPED, {_B4 + r for r in _ROWS}),
    "SCALE_BIAS_FLOAT32": (SCALE_BIAS_FLOAT32, {_B4 + r for r in _ROWS}),
    "BIAS_DROPPED": (BIAS_DROPPED, {_B8 + r for r in _ROWS}),
    "PREPACK_ROUND_HALF_UP": (PREPACK_ROUND_HALF_UP, {"embedding_bag_byte_prepack::weight::bytes"}),
    "PADDING_IN_MEAN": (PADDING_IN_MEAN, {_B8 + "padding_idx × mode=1 (mean)::values"}),  # noqa: RUF001
}
