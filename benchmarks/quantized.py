"""Quantized tables: xembed's fused kernels against torch's quantized ops, in the same run.

DLRM-like workload (V=1e6 rows, D=128, B=4096 bags of 10..30 uniform ids; ``--quick``: V=1e5, D=64,
B=1024), forward ``sum``.  For each width (8, 4, 2 bits) and thread count: torch's
``quantized::embedding_bag_{byte,4bit,2bit}_rowwise_offsets`` on the packed tensor, and
``xembed.embedding_bag`` on a :class:`xembed.QuantizedTable` of the same bytes (NumPy arrays, the fused numba
kernels); plus xembed's own float32 forward on the float table.  Ratios < 1 mean xembed is faster.
Targets (docs/quantized.md): 8-bit and 4-bit <= 1.0x torch's op; 8-bit <= 0.6x xembed's float32 forward;
table bytes per row <= D + 8 (8-bit), <= D/2 + 4 (4-bit).

    python -m benchmarks.quantized [--quick] [--repeats N] [--threads 1,2] [--json PATH]

The machines are shared and noisy: read the ratios, measured back to back in one process.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from benchmarks.extensions import median_time, workload

WIDTHS = (8, 4, 2)


def _torch_ops() -> tuple[dict[int, Any], dict[int, Any]]:
    import torch

    q = torch.ops.quantized
    return ({8: q.embedding_bag_byte_prepack, 4: q.embedding_bag_4bit_prepack, 2: q.embedding_bag_2bit_prepack},
            {8: q.embedding_bag_byte_rowwise_offsets, 4: q.embedding_bag_4bit_rowwise_offsets,
             2: q.embedding_bag_2bit_rowwise_offsets})


def run(quick: bool, repeats: int, threads: list[int]) -> list[dict[str, Any]]:
    import numba
    import torch

    import xembed

    w = workload(quick)
    (v, d), b, n = w["weight"].shape, w["offsets"].shape[0], w["idx"].shape[0]
    prepack, bag_op = _torch_ops()
    t_idx, t_offs = torch.from_numpy(w["idx"]), torch.from_numpy(w["offsets"])
    packed = {bits: prepack[bits](torch.from_numpy(w["weight"])) for bits in WIDTHS}
    tables = {bits: xembed.QuantizedTable.from_packed(packed[bits].numpy(), bits) for bits in WIDTHS}
    rows = []
    for t in threads:
        torch.set_num_threads(t)
        numba.set_num_threads(t)
        float_s = median_time(lambda: xembed.embedding_bag(w["idx"], w["weight"], w["offsets"], mode="sum"),
                              repeats)
        for bits in WIDTHS:
            torch_s = median_time(lambda bits=bits: bag_op[bits](packed[bits], t_idx, t_offs, False, 0, False,
                                                                 None, None, False), repeats)
            xembed_s = median_time(lambda bits=bits: xembed.embedding_bag(w["idx"], tables[bits], w["offsets"],
                                                                          mode="sum"), repeats)
            rows.append({
                "threads": t, "bits": bits, "V": v, "D": d, "B": b, "n": n,
                "torch_ms": 1e3 * torch_s, "xembed_ms": 1e3 * xembed_s, "xembed_float32_ms": 1e3 * float_s,
                "vs_torch": xembed_s / torch_s, "vs_float32": xembed_s / float_s,
                "bytes_per_row": tables[bits].nbytes / v,
            })
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    d = rows[0]["D"]
    budget = {8: f"{d + 8}", 4: f"{d // 2 + 4}", 2: "-"}
    header = ("| threads | bits | torch op ms | xembed ms | xembed / torch | xembed float32 ms | / float32 "
              "| bytes/row (target) |")
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['threads']} | {r['bits']} | {r['torch_ms']:.2f} | {r['xembed_ms']:.2f} | "
                     f"{r['vs_torch']:.2f} | {r['xembed_float32_ms']:.2f} | {r['vs_float32']:.2f} | "
                     f"{r['bytes_per_row']:.0f} (<= {budget[r['bits']]}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="V=1e5, D=64, B=1024")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--json", help="write the rows as JSON to this path")
    args = p.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    os.environ.setdefault("NUMBA_NUM_THREADS", str(max(threads)))  # before numba loads
    rows = run(args.quick, args.repeats, threads)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
