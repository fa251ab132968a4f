"""Hypothesis strategies for :class:`~xembed_conformance.cases.Case`, built from small composites.

A row of the report says what it wants with a :class:`Want` (which options, which layout, which
sizes); :func:`cases` draws a case from it in steps, each its own ``@st.composite``:

``sizes`` (a size class) → ``table`` (weight) → ``embedding_input`` / ``bag_input`` (indices,
offsets) → ``padding`` → ``duplicates`` → ``flags`` (scale_grad_by_freq, sparse, per_sample_weights)
→ ``max_norm`` → ``grad_output``.

Sizes (see docs/conformance.md, Sizes): every row mixes tiny cases (the ones hypothesis shrinks to)
with kernel-scale ones -- embedding dims 4..320 (half of them at column-tile edges: multiples of 8..128 and
one off), one boundary example per size class, ties in max bags, bags of up to
3,000 entries, up to 3,000 bags, tables of more than 65,536 rows, inputs of up to 20,000 positions with
a few hot rows.  Small arrays are drawn element by element (hypothesis shrinks their values); arrays
beyond :data:`ELEMENTWISE_MAX` elements come from a NumPy generator seeded by one labelled draw (their
sizes still shrink).  Every value is a small dyadic rational (``k / 4``), exact in every float dtype.
"""

from __future__ import annotations

# ruff: noqa: N803  # N, D: the spec's notation for the table's rows and dim
import functools
import itertools
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from xembed_conformance.cases import Case, NDArray, bag_ranges, output_shape, p_norm

FRACTIONAL_P = (0.5, 1.5, 2.5)
NORM_TYPES = (1.0, 2.0, 3.0, math.inf, *FRACTIONAL_P)
LOW_PRECISION = ("float16", "bfloat16")
#: arrays with more elements than this are generated from a drawn seed
ELEMENTWISE_MAX = 64

Choice = Any  # a fixed value, "any" (drawn from the allowed values) or a tuple to draw from


@dataclass(frozen=True)
class Sizes:
    """Ranges of one size class: rows N, dim D, input positions, number of bags."""

    name: str
    rows: tuple[int, int]
    dim: tuple[int, int]
    positions: tuple[int, int]
    bags: tuple[int, int]
    hot: bool = False


SIZES: dict[str, Sizes] = {s.name: s for s in (
    Sizes("tiny", (1, 6), (1, 3), (0, 8), (1, 4)),
    # past a vector width / a warp: every residue of D modulo 4, 8 and 32
    Sizes("wide", (1, 40), (4, 320), (1, 24), (1, 6)),
    # long bags: past 32 entries per bag, float16 / bfloat16 accumulation
    Sizes("long bags", (1, 64), (1, 24), (33, 3000), (1, 3)),
    # many bags: thousands of short (often empty) bags
    Sizes("many bags", (1, 64), (1, 8), (64, 4000), (300, 3000)),
    # indices past a 16-bit index (small D keeps memory low)
    Sizes("big table", (65_537, 66_000), (1, 2), (2, 48), (1, 6)),
    # inputs of many thousands of positions on a few heavily repeated rows
    Sizes("hot rows", (2, 300), (1, 16), (200, 20_000), (1, 8), hot=True),
)}
#: what a row with ``scale="mixed"`` draws from (the first one is what hypothesis shrinks towards)
MIXED = ("tiny", "tiny", "tiny", "tiny", "tiny", "wide", "long bags", "many bags", "hot rows", "big table")


