"""Public functions: docstrings, input checks and namespace dispatch; the semantics live in ``_core``."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Any, SupportsIndex

from array_api_compat import array_namespace, is_jax_namespace, is_numpy_namespace, is_torch_namespace

from . import _core, _dask, _quantized
from . import _primitives as prim
from . import _validate as v
from ._typing import Array, Namespace, Pullback

# compute(weight, per_sample_weights, need_pullback=True) -> (output, pullback or None)
_Compute = Callable[..., tuple[Array, Pullback | None]]

__all__ = ["embedding", "embedding_bag", "embedding_bag_vjp", "embedding_vjp", "jit_value_checks", "renorm"]

jit_value_checks = v.jit_value_checks


def _library(ns: Namespace) -> str:
    return getattr(ns, "__name__", repr(ns)).removeprefix("array_api_compat.")


_NAMESPACES: dict[tuple[type, ...], tuple[Namespace, bool]] = {}


def _namespace(xp: Namespace | None, **arrays: Array | None) -> Namespace:
    """The array API namespace of all array arguments (ERR-NAMESPACE: TypeError on mixed libraries,
    ValueError on mixed devices).

    The namespace is a function of the argument types only: it is looked up once per type tuple.
    """
    present = {k: x for k, x in arrays.items() if x is not None}
    key = tuple(type(x) for x in present.values())
    hit = _NAMESPACES.get(key)
    if hit is None:
        for name, x in present.items():
            v.check_is_array(name, x)
        try:
            ns = array_namespace(*present.values())
        except TypeError as e:
            kinds = ", ".join(f"`{k}`: {type(x).__module__}.{type(x).__name__}" for k, x in present.items())
            msg = f"all arrays must come from one array library, got {kinds}"
            raise TypeError(msg) from e
        hit = _NAMESPACES[key] = (ns, is_numpy_namespace(ns))  # NumPy arrays all live on the CPU
    ns, cpu_only = hit
    if xp is not None and _library(xp) != _library(ns):
        msg = f"`xp` is {_library(xp)} but the arrays are {_library(ns)} arrays"
        raise TypeError(msg)
    if not cpu_only:
        v.check_same_device(present)
    return ns


def _torch_native(ns: Namespace, input: Array, weight: Array, per_sample_weights: Array | None, want_vjp: bool,
                  can_fuse: Callable[[], bool], fused: Callable[[], Array]) -> Array | None:
    """On torch tensors, after the metadata and offsets checks: refuse ``torch.func`` transforms before any
    value check reads the tensors (TORCH-FUNC), then hand a call that torch's own kernels compute with
    exactly xembed's semantics to them whole (``PRIM-TORCH-NATIVE``; None when the call is not one).

    torch's fused CPU kernels check the index range themselves: when one raised, xembed's own value check
    gives its error (``ERR-INDEX-RANGE``); any other failure is torch's.  Nothing was modified either way
    (the fused path never renorms)."""
    from ._torch_autograd import refuse_func_transforms

    refuse_func_transforms(weight, per_sample_weights, input)
    if want_vjp or prim.mode() == "fallback" or not can_fuse():
        return None
    try:
        return fused()
    except (IndexError, RuntimeError) as e:
        v.check_indices_in_range(input, weight.shape[0], ns)
        raise e from None


def _traced_module() -> Any:
    """``xembed.torch._traced`` (an import statement: dynamo may trace the first one; a sys.modules test
    would be a guard that the import itself breaks)."""
    from .torch import _traced

    return _traced


def _torch_traced(xp: Namespace | None, want_vjp: bool, *arrays: Array | None) -> bool:
    """TORCH-TRACED: torch tensors under torch.compile / torch.export / torch.func take the ``xembed::`` ops
    (decided before any value is read; torch is never imported here)."""
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(arrays[1], torch.Tensor) or (xp is not None and not is_torch_namespace(xp)):
        return False
    if not _traced_module().is_traced(*arrays):
        return False
    if want_vjp:
        msg = ("xembed.embedding_vjp / embedding_bag_vjp are not traceable (torch.compile, torch.export, torch.func); "
               "call xembed.embedding / embedding_bag and differentiate with torch.autograd or torch.func")
        raise NotImplementedError(msg)
    return True


def _detached(x: Array | None) -> Array | None:
    return None if x is None else x.detach()


_COMMON_DOC = """
    Works on NumPy, CuPy, torch and any array API namespace (array-api-strict); the output is an array of
    the weight's namespace, device and dtype.  Semantics are torch.nn.functional's (torch >= 2.14,
    REF-TORCH-VERSION), with the choices of ``docs/spec.md`` where torch is undefined.  With ``max_norm``,
    the referenced rows of ``weight`` are renormalised **in place** (as torch does, RENORM-INPLACE) before
    the lookup, and only after every check passed: a call that raises never modifies ``weight``
    (ERR-ATOMIC).  On torch tensors whose weight (or per_sample_weights) requires grad, the result is
    connected to autograd.
