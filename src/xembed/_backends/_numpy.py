"""Early routes for NumPy arrays: the one-kernel forwards (PRIM-FAST-FORWARD).

Plain ``numpy.ndarray`` arguments with the common options run one compiled kernel that checks the offsets
and every index while it reduces; any call it does not take (another type, an unusual option, values it
rejects) continues to the checks and the eager adapter, which raise the ERR-* error or compute it."""

from __future__ import annotations

from typing import Any

from .. import _primitives as prim
from .._typing import Array, Namespace
from ._calls import NOT_TAKEN


def early_embedding(xp: Namespace | None, want_vjp: bool, args: tuple[Any, ...]) -> Any:
    if want_vjp or xp is not None:
        return NOT_TAKEN
    fused = prim.fused_numpy_forward(args[1])
    out = None if fused is None else fused.embedding(*args)
    return NOT_TAKEN if out is None else out


def early_embedding_bag(xp: Namespace | None, want_vjp: bool, args: tuple[Any, ...], lengths: Array | None) -> Any:
    if want_vjp or xp is not None or lengths is not None:
        return NOT_TAKEN
    fused = prim.fused_numpy_forward(args[1])
    out = None if fused is None else fused.embedding_bag(*args)
    return NOT_TAKEN if out is None else out