@dataclass(frozen=True)
class Want:
    """What a row asks of its cases (each field: a fixed value, "any", or a tuple to draw from)."""

    fn: str
    shape: Choice = "any"  # embedding: 0d/empty/1d/nd; embedding_bag: offsets/2d/empty
    dtype: Choice = "any"
    idtype: Choice = "int64"
    odtype: Choice = "int64"
    padding: Choice = None  # None | "pos" | "neg"
    norm_type: Choice = None  # None (no max_norm) | a norm type | "frac"
    sgbf: Choice = False
    sparse: Choice = False
    mode: Choice = "default"  # "default" (not passed) | "sum" | "mean" | "max"
    psw: Choice = False  # per_sample_weights (mode='sum' only unless ext=True)
    psw_ext: bool = False  # per_sample_weights with mode mean/max (torch: NotImplementedError)
    ilo: Choice = False
    dup: bool = False
    empty_bag: bool = False
    allpad_bag: bool = False
    bite: bool = True  # max_norm renorms at least one used row
    scale: Choice = "mixed"  # a SIZES name, "mixed", or a tuple of names
    grad: bool = False
    boundary: bool = False  # a boundary example: the size class's edge (kernel-scale D = 256), ties forced

    def size_classes(self) -> tuple[str, ...]:
        """The size classes this want draws from (each gets one boundary example per check)."""
        if self.scale == "mixed":
            return tuple(dict.fromkeys(MIXED))
        return tuple(dict.fromkeys(self.scale)) if isinstance(self.scale, tuple) else (self.scale,)

    def with_(self, **kw: Any) -> Want:
        return replace(self, **kw)


def pick(draw: st.DrawFn, value: Choice, choices: tuple[Any, ...], label: str) -> Any:
    """`value` fixed, "any" (drawn from `choices`) or a tuple (drawn from it)."""
    if isinstance(value, str) and value == "any":
        return draw(st.sampled_from(choices), label=label)
    if isinstance(value, tuple):
        return draw(st.sampled_from(value), label=label)
    return value


# values -------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _dyadic_elements(lo: int, hi: int) -> st.SearchStrategy[int]:
    # small values are drawn more often: exact ties (mode='max') and equal rows are common
    return st.one_of(st.integers(max(lo, -3), min(hi, 3)), st.integers(lo, hi))


@functools.lru_cache(maxsize=4096)
def _index_elements(N: int) -> st.SearchStrategy[int]:
    return st.integers(0, N - 1)


@st.composite
def dyadic(draw: st.DrawFn, shape: tuple[int, ...], label: str, lo: int = -16, hi: int = 16,
           scale: float = 4.0) -> NDArray:
    """k / scale with small k drawn more often (exact ties for mode='max', equal rows)."""
    n = math.prod(shape)
    if n <= ELEMENTWISE_MAX:
        ints = np.asarray(draw(st.lists(_dyadic_elements(lo, hi), min_size=n, max_size=n),
                               label=f"{label} x{scale:g} (integers)"), dtype=np.int64).reshape(shape)
    else:
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label=f"{label}: generator seed"))
        small = rng.integers(max(lo, -3), min(hi, 3) + 1, size=shape)
        ints = np.where(rng.random(shape) < 0.5, small, rng.integers(lo, hi + 1, size=shape))
    return ints.astype(np.float64) / scale


@st.composite
def indices(draw: st.DrawFn, shape: tuple[int, ...], N: int, hot: bool = False) -> NDArray:
    """Indices in [0, N); `hot`: most positions hit one of a few rows."""
    n = math.prod(shape)
    if n <= ELEMENTWISE_MAX:
        return np.asarray(draw(st.lists(_index_elements(N), min_size=n, max_size=n), label="input (indices)"),
                          dtype=np.int64).reshape(shape)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="input (indices): generator seed"))
    out = rng.integers(0, N, size=shape, dtype=np.int64)
    if hot:
        rows = rng.integers(0, N, size=draw(st.integers(1, 3), label="number of hot rows"))
        share = draw(st.sampled_from([0.5, 0.9, 1.0]), label="share of positions on hot rows")
        take = rng.random(shape) < share
        out[take] = rng.choice(rows, size=int(take.sum()))
    return out


# the table ----------------------------------------------------------------------------------------


