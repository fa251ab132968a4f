"""xembed on dask.distributed against xembed on NumPy in one process.

    python benchmarks/dask_bench.py [--vocab 1000000 --dim 64 --bags 65536 --mean-len 32 --workers 2]

The table (fp32) is created on the workers in 8 row chunks and the batch (1-D ids + offsets) in 8 chunks, both
persisted there; the forward (``mode='sum'``) and the dense weight gradient are then computed on a LocalCluster
of worker processes (1 thread each).  The same batch and table run through xembed on NumPy in this process.

Reported: time and throughput (M lookups/s) of both, the task count of the forward and gradient graphs, and
per worker the peak RSS sampled every 5 ms during each computation (persisted on the workers), next to the
per-worker memory bound: the worker's baseline RSS before any data arrived (after a warm-up on a tiny table, so the
accelerator's per-process compiled kernels count as baseline), plus its share of the table and of the
batch (what it holds), plus its share of the result (the gradient is table-sized), plus a working set of a few
chunks (3 table chunks: a gradient step copies its accumulator; 2 batch chunks) — independent of the table's
size.
NumPy's peak is the RSS growth of this process over the whole table + batch.  The machines are shared and
noisy: compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import psutil
from distributed import Client, LocalCluster, wait

import xembed

MiB = 2.0**20
# working set of a worker beyond the data it holds: a gradient step copies its table-chunk accumulator (2),
# plus one chunk in transfer
WORKING_CHUNKS = 3


def _start_sampler(dask_worker: Any) -> None:
    """In a worker: sample this process's RSS every 5 ms into a maximum kept on the worker object."""
    import threading as th

    import psutil as ps

    state = {"peak": ps.Process().memory_info().rss, "stop": th.Event()}
    dask_worker._xembed_rss = state

    def loop() -> None:
        p = ps.Process()
        while not state["stop"].is_set():
            state["peak"] = max(state["peak"], p.memory_info().rss)
            time.sleep(0.005)

    th.Thread(target=loop, daemon=True).start()


def _stop_sampler(dask_worker: Any) -> int:
    state = dask_worker._xembed_rss
    state["stop"].set()
    return int(state["peak"])


def _rss() -> int:
    return int(psutil.Process().memory_info().rss)


def _worker_bytes(keys: list[Any], dask_worker: Any) -> int:
    return sum(int(getattr(dask_worker.data[k], "nbytes", 0)) for k in keys if k in dask_worker.data)


def _held_bytes(client: Any, arrays: list[Any]) -> dict[str, int]:
    """Bytes of the blocks of ``arrays`` that each worker holds."""
    from dask.core import flatten

    keys = [k for a in arrays for k in flatten(a.__dask_keys__())]
    return dict(client.run(_worker_bytes, keys))


def measure(client: Any, arr: Any) -> tuple[float, dict[str, int], dict[str, int]]:
    """Persist ``arr`` on the workers (the result stays distributed, as for data bigger than the client):
    wall time, per-worker peak RSS during the computation, per-worker bytes of the result held."""
    client.run(_start_sampler)
    t0 = time.perf_counter()
    res = client.persist(arr)
    wait(res)
    dt = time.perf_counter() - t0
    peaks = client.run(_stop_sampler)
    result_held = _held_bytes(client, [res])
    del res
    time.sleep(0.5)  # let the workers release it
    return dt, peaks, result_held


def _warm_numpy(dim: int) -> None:
    """In a worker: the forward and dense gradient on a tiny NumPy table (compiles or loads the accelerator's
    kernels for these dtypes in this process)."""
    rng = np.random.default_rng(0)
    w, ids = rng.standard_normal((64, dim)).astype(np.float32), rng.integers(0, 64, 256)
    offs = np.arange(0, 256, 16)
    _, pb = xembed.embedding_bag_vjp(ids, w, offs, mode="sum")
    pb(np.ones((offs.size, dim), np.float32))


