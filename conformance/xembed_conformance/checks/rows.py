"""The rows of the report: what each row draws, which aspects it checks, which spec rules it cites."""

# ruff: noqa: RUF001, ARG001  # row labels use the multiplication sign; every strategy factory has the (backend, grad) signature

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from hypothesis import strategies as st

from xembed_conformance.backends import Backend
from xembed_conformance.cases import Case
from xembed_conformance.checks.core import Context
from xembed_conformance.checks.errors import ERROR_ROWS, ErrorRow, ErrorSpec, run_error
from xembed_conformance.checks.extensions import EXTENSIONS, Extension, run_extension
from xembed_conformance.checks.gradients import run_grad
from xembed_conformance.checks.strict import STRICT_ERROR_ROWS, STRICT_GRAD_ACC
from xembed_conformance.checks.traced import is_value_error, run_traced_value_error
from xembed_conformance.checks.values import run_values
from xembed_conformance.strategies import LOW_PRECISION, Want, cases

Draw = Callable[[Backend, bool], st.SearchStrategy[Case]]
#: (backend, grad, size class) -> the strategy of the boundary example of that size class
BoundaryDraw = Callable[[Backend, bool, str], st.SearchStrategy[Case]]


@dataclass
class Row:
    option: str
    fn: str
    kind: str  # "valid" | "error" | "extension"
    strategy: Draw  # (backend, grad) -> strategy of cases
    spec: tuple[str, ...]  # docs/spec.md rule IDs this row checks
    aspects: tuple[str, ...]
    error: ErrorSpec | None = None
    extension: Extension | None = None
    strict_only: bool = False  # checked only with --strict
    grad_f32: bool = False  # low-precision gradients must accumulate in float32 (GRAD-ACC)
    budget: float = 1.0  # share of --max-examples this row spends
    # one boundary example per size class before the generated ones (strategies.Want.boundary); none if None
    boundary: BoundaryDraw | None = None
    size_classes: tuple[str, ...] = ()

    def check_ids(self) -> list[str]:
        return [f"{self.fn}::{self.option}::{a}" for a in self.aspects]

    def draw(self, data: st.DataObject, backend: Backend, grad: bool = False, boundary: str | None = None) -> Case:
        """One case, as a labelled draw that shows the final arguments (`boundary`: that size class's boundary
        example)."""
        if boundary is not None:
            assert self.boundary is not None
            return data.draw(self.boundary(backend, grad, boundary), label=f"case (final arguments; boundary "
                             f"example of size class {boundary!r})")
        return data.draw(self.strategy(backend, grad), label="case (final arguments)")


def _edge(w: Want, cls: str) -> Want:
    return w.with_(scale=cls, boundary=True)


def valid(option: str, fn: str, spec: tuple[str, ...], budget: float = 0.5,
          aspects: tuple[str, ...] = ("values", "grad"), **want: Any) -> Row:
    w = Want(fn, **want)

    def strategy(be: Backend, grad: bool) -> st.SearchStrategy[Case]:
        return cases(w.with_(grad=grad), be.float_dtypes, be.int_dtypes)

    def boundary(be: Backend, grad: bool, cls: str) -> st.SearchStrategy[Case]:
        return cases(_edge(w, cls).with_(grad=grad), be.float_dtypes, be.int_dtypes)

    return Row(option, fn, "valid", strategy, spec, aspects, budget=budget, boundary=boundary,
               size_classes=w.size_classes())


@st.composite
def _invalid(draw: st.DrawFn, want: Want, er: ErrorRow, be: Backend) -> Case:
    case = draw(cases(want, be.float_dtypes, be.int_dtypes))
    data = draw(st.data())
    return er.mutate(data, case, be)


def error(fn: str, er: ErrorRow) -> Row:
    base: dict[str, Any] = {"shape": "any", "mode": "any"} if fn == "embedding_bag" else {"shape": "any"}
    base.update(er.want)
    w = Want(fn, **base)

    def strategy(be: Backend, grad: bool) -> st.SearchStrategy[Case]:
        return _invalid(w, er, be)

    def boundary(be: Backend, grad: bool, cls: str) -> st.SearchStrategy[Case]:
        return _invalid(_edge(w, cls), er, be)

    return Row(er.option, fn, "error", strategy, er.spec, ("error",), error=er.error,
               strict_only=er.error.strict, budget=0.3, boundary=boundary, size_classes=w.size_classes())


@st.composite
def _extended(draw: st.DrawFn, ext: Extension, be: Backend) -> Case:
    case = draw(cases(ext.want, be.float_dtypes, be.int_dtypes))
    return ext.apply(draw(st.data()), case)


def extension(ext: Extension) -> Row:
    def strategy(be: Backend, grad: bool) -> st.SearchStrategy[Case]:
        return _extended(replace(ext, want=ext.want.with_(grad=grad)), be)

    def boundary(be: Backend, grad: bool, cls: str) -> st.SearchStrategy[Case]:
        return _extended(replace(ext, want=_edge(ext.want, cls).with_(grad=grad)), be)

    aspects = ("values", "grad") if ext.gradient is not None else ("values",)
    return Row(ext.option, ext.fn, "extension", strategy, ext.spec, aspects, extension=ext, boundary=boundary,
               size_classes=ext.want.size_classes())


