"""The benchmark loop: timing, same-run copy reference, result checks, memory, reports."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import platform
import subprocess
import time
import traceback
import tracemalloc
from pathlib import Path

import numpy as np

from . import contenders, report, workloads


def _median_time(fn, repeats, budget, min_repeats=3):
    """Median / min seconds of ``fn()`` over up to ``repeats`` runs after one warm-up (run budget-capped)."""
    t0 = time.perf_counter()
    result = fn()  # warm-up, and the result that gets checked
    warm = time.perf_counter() - t0
    if warm > 4 * budget:  # a very slow contender: its single (warm-up) run is the measurement
        return warm, warm, 1, result
    times = []
    start = time.perf_counter()
    for i in range(repeats):
        if i >= min_repeats and time.perf_counter() - start > budget:
            break
        if i >= 1 and warm > budget:  # a very slow contender: a single timed run
            break
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), float(np.min(times)), len(times), result


def _paired_time(fn, base_fn, repeats, budget, min_repeats=3):
    """Like :func:`_median_time`, alternating each call of ``fn`` with one of ``base_fn`` (torch native).

    Returns ``(median, min, k, result, base_median)``: on a shared machine the load drifts during a run, and a
    ratio of medians taken call by call alternately is far steadier than one of separately timed blocks.
    """
    t0 = time.perf_counter()
    result = fn()
    warm = time.perf_counter() - t0
    base_fn()
    times, base = [], []
    start = time.perf_counter()
    for i in range(max(repeats, 1)):
        if i >= min_repeats and time.perf_counter() - start > 2 * budget:
            break
        if i >= 1 and warm > 4 * budget:  # a very slow contender: one timed pair
            break
        t = time.perf_counter()
        base_fn()
        base.append(time.perf_counter() - t)
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), float(np.min(times)), len(times), result, float(np.median(base))


def _copy_time(nbytes, device, repeats):
    """Seconds to copy nbytes/2 bytes (so nbytes are read + written), same run, same device."""
    n = max(1, nbytes // 8)  # float32 elements in each of src / dst  (n*4 read + n*4 written = nbytes)
    if device == "cpu":
        src = np.ones(n, np.float32)
        dst = np.empty_like(src)

        def fn():
            np.copyto(dst, src)
    else:
        try:
            import cupy as cp

            src = cp.ones(n, cp.float32)
            dst = cp.empty_like(src)
            sync = cp.cuda.Device().synchronize

            def fn():
                dst[...] = src
                sync()
        except ImportError:  # no CuPy: a torch CUDA copy
            import torch

            src = torch.ones(n, dtype=torch.float32, device="cuda")
            dst = torch.empty_like(src)

            def fn():
                dst.copy_(src)
                torch.cuda.synchronize()
    med, _mn, _k, _ = _median_time(fn, max(repeats, 5), 1.0)
    return med


def _check(result, ref, pass_, w):
    a = contenders.to_numpy(result)
    if a is None or ref is None:
        return None
    if a.shape != ref.shape:
        return f"shape {a.shape} != {ref.shape}"
    if pass_.startswith("bwd"):
        # compare the touched rows and a few others (the dense gradients are V x D)
        rows = np.unique(np.concatenate([w.input.reshape(-1)[:2000], np.arange(0, w.V, max(1, w.V // 500))]))
        a, ref = a[rows], ref[rows]
    scale = max(1.0, float(np.abs(ref).max(initial=0)))
    err = float(np.abs(a.astype(np.float64) - ref.astype(np.float64)).max(initial=0)) / scale
    return "ok" if err < 1e-4 else f"max rel err {err:.2e}"


def _env_info(args):
    info = {"python": platform.python_version(), "machine": platform.machine(), "numpy": np.__version__,
            "threads": args.threads, "quick": bool(args.quick)}
    try:
        with Path("/proc/cpuinfo").open() as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        info["cpus"] = os.cpu_count()
    except OSError:
        pass
    for mod in ("torch", "scipy", "cupy", "numba"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            info[mod] = None
    try:
        import xembed

        info["xembed"] = getattr(xembed, "__version__", "?")
        from xembed import _primitives as prim

        info["xembed_primitives"] = prim.mode() if hasattr(prim, "mode") else "?"
    except Exception as e:  # noqa: BLE001
        info["xembed"] = f"import failed: {e}"
    with contextlib.suppress(Exception):
        info["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                     cwd=Path(__file__).parent, timeout=5, check=False).stdout.strip()
    info["time_utc"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    return info


def peak_extra_bytes(fn):
    """Peak bytes (tracemalloc) one call of ``fn`` allocates beyond what was allocated before it; a first
    call warms caches and lazy imports outside the measurement."""
    fn()
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    r = fn()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    del r
    return int(peak)


def memory_check(quick):
    """Peak extra memory (tracemalloc) of one NumPy forward on the large-batch workload."""
    import xembed

    w = workloads.make("large_batch", quick=quick)
    out_bytes = w.num_bags * w.D * w.weight.dtype.itemsize
    res = {"workload": w.note, "output_bytes": out_bytes, "target_bytes": 2 * out_bytes + (32 << 20)}
    gc.collect()
    from xembed import _primitives as prim

    def in_mode(mode, bag_mode):
        def fn():
            with prim.use(mode):
                return xembed.embedding_bag(w.input, w.weight, w.offsets, mode=bag_mode)
        return fn

    numba_rows = [(f"xembed-numba {m}", in_mode("numba", m)) for m in ("sum", "mean", "max")
                  if prim.numba_available()]
    for label, fn in [
        ("xembed-numpy sum", in_mode("native", "sum")),
        ("xembed-numpy mean", in_mode("native", "mean")),
        ("xembed-numpy max", in_mode("native", "max")),
        *numba_rows,
        ("prims-numpy sum", contenders.build_prims(w, "fwd_sum", contenders.Ctx(w))),
        ("prims-numpy max", contenders.build_prims(w, "fwd_max", contenders.Ctx(w))),
        ("numpy take+reduceat", contenders.build_numpy(w, "fwd_sum", contenders.Ctx(w))),
    ]:
        try:
            peak = peak_extra_bytes(fn)
            res[label] = {"peak_extra_bytes": int(peak), "ratio_to_output": peak / out_bytes,
                          "meets_target": bool(peak <= res["target_bytes"])}
        except Exception as e:  # noqa: BLE001
            if tracemalloc.is_tracing():
                tracemalloc.stop()
            res[label] = {"error": f"{type(e).__name__}: {e}"}
    return res


def run(args, default_out):
    import torch

    torch.set_num_threads(args.threads)
    try:
        import numba

        numba.set_num_threads(args.threads)
    except ImportError:
        pass
    out_dir = args.out or default_out
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    quick = args.quick
    repeats = args.repeats or (3 if quick else 7)
    budget = args.budget if args.budget is not None else (0.5 if quick else 3.0)
    names = args.workloads.split(",") if args.workloads else [*workloads.ALL, "quantized"]
    with_quantized = "quantized" in names and not args.gpu_only
    names = [n for n in names if n != "quantized"]
    pass_filter = set(args.passes.split(",")) if args.passes else None
    groups = []
    if not args.gpu_only:
        groups.append("cpu")
    if args.gpu or args.gpu_only:
        groups.append("gpu")
    env = _env_info(args)
    print("xembed benchmarks:", json.dumps(env))
    records = []
    copies = {}
    t_all = time.perf_counter()
    for name in names:
        t_w = time.perf_counter()
        w = workloads.make(name, quick=quick)
        print(f"\n== {name}: {w.note}", flush=True)
        ctx = contenders.Ctx(w)
        for group in groups:
            conts = contenders.CPU_CONTENDERS if group == "cpu" else contenders.GPU_CONTENDERS
            if args.contenders:
                keep = set(args.contenders.split(","))
                conts = [c for c in conts if c in keep or c == contenders.BASELINE[group]]
            try:
                copy_t = _copy_time(w.traffic_bytes(), group, repeats)
            except Exception as e:  # noqa: BLE001 - e.g. --gpu on a machine without CUDA
                print(f"  [{group}] skipped: no usable device ({type(e).__name__}: {e})", flush=True)
                continue
            copies[(name, group)] = copy_t
            print(f"  [{group}] copy of {w.traffic_bytes() / 2**20:.1f} MiB (read+write): {copy_t * 1e3:.3f} ms "
                  f"= {w.traffic_bytes() / copy_t / 1e9:.1f} GB/s", flush=True)
            for pass_ in contenders.passes_for(w):
                if pass_filter and pass_ not in pass_filter:
                    continue
                base_t = None
                base_fn = None
                ref = None
                for cont in conts:
                    rec = {"workload": name, "group": group, "pass": pass_, "contender": cont,
                           "traffic_bytes": w.traffic_bytes(), "copy_s": copy_t}
                    try:
                        fn = contenders.build(cont, w, pass_, ctx)
                        if fn is None:
                            continue
                        if cont == contenders.BASELINE[group] or base_fn is None:
                            med, mn, k, result = _median_time(fn, repeats, budget)
                            paired = None
                        else:
                            med, mn, k, result, paired = _paired_time(fn, base_fn, repeats, budget)
                        rec.update(median_s=med, min_s=mn, repeats=k)
                        if paired is not None:
                            rec["torch_paired_s"] = paired
                        if cont == contenders.BASELINE[group]:
                            base_t = med
                            base_fn = fn
                            ref = None if args.no_check else contenders.to_numpy(result)
                        elif not args.no_check:
                            rec["check"] = _check(result, ref, pass_, w)
                        del result
                        if fn is not base_fn:
                            del fn
                    except ImportError as e:
                        rec["error"] = f"unavailable: {e}"
                    except Exception as e:  # noqa: BLE001
                        rec["error"] = f"{type(e).__name__}: {e}"
                        if os.environ.get("XEMBED_BENCH_DEBUG"):
                            traceback.print_exc()
                    if "median_s" in rec:
                        ref_t = rec.get("torch_paired_s", base_t)  # the torch calls alternated with this one
                        rec["ratio_to_torch"] = rec["median_s"] / ref_t if ref_t else None
                        if pass_.startswith("fwd"):
                            rec["GBps"] = w.traffic_bytes() / rec["median_s"] / 1e9
                            rec["copy_fraction"] = copy_t / rec["median_s"]
                    records.append(rec)
                    print("  " + report.line(rec), flush=True)
                ref = None
                base_fn = None
                gc.collect()
            if group == "gpu":
                ctx.drop("cupy")
        del ctx, w
        gc.collect()
        print(f"  ({time.perf_counter() - t_w:.1f} s)")
    quantized_rows = None
    if with_quantized:
        quantized_rows = run_quantized(quick, repeats, budget, args.threads)
    memory = None
    if not args.no_memory and not args.gpu_only:
        print("\n== memory: peak extra bytes of one NumPy forward (tracemalloc), large_batch workload", flush=True)
        memory = memory_check(quick)
        print(report.memory_text(memory))
    total = time.perf_counter() - t_all
    print(f"\ntotal {total:.1f} s")
    payload = {"env": env, "records": records, "quantized": quantized_rows, "memory": memory, "total_s": total}
    suffix = "_quick" if quick else ""
    jpath = str(Path(out_dir) / f"results{suffix}.json")
    with Path(jpath).open("w") as f:
        json.dump(payload, f, indent=1, default=str)
    md = report.markdown(payload)
    mpath = str(Path(out_dir) / f"results{suffix}.md")
    with Path(mpath).open("w") as f:
        f.write(md)
    ppath = report.plot(payload, str(Path(out_dir) / f"results{suffix}.png"))
    skipped = "plot skipped (matplotlib not installed, or nothing to plot)"
    print(f"\nwrote {jpath}\nwrote {mpath}\n" + (f"wrote {ppath}" if ppath else skipped))
    return 0



def run_quantized(quick, repeats, budget, threads):
    """The quantized-table rows (``quantized.py``) at ``threads`` threads, printed as a table."""
    from . import quantized

    print(f"\n== quantized: {'V=1e5 D=64 B=1024' if quick else 'V=1e6 D=128 B=4096'}, L in [10, 30], forward sum, "
          "xembed on a QuantizedTable vs torch's quantized ops on the same bytes", flush=True)
    rows = quantized.run(quick, repeats, [threads], budget)
    print(quantized.table(rows), flush=True)
    return rows


def run_small(args, default_out):
    """The small-call table (``benchmarks/small.py``): per-call overhead against torch native, same run."""
    import pathlib

    import torch

    from . import small

    torch.set_num_threads(args.threads)
    out_dir = pathlib.Path(args.out or default_out)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = _env_info(args)
    print("xembed small-call benchmark:", json.dumps(env))
    records = small.run(repeats=args.repeats or (3 if args.quick else 7),
                        contenders=args.contenders.split(",") if args.contenders else None)
    (out_dir / "small.json").write_text(json.dumps({"env": env, "records": records}, indent=1, default=str))
    (out_dir / "small.md").write_text(small.markdown(records, env))
    plotted = small.plot(records, str(out_dir / "small.png"))
    print(f"\nwrote {out_dir}/small.json, small.md" + (", small.png" if plotted else ""))
    return 0


_FIRST_CALLS = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
import xembed
from xembed import _primitives as prim
t_import = time.perf_counter() - t0
rng = np.random.default_rng(0)
W = rng.standard_normal((1000, 16), dtype=np.float32)
idx = rng.integers(0, 1000, 64)
offs = np.arange(0, 64, 8)
psw = np.ones(64, np.float32)
steps = {}
with prim.use("numba"):
    for name, fn in [
        ("embedding_bag sum", lambda: xembed.embedding_bag(idx, W, offs, mode="sum")),
        ("embedding_bag mean", lambda: xembed.embedding_bag(idx, W, offs, mode="mean")),
        ("embedding_bag max", lambda: xembed.embedding_bag(idx, W, offs, mode="max")),
        ("embedding_bag psw", lambda: xembed.embedding_bag(idx, W, offs, mode="sum", per_sample_weights=psw)),
        ("vjp + dense backward", lambda: xembed.embedding_bag_vjp(idx, W, offs, mode="sum")[1](
            np.ones((8, 16), np.float32))),
    ]:
        t = time.perf_counter()
        fn()
        steps[name] = time.perf_counter() - t
        t = time.perf_counter()
        fn()
        steps[name + " (2nd call)"] = time.perf_counter() - t
print(json.dumps({"import_s": t_import, "steps_s": steps}))
"""


