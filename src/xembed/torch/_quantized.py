"""``xembed.torch.QuantizedEmbeddingBag``: an inference ``nn.Module`` over a row-wise quantized table.

The packed rows (torch's prepack layout, QUANT-LAYOUT) are a uint8 buffer, so ``state_dict``, ``.to(device)``
and ``load_state_dict`` handle them as any buffer; the forward is :func:`xembed.embedding_bag` on the
:class:`xembed.QuantizedTable` over that buffer (every mode, ``per_sample_weights``, ``padding_idx``,
``include_last_offset``), where torch's ``torch.ao.nn.quantized.EmbeddingBag`` always sums.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch
from torch import Tensor

from .. import _api
from .. import _validate as v
from .._primitives._quantized_fallback import OVERHEAD
from .._quantized import QuantizedTable, quantize_rowwise
from .._quantized import _check_bits as check_bits

__all__ = ["QuantizedEmbeddingBag"]


def _check_size(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        msg = f"`{name}` must be a positive int, got {value!r}"
        raise ValueError(msg)
    return int(value)


@torch.compiler.disable(  # type: ignore[no-untyped-call, untyped-decorator]
    reason="xembed.torch.QuantizedEmbeddingBag runs eagerly: its checks read index values")
def _bag(module: QuantizedEmbeddingBag, input: Tensor, offsets: Tensor | None,
         per_sample_weights: Tensor | None) -> Tensor:
    """Eager even inside a compiled model: the checks read index values, which a graph cannot.

    Plain CPU tensors go through NumPy views of them (no copy), where the fused numba kernels run; torch
    tensors themselves would take the array code.  Anything else (another device, a tensor requiring grad,
    a subclass) stays torch, whose path raises what has to be raised.
    """
    arrays = {"input": input, "offsets": offsets, "per_sample_weights": per_sample_weights, "packed": module.packed}
    if all(x is None or _plain_cpu(x) for x in arrays.values()):
        views = {name: None if x is None else x.numpy() for name, x in arrays.items()}
        out = _api.embedding_bag(views["input"], QuantizedTable.from_packed(views["packed"], module.bits),
                                 views["offsets"], mode=module.mode, per_sample_weights=views["per_sample_weights"],
                                 include_last_offset=module.include_last_offset, padding_idx=module.padding_idx)
        return torch.from_numpy(out)
    return _api.embedding_bag(input, module.table, offsets, mode=module.mode, per_sample_weights=per_sample_weights,
                              include_last_offset=module.include_last_offset, padding_idx=module.padding_idx)


def _plain_cpu(x: Any) -> bool:
    return (type(x) is torch.Tensor and x.device.type == "cpu" and x.layout == torch.strided
            and not x.requires_grad and x.dtype in (torch.int32, torch.int64, torch.float32, torch.uint8))


class QuantizedEmbeddingBag(torch.nn.Module):
    """``EmbeddingBag`` for inference over a row-wise quantized table (8, 4 or 2 bits per value).

    Parameters
    ----------
    num_embeddings, embedding_dim : int
        The shape ``(N, D)`` of the float table; ``D`` a multiple of ``8 / bits``.
    bits : {8, 4, 2}, default 8
        Bits per value.
    mode : {"sum", "mean", "max", "sqrtn", "min"}, default "sum"
        The reduction of each bag.
    include_last_offset : bool, default False
        ``offsets`` ends with the end of the last bag.
    padding_idx : int, optional
        A row left out of every bag and of the mean's divisor.
    device : optional
        Where the packed rows live.

    Attributes
    ----------
    packed : torch.Tensor
        The ``(N, L)`` uint8 buffer of packed rows (torch's prepack layout); the ``state_dict`` key.

    Raises
    ------
    ValueError
        A size that is not a positive int, ``D`` not a multiple of ``8 / bits``, ``bits`` not 8, 4 or 2, an
        unknown ``mode`` or a ``padding_idx`` out of range.
    TypeError
        ``include_last_offset`` is not a bool.

    See Also
    --------
    xembed.QuantizedTable : The table the forward reads.

    Notes
    -----
    A new module's table is all zeros: build one with :meth:`from_float` or :meth:`from_torch`, or load a
    ``state_dict``.  Inference only (QUANT-INFERENCE): the buffer takes no gradient.  Under ``torch.compile``
    the lookup runs eagerly inside the compiled model (a graph break; ``fullgraph=True`` refuses it).

    Examples
    --------
    >>> import torch, xembed.torch as xt
    >>> bag = xt.QuantizedEmbeddingBag.from_float(torch.eye(4), bits=8, mode="sum")
    >>> bag
    QuantizedEmbeddingBag(4, 4, bits=8, mode='sum')
    >>> bag(torch.tensor([[0, 1], [3, 3]]))
    tensor([[1., 1., 0., 0.],
            [0., 0., 0., 2.]])
    """

    packed: Tensor

    def __init__(self, num_embeddings: int, embedding_dim: int, bits: int = 8, mode: str = "sum",
                 include_last_offset: bool = False, padding_idx: int | None = None, device: Any = None) -> None:
        n, d = _check_size("num_embeddings", num_embeddings), _check_size("embedding_dim", embedding_dim)
        bits = check_bits(bits)
        if not isinstance(mode, str) or mode not in v.MODES:
            msg = f"`mode` must be one of {', '.join(map(repr, v.MODES))}, got {mode!r}"
            raise ValueError(msg)
        include_last_offset = v.check_flag("include_last_offset", include_last_offset)
        padding_idx = v.normalize_padding_idx(padding_idx, n)
        if d % (8 // bits):
            msg = f"`embedding_dim` must be a multiple of {8 // bits} for `bits`={bits}, got {d}"
            raise ValueError(msg)
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.bits = n, d, bits
        self.mode, self.include_last_offset, self.padding_idx = mode, include_last_offset, padding_idx
        # all-zero bytes: codes, scale and bias 0, a table of zeros
        self.register_buffer("packed", torch.zeros((n, d * bits // 8 + OVERHEAD[bits]), dtype=torch.uint8,
                                                   device=device))

    @property
    def table(self) -> QuantizedTable:
        """The quantized table over the ``packed`` buffer (not a copy).

        Returns
        -------
        QuantizedTable
            ``(num_embeddings, embedding_dim)`` at ``bits`` bits.

        Examples
        --------
        >>> import xembed.torch as xt
        >>> xt.QuantizedEmbeddingBag(10, 8, bits=4).table
        QuantizedTable(num_embeddings=10, embedding_dim=8, bits=4)
        """
        return QuantizedTable.from_packed(self.packed, self.bits)

    def forward(self, input: Tensor, offsets: Tensor | None = None,
                per_sample_weights: Tensor | None = None) -> Tensor:
        """Reduce the bags of ``input`` over the dequantized rows.

        Parameters
        ----------
        input, offsets, per_sample_weights : torch.Tensor
            As for :meth:`xembed.torch.EmbeddingBag.forward` (``offsets`` and ``per_sample_weights`` optional);
            ``per_sample_weights`` must not require grad (QUANT-INFERENCE).

        Returns
        -------
        torch.Tensor
            The bags, float32, shape ``(B, D)``.

        Examples
        --------
        >>> import torch, xembed.torch as xt
        >>> bag = xt.QuantizedEmbeddingBag.from_float(torch.arange(8.0).reshape(4, 2), mode="max")
        >>> bag(torch.tensor([0, 3, 1]), torch.tensor([0, 2]))
        tensor([[6., 7.],
                [2., 3.]])
        """
        if torch.compiler.is_exporting():
            msg = ("xembed.torch.QuantizedEmbeddingBag cannot be exported (torch.export): its checks read index "
                   "values; export the float model, or use torch.compile, under which the lookup runs eagerly")
            raise NotImplementedError(msg)
        return _bag(self, input, offsets, per_sample_weights)

    @classmethod
    def from_float(cls, source: Tensor | torch.nn.EmbeddingBag, bits: int = 8, mode: str | None = None,
                   include_last_offset: bool | None = None,
                   padding_idx: int | None = None) -> QuantizedEmbeddingBag:
        """Quantize a float table or a float ``torch.nn.EmbeddingBag`` (bytes of torch's prepack ops).

        Parameters
        ----------
        source : torch.Tensor or torch.nn.EmbeddingBag
            A finite ``(N, D)`` float table, or a module (``xembed.torch.EmbeddingBag`` included) whose
            ``weight``, ``mode``, ``include_last_offset`` and ``padding_idx`` are taken.
        bits : {8, 4, 2}, default 8
            Bits per value.
        mode : str, optional
            The reduction; default the module's, or ``"sum"`` for a tensor.
        include_last_offset : bool, optional
            Default the module's, or False for a tensor.
        padding_idx : int, optional
            Default the module's, or None for a tensor.

        Returns
        -------
        QuantizedEmbeddingBag
            On ``source``'s device.

        Raises
        ------
        TypeError
            ``source`` is neither a tensor nor a ``torch.nn.EmbeddingBag``, or not a float table.
        ValueError
            As :func:`xembed.quantize_rowwise` and the constructor.

        Examples
        --------
        >>> import torch, xembed.torch as xt
        >>> float_bag = torch.nn.EmbeddingBag(100, 16, mode="mean")
        >>> xt.QuantizedEmbeddingBag.from_float(float_bag, bits=4)
        QuantizedEmbeddingBag(100, 16, bits=4, mode='mean')
        """
        weight = source
        if isinstance(source, torch.nn.EmbeddingBag):
            weight = source.weight
            mode = source.mode if mode is None else mode
            include_last_offset = source.include_last_offset if include_last_offset is None else include_last_offset
            padding_idx = source.padding_idx if padding_idx is None else padding_idx
        elif not isinstance(source, torch.Tensor):
            msg = f"`source` must be a torch.Tensor or a torch.nn.EmbeddingBag, got {type(source).__name__}"
            raise TypeError(msg)
        table = quantize_rowwise(weight, bits)
        return cls._over(table, "sum" if mode is None else mode, bool(include_last_offset), padding_idx)

    @classmethod
    def from_torch(cls, source: Any, mode: str | None = None) -> QuantizedEmbeddingBag:
        """The module over the bytes of a ``torch.ao.nn.quantized.EmbeddingBag`` (or its state dict / weight).

        Parameters
        ----------
        source : torch.ao.nn.quantized.EmbeddingBag or dict or torch.Tensor
            As :meth:`xembed.QuantizedTable.from_torch`; a module also gives ``include_last_offset``.
        mode : str, optional
            The reduction.  torch's quantized module always sums whatever its ``mode``, so the default is
            ``"sum"``.

        Returns
        -------
        QuantizedEmbeddingBag
            Same outputs as ``source`` (which sums), without copying through floats.

        Raises
        ------
        TypeError
            ``source`` holds no quantized embedding weight.

        Examples
        --------
        >>> import warnings, torch, xembed.torch as xt
        >>> from torch.ao.nn.quantized import EmbeddingBag
        >>> with warnings.catch_warnings():  # torch deprecates building quantized tensors
        ...     warnings.simplefilter("ignore", UserWarning)
        ...     torch_bag = EmbeddingBag(10, 8)
        >>> xt.QuantizedEmbeddingBag.from_torch(torch_bag)
        QuantizedEmbeddingBag(10, 8, bits=8, mode='sum')
        """
        table = QuantizedTable.from_torch(source)
        include_last_offset = bool(getattr(source, "include_last_offset", False))
        return cls._over(table, "sum" if mode is None else mode, include_last_offset, None)

    @classmethod
    def _over(cls, table: QuantizedTable, mode: str, include_last_offset: bool,
              padding_idx: int | None) -> QuantizedEmbeddingBag:
        n, d = table.shape
        module = cls(n, d, table.bits, mode, include_last_offset, padding_idx, device="meta")  # no bytes
        module.packed = table.packed
        return module

    def extra_repr(self) -> str:
        """The constructor arguments that differ from their defaults.

        Returns
        -------
        str
            Shown by ``repr``.

        Examples
        --------
        >>> import xembed.torch as xt
        >>> xt.QuantizedEmbeddingBag(10, 8, bits=4, padding_idx=0).extra_repr()
        "10, 8, bits=4, mode='sum', padding_idx=0"
        """
        s = f"{self.num_embeddings}, {self.embedding_dim}, bits={self.bits}, mode={self.mode!r}"
        if self.include_last_offset:
            s += ", include_last_offset=True"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        return s

