"""Benchmark rows for the extensions beyond torch: ``sqrtn``, the weighted mean and ``min``.

torch has no such modes, so each is timed against torch's closest native equivalent **in the same run**:
``sqrtn`` and the weighted mean are ``F.embedding_bag(mode='sum', per_sample_weights=...)`` with the
normalised weights precomputed (``1/sqrt(length)``, ``w / sum(w)`` per bag; the precomputation is not timed),
``min`` is ``F.embedding_bag(mode='max')`` on the same input.  The second ratio is to xembed's own ``sum`` on
the same backend (what the extension costs on top of a plain sum).  Forward, and dense backward (weight
gradient, plus the per_sample_weights gradient where there are weights).

    python benchmarks/extensions.py [--quick] [--repeats N] [--threads 1]

Single-threaded by default (torch and NumPy's BLAS); these machines are shared and noisy, so read ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def median_time(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``fn()`` in seconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def workload(quick: bool, seed: int = 0) -> dict[str, np.ndarray]:
    """DLRM-like bags (fp32): V rows of D features, B bags of 10..30 uniform ids, positive weights."""
    rng = np.random.default_rng(seed)
    v, d, b = (100_000, 64, 1024) if quick else (1_000_000, 128, 4096)
    lengths = rng.integers(10, 31, b)
    n = int(lengths.sum())
    return {
        "weight": rng.standard_normal((v, d), dtype=np.float32),
        "idx": rng.integers(0, v, n),
        "lengths": lengths,
        "offsets": np.concatenate([[0], np.cumsum(lengths)[:-1]]),
        "psw": rng.uniform(0.1, 2.0, n).astype(np.float32),
    }


def torch_equivalents(w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The per-position weights that make torch's sum mode compute sqrtn / sqrtn+psw / the weighted mean."""
    lengths, psw = w["lengths"], w["psw"].astype(np.float64)
    bag = np.repeat(np.arange(lengths.size), lengths)
    sq = np.bincount(bag, psw * psw, minlength=lengths.size)
    s = np.bincount(bag, psw, minlength=lengths.size)
    return {
        "sqrtn": np.repeat(1.0 / np.sqrt(lengths), lengths).astype(np.float32),
        "sqrtn_psw": (psw / np.sqrt(sq)[bag]).astype(np.float32),
        "wmean": (psw / s[bag]).astype(np.float32),
    }


CASES = {  # name: (xembed mode, uses psw, torch mode)
    "sqrtn": ("sqrtn", False, "sum"),
    "sqrtn_psw": ("sqrtn", True, "sum"),
    "wmean": ("mean", True, "sum"),
    "min": ("min", False, "max"),
}


def run(quick: bool, repeats: int) -> list[dict[str, Any]]:
    import torch

    import xembed

    w = workload(quick)
    eq = torch_equivalents(w)
    t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in w.items()}
    rows = []
    g_np = np.random.default_rng(1).standard_normal((w["lengths"].size, w["weight"].shape[1])).astype(np.float32)
    g_t = torch.from_numpy(g_np)

    def xembed_np(mode: str, psw: bool) -> tuple[Callable[[], Any], Callable[[], Any]]:
        kw: dict[str, Any] = {"mode": mode, "lengths": w["lengths"], "per_sample_weights": w["psw"] if psw else None}
        _, pullback = xembed.embedding_bag_vjp(w["idx"], w["weight"], **kw)
        return (lambda: xembed.embedding_bag(w["idx"], w["weight"], **kw)), (lambda: pullback(g_np))

    def autograd(f: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
                 psw: torch.Tensor | None) -> tuple[Callable[[], Any], Callable[[], Any]]:
        wt = t["weight"].clone().requires_grad_(True)
        pt = None if psw is None else psw.clone().requires_grad_(True)
        leaves = [wt] if pt is None else [wt, pt]
        out = f(wt, pt)
        return (lambda: f(t["weight"], psw)), (lambda: torch.autograd.grad(out, leaves, g_t, retain_graph=True))

    for name, (mode, with_psw, tmode) in CASES.items():
        ref_psw = torch.from_numpy(eq[name]) if name in eq else None
        psw_t = t["psw"] if with_psw else None

        def native(wt: torch.Tensor, pt: torch.Tensor | None, tmode: str = tmode) -> torch.Tensor:
            return torch.nn.functional.embedding_bag(t["idx"], wt, t["offsets"], mode=tmode, per_sample_weights=pt)

        def via_xembed(wt: torch.Tensor, pt: torch.Tensor | None, mode: str = mode) -> torch.Tensor:
            return xembed.embedding_bag(t["idx"], wt, mode=mode, lengths=t["lengths"], per_sample_weights=pt)

        if ref_psw is not None:  # the equivalence the ratios rest on
            np.testing.assert_allclose(via_xembed(t["weight"], psw_t).numpy(),
                                       native(t["weight"], ref_psw).numpy(), rtol=1e-4, atol=1e-4)
        contenders = {
            "torch native (equivalent)": autograd(native, ref_psw),
            "xembed (NumPy)": xembed_np(mode, with_psw),
            "xembed (NumPy) sum": xembed_np("sum", with_psw),
            "xembed (torch, autograd)": autograd(via_xembed, psw_t),
        }
        for pass_idx, pass_ in enumerate(("fwd", "bwd dense")):
            times = {c: median_time(fns[pass_idx], repeats) for c, fns in contenders.items()}
            base = times["torch native (equivalent)"]
            rows.append({
                "case": name, "pass": pass_, "torch_ms": base * 1e3,
                "xembed_numpy": times["xembed (NumPy)"] / base,
                "xembed_numpy_vs_own_sum": times["xembed (NumPy)"] / times["xembed (NumPy) sum"],
                "xembed_torch": times["xembed (torch, autograd)"] / base,
            })
            print(_line(rows[-1]), flush=True)
    return rows


HEADER = ("| case | pass | torch ms (equivalent) | xembed NumPy / torch | xembed NumPy / its own sum | "
          "xembed torch / torch |\n|---|---|---:|---:|---:|---:|")


def _line(r: dict[str, Any]) -> str:
    return (f"| {r['case']} | {r['pass']} | {r['torch_ms']:.2f} | {r['xembed_numpy']:.2f} | "
            f"{r['xembed_numpy_vs_own_sum']:.2f} | {r['xembed_torch']:.2f} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="V=1e5, D=64, B=1024 (default V=1e6, D=128, B=4096)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))  # before NumPy / numba / torch start their pools
    import torch

    torch.set_num_threads(args.threads)
    print(HEADER)
    run(args.quick, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
