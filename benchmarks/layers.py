"""numba's threading layers on the parallel kernels: ``python -m benchmarks --threading-layers [--quick]``.

One fresh process per layer and round (numba picks its layer once per process), rounds alternating the
layers so that a drifting machine load hits each alike; each process times the DLRM forward (sum) and the
dense backward through xembed at 2 threads, with torch set to 1 thread, and reports whether torch's count
survived.  Layers numba cannot load here (``tbb`` without the ``tbb`` package) are reported as such.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

_CHILD = r"""
import json, sys, time
import numpy as np
import torch
torch.set_num_threads(1)
torch.get_num_threads()
import numba
import xembed
from xembed import _primitives as prim
sys.path.insert(0, sys.argv[2])
from benchmarks import workloads

w = workloads.make("dlrm", quick=sys.argv[1] == "1")
offs = w.offsets
g = np.full((w.num_bags, w.D), 0.5, np.float32)

def fwd():
    return xembed.embedding_bag(w.input, w.weight, offs, mode="sum")

def bwd():
    return xembed.embedding_bag_vjp(w.input, w.weight, offs, mode="sum")[1](g)

res = {}
with prim.use("numba"):
    for name, fn in (("fwd_sum", fwd), ("bwd_dense", bwd)):
        fn()
        ts = []
        for _ in range(5):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        res[name] = sorted(ts)[len(ts) // 2]
res["layer"] = numba.threading_layer()
res["torch_threads_after"] = torch.get_num_threads()
print(json.dumps(res))
"""

LAYERS = ("workqueue", "omp", "tbb")


def run(args: Any, default_out: str) -> int:
    root = str(Path(__file__).resolve().parents[1])
    out_dir = Path(args.out or default_out)
    out_dir.mkdir(parents=True, exist_ok=True)
    rounds = args.repeats or 3
    times: dict[str, list[dict[str, Any]]] = {layer: [] for layer in LAYERS}
    errors: dict[str, str] = {}
    for _ in range(rounds):
        for layer in LAYERS:
            if layer in errors:
                continue
            env = dict(os.environ, NUMBA_THREADING_LAYER=layer, NUMBA_NUM_THREADS="2")
            p = subprocess.run([sys.executable, "-c", _CHILD, "1" if args.quick else "0", root], env=env,
                               capture_output=True, text=True, check=False)
            if p.returncode != 0:
                errors[layer] = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}"
                print(f"  {layer}: unavailable ({errors[layer]})", flush=True)
                continue
            rec = json.loads(p.stdout.strip().splitlines()[-1])
            times[layer].append(rec)
            print(f"  {layer}: fwd_sum {rec['fwd_sum'] * 1e3:.2f} ms, bwd_dense {rec['bwd_dense'] * 1e3:.2f} ms, "
                  f"torch threads after {rec['torch_threads_after']}", flush=True)
    lines = ["# numba threading layers, xembed at 2 threads (torch set to 1)", "",
             "| layer | fwd_sum ms | bwd_dense ms | torch threads after |", "|---|---:|---:|---|"]
    for layer, recs in times.items():
        if recs:
            f = float(np.median([r["fwd_sum"] for r in recs])) * 1e3
            b = float(np.median([r["bwd_dense"] for r in recs])) * 1e3
            after = sorted({r["torch_threads_after"] for r in recs})
            lines.append(f"| {layer} | {f:.2f} | {b:.2f} | {after} |")
        else:
            lines.append(f"| {layer} | - | - | unavailable: {errors.get(layer, '?')} |")
    md = "\n".join(lines) + "\n"
    print("\n" + md)
    (out_dir / "threading_layers.md").write_text(md)
    (out_dir / "threading_layers.json").write_text(json.dumps({"times": times, "errors": errors}, indent=1))
    return 0
