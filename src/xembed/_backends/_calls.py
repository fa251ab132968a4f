"""The checked calls the adapters run, and the adapter record itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._typing import Array, Namespace
from .._validate import BagArgs


@dataclass(frozen=True)
class Lookup:
    """A checked ``embedding`` call: ``weight`` is the caller's array (the in-place renorm writes into it),
    ``plain_weight`` the same array as every path reads it (ARR-NORMALIZE), like ``input``."""

    input: Array
    weight: Array
    plain_weight: Array
    padding_idx: int | None
    max_norm: float | None
    norm_type: float
    scale_grad_by_freq: bool
    sparse: bool
    want_vjp: bool


@dataclass(frozen=True)
class Bag:
    """An ``embedding_bag`` call whose metadata passed the checks; its layout values (``offsets`` or
    ``lengths``) are checked by the adapter, eagerly or where its values exist (:func:`._eager.bag_layout`)."""

    input: Array
    weight: Array
    plain_weight: Array
    offsets: Array | None
    lengths: Array | None
    per_sample_weights: Array | None
    args: BagArgs
    want_vjp: bool


@dataclass(frozen=True)
class Adapter:
    """How checked calls run on one library's arrays."""

    name: str
    embedding: Callable[[Namespace, Lookup], Any]
    embedding_bag: Callable[[Namespace, Bag], Any]
    renorm: Callable[[Namespace, Array, Array, float, float], Array]


class _NotTaken:
    def __repr__(self) -> str:
        return "NOT_TAKEN"


NOT_TAKEN: Any = _NotTaken()
"""What an early route returns when the call is not one it takes."""

