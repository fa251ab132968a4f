"""Row-wise quantized tables (spec QUANT-*): torch's 8-, 4- and 2-bit packed layout on every backend.

:func:`quantize_rowwise` packs a float table exactly as torch's ``embedding_bag_*_prepack`` ops do;
:class:`QuantizedTable` holds the packed rows, and ``xembed.embedding`` / ``embedding_bag`` accept one as
``weight`` (forward only: a quantized table is for inference).  The forward is written once here against
the array API, with the namespace ``xp`` explicit; the unpack-and-reduce primitives are in
:mod:`._primitives._quantized`.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

from array_api_compat import array_namespace, is_dask_namespace, is_jax_namespace, is_torch_namespace
from array_api_compat import device as _device

from . import _core
from . import _primitives as prim
from . import _validate as v
from ._primitives import _quantized as qprim
from ._primitives import _quantized_fallback as codec
from ._primitives import index_dtype
from ._typing import Array, Namespace

__all__ = ["QuantizedTable", "quantize_rowwise"]

BITS = (8, 4, 2)


def _check_bits(bits: Any) -> int:
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or int(bits) not in BITS:
        msg = f"`bits` must be one of {BITS}, got {bits!r}"
        raise ValueError(msg)
    return int(bits)


class _WeightMeta:
    """The metadata the float argument checks read from ``weight`` (2-D float32 of the table's shape)."""

    ndim = 2

    def __init__(self, shape: tuple[int, int], dtype: Any):
        self.shape, self.dtype = shape, dtype


class QuantizedTable:
    """An (N, D) embedding table stored row-wise quantized in torch's packed layout.

    Build one with :func:`quantize_rowwise`, :meth:`from_packed` or :meth:`from_torch`; pass it as ``weight``
    to :func:`xembed.embedding` / :func:`xembed.embedding_bag` for inference.

    Parameters
    ----------
    packed : array of uint8, shape (N, L)
        The packed rows (use :meth:`from_packed`, which checks them).
    bits : {8, 4, 2}
        Bits per code.
    dim : int
        ``embedding_dim`` of the float table.

    See Also
    --------
    quantize_rowwise : Packs a float table.

    Notes
    -----
    Layout QUANT-LAYOUT, forward QUANT-FORWARD; gradients and the training options raise
    NotImplementedError (QUANT-INFERENCE).

    Examples
    --------
    >>> import numpy as np, xembed
    >>> table = xembed.quantize_rowwise(np.ones((3, 8), dtype=np.float32), bits=4)
    >>> table
    QuantizedTable(num_embeddings=3, embedding_dim=8, bits=4)
    >>> xembed.embedding_bag(np.array([[0, 2]]), table, mode="sum")
    array([[2., 2., 2., 2., 2., 2., 2., 2.]], dtype=float32)
    """

    __slots__ = ("_bits", "_dim", "_packed")

    def __init__(self, packed: Array, bits: int, dim: int):
        self._packed, self._bits, self._dim = packed, bits, dim

    @classmethod
    def from_packed(cls, packed: Array, bits: int) -> QuantizedTable:
        """Wrap packed rows in torch's layout; the array is not copied.

        Parameters
        ----------
        packed : array of uint8, shape (N, L)
            Rows as torch's prepack ops write them: the codes, then the scale and the bias.
        bits : {8, 4, 2}
            Bits per code; ``embedding_dim`` is ``L - 8`` for 8 bits and ``(L - 4) * 8 / bits`` for 4 and 2.

        Returns
        -------
        QuantizedTable
            The table over ``packed``.

        Raises
        ------
        TypeError
            ``packed`` is not a uint8 array.
        ValueError
            ``packed`` is not 2-D, its rows match no ``embedding_dim`` or ``bits`` is not 8, 4 or 2.

        Notes
        -----
        QUANT-ERRORS.

        Examples
        --------
        >>> import numpy as np, xembed
        >>> packed = xembed.quantize_rowwise(np.ones((2, 4), dtype=np.float32)).packed
        >>> xembed.QuantizedTable.from_packed(packed, bits=8).shape
        (2, 4)
        """
        bits = _check_bits(bits)
        v.check_is_array("packed", packed)
        xp = array_namespace(packed)
        if packed.dtype != xp.uint8:
            msg = f"`packed` must have dtype uint8, got {packed.dtype}"
            raise TypeError(msg)
        if packed.ndim != 2:
            msg = f"`packed` must be 2-D (num_embeddings, row bytes), got shape {tuple(packed.shape)}"
            raise ValueError(msg)
        row, overhead = int(packed.shape[1]), codec.OVERHEAD[bits]
        if row < overhead:
            msg = (f"`packed` rows of {row} bytes match no embedding_dim for `bits`={bits}: a row is the codes "
                   f"followed by {overhead} bytes of scale and bias")
            raise ValueError(msg)
        return cls(packed, bits, (row - overhead) * 8 // bits)

    @classmethod
    def from_torch(cls, source: Any) -> QuantizedTable:
        """The table of a torch quantized embedding module, as the bytes torch's ops run on.

        Parameters
        ----------
        source : torch.nn.Module or dict or torch.Tensor
            A ``torch.ao.nn.quantized.Embedding`` / ``EmbeddingBag``, its state dict, or its quantized weight
            (``per_channel_affine_float_qparams``; ``quint8``, ``quint4x2`` or ``quint2x4``).

        Returns
        -------
        QuantizedTable
            Packed rows of torch uint8 on the weight's device.

        Raises
        ------
        TypeError
            ``source`` holds no quantized embedding weight.

        Notes
        -----
        QUANT-TORCH-INTEROP.

        Examples
        --------
        >>> import warnings, xembed
        >>> from torch.ao.nn.quantized import EmbeddingBag
        >>> with warnings.catch_warnings():  # torch deprecates building quantized tensors
        ...     warnings.simplefilter("ignore", UserWarning)
        ...     module = EmbeddingBag(10, 8)
        >>> xembed.QuantizedTable.from_torch(module).shape
        (10, 8)
        """
        import torch

        qweight = source
        if isinstance(source, dict):
            qweight = source.get("_packed_params._packed_weight")
        elif hasattr(source, "weight") and callable(source.weight):
            qweight = source.weight()
        widths = {torch.quint8: 8, torch.quint4x2: 4, torch.quint2x4: 2}
        if not isinstance(qweight, torch.Tensor) or qweight.dtype not in widths:
            msg = ("`source` must be a torch.ao.nn.quantized Embedding / EmbeddingBag, its state dict or its "
                   f"quantized weight (quint8, quint4x2 or quint2x4), got {type(qweight).__name__}")
            raise TypeError(msg)
        bits = widths[qweight.dtype]
        scale = qweight.q_per_channel_scales().to(torch.float32)
        bias = qweight.q_per_channel_zero_points().to(torch.float32) * scale * -1  # torch's prepack: bias = -zp * scale
        tail_dtype = torch.float32 if bits == 8 else torch.float16
        tail = torch.stack([scale, bias], dim=1).to(tail_dtype).view(torch.uint8)
        codes = qweight.int_repr().reshape(qweight.shape[0], -1)
        return cls.from_packed(torch.cat([codes, tail], dim=1), bits)

    @property
    def packed(self) -> Array:
        """The packed rows.

        Returns
        -------
        array of uint8, shape (N, L)
            The layout of torch's prepack ops, in the namespace and on the device they were given in.

        Examples
        --------
        >>> import numpy as np, xembed
        >>> table = xembed.quantize_rowwise(np.ones((3, 8), dtype=np.float32), bits=4)
        >>> table.packed.shape
        (3, 8)
        """
        return self._packed

    @property
    def bits(self) -> int:
        """Number of bits per code.

        Returns
        -------
        int
            8, 4 or 2.

        Examples
        --------
        >>> import numpy as np, xembed
        >>> table = xembed.quantize_rowwise(np.ones((3, 8), dtype=np.float32), bits=4)
        >>> table.bits
        4
        """
        return self._bits

    @property
    def shape(self) -> tuple[int, int]:
        """The shape of the float table.

        Returns
        -------
        tuple of int
            ``(num_embeddings, embedding_dim)``.

        Examples
        --------
        >>> import numpy as np, xembed
        >>> table = xembed.quantize_rowwise(np.ones((3, 8), dtype=np.float32), bits=4)
        >>> table.shape
        (3, 8)
        """
        return int(self._packed.shape[0]), self._dim

    @property
    def nbytes(self) -> int:
        """Size of the packed table in bytes.

        Returns
        -------
        int
            ``N * L``: here 4 bytes of codes and 4 of scale and bias per row.

        Examples
        --------
        >>> import numpy as np, xembed
        >>> table = xembed.quantize_rowwise(np.ones((3, 8), dtype=np.float32), bits=4)
        >>> table.nbytes
        24
        """
        return int(self._packed.shape[0]) * int(self._packed.shape[1])

    def dequantize(self) -> Array:
        """The float table the codes stand for.

        Returns
        -------
        array of float32, shape (N, D)
            ``code * scale + bias`` for every entry (torch's ``embedding_bag_*_unpack``).

        Examples
        --------
        >>> import numpy as np, xembed
        >>> xembed.quantize_rowwise(np.array([[0.0, 1.0]], dtype=np.float32)).dequantize()
        array([[0., 1.]], dtype=float32)
        """
        xp = array_namespace(self._packed)
        return codec.dequantize_rows(self._packed, self._bits, self._dim, xp)

    def _meta(self, xp: Namespace) -> _WeightMeta:
        return _WeightMeta(self.shape, xp.float32)

    def __repr__(self) -> str:
        n, d = self.shape
        return f"QuantizedTable(num_embeddings={n}, embedding_dim={d}, bits={self._bits})"


def quantize_rowwise(weight: Array, bits: int = 8, *, xp: Namespace | None = None) -> QuantizedTable:
    """Quantize each row of a float table with its own scale and bias, in torch's packed layout.

    Parameters
    ----------
    weight : array, shape (N, D)
        A finite real floating table (read as float32; never modified).  ``D`` must be a positive multiple of
        ``8 / bits``, as in torch.
    bits : {8, 4, 2}, default 8
        Bits per code.
    xp : namespace, optional
        The array namespace; inferred from ``weight`` when None.

    Returns
    -------
    QuantizedTable
        Packed rows in ``weight``'s namespace and on its device: exactly the bytes of torch's
        ``embedding_bag_byte_prepack`` / ``embedding_bag_4bit_prepack`` / ``embedding_bag_2bit_prepack``.

    Raises
    ------
    ValueError
        ``bits`` is not 8, 4 or 2, ``D`` does not fit the width, or ``weight`` is not finite.
    TypeError
        ``weight`` is not a real floating array.

    Notes
    -----
    QUANT-PREPACK.

    Examples
    --------
    >>> import numpy as np, xembed
    >>> table = xembed.quantize_rowwise(np.arange(8, dtype=np.float32).reshape(2, 4), bits=8)
    >>> table.packed.shape, table.nbytes
    ((2, 12), 24)
    >>> xembed.embedding(np.array([1]), table)
    array([[4., 5., 6., 7.]], dtype=float32)
    """
    bits = _check_bits(bits)
    v.check_is_array("weight", weight)
    ns = array_namespace(weight) if xp is None else xp
    v.check_weight(weight, ns)
    per = 8 // bits
    if weight.shape[1] == 0 or weight.shape[1] % per:
        msg = (f"`weight` must have an embedding_dim that is a positive multiple of {per} for `bits`={bits}, "
               f"got shape {tuple(weight.shape)}")
        raise ValueError(msg)
    if is_torch_namespace(ns):
        weight = weight.detach()
    w = ns.astype(weight, ns.float32)
    if prim.has_values(w, xp=ns) and not bool(ns.all(ns.isfinite(w))):
        msg = "`weight` must be finite to be quantized (a row's scale and bias come from its min and max)"
        raise ValueError(msg)
    packed = _pack8(w, ns) if bits == 8 else _pack_nbit(w, bits, ns)
    return QuantizedTable(packed, bits, int(weight.shape[1]))


def _divide(x: Array, divisor: float, xp: Namespace) -> Array:
    """``x / divisor`` correctly rounded: XLA turns a division by a constant into a multiplication by its
    (rounded) reciprocal, so the divisor is an array."""
    return x / xp.full(x.shape, divisor, dtype=x.dtype, device=_device(x))


def _pack8(w: Array, xp: Namespace) -> Array:
    """8 bits: scale ``range / 255`` and bias ``min`` as float32, codes ``rint((x - min) * 255 / (range + 1e-8))``."""
    lo, hi = xp.min(w, axis=1), xp.max(w, axis=1)
    spread = hi - lo
    inverse = 255.0 / (spread + 1e-8)
    codes = xp.clip(xp.round((w - lo[:, None]) * inverse[:, None]), 0, 255)
    return xp.concat([xp.astype(codes, xp.uint8), codec.encode_float32(_divide(spread, 255.0, xp), xp),
                      codec.encode_float32(lo, xp)], axis=1)


def _pack_nbit(w: Array, bits: int, xp: Namespace) -> Array:
    """4 and 2 bits: bias ``min`` rounded to float16 first, scale ``range / (2**bits - 1)`` rounded to float16
    (1 for a constant row), codes ``rint((x - bias) / scale)`` clipped to ``[0, 2**bits)``."""
    top = (1 << bits) - 1
    lo = codec.round_to_float16(xp.min(w, axis=1), xp)
    spread = xp.max(w, axis=1) - lo
    scale = codec.round_to_float16(xp.where(spread == 0, 1.0, _divide(spread, float(top), xp)), xp)
    if prim.has_values(w, xp=xp) and not bool(xp.all(xp.isfinite(lo) & xp.isfinite(scale))):
        msg = (f"`weight` has a row whose min or (max - min) / {top} is beyond float16's range (65504); "
               f"{bits}-bit rows store them as float16")
        raise ValueError(msg)
    usable = (scale != 0) & xp.isfinite(1.0 / xp.where(scale == 0, 1.0, scale))
    scale = xp.where(usable, scale, 1.0)
    inverse = 1.0 / scale
    codes = xp.clip(xp.round((w - lo[:, None]) * inverse[:, None]), 0, top)
    return xp.concat([codec.pack_codes(xp.astype(codes, xp.int32), bits, xp), codec.encode_float16(scale, xp),
                      codec.encode_float16(lo, xp)], axis=1)


# ---------------------------------------------------------------------------------------------------------
# forward


def _refuse_training(max_norm: float | None, scale_grad_by_freq: bool, sparse: bool, want_vjp: bool,
                     psw: Array | None) -> None:
    """QUANT-INFERENCE: the options that train or modify a table raise, after the argument checks."""
    what = None
    if want_vjp:
        what = "gradients (`*_vjp`)"
    elif max_norm is not None:
        what = f"`max_norm`={max_norm!r} (it renormalises the table in place)"
    elif scale_grad_by_freq:
        what = "`scale_grad_by_freq`=True"
    elif sparse:
        what = "`sparse`=True"
    elif psw is not None and bool(getattr(psw, "requires_grad", False)):
        what = "gradients of `per_sample_weights` (it requires grad)"
    if what is not None:
        msg = f"a QuantizedTable `weight` is for inference: {what} is not supported; dequantize() it to train"
        raise NotImplementedError(msg)


def _resolve(xp: Namespace | None, **arrays: Array | None) -> tuple[Namespace, tuple[Array | None, ...]]:
    """:func:`xembed._backends.resolve`: the namespace, and the arrays as it reads them (a NumPy packed table
    next to dask arrays becomes a one-chunk dask array, DASK-DISPATCH)."""
    from ._backends import resolve  # _backends imports this module's callers, not this module

    return resolve(xp, **arrays)


def embedding(input: Array, table: QuantizedTable, padding_idx: Any, max_norm: Any, norm_type: Any,
              scale_grad_by_freq: Any, sparse: Any, xp: Namespace | None, want_vjp: bool) -> Array:
    """``xembed.embedding`` with a quantized ``weight``: ``table.dequantize()[input]`` (QUANT-FORWARD)."""
    ns, (packed, input) = _resolve(xp, weight=table.packed, input=input)
    input = prim.plain("input", input, xp=ns)  # ARR-NORMALIZE
    _pad, mnorm, _ntype, sgbf, sparse_ = v.check_embedding_metadata(
        input, table._meta(ns), padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse, ns)
    _refuse_training(mnorm, sgbf, sparse_, want_vjp, None)
    n_rows, dim = table.shape
    if is_dask_namespace(ns):  # QUANT-DASK
        from . import _dask

        return _dask.quantized_embedding(input, packed, table.bits, dim, ns)
    v.check_indices_in_range(input, n_rows, ns)
    flat = ns.astype(ns.reshape(input, (-1,)), index_dtype(ns, _device(table.packed)))
    bad = None
    if is_jax_namespace(ns):
        from ._jax_autodiff import poison, sanitize_indices

        flat, bad = sanitize_indices(flat, n_rows, ns)
    rows = qprim.gather_rows(table.packed, table.bits, dim, flat, ns)
    if bad is not None:
        rows = poison(rows, bad)
    return ns.reshape(rows, (*tuple(input.shape), dim))


def embedding_bag(input: Array, table: QuantizedTable, offsets: Array | None, max_norm: Any, norm_type: Any,
                  scale_grad_by_freq: Any, mode: Any, sparse: Any, per_sample_weights: Array | None,
                  include_last_offset: Any, padding_idx: Any, xp: Namespace | None, want_vjp: bool,
                  lengths: Array | None = None) -> Array:
    """``xembed.embedding_bag`` with a quantized ``weight``: the float semantics on ``table.dequantize()``,
    computed from the packed rows (QUANT-FORWARD)."""
    ns, (packed, input, offsets, per_sample_weights, lengths) = _resolve(
        xp, weight=table.packed, input=input, offsets=offsets, per_sample_weights=per_sample_weights, lengths=lengths)
    input, offsets, lengths, per_sample_weights = (  # ARR-NORMALIZE
        prim.plain(name, x, xp=ns) for name, x in
        (("input", input), ("offsets", offsets), ("lengths", lengths), ("per_sample_weights", per_sample_weights)))
    a = v.check_bag_metadata(input, table._meta(ns), offsets, per_sample_weights, mode, max_norm, norm_type,
                             scale_grad_by_freq, sparse, include_last_offset, padding_idx, ns, lengths=lengths)
    _refuse_training(a.max_norm, a.scale_grad_by_freq, a.sparse, want_vjp, per_sample_weights)
    if is_dask_namespace(ns):  # QUANT-DASK: the dask path checks the values in its graph
        from . import _dask

        return _dask.quantized_embedding_bag(input, packed, table.bits, table.shape[1], offsets, lengths,
                                             per_sample_weights, a, ns)
    if lengths is not None:  # EXT-LENGTHS
        offsets = v.offsets_from_lengths(lengths, input.shape[0], ns)
        a = dataclasses.replace(a, include_last_offset=True)
    elif input.ndim == 1:
        v.check_offsets_values(offsets, input.shape[0], a.include_last_offset, ns)
    v.check_indices_in_range(input, table.shape[0], ns)
    if is_torch_namespace(ns) and per_sample_weights is not None:
        per_sample_weights = per_sample_weights.detach()
    if not is_jax_namespace(ns):
        return bag_forward(input, table, offsets, per_sample_weights, a, ns)
    from ._jax_autodiff import poison_bags, sanitize_indices, sanitize_offsets

    idx, bad = sanitize_indices(input, table.shape[0], ns)
    offs_bad = None
    if offsets is not None and input.ndim == 1:
        offsets, offs_bad = sanitize_offsets(offsets, input.shape[0], a.include_last_offset)
    out = bag_forward(idx, table, offsets, per_sample_weights, a, ns)
    return poison_bags(out, input.ndim, bad, offsets, offs_bad, a.include_last_offset, ns)


def bag_forward(input: Array, table: QuantizedTable, offsets: Array | None, per_sample_weights: Array | None,
                a: v.BagArgs, xp: Namespace) -> Array:
    """The bag reduction of :func:`xembed._core.embedding_bag_vjp` (forward only) on packed rows: the same
    layout, padding compaction and divisors; the gathers unpack the rows."""
    packed, bits, dim = table.packed, table.bits, table.shape[1]
    idx, offs = _core._bag_layout(input, offsets, a.include_last_offset, xp, _device(packed))
    num_bags = offs.shape[0] - 1
    psw = None if per_sample_weights is None else xp.reshape(per_sample_weights, (-1,))[:idx.shape[0]]
    idx_c, offs_c, psw_c, _valid, parked = _core.compact_padding(idx, offs, psw, a.padding_idx, xp)
    if a.mode == "max":
        out = qprim.gather_segment_max(packed, bits, dim, idx_c, offs_c, xp)
    elif a.mode == "min":
        out = qprim.gather_segment_min(packed, bits, dim, idx_c, offs_c, xp)
    else:
        total = qprim.gather_segment_sum(packed, bits, dim, idx_c, offs_c, psw_c, xp)
        bag_size = offs_c[1:] - offs_c[:-1]
        out, _inv = _core.divide_bags(total, a.mode, bag_size, psw_c, offs_c, xp)
    return out[:num_bags, ...] if parked else out
