"""`python -m xembed_conformance`: check an embedding / embedding_bag implementation against torch."""

from __future__ import annotations

import argparse
import os
import sys

PROFILES = {"fast": 50, "full": 500}


def parser():
    p = argparse.ArgumentParser(
        prog="python -m xembed_conformance",
        description="Hypothesis-driven conformance check of embedding / embedding_bag against "
                    "torch.nn.functional (CPU, float64 oracle). Exit status 0 iff everything checked conforms.")
    p.add_argument("--impl", required=True, help="target: MODULE or MODULE:ATTR with `embedding` and/or "
                   "`embedding_bag` (optionally `embedding_vjp` / `embedding_bag_vjp`)")
    p.add_argument("--backend", default="numpy",
                   help="array library whose arrays the target receives: numpy, torch, cupy, array_api_strict, "
                        "a comma-separated list, or 'all' (every installed one; torch also on CUDA when available)")
    p.add_argument("--device", default=None, help="device for the backend's arrays (torch: cpu / cuda)")
    p.add_argument("--profile", choices=sorted(PROFILES), default="fast",
                   help="fast: 50 examples per check (CI, ~1 min per backend); full: 500")
    p.add_argument("--max-examples", type=int, default=None, help="hypothesis examples per check (overrides --profile)")
    p.add_argument("--seed", type=int, default=0, help="hypothesis seed (runs are reproducible for a given seed)")
    p.add_argument("--report", default=None, help="write the report: PATH.md (+ PATH.json), PATH.json, or PATH (both)")
    p.add_argument("--xfails", default=None, help="known-deviations file: check-id globs, one per line, '# reason'")
    p.add_argument("--strict", action="store_true",
                   help="also check SPEC.md's decisions where torch is unspecified or crashes (xembed's column)")
    p.add_argument("--grad", choices=["auto", "autograd", "vjp", "none"], default="auto",
                   help="how gradients are obtained (auto: torch autograd on the torch backend, else *_vjp)")
    p.add_argument("--only", action="append", default=None, metavar="GLOB",
                   help="run only checks whose id (function::option::aspect) matches GLOB (repeatable)")
    p.add_argument("--list", action="store_true", help="list check ids and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the summary and failures")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    sys.path.insert(0, os.getcwd())
    from xembed_conformance import report as R
    from xembed_conformance.runner import run_conformance

    if args.list:
        from xembed_conformance.backends import make_backend
        from xembed_conformance.checks import build_rows

        for row in build_rows(make_backend(args.backend, args.device)):
            for cid in row.check_ids():
                print(cid)
        return 0
    n = args.max_examples or PROFILES[args.profile]
    runs = _backend_runs(args.backend, args.device)

    def progress(r):
        if not args.quiet or r.status in ("fail", "error"):
            print(f"{r.status:>9}  {r.id}  ({r.examples} ex, {r.seconds:.1f}s)" + (f"  {r.message}" if r.status in ("fail", "error") else ""),
                  flush=True)

    worst = 0
    for backend, device in runs:
        if len(runs) > 1:
            print(f"\n===== {args.impl} on {backend}" + (f" ({device})" if device else "") + " =====", flush=True)
        rep = run_conformance(args.impl, backend=backend, device=device, max_examples=n, seed=args.seed,
                              strict=args.strict, xfails=args.xfails, only=args.only, grad=args.grad,
                              progress=progress)
        print()
        print(R.markdown(rep))
        if args.report:
            path = args.report
            if len(runs) > 1:
                stem, dot, ext = path.rpartition(".") if path.endswith((".md", ".json")) else (path, "", "")
                path = f"{stem}-{backend}{'-' + device if device else ''}{dot}{ext}"
            for p in R.write(rep, path):
                print(f"report written to {p}")
        code = 2 if rep["summary"]["error"] else (0 if rep["conforms"] else 1)
        worst = max(worst, code)
    if len(runs) > 1:
        print("exit status", worst)
    return worst


def _backend_runs(spec, device):
    """[(backend, device)] for --backend (a name, a comma list, or 'all')."""
    if spec != "all":
        return [(b.strip(), device) for b in spec.split(",") if b.strip()]
    import importlib.util

    runs = [("numpy", None)]
    if importlib.util.find_spec("torch"):
        runs.append(("torch", None))
    if importlib.util.find_spec("array_api_strict"):
        runs.append(("array_api_strict", None))
    if importlib.util.find_spec("cupy"):
        try:
            import cupy

            if cupy.cuda.runtime.getDeviceCount() > 0:
                runs.append(("cupy", None))
        except Exception:  # noqa: BLE001 - no usable GPU
            pass
    if importlib.util.find_spec("torch"):
        import torch

        if torch.cuda.is_available():
            runs.append(("torch", "cuda"))
    return runs
