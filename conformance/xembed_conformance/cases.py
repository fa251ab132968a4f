"""A test case: backend-independent NumPy values plus dtype names and keyword arguments.

A :class:`Case` holds float64 values exactly representable in the requested dtype and int64
indices; the backend adapter converts them (``backends.Backend.asarray``).  The strategies that
draw cases live in :mod:`xembed_conformance.strategies`.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

NDArray = npt.NDArray[Any]

KWARG_DEFAULTS: dict[str, object] = {
    "padding_idx": None,
    "max_norm": None,
    "norm_type": 2.0,
    "scale_grad_by_freq": False,
    "sparse": False,
    "mode": "mean",
    "include_last_offset": False,
}

#: arrays up to this many elements are shown in full in case descriptions
SHOW_VALUES = 24


@dataclass(repr=False)
class Case:
    fn: str  # "embedding" | "embedding_bag"
    weight: NDArray
    wdtype: str
    input: NDArray
    idtype: str = "int64"
    offsets: NDArray | None = None
    odtype: str = "int64"
    psw: NDArray | None = None
    pdtype: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    grad_out: NDArray | None = None
    # free-form facts for messages ("input position 3 holds 7 >= num_embeddings=6", ...)
    notes: list[str] = field(default_factory=list)
    # an invalid case: what the error message must show under --strict (ERR-INDEX-RANGE: the offending value)
    must_name: tuple[str, ...] = ()

    @property
    def mode(self) -> str:
        return str(self.kwargs.get("mode", "mean"))

    def arrays(self) -> list[tuple[str, NDArray, str]]:
        """(name, values, dtype) of every array argument, in call order."""
        out = [("weight", self.weight, self.wdtype), ("input", self.input, self.idtype)]
        if self.offsets is not None:
            out.append(("offsets", self.offsets, self.odtype))
        if self.psw is not None:
            out.append(("per_sample_weights", self.psw, self.pdtype or self.wdtype))
        return out

    def __repr__(self) -> str:
        return f"{self.fn}({self.describe()})"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # noqa: ARG002 - hypothesis's labelled draws print this
        p.text(repr(self))

    def describe(self) -> str:
        """The final arguments of the call: shapes and dtypes, values of the small arrays."""
        parts = []
        for name, values, dtype in self.arrays():
            s = f"{name} {dtype}{tuple(values.shape)}"
            if 0 < values.size <= SHOW_VALUES:
                s += f" = {_short(values)}"
            elif values.size > SHOW_VALUES and values.dtype.kind in "iu" and name == "offsets":
                s += f" (bag lengths {_length_summary(values, self)})"
            parts.append(s)
        for k, v in self.kwargs.items():
            parts.append(f"{k}={v!r}")
        if self.fn == "embedding_bag" and self.input.size > SHOW_VALUES:
            with contextlib.suppress(ValueError, TypeError, IndexError):  # an invalid case (error rows): no bags
                parts.append(f"longest bag {max((len(r) for r in bag_ranges(self)), default=0)}")
        if self.input.size > SHOW_VALUES and self.input.dtype.kind in "iu":
            flat = self.input.reshape(-1)
            counts = np.bincount(flat[flat >= 0]) if flat.size else np.zeros(0, np.int64)
            parts.append(f"max index {int(flat.max())}, most repeated row x{int(counts.max()) if counts.size else 0}")
        return ", ".join(parts)


def _short(values: NDArray) -> str:
    if values.dtype.kind == "f":
        return repr([float(v) for v in values.reshape(-1)]) if values.ndim <= 1 else repr(values.tolist())
    return repr(values.tolist())


def _length_summary(offsets: NDArray, case: Case) -> str:
    try:
        lens = [len(r) for r in bag_ranges(case)] if offsets.ndim == 1 else []
    except (ValueError, TypeError, IndexError):  # an invalid case (error rows)
        return "invalid offsets"
    if not lens:
        return "none"
    return f"{len(lens)} bags, {min(lens)}..{max(lens)}"


def p_norm(rows: NDArray, p: float) -> NDArray:
    a = np.abs(rows)
    if p == math.inf:
        return a.max(axis=-1) if a.shape[-1] else np.zeros(a.shape[:-1])
    return (a**p).sum(axis=-1) ** (1.0 / p)


def bag_bounds(case: Case) -> tuple[NDArray, NDArray]:
    """(starts, ends) of every bag of a *valid* embedding_bag case, as flattened positions."""
    if case.input.ndim == 2:
        B, L = case.input.shape
        starts = np.arange(B, dtype=np.int64) * L
        return starts, starts + L
    off = np.asarray(case.offsets, dtype=np.int64).reshape(-1)
    n = case.input.shape[0]
    if case.kwargs.get("include_last_offset", False):
        return off[:-1], off[1:]
    if off.size == 0:  # no bags (BAG-EMPTY-OFFSETS)
        return off, off
    return off, np.append(off[1:], n).astype(np.int64)


def bag_ranges(case: Case) -> list[range]:
    """Positions (flattened) that make up each bag of a *valid* embedding_bag case."""
    starts, ends = bag_bounds(case)
    return [range(int(s), int(e)) for s, e in zip(starts, ends, strict=True)]


def bag_of_position(case: Case) -> NDArray:
    """For every flattened input position, the index of its bag (-1: in no bag)."""
    n = case.input.size
    out = np.full(n, -1, np.int64)
    starts, ends = bag_bounds(case)
    for b, (s, e) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        out[s:e] = b
    return out


def output_shape(case: Case) -> tuple[int, ...]:
    D = case.weight.shape[1]
    if case.fn == "embedding":
        return (*case.input.shape, D)
    return (len(bag_bounds(case)[0]), D)


def normalized_padding(case: Case) -> int | None:
    p = case.kwargs.get("padding_idx")
    if p is None:
        return None
    return int(p) + case.weight.shape[0] if p < 0 else int(p)
