"""Every speed / memory target in one run: ``python -m benchmarks --targets [--quick]``.

Each figure is a ratio to a baseline measured in the same process, call by call alternately (torch native,
or ``np.take`` of the same rows for the pure-NumPy path), printed with both absolute times.  The large
workload is the DLRM one of ``workloads.py`` (``--quick``: V=1e5, B=1024); threads are set per row with
``torch.set_num_threads`` and ``numba.set_num_threads`` (numba's pool is started with two).

Outputs ``targets[_quick].{json,md}`` (a table: target, limit, ratio, xembed time, baseline time, met).
"""

from __future__ import annotations

import gc
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import contenders, small, suite, workloads

LARGE_PASSES = {"fwd_sum": 1.0, "fwd_mean": 1.0, "fwd_psw": 1.0, "fwd_max": 0.5, "bwd_dense": 1.0}
SCALING_LIMIT = 0.75  # xembed's 2-thread forward / its 1-thread forward
SMALL_LIMIT = 1.5
MODULE_LIMITS = {"train dense+SGD": 1.1, "train sparse+SparseAdam": 1.1, "inference B=256": 1.2}
NUMPY_LIMIT = 1.3  # pure NumPy / np.take of the same rows
NUMPY_WORKLOADS = ["dlrm", "text_cls", "dlrm_zipf", "large_batch", "gpt2_tokens"]
FIRST_CALL_LIMIT_S = 1.0
SECTIONS = ("large", "small", "modules", "numpy", "memory", "first_call", "quantized")


def _row(target: str, limit: float, ratio: float, ours: float, base: float, base_name: str,
         **extra: Any) -> dict[str, Any]:
    rec = {"target": target, "limit": limit, "ratio": ratio, "xembed_s": ours, "baseline_s": base,
           "baseline": base_name, "met": bool(ratio <= limit), **extra}
    ns = f"  {extra['ns_per_row']:.0f} vs {extra['baseline_ns_per_row']:.0f} ns/row" if "ns_per_row" in extra else ""
    print(f"  {target:<58} x{ratio:6.2f} (limit {limit})  {ours * 1e3:9.3f} ms vs {base * 1e3:9.3f} ms"
          f"{ns}  {'met' if rec['met'] else 'NOT MET'}", flush=True)
    return rec


def _paired(fn: Any, base: Any, repeats: int, budget: float, clock: Any = time.perf_counter) -> tuple[float, float]:
    """Medians of ``fn`` and ``base`` called alternately (after one warm-up each), timed with ``clock``, every
    result dropped at once: a dense V x D gradient held across the timing would only add memory pressure."""
    fn()
    base()
    ours, theirs = [], []
    start = time.perf_counter()
    for i in range(repeats):
        if i >= 3 and time.perf_counter() - start > 2 * budget:
            break
        t = clock()
        base()
        theirs.append(clock() - t)
        t = clock()
        fn()
        ours.append(clock() - t)
    return float(np.median(ours)), float(np.median(theirs))


def _set_threads(n: int) -> None:
    import numba
    import torch

    torch.set_num_threads(n)
    numba.set_num_threads(n)


def large(quick: bool, repeats: int, budget: float) -> list[dict[str, Any]]:
    """DLRM forward sum / mean / psw / max and dense backward, xembed (numba) vs torch, at 1 and 2 threads;
    then xembed's own 2-thread / 1-thread forward."""
    w = workloads.make("dlrm", quick=quick)
    print(f"\n== large: {w.note}", flush=True)
    ctx = contenders.Ctx(w)
    rows = w.n_valid()
    out, own = [], {}
    for threads in (1, 2):
        _set_threads(threads)
        for pass_, limit in LARGE_PASSES.items():
            fn = contenders.build("xembed-numba", w, pass_, ctx)
            base = contenders.build("torch", w, pass_, ctx)
            med, base_med = _paired(fn, base, repeats, budget)
            own[(threads, pass_)] = med
            out.append(_row(f"DLRM {pass_} {threads} thread(s) vs torch", limit, med / base_med, med, base_med,
                            "torch", ns_per_row=med / rows * 1e9, baseline_ns_per_row=base_med / rows * 1e9))
            del fn, base
            gc.collect()
    _set_threads(1)
    for pass_ in LARGE_PASSES:
        if pass_.startswith("fwd"):
            one, two = own[(1, pass_)], own[(2, pass_)]
            out.append(_row(f"DLRM {pass_} xembed 2 threads vs its 1 thread", SCALING_LIMIT, two / one, two, one,
                            "xembed 1 thread"))
    return out


