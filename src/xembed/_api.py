"""Public functions: docstrings, input checks and namespace dispatch; the semantics live in ``_core``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace, is_jax_namespace, is_torch_namespace

from . import _core
from . import _validate as v

Array = Any

__all__ = ["embedding", "embedding_bag", "embedding_bag_vjp", "embedding_vjp", "jit_value_checks", "renorm"]

jit_value_checks = v.jit_value_checks


def _library(ns) -> str:
    return getattr(ns, "__name__", repr(ns)).removeprefix("array_api_compat.")


def _namespace(xp, **arrays):
    """The array API namespace of all array arguments (TypeError on mixed libraries)."""
    present = {k: x for k, x in arrays.items() if x is not None}
    for name, x in present.items():
        v.check_is_array(name, x)
    try:
        ns = array_namespace(*present.values())
    except TypeError as e:
        kinds = ", ".join(f"`{k}`: {type(x).__module__}.{type(x).__name__}" for k, x in present.items())
        raise TypeError(f"all arrays must come from one array library, got {kinds}") from e
    if xp is not None and _library(xp) != _library(ns):
        raise TypeError(f"`xp` is {_library(xp)} but the arrays are {_library(ns)} arrays")
    v.check_same_device(present)
    return ns


def _detached(x):
    return None if x is None else x.detach()


_COMMON_DOC = """
    Works on NumPy, CuPy, torch and any array API namespace (array-api-strict); the output is an array of
    the weight's namespace, device and dtype.  Semantics are torch.nn.functional's (torch >= 2.14), with
    the choices of ``SPEC.md`` where torch is undefined.  With ``max_norm``, the referenced rows of
    ``weight`` are renormalised **in place** (as torch does) before the lookup, and only after every check
    passed: a call that raises never modifies ``weight``.  On torch tensors whose weight (or
    per_sample_weights) requires grad, the result is connected to autograd.
