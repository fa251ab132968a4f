"""One-kernel forwards for the common calls, and their transposes (extra ``xembed[fast]``; spec
``PRIM-FAST-FORWARD``, ``PRIM-FAST-TORCH``).

``embedding_bag`` / ``embedding`` on plain ``numpy.ndarray`` arguments with options whose checks need no
array values beyond what the kernel reads anyway run here: the options are checked in a few attribute
comparisons, then one serial kernel checks the offsets and every index while it reduces (padding entries
skipped inside the loop, no compaction).  Anything else -- another array type, a subclass, a
non-native byte order, ``max_norm``, the extensions, a call big enough for the parallel kernels -- returns
``None`` and the caller takes the general path.  So does a call whose values the kernel rejects: the general
path then raises the error of the ``ERR-*`` rule; the output the kernel wrote is a fresh array, dropped.

Results are bit-identical to the general numba path: the same loops in the same order and dtype.  The
transposes (the weight gradients of sum / mean bags and of lookups) are too: the general path's products, added
in its deterministic order.  The torch route (:mod:`xembed._backends._torch_fast`) runs them on views of CPU
tensors, through the plans (:func:`bag_plan`, :func:`lookup_plan`) that hold a call's resolved options.
16-bit tables (float16; torch's bfloat16) are read as their bit patterns and widened to float32 value by value
(ACC-LOWP): numba has no 16-bit floats.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba.core import types
from numba.extending import intrinsic, overload

from . import _numba
from ._numba import PREFETCH, _prefetch, bounds_kernel

__all__ = ["embedding", "embedding_bag"]

_OK, _BAD_OFFSETS, _BAD_INDEX = 0, 1, 2
_MODES = {"sum": 0, "mean": 1, "max": 2}
_WEIGHT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16))
# 16-bit tables reach the kernels as their bit patterns (numba has no 16-bit floats): float16 as uint16,
# bfloat16 (torch's; NumPy has none) as int16.  The kernels widen each value to float32 and accumulate there.
_NATIVE, _FLOAT16, _BFLOAT16 = 0, 1, 2
_INDEX_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))
_NO_PSW = {np.dtype(dt): np.empty(0, dt) for dt in (np.float32, np.float64)}
_MAX_NDIM = 64  # EMB-NDIM (``_validate.MAX_NDIM``): larger inputs go to the general path, which raises


def _check_offsets(offsets: Any, n: int, include_last: bool) -> bool:  # pragma: no cover - compiled
    """ERR-OFFSETS-FIRST / -DECREASING / -END and BAG-LAST-OFFSET, as :func:`check_offsets_values`."""
    m = offsets.shape[0]
    if m == 0:
        return True
    if offsets[0] != 0:
        return False
    for p in range(1, m):
        if offsets[p] < offsets[p - 1]:
            return False
    last = offsets[m - 1]
    return last <= n and (last == n or not include_last)


def _check_values(idx: Any, offsets: Any, include_last: bool, rows: int) -> bool:  # pragma: no cover - compiled
    """The checks of :func:`_bag_forward` without the reduction: offsets (when given) and every index (one
    min / max pass, the general path's ``bounds_kernel``)."""
    if offsets.shape[0] != 0 and not _check_offsets_kernel(offsets, idx.shape[0], include_last):
        return False
    if idx.shape[0] == 0:
        return True
    lo, hi = bounds_kernel(idx)
    return lo >= 0 and hi < rows


def _span(offsets: Any, b: int, length: int, n: int) -> tuple[Any, Any]:  # pragma: no cover - compiled
    """The positions ``[start, stop)`` of bag ``b``: ``offsets[b]`` to the next offset (``n`` after the last),
    or ``b * length`` to ``(b + 1) * length`` for a 2-D input (``length`` >= 0)."""
    if length >= 0:
        return np.int64(b * length), np.int64((b + 1) * length)
    stop = np.int64(offsets[b + 1]) if b + 1 < offsets.shape[0] else np.int64(n)
    return np.int64(offsets[b]), stop


_span_kernel = _numba._jit(_span, False)


@intrinsic
def _float16_bits(_typingctx: Any, bits: Any) -> Any:  # pragma: no cover - compiled
    """The float32 value of the float16 whose bits are ``bits`` (uint16): exact, NaN and infinities kept."""
    if bits != types.uint16:
        return None

    def codegen(_context: Any, builder: Any, _signature: Any, args: Any) -> Any:
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(bits), codegen


@intrinsic
def _bfloat16_bits(_typingctx: Any, bits: Any) -> Any:  # pragma: no cover - compiled
    """The float32 value of the bfloat16 whose bits are ``bits`` (int16): its bits are the top half of it."""
    if bits != types.int16:
        return None

    def codegen(_context: Any, builder: Any, _signature: Any, args: Any) -> Any:
        i32 = ir.IntType(32)
        return builder.bitcast(builder.shl(builder.zext(args[0], i32), ir.Constant(i32, 16)), ir.FloatType())

    return types.float32(bits), codegen


def _value(weight: Any, r: int, d: int) -> Any:
    """``weight[r, d]`` as a number: itself for a float table, widened to float32 for the bits of a 16-bit one."""
    raise NotImplementedError  # compiled code only: the overload below


# no annotations here: numba compares this signature, annotations included, with the implementations'
@overload(_value, inline="always")
def _value_impl(weight, r, d):  # type: ignore[no-untyped-def]  # noqa: ARG001  # pragma: no cover - compiled
    if isinstance(weight.dtype, types.Float):
        return lambda weight, r, d: weight[r, d]
    if weight.dtype == types.uint16:
        return lambda weight, r, d: _float16_bits(weight[r, d])  # type: ignore[call-arg]
    if weight.dtype == types.int16:
        return lambda weight, r, d: _bfloat16_bits(weight[r, d])  # type: ignore[call-arg]
    return None


def _bag_forward(weight: Any, idx: Any, offsets: Any, num_bags: int, length: int, include_last: bool,
                 psw: Any, mode: int, pad: int, out: Any, line: int) -> int:  # pragma: no cover - compiled
    """Bag ``b`` is ``idx[offsets[b]:offsets[b+1]]`` (its end ``n`` past the last offset), or
    ``idx[b*length:(b+1)*length]`` when ``offsets`` is empty and ``length`` >= 0 (a 2-D input).  Entries equal
    to ``pad`` are skipped.  ``out`` is zeros, float32 for the bits of a 16-bit table; returns ``_OK`` or which
    check failed."""
    n = idx.shape[0]
    rows = weight.shape[0]
    dim = weight.shape[1]
    if length < 0 and not _check_offsets_kernel(offsets, n, include_last):
        return _BAD_OFFSETS
    one = out.dtype.type(1)
    for b in range(num_bags):
        start, stop = _span_kernel(offsets, b, length, n)
        count = 0
        for i in range(start, stop):
            if i + PREFETCH < n:  # across bag ends: a bag of 20 would start 8 rows cold
                ahead = np.int64(idx[i + PREFETCH])
                if 0 <= ahead < rows:
                    for c in range(0, dim, line):
                        _prefetch(weight, ahead, c)  # type: ignore[call-arg]
            r = idx[i]
            if r < 0 or r >= rows:
                return _BAD_INDEX
            if r == pad:
                continue
            if mode == 2:
                if count == 0:
                    for d in range(dim):
                        out[b, d] = _value(weight, r, d)
                else:
                    for d in range(dim):
                        v = _value(weight, r, d)
                        if v > out[b, d]:  # noqa: PLR1730 - strict: ties keep the first, a leading NaN sticks
                            out[b, d] = v
            else:  # x * 1 is x exactly: one loop for both, bit for bit the general path's
                s = psw[i] if psw.shape[0] != 0 else one
                for d in range(dim):
                    out[b, d] += s * _value(weight, r, d)
            count += 1
        if mode == 1 and count > 1:
            divisor = out.dtype.type(count)  # in the accumulation dtype, as the general path divides
            for d in range(dim):
                out[b, d] = out[b, d] / divisor
    return _OK


def _bag_transpose(grad: Any, idx: Any, offsets: Any, num_bags: int, length: int, psw: Any, mode: int, pad: int,
                   out: Any, entry_rows: Any) -> int:  # pragma: no cover - compiled
    """The transpose of :func:`_bag_forward`'s ``sum`` / ``mean`` (its weight gradient): ``out[idx[i]] +=
    grad[b] * coef_i``, ``coef_i`` = ``psw[i]`` (sum) or ``1 / count_b`` (mean), over the non-padding entries in
    position order: the general path's products, added in its deterministic scatter's order.  ``out`` is
    zeros; the values were checked by the forward.  With ``entry_rows`` (non-empty): the COO entries instead,
    ``entry_rows[k]`` and ``out[k]`` for the k-th non-padding position; returns their number."""
    n = idx.shape[0]
    dim = out.shape[1]
    one = out.dtype.type(1)
    entries = entry_rows.shape[0] != 0
    k = 0
    for b in range(num_bags):
        start, stop = _span_kernel(offsets, b, length, n)
        coef = one
        if mode == 1:
            count = 0
            for i in range(start, stop):
                if idx[i] != pad:
                    count += 1
            if count > 0:
                coef = one / out.dtype.type(count)
        for i in range(start, stop):
            r = idx[i]
            if r == pad:
                continue
            s = psw[i] if psw.shape[0] != 0 else coef
            if entries:
                entry_rows[k] = r
                for d in range(dim):
                    out[k, d] = grad[b, d] * s
            else:
                for d in range(dim):
                    out[r, d] += grad[b, d] * s
            k += 1
    return k


def _lookup(weight: Any, idx: Any, zero_row: int, out: Any) -> int:  # pragma: no cover - compiled
    """``out[i] = weight[idx[i]]``, zeros where ``idx[i] == zero_row`` (-1: none; the transpose of the
    gradient, whose padding rows are zero)."""
    rows = weight.shape[0]
    for i in range(idx.shape[0]):
        r = idx[i]
        if r < 0 or r >= rows:
            return _BAD_INDEX
        if r == zero_row:
            for d in range(weight.shape[1]):
                out[i, d] = 0
            continue
        for d in range(weight.shape[1]):  # an explicit loop: a slice copy costs a view per row
            out[i, d] = weight[r, d]
    return _OK


def _lookup_transpose(grad: Any, idx: Any, pad: int, out: Any, entry_rows: Any) -> int:  # pragma: no cover - compiled
    """The weight gradient of a lookup: ``out[idx[i]] += grad[i]`` in position order, padding rows skipped; with
    ``entry_rows`` (non-empty) its COO entries, as :func:`_bag_transpose`."""
    entries = entry_rows.shape[0] != 0
    k = 0
    for i in range(idx.shape[0]):
        r = idx[i]
        if r == pad:
            continue
        if entries:
            entry_rows[k] = r
            for d in range(out.shape[1]):
                out[k, d] = grad[i, d]
        else:
            for d in range(out.shape[1]):
                out[r, d] += grad[i, d]
        k += 1
    return k


_check_offsets_kernel = _numba._jit(_check_offsets, False)
bag_forward_kernel = _numba._jit(_bag_forward, False)
check_values_kernel = _numba._jit(_check_values, False)
lookup_kernel = _numba._jit(_lookup, False)
bag_transpose_kernel = _numba._jit(_bag_transpose, False)
lookup_transpose_kernel = _numba._jit(_lookup_transpose, False)
KERNELS = (_check_offsets_kernel, bag_forward_kernel, check_values_kernel, lookup_kernel, bag_transpose_kernel,
           lookup_transpose_kernel)


def _serial(work: int) -> bool:
    """Whether the general path would run a call doing ``work`` (rows x D) on one thread: then the one kernel
    is as fast at any size; above that, the parallel kernels are faster."""
    return work < _numba._PARALLEL_MIN_WORK or _numba._parallel_threads(work) == 0


def _flag(x: Any) -> bool:
    return x is True or x is False


# A bag call the kernels take, its options resolved: (idx, offsets, num_bags, length, include_last, psw, mode,
# pad, table format); ``idx`` and ``psw`` flat, ``offsets`` empty for a 2-D input of bags of ``length``.
BagPlan = tuple[np.ndarray, np.ndarray, int, int, bool, np.ndarray, int, int, int]
# A lookup the kernels take: (idx flat, output shape, padding row or -1, table format).
LookupPlan = tuple[np.ndarray, tuple[int, ...], int, int]


def _format(weight: np.ndarray, bfloat16: bool) -> int | None:
    """The table format of ``weight`` (None: not a table the kernels read).  ``bfloat16``: ``weight`` holds the
    bits of a bfloat16 table as int16 (torch's; NumPy has no bfloat16)."""
    if bfloat16:
        return _BFLOAT16 if weight.dtype == np.int16 else None
    if weight.dtype not in _WEIGHT_DTYPES:
        return None
    return _FLOAT16 if weight.dtype == np.float16 else _NATIVE


def _table(weight: np.ndarray, fmt: int) -> np.ndarray:
    """What the kernels read: the table itself, or the bits of a float16 one."""
    return weight.view(np.uint16) if fmt == _FLOAT16 else weight


def _bag_psw(per_sample_weights: Any, weight: np.ndarray, fmt: int, input: np.ndarray) -> np.ndarray | None:
    """The flat per_sample_weights the kernel multiplies by (float32 for a float16 table: widened exactly), or
    None when the general path must take them (another dtype or shape; a bfloat16 table)."""
    p = per_sample_weights
    if type(p) is not np.ndarray or p.dtype != weight.dtype or p.shape != input.shape or fmt == _BFLOAT16:
        return None
    return p.reshape(-1).astype(np.float32) if fmt == _FLOAT16 else p.reshape(-1)


def bag_plan(input: Any, weight: Any, offsets: Any, max_norm: Any, norm_type: Any, scale_grad_by_freq: Any,
             mode: Any, sparse: Any, per_sample_weights: Any, include_last_offset: Any,
             padding_idx: Any, any_size: bool = False, bfloat16: bool = False) -> BagPlan | None:
    """The plan of an ``embedding_bag`` call on NumPy arrays whose options and metadata the kernels take (no
    value is read), or None (the general path decides).  Calls the parallel kernels would run faster are
    declined, unless ``any_size`` (a caller that only checks the values here).  ``bfloat16``: see
    :func:`_format`."""
    nd = np.ndarray
    if (type(input) is not nd or type(weight) is not nd or max_norm is not None or type(mode) is not str
            or mode not in _MODES or weight.ndim != 2
            or input.dtype not in _INDEX_DTYPES or not (_flag(sparse) and _flag(scale_grad_by_freq)
                                                        and _flag(include_last_offset))
            or (sparse and scale_grad_by_freq) or (mode == "max" and (sparse or scale_grad_by_freq))
            or type(norm_type) not in (int, float) or not norm_type > 0):
        return None
    fmt = _format(weight, bfloat16)
    pad = _padding(padding_idx, weight.shape[0])
    if fmt is None or pad is None:
        return None
    psw = _NO_PSW[np.dtype(np.float32) if fmt else weight.dtype]
    if per_sample_weights is not None:
        given = None if mode != "sum" else _bag_psw(per_sample_weights, weight, fmt, input)
        if given is None:
            return None
        psw = given
    if input.ndim == 2 and offsets is None:
        num_bags, length = input.shape
        offs = _NO_OFFSETS
    elif (input.ndim == 1 and type(offsets) is nd and offsets.ndim == 1 and offsets.dtype in _INDEX_DTYPES
          and offsets.shape[0] != 0):  # no offsets: no bag, yet every index is checked
        num_bags, length, offs = offsets.shape[0] - (1 if include_last_offset else 0), -1, offsets
    else:
        return None
    if not (any_size or _serial(input.size * weight.shape[1])):
        return None
    return input.reshape(-1), offs, num_bags, length, include_last_offset, psw, _MODES[mode], pad, fmt


def bag_forward(plan: BagPlan, weight: np.ndarray) -> np.ndarray | None:
    """The bags of ``plan`` over ``weight``, or None when a value fails its check.  A float16 table gives
    float16 bags, a bfloat16 one float32 bags (accumulated in float32; the caller rounds them)."""
    idx, offs, num_bags, length, include_last, psw, mode, pad, fmt = plan
    table = _table(weight, fmt)
    out = np.zeros((num_bags, weight.shape[1]), np.float32 if fmt else weight.dtype)
    status = bag_forward_kernel(table, idx, offs, num_bags, length, include_last, psw, mode, pad, out,
                                _numba._line(table))
    if status != _OK:
        return None
    return out.astype(np.float16) if fmt == _FLOAT16 else out


def bag_values_valid(plan: BagPlan, rows: int) -> bool:
    """Whether the offsets and indices of ``plan`` pass the checks ``bag_forward`` makes (for a caller that
    reduces with another kernel)."""
    idx, offs, _, _, include_last, *_ = plan
    return bool(check_values_kernel(idx, offs, include_last, rows))


_NO_ENTRIES = np.empty(0, np.int64)
# A sparse weight gradient: the row of each non-padding position and its gradient row (torch's uncoalesced COO).
Entries = tuple[np.ndarray, np.ndarray]


def _transposed(kernel: Any, grad: np.ndarray, n: int, rows: int, sparse: bool, *args: Any) -> np.ndarray | Entries:
    if not sparse:
        out = np.zeros((rows, grad.shape[1]), grad.dtype)
        kernel(grad, *args, out, _NO_ENTRIES)
        return out
    entry_rows, values = np.empty(max(n, 1), np.int64), np.empty((n, grad.shape[1]), grad.dtype)
    k = kernel(grad, *args, values, entry_rows)
    return entry_rows[:k], values[:k]


def bag_transpose(plan: BagPlan, grad: np.ndarray, rows: int, sparse: bool = False) -> np.ndarray | Entries:
    """The weight gradient of a ``sum`` / ``mean`` plan whose forward succeeded: (rows, D), or its entries."""
    idx, offs, num_bags, length, _, psw, mode, pad, _ = plan
    return _transposed(bag_transpose_kernel, grad, idx.shape[0], rows, sparse, idx, offs, num_bags, length, psw,
                       mode, pad)


def embedding_bag(input: Any, weight: Any, offsets: Any, max_norm: Any, norm_type: Any, scale_grad_by_freq: Any,
                  mode: Any, sparse: Any, per_sample_weights: Any, include_last_offset: Any,
                  padding_idx: Any) -> np.ndarray | None:
    """The forward of ``xembed.embedding_bag`` in one kernel, or None (the general path decides)."""
    plan = bag_plan(input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, mode, sparse,
                    per_sample_weights, include_last_offset, padding_idx)
    return None if plan is None else bag_forward(plan, weight)


_NO_OFFSETS = np.empty(0, np.int64)


def _padding(padding_idx: Any, rows: int) -> int | None:
    """The padding row in [0, rows), -1 for none, None when the general path must check it."""
    if padding_idx is None:
        return -1
    if type(padding_idx) is not int or not -rows <= padding_idx < rows:
        return None
    return padding_idx + rows if padding_idx < 0 else padding_idx


def lookup_plan(input: Any, weight: Any, padding_idx: Any, max_norm: Any, norm_type: Any, scale_grad_by_freq: Any,
                sparse: Any, bfloat16: bool = False) -> LookupPlan | None:
    """The plan of an ``embedding`` call on NumPy arrays the kernels take, or None.  ``bfloat16``: see
    :func:`_format`."""
    nd = np.ndarray
    if (type(input) is not nd or type(weight) is not nd or max_norm is not None or weight.ndim != 2
            or input.ndim >= _MAX_NDIM or input.dtype not in _INDEX_DTYPES
            or not (_flag(sparse) and _flag(scale_grad_by_freq)) or (sparse and scale_grad_by_freq)
            or type(norm_type) not in (int, float) or not norm_type > 0):
        return None
    fmt = _format(weight, bfloat16)
    pad = _padding(padding_idx, weight.shape[0])
    dim = weight.shape[1]
    if fmt is None or pad is None or dim == 0 or not _serial(input.size * dim):
        return None
    return input.reshape(-1), (*input.shape, dim), pad, fmt


def lookup(plan: LookupPlan, weight: np.ndarray, zero_padding: bool = False) -> np.ndarray | None:
    """The rows of ``plan`` (the padding row's as zeros with ``zero_padding``), or None for an index out of
    range; a copy of the stored values (the bits of a bfloat16 table)."""
    idx, shape, pad, fmt = plan
    table = _table(weight, fmt)
    out = np.empty(shape, table.dtype)
    status = lookup_kernel(table, idx, pad if zero_padding else -1, out.reshape(-1, shape[-1]))
    if status != _OK:
        return None
    return out.view(np.float16) if fmt == _FLOAT16 else out


def lookup_transpose(plan: LookupPlan, grad: np.ndarray, rows: int, sparse: bool = False) -> np.ndarray | Entries:
    """The weight gradient of a lookup whose forward succeeded (padding rows zero): (rows, D), or its entries."""
    idx, shape, pad, _ = plan
    return _transposed(lookup_transpose_kernel, grad.reshape(-1, shape[-1]), idx.shape[0], rows, sparse, idx, pad)


def embedding(input: Any, weight: Any, padding_idx: Any, max_norm: Any, norm_type: Any, scale_grad_by_freq: Any,
              sparse: Any) -> np.ndarray | None:
    """The forward of ``xembed.embedding`` in one kernel (range check and row copy), or None."""
    plan = lookup_plan(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse)
    return None if plan is None else lookup(plan, weight)
