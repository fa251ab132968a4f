"""Small-call (per-call overhead) benchmark: ``python -m benchmarks --small``.

The workloads where the data costs a few microseconds and everything else (checks, dispatch,
namespace lookups, autograd wiring) shows: V=1000 D=16 one bag of 8; V=1e5 D=64 32 bags of 20; embedding of
8 and of 640 indices.  Contenders: torch native (the reference of the ratios, same run), xembed on NumPy
arrays and xembed on torch tensors.  Passes: forward (sum, mean, max for bags) and forward+backward (the
weight gradient of a sum bag / a lookup: ``*_vjp`` + pullback on NumPy, ``backward()`` on torch).

Timing: ``timeit`` loops of ~20 ms, several repeats, median per call in microseconds.
"""

from __future__ import annotations

import contextvars
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Fn = Callable[[], Any]


@dataclass(frozen=True)
class Small:
    name: str
    kind: str  # "bag" or "lookup"
    V: int
    D: int
    B: int  # bags (or lookups)
    L: int  # bag length


SMALL = [
    Small("bag V=1e3 D=16 1x8", "bag", 1000, 16, 1, 8),
    Small("bag V=1e5 D=64 32x20", "bag", 100_000, 64, 32, 20),
    Small("embedding V=1e3 D=16 n=8", "lookup", 1000, 16, 8, 1),
    Small("embedding V=1e5 D=64 n=640", "lookup", 100_000, 64, 640, 1),
]
PASSES = {"bag": ["fwd_sum", "fwd_mean", "fwd_max", "fwd_bwd_sum"], "lookup": ["fwd", "fwd_bwd"]}
CONTENDERS = ["torch", "xembed-numba", "xembed-numpy", "xembed-torch"]
MODES = {"xembed-numba": "numba", "xembed-numpy": "native", "xembed-torch": "auto"}


def _data(s: Small) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    W = rng.standard_normal((s.V, s.D), dtype=np.float32)
    idx = rng.integers(0, s.V, s.B * s.L if s.kind == "bag" else s.B, dtype=np.int64)
    offs = np.arange(s.B, dtype=np.int64) * s.L
    return W, idx, offs


def build(s: Small, pass_: str, contender: str) -> Fn:
    """The timed call; an xembed contender runs under its primitive mode (``xembed.primitives.use``)."""
    if contender == "torch":
        return _build(s, pass_, contender)
    from xembed import _primitives as prim

    fn = _build(s, pass_, contender)
    # the mode is set once, in a context of this contender's own (the variable behind `primitives.use`): a
    # `with` block per call would time the context manager too
    ctx = contextvars.copy_context()
    ctx.run(prim._mode_var.set, MODES[contender])
    return lambda: ctx.run(fn)


def _build(s: Small, pass_: str, contender: str) -> Fn:
    import torch
    import torch.nn.functional as F  # noqa: N812

    import xembed

    W, idx, offs = _data(s)
    mode = pass_.removeprefix("fwd_bwd_").removeprefix("fwd_") if s.kind == "bag" else "sum"
    if contender in ("xembed-numpy", "xembed-numba"):
        if pass_.startswith("fwd_bwd"):
            g = np.full((s.B, s.D), 0.5, np.float32)
            if s.kind == "bag":
                return lambda: xembed.embedding_bag_vjp(idx, W, offs, mode=mode)[1](g)
            return lambda: xembed.embedding_vjp(idx, W)[1](g)
        if s.kind == "bag":
            return lambda: xembed.embedding_bag(idx, W, offs, mode=mode)
        return lambda: xembed.embedding(idx, W)
    bag_fn, emb_fn = (xembed.embedding_bag, xembed.embedding) if contender == "xembed-torch" else (
        F.embedding_bag, F.embedding)
    Wt, it, ot = torch.from_numpy(W), torch.from_numpy(idx), torch.from_numpy(offs)
    if pass_.startswith("fwd_bwd"):
        Wl = Wt.clone().requires_grad_(True)
        gt = torch.full((s.B, s.D), 0.5)

        def fwd_bwd() -> Any:
            Wl.grad = None
            out = bag_fn(it, Wl, ot, mode=mode) if s.kind == "bag" else emb_fn(it, Wl)
            out.backward(gt)
            return Wl.grad

        return fwd_bwd

    def fwd() -> Any:
        with torch.no_grad():
            return bag_fn(it, Wt, ot, mode=mode) if s.kind == "bag" else emb_fn(it, Wt)

    return fwd