def compile_latency():
    """First-call latency of the numba path in fresh processes: empty on-disk cache, then warm cache.

    The first step also pays ``import numba`` and LLVM's start-up (the kernels themselves: see the
    per-step rows); the cache lives in ``NUMBA_CACHE_DIR`` (default: ``__pycache__`` next to the sources).
    The processes import the xembed this process imported.
    """
    import sys
    import tempfile

    import xembed

    env = dict(os.environ)
    src = str(Path(xembed.__file__).resolve().parents[1])
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    results = {}
    with tempfile.TemporaryDirectory() as cache:
        env["NUMBA_CACHE_DIR"] = cache
        for label in ("cold cache (compiles)", "warm cache (loads)"):
            p = subprocess.run([sys.executable, "-c", _FIRST_CALLS], env=env, capture_output=True, text=True,
                               check=True)
            results[label] = json.loads(p.stdout.strip().splitlines()[-1])
    return results


def run_compile_latency(args, default_out):
    """``--compile-latency``: :func:`compile_latency` as a table."""
    import pathlib

    out_dir = pathlib.Path(args.out or default_out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = compile_latency()
    steps = ["import xembed", *next(iter(results.values()))["steps_s"]]
    lines = ["# xembed numba first-call latency", "",
             ("Fresh Python process each; `NUMBA_CACHE_DIR` an empty temporary directory for the first, the "
              "same directory (now filled) for the second.  Seconds; the first call also imports numba."), "",
             "| step | " + " | ".join(results) + " |", "|---|" + "---:|" * len(results)]
    for k in steps:
        vals = [r["import_s"] if k == "import xembed" else r["steps_s"][k] for r in results.values()]
        lines.append(f"| {k} | " + " | ".join(f"{v:.4f}" for v in vals) + " |")
    md = "\n".join(lines) + "\n"
    print(md)
    (out_dir / "compile_latency.md").write_text(md)
    (out_dir / "compile_latency.json").write_text(json.dumps(results, indent=1))
    return 0
