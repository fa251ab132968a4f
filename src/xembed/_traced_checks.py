"""Value checks inside traced calls, on request (spec JIT-CHECKIFY).

Traced arrays have no values, so the eager value checks cannot run; a traced call inside
:func:`jit_value_checks` emits them as ``checkify`` checks instead of its default (NaN rows: JIT-INVALID-*).
The switch lives here, apart from the library that reads it, so that ``xembed.jit_value_checks`` never imports
that library.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

__all__ = ["TRACED_CHECKS", "jit_value_checks"]

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
