"""``xembed-conformance`` / ``python -m xembed_conformance``: check an embedding / embedding_bag
implementation against torch.

Exit status: 0 iff everything checked conforms; 1 if something does not conform (or, with
``--fail-on-stale``, an xfails entry absorbed no failure); 2 for every checker-side error (the target or
a backend cannot be imported, an unknown attribute, ``--only`` or an xfails entry matching nothing, a
checker error while checking) -- never a verdict on the target.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

PROFILES = {"fast": 50, "full": 500}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="xembed-conformance",
        description="Hypothesis-driven conformance check of embedding / embedding_bag against "
                    "torch.nn.functional (CPU, float64 oracle); the rules are docs/spec.md's. Exit status 0 iff "
                    "everything checked conforms, 1 if not, 2 for a checker-side error.")
    p.add_argument("--impl", required=True, help="target: MODULE, MODULE:ATTR, path/to/file.py or path/to/file.py:ATTR "
                   "with `embedding` and/or `embedding_bag` (optionally `embedding_vjp` / `embedding_bag_vjp`); "
                   "the current directory is importable")
    p.add_argument("--backend", default="numpy",
                   help="array library whose arrays the target receives: numpy, torch, cupy, array_api_strict, jax, "
                        "jax-jit (calls under jax.jit), dask, a registered one, module:BackendClass, a comma-separated "
                        "list, or 'all' (every installed one; torch also on CUDA when available)")
    p.add_argument("--device", default=None, help="device for the backend's arrays (torch: cpu / cuda)")
    p.add_argument("--profile", choices=sorted(PROFILES), default="fast",
                   help="fast: 50 examples per check (CI); full: 500")
    p.add_argument("--max-examples", type=int, default=None, help="hypothesis examples per check (overrides --profile)")
    p.add_argument("--seed", type=int, default=0, help="hypothesis seed (runs are reproducible for a given seed)")
    p.add_argument("--report", default=None, help="write the report: PATH.md (+ PATH.json), PATH.json, or PATH (both)")
    p.add_argument("--xfails", default=None,
                   help="known-deviations file: 'CHECK-ID-GLOB | FAILURE-MESSAGE-GLOB  # reason' per line")
    p.add_argument("--fail-on-stale", action="store_true",
                   help="exit 1 when an xfails entry absorbed no failure (its checks pass)")
    p.add_argument("--strict", action="store_true",
                   help="also check docs/spec.md's decisions where torch is unspecified or crashes (xembed's column)")
    p.add_argument("--grad", choices=["auto", "autograd", "vjp", "none"], default="auto",
                   help="how gradients are obtained (auto: autograd on a backend that has it, else *_vjp)")
    p.add_argument("--only", action="append", default=None, metavar="GLOB",
                   help="run only checks whose id (function::option::aspect) matches GLOB (repeatable)")
    p.add_argument("--no-isolation", action="store_true",
                   help="call the target in the checker's process (default: a worker process the checker restarts "
                        "after a crash)")
    p.add_argument("--list", action="store_true", help="list check ids (with their spec rule IDs) and exit")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print failures, a progress line every 15 s, and the summary")
    return p


def _fail(msg: str) -> int:
    print(f"xembed-conformance: error: {msg}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    sys.path.insert(0, str(Path.cwd()))
    from xembed_conformance import report
    from xembed_conformance.backends import UnknownBackendError, make_backend
    from xembed_conformance.runner import Result, SetupError, run_conformance

    if args.list:
        from xembed_conformance.checks.rows import build_rows

        try:
            be = make_backend(args.backend.split(",")[0] if args.backend != "all" else "numpy", args.device)
        except (UnknownBackendError, ImportError) as e:
            return _fail(str(e))
        for row in build_rows(be):
            for cid in row.check_ids():
                print(f"{cid}    [{', '.join(row.spec)}]")
        return 0
    n = args.max_examples or PROFILES[args.profile]
    runs = _backend_runs(args.backend, args.device)
    impl = args.impl
    if impl.split(":")[0].endswith(".py"):
        head, sep, attr = impl.rpartition(":") if not impl.endswith(".py") else (impl, "", "")
        impl = str(Path(head).resolve()) + sep + attr
    last = [time.monotonic()]
    t0 = time.monotonic()

    def progress(r: Result, done: int, total: int) -> None:
        show = r.status in ("fail", "error")
        if not args.quiet or show:
            msg = f"  {r.message}" if show else ""
            print(f"{r.status:>11}  {r.id}  ({r.examples} ex, {r.seconds:.1f}s){msg}", flush=True)
        elif time.monotonic() - last[0] > 15 or done == total:
            print(f"[{done}/{total} checks, {time.monotonic() - t0:.0f} s] last: {r.id}", flush=True)
            last[0] = time.monotonic()

    worst = 0
    for backend, device in runs:
        if len(runs) > 1:
            print(f"\n===== {args.impl} on {backend}" + (f" ({device})" if device else "") + " =====", flush=True)
        try:
            rep = run_conformance(impl, backend=backend, device=device, max_examples=n, seed=args.seed,
                                  strict=args.strict, xfails=args.xfails, only=args.only, grad=args.grad,
                                  progress=progress, isolate=not args.no_isolation, fail_on_stale=args.fail_on_stale)
        except SetupError as e:
            return _fail(str(e))
        print()
        print(report.markdown(rep))
        if args.report:
            for p in report.write(rep, _report_path(args.report, backend, device, len(runs) > 1)):
                print(f"report written to {p}")
        code = 2 if rep["summary"]["error"] else (0 if rep["conforms"] else 1)
        worst = max(worst, code)
    if len(runs) > 1:
        print("exit status", worst)
    return worst


def _report_path(path: str, backend: str, device: str | None, several: bool) -> str:
    if not several:
        return path
    stem, dot, ext = path.rpartition(".") if path.endswith((".md", ".json")) else (path, "", "")
    return f"{stem}-{backend}{'-' + device if device else ''}{dot}{ext}"


def _backend_runs(spec: str, device: str | None) -> list[tuple[str, Any]]:
    """[(backend, device)] for --backend (a name, a comma list, or 'all')."""
    if spec != "all":
        return [(b.strip(), device) for b in spec.split(",") if b.strip()]
    runs: list[tuple[str, Any]] = [("numpy", None)]
    if importlib.util.find_spec("torch"):
        runs.append(("torch", None))
    if importlib.util.find_spec("array_api_strict"):
        runs.append(("array_api_strict", None))
    if importlib.util.find_spec("jax"):
        runs += [("jax", None), ("jax-jit", None)]
    if importlib.util.find_spec("dask") and importlib.util.find_spec("dask.array"):
        runs.append(("dask", None))
    if importlib.util.find_spec("cupy"):
        try:
            import cupy

            if cupy.cuda.runtime.getDeviceCount() > 0:
                runs.append(("cupy", None))
        except Exception:  # noqa: BLE001, S110 - no usable GPU: cupy is left out
            pass
    if importlib.util.find_spec("torch"):
        import torch

        if torch.cuda.is_available():
            runs.append(("torch", "cuda"))
    return runs