@st.composite
def sizes(draw: st.DrawFn, want: Want) -> Sizes:
    name = want.scale
    if name == "mixed":
        name = draw(st.sampled_from(MIXED), label="size class")
    elif isinstance(name, tuple):
        name = draw(st.sampled_from(name), label="size class")
    return SIZES[name]


#: the column-tile widths of kernels (vector lanes, warps, shared-memory tiles)
TILE_WIDTHS = (8, 16, 32, 64, 128)
#: the boundary example's embedding_dim in the kernel-scale class: a multiple of every tile width
BOUNDARY_DIM = 256


@st.composite
def kernel_dim(draw: st.DrawFn, lo: int, hi: int) -> int:
    """embedding_dim at a column-tile edge half of the time: a multiple of 8, 16, 32, 64 or 128 (up to `hi`), or
    one off it (the tile tail); otherwise any D in [lo, hi]."""
    if not draw(st.booleans(), label="embedding_dim at a tile edge"):
        return draw(st.integers(lo, hi), label="embedding_dim")
    tile = draw(st.sampled_from([t for t in TILE_WIDTHS if t <= hi]), label="tile width")
    k = draw(st.integers(1, hi // tile), label="tiles")
    r = draw(st.sampled_from((0, 0, -1, 1)), label="embedding_dim - tiles x tile width")
    return min(max(k * tile + r, lo), hi)


@st.composite
def table(draw: st.DrawFn, want: Want, size: Sizes, float_dtypes: tuple[str, ...]) -> Case:
    wdtype = pick(draw, want.dtype, tuple(float_dtypes), "weight dtype")
    lo_rows = max(size.rows[0], 2) if want.boundary else size.rows[0]  # two rows: a tie across different rows
    N = draw(st.integers(lo_rows, max(size.rows[1], lo_rows)), label="num_embeddings")
    if want.boundary:
        D = min(BOUNDARY_DIM, size.dim[1])
    elif size.dim[1] >= 64:
        D = draw(kernel_dim(*size.dim))
    else:
        D = draw(st.integers(*size.dim), label="embedding_dim")
    weight = draw(dyadic((N, D), "weight"))
    return Case(fn=want.fn, weight=weight, wdtype=wdtype, input=np.zeros(0, np.int64))


def _min_len(want: Want) -> int:
    if want.boundary:
        return 2  # a bag with two positions: room for a tie
    need_nonempty = want.dup or want.allpad_bag or (want.norm_type is not None and want.norm_type != "any"
                                                    and want.bite)
    return 2 if want.dup else (1 if need_nonempty else 0)


@st.composite
def embedding_input(draw: st.DrawFn, want: Want, size: Sizes, case: Case) -> Case:
    N = case.weight.shape[0]
    min_len = _min_len(want)
    kinds: tuple[str, ...] = ("0d", "empty", "1d", "nd")
    if min_len:
        kinds = ("1d", "nd") if min_len > 1 else ("0d", "1d", "nd")
    kind = pick(draw, want.shape, kinds, "input shape kind")
    lo, hi = size.positions
    shp: tuple[int, ...]
    if kind == "0d":
        shp = ()
    elif kind == "empty":
        shp = draw(st.sampled_from([(0,), (2, 0), (0, 3)]), label="empty input shape")
    elif kind == "1d":
        shp = (draw(st.integers(max(min_len, lo, 1), max(hi, min_len, 1)), label="input length"),)
    elif hi <= 8:
        shp = tuple(draw(st.lists(st.integers(1, 3), min_size=2, max_size=3), label="input shape"))
        if math.prod(shp) < min_len:
            shp = (2, *shp)
    else:
        lead = draw(st.integers(2, 64), label="input leading dim")
        rest = draw(st.integers(max(1, lo // lead), max(1, hi // lead, min_len)), label="input trailing dim")
        shp = (lead, rest)
    case.input = draw(indices(shp, N, size.hot))
    return case


@st.composite
def bag_input(draw: st.DrawFn, want: Want, size: Sizes, case: Case, int_dtypes: tuple[str, ...]) -> Case:
    N = case.weight.shape[0]
    min_len = _min_len(want)
    m = pick(draw, want.mode, ("sum", "mean", "max"), "mode")
    if want.psw_ext:
        m = draw(st.sampled_from(["mean", "max"]), label="mode (per_sample_weights extension)")
    if m != "default":
        case.kwargs["mode"] = m
    kinds: tuple[str, ...] = ("offsets", "2d", "empty")
    if min_len or want.empty_bag:
        kinds = ("offsets",) if want.empty_bag else ("offsets", "2d")
    kind = pick(draw, want.shape, kinds, "input layout")
    use_ilo = pick(draw, want.ilo, (False, True), "include_last_offset") if kind != "2d" else False
    lo, hi = size.positions
    if kind == "2d":
        B = draw(st.integers(1 if min_len else 0, max(3, size.bags[1])), label="number of bags")
        # L >= 1: torch raises "step must be nonzero" for a (B, 0) input (README Findings)
        L = draw(st.integers(max(min_len, 1), max(4, hi // max(B, 1), 1)), label="bag length")
        if min_len > B * L:
            B, L = max(B, 1), max(L, min_len)
        case.input = draw(indices((B, L), N, size.hot))
        return case
    L = 0 if kind == "empty" else draw(st.integers(max(min_len, lo), max(hi, min_len)), label="input length")
    nb = draw(st.integers(0 if use_ilo and L == 0 else 1, size.bags[1]), label="number of bags")
    if nb - 1 <= ELEMENTWISE_MAX:
        cuts = draw(st.lists(st.integers(0, L), min_size=max(nb - 1, 0), max_size=max(nb - 1, 0)),
                    label="bag starts")
    else:
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="bag starts: generator seed"))
        cuts = rng.integers(0, L + 1, size=nb - 1).tolist()
    starts = ([0, *sorted(cuts)]) if nb >= 1 else []
    if want.empty_bag and all(e > s for s, e in zip(starts, [*starts[1:], L], strict=True)):
        starts = [*starts, L]
    offsets = [*starts, L] if use_ilo else starts
    if use_ilo and not offsets:
        offsets = [0]
    case.input = draw(indices((L,), N, size.hot))
    case.offsets = np.asarray(offsets, dtype=np.int64)
    case.odtype = pick(draw, want.odtype, tuple(int_dtypes), "offsets dtype")
    if use_ilo:
        case.kwargs["include_last_offset"] = True
    return case


@st.composite
def padding(draw: st.DrawFn, want: Want, case: Case) -> Case:
    """padding_idx (positive or negative) and at least one position holding it."""
    pad_kind = pick(draw, want.padding, (None, "pos", "neg"), "padding_idx kind")
    if pad_kind is None:
        return case
    N = case.weight.shape[0]
    flat = case.input.reshape(-1)
    p = draw(st.integers(0, N - 1), label="padding row")
    case.kwargs["padding_idx"] = p if pad_kind == "pos" else p - N
    if flat.size:
        for k in range(draw(st.integers(1, 3 if flat.size > 2 else 1), label="positions holding padding_idx")):
            j = draw(st.integers(0, flat.size - 1), label=f"position {k} holding padding_idx")
            flat[j] = p
    if want.allpad_bag and case.fn == "embedding_bag":
        ranges = [r for r in bag_ranges(case) if len(r)]
        assume(ranges)
        r = ranges[draw(st.integers(0, len(ranges) - 1), label="all-padding bag")]
        flat[r.start:r.stop] = p
    return case


@st.composite
def duplicates(draw: st.DrawFn, want: Want, case: Case) -> Case:
    flat = case.input.reshape(-1)
    if want.dup and flat.size >= 2:
        i = draw(st.integers(0, flat.size - 2), label="duplicate source position")
        j = draw(st.integers(i + 1, flat.size - 1), label="duplicate target position")
        flat[j] = flat[i]
    return case


TIE_KINDS = ("none", "rows", "columns", "nan")


@st.composite
def ties(draw: st.DrawFn, want: Want, case: Case) -> Case:
    """mode='max' (and the min extension, drawn as max): exact ties between two *different* rows of one bag --
    a duplicated row (every column ties), a few equal columns, or a NaN -- the cases where a kernel's
    tie-breaking shows (BAG-MAX-TIES: the first occurrence wins and takes the gradient; BAG-MAX-NAN).  Drawn
    at every size (kernel-scale D included); a boundary example always duplicates a row."""
    N = case.weight.shape[0]
    if case.fn != "embedding_bag" or case.mode != "max" or N < 2:
        return case
    kinds = TIE_KINDS if want.norm_type is None else TIE_KINDS[:3]  # max_norm of a NaN row: no verdict to take
    kind = "rows" if want.boundary else draw(st.sampled_from(kinds), label="tie in a bag")
    pad = case.kwargs.get("padding_idx")
    pad = None if pad is None else int(pad) % N
    flat = case.input.reshape(-1)
    bags = [r for r in bag_ranges(case) if len(r) >= 2 and flat[r.start] != pad]
    if kind == "none" or not bags:
        return case
    r = bags[draw(st.integers(0, len(bags) - 1), label="bag holding the tie")]
    q = draw(st.integers(r.start + 1, r.stop - 1), label="position of the tied row (after the bag's first)")
    i = int(flat[r.start])
    j = draw(st.sampled_from([k for k in range(min(N, 8)) if k not in (i, pad)] or [i]), label="tied row")
    if j == i:
        return case
    flat[q] = j
    D = case.weight.shape[1]
    cols = (np.arange(D) if kind == "rows" else
            np.unique(np.asarray(draw(st.lists(st.integers(0, D - 1), min_size=1, max_size=4), label="tied columns"))))
    if kind == "nan":
        case.weight[draw(st.sampled_from([i, j]), label="row holding NaN"), cols] = np.nan
    else:
        case.weight[j, cols] = case.weight[i, cols]
    case.notes.append(f"tie: rows {i} and {j} ({kind}) in the bag of positions {r.start}..{r.stop - 1}")
    return case


@st.composite
def big_indices(draw: st.DrawFn, case: Case) -> Case:
    """With a table past 65,536 rows, make sure indices past a 16-bit index are used."""
    N = case.weight.shape[0]
    flat = case.input.reshape(-1)
    if N > 65_536 and flat.size:
        j = draw(st.integers(0, flat.size - 1), label="position of an index >= 65536")
        flat[j] = draw(st.sampled_from([65_536, N - 1, 65_536 + (N - 65_536) // 2]), label="index >= 65536")
    return case


@st.composite
def flags(draw: st.DrawFn, want: Want, case: Case) -> Case:
    """scale_grad_by_freq, sparse, per_sample_weights (each only where torch defines it)."""
    kwargs = case.kwargs
    is_max = case.fn == "embedding_bag" and kwargs.get("mode", "mean") == "max"
    s = False if is_max else pick(draw, want.sgbf, (False, True), "scale_grad_by_freq")
    # torch's sparse backward raises IndexError for a 0-d input with any padding_idx (README Findings):
    # outside the reference's domain, so never drawn as a valid case
    zero_d_pad = case.fn == "embedding" and case.input.ndim == 0 and "padding_idx" in kwargs
    sp = False if (is_max or s or zero_d_pad) else pick(draw, want.sparse, (False, True), "sparse")
    if s:
        kwargs["scale_grad_by_freq"] = True
    if sp:
        kwargs["sparse"] = True
    if case.fn == "embedding_bag":
        use_psw = want.psw_ext or (kwargs.get("mode") == "sum" and pick(draw, want.psw, (False, True),
                                                                         "per_sample_weights"))
        if use_psw:
            case.psw = draw(dyadic(case.input.shape, "per_sample_weights", -8, 8))
            case.pdtype = case.wdtype
    return case


def _max_norm_candidates(norms: NDArray, margin: float = 0.05) -> list[float]:
    """max_norm values at least `margin` (relative) away from every used row's norm, each renorming some row."""
    u = np.unique(norms[norms > 0])
    if not u.size:
        return []
    out = [float(f"{0.5 * u[0]:.4g}")]
    for a, b in itertools.pairwise(u):
        if b / a > 1.12:
            out.append(float(f"{math.sqrt(a * b):.4g}"))
    return [m for m in out if np.all(np.abs(norms / m - 1.0) > margin)]


@st.composite
def max_norm(draw: st.DrawFn, want: Want, case: Case) -> Case:
    norm_type = FRACTIONAL_P if want.norm_type == "frac" else want.norm_type
    nt = pick(draw, norm_type, (None, *NORM_TYPES), "norm_type (None: no max_norm)")
    if nt is None:
        return case
    used = np.unique(case.input.reshape(-1))
    norms = p_norm(case.weight[used], nt) if used.size else np.zeros(0)
    top = float(norms.max()) if norms.size else 0.0
    if want.bite:
        assume(top > 0)
    tie = False
    # L1 / max-abs norms of these dyadic rows are exact in the weight's dtype while every partial sum of
    # quarters fits its mantissa: a row whose norm equals max_norm exactly must NOT be renormed (RENORM-STRICT)
    exact_up_to = {"float16": 2.0**9, "bfloat16": 2.0**6}.get(case.wdtype, 2.0**20)
    exact = [float(n) for n in norms if n > 0 and (nt == math.inf or n <= exact_up_to)]
    if nt in (1.0, math.inf) and exact:
        tie = draw(st.booleans(), label="max_norm equal to a used row's norm (exact tie: no renorm)")
    if tie:
        nz = sorted(set(exact))
        mn = draw(st.sampled_from(nz), label="max_norm (tied row norm)")
    elif top > 0:
        # keep every used row's norm clearly away from max_norm (no verdict decided by rounding)
        # a norm computed in a 16-bit dtype over D terms may be off by ~D·eps (more for p < 1)
        eps = {"float16": 2.0**-10, "bfloat16": 2.0**-7}.get(case.wdtype, 2.0**-23)
        cands = _max_norm_candidates(norms, max(0.05, 2 * eps * case.weight.shape[1] / min(float(nt), 1.0)))
        assume(cands)
        mn = draw(st.sampled_from(cands), label="max_norm (between two used row norms)")
    else:
        mn = draw(st.sampled_from([0.5, 1.0]), label="max_norm")
    case.kwargs["max_norm"] = mn
    if nt != 2.0:
        case.kwargs["norm_type"] = nt
    return case


@st.composite
def grad_output(draw: st.DrawFn, case: Case) -> Case:
    case.grad_out = draw(dyadic(output_shape(case), "grad_output", -8, 8))
    return case


@st.composite
def cases(draw: st.DrawFn, want: Want, float_dtypes: tuple[str, ...],
          int_dtypes: tuple[str, ...] = ("int32", "int64")) -> Case:
    """A valid case for `want` (the whole pipeline)."""
    size = draw(sizes(want))
    case = draw(table(want, size, float_dtypes))
    case.idtype = pick(draw, want.idtype, tuple(int_dtypes), "input (indices) dtype")
    if want.fn == "embedding":
        case = draw(embedding_input(want, size, case))
    else:
        case = draw(bag_input(want, size, case, int_dtypes))
    case = draw(padding(want, case))
    case = draw(duplicates(want, case))
    case = draw(ties(want, case))
    case = draw(big_indices(case))
    case = draw(flags(want, case))
    case = draw(max_norm(want, case))
    if want.grad:
        case = draw(grad_output(case))
    return case