def pure_numpy(quick: bool, repeats: int, budget: float) -> list[dict[str, Any]]:
    """The pure-NumPy path (mode ``native``) against ``np.take`` of the rows the call reads, one thread."""
    out = []
    for name in NUMPY_WORKLOADS:
        w = workloads.make(name, quick=quick)
        print(f"\n== pure NumPy: {w.note}", flush=True)
        ctx = contenders.Ctx(w)
        for pass_ in contenders.passes_for(w):
            if not pass_.startswith("fwd"):
                continue
            fn = contenders.build("xembed-numpy", w, pass_, ctx)
            base = contenders.build("numpy-take", w, pass_, ctx)
            med, base_med = _paired(fn, base, repeats, budget)
            out.append(_row(f"pure NumPy {name} {pass_} vs np.take", NUMPY_LIMIT, med / base_med, med, base_med,
                            "np.take"))
        del ctx, w
        gc.collect()
    return out


def memory(quick: bool) -> list[dict[str, Any]]:
    """Peak extra memory (tracemalloc) of one pure-NumPy forward: <= 2 x output + 32 MiB."""
    import xembed
    from xembed import _primitives as prim

    out = []
    for name in ("large_batch", "text_cls"):
        w = workloads.make(name, quick=quick)
        out_bytes = w.num_bags * w.D * w.weight.dtype.itemsize
        limit = 2 * out_bytes + (32 << 20)
        for bag_mode in ("sum", "mean", "max"):
            def fn(w: workloads.Workload = w, bag_mode: str = bag_mode) -> Any:
                with prim.use("native"):
                    return xembed.embedding_bag(w.input, w.weight, w.offsets, mode=bag_mode,
                                                padding_idx=w.padding_idx)

            peak = suite.peak_extra_bytes(fn)
            rec = {"target": f"pure NumPy {name} {bag_mode} peak memory", "limit_bytes": limit,
                   "peak_bytes": peak, "output_bytes": out_bytes, "met": bool(peak <= limit)}
            print(f"  {rec['target']:<58} {peak / 2**20:8.1f} MiB (limit {limit / 2**20:.1f} MiB)  "
                  f"{'met' if rec['met'] else 'NOT MET'}", flush=True)
            out.append(rec)
        del w
        gc.collect()
    return out


def small_calls(repeats: int) -> list[dict[str, Any]]:
    print("\n== small calls (1 thread)", flush=True)
    _set_threads(1)
    records = small.run(repeats=repeats, contenders=["torch", "xembed-numba", "xembed-numpy", "xembed-torch"])
    ref = {(r["workload"], r["pass"]): r["median_us"] for r in records if r["contender"] == "torch"}
    out = []
    for r in records:
        if r["contender"] == "torch":
            continue
        base = ref[(r["workload"], r["pass"])]
        out.append(_row(f"small {r['workload']} {r['pass']} {r['contender']}", SMALL_LIMIT, r["ratio_to_torch"],
                        r["median_us"] * 1e-6, base * 1e-6, "torch"))
    return out


