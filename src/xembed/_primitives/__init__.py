"""The few primitives the array API standard lacks, behind one dispatch point.

Each primitive has a standard-only implementation in :mod:`._fallback` and, where it pays, a native one
per backend (:mod:`._numpy`, :mod:`._torch`, :mod:`._cupy`).  The core calls only the functions exported
here, with ``xp`` passed explicitly.  Contracts (what every path must return) are in ``_fallback``'s
docstrings; the semantics of the embedding options never live here.

``XEMBED_PRIMITIVES=fallback`` in the environment (or :func:`use`) forces the standard-only path on every
backend, which is how the test-suite proves the fallback on NumPy and torch too.
"""

from __future__ import annotations

import contextlib
import os
from types import ModuleType

from array_api_compat import is_cupy_namespace, is_jax_namespace, is_numpy_namespace, is_torch_namespace

from . import _fallback

__all__ = [
    "bincount",
    "gather_scatter_add",
    "gather_segment_max",
    "gather_segment_sum",
    "index_dtype",
    "mode",
    "put_rows_",
    "scatter_add_rows",
    "segment_ids",
    "use",
]

_MODES = ("native", "fallback")
_mode = os.environ.get("XEMBED_PRIMITIVES", "native")
if _mode not in _MODES:
    raise ValueError(f"XEMBED_PRIMITIVES must be one of {_MODES}, got {_mode!r}")


def mode() -> str:
    """The current primitive mode: ``"native"`` or ``"fallback"``."""
    return _mode


@contextlib.contextmanager
def use(new_mode: str):
    """Context manager selecting ``"native"`` or ``"fallback"`` primitives (not thread-safe)."""
    global _mode
    if new_mode not in _MODES:
        raise ValueError(f"`mode` must be one of {_MODES}, got {new_mode!r}")
    old, _mode = _mode, new_mode
    try:
        yield
    finally:
        _mode = old


def _native(xp) -> ModuleType | None:
    # Imported lazily: a backend module is imported only once the user passed its arrays.
    if _mode == "fallback":
        return None
    if is_numpy_namespace(xp):
        from . import _numpy as m
    elif is_torch_namespace(xp):
        from . import _torch as m
    elif is_cupy_namespace(xp):
        from . import _cupy as m
    elif is_jax_namespace(xp):  # JAX hook (issue 12): static-shape primitives in _jax.py
        from . import _jax as m
    else:
        return None
    return m


def _dispatch(name: str):
    fallback = getattr(_fallback, name)

    def call(*args, xp):
        impl = getattr(_native(xp), name, None) or fallback
        return impl(*args, xp)

    call.__name__ = name
    call.__doc__ = fallback.__doc__
    return call


segment_ids = _dispatch("segment_ids")
bincount = _dispatch("bincount")
gather_segment_sum = _dispatch("gather_segment_sum")
gather_segment_max = _dispatch("gather_segment_max")
scatter_add_rows = _dispatch("scatter_add_rows")
gather_scatter_add = _dispatch("gather_scatter_add")
put_rows_ = _dispatch("put_rows_")
index_dtype = _fallback.index_dtype
