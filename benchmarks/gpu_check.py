"""Self-check and micro-benchmark of the CuPy RawKernel primitives (src/xembed/_primitives/_cupy_kernels.py).

Run on a CUDA machine from the repository root:  ``python benchmarks/gpu_check.py [--quick]``

1. correctness against naive references on random small cases (empty bags, NaN, ties, signed zeros,
   duplicates, fp16 with fp32 accumulation, fp64, int32 indices, per-sample scales, valid masks);
2. determinism: repeated scatter_add_rows / gather_scatter_add results are bitwise identical;
3. timings at the standard sizes vs torch CUDA (F.embedding_bag sum / mean / max, dense backward) and vs a
   same-run device copy of the same number of bytes (rows read + output written).
Exit status 1 if any check fails.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load(name):
    try:
        return __import__(f"xembed._primitives.{name}", fromlist=[name])
    except ImportError:
        p = ROOT / "src" / "xembed" / "_primitives" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, p)
        m = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(m)
        return m


def ref_max_np(weight, idx, offsets, valid):
    """Naive torch-scan reference on the host."""
    B = len(offsets) - 1
    D = weight.shape[1]
    vals = np.zeros((B, D), weight.dtype)
    arg = np.full((B, D), -1, np.int64)
    for b in range(B):
        for i in range(offsets[b], offsets[b + 1]):
            if valid is not None and not valid[i]:
                continue
            x = weight[idx[i]]
            upd = (arg[b] < 0) | (x > vals[b])
            vals[b][upd] = x[upd]
            arg[b][upd] = i
    return vals, arg


def correctness(ck, cp, failures):
    import cupyx

    rng = np.random.default_rng(0)
    cases = [(1, 3, 1, 1), (7, 5, 3, 4), (40, 50, 8, 30), (300, 1000, 64, 12), (50, 200, 128, 40), (9, 30, 768, 70),
             (20, 40, 33, 5), (5, 20, 4, 300)]
    for (B, N, D, maxlen) in cases:
        for dtype in (np.float32, np.float64, np.float16):
            for idx_dtype in (np.int64, np.int32):
                lens = rng.integers(0, maxlen + 1, B)
                lens[rng.random(B) < 0.2] = 0
                offs = np.zeros(B + 1, np.int64)
                np.cumsum(lens, out=offs[1:])
                n = int(offs[-1])
                idx = rng.integers(0, N, n).astype(idx_dtype)
                W = np.round(rng.standard_normal((N, D)) * 2).astype(dtype)
                flat = W.reshape(-1)
                flat[rng.random(flat.size) < 0.03] = np.nan
                flat[rng.random(flat.size) < 0.03] = -0.0
                Wf = np.where(np.isnan(W), 1, W).astype(dtype)  # finite table for the sums
                scale = rng.standard_normal(n).astype(dtype)
                acc = np.float32 if dtype == np.float16 else dtype
                tag = f"B={B} N={N} D={D} {np.dtype(dtype).name} idx={np.dtype(idx_dtype).name}"
                # sum (with and without scale) vs a naive CuPy take + scatter_add in float64
                for sc in (None, scale):
                    got = ck.gather_segment_sum(cp.asarray(Wf), cp.asarray(idx), cp.asarray(offs),
                                                None if sc is None else cp.asarray(sc), acc)
                    rows = cp.asarray(Wf).astype(cp.float64)[cp.asarray(idx.astype(np.int64))]
                    if sc is not None:
                        rows *= cp.asarray(sc).astype(cp.float64)[:, None]
                    want = cp.zeros((B, D), cp.float64)
                    cupyx.scatter_add(want, cp.asarray(np.repeat(np.arange(B), lens)), rows)
                    tol = 1e-10 if dtype == np.float64 else 1e-4
                    err = float(cp.abs(got.astype(cp.float64) - want).max()) if B * D else 0.0
                    scl = max(1.0, float(cp.abs(want).max()) if B * D else 1.0)
                    bad = got.dtype != np.dtype(acc) or got.shape != (B, D)
                    if bad or err > tol * scl * (10 if sc is not None else 1):
                        failures.append(f"sum {tag} scale={sc is not None}: err {err:.3g} dtype {got.dtype}")
                # max with NaN / ties / signed zeros / valid mask vs the host scan
                for valid in (None, rng.random(n) < 0.7):
                    v, a = ck.gather_segment_max(cp.asarray(W), cp.asarray(idx), cp.asarray(offs),
                                                 None if valid is None else cp.asarray(valid))
                    rv, ra = ref_max_np(W, idx, offs, valid)
                    if not (np.array_equal(a.get(), ra) and np.array_equal(v.get(), rv, equal_nan=True)
                            and np.array_equal(np.signbit(v.get()), np.signbit(rv))):
                        failures.append(f"max {tag} valid={valid is not None}")
        # scatter_add_rows and gather_scatter_add vs np.add.at in float64
        for dtype in (np.float32, np.float64, np.float16):
            n = 3 * N
            idx = rng.integers(0, N, n)
            rows = rng.standard_normal((n, D)).astype(dtype)
            want = np.zeros((N, D))
            np.add.at(want, idx, rows.astype(np.float64))
            got = ck.scatter_add_rows(cp.asarray(idx), cp.asarray(rows), N).get()
            tol = 1e-10 if dtype == np.float64 else (2e-2 if dtype == np.float16 else 1e-4)
            if got.dtype != dtype or np.abs(got - want).max() > tol * max(1, np.abs(want).max()):
                failures.append(f"scatter_add_rows N={N} D={D} {np.dtype(dtype).name}")
            src = rng.standard_normal((B + 1, D)).astype(dtype)
            si = rng.integers(0, B + 1, n)
            sc = rng.standard_normal(n).astype(dtype)
            want = np.zeros((N, D))
            np.add.at(want, idx, src.astype(np.float64)[si] * sc.astype(np.float64)[:, None])
            got = ck.gather_scatter_add(cp.asarray(src), cp.asarray(si), cp.asarray(idx), cp.asarray(sc), N).get()
            if np.abs(got - want).max() > 10 * tol * max(1, np.abs(want).max()):
                failures.append(f"gather_scatter_add N={N} D={D} {np.dtype(dtype).name}")
    # determinism
    idx = cp.asarray(rng.integers(0, 1000, 200000))
    rows = cp.asarray(rng.standard_normal((200000, 64)).astype(np.float32))
    a = ck.scatter_add_rows(idx, rows, 1000)
    b = ck.scatter_add_rows(idx, rows, 1000)
    if not bool((a.view(cp.uint32) == b.view(cp.uint32)).all()):
        failures.append("scatter_add_rows not bitwise deterministic")


def _time(fn, cp, reps):
    fn()
    cp.cuda.Device().synchronize()
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    ts = []
    for _ in range(reps):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        ts.append(cp.cuda.get_elapsed_time(start, stop) * 1e-3)
    return float(np.median(ts))


def bench(ck, cp, quick):
    import torch
    from torch.nn import functional as tfn

    rng = np.random.default_rng(0)
    reps = 10 if quick else 30
    rows_out = []
    for name, V, D, B, L in [("dlrm", 10**6, 128, 4096, 20), ("large_batch", 10**6, 64, 65536, 32),
                             ("large_batch_D128", 10**6, 128, 65536, 32)]:
        rows_out += _bench_workload(ck, cp, torch, tfn, rng, reps, name, (V, D, B // 4 if quick else B, L))
        # the workload's arrays died with _bench_workload's frame: hand their memory back before the next one
        cp.get_default_memory_pool().free_all_blocks()
        torch.cuda.empty_cache()
    return rows_out


def _bench_workload(ck, cp, torch, tfn, rng, reps, name, sizes):
    V, D, B, L = sizes
    lens = rng.integers(L // 2, 3 * L // 2 + 1, B)
    offs = np.zeros(B + 1, np.int64)
    np.cumsum(lens, out=offs[1:])
    n = int(offs[-1])
    W = cp.asarray(rng.standard_normal((V, D), dtype=np.float32))
    idx = cp.asarray(rng.integers(0, V, n))
    offs_d = cp.asarray(offs)
    Wt = torch.as_tensor(W, device="cuda")
    it = torch.as_tensor(idx, device="cuda")
    ot = torch.as_tensor(offs_d[:-1], device="cuda")
    traffic = (n + B) * D * 4
    src = cp.ones(traffic // 8, cp.float32)
    dst = cp.empty_like(src)

    def copy():
        dst[...] = src

    t_copy = _time(copy, cp, reps)
    seg = cp.asarray(np.repeat(np.arange(B), lens))
    g = cp.full((B, D), 0.5, cp.float32)
    Wl = Wt.detach().requires_grad_(True)
    out_t = tfn.embedding_bag(it, Wl, ot, mode="sum")
    gt = torch.as_tensor(g, device="cuda")
    entries = {
        "fwd_sum": (lambda: tfn.embedding_bag(it, Wt, ot, mode="sum"),
                    lambda: ck.gather_segment_sum(W, idx, offs_d, None, cp.float32)),
        "fwd_mean": (lambda: tfn.embedding_bag(it, Wt, ot, mode="mean"),
                     lambda: ck.gather_segment_sum(W, idx, offs_d, None, cp.float32)
                     / cp.maximum(offs_d[1:] - offs_d[:-1], 1)[:, None].astype(cp.float32)),
        "fwd_max": (lambda: tfn.embedding_bag(it, Wt, ot, mode="max"),
                    lambda: ck.gather_segment_max(W, idx, offs_d)),
        "bwd_dense": (lambda: torch.autograd.grad(out_t, Wl, gt, retain_graph=True),
                      lambda: ck.gather_scatter_add(g, seg, idx, None, V)),
    }
    print(f"\n{name}: V={V} D={D} B={B} n={n}; copy of {traffic / 2**20:.1f} MiB: {t_copy * 1e3:.3f} ms "
          f"({traffic / t_copy / 1e12:.2f} TB/s)")
    rows_out = []
    for p, (ft, fx) in entries.items():
        tt = _time(ft, cp, reps)
        tx = _time(fx, cp, reps)
        frac = f"{t_copy / tx * 100:5.1f}% of copy" if p.startswith("fwd") else ""
        print(f"  {p:<10} torch {tt * 1e3:8.3f} ms  cupy-kernel {tx * 1e3:8.3f} ms  ratio {tx / tt:5.2f}  "
              f"{traffic / tx / 1e12 if p.startswith('fwd') else 0:.2f} TB/s {frac}")
        rows_out.append({"workload": name, "pass_": p, "torch_ms": tt * 1e3, "kernel_ms": tx * 1e3,
                         "ratio": tx / tt, "copy_ms": t_copy * 1e3})
    # determinism of the dense backward
    a = ck.gather_scatter_add(g, seg, idx, None, V)
    b = ck.gather_scatter_add(g, seg, idx, None, V)
    print("  bwd_dense bitwise deterministic:", bool((a.view(cp.uint32) == b.view(cp.uint32)).all()))
    return rows_out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-bench", action="store_true")
    args = ap.parse_args(argv)
    import cupy as cp

    ck = _load("_cupy_kernels")
    failures: list[str] = []
    correctness(ck, cp, failures)
    print("correctness:", "OK" if not failures else f"{len(failures)} FAILURES")
    for f in failures[:50]:
        print("  FAIL", f)
    if not args.no_bench:
        bench(ck, cp, args.quick)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    os.environ.setdefault("CUPY_ACCELERATORS", "")
    sys.exit(main())
