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
from array_api_compat import is_array_api_obj, is_jax_array, is_lazy_array

Array = Any
MODES = ("sum", "mean", "max")


TRACED_CHECKS: contextvars.ContextVar[bool] = contextvars.ContextVar("xembed_jit_value_checks", default=False)


@contextlib.contextmanager
def jit_value_checks(enabled: bool = True) -> Iterator[None]:
    """Opt-in value checks for traced JAX calls (spec JIT-CHECKIFY).

    Calls *traced* inside this context (``jax.jit``, ``jax.vmap``) emit ``jax.experimental.checkify``
    checks of the index range and offsets rules instead of the NaN rows of JIT-INVALID-*; the traced
    function must then be wrapped with ``checkify.checkify`` (``err.throw()`` raises the first failed
    check, naming the argument and the offending value).  It acts at trace time: a function traced
    (and cached by ``jit``) outside the context keeps that trace.
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
    if is_jax_array(x):
        import jax
        import jax.numpy as jnp

        return not isinstance(x, jax.core.Tracer) and not isinstance(jnp.zeros((), dtype=bool), jax.core.Tracer)
    return not is_lazy_array(x)


def check_is_array(name: str, x: Any) -> None:
    if not is_array_api_obj(x):
        raise TypeError(f"`{name}` must be an array, got {type(x).__name__}")


def check_same_device(arrays: dict[str, Array]) -> None:
    # A traced JAX array has no device (None) until it is placed: nothing to compare it with.
    items = [(k, v) for k, v in arrays.items() if v is not None and _device(v) is not None]
    if not items:
        return
    name0, x0 = items[0]
    d0 = _device(x0)
    for name, x in items[1:]:
        if _device(x) != d0:
            raise ValueError(
                f"`{name}` is on device {_device(x)!r} but `{name0}` is on {d0!r}; "
                "all arrays must be on the same device")


def check_weight(weight: Array, xp) -> None:
    if weight.ndim != 2:
        raise ValueError(f"`weight` must be 2-D (num_embeddings, embedding_dim), got shape {tuple(weight.shape)}")
    if not xp.isdtype(weight.dtype, "real floating"):
        raise TypeError(f"`weight` must have a real floating dtype, got {weight.dtype}")


def check_index_dtype(name: str, x: Array, xp) -> None:
    if not xp.isdtype(x.dtype, "integral"):
        raise TypeError(f"`{name}` must have an integer dtype, got {x.dtype}")


def check_flag(name: str, value: Any) -> bool:
    if isinstance(value, bool) or (isinstance(value, numbers.Integral) and value in (0, 1)):
        return bool(value)
    raise TypeError(f"`{name}` must be a bool, got {value!r}")


def normalize_padding_idx(padding_idx: Any, num_embeddings: int) -> int | None:
    """None, or the padding row in ``[0, N)`` (negative values count from the end)."""
    if padding_idx is None:
        return None
    if isinstance(padding_idx, bool) or not isinstance(padding_idx, numbers.Integral):
        raise TypeError(f"`padding_idx` must be an int or None, got {padding_idx!r}")
    p = int(padding_idx)
    if not -num_embeddings <= p < num_embeddings:
        raise ValueError(
            f"`padding_idx` {p} is out of range for a weight with {num_embeddings} rows "
            f"(must be in [{-num_embeddings}, {num_embeddings}))")
    return p + num_embeddings if p < 0 else p


def check_renorm_args(max_norm: Any, norm_type: Any) -> tuple[float | None, float]:
    if max_norm is not None:
        if isinstance(max_norm, bool) or not isinstance(max_norm, numbers.Real):
            raise TypeError(f"`max_norm` must be a real number or None, got {max_norm!r}")
        if not float(max_norm) > 0:  # also rejects NaN
            raise ValueError(f"`max_norm` must be > 0, got {max_norm!r}")
        max_norm = float(max_norm)
    if isinstance(norm_type, bool) or not isinstance(norm_type, numbers.Real):
        raise TypeError(f"`norm_type` must be a real number, got {norm_type!r}")
    if not float(norm_type) > 0:  # also rejects NaN
        raise ValueError(f"`norm_type` must be > 0 (a p-norm, inf allowed), got {norm_type!r}")
    return max_norm, float(norm_type)


def check_indices_in_range(x: Array, num_embeddings: int, xp, name: str = "input") -> None:
    """IndexError naming the first offending value and its position (value check)."""
    if not has_values(x) or math.prod(x.shape) == 0:
        return
    flat = xp.reshape(x, (-1,))
    bad = (flat < 0) | (flat >= num_embeddings)
    if not bool(xp.any(bad)):
        return
    pos = int(xp.argmax(xp.astype(bad, xp.int8)))
    value = int(flat[pos])
    where = _unravel(pos, tuple(x.shape))
    raise IndexError(
        f"index {value} at position {where} of `{name}` is out of range for a weight with "
        f"{num_embeddings} rows (valid: 0 <= index < {num_embeddings}; negative indices are not wrapped)")


def _unravel(pos: int, shape: tuple[int, ...]):
    if len(shape) == 1:
        return pos
    out = []
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


def check_bag_metadata(input: Array, weight: Array, offsets: Array | None, per_sample_weights: Array | None,
                       mode: Any, max_norm: Any, norm_type: Any, scale_grad_by_freq: Any, sparse: Any,
                       include_last_offset: Any, padding_idx: Any, xp) -> BagArgs:
    """All embedding_bag checks that need no array values, in torch's order where torch has one."""
    if per_sample_weights is not None and tuple(per_sample_weights.shape) != tuple(input.shape):
        raise ValueError(
            f"`per_sample_weights` must have the same shape as `input`, got {tuple(per_sample_weights.shape)} "
            f"and {tuple(input.shape)}")
    check_weight(weight, xp)
    if input.ndim == 2 and offsets is not None:
        raise ValueError(
            "`offsets` must be None when `input` is 2-D (each row is a bag), got an array of shape "
            f"{tuple(offsets.shape)}")
    if input.ndim == 1 and offsets is None:
        raise ValueError("`offsets` is required when `input` is 1-D, got None")
    if offsets is not None and offsets.ndim != 1:
        raise ValueError(f"`offsets` must be 1-D, got shape {tuple(offsets.shape)}")
    if input.ndim not in (1, 2):
        raise ValueError(f"`input` must be 1-D (with `offsets`) or 2-D, got shape {tuple(input.shape)}")
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"`mode` must be one of 'sum', 'mean', 'max', got {mode!r}")
    scale_grad_by_freq = check_flag("scale_grad_by_freq", scale_grad_by_freq)
    sparse = check_flag("sparse", sparse)
    include_last_offset = check_flag("include_last_offset", include_last_offset)
    if mode == "max" and scale_grad_by_freq:
        raise ValueError("`scale_grad_by_freq`=True is not supported with `mode`='max'")
    if mode == "max" and sparse:
        raise ValueError("`sparse`=True is not supported with `mode`='max'")
    if per_sample_weights is not None and mode != "sum":
        raise NotImplementedError(
            f"`per_sample_weights` is only supported with `mode`='sum', got `mode`={mode!r} (as in torch)")
    if sparse and scale_grad_by_freq:
        raise ValueError("`scale_grad_by_freq`=True is not supported with `sparse`=True")
    check_index_dtype("input", input, xp)
    if offsets is not None:
        check_index_dtype("offsets", offsets, xp)
        if include_last_offset and input.ndim == 1 and offsets.shape[0] == 0:
            raise ValueError("`offsets` must not be empty when `include_last_offset`=True")
    if per_sample_weights is not None:
        if per_sample_weights.dtype != weight.dtype:
            raise TypeError(
                f"`per_sample_weights` must have the dtype of `weight` ({weight.dtype}), "
                f"got {per_sample_weights.dtype}")
    max_norm, norm_type = check_renorm_args(max_norm, norm_type)
    padding_idx = normalize_padding_idx(padding_idx, weight.shape[0])
    return BagArgs(mode, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse, include_last_offset)


def check_offsets_values(offsets: Array, n: int, include_last_offset: bool, xp) -> None:
    """offsets[0] == 0, non-decreasing, offsets[-1] <= n (== n with include_last_offset) (value check)."""
    if not has_values(offsets) or offsets.shape[0] == 0:
        return
    first = int(offsets[0])
    if first != 0:
        raise ValueError(f"`offsets`[0] must be 0, got {first}")
    if offsets.shape[0] > 1:
        dec = offsets[1:] < offsets[:-1]
        if bool(xp.any(dec)):
            pos = int(xp.argmax(xp.astype(dec, xp.int8))) + 1
            raise ValueError(
                f"`offsets` must be non-decreasing, but offsets[{pos}] = {int(offsets[pos])} < "
                f"offsets[{pos - 1}] = {int(offsets[pos - 1])}")
    last = int(offsets[-1])
    if last > n:
        raise ValueError(
            f"`offsets`[-1] = {last} is greater than the number of indices in `input` ({n})")
    if include_last_offset and last != n:
        raise ValueError(
            f"with `include_last_offset`=True, `offsets`[-1] must equal the number of indices in `input` "
            f"({n}), got {last}")