E, B = "embedding", "embedding_bag"
MODES = ("sum", "mean", "max")


def embedding_rows(be: Backend) -> list[Row]:
    return [
        valid("defaults (1-D input)", E, ("EMB-SHAPE", "EMB-LOOKUP", "GRAD-EMB"), shape="1d"),
        valid("input 0-d", E, ("EMB-SHAPE",), shape="0d", budget=0.5),
        valid("input empty", E, ("EMB-SHAPE",), shape="empty", budget=0.5),
        valid("input N-D", E, ("EMB-SHAPE", "EMB-LOOKUP"), shape="nd"),
        valid("int32 indices", E, ("BAG-INDEX-DTYPES", "EMB-LOOKUP"), idtype="int32"),
        valid("duplicate indices", E, ("EMB-LOOKUP", "GRAD-EMB"), dup=True),
        valid("padding_idx >= 0", E, ("EMB-PAD-VALUE", "GRAD-PAD"), padding="pos"),
        valid("padding_idx < 0", E, ("PAD-NEGATIVE", "GRAD-PAD"), padding="neg"),
        valid("scale: embedding_dim 4..320 (every residue mod 4, 8, 32)", E, ("EMB-LOOKUP", "GRAD-EMB"),
              scale="wide", shape=("1d", "nd"), budget=1.0),
        valid("scale: table > 65,536 rows", E, ("EMB-LOOKUP", "GRAD-EMB"), scale="big table", shape="1d", budget=1.0),
        valid("scale: long input on hot rows", E, ("EMB-LOOKUP", "GRAD-EMB"), scale="hot rows",
              shape=("1d", "nd"), budget=0.5),
    ]


def bag_rows(be: Backend) -> list[Row]:
    return [
        valid("defaults (mode='mean', 1-D + offsets)", B, ("BAG-LAYOUT-1D", "BAG-MEAN", "GRAD-BAG"),
              shape="offsets"),
        valid("mode='sum'", B, ("BAG-SUM", "GRAD-BAG"), mode="sum"),
        valid("mode='mean'", B, ("BAG-MEAN", "GRAD-BAG"), mode="mean"),
        valid("mode='max'", B, ("BAG-MAX", "BAG-MAX-TIES", "GRAD-MAX"), mode="max"),
        valid("input 1-D + offsets", B, ("BAG-LAYOUT-1D",), shape="offsets", mode="any"),
        valid("input 2-D (fixed-length bags)", B, ("BAG-LAYOUT-2D",), shape="2d", mode="any"),
        valid("input empty", B, ("BAG-EMPTY",), shape="empty", mode="any", budget=0.5),
        valid("all-padding bags", B, ("BAG-EMPTY", "BAG-PAD", "GRAD-PAD"), allpad_bag=True, padding=("pos", "neg"),
              mode="any"),
        valid("duplicate indices", B, ("BAG-SUM", "GRAD-BAG", "GRAD-MAX"), dup=True, mode="any"),
        valid("padding_idx >= 0", B, ("BAG-PAD", "BAG-MEAN-PAD", "GRAD-PAD"), padding="pos", mode="any"),
        valid("padding_idx < 0", B, ("PAD-NEGATIVE", "BAG-PAD", "GRAD-PAD"), padding="neg", mode="any"),
        valid("include_last_offset", B, ("BAG-LAST-OFFSET",), shape="offsets", ilo=True, mode="any"),
        valid("per_sample_weights (mode='sum')", B, ("BAG-PSW", "GRAD-PSW"), mode="sum", psw=True),
        valid("int32 indices", B, ("BAG-INDEX-DTYPES",), idtype="int32", mode="any"),
        valid("int32 offsets (mixed with int64 indices)", B, ("BAG-INDEX-DTYPES",), shape="offsets",
              odtype="int32", mode="any"),
        # kernel scale
        valid("scale: embedding_dim 4..320 (every residue mod 4, 8, 32)", B, ("BAG-SUM", "BAG-MEAN", "BAG-MAX"),
              scale="wide", mode="any", psw="any", budget=1.0),
        valid("scale: long bags (33..3000 entries)", B, ("BAG-SUM", "BAG-MEAN", "BAG-MAX", "ACC-LOWP"),
              scale="long bags", mode="any", psw="any", shape=("offsets", "2d"), budget=1.0),
        valid("scale: thousands of bags", B, ("BAG-LAYOUT-1D", "BAG-EMPTY"), scale="many bags", mode="any",
              shape="offsets", budget=0.5),
        valid("scale: table > 65,536 rows", B, ("BAG-SUM", "BAG-MEAN", "BAG-MAX"), scale="big table", mode="any",
              budget=1.0),
        valid("scale: hot rows", B, ("BAG-SUM", "GRAD-BAG", "GRAD-MAX"), scale="hot rows", mode="any", budget=0.5),
        # combinations
        valid("per_sample_weights × padding_idx", B, ("BAG-PSW", "BAG-PAD", "GRAD-PSW", "GRAD-PAD"), mode="sum",
              psw=True, padding=("pos", "neg")),
        valid("int32 offsets × include_last_offset", B, ("BAG-INDEX-DTYPES", "BAG-LAST-OFFSET"), shape="offsets",
              odtype="int32", ilo=True, mode="any", budget=0.5),
        *[valid(f"empty bags × mode='{m}'", B, ("BAG-EMPTY",), empty_bag=True, mode=m, budget=0.5) for m in MODES],
    ]