def time_us(fn: Fn, repeats: int, target_s: float = 0.02) -> float:
    """Median microseconds per call over ``repeats`` timeit loops of about ``target_s`` seconds."""
    fn()
    t = timeit.Timer(fn)
    number, _ = t.autorange()
    number = max(1, int(number * target_s / 0.2))
    return float(np.median(t.repeat(repeats, number))) / number * 1e6


def run(repeats: int = 7, contenders: list[str] | None = None) -> list[dict[str, Any]]:
    """Every (workload, pass, contender); the contenders of one pass are interleaved repeat by repeat."""
    conts = contenders or CONTENDERS
    if "torch" not in conts:
        conts = ["torch", *conts]
    records = []
    for s in SMALL:
        for pass_ in PASSES[s.kind]:
            fns = {c: build(s, pass_, c) for c in conts}
            times: dict[str, list[float]] = {c: [] for c in conts}
            for _ in range(repeats):  # interleaved: a noisy neighbour hits every contender alike
                for c in conts:
                    times[c].append(time_us(fns[c], 1))
            ref = float(np.median(times["torch"]))
            for c in conts:
                us = float(np.median(times[c]))
                rec = {"workload": s.name, "pass": pass_, "contender": c, "median_us": us, "ratio_to_torch": us / ref}
                records.append(rec)
                print(f"  {s.name:<28} {pass_:<12} {c:<13} {us:9.2f} us  x{us / ref:5.2f}", flush=True)
    return records


def markdown(records: list[dict[str, Any]], env: dict[str, Any]) -> str:
    conts = [c for c in CONTENDERS[1:] if any(r["contender"] == c for r in records)]
    lines = ["# xembed small-call benchmark", "",
             "Environment: " + ", ".join(f"{k}={v}" for k, v in env.items()), "",
             ("Median us per call (timeit loops, contenders interleaved); ratio = time / torch native in the "
              "same run.  Targets: forward <= 2.0x, forward+backward <= 2.0x.  `xembed-numba`: NumPy "
              "arrays, mode `numba`; `xembed-numpy`: NumPy arrays, pure NumPy (mode `native`); `xembed-torch`: "
              "torch tensors."), "",
             "| workload | pass | torch us | " + " | ".join(f"{c} us | ratio" for c in conts) + " |",
             "|---|---|---:|" + "---:|---:|" * len(conts)]
    rows: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in records:
        rows.setdefault((r["workload"], r["pass"]), {})[r["contender"]] = r
    for (wname, pass_), cs in rows.items():
        cells = [wname, pass_, f"{cs['torch']['median_us']:.1f}"]
        for c in conts:
            if c in cs:
                cells += [f"{cs[c]['median_us']:.1f}", f"{cs[c]['ratio_to_torch']:.2f}"]
            else:
                cells += ["-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(records: list[dict[str, Any]], path: str) -> bool:
    try:
        import matplotlib as mpl

        mpl.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return False
    keys = list(dict.fromkeys((r["workload"], r["pass"]) for r in records))
    conts = [c for c in CONTENDERS if c != "torch" and any(r["contender"] == c for r in records)]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / max(len(conts), 1)
    for j, c in enumerate(conts):
        vals = [next((r["ratio_to_torch"] for r in records if (r["workload"], r["pass"]) == k
                      and r["contender"] == c), np.nan) for k in keys]
        ax.bar(np.arange(len(keys)) + j * width, vals, width, label=c)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.axhline(2.0, color="r", lw=0.8, ls="--", label="target 2.0x")
    ax.set_xticks(np.arange(len(keys)) + width * (len(conts) - 1) / 2)
    ax.set_xticklabels([f"{w}\n{p}" for w, p in keys], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("time / torch native (same run)")
    ax.set_title("xembed small calls (per-call overhead), CPU, 1 thread")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
