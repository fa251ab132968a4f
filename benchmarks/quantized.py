"""Quantized tables: xembed's fused kernels against torch's quantized ops, in the same run.

DLRM-like workload (V=1e6 rows, D=128, B=4096 bags of 10..30 uniform ids; ``--quick``: V=1e5, D=64,
B=1024), forward ``sum``.  For each width (8, 4, 2 bits) and thread count: torch's
``quantized::embedding_bag_{byte,4bit,2bit}_rowwise_offsets`` on the packed tensor, and
``xembed.embedding_bag`` on a :class:`xembed.QuantizedTable` of the same bytes (NumPy arrays, the fused numba
kernels); plus xembed's own float32 forward on the float table.  Each ratio divides medians of calls
alternated one by one with their baseline's; ratios < 1 mean xembed is faster.
Targets (docs/quantized.md): 8-bit and 4-bit <= 1.0x torch's op; 8-bit <= 0.6x xembed's float32 forward;
table bytes per row <= D + 8 (8-bit), <= D/2 + 4 (4-bit).

    python -m benchmarks.quantized [--quick] [--repeats N] [--threads 1,2] [--json PATH] [--cpu-time]

``python -m benchmarks`` runs the same rows after its other workloads (``--workloads quantized`` alone), and
``python -m benchmarks --targets`` checks the targets (section ``quantized``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from benchmarks.extensions import workload

WIDTHS = (8, 4, 2)
VS_TORCH_LIMIT = {8: 1.0, 4: 1.0}  # xembed / torch's quantized op, per width
VS_FLOAT32_LIMIT = {8: 0.6}  # xembed quantized / xembed float32


def bytes_per_row_limit(bits: int, dim: int) -> int | None:
    """The table-memory target per row (None: no target for that width)."""
    return {8: dim + 8, 4: dim // 2 + 4}.get(bits)


def _torch_ops() -> tuple[dict[int, Any], dict[int, Any]]:
    import torch

    q = torch.ops.quantized
    return ({8: q.embedding_bag_byte_prepack, 4: q.embedding_bag_4bit_prepack, 2: q.embedding_bag_2bit_prepack},
            {8: q.embedding_bag_byte_rowwise_offsets, 4: q.embedding_bag_4bit_rowwise_offsets,
             2: q.embedding_bag_2bit_rowwise_offsets})


def calls(quick: bool) -> dict[str, Any]:
    """The workload and the calls timed: ``torch[bits]``, ``xembed[bits]``, ``float32``, and the tables."""
    import torch

    import xembed

    w = workload(quick)
    prepack, bag_op = _torch_ops()
    t_idx, t_offs = torch.from_numpy(w["idx"]), torch.from_numpy(w["offsets"])
    packed = {bits: prepack[bits](torch.from_numpy(w["weight"])) for bits in WIDTHS}
    tables = {bits: xembed.QuantizedTable.from_packed(packed[bits].numpy(), bits) for bits in WIDTHS}

    def torch_call(bits: int) -> Any:
        return lambda: bag_op[bits](packed[bits], t_idx, t_offs, False, 0, False, None, None, False)

    def xembed_call(bits: int) -> Any:
        return lambda: xembed.embedding_bag(w["idx"], tables[bits], w["offsets"], mode="sum")

    return {"shape": (*w["weight"].shape, w["offsets"].shape[0], w["idx"].shape[0]), "tables": tables,
            "torch": {bits: torch_call(bits) for bits in WIDTHS},
            "xembed": {bits: xembed_call(bits) for bits in WIDTHS},
            "float32": lambda: xembed.embedding_bag(w["idx"], w["weight"], w["offsets"], mode="sum")}


def run(quick: bool, repeats: int, threads: list[int], budget: float = 2.0,
        cpu_time: bool = False) -> list[dict[str, Any]]:
    """One row per thread count and width: times (ms), same-run ratios, bytes per row.

    ``cpu_time``: time the calling thread's CPU time instead of the wall clock (one thread only: every call then
    runs on the calling thread), which other processes sharing the cores do not inflate.
    """
    import numba
    import torch

    from benchmarks.targets import _paired

    if cpu_time and threads != [1]:
        msg = f"CPU time measures one thread only, got threads {threads}"
        raise ValueError(msg)
    clock = time.thread_time if cpu_time else time.perf_counter
    c = calls(quick)
    v, d, b, n = c["shape"]
    rows = []
    for t in threads:
        torch.set_num_threads(t)
        numba.set_num_threads(t)
        for bits in WIDTHS:
            ours, theirs = _paired(c["xembed"][bits], c["torch"][bits], repeats, budget, clock)
            ours_f, float_s = _paired(c["xembed"][bits], c["float32"], repeats, budget, clock)
            rows.append({
                "threads": t, "bits": bits, "V": v, "D": d, "B": b, "n": n,
                "torch_ms": 1e3 * theirs, "xembed_ms": 1e3 * ours, "xembed_float32_ms": 1e3 * float_s,
                "xembed_ms_vs_float32": 1e3 * ours_f,  # the xembed calls alternated with the float32 ones
                "vs_torch": ours / theirs, "vs_float32": ours_f / float_s,
                "bytes_per_row": c["tables"][bits].nbytes / v, "bytes_per_row_limit": bytes_per_row_limit(bits, d),
            })
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    header = ("| threads | bits | torch op ms | xembed ms | xembed / torch | xembed float32 ms | / float32 "
              "| bytes/row (target) |")
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        limit = r["bytes_per_row_limit"]
        lines.append(f"| {r['threads']} | {r['bits']} | {r['torch_ms']:.2f} | {r['xembed_ms']:.2f} | "
                     f"{r['vs_torch']:.2f} | {r['xembed_float32_ms']:.2f} | {r['vs_float32']:.2f} | "
                     f"{r['bytes_per_row']:.0f} (<= {'-' if limit is None else limit}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="V=1e5, D=64, B=1024")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--json", help="write the rows as JSON to this path")
    p.add_argument("--cpu-time", action="store_true",
                   help="time the calling thread's CPU time (with --threads 1: robust to other load on the machine)")
    args = p.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    os.environ.setdefault("NUMBA_NUM_THREADS", str(max(threads)))  # before numba loads
    rows = run(args.quick, args.repeats, threads, cpu_time=args.cpu_time)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
