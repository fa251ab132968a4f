"""Early routes for torch tensors, decided before any value is read; torch is never imported here (a call
without torch tensors returns at the first test).

* Under tracing (TORCH-TRACED): under torch.compile / torch.export and torch.func transforms, calls take the
  ``xembed::`` custom ops of :mod:`xembed.torch` (their checks read no values).
* Otherwise, on CPU tensors with the common options, the one-kernel route (PRIM-FAST-TORCH,
  :mod:`._torch_fast`)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from array_api_compat import is_torch_namespace

from .._typing import Array, Namespace
from ._calls import NOT_TAKEN


def _traced_module() -> Any:
    """``xembed.torch._traced`` (an import statement: dynamo may trace the first one; a sys.modules test
    would be a guard that the import itself breaks)."""
    from ..torch import _traced

    return _traced


_fast: Any = None


def _fast_module() -> Any:
    """:mod:`._torch_fast` (imported at the first eager torch call; never while compiling)."""
    global _fast  # noqa: PLW0603 - bound once: an import statement per call costs as much as the route
    if _fast is None:
        from . import _torch_fast

        _fast = _torch_fast
    return _fast


def _torch(xp: Namespace | None, weight: Array) -> Any:
    """The torch module when ``weight`` is a torch tensor (and ``xp``, if given, torch's namespace)."""
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(weight, torch.Tensor) or (xp is not None and not is_torch_namespace(xp)):
        return None
    return torch


def _is_traced(want_vjp: bool, weight: Array, *arrays: Array | None) -> bool:
    if not _traced_module().is_traced(weight, *arrays):
        return False
    if want_vjp:
        msg = ("xembed.embedding_vjp / embedding_bag_vjp are not traceable (torch.compile, torch.export, torch.func); "
               "call xembed.embedding / embedding_bag and differentiate with torch.autograd or torch.func")
        raise NotImplementedError(msg)
    return True


# Each route tries the one-kernel route first (it declines torch.func-wrapped tensors, whose values cannot be
# read), except while compiling, where no value may be read at all.


def early_embedding(xp: Namespace | None, want_vjp: bool, args: tuple[Any, ...]) -> Any:
    input, weight = args[0], args[1]
    torch = _torch(xp, weight)
    if torch is None:
        return NOT_TAKEN
    if not (want_vjp or xp is not None or torch.compiler.is_compiling()):
        out = _fast_module().embedding(args)
        if out is not NOT_TAKEN:
            return out
    if _is_traced(want_vjp, weight, input):
        return _traced_module().embedding(*args)
    return NOT_TAKEN


def early_embedding_bag(xp: Namespace | None, want_vjp: bool, args: tuple[Any, ...], lengths: Array | None) -> Any:
    input, weight, offsets, psw = args[0], args[1], args[2], args[8]
    torch = _torch(xp, weight)
    if torch is None:
        return NOT_TAKEN
    if not (want_vjp or xp is not None or lengths is not None or torch.compiler.is_compiling()):
        out = _fast_module().embedding_bag(args)
        if out is not NOT_TAKEN:
            return out
    if _is_traced(want_vjp, weight, input, offsets, psw, lengths):
        return _traced_module().embedding_bag(*args, lengths)
    return NOT_TAKEN


def early_renorm(xp: Namespace | None, weight: Array, input: Array) -> tuple[Namespace, Callable[..., Array]] | None:
    if _torch(xp, weight) is None or not _is_traced(False, weight, input):
        return None
    traced = _traced_module()
    return traced.xp, lambda _ns, w, i, max_norm, p: traced.renorm(w, i, max_norm, p)
