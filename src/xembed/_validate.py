"""Input checks, in two separable kinds.

* Metadata checks (types, shapes, dtypes, option combinations, scalars) need no array values and run
  everywhere, lazy and traced arrays included.
* Value checks (index range, offsets rules) read array values.  They run only on arrays whose values
  can be read (:func:`has_values`): on lazy / traced arrays (Dask, JAX under ``jit`` / ``vmap``) they are
  skipped (JAX under ``jit``: see ``xembed._jax_autodiff`` and spec JIT-*).

Every check runs before anything is computed or modified, so a failing call never touches the weight.
Errors name the argument in backticks and the offending value.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from array_api_compat import device as _device
from array_api_compat import (
    is_array_api_obj,
    is_cupy_array,
    is_jax_array,
    is_lazy_array,
    is_numpy_array,
    is_torch_array,
)

from . import _primitives as prim
from ._dtypes import index_dtype
from ._typing import Array, Namespace

MODES = ("sum", "mean", "max", "sqrtn", "min")
"""Bag modes: torch's three, then the extensions ``sqrtn`` (EXT-SQRTN) and ``min`` (EXT-MIN)."""
PSW_MODES = ("sum", "mean", "sqrtn")
MAX_NDIM = 64
"""EMB-NDIM: NumPy's limit on dimensions (torch's and JAX's are no lower); the output of ``embedding`` has one
more dimension than ``input``."""
"""Modes that accept per_sample_weights (``mean``: the weighted mean, EXT-WMEAN)."""


def check_mode(mode: Any) -> str:
    """ERR-MODE: ``mode`` must be one of :data:`MODES`."""
    if not isinstance(mode, str) or mode not in MODES:
        msg = f"`mode` must be one of {', '.join(map(repr, MODES))}, got {mode!r}"
        raise ValueError(msg)
    return mode

# Per-call speed: answers that depend only on a type or a dtype are computed once.
_EAGER_TYPES: set[type] = set()
_DEVICE_ATTR_TYPES: set[type] = set()
_ISDTYPE: dict[tuple[int, Any, str], bool] = {}


def _is_lazy(x: Array) -> bool:
    """``is_lazy_array``, remembered for the types that are always eager (NumPy, CuPy, torch)."""
    t = type(x)
    if t in _EAGER_TYPES:
        return False
    if is_numpy_array(x) or is_cupy_array(x) or is_torch_array(x):
        _EAGER_TYPES.add(t)
        return False
    return bool(is_lazy_array(x))


def _isdtype(xp: Any, dtype: Any, kind: str) -> bool:
    """``xp.isdtype``, cached per (namespace, dtype, kind)."""
    key = (id(xp), dtype, kind)
    r = _ISDTYPE.get(key)
    if r is None:
        r = _ISDTYPE[key] = bool(xp.isdtype(dtype, kind))
    return r


TRACED_CHECKS: contextvars.ContextVar[bool] = contextvars.ContextVar("xembed_jit_value_checks", default=False)


@contextlib.contextmanager
def jit_value_checks(enabled: bool = True) -> Iterator[None]:
    """Check index and offsets values inside ``jax.jit`` too, as ``checkify`` errors.

    Calls *traced* inside this context (``jax.jit``, ``jax.vmap``) emit ``jax.experimental.checkify``
    checks of the index range and offsets rules instead of the NaN rows they give otherwise.

    Parameters
    ----------
    enabled : bool, optional
        False turns the checks off again inside an enclosing context.

    Yields
    ------
    None
        The context.

    Notes
    -----
    The traced function must be wrapped with ``checkify.checkify``; ``err.throw()`` raises the first failed
    check, naming the argument and the offending value (JIT-CHECKIFY; without the context: JIT-INVALID-INDEX,
    JIT-INVALID-OFFSETS).  It acts at trace time: a function traced (and cached by ``jit``) outside the context
    keeps that trace.  Eager calls always check values.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, xembed
    >>> from jax.experimental import checkify
    >>> W = jnp.ones((4, 2))
    >>> with xembed.jit_value_checks():
    ...     lookup = jax.jit(checkify.checkify(xembed.embedding))
    ...     err, out = lookup(jnp.array([1, 7]), W)
    >>> print(err.get())  # doctest: +ELLIPSIS
    index 7 at ...position 1 of `input` is out of range for a weight with 4 rows...
    """
    token = TRACED_CHECKS.set(bool(enabled))
    try:
        yield
    finally:
        TRACED_CHECKS.reset(token)


