"""``xembed-conformance`` / ``python -m xembed_conformance``: check an embedding / embedding_bag
implementation against torch.

A thin wrapper over the pytest suite (``pytest --pyargs xembed_conformance``, :mod:`xembed_conformance.plugin`):
it runs the suite once per backend, and passes the arguments it does not know to pytest (``-n 2``, ``-x``,
``--junitxml=out.xml``, ``-k``).  ``--list`` needs no target.

Exit status: 0 iff everything checked conforms; 1 if something does not conform (or, with
``--fail-on-stale``, an xfails entry absorbed no failure); 2 for every checker-side error (the target or
a backend cannot be imported, an unknown attribute, ``--only`` or an xfails entry matching nothing, a
checker error while checking) -- never a verdict on the target.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from typing import Any

from xembed_conformance.plugin import PROFILES


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="xembed-conformance",
        description="Hypothesis-driven conformance check of embedding / embedding_bag against "
                    "torch.nn.functional (CPU, float64 oracle); the rules are docs/spec.md's. Exit status 0 iff "
                    "everything checked conforms, 1 if not, 2 for a checker-side error.")
    p.add_argument("--impl", default=None, help="target: MODULE, MODULE:ATTR, path/to/file.py or path/to/file.py:ATTR "
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
                   help="print the verdict and one line per failing check, grouped by cause (the report has the "
                        "repros)")
    return p


def _fail(msg: str) -> int:
    print(f"xembed-conformance: error: {msg}", file=sys.stderr)
    return 2


def _plugin_args() -> list[str]:
    """`-p xembed_conformance.plugin` unless the installed distribution registers it (entry point pytest11)."""
    from importlib.metadata import entry_points

    if any(ep.value == "xembed_conformance.plugin" for ep in entry_points(group="pytest11")):
        return []
    return ["-p", "xembed_conformance.plugin"]


def pytest_args(args: argparse.Namespace, backend: str, device: str | None, report: str | None) -> list[str]:
    """The pytest command line that runs the suite for one backend (what this command wraps)."""
    # -c devnull: the current directory's pytest configuration is not the suite's; the assert-rewrite warning:
    # this process imported hypothesis (checking the target, then earlier backends) before pytest started
    out = ["--pyargs", "xembed_conformance", "-c", os.devnull, "-p", "no:cacheprovider", *_plugin_args(),
           "-W", "ignore::pytest.PytestAssertRewriteWarning",
           f"--impl={args.impl}", f"--backend={backend}", f"--profile={args.profile}", f"--seed={args.seed}",
           f"--grad={args.grad}"]
    out += [f"--device={device}"] if device else []
    out += [f"--max-examples={args.max_examples}"] if args.max_examples else []
    out += ["--conformance-strict"] if args.strict else []
    out += [f"--xfails={args.xfails}"] if args.xfails else []
    out += ["--fail-on-stale"] if args.fail_on_stale else []
    out += [f"--only={g}" for g in args.only or []]
    out += ["--no-isolation"] if args.no_isolation else []
    out += [f"--report={report}"] if report else []
    out += ["--conformance-quiet", "-q", "--tb=no", "-rN"] if args.quiet else ["-v", "--tb=short", "-rN"]
    return out


def list_checks(backend: str, device: str | None) -> int:
    from xembed_conformance.loading import SetupError
    from xembed_conformance.runner import check_ids

    try:
        ids = check_ids(backend.split(",", maxsplit=1)[0] if backend != "all" else "numpy", device)
    except SetupError as e:
        return _fail(str(e))
    for cid, spec in ids:
        print(f"{cid}    [{', '.join(spec)}]")
    return 0


def main(argv: list[str] | None = None) -> int:
    args, extra = parser().parse_known_args(argv)
    if args.list:
        return list_checks(args.backend, args.device)
    if not args.impl:
        return _fail("--impl is required (--list shows the checks without it)")
    import pytest

    from xembed_conformance.loading import SetupError, resolve_impl
    from xembed_conformance.runner import Suite

    args.impl = resolve_impl(args.impl)

    runs = _backend_runs(args.backend, args.device)
    worst = 0
    for backend, device in runs:
        if len(runs) > 1:
            print(f"\n===== {args.impl} on {backend}" + (f" ({device})" if device else "") + " =====", flush=True)
        try:  # checker-side errors as one line and status 2, before pytest starts
            Suite(args.impl, backend, device, xfails=args.xfails, only=args.only, isolate=False).close()
        except SetupError as e:
            return _fail(str(e))
        report = _report_path(args.report, backend, device, len(runs) > 1) if args.report else None
        code = int(pytest.main([*pytest_args(args, backend, device, report), *extra]))
        # pytest's statuses: 0 passed, 1 failed; 2 (collection error: a checker-side error, or a checker error
        # while checking), 3 internal error, 4 usage error, 5 nothing collected are all checker-side here
        worst = max(worst, code if code in (0, 1) else 2)
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
