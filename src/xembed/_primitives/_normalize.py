"""Per-backend normalisation of the caller's arrays before anything reads them (spec ARR-NORMALIZE).

Compiled kernels accept only plain, native-byte-order arrays of the dtypes they were built for; what a
backend's array type allows beyond that is turned into such an array here, or refused with a TypeError
naming the argument, so that every primitive path sees the same data (no path may accept what another
refuses, or read what another ignores).
"""

from __future__ import annotations

from typing import Any

import numpy as np

Array = Any


def plain_identity(_name: str, x: Array) -> Array:
    """Backends whose arrays need no normalisation."""
    return x


def writable_always(_x: Array) -> bool:
    """Backends whose arrays are always writable (or never written: JAX renorms functionally)."""
    return True


def plain_numpy(name: str, x: Any) -> Any:
    """A plain ``numpy.ndarray`` in native byte order: masked arrays are refused (a masked entry is not an
    index, and a kernel would read the value under the mask); other ndarray subclasses are viewed as plain
    arrays (no copy); big-endian data is converted (a copy) so that every path reads the same values."""
    if type(x) is not np.ndarray:
        if isinstance(x, np.ma.MaskedArray):
            msg = (f"`{name}` must not be a masked array (masked entries have no meaning here); pass "
                   f"`{name}.filled(...)` or `numpy.asarray({name})`, got {type(x).__module__}.{type(x).__name__}")
            raise TypeError(msg)
        x = x.view(np.ndarray)
    if not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))
    return x


def writable_numpy(x: Any) -> bool:
    return bool(x.flags.writeable)


def plain_torch(name: str, x: Any) -> Any:
    """torch's unsigned integers beyond uint8 have few operators (no comparisons on CPU in torch 2.14):
    ``uint16`` / ``uint32`` index arrays are widened to int64 (exact); ``uint64`` is refused, since its
    values above int64's range cannot be compared or converted exactly."""
    if x.dtype.is_signed:  # every floating dtype too: only bool and the unsigned integers go on
        return x
    import torch

    dt = x.dtype
    if dt in (torch.uint16, torch.uint32):
        return x.to(torch.int64)
    if dt == torch.uint64:
        msg = (f"`{name}` has dtype torch.uint64, which xembed does not accept on torch tensors (torch has no "
               f"comparisons for it, so its values cannot be checked); convert with `{name}.to(torch.int64)`")
        raise TypeError(msg)
    return x