def modules(repeats: int) -> list[dict[str, Any]]:
    """``xembed.torch.EmbeddingBag`` vs ``torch.nn.EmbeddingBag``: a training step (dense + SGD, sparse +
    SparseAdam) and inference, V=1e5 D=64, 256 bags of 20."""
    import torch

    import xembed.torch as xt

    print("\n== xembed.torch.EmbeddingBag vs torch.nn.EmbeddingBag (1 thread)", flush=True)
    _set_threads(1)
    rng = np.random.default_rng(0)
    V, D, B, L = 100_000, 64, 256, 20
    idx = torch.from_numpy(rng.integers(0, V, B * L))
    offs = torch.arange(B) * L

    def step_fn(cls: Any, sparse: bool) -> Any:
        torch.manual_seed(0)
        m = cls(V, D, mode="sum", sparse=sparse)
        opt = torch.optim.SparseAdam(m.parameters()) if sparse else torch.optim.SGD(m.parameters(), lr=0.1)

        def step() -> Any:
            opt.zero_grad()
            m(idx, offs).sum().backward()
            opt.step()

        return step

    def infer_fn(cls: Any) -> Any:
        m = cls(V, D, mode="sum")

        def infer() -> Any:
            with torch.no_grad():
                return m(idx, offs)

        return infer

    out = []
    for label, make in (("train dense+SGD", lambda c: step_fn(c, False)),
                        ("train sparse+SparseAdam", lambda c: step_fn(c, True)),
                        ("inference B=256", infer_fn)):
        ours, base = make(xt.EmbeddingBag), make(torch.nn.EmbeddingBag)
        t_ours, t_base = [], []
        for _ in range(repeats):
            t_base.append(small.time_us(base, 1))
            t_ours.append(small.time_us(ours, 1))
        o, b = float(np.median(t_ours)) * 1e-6, float(np.median(t_base)) * 1e-6
        out.append(_row(f"module {label}", MODULE_LIMITS[label], o / b, o, b, "torch.nn.EmbeddingBag"))
    return out