def _warm_up(client: Any, dim: int) -> None:
    """Run the same graph on a tiny table and batch before the baseline is taken, and the same calls on NumPy in
    every worker: the one-off costs of a worker process (the numba kernels compiled or loaded from the disk
    cache, ~150-200 MiB of compiler memory kept by the process) then sit in the baseline.  They do not grow
    with the table, which is what the bound is about."""
    client.run(_warm_numpy, dim)
    t = da.random.default_rng(9).standard_normal((1024, dim), chunks=(128, dim), dtype=np.float32)
    i = da.random.default_rng(8).integers(0, 1024, 4096, chunks=512)
    o = da.from_array(np.arange(0, 4096, 16), chunks=32)
    out = xembed.embedding_bag(i, t, o, mode="sum")
    _, pb = xembed.embedding_bag_vjp(i, t, o, mode="sum")
    g = pb(da.ones(out.shape, chunks=out.chunks, dtype=np.float32))[0]
    client.compute([out, g], sync=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--bags", type=int, default=65536)
    ap.add_argument("--mean-len", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--json", type=Path, help="write the numbers here")
    args = ap.parse_args()

    src = str(Path(xembed.__file__).resolve().parents[1])
    env = {"PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p),
           "OMP_NUM_THREADS": "1"}
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                           env=env, memory_limit=0)
    client = Client(cluster)
    client.run(lambda: __import__("xembed._dask"))  # imports counted in the baseline
    _warm_up(client, args.dim)
    baseline = client.run(_rss)

    rng = np.random.default_rng(0)
    lengths = rng.integers(args.mean_len // 2, 3 * args.mean_len // 2 + 1, args.bags)
    offsets = np.r_[0, np.cumsum(lengths)[:-1]]
    n = int(lengths.sum())
    k = args.chunks
    table = da.random.default_rng(1).standard_normal((args.vocab, args.dim), chunks=(-(-args.vocab // k),
                                                                                     args.dim), dtype=np.float32)
    ids = da.random.default_rng(2).integers(0, args.vocab, n, chunks=-(-n // k))
    offs = da.from_array(offsets, chunks=-(-args.bags // k))
    table, ids, offs = client.persist([table, ids, offs])
    wait([table, ids, offs])
    held = _held_bytes(client, [table, ids, offs])

    out = xembed.embedding_bag(ids, table, offs, mode="sum")
    _, pullback = xembed.embedding_bag_vjp(ids, table, offs, mode="sum")
    grad = pullback(da.ones((args.bags, args.dim), chunks=(out.chunks[0], (args.dim,)), dtype=np.float32))[0]
    tasks_fwd = len(out.__dask_graph__())
    tasks_bwd = len(grad.__dask_graph__())

    measure(client, out)  # warm-up
    t_fwd, peak_fwd, res_fwd = measure(client, out)
    t_bwd, peak_bwd, res_bwd = measure(client, grad)

    # NumPy, one process, same data
    rss0 = _rss()
    w_np, ids_np = table.compute(), ids.compute()
    g_np = np.ones((args.bags, args.dim), dtype=np.float32)
    xembed.embedding_bag(ids_np, w_np, offsets, mode="sum")  # warm-up
    t0 = time.perf_counter()
    ref = xembed.embedding_bag(ids_np, w_np, offsets, mode="sum")
    t_np_fwd = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, pb = xembed.embedding_bag_vjp(ids_np, w_np, offsets, mode="sum")
    gref = pb(g_np)[0]
    t_np_bwd = time.perf_counter() - t0
    np_peak = _rss() - rss0
    ok_fwd = bool(np.allclose(out.compute(), ref, rtol=1e-4, atol=1e-4))
    ok_bwd = bool(np.allclose(grad.compute(), gref, rtol=1e-4, atol=1e-3))

    table_chunk = table.nbytes / table.numblocks[0]
    batch_chunk = (ids.nbytes + offs.nbytes) / ids.numblocks[0]
    print(f"table {args.vocab}x{args.dim} fp32 = {table.nbytes / MiB:.0f} MiB in {table.numblocks[0]} chunks of "
          f"{table_chunk / MiB:.0f} MiB; batch {args.bags} bags, {n} ids ({ids.nbytes / MiB:.0f} MiB) in "
          f"{ids.numblocks[0]} chunks; {args.workers} worker processes x 1 thread")
    print(f"tasks: forward {tasks_fwd}, dense gradient {tasks_bwd}")
    print(f"forward sum: dask {t_fwd * 1e3:.0f} ms ({n / t_fwd / 1e6:.1f} M lookups/s), NumPy 1 process "
          f"{t_np_fwd * 1e3:.0f} ms ({n / t_np_fwd / 1e6:.1f} M/s), ratio dask/NumPy {t_fwd / t_np_fwd:.2f}; "
          f"values match: {ok_fwd}")
    print(f"dense grad:  dask {t_bwd * 1e3:.0f} ms, NumPy {t_np_bwd * 1e3:.0f} ms, ratio {t_bwd / t_np_bwd:.2f}; "
          f"values match: {ok_bwd}")
    rows = []
    for w in sorted(baseline):
        base = baseline[w] + held.get(w, 0) + WORKING_CHUNKS * table_chunk + 2 * batch_chunk
        b_fwd, b_bwd = base + res_fwd.get(w, 0), base + res_bwd.get(w, 0)
        r = {"worker": w, "baseline_mib": baseline[w] / MiB, "held_mib": held.get(w, 0) / MiB,
             "peak_fwd_mib": peak_fwd[w] / MiB, "result_fwd_mib": res_fwd.get(w, 0) / MiB,
             "bound_fwd_mib": b_fwd / MiB, "peak_bwd_mib": peak_bwd[w] / MiB,
             "result_bwd_mib": res_bwd.get(w, 0) / MiB, "bound_bwd_mib": b_bwd / MiB,
             "within_bound": bool(peak_fwd[w] <= b_fwd and peak_bwd[w] <= b_bwd)}
        rows.append(r)
        print(f"worker {w}: baseline {r['baseline_mib']:.0f} MiB, holds {r['held_mib']:.0f} MiB of table+batch; "
              f"forward: peak RSS {r['peak_fwd_mib']:.0f} MiB (result share {r['result_fwd_mib']:.0f} MiB, bound "
              f"{r['bound_fwd_mib']:.0f}); gradient: peak {r['peak_bwd_mib']:.0f} MiB (result share "
              f"{r['result_bwd_mib']:.0f} MiB, bound {r['bound_bwd_mib']:.0f}): "
              f"{'within' if r['within_bound'] else 'EXCEEDED'}")
    print(f"bound = baseline + held + {WORKING_CHUNKS} table chunks + 2 batch chunks + the worker's share of the "
          "result")
    print(f"NumPy in one process: RSS growth {np_peak / MiB:.0f} MiB (whole table {w_np.nbytes / MiB:.0f} MiB + "
          f"batch + gradient)")
    if args.json:
        args.json.write_text(json.dumps({
            "args": vars(args) | {"json": None}, "tasks_forward": tasks_fwd, "tasks_gradient": tasks_bwd,
            "dask_fwd_s": t_fwd, "numpy_fwd_s": t_np_fwd, "dask_bwd_s": t_bwd, "numpy_bwd_s": t_np_bwd,
            "workers": rows, "numpy_rss_growth_mib": np_peak / MiB}, indent=2))
    client.close()
    cluster.close()


if __name__ == "__main__":
    main()
