"""How each library's arrays are read, independent of the primitive mode (every mode sees the same arrays).

One :class:`ArrayCaps` per namespace, built once:

* ``plain(name, x)`` (spec ARR-NORMALIZE): compiled kernels accept only plain, native-byte-order arrays of
  the dtypes they were built for; what a library's array type allows beyond that is turned into such an
  array here, or refused with a TypeError naming the argument, so that no path accepts what another refuses
  or reads what another ignores;
* ``writable(x)``: whether the in-place renorm may write into ``x`` (RENORM-WRITABLE);
* ``has_values(x)``: whether ``x``'s values can be read now (eager arrays yes; lazy and traced arrays no):
  value checks run only where it is true, and the core takes its static-shape formulation where it is not;
* ``device_of(x)``: the array's device, compared across the arguments (ERR-NAMESPACE);
* ``boolean_masks(x)``: whether data-dependent shapes (boolean masks) work on ``x``: where values can be read,
  and on lazy arrays that keep unknown sizes (dask); not on traced arrays (the core's static formulation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import device as _device
from array_api_compat import is_lazy_array

from .._typing import Array, Device


@dataclass(frozen=True)
class ArrayCaps:
    plain: Callable[[str, Array], Array]
    writable: Callable[[Array], bool]
    has_values: Callable[[Array], bool]
    device_of: Callable[[Array], Device]
    boolean_masks: Callable[[Array], bool]


def always(_x: Array) -> bool:
    return True


def never(_x: Array) -> bool:
    return False


def device_attribute(x: Array) -> Device:
    return x.device


def not_lazy(x: Array) -> bool:
    return not is_lazy_array(x)


def plain_identity(_name: str, x: Array) -> Array:
    """Backends whose arrays need no normalisation."""
    return x


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


def jax_has_values(x: Array) -> bool:
    """Eager JAX arrays are concrete although ``is_lazy_array`` says lazy, except inside a ``jit`` trace (a
    concrete array closed over by a jitted function): there every operation on it is staged, which a tiny
    probe array reveals (under ``grad`` / ``vmap`` alone it stays concrete)."""
    import jax
    import jax.numpy as jnp

    return not isinstance(x, jax.core.Tracer) and not isinstance(jnp.zeros((), dtype=bool), jax.core.Tracer)


def caps_for(xp: Any) -> ArrayCaps:
    """The capabilities of namespace ``xp``'s arrays (the library is identified, never imported)."""
    from array_api_compat import (
        is_cupy_namespace,
        is_dask_namespace,
        is_jax_namespace,
        is_numpy_namespace,
        is_torch_namespace,
    )

    if is_numpy_namespace(xp):
        return ArrayCaps(plain_numpy, writable_numpy, always, lambda _x: "cpu", always)
    if is_torch_namespace(xp):
        return ArrayCaps(plain_torch, always, always, device_attribute, always)
    if is_cupy_namespace(xp):
        return ArrayCaps(plain_identity, always, always, device_attribute, always)
    if is_jax_namespace(xp):  # immutable: the renorm is functional and never asks
        return ArrayCaps(plain_identity, always, jax_has_values, _device, jax_has_values)
    if is_dask_namespace(xp):  # lazy: values at .compute(), masks with unknown chunk sizes
        return ArrayCaps(plain_identity, always, never, _device, always)
    return ArrayCaps(plain_identity, always, not_lazy, _device, not_lazy)