"""


def _prepare_embedding(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse, xp):
    xp = _namespace(xp, input=input, weight=weight)
    v.check_weight(weight, xp)
    v.check_index_dtype("input", input, xp)
    scale_grad_by_freq = v.check_flag("scale_grad_by_freq", scale_grad_by_freq)
    sparse = v.check_flag("sparse", sparse)
    if sparse and scale_grad_by_freq:
        raise ValueError("`scale_grad_by_freq`=True is not supported with `sparse`=True")
    max_norm, norm_type = v.check_renorm_args(max_norm, norm_type)
    padding_idx = v.normalize_padding_idx(padding_idx, weight.shape[0])
    v.check_indices_in_range(input, weight.shape[0], xp)
    return xp, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse


def _run(xp, weight, per_sample_weights, input, max_norm, norm_type, compute, is_bag, want_vjp):
    """Renorm in place (the one place it happens), then compute, wiring torch autograd if needed."""
    leaves = None
    if is_torch_namespace(xp):
        from . import _torch_autograd

        if not want_vjp and _torch_autograd.needs_autograd(weight, per_sample_weights):
            leaves = (weight, per_sample_weights)
        weight, per_sample_weights, input = _detached(weight), _detached(per_sample_weights), _detached(input)
    if max_norm is not None:
        _core.renorm_(weight, input, max_norm, norm_type, xp)
    if leaves is not None:
        return _torch_autograd.apply(*leaves, lambda: compute(weight, per_sample_weights), is_bag)
    if not want_vjp:
        return compute(weight, per_sample_weights, need_pullback=False)[0]
    return compute(weight, per_sample_weights)


def _embedding(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse, xp, want_vjp):
    xp, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse = _prepare_embedding(
        input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse, xp)
    if is_jax_namespace(xp):  # JAX hook (issue 12): autodiff, functional renorm, traced values
        from . import _jax_autodiff

        return _jax_autodiff.embedding(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq,
                                       sparse, xp, want_vjp)

    def compute(w, _psw, need_pullback=True):
        return _core.embedding_vjp(input, w, padding_idx, scale_grad_by_freq, sparse, xp)

    return _run(xp, weight, None, input, max_norm, norm_type, compute, False, want_vjp)


def embedding(input: Array, weight: Array, padding_idx: int | None = None, max_norm: float | None = None,
              norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False, *,
              xp=None) -> Array:
    """Look up rows of ``weight``: ``out[..., :] = weight[input[...], :]``.

    Parameters are torch.nn.functional.embedding's: ``input`` integer array of any shape (0-d and empty
    included); ``weight`` (N, D) floating; ``padding_idx`` (negative counts from the end) — its row is
    returned as stored and gets no gradient; ``max_norm``/``norm_type`` renormalise referenced rows in
    place; ``scale_grad_by_freq`` divides gradients by index frequency over the whole input; ``sparse``
    makes the gradient a :class:`xembed.SparseGrad` (or a torch sparse COO tensor under autograd).
    ``xp`` (keyword-only) is the namespace, inferred from the arrays when None.

    Returns an array of shape ``input.shape + (D,)``.
    """
    return _embedding(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse, xp, False)


def embedding_vjp(input: Array, weight: Array, padding_idx: int | None = None, max_norm: float | None = None,
                  norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False, *,
                  xp=None) -> tuple[Array, Callable[[Array], Any]]:
    """:func:`embedding` and its pullback: returns ``(output, pullback)``.

    ``pullback(grad_output)`` returns the weight gradient: a dense array (weight's namespace, device and
    dtype; low precision accumulated in float32) or, with ``sparse=True``, a :class:`xembed.SparseGrad`.
    On torch tensors the pullback is computed without autograd.
    """
    return _embedding(input, weight, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse, xp, True)


def _embedding_bag(input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, mode, sparse,
                   per_sample_weights, include_last_offset, padding_idx, xp, want_vjp):
    xp = _namespace(xp, input=input, weight=weight, offsets=offsets, per_sample_weights=per_sample_weights)
    a = v.check_bag_metadata(input, weight, offsets, per_sample_weights, mode, max_norm, norm_type,
                             scale_grad_by_freq, sparse, include_last_offset, padding_idx, xp)
    if input.ndim == 1:
        v.check_offsets_values(offsets, input.shape[0], a.include_last_offset, xp)
    v.check_indices_in_range(input, weight.shape[0], xp)
    if is_jax_namespace(xp):  # JAX hook (issue 12): autodiff, functional renorm, traced values
        from . import _jax_autodiff

        return _jax_autodiff.embedding_bag(input, weight, offsets, per_sample_weights, a, xp, want_vjp)

    def compute(w, psw, need_pullback=True):
        return _core.embedding_bag_vjp(input, w, offsets, psw, a, xp, need_pullback)

    return _run(xp, weight, per_sample_weights, input, a.max_norm, a.norm_type, compute, True, want_vjp)


def embedding_bag(input: Array, weight: Array, offsets: Array | None = None, max_norm: float | None = None,
                  norm_type: float = 2, scale_grad_by_freq: bool = False, mode: str = "mean",
                  sparse: bool = False, per_sample_weights: Array | None = None,
                  include_last_offset: bool = False, padding_idx: int | None = None, *, xp=None) -> Array:
    """Sum, mean or max of bags of rows of ``weight`` without materialising the lookup.

    Bags: a 2-D ``input`` (B, L) is B bags of length L (``offsets`` must be None); a 1-D ``input`` needs
    ``offsets`` (start of each bag; ``include_last_offset=True`` means the last entry is the end, and then
    it must equal ``len(input)``).  Offsets must start at 0 and be non-decreasing.  Padding entries
    (``padding_idx``) are left out of the reduction and of the mean's divisor; empty and all-padding bags
    give zeros in every mode.  ``mode='max'`` is per feature, ties to the first occurrence.
    ``per_sample_weights`` (same shape as ``input``, weight's dtype) scales each row, ``mode='sum'`` only.

    Returns an array of shape (B, D).
    """
    return _embedding_bag(input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, mode, sparse,
                          per_sample_weights, include_last_offset, padding_idx, xp, False)


def embedding_bag_vjp(input: Array, weight: Array, offsets: Array | None = None,
                      max_norm: float | None = None, norm_type: float = 2, scale_grad_by_freq: bool = False,
                      mode: str = "mean", sparse: bool = False, per_sample_weights: Array | None = None,
                      include_last_offset: bool = False, padding_idx: int | None = None, *,
                      xp=None) -> tuple[Array, Callable[[Array], Any]]:
    """:func:`embedding_bag` and its pullback: returns ``(output, pullback)``.

    ``pullback(grad_output)`` returns ``(grad_weight, grad_per_sample_weights)``; the latter is None when
    no ``per_sample_weights`` were given.  ``grad_weight`` is dense or, with ``sparse=True``, a
    :class:`xembed.SparseGrad`.
    """
    return _embedding_bag(input, weight, offsets, max_norm, norm_type, scale_grad_by_freq, mode, sparse,
                          per_sample_weights, include_last_offset, padding_idx, xp, True)


def renorm(weight: Array, input: Array, max_norm: float, norm_type: float = 2.0, *, xp: Any = None) -> Array:
    """The max_norm renorm as a function (RENORM-FUNCTIONAL): returns a new table in which every row of
    ``weight`` referenced by ``input`` whose ``norm_type``-norm exceeds ``max_norm`` (strictly) is scaled
    by ``max_norm / (norm + 1e-7)``; the other rows are copied bit for bit.  ``weight`` is never modified.

    The same rows and values as the in-place renorm that ``embedding(..., max_norm=...)`` applies on
    mutable arrays; on immutable arrays (JAX) that call renorms only the copy it reads, and a training
    loop applies ``weight = xembed.renorm(weight, input, max_norm)`` itself.  Any backend; on torch the
    result is a new tensor outside autograd; on traced JAX arrays out-of-range indices change nothing.
    """
    xp = _namespace(xp, input=input, weight=weight)
    v.check_weight(weight, xp)
    v.check_index_dtype("input", input, xp)
    checked_max, p = v.check_renorm_args(max_norm, norm_type)
    if checked_max is None:
        raise TypeError("`max_norm` must be a real number, got None")
    v.check_indices_in_range(input, weight.shape[0], xp)
    if is_torch_namespace(xp):
        weight, input = weight.detach(), input.detach()
    if is_jax_namespace(xp):
        from . import _jax_autodiff

        return _jax_autodiff.renorm(weight, input, checked_max, p, xp)
    return _core.renorm(weight, input, checked_max, p, xp)


for _f in (embedding, embedding_bag):
    _f.__doc__ += _COMMON_DOC
del _f