def shared_rows(be: Backend, fn: str) -> list[Row]:
    m: dict[str, Any] = {"mode": "any", "psw": "any"} if fn == B else {}
    rows: list[Row] = []
    for label, nt in (("1", 1.0), ("2", 2.0), ("3", 3.0), ("inf", math.inf), ("fractional", "frac")):
        rows.append(valid(f"max_norm, norm_type={label}", fn, ("RENORM-INPLACE", "RENORM-STRICT", "RENORM-SCALE",
                                                               "RENORM-NORM", "RENORM-GRAD"), norm_type=nt, **m))
    rows.append(valid("max_norm × padding_idx", fn, ("RENORM-INPLACE", "BAG-PAD" if fn == B else "EMB-PAD-VALUE"),
                      norm_type=(1.0, 2.0, math.inf), padding=("pos", "neg"), **m))
    mm: dict[str, Any] = {"mode": ("sum", "mean")} if fn == B else {}
    rows.append(valid("scale_grad_by_freq", fn, ("GRAD-SGBF",), sgbf=True, dup=True, **mm))
    rows.append(valid("scale_grad_by_freq × long inputs", fn, ("GRAD-SGBF",), sgbf=True, dup=True,
                      scale=("hot rows", "long bags") if fn == B else "hot rows", budget=0.5, **mm))
    rows.append(valid("sparse", fn, ("GRAD-SPARSE",), sparse=True, **mm))
    for dt in ("float16", "bfloat16", "float32", "float64"):
        if dt not in be.float_dtypes:
            continue
        if fn == E:
            acc = "ACC-LOWP" if dt in LOW_PRECISION else "TOL-COMPARE"
            rows.append(valid(f"weight {dt}", fn, ("EMB-SHAPE", acc), dtype=dt))
            continue
        for mode in MODES:
            spec = ("ACC-LOWP" if dt in LOW_PRECISION else "TOL-COMPARE", f"BAG-{mode.upper()}")
            # 16-bit accumulation goes wrong over long bags: half of the low-precision examples are long bags
            sizes = ("tiny", "long bags", "wide", "long bags") if dt in LOW_PRECISION else ("tiny", "wide")
            budget = 0.5 if dt in LOW_PRECISION else 0.3
            rows.append(valid(f"weight {dt} × mode='{mode}'", fn, spec,
                              dtype=dt, mode=mode, psw="any" if mode == "sum" else False,
                              scale=sizes, budget=budget))
    bag_any: dict[str, Any] = {"mode": "any", "psw": "any", "ilo": "any", "odtype": "any"} if fn == B else {}
    rows.append(valid(
        "all options combined", fn, ("REF-TORCH-VERSION",), shape="any", idtype="any", padding="any", norm_type="any",
        sgbf="any", sparse="any", bite=False, **bag_any))
    lowp = tuple(d for d in LOW_PRECISION if d in be.float_dtypes)
    if lowp:
        r = valid(STRICT_GRAD_ACC, fn, ("GRAD-ACC",), aspects=("grad",), dtype=lowp, scale="hot rows",
                  budget=0.5, **({"mode": ("sum", "mean")} if fn == B else {}))
        r.strict_only = r.grad_f32 = True
        rows.append(r)
    return rows


def build_rows(backend: Backend) -> list[Row]:
    rows = [*embedding_rows(backend), *shared_rows(backend, E), *bag_rows(backend), *shared_rows(backend, B)]
    rows += [extension(ext) for ext in EXTENSIONS]
    rows += [error(fn, er) for fn, er in (*ERROR_ROWS, *STRICT_ERROR_ROWS)]
    return rows


def run_row(ctx: Context, row: Row, aspect: str, case: Case) -> None:
    """Check one drawn case of ``row`` (``aspect``: "values" or "grad"); raises Violation when it fails.  The one
    dispatch of a row kind to its check, shared by the hypothesis runs and the repros' ``recheck``."""
    if row.kind == "error" and ctx.backend.traced and is_value_error(row.option, row.spec):
        run_traced_value_error(ctx, case, row.option, row.spec)
    elif row.kind == "error":
        assert row.error is not None
        run_error(ctx, case, row.error)
    elif row.kind == "extension":
        assert row.extension is not None
        run_extension(ctx, case, row.extension)
    elif aspect == "grad":
        run_grad(ctx, case)
    else:
        run_values(ctx, case)