def has_values(x: Array) -> bool:
    """Whether ``x``'s values can be read now: eager arrays yes; Dask and traced JAX arrays
    (``jit``, ``vmap``) no.  Eager JAX arrays are concrete although ``is_lazy_array`` says lazy, except
    inside a ``jit`` trace (a concrete array closed over by a jitted function): there every operation on
    it is staged, which a tiny probe array reveals (under ``grad`` / ``vmap`` alone it stays concrete)."""
    if type(x) in _EAGER_TYPES:
        return True
    if is_jax_array(x):
        import jax
        import jax.numpy as jnp

        return not isinstance(x, jax.core.Tracer) and not isinstance(jnp.zeros((), dtype=bool), jax.core.Tracer)
    return not _is_lazy(x)


def check_is_array(name: str, x: Any) -> None:
    if not is_array_api_obj(x):
        msg = f"`{name}` must be an array, got {type(x).__name__}"
        raise TypeError(msg)


def _device_of(x: Array) -> Any:
    """``array_api_compat.device``; torch and CuPy arrays answer their own ``.device`` (remembered per type)."""
    t = type(x)
    if t in _DEVICE_ATTR_TYPES:
        return x.device
    if is_torch_array(x) or is_cupy_array(x):
        _DEVICE_ATTR_TYPES.add(t)
    return _device(x)


def check_same_device(arrays: dict[str, Array]) -> None:
    # A traced JAX array has no device (None) until it is placed: nothing to compare it with.
    items = [(k, v) for k, v in arrays.items() if v is not None and _device(v) is not None]
    if not items:
        return
    name0, x0 = items[0]
    d0 = _device_of(x0)
    for name, x in items[1:]:
        if _device_of(x) != d0:
            msg = (
                f"`{name}` is on device {_device(x)!r} but `{name0}` is on {d0!r}; "
                "all arrays must be on the same device"
            )
            raise ValueError(msg)


def check_weight(weight: Array, xp: Namespace) -> None:
    """ERR-WEIGHT: 2-D and real floating."""
    if weight.ndim != 2:
        msg = f"`weight` must be 2-D (num_embeddings, embedding_dim), got shape {tuple(weight.shape)}"
        raise ValueError(msg)
    if not _isdtype(xp, weight.dtype, "real floating"):
        msg = f"`weight` must have a real floating dtype, got {weight.dtype}"
        raise TypeError(msg)


def check_index_dtype(name: str, x: Array, xp: Namespace) -> None:
    """ERR-INDEX-DTYPE / ERR-OFFSETS-DTYPE: an integer dtype (bool is not one)."""
    if not _isdtype(xp, x.dtype, "integral"):
        msg = f"`{name}` must have an integer dtype, got {x.dtype}"
        raise TypeError(msg)


def check_flag(name: str, value: Any) -> bool:
    if isinstance(value, bool) or (isinstance(value, numbers.Integral) and value in (0, 1)):
        return bool(value)
    msg = f"`{name}` must be a bool, got {value!r}"
    raise TypeError(msg)


def normalize_padding_idx(padding_idx: Any, num_embeddings: int) -> int | None:
    """None, or the padding row in ``[0, N)`` (PAD-NEGATIVE: negative values count from the end;
    PAD-RANGE: outside ``[-N, N)`` is a ValueError)."""
    if padding_idx is None:
        return None
    if isinstance(padding_idx, bool) or not isinstance(padding_idx, numbers.Integral):
        msg = f"`padding_idx` must be an int or None, got {padding_idx!r}"
        raise TypeError(msg)
    p = int(padding_idx)
    if not -num_embeddings <= p < num_embeddings:
        msg = (
            f"`padding_idx` {p} is out of range for a weight with {num_embeddings} rows "
            f"(must be in [{-num_embeddings}, {num_embeddings}))"
        )
        raise ValueError(msg)
    return p + num_embeddings if p < 0 else p


def _as_float(name: str, value: numbers.Real) -> float:
    """``float(value)``, with a ValueError naming the argument when it has no float value (an int beyond
    float64's range raises OverflowError in ``float()``)."""
    try:
        return float(value)
    except OverflowError:
        digits = len(str(abs(math.trunc(value))))
        msg = f"`{name}` must be representable as a float64, got an integer of {digits} digits"
        raise ValueError(msg) from None