def quantized_tables(quick: bool, repeats: int, budget: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Quantized forward sum (``benchmarks/quantized.py``) at 1 and 2 threads: 8- and 4-bit vs torch's quantized
    ops, 8-bit vs xembed's float32 forward; and the table bytes per row against their budgets."""
    from . import quantized

    rows = quantized.run(quick, repeats, [1, 2], budget)
    print(f"\n== quantized tables: V={rows[0]['V']} D={rows[0]['D']} B={rows[0]['B']}", flush=True)
    ratios, sizes = [], []
    for r in rows:
        bits, t = r["bits"], r["threads"]
        if bits in quantized.VS_TORCH_LIMIT:
            ratios.append(_row(f"quantized {bits}-bit sum {t} thread(s) vs torch's op", quantized.VS_TORCH_LIMIT[bits],
                               r["vs_torch"], r["xembed_ms"] * 1e-3, r["torch_ms"] * 1e-3, "torch quantized op"))
        if bits in quantized.VS_FLOAT32_LIMIT:
            ratios.append(_row(f"quantized {bits}-bit sum {t} thread(s) vs xembed float32",
                               quantized.VS_FLOAT32_LIMIT[bits], r["vs_float32"], r["xembed_ms_vs_float32"] * 1e-3,
                               r["xembed_float32_ms"] * 1e-3, "xembed float32"))
        if t == 1 and r["bytes_per_row_limit"] is not None:
            rec = {"target": f"quantized {bits}-bit table bytes per row", "bytes_per_row": r["bytes_per_row"],
                   "limit": r["bytes_per_row_limit"], "met": bool(r["bytes_per_row"] <= r["bytes_per_row_limit"])}
            print(f"  {rec['target']:<58} {rec['bytes_per_row']:.0f} (limit {rec['limit']})  "
                  f"{'met' if rec['met'] else 'NOT MET'}", flush=True)
            sizes.append(rec)
    return ratios, sizes


def first_call() -> list[dict[str, Any]]:
    """``import xembed`` and the first ``embedding_bag`` call of a fresh process, kernels cached on disk."""
    print("\n== first-call latency (fresh processes, shared numba cache)", flush=True)
    results = suite.compile_latency()
    out = []
    for label, res in results.items():
        first = res["import_s"] + res["steps_s"]["embedding_bag sum"]
        every = res["import_s"] + sum(v for k, v in res["steps_s"].items() if not k.endswith("(2nd call)"))
        rec = {"target": f"first call, {label}: import + first embedding_bag", "limit_s": FIRST_CALL_LIMIT_S,
               "seconds": first, "import_and_every_first_call_s": every,
               "met": bool(first <= FIRST_CALL_LIMIT_S) if label.startswith("warm") else None}
        print(f"  {rec['target']:<58} {first:.3f} s (all five first calls: {every:.3f} s)", flush=True)
        out.append(rec)
    return out


def markdown(payload: dict[str, Any]) -> str:
    env = payload["env"]
    lines = ["# xembed targets", "",
             (f"{env.get('cpu', '?')}, {env.get('cpus', '?')} CPUs; torch {env.get('torch')}, numpy "
             f"{env.get('numpy')}, numba {env.get('numba')}; git {env.get('git', '?')}, {env.get('time_utc')}."),
             "", "| target | limit | ratio | xembed | baseline | met |", "|---|---:|---:|---:|---:|---|"]
    for r in payload["ratios"]:
        ns = f" ({r['ns_per_row']:.0f} ns/row)" if "ns_per_row" in r else ""
        bns = f" ({r['baseline_ns_per_row']:.0f} ns/row)" if "baseline_ns_per_row" in r else ""
        lines.append(f"| {r['target']} | {r['limit']} | {r['ratio']:.2f} | {_t(r['xembed_s'])}{ns} | "
                     f"{r['baseline']} {_t(r['baseline_s'])}{bns} | {'yes' if r['met'] else '**no**'} |")
    lines += ["", "| memory | peak extra | limit | met |", "|---|---:|---:|---|"]
    for r in payload["memory"]:
        lines.append(f"| {r['target']} | {r['peak_bytes'] / 2**20:.1f} MiB | {r['limit_bytes'] / 2**20:.1f} MiB | "
                     f"{'yes' if r['met'] else '**no**'} |")
    lines += ["", "| table memory | bytes per row | limit | met |", "|---|---:|---:|---|"]
    for r in payload.get("quantized_memory", []):
        lines.append(f"| {r['target']} | {r['bytes_per_row']:.0f} | {r['limit']} | {'yes' if r['met'] else '**no**'} |")
    lines += ["", "| first call | seconds | all five first calls | met |", "|---|---:|---:|---|"]
    for r in payload["first_call"]:
        met = "-" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(f"| {r['target']} | {r['seconds']:.3f} | {r['import_and_every_first_call_s']:.3f} | {met} |")
    return "\n".join(lines) + "\n"


def _t(s: float) -> str:
    return f"{s * 1e6:.1f} µs" if s < 1e-3 else f"{s * 1e3:.2f} ms"


def run(args: Any, default_out: str) -> int:
    quick = args.quick
    repeats = args.repeats or (5 if quick else 9)
    budget = args.budget if args.budget is not None else (0.5 if quick else 1.5)
    out_dir = Path(args.out or default_out)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = suite._env_info(args)
    print("xembed targets:", json.dumps(env), flush=True)
    t0 = time.perf_counter()
    sections = set(args.sections.split(",")) if args.sections else set(SECTIONS)
    ratios = []
    if "large" in sections:
        ratios += large(quick, repeats, budget)
    if "small" in sections:
        ratios += small_calls(repeats)
    if "modules" in sections:
        ratios += modules(repeats)
    if "numpy" in sections:
        ratios += pure_numpy(quick, repeats, budget)
    sizes: list[dict[str, Any]] = []
    if "quantized" in sections:
        quant_ratios, sizes = quantized_tables(quick, repeats, budget)
        ratios += quant_ratios
    payload = {"env": env, "ratios": ratios, "memory": memory(quick) if "memory" in sections else [],
               "quantized_memory": sizes, "first_call": first_call() if "first_call" in sections else [],
               "total_s": time.perf_counter() - t0}
    suffix = "_quick" if quick else ""
    (out_dir / f"targets{suffix}.json").write_text(json.dumps(payload, indent=1, default=str))
    md = markdown(payload)
    (out_dir / f"targets{suffix}.md").write_text(md)
    print("\n" + md + f"\ntotal {payload['total_s']:.0f} s; wrote {out_dir}/targets{suffix}.{{json,md}}")
    return 0
