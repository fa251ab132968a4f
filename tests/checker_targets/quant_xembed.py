# mypy: disable-error-code="no-untyped-call, no-untyped-def"
"""xembed in the signatures of torch's quantized ops (a conformance target for the quantized rows).

``embedding_bag_*_rowwise_offsets`` wrap ``xembed.embedding_bag`` on a ``QuantizedTable`` of the packed torch
tensor (plus a ``padding_idx`` keyword, an extension of the signature); ``embedding_bag_*_prepack`` are
``xembed.quantize_rowwise``.  Import as ``checker_targets.quant_xembed``.
"""

from __future__ import annotations

import xembed

_MODES = {0: "sum", 1: "mean", 2: "max"}


def _bag(bits):
    def op(weight, indices, offsets=None, scale_grad_by_freq=False, mode=0, pruned_weights=False,
           per_sample_weights=None, compressed_indices_mapping=None, include_last_offset=False, padding_idx=None):
        if pruned_weights or compressed_indices_mapping is not None:
            msg = "`pruned_weights` / `compressed_indices_mapping` are not supported"
            raise NotImplementedError(msg)
        table = xembed.QuantizedTable.from_packed(weight, bits)
        return xembed.embedding_bag(indices, table, offsets, scale_grad_by_freq=scale_grad_by_freq, mode=_MODES[mode],
                                    per_sample_weights=per_sample_weights, include_last_offset=include_last_offset,
                                    padding_idx=padding_idx)

    return op


def _prepack(bits):
    def op(weight):
        return xembed.quantize_rowwise(weight, bits).packed

    return op


embedding_bag_byte_rowwise_offsets = _bag(8)
embedding_bag_4bit_rowwise_offsets = _bag(4)
embedding_bag_2bit_rowwise_offsets = _bag(2)
embedding_bag_byte_prepack = _prepack(8)
embedding_bag_4bit_prepack = _prepack(4)
embedding_bag_2bit_prepack = _prepack(2)