def check_renorm_args(max_norm: Any, norm_type: Any) -> tuple[float | None, float]:
    """RENORM-ARGS: ``max_norm`` > 0 or None, ``norm_type`` > 0 (inf allowed); NaN rejected."""
    if max_norm is not None:
        if isinstance(max_norm, bool) or not isinstance(max_norm, numbers.Real):
            msg = f"`max_norm` must be a real number or None, got {max_norm!r}"
            raise TypeError(msg)
        if not _as_float("max_norm", max_norm) > 0:  # also rejects NaN
            msg = f"`max_norm` must be > 0, got {max_norm!r}"
            raise ValueError(msg)
        max_norm = float(max_norm)
    if isinstance(norm_type, bool) or not isinstance(norm_type, numbers.Real):
        msg = f"`norm_type` must be a real number, got {norm_type!r}"
        raise TypeError(msg)
    if not _as_float("norm_type", norm_type) > 0:  # also rejects NaN
        msg = f"`norm_type` must be > 0 (a p-norm, inf allowed), got {norm_type!r}"
        raise ValueError(msg)
    return max_norm, float(norm_type)


def check_writable(weight: Array, xp: Namespace) -> None:
    """RENORM-WRITABLE: the in-place renorm needs a writable weight; checked before any row is written."""
    if not prim.is_writable(weight, xp=xp):
        msg = ("`weight` is read-only, but `max_norm` renormalises its rows in place; pass a writable array, or "
               "use `xembed.renorm(weight, input, max_norm)` (functional) and call without `max_norm`")
        raise ValueError(msg)


def check_indices_in_range(x: Array, num_embeddings: int, xp: Namespace, name: str = "input") -> None:
    """ERR-INDEX-RANGE: IndexError naming the first offending value and its position (value check).

    One min/max pass over the indices (VAL-ONE-PASS); the offending position is searched only when one is
    out of range.
    """
    if not has_values(x) or math.prod(x.shape) == 0:
        return
    lo, hi = prim.index_bounds(x, xp=xp)
    if lo >= 0 and hi < num_embeddings:
        return
    flat = xp.reshape(x, (-1,))
    bad = (flat < 0) | (flat >= num_embeddings)
    pos = int(xp.argmax(xp.astype(bad, xp.int8)))
    value = int(flat[pos])
    where = _unravel(pos, tuple(x.shape))
    msg = (
        f"index {value} at position {where} of `{name}` is out of range for a weight with "
        f"{num_embeddings} rows (valid: 0 <= index < {num_embeddings}; negative indices are not wrapped)"
    )
    raise IndexError(msg)


def _unravel(pos: int, shape: tuple[int, ...]) -> int | tuple[int, ...]:
    if len(shape) == 1:
        return pos
    out: list[int] = []
    for s in reversed(shape):
        pos, r = divmod(pos, s)
        out.append(r)
    return tuple(reversed(out))


@dataclass(frozen=True)
class BagArgs:
    """Validated embedding_bag arguments (everything the core needs, nothing it must re-check)."""

    mode: str
    padding_idx: int | None
    max_norm: float | None
    norm_type: float
    scale_grad_by_freq: bool
    sparse: bool
    include_last_offset: bool


def check_embedding_metadata(input: Array, weight: Array, padding_idx: Any, max_norm: Any, norm_type: Any,
                             scale_grad_by_freq: Any, sparse: Any, xp: Namespace,
                             ) -> tuple[int | None, float | None, float, bool, bool]:
    """Every embedding check that needs no array values (ERR-WEIGHT, ERR-INDEX-DTYPE, ERR-SPARSE-SGBF,
    RENORM-ARGS, PAD-RANGE); returns the normalised ``(padding_idx, max_norm, norm_type,
    scale_grad_by_freq, sparse)``."""
    check_weight(weight, xp)
    check_index_dtype("input", input, xp)
    if input.ndim >= MAX_NDIM:
        msg = (f"`input` must have fewer than {MAX_NDIM} dimensions (the output adds one, and array libraries "
               f"stop at {MAX_NDIM}), got {input.ndim}")
        raise ValueError(msg)
    scale_grad_by_freq = check_flag("scale_grad_by_freq", scale_grad_by_freq)
    sparse = check_flag("sparse", sparse)
    if sparse and scale_grad_by_freq:
        msg = "`scale_grad_by_freq`=True is not supported with `sparse`=True"
        raise ValueError(msg)
    max_norm, norm_type = check_renorm_args(max_norm, norm_type)
    padding_idx = normalize_padding_idx(padding_idx, weight.shape[0])
    return padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse


