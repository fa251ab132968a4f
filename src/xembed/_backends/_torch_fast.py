"""The one-kernel route of torch CPU tensors (PRIM-FAST-TORCH; imported only when torch tensors are passed).

A call on CPU tensors whose options the one-kernel NumPy forwards take (PRIM-FAST-FORWARD) runs those kernels on
zero-copy NumPy views of the tensors, checks included, and returns a tensor sharing the kernel's output.  Under
autograd (grad mode on and the weight requiring grad), the call is one ``autograd.Function`` over the same
kernels: the weight gradient is the transpose kernel, and the transpose's own backward is the forward kernel
again, so ``create_graph=True`` differentiates exactly (TORCH-DOUBLE-BWD) without the general path's bookkeeping.
Calls this route does not take -- forward AD, a per_sample_weights gradient, ``max`` / ``scale_grad_by_freq``
under autograd, anything the NumPy kernels decline, a value they reject -- return
NOT_TAKEN and continue to the checks and the torch adapter, which compute them or raise the ERR-* error.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.autograd.forward_ad as fwad

from .. import _primitives as prim
from ._calls import NOT_TAKEN

_TENSORS = (torch.Tensor, torch.nn.Parameter)


_is_wrapped = torch._C._functorch.is_functorch_wrapped_tensor


def _view(t: Any) -> np.ndarray | None:
    """The NumPy view of a plain CPU tensor; None for anything else: another type, another device, a
    torch.func-wrapped tensor (whose values cannot be read), a tensor with a negative or conjugate bit."""
    if type(t) not in _TENSORS or not t.is_cpu or _is_wrapped(t):
        return None
    try:
        return t.detach().numpy() if t.requires_grad else t.numpy()
    except (RuntimeError, TypeError):
        return None


def _table(weight: torch.Tensor) -> tuple[np.ndarray | None, bool]:
    """The view of the table the kernels read, and whether it holds the bits of a bfloat16 table (as int16:
    NumPy has no bfloat16)."""
    if weight.dtype == torch.bfloat16 and type(weight) in _TENSORS:
        return _view(weight.view(torch.int16)), True
    return _view(weight), False


_GRAD_DTYPES = (torch.float32, torch.float64)


def _grad_wanted(weight: torch.Tensor, psw: torch.Tensor | None) -> bool | None:
    """Whether the output must be connected to autograd for the weight (None: a call this route leaves to the
    torch adapter: forward AD, a per_sample_weights gradient, the gradient of a 16-bit table)."""
    if fwad._current_level >= 0:
        return None
    if not torch.is_grad_enabled():
        return False
    if psw is not None and psw.requires_grad:
        return None
    if weight.requires_grad and weight.dtype not in _GRAD_DTYPES:
        return None
    return weight.requires_grad


class _Linear:
    """A checked call's linear map of the table (``forward``) and its transpose (``transpose``: the weight
    gradient, padding rows zero; with ``sparse``, its COO entries).  The transpose's own transpose is the forward
    with the padding rows zeroed (``forward(..., zero_padding=True)``), which only a lookup distinguishes."""

    __slots__ = ("bag", "kernels", "plan", "rows", "sparse")

    def __init__(self, kernels: Any, plan: Any, rows: int, bag: bool, sparse: bool) -> None:
        self.kernels, self.plan, self.rows, self.bag, self.sparse = kernels, plan, rows, bag, sparse

    def forward(self, w: np.ndarray, zero_padding: bool = False) -> np.ndarray | None:
        if self.bag:
            return self.kernels.bag_forward(self.plan, w)
        return self.kernels.lookup(self.plan, w, zero_padding)

    def transpose(self, g: np.ndarray) -> Any:
        if self.bag:
            return self.kernels.bag_transpose(self.plan, g, self.rows, self.sparse)
        return self.kernels.lookup_transpose(self.plan, g, self.rows, self.sparse)


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def _transposed(linear: _Linear, grad: torch.Tensor) -> torch.Tensor:
    """The weight gradient: dense, recorded by autograd under ``create_graph=True``; or sparse (GRAD-SPARSE:
    torch's uncoalesced COO tensor, one entry per non-padding position), which has no second derivative here."""
    if not linear.sparse:
        if torch.is_grad_enabled():
            return _Transpose.apply(grad, linear)
        return torch.from_numpy(linear.transpose(_array(grad)))
    if torch.is_grad_enabled() and grad.requires_grad:
        msg = ("double backward (`create_graph`=True) through xembed with `sparse`=True is not supported; "
               "use `sparse`=False")
        raise NotImplementedError(msg)
    rows, values = linear.transpose(_array(grad))
    return torch.sparse_coo_tensor(torch.from_numpy(rows)[None], torch.from_numpy(values),
                                   (linear.rows, values.shape[1]), check_invariants=False)


class _Forward(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, _weight: torch.Tensor, linear: _Linear, out: list[np.ndarray], *saved: Any) -> torch.Tensor:
        # TORCH-SAVED: the index tensors the plan views, so that modifying one in place before the backward
        # raises instead of being read
        ctx.save_for_backward(*saved)
        ctx.linear = linear
        return torch.from_numpy(out.pop())  # popped: the graph keeps no reference to its own output

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        _ = ctx.saved_tensors
        grad_w = _transposed(ctx.linear, grad) if ctx.needs_input_grad[0] else None
        return (grad_w, None, None, *(None for _ in ctx.needs_input_grad[3:]))


class _Transpose(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, grad: torch.Tensor, linear: _Linear) -> torch.Tensor:
        ctx.linear = linear
        return torch.from_numpy(linear.transpose(_array(grad)))

    @staticmethod
    def backward(ctx: Any, v: torch.Tensor) -> tuple[Any, None]:
        linear = ctx.linear
        out = linear.forward(_array(v), zero_padding=True)
        assert out is not None  # the values passed the forward's checks
        if torch.is_grad_enabled():
            return _Forward.apply(v, linear, [out]), None
        return torch.from_numpy(out), None


def _connected(linear: _Linear, weight: torch.Tensor, w: np.ndarray, saved: tuple[Any, ...]) -> Any:
    out = linear.forward(w)
    if out is None:  # a value failed its check: the general path raises its error
        return NOT_TAKEN
    return _Forward.apply(weight, linear, [out], *saved)


def _plain(out: np.ndarray | None, bfloat16: bool, bits: bool) -> Any:
    """The kernel's output as a tensor: a bfloat16 table's bags rounded from float32 (``bits``: its rows, as
    int16 bits)."""
    if out is None:
        return NOT_TAKEN
    t = torch.from_numpy(out)
    if not bfloat16:
        return t
    return t.view(torch.bfloat16) if bits else t.to(torch.bfloat16)


# Work (indices x D) from which torch's own CPU kernel (fbgemm's generated code) reduces a sum faster than the
# numba kernel: it keeps a bag's accumulator in registers.  Below it, its fixed cost per call dominates; its
# mean and max are slower than the numba kernel at every size measured.
_TORCH_KERNEL_MIN_WORK = 1 << 15
_TORCH_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _torch_kernel_faster(mode: str, input: torch.Tensor, offsets: torch.Tensor | None, w: np.ndarray) -> bool:
    """A 1-D input with two offsets at least, of its dtype (torch's kernel crashes on other layouts: DIV-1),
    a sum, large enough (PRIM-TORCH-NATIVE)."""
    return (mode == "sum" and offsets is not None and offsets.dtype == input.dtype and offsets.shape[0] >= 2
            and w.ndim == 2 and w.dtype in _TORCH_KERNEL_DTYPES
            and input.shape[0] * w.shape[1] >= _TORCH_KERNEL_MIN_WORK)


def _torch_kernel(kernels: Any, plan: Any, args: tuple[Any, ...], rows: int) -> Any:
    """The values checked by the numba pass, then torch's fused kernel on the caller's tensors."""
    if not kernels.bag_values_valid(plan, rows):
        return NOT_TAKEN
    input, weight, offsets, _, _, sgbf, _, sparse, psw, last, pad = args
    if pad is not None and pad < 0:  # in range: the plan checked it; torch's -1 would mean no padding row
        pad += rows
    return torch.embedding_bag(weight, input, offsets, sgbf, 0, sparse, psw, last, pad)[0]  # mode 0: sum


def embedding_bag(args: tuple[Any, ...]) -> Any:
    input, weight, offsets, max_norm, norm_type, sgbf, mode, sparse, psw, last, padding_idx = args
    kernels = prim.fused_kernels()
    if kernels is None:
        return NOT_TAKEN
    (w, bf16), i = _table(weight), _view(input)
    o = None if offsets is None else _view(offsets)
    p = None if psw is None else _view(psw)
    if w is None or i is None or (o is None and offsets is not None) or (p is None and psw is not None):
        return NOT_TAKEN
    grad = _grad_wanted(weight, psw)
    if grad is None or (grad and (mode not in ("sum", "mean") or sgbf is not False)):
        return NOT_TAKEN
    via_torch = not grad and _torch_kernel_faster(mode, input, offsets, w)
    plan = kernels.bag_plan(i, w, o, max_norm, norm_type, sgbf, mode, sparse, p, last, padding_idx, via_torch,
                            bf16)
    if plan is None:
        return NOT_TAKEN
    if via_torch:
        return _torch_kernel(kernels, plan, args, w.shape[0])
    if not grad:
        return _plain(kernels.bag_forward(plan, w), bf16, False)
    saved = tuple(t for t in (input, offsets, psw) if t is not None)
    return _connected(_Linear(kernels, plan, w.shape[0], True, sparse is True), weight, w, saved)


def embedding(args: tuple[Any, ...]) -> Any:
    input, weight, padding_idx, max_norm, norm_type, sgbf, sparse = args
    kernels = prim.fused_kernels()
    if kernels is None:
        return NOT_TAKEN
    (w, bf16), i = _table(weight), _view(input)
    if w is None or i is None:
        return NOT_TAKEN
    grad = _grad_wanted(weight, None)
    if grad is None or (grad and sgbf is not False):
        return NOT_TAKEN
    plan = kernels.lookup_plan(i, w, padding_idx, max_norm, norm_type, sgbf, sparse, bf16)
    if plan is None:
        return NOT_TAKEN
    if not grad:
        return _plain(kernels.lookup(plan, w), bf16, True)
    return _connected(_Linear(kernels, plan, w.shape[0], False, sparse is True), weight, w, (input,))