"""


def _prepare_embedding(input: Array, weight: Array, padding_idx: Any, max_norm: Any, norm_type: Any,
                       scale_grad_by_freq: Any, sparse: Any, xp: Namespace | None,
                       ) -> tuple[Namespace, int | None, float | None, float, bool, bool]:
    """Every embedding check, metadata first, values last (ERR-*), before anything is modified."""
    ns = _namespace(xp, input=input, weight=weight)
    return ns, *v.check_embedding_metadata(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq,
                                           sparse, ns)


def _run(xp: Namespace, weight: Array, per_sample_weights: Array | None, input: Array, max_norm: float | None,
         norm_type: float, compute: _Compute, kind: str, want_vjp: bool, offsets: Array | None = None) -> Any:
    """Renorm in place (the one place it happens, RENORM-INPLACE), then compute, wiring torch autograd if
    needed (RENORM-GRAD: the renormed weight is the leaf).

    ``kind``: ``"embedding"`` or the bag mode.  torch autograd (reverse and forward mode) gets the
    undetached leaves, so that the backward is itself differentiable.  ``weight`` is the caller's array (the
    renorm writes into it); the computation reads it through :func:`xembed._primitives.plain` (ARR-NORMALIZE).
    """
    if max_norm is not None:
        v.check_writable(weight, xp)
    leaves: tuple[Array, Array | None] | None = None
    if is_torch_namespace(xp):
        from . import _torch_autograd

        if _torch_autograd.needs_autograd(weight, per_sample_weights, input, want_vjp):
            leaves = (weight, per_sample_weights)
        weight, per_sample_weights, input = _detached(weight), _detached(per_sample_weights), _detached(input)
    if max_norm is not None:
        weight = _core.renorm_(weight, input, max_norm, norm_type, xp)
    if leaves is not None:
        return _torch_autograd.apply(*leaves, compute, kind, (input, offsets))
    weight = prim.plain("weight", weight, xp=xp)
    if not want_vjp:
        return compute(weight, per_sample_weights, need_pullback=False)[0]
    return compute(weight, per_sample_weights)


def _snapshot(x: Array | None, xp: Namespace) -> Array | None:
    """PULLBACK-SNAPSHOT: a private copy of an argument the pullback reads, so that a caller reusing the
    buffer after the forward (a data loader refilling its index array) changes neither the gradient nor
    what reaches the kernels."""
    return None if x is None else xp.asarray(x, copy=True)


def _embedding(input: Array, weight: Array, padding_idx: Any, max_norm: Any, norm_type: Any,
               scale_grad_by_freq: Any, sparse: Any, xp: Namespace | None, want_vjp: bool) -> Any:
    fast = prim.fused_numpy_forward(weight) if not want_vjp and xp is None else None
    if fast is not None:  # PRIM-FAST-FORWARD
        out = fast.embedding(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse)
        if out is not None:
            return out
    if _torch_traced(xp, want_vjp, input, weight):
        return _traced_module().embedding(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse)
    if isinstance(weight, _quantized.QuantizedTable):  # QUANT-FORWARD
        return _quantized.embedding(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse,
                                    xp, want_vjp)
    if _dask.involves_dask(input, weight):  # dask arrays: the blockwise path (issue 13, spec DASK-*)
        return _dask.embedding(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse,
                               xp, want_vjp)
    ns, pad, mnorm, ntype, sgbf, sparse_ = _prepare_embedding(
        input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse, xp)
    input = prim.plain("input", input, xp=ns)
    prim.plain("weight", weight, xp=ns)  # refused now if it must be (read through plain() in _run)
    if want_vjp:
        input = _snapshot(input, ns)
    if is_torch_namespace(ns):
        from ._primitives import _torch as fused

        out = _torch_native(ns, input, weight, None, want_vjp,
                            lambda: fused.can_fuse_embedding(input, weight, mnorm, pad, sparse_),
                            lambda: fused.fused_embedding(input, weight, pad, sgbf, sparse_))
        if out is not None:
            return out
    v.check_indices_in_range(input, weight.shape[0], ns)
    if is_jax_namespace(ns):  # JAX (issue 12): autodiff, functional renorm, traced values
        from . import _jax_autodiff

        return _jax_autodiff.embedding(input, weight, pad, mnorm, ntype, sgbf, sparse_, ns, want_vjp)

    def compute(w: Array, _psw: Array | None, need_pullback: bool = True) -> tuple[Array, Pullback]:  # noqa: ARG001
        return _core.embedding_vjp(input, w, pad, sgbf, sparse_, ns)

    return _run(ns, weight, None, input, mnorm, ntype, compute, "embedding", want_vjp)


def embedding(input: Array, weight: Array, padding_idx: SupportsIndex | None = None, max_norm: float | None = None,
              norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False, *,
              xp: Namespace | None = None) -> Array:
    """Look up rows of ``weight``: ``out[..., :] = weight[input[...], :]`` (EMB-SHAPE, EMB-LOOKUP).

    Parameters are torch.nn.functional.embedding's: ``input`` integer array of any shape (0-d and empty
    included; ERR-INDEX-DTYPE, ERR-INDEX-RANGE); ``weight`` (N, D) floating (ERR-WEIGHT); ``padding_idx``
    (negative counts from the end, PAD-NEGATIVE, PAD-RANGE) — its row is returned as stored and gets no
    gradient (EMB-PAD-VALUE, GRAD-PAD); ``max_norm``/``norm_type`` renormalise referenced rows in place
    (RENORM-*); ``scale_grad_by_freq`` divides gradients by index frequency over the whole input
    (GRAD-SGBF); ``sparse`` makes the gradient a :class:`xembed.SparseGrad` (or a torch sparse COO tensor
    under autograd; GRAD-SPARSE, ERR-SPARSE-SGBF).  ``xp`` (keyword-only) is the namespace, inferred from
    the arrays when None.

    Returns an array of shape ``input.shape + (D,)``.
    """
    return _embedding(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse, xp, False)


def embedding_vjp(input: Array, weight: Array, padding_idx: SupportsIndex | None = None, max_norm: float | None = None,
                  norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False, *,
                  xp: Namespace | None = None) -> tuple[Array, Pullback]:
    """:func:`embedding` and its pullback: returns ``(output, pullback)``.

    ``pullback(grad_output)`` returns the weight gradient (GRAD-EMB, GRAD-PAD, GRAD-SGBF): a dense array
    (weight's namespace, device and dtype; low precision accumulated in float32, GRAD-ACC) or, with
    ``sparse=True``, a :class:`xembed.SparseGrad` (GRAD-SPARSE).
    On torch tensors the pullback is computed without autograd.
    """
    return _embedding(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse, xp, True)


def _embedding_bag(input: Array, weight: Array, offsets: Array | None, max_norm: Any, norm_type: Any,
                   scale_grad_by_freq: Any, mode: Any, sparse: Any, per_sample_weights: Array | None,
                   include_last_offset: Any, padding_idx: Any, xp: Namespace | None, want_vjp: bool,
                   lengths: Array | None = None) -> Any:
    fast = prim.fused_numpy_forward(weight) if not want_vjp and xp is None and lengths is None else None
    if fast is not None:  # PRIM-FAST-FORWARD: plain NumPy arrays, common options, checks in the kernel
        out = fast.embedding_bag(input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, mode, sparse,
                                  per_sample_weights, include_last_offset, padding_idx)
        if out is not None:
            return out
    if _torch_traced(xp, want_vjp, input, weight, offsets, per_sample_weights, lengths):
        return _traced_module().embedding_bag(input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, mode,
                                              sparse, per_sample_weights, include_last_offset, padding_idx, lengths)
    if isinstance(weight, _quantized.QuantizedTable):  # QUANT-FORWARD
        return _quantized.embedding_bag(input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, mode,
                                        sparse, per_sample_weights, include_last_offset, padding_idx, xp,
                                        want_vjp, lengths)
    if _dask.involves_dask(input, weight, offsets, per_sample_weights, lengths):  # issue 13, spec DASK-*
        return _dask.embedding_bag(input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, mode,
                                   sparse, per_sample_weights, include_last_offset, padding_idx, xp, want_vjp,
                                   lengths)
    ns = _namespace(xp, input=input, weight=weight, offsets=offsets, per_sample_weights=per_sample_weights,
                    lengths=lengths)
    input, offsets, lengths, per_sample_weights = (
        prim.plain(name, x, xp=ns) for name, x in
        (("input", input), ("offsets", offsets), ("lengths", lengths), ("per_sample_weights", per_sample_weights)))
    a = v.check_bag_metadata(input, prim.plain("weight", weight, xp=ns), offsets, per_sample_weights, mode,
                             max_norm, norm_type, scale_grad_by_freq, sparse, include_last_offset, padding_idx, ns,
                             lengths=lengths)
    if lengths is not None:  # EXT-LENGTHS: exactly the offsets [0, cumsum(lengths)] with a last offset
        v.check_lengths_values(lengths, input.shape[0], ns)
        offsets, a = _core.lengths_to_offsets(lengths, ns), dataclasses.replace(a, include_last_offset=True)
        v.check_offsets_values(offsets, input.shape[0], True, ns, source="lengths")
    elif input.ndim == 1:
        v.check_offsets_values(offsets, input.shape[0], a.include_last_offset, ns)
    if want_vjp:
        input, offsets, per_sample_weights = (_snapshot(x, ns) for x in (input, offsets, per_sample_weights))
    if is_torch_namespace(ns):
        from ._primitives import _torch as fused

        out = _torch_native(ns, input, weight, per_sample_weights, want_vjp,
                            lambda: fused.can_fuse_bag(input, weight, offsets, per_sample_weights, a),
                            lambda: fused.fused_bag(input, weight, offsets, per_sample_weights, a))
        if out is not None:
            return out
    v.check_indices_in_range(input, weight.shape[0], ns)
    if is_jax_namespace(ns):  # JAX (issue 12): autodiff, functional renorm, traced values
        from . import _jax_autodiff

        return _jax_autodiff.embedding_bag(input, weight, offsets, per_sample_weights, a, ns, want_vjp)

    def compute(w: Array, psw: Array | None, need_pullback: bool = True) -> tuple[Array, Pullback | None]:
        return _core.embedding_bag_vjp(input, w, offsets, psw, a, ns, need_pullback)

    return _run(ns, weight, per_sample_weights, input, a.max_norm, a.norm_type, compute, a.mode, want_vjp,
                offsets)


def embedding_bag(input: Array, weight: Array, offsets: Array | None = None, max_norm: float | None = None,
                  norm_type: float = 2, scale_grad_by_freq: bool = False, mode: str = "mean",
                  sparse: bool = False, per_sample_weights: Array | None = None,
                  include_last_offset: bool = False, padding_idx: SupportsIndex | None = None, *,
                  lengths: Array | None = None, xp: Namespace | None = None) -> Array:
    """Sum, mean or max of bags of rows of ``weight`` without materialising the lookup.

    Bags: a 2-D ``input`` (B, L) is B bags of length L (``offsets`` must be None; BAG-LAYOUT-2D); a 1-D
    ``input`` needs ``offsets`` (start of each bag; BAG-LAYOUT-1D; ``include_last_offset=True`` means the
    last entry is the end, and then it must equal ``len(input)``, BAG-LAST-OFFSET).  Offsets must start at
    0, be non-decreasing and end within the input (ERR-OFFSETS-FIRST, ERR-OFFSETS-DECREASING,
    ERR-OFFSETS-END).  Padding entries (``padding_idx``) are left out of the reduction and of the mean's
    divisor (BAG-PAD, BAG-MEAN-PAD); empty and all-padding bags give zeros in every mode (BAG-EMPTY).
    ``mode='max'`` is per feature, ties to the first occurrence (BAG-MAX, BAG-MAX-TIES).
    ``per_sample_weights`` (same shape as ``input``, weight's dtype) scales each row (BAG-PSW, ERR-PSW).

    Extensions beyond torch (EXT-*; torch raises or has no such argument):

    * ``mode='sqrtn'`` — ``sum(w_i * W[idx_i]) / sqrt(sum(w_i**2))`` (``w_i`` = per_sample_weights or 1),
      TensorFlow's ``sqrtn`` combiner; a bag whose weights are all 0 gives zeros and no gradient (EXT-SQRTN).
    * ``mode='min'`` — per-feature minimum, ties to the first occurrence (like ``max``); no
      per_sample_weights, ``sparse`` or ``scale_grad_by_freq`` (EXT-MIN).
    * ``per_sample_weights`` with ``mode='mean'`` — the weighted mean ``sum(w_i * W[idx_i]) / sum(w_i)``;
      a bag with ``sum(w_i) == 0`` gives zeros and no gradient (TensorFlow's ``div_no_nan``; EXT-WMEAN).
    * ``lengths=`` (keyword-only, 1-D integer, one entry per bag) instead of ``offsets`` for a 1-D input:
      the same as ``offsets = [0, cumsum(lengths)[:-1]]``; ``sum(lengths)`` must equal ``len(input)``
      (EXT-LENGTHS).

    Returns an array of shape (B, D).
    """
    return _embedding_bag(input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, mode, sparse,
                          per_sample_weights, include_last_offset, padding_idx, xp, False, lengths)


def embedding_bag_vjp(input: Array, weight: Array, offsets: Array | None = None,
                      max_norm: float | None = None, norm_type: float = 2, scale_grad_by_freq: bool = False,
                      mode: str = "mean", sparse: bool = False, per_sample_weights: Array | None = None,
                      include_last_offset: bool = False, padding_idx: SupportsIndex | None = None, *,
                      lengths: Array | None = None, xp: Namespace | None = None) -> tuple[Array, Pullback]:
    """:func:`embedding_bag` and its pullback: returns ``(output, pullback)``.

    ``pullback(grad_output)`` returns ``(grad_weight, grad_per_sample_weights)``; the latter is None when
    no ``per_sample_weights`` were given (GRAD-PSW).  ``grad_weight`` is dense (GRAD-BAG, GRAD-MAX,
    GRAD-ACC) or, with ``sparse=True``, a :class:`xembed.SparseGrad` (GRAD-SPARSE).  Takes the extensions
    of :func:`embedding_bag` (``sqrtn``, ``min``, the weighted mean, ``lengths=``) too.
    """
    return _embedding_bag(input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, mode, sparse,
                          per_sample_weights, include_last_offset, padding_idx, xp, True, lengths)


def renorm(weight: Array, input: Array, max_norm: float, norm_type: float = 2.0, *,
           xp: Namespace | None = None) -> Array:
    """The max_norm renorm as a function (RENORM-FUNCTIONAL): returns a new table in which every row of
    ``weight`` referenced by ``input`` whose ``norm_type``-norm exceeds ``max_norm`` (strictly) is scaled
    by ``max_norm / (norm + 1e-7)``; the other rows are copied bit for bit.  ``weight`` is never modified.

    The same rows and values as the in-place renorm that ``embedding(..., max_norm=...)`` applies on
    mutable arrays; on immutable arrays (JAX) that call renorms only the copy it reads, and a training
    loop applies ``weight = xembed.renorm(weight, input, max_norm)`` itself.  Any backend; on torch the
    result is a new tensor outside autograd; on traced JAX arrays out-of-range indices change nothing.
    """
    traced = _torch_traced(xp, False, input, weight)
    xp = _traced_module().xp if traced else _namespace(xp, input=input, weight=weight)
    v.check_weight(weight, xp)
    v.check_index_dtype("input", input, xp)
    checked_max, p = v.check_renorm_args(max_norm, norm_type)
    if checked_max is None:
        msg = "`max_norm` must be a real number, got None"
        raise TypeError(msg)
    if traced:  # TORCH-TRACED
        return _traced_module().renorm(weight, input, checked_max, p)
    if _dask.involves_dask(input, weight):  # DASK-RENORM: lazy, chunked like the weight, nothing gathered
        return _dask.renorm(weight, input, checked_max, p, xp)
    input, weight = prim.plain("input", input, xp=xp), prim.plain("weight", weight, xp=xp)
    v.check_indices_in_range(input, weight.shape[0], xp)
    if is_torch_namespace(xp):
        weight, input = weight.detach(), input.detach()
    if is_jax_namespace(xp):
        from . import _jax_autodiff

        return _jax_autodiff.renorm(weight, input, checked_max, p, xp)
    return _core.renorm(weight, input, checked_max, p, xp)


# Under ``python -OO`` docstrings are stripped (``__doc__`` is None): append only when there is one.
for _f in (embedding, embedding_bag):
    if _f.__doc__ is not None:
        _f.__doc__ += _COMMON_DOC
del _f
