"""The few primitives the array API standard lacks, behind one dispatch point.

Each primitive has a standard-only implementation in :mod:`._fallback` and, where it pays, a native one
per backend (:mod:`._numpy`, :mod:`._torch`, :mod:`._cupy`) plus the optional compiled CPU kernels of
:mod:`._numba` (extra ``xembed[fast]``).  The core calls only the functions exported here, with ``xp``
passed explicitly.  Contracts (what every path must return) are in ``_fallback``'s docstrings; the
semantics of the embedding options never live here.

Delegation is explicit: one :class:`Table` of functions per (namespace, mode), built once -- the backend
module is imported only when that backend's arrays are first passed -- and cached.

Modes (``XEMBED_PRIMITIVES`` in the environment, or :func:`use` for a block of code; spec ``PRIM-MODE``):

``auto`` (default)
    the compiled numba kernels for NumPy arrays when numba is importable, else ``native``;
``native``
    each backend's own library (pure NumPy for NumPy arrays, torch's kernels, CuPy RawKernels);
``numba``
    like ``auto`` but numba is required (ImportError naming the extra when it is missing);
``fallback``
    the standard-only implementations on every backend (how the test-suite proves them).

The mode is a :class:`contextvars.ContextVar`: :func:`use` affects the current thread / task only.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from array_api_compat import (
    is_cupy_namespace,
    is_dask_namespace,
    is_jax_namespace,
    is_numpy_namespace,
    is_torch_namespace,
)

from .._dtypes import index_dtype
from .._typing import Array
from . import _fallback

__all__ = [
    "MODES",
    "Table",
    "bincount",
    "boolean_masks",
    "device_of",
    "fused_numpy_forward",
    "gather_scatter_add",
    "gather_segment_max",
    "gather_segment_min",
    "gather_segment_sum",
    "has_values",
    "index_bounds",
    "index_dtype",
    "is_writable",
    "mode",
    "numba_available",
    "partition",
    "plain",
    "put_rows_",
    "scatter_add_rows",
    "segment_ids",
    "table",
    "take_rows",
    "use",
]

MODES = ("auto", "native", "numba", "fallback")


def _checked(m: str, what: str) -> str:
    if m not in MODES:
        msg = f"{what} must be one of {MODES}, got {m!r}"
        raise ValueError(msg)
    return m


_DEFAULT_MODE: str = _checked(os.environ.get("XEMBED_PRIMITIVES", "auto"), "XEMBED_PRIMITIVES")
_mode_var: contextvars.ContextVar[str] = contextvars.ContextVar("xembed_primitives", default=_DEFAULT_MODE)


def mode() -> str:
    """The primitive mode of the current context.

    Returns
    -------
    str
        One of ``auto``, ``native``, ``numba``, ``fallback``.

    Examples
    --------
    >>> import xembed
    >>> xembed.primitives.mode() in xembed.primitives.MODES
    True
    """
    return _mode_var.get()


@contextlib.contextmanager
def use(new_mode: str) -> Iterator[None]:
    """Select the primitive mode for a block of code, in the current thread / asyncio task only.

    Parameters
    ----------
    new_mode : {'auto', 'native', 'numba', 'fallback'}
        The mode inside the block.

    Yields
    ------
    None
        The block runs with ``new_mode``; the previous mode is restored after it.

    Raises
    ------
    ValueError
        ``new_mode`` is not one of the modes.

    Examples
    --------
    >>> import numpy as np, xembed
    >>> with xembed.primitives.use("fallback"):
    ...     xembed.embedding_bag(np.array([[0, 1]]), np.eye(2), mode="sum")
    array([[1., 1.]])
    """
    token = _mode_var.set(_checked(new_mode, "`mode`"))
    try:
        yield
    finally:
        _mode_var.reset(token)


@dataclass(frozen=True)
class Table:
    """The primitives of one backend in one mode (every field a function with ``_fallback``'s contract)."""

    segment_ids: Callable[..., Array]
    bincount: Callable[..., Array]
    gather_segment_sum: Callable[..., Array]
    gather_segment_max: Callable[..., tuple[Array, Array | None]]
    gather_segment_min: Callable[..., tuple[Array, Array | None]]
    scatter_add_rows: Callable[..., Array]
    gather_scatter_add: Callable[..., Array]
    put_rows_: Callable[..., Array]
    index_bounds: Callable[..., tuple[int, int]]
    offsets_first_decrease: Callable[..., int]
    take_rows: Callable[..., Array]
    partition: Callable[..., tuple[Array, ...]]


_FALLBACK = Table(
    segment_ids=_fallback.segment_ids,
    bincount=_fallback.bincount,
    gather_segment_sum=_fallback.gather_segment_sum,
    gather_segment_max=_fallback.gather_segment_max,
    gather_segment_min=_fallback.gather_segment_min,
    scatter_add_rows=_fallback.scatter_add_rows,
    gather_scatter_add=_fallback.gather_scatter_add,
    put_rows_=_fallback.put_rows_,
    index_bounds=_fallback.index_bounds,
    offsets_first_decrease=_fallback.offsets_first_decrease,
    take_rows=_fallback.take_rows,
    partition=_fallback.partition,
)

_numba_ok: dict[str, bool] = {}


def numba_available() -> bool:
    """Whether numba imports (checked once).

    Returns
    -------
    bool
        True when the compiled kernels of the extra ``xembed[fast]`` can run.

    Examples
    --------
    >>> import xembed
    >>> isinstance(xembed.primitives.numba_available(), bool)
    True
    """
    ok = _numba_ok.get("numba")
    if ok is None:
        try:
            import numba  # noqa: F401
        except ImportError:
            ok = False
        else:
            ok = True
        _numba_ok["numba"] = ok
    return ok


#: the primitives a backend module with a native path for every one of them provides (NumPy, torch)
_ALL_NATIVE = ("bincount", "gather_segment_sum", "gather_segment_max", "scatter_add_rows", "gather_scatter_add",
               "put_rows_", "index_bounds", "offsets_first_decrease")


def _with(base: Table, m: Any, names: tuple[str, ...]) -> Table:
    """``base`` with the primitives ``names`` taken from backend module ``m``; a native segment max also gives
    the segment min where ``m`` has none of its own (EXT-MIN: the max of the negated gathered rows, never of the
    whole table)."""
    table = replace(base, **{name: getattr(m, name) for name in names})
    if "gather_segment_max" in names and "gather_segment_min" not in names:
        table = replace(table, gather_segment_min=_min_via(m.gather_segment_max))
    return table


def _numpy_table() -> Table:
    from . import _numpy as m

    return _with(_FALLBACK, m, _ALL_NATIVE)


def _min_via(segment_max: Callable[..., tuple[Array, Array | None]]) -> Callable[..., tuple[Array, Array | None]]:
    """EXT-MIN through a backend's segment max (on the negated gathered rows, never the whole table)."""

    def gather_segment_min(weight: Array, idx: Array, offsets: Array, need_arg: bool,
                           xp: Any) -> tuple[Array, Array | None]:
        return _fallback.segment_min_via_max(segment_max, weight, idx, offsets, need_arg, xp)

    return gather_segment_min


def _numba_table() -> Table:
    if not numba_available():
        msg = 'the primitive mode "numba" needs numba: pip install "xembed[fast]"'
        raise ImportError(msg)
    from . import _numba as m

    return _with(_numpy_table(), m, ("gather_segment_sum", "gather_segment_max", "gather_scatter_add",
                                     "index_bounds", "offsets_first_decrease"))


def _torch_table() -> Table:
    from . import _torch as m

    return _with(_FALLBACK, m, _ALL_NATIVE)


def _cupy_table() -> Table:
    from . import _cupy as m

    return _with(_FALLBACK, m, ("bincount", "gather_segment_sum", "gather_segment_max", "scatter_add_rows",
                                "gather_scatter_add", "put_rows_"))


def _jax_table() -> Table:
    # static-shape primitives (jit / vmap / autodiff friendly)
    from . import _jax as m

    return _with(_FALLBACK, m, ("segment_ids", "bincount", "gather_segment_sum", "gather_segment_max",
                                "scatter_add_rows", "gather_scatter_add", "put_rows_"))


def _dask_table(m: str) -> Table:
    """Chunk-pair graphs in every mode; the work inside their tasks is NumPy's primitives of mode ``m``."""
    import array_api_compat.numpy as np_namespace

    from . import _dask

    block = _build(np_namespace, m)
    return replace(
        _with(_FALLBACK, _dask, ("segment_ids", "bincount", "gather_segment_max", "gather_segment_min", "take_rows",
                                 "partition")),
        gather_segment_sum=functools.partial(_dask.gather_segment_sum, block=block.gather_segment_sum),
        scatter_add_rows=functools.partial(_dask.scatter_add_rows, block=block.scatter_add_rows),
        gather_scatter_add=functools.partial(_dask.gather_scatter_add, block=block.gather_scatter_add))


_fused_forwards: dict[str, Any] = {}


def fused_numpy_forward(weight: Array) -> Any:
    """The module of one-kernel NumPy forwards (``PRIM-FAST-FORWARD``) when ``weight`` is a NumPy array and
    the current mode runs the numba kernels on NumPy arrays, else None (other arrays never import numba)."""
    return fused_kernels() if type(weight) is np.ndarray else None


def fused_kernels() -> Any:
    """The module of one-kernel forwards and their transposes when the current mode runs the numba kernels
    (``auto`` with numba installed, ``numba``), else None; decided once per mode."""
    m = _mode_var.get()
    try:
        return _fused_forwards[m]
    except KeyError:
        pass
    fused: Any = None
    if m in ("numba", "auto") and numba_available():
        import importlib

        fused = importlib.import_module(f"{__name__}._numba_forward")
    _fused_forwards[m] = fused
    return fused


_tables: dict[tuple[int, str], Table] = {}


def _build(xp: Any, m: str) -> Table:
    if is_dask_namespace(xp):
        return _dask_table(m)
    if m == "fallback":
        return _FALLBACK
    if is_numpy_namespace(xp):
        if m == "numba" or (m == "auto" and numba_available()):
            return _numba_table()
        return _numpy_table()
    if is_torch_namespace(xp):
        return _torch_table()
    if is_cupy_namespace(xp):
        return _cupy_table()
    if is_jax_namespace(xp):
        return _jax_table()
    return _FALLBACK


def table(xp: Any) -> Table:
    """The primitives for namespace ``xp`` in the current mode (built once per namespace and mode)."""
    m = _mode_var.get()
    key = (id(xp), m)
    t = _tables.get(key)
    if t is None:
        t = _tables[key] = _build(xp, m)
    return t


def segment_ids(offsets: Array, n: int, *, xp: Any) -> Array:
    return table(xp).segment_ids(offsets, n, xp)


def bincount(idx: Array, num_rows: int, *, xp: Any) -> Array:
    return table(xp).bincount(idx, num_rows, xp)


def gather_segment_sum(weight: Array, idx: Array, offsets: Array, scale: Array | None, acc_dtype: Any, *,
                       xp: Any) -> Array:
    return table(xp).gather_segment_sum(weight, idx, offsets, scale, acc_dtype, xp)


def gather_segment_max(weight: Array, idx: Array, offsets: Array, need_arg: bool, *,
                       xp: Any) -> tuple[Array, Array | None]:
    return table(xp).gather_segment_max(weight, idx, offsets, need_arg, xp)


def gather_segment_min(weight: Array, idx: Array, offsets: Array, need_arg: bool, *,
                       xp: Any) -> tuple[Array, Array | None]:
    return table(xp).gather_segment_min(weight, idx, offsets, need_arg, xp)


def scatter_add_rows(idx: Array, rows: Array, num_rows: int, *, xp: Any) -> Array:
    return table(xp).scatter_add_rows(idx, rows, num_rows, xp)


def gather_scatter_add(src: Array, src_idx: Array, dst_idx: Array, scale: Array | None, num_rows: int,
                       acc_dtype: Any, *, xp: Any) -> Array:
    return table(xp).gather_scatter_add(src, src_idx, dst_idx, scale, num_rows, acc_dtype, xp)


def put_rows_(weight: Array, uniq: Array, rows: Array, *, xp: Any) -> Array:
    return table(xp).put_rows_(weight, uniq, rows, xp)


def index_bounds(x: Array, *, xp: Any) -> tuple[int, int]:
    return table(xp).index_bounds(x, xp)


def offsets_first_decrease(offsets: Array, *, xp: Any) -> int:
    return table(xp).offsets_first_decrease(offsets, xp)


def take_rows(weight: Array, idx: Array, *, xp: Any) -> Array:
    return table(xp).take_rows(weight, idx, xp)


def partition(keep: Array, arrays: tuple[Array, ...], *, xp: Any) -> tuple[Array, ...]:
    return table(xp).partition(keep, arrays, xp)


for _f in (segment_ids, bincount, gather_segment_sum, gather_segment_max, gather_segment_min, scatter_add_rows,
           gather_scatter_add, put_rows_, index_bounds, offsets_first_decrease, take_rows, partition):
    _f.__doc__ = getattr(_FALLBACK, _f.__name__).__doc__
del _f



# How arrays are read does not depend on the primitive mode: every mode must see the same arrays.
_CAPS: dict[int, Any] = {}


def _caps(xp: Any) -> Any:
    c = _CAPS.get(id(xp))
    if c is None:
        from ._arrays import caps_for

        c = _CAPS[id(xp)] = caps_for(xp)
    return c


def plain(name: str, x: Array | None, *, xp: Any) -> Array | None:
    """``x`` as an array every primitive path reads alike (or a TypeError naming ``name``); None stays None
    (ARR-NORMALIZE)."""
    return None if x is None else _caps(xp).plain(name, x)


def is_writable(x: Array, *, xp: Any) -> bool:
    """Whether ``x`` can be written in place (the max_norm renorm checks it before writing anything)."""
    return bool(_caps(xp).writable(x))


def has_values(x: Array, *, xp: Any) -> bool:
    """Whether ``x``'s values can be read now: eager arrays yes; lazy and traced arrays (Dask; JAX under
    ``jit`` / ``vmap``) no.  Value checks run only where it is true; the core takes its static-shape
    formulation where it is not (JIT-STATIC)."""
    return bool(_caps(xp).has_values(x))


def boolean_masks(x: Array, *, xp: Any) -> bool:
    """Whether boolean masks (data-dependent shapes) work on ``x``: arrays whose values can be read now, and
    lazy arrays that keep unknown sizes (dask); not traced arrays (JIT-STATIC)."""
    return bool(_caps(xp).boolean_masks(x))


def device_of(x: Array, *, xp: Any) -> Any:
    """``x``'s device (None for an array not placed yet, such as a traced JAX array)."""
    return _caps(xp).device_of(x)