def check_bag_metadata(input: Array, weight: Array, offsets: Array | None, per_sample_weights: Array | None,
                       mode: Any, max_norm: Any, norm_type: Any, scale_grad_by_freq: Any, sparse: Any,
                       include_last_offset: Any, padding_idx: Any, xp: Namespace,
                       lengths: Array | None = None) -> BagArgs:
    """All embedding_bag checks that need no array values, in torch's order where torch has one
    (ERR-PSW, ERR-WEIGHT, ERR-OFFSETS-SHAPE, ERR-INPUT-NDIM, ERR-MODE, ERR-MAX-SPARSE, BAG-PSW-MODE,
    ERR-SPARSE-SGBF, ERR-INDEX-DTYPE, ERR-OFFSETS-DTYPE, BAG-LAST-OFFSET, RENORM-ARGS, PAD-RANGE).

    ``lengths`` (EXT-LENGTHS) stands in for ``offsets``; its checks come first so that an input described
    by lengths never meets the offsets rules.
    """
    if lengths is not None:
        check_lengths_metadata(input, offsets, lengths, include_last_offset, xp)
    if per_sample_weights is not None and tuple(per_sample_weights.shape) != tuple(input.shape):
        msg = (
            f"`per_sample_weights` must have the same shape as `input`, got {tuple(per_sample_weights.shape)} "
            f"and {tuple(input.shape)}"
        )
        raise ValueError(msg)
    check_weight(weight, xp)
    if input.ndim == 2 and offsets is not None:
        msg = (
            "`offsets` must be None when `input` is 2-D (each row is a bag), got an array of shape "
            f"{tuple(offsets.shape)}"
        )
        raise ValueError(msg)
    if input.ndim == 1 and offsets is None and lengths is None:
        msg = "`offsets` (or `lengths`) is required when `input` is 1-D, got None"
        raise ValueError(msg)
    if offsets is not None and offsets.ndim != 1:
        msg = f"`offsets` must be 1-D, got shape {tuple(offsets.shape)}"
        raise ValueError(msg)
    if input.ndim not in (1, 2):
        msg = f"`input` must be 1-D (with `offsets`) or 2-D, got shape {tuple(input.shape)}"
        raise ValueError(msg)
    mode = check_mode(mode)
    scale_grad_by_freq = check_flag("scale_grad_by_freq", scale_grad_by_freq)
    sparse = check_flag("sparse", sparse)
    include_last_offset = check_flag("include_last_offset", include_last_offset)
    if mode in ("max", "min") and scale_grad_by_freq:
        msg = f"`scale_grad_by_freq`=True is not supported with `mode`={mode!r}"
        raise ValueError(msg)
    if mode in ("max", "min") and sparse:
        msg = f"`sparse`=True is not supported with `mode`={mode!r}"
        raise ValueError(msg)
    if per_sample_weights is not None and mode not in PSW_MODES:
        msg = (f"`per_sample_weights` is only supported with `mode` in {PSW_MODES} (torch: 'sum' only), "
               f"got `mode`={mode!r}")
        raise NotImplementedError(msg)
    if sparse and scale_grad_by_freq:
        msg = "`scale_grad_by_freq`=True is not supported with `sparse`=True"
        raise ValueError(msg)
    check_index_dtype("input", input, xp)
    if offsets is not None:
        check_index_dtype("offsets", offsets, xp)
        if include_last_offset and input.ndim == 1 and offsets.shape[0] == 0:
            msg = "`offsets` must not be empty when `include_last_offset`=True"
            raise ValueError(msg)
    if per_sample_weights is not None and per_sample_weights.dtype != weight.dtype:
        msg = (
            f"`per_sample_weights` must have the dtype of `weight` ({weight.dtype}), "
            f"got {per_sample_weights.dtype}"
        )
        raise TypeError(msg)
    max_norm, norm_type = check_renorm_args(max_norm, norm_type)
    padding_idx = normalize_padding_idx(padding_idx, weight.shape[0])
    return BagArgs(mode, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse, include_last_offset)


def check_lengths_metadata(input: Array, offsets: Array | None, lengths: Array, include_last_offset: Any,
                           xp: Namespace) -> None:
    """EXT-LENGTHS-ARGS: ``lengths`` is a 1-D integer array, only with a 1-D input, without ``offsets`` and
    without ``include_last_offset``."""
    check_is_array("lengths", lengths)
    msg = None
    if offsets is not None:
        msg = ("give either `offsets` or `lengths`, not both: got `offsets` of shape "
               f"{tuple(offsets.shape)} and `lengths` of shape {tuple(lengths.shape)}")
    elif input.ndim != 1:
        msg = ("`lengths` needs a 1-D `input` (a 2-D input is already one bag per row), got `input` of shape "
               f"{tuple(input.shape)}")
    elif lengths.ndim != 1:
        msg = f"`lengths` must be 1-D (one entry per bag), got shape {tuple(lengths.shape)}"
    if msg is not None:
        raise ValueError(msg)
    check_index_dtype("lengths", lengths, xp)
    if check_flag("include_last_offset", include_last_offset):
        msg = ("`include_last_offset`=True cannot be combined with `lengths` (lengths already give every bag's "
               "end), got `include_last_offset`=True")
        raise ValueError(msg)


