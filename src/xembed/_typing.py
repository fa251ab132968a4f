"""Type aliases shared by xembed's modules.

The array API standard has no runtime array type common to every library, so — like array-api-extra and
scipy — xembed types arrays and namespaces structurally as ``Any`` behind named aliases: the names document
what a parameter is, and a stricter alias (a ``Protocol``) can replace them later without touching callers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

__all__ = ["Array", "DType", "Device", "Namespace", "Pullback"]

Array: TypeAlias = Any
"""An array of any array-API library (numpy.ndarray, torch.Tensor, cupy.ndarray, array_api_strict.Array)."""

Namespace: TypeAlias = Any
"""An array API namespace (``array_api_compat.array_namespace(x)``) or a library module passed as ``xp``."""

Device: TypeAlias = Any
"""A device object of some library (``"cpu"``, ``torch.device``, ``cupy.cuda.Device``, ...)."""

DType: TypeAlias = Any
"""A dtype object of some library (``numpy.float32``, ``torch.bfloat16``, ...)."""

Pullback: TypeAlias = Callable[[Array], Any]
"""``pullback(grad_output)``: the weight gradient (embedding) or ``(grad_weight, grad_psw)`` (embedding_bag)."""
