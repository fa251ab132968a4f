"""Early routes for torch tensors under tracing (TORCH-TRACED): under torch.compile / torch.export and
torch.func transforms, calls take the ``xembed::`` custom ops of :mod:`xembed.torch` (their checks read no
values).  Decided before any value is read; torch is never imported here (a call without torch tensors
returns at the first test)."""

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


def _is_traced(xp: Namespace | None, want_vjp: bool, weight: Array, *arrays: Array | None) -> bool:
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(weight, torch.Tensor) or (xp is not None and not is_torch_namespace(xp)):
        return False
    if not _traced_module().is_traced(weight, *arrays):
        return False
    if want_vjp:
        msg = ("xembed.embedding_vjp / embedding_bag_vjp are not traceable (torch.compile, torch.export, torch.func); "
               "call xembed.embedding / embedding_bag and differentiate with torch.autograd or torch.func")
        raise NotImplementedError(msg)
    return True


def early_embedding(xp: Namespace | None, want_vjp: bool, args: tuple[Any, ...]) -> Any:
    input, weight = args[0], args[1]
    if not _is_traced(xp, want_vjp, weight, input):
        return NOT_TAKEN
    return _traced_module().embedding(*args)


def early_embedding_bag(xp: Namespace | None, want_vjp: bool, args: tuple[Any, ...], lengths: Array | None) -> Any:
    input, weight, offsets, psw = args[0], args[1], args[2], args[8]
    if not _is_traced(xp, want_vjp, weight, input, offsets, psw, lengths):
        return NOT_TAKEN
    return _traced_module().embedding_bag(*args, lengths)


def early_renorm(xp: Namespace | None, weight: Array, input: Array) -> tuple[Namespace, Callable[..., Array]] | None:
    if not _is_traced(xp, False, weight, input):
        return None
    traced = _traced_module()
    return traced.xp, lambda _ns, w, i, max_norm, p: traced.renorm(w, i, max_norm, p)