def check_lengths_values(lengths: Array, n: int, xp: Namespace) -> None:
    """EXT-LENGTHS-VALUES, in exact integer arithmetic (VAL-EXACT): every length in ``[0, len(input)]``,
    compared in the lengths' own dtype (unsigned values beyond int64's range included), so that the offsets
    derived from them (``lengths_to_offsets``) cannot wrap around before a prefix exceeds ``len(input)``;
    the sum rule is then checked on those offsets by :func:`check_offsets_values` (value check)."""
    if not has_values(lengths) or lengths.shape[0] == 0:
        return
    lo, hi = prim.index_bounds(lengths, xp=xp)
    if lo >= 0 and hi <= n:
        return
    bad = (lengths < 0) | (lengths > n)
    pos = int(xp.argmax(xp.astype(bad, xp.int8)))
    value = int(lengths[pos])
    what = "non-negative" if value < 0 else f"at most the number of indices in `input` ({n})"
    msg = f"every entry of `lengths` must be {what}, but lengths[{pos}] = {value}"
    raise ValueError(msg)


def lengths_to_offsets(lengths: Array, xp: Namespace) -> Array:
    """EXT-LENGTHS: the full offsets ``[0, cumsum(lengths)]`` (B+1 entries, used with include_last_offset), in
    the namespace's index dtype.  Each length was checked to lie in ``[0, len(input)]``, so the cast is exact
    and a running sum that wraps shows up as decreasing offsets (VAL-EXACT)."""
    dev = _device(lengths)
    itype = index_dtype(xp, dev)
    zero = xp.zeros((1,), dtype=itype, device=dev)
    return xp.concat([zero, xp.cumulative_sum(xp.astype(lengths, itype, copy=False))])


def offsets_from_lengths(lengths: Array, n: int, xp: Namespace) -> Array:
    """EXT-LENGTHS with VAL-EXACT: check ``lengths`` (:func:`check_lengths_values`), derive the full offsets
    ``[0, cumsum(lengths)]`` and check those by the same code as a caller's offsets (the one place every path
    turns lengths into offsets)."""
    check_lengths_values(lengths, n, xp)
    offsets = lengths_to_offsets(lengths, xp)
    check_offsets_values(offsets, n, True, xp, source="lengths")
    return offsets


def check_offsets_values(offsets: Array, n: int, include_last_offset: bool, xp: Namespace,
                         source: str = "offsets") -> None:
    """offsets[0] == 0 (ERR-OFFSETS-FIRST), non-decreasing (ERR-OFFSETS-DECREASING), offsets[-1] <= n
    (ERR-OFFSETS-END; == n with include_last_offset, BAG-LAST-OFFSET) (value check, one pass: VAL-ONE-PASS).

    Every comparison is made in the offsets' own dtype or on Python ints (VAL-EXACT).  ``source="lengths"``:
    the offsets were derived from ``lengths`` (EXT-LENGTHS) and the errors speak of those.
    """
    if not has_values(offsets) or offsets.shape[0] == 0:
        return
    first = int(offsets[0])
    if first != 0:
        msg = f"`offsets`[0] must be 0, got {first}"
        raise ValueError(msg)
    pos = prim.offsets_first_decrease(offsets, xp=xp)
    if pos > 0:
        if source == "lengths":  # a running sum wrapped around its dtype
            msg = f"the running sum of `lengths` overflows its integer dtype at lengths[{pos - 1}]"
        else:
            msg = (f"`offsets` must be non-decreasing, but offsets[{pos}] = {int(offsets[pos])} < "
                   f"offsets[{pos - 1}] = {int(offsets[pos - 1])}")
        raise ValueError(msg)
    last = int(offsets[-1])
    if source == "lengths" and last != n:
        msg = f"`lengths` must sum to the number of indices in `input` ({n}), got sum(lengths) = {last}"
        raise ValueError(msg)
    if last > n:
        msg = f"`offsets`[-1] = {last} is greater than the number of indices in `input` ({n})"
        raise ValueError(msg)
    if include_last_offset and last != n:
        msg = (
            f"with `include_last_offset`=True, `offsets`[-1] must equal the number of indices in `input` "
            f"({n}), got {last}"
        )
        raise ValueError(msg)
