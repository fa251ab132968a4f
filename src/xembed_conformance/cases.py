"""Test cases and the hypothesis strategies that draw them (labelled draws).

A :class:`Case` is backend independent: NumPy arrays of values (float64 values exactly
representable in the requested dtype, int64 indices) plus dtype names and keyword arguments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

FRACTIONAL_P = (0.5, 1.5, 2.5)
NORM_TYPES = (1.0, 2.0, 3.0, math.inf) + FRACTIONAL_P
KWARG_DEFAULTS = {
    "padding_idx": None,
    "max_norm": None,
    "norm_type": 2.0,
    "scale_grad_by_freq": False,
    "sparse": False,
    "mode": "mean",
    "include_last_offset": False,
}


@dataclass
class Case:
    fn: str  # "embedding" | "embedding_bag"
    weight: np.ndarray
    wdtype: str
    input: np.ndarray
    idtype: str = "int64"
    offsets: np.ndarray | None = None
    odtype: str = "int64"
    psw: np.ndarray | None = None
    pdtype: str | None = None
    kwargs: dict = field(default_factory=dict)
    grad_out: np.ndarray | None = None
    # free-form facts for messages ("padding_idx=-2 (row 3)", ...)
    notes: list = field(default_factory=list)

    @property
    def mode(self):
        return self.kwargs.get("mode", "mean")

    def describe(self) -> str:
        parts = [f"weight {self.wdtype}{tuple(self.weight.shape)}",
                 f"input {self.idtype}{tuple(self.input.shape)}"]
        if self.offsets is not None:
            parts.append(f"offsets {self.odtype}{list(self.offsets.reshape(-1).astype(np.int64).tolist()) if self.offsets.dtype.kind in 'iu' else tuple(self.offsets.shape)}")
        if self.psw is not None:
            parts.append("per_sample_weights")
        for k, v in self.kwargs.items():
            parts.append(f"{k}={v!r}")
        return ", ".join(parts)


def _dyadic(data, shape, label, lo=-16, hi=16, scale=4.0):
    # small values are drawn more often so that exact ties (mode='max') and equal rows are common
    elements = st.one_of(st.integers(max(lo, -3), min(hi, 3)), st.integers(lo, hi))
    ints = data.draw(hnp.arrays(np.int64, shape, elements=elements), label=f"{label} x{scale:g} (integers)")
    return ints.astype(np.float64) / scale


def p_norm(rows: np.ndarray, p: float) -> np.ndarray:
    a = np.abs(rows)
    if p == math.inf:
        return a.max(axis=-1) if a.shape[-1] else np.zeros(a.shape[:-1])
    return (a**p).sum(axis=-1) ** (1.0 / p)


def _pick(data, value, choices, label):
    """`value` may be a fixed value, "any" (drawn from `choices`) or a tuple to draw from."""
    if isinstance(value, str) and value == "any":
        return data.draw(st.sampled_from(choices), label=label)
    if isinstance(value, tuple):
        return data.draw(st.sampled_from(value), label=label)
    return value


def bag_ranges(case: Case) -> list[range]:
    """Positions (flattened) that make up each bag of a *valid* embedding_bag case."""
    if case.input.ndim == 2:
        B, L = case.input.shape
        return [range(b * L, (b + 1) * L) for b in range(B)]
    off = [int(v) for v in case.offsets]
    n = case.input.shape[0]
    if case.kwargs.get("include_last_offset", False):
        return [range(off[b], off[b + 1]) for b in range(len(off) - 1)]
    ends = off[1:] + [n]
    return [range(s, e) for s, e in zip(off, ends)]


def output_shape(case: Case) -> tuple:
    D = case.weight.shape[1]
    if case.fn == "embedding":
        return tuple(case.input.shape) + (D,)
    return (len(bag_ranges(case)), D)


def draw_case(
    data,
    fn: str,
    float_dtypes,
    int_dtypes=("int32", "int64"),
    *,
    shape="any",
    dtype="any",
    idtype="int64",
    odtype="int64",
    padding=None,  # None | "pos" | "neg" | "any"
    norm_type=None,  # None (no max_norm) | value | "any"
    sgbf=False,
    sparse=False,
    mode="default",  # "default" (not passed) | "sum" | "mean" | "max" | "any"
    psw=False,  # False | True | "any" | "ext" (psw with mode mean/max)
    ilo=False,
    dup=False,
    empty_bag=False,
    allpad_bag=False,
    bite=True,
    grad=False,
) -> Case:
    d = data.draw
    wdtype = _pick(data, dtype, tuple(float_dtypes), "weight dtype")
    N = d(st.integers(1, 6), label="num_embeddings")
    D = d(st.integers(1, 3), label="embedding_dim")
    weight = _dyadic(data, (N, D), "weight")
    kwargs: dict = {}
    case = Case(fn=fn, weight=weight, wdtype=wdtype, input=np.zeros(0, np.int64))
    case.idtype = _pick(data, idtype, tuple(int_dtypes), "input (indices) dtype")
    need_nonempty = dup or allpad_bag or (norm_type is not None and norm_type != "any" and bite)
    min_len = 2 if dup else (1 if need_nonempty else 0)

    if fn == "embedding":
        kinds = ("0d", "empty", "1d", "nd")
        if min_len:
            kinds = ("1d", "nd") if min_len > 1 else ("0d", "1d", "nd")
        kind = _pick(data, shape, kinds, "input shape kind")
        if kind == "0d":
            shp = ()
        elif kind == "empty":
            shp = d(st.sampled_from([(0,), (2, 0), (0, 3)]), label="empty input shape")
        elif kind == "1d":
            shp = (d(st.integers(max(min_len, 1), 8), label="input length"),)
        else:
            shp = tuple(d(st.lists(st.integers(1, 3), min_size=2, max_size=3), label="input shape"))
            if int(np.prod(shp)) < min_len:
                shp = (2,) + shp
        case.input = d(hnp.arrays(np.int64, shp, elements=st.integers(0, N - 1)), label="input (indices)")
    else:
        m = _pick(data, mode, ("sum", "mean", "max"), "mode")
        if psw == "ext":
            m = d(st.sampled_from(["mean", "max"]), label="mode (per_sample_weights extension)")
        if m != "default":
            kwargs["mode"] = m
        kinds = ("offsets", "2d", "empty")
        if min_len or empty_bag:
            kinds = ("offsets",) if empty_bag else ("offsets", "2d")
        kind = _pick(data, shape, kinds, "input layout")
        use_ilo = _pick(data, ilo, (False, True), "include_last_offset") if kind != "2d" else False
        if kind == "2d":
            B = d(st.integers(1 if min_len else 0, 3), label="number of bags")
            # L >= 1: torch raises "step must be nonzero" for a (B, 0) input (see README Findings)
            L = d(st.integers(max(min_len, 1), 4), label="bag length")
            if min_len > B * L:
                B, L = max(B, 1), max(L, min_len)
            case.input = d(hnp.arrays(np.int64, (B, L), elements=st.integers(0, N - 1)), label="input (indices)")
        else:
            L = 0 if kind == "empty" else d(st.integers(min_len, 8), label="input length")
            if use_ilo and L == 0:
                nb = d(st.integers(0, 3), label="number of bags")
            else:
                nb = d(st.integers(1, 4), label="number of bags")
            starts = sorted(d(st.lists(st.integers(0, L), min_size=max(nb - 1, 0), max_size=max(nb - 1, 0)), label="bag starts"))
            starts = ([0] + starts) if nb >= 1 else []
            if empty_bag:
                ends = starts[1:] + [L]
                if all(e > s for s, e in zip(starts, ends)):
                    starts = starts + [L]
            offsets = starts + [L] if use_ilo else starts
            if use_ilo and not offsets:
                offsets = [0]
            case.input = d(hnp.arrays(np.int64, (L,), elements=st.integers(0, N - 1)), label="input (indices)")
            case.offsets = np.asarray(offsets, dtype=np.int64)
            case.odtype = _pick(data, odtype, tuple(int_dtypes), "offsets dtype")
            if use_ilo:
                kwargs["include_last_offset"] = True
    case.kwargs = kwargs
    flat = case.input.reshape(-1)

    # padding_idx -------------------------------------------------------------
    pad_kind = _pick(data, padding, (None, "pos", "neg"), "padding_idx kind")
    if pad_kind is not None:
        p = d(st.integers(0, N - 1), label="padding row")
        kwargs["padding_idx"] = p if pad_kind == "pos" else p - N
        if flat.size:
            j = d(st.integers(0, flat.size - 1), label="a position holding padding_idx")
            flat[j] = p
        if allpad_bag and fn == "embedding_bag":
            ranges = [r for r in bag_ranges(case) if len(r)]
            assume(ranges)
            r = ranges[d(st.integers(0, len(ranges) - 1), label="all-padding bag")]
            for i in r:
                flat[i] = p
    if dup and flat.size >= 2:
        i = d(st.integers(0, flat.size - 2), label="duplicate source position")
        j = d(st.integers(i + 1, flat.size - 1), label="duplicate target position")
        flat[j] = flat[i]

    # mode-dependent options -----------------------------------------------------
    is_max = fn == "embedding_bag" and kwargs.get("mode", "mean") == "max"
    s = False if is_max else _pick(data, sgbf, (False, True), "scale_grad_by_freq")
    # torch's sparse backward raises IndexError for a 0-d input with any padding_idx (README Findings):
    # outside the reference's domain, so never drawn as a valid case
    zero_d_pad = fn == "embedding" and case.input.ndim == 0 and "padding_idx" in kwargs
    sp = False if (is_max or s or zero_d_pad) else _pick(data, sparse, (False, True), "sparse")
    if s:
        kwargs["scale_grad_by_freq"] = True
    if sp:
        kwargs["sparse"] = True
    if fn == "embedding_bag":
        use_psw = psw == "ext" or (kwargs.get("mode") == "sum" and _pick(data, psw, (False, True), "per_sample_weights"))
        if use_psw:
            case.psw = _dyadic(data, case.input.shape, "per_sample_weights", -8, 8)
            case.pdtype = wdtype

    # max_norm -----------------------------------------------------------------------
    if norm_type == "frac":
        norm_type = FRACTIONAL_P
    nt = _pick(data, norm_type, (None,) + NORM_TYPES, "norm_type (None: no max_norm)")
    if nt is not None:
        used = np.unique(flat)
        norms = p_norm(weight[used], nt) if used.size else np.zeros(0)
        top = float(norms.max()) if norms.size else 0.0
        if bite:
            assume(top > 0)
        tie = False
        if nt in (1.0, math.inf) and top > 0:
            # L1 / max-abs norms of these dyadic rows are exact in every dtype: a row whose norm
            # equals max_norm exactly must NOT be renormed (strict `>`)
            tie = d(st.booleans(), label="max_norm equal to a used row's norm (exact tie: no renorm)")
        if tie:
            nz = [float(n) for n in norms if n > 0]
            max_norm = d(st.sampled_from(nz), label="max_norm (tied row norm)")
        else:
            frac = d(st.sampled_from([0.3, 0.5, 0.8]), label="max_norm / largest used row norm")
            max_norm = round(frac * top, 3) if top > 0 else d(st.sampled_from([0.5, 1.0]), label="max_norm")
        assume(max_norm > 0)
        # keep every used row's norm clearly away from max_norm (no verdicts decided by rounding)
        assume(all(abs(n / max_norm - 1.0) > 0.05 or (tie and n == max_norm) for n in norms))
        kwargs["max_norm"] = max_norm
        if nt != 2.0:
            kwargs["norm_type"] = nt
    if grad:
        case.grad_out = _dyadic(data, output_shape(case), "grad_output", -8, 8)
    return case
