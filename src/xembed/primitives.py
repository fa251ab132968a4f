"""Which implementation of the primitives runs (spec PRIM-MODE).

xembed's semantics are written once; the few operations the array API standard lacks (segment reductions,
scatter-adds with duplicates, ...) have several implementations.  ``XEMBED_PRIMITIVES`` in the environment
chooses one for the process, :func:`use` for a block of code:

``auto`` (default)
    the compiled numba kernels for NumPy arrays when numba is installed (extra ``xembed[fast]``), else
    ``native``;
``native``
    each library's own operations (pure NumPy for NumPy arrays, torch's kernels, CuPy kernels);
``numba``
    like ``auto``, but a missing numba is an ImportError naming the extra;
``fallback``
    the standard-only implementations on every library.

Every path gives the same values, gradients and errors.

Examples
--------
>>> import numpy as np, xembed
>>> with xembed.primitives.use("fallback"):
...     xembed.primitives.mode()
'fallback'
"""

from ._primitives import MODES, mode, numba_available, use

__all__ = ["MODES", "mode", "numba_available", "use"]
