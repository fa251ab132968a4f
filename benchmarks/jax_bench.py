"""xembed on JAX (``jax.jit``) against a hand-written ``jnp.take`` + ``jax.ops.segment_sum`` / ``segment_max``
and torch's native ``tfn.embedding_bag``, CPU, fp32, same run.

    python benchmarks/jax_bench.py            # V=1e5 D=64 B=2048 L~20, 7 repeats
    python benchmarks/jax_bench.py --quick    # smaller, 3 repeats

Prints a markdown table: median ms per pass and the ratio to torch (< 1 is faster than torch).  Every
contender's output / gradient is checked against torch's first (max-abs error printed).  The hand-written
``segment_max`` backward splits ties (jax's own gradient), which torch and xembed do not; with random fp32
weights ties do not occur, so the timing comparison is fair.  Threads: XLA's CPU backend uses its own
intra-op pool; torch is set to the same number of threads (``--threads``, default 1 for torch; XLA is
limited with ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1``).
The loss is linear in the sum-mode output, so XLA drops that forward from the jitted ``jax.grad``: its
"fwd+bwd" column is the backward alone (torch's includes the forward).

Measured (2-core shared VM, load ~5, default sizes): fwd sum 6.20 ms xembed vs 6.66 hand-written vs 0.58 torch;
fwd max 16.5 / 10.4 / 10.9; grad sum 4.7 / 5.0 / 11.9; grad max 10.6 / 22.4 / 24.4 (ms, median of 7).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import jax
import jax.numpy as jnp
import numpy as np
import torch
from torch.nn import functional as tfn

import xembed


def _time(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up (compiles under jit)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _block(x: Any) -> Any:
    return jax.block_until_ready(x)  # type: ignore[no-untyped-call]


def _torch_grad(mode: str, w: torch.Tensor, i: torch.Tensor, o: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    wt = w.clone().requires_grad_(True)
    tfn.embedding_bag(i, wt, o, mode=mode).backward(g)  # type: ignore[no-untyped-call]
    assert wt.grad is not None
    return wt.grad


def _loss(f: Callable[..., Any], g: Any) -> Callable[..., Any]:
    return lambda w, *ins: jnp.sum(f(w, *ins) * g)


def _runner(f: Callable[..., Any], w: Any, ins: tuple[Any, ...]) -> Callable[[], Any]:
    return lambda: _block(f(w, *ins))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    v, d, b, lmean = (20_000, 32, 512, 20) if args.quick else (100_000, 64, 2048, 20)
    repeats = args.repeats or (3 if args.quick else 7)
    rng = np.random.default_rng(0)
    lengths = rng.integers(lmean // 2, 3 * lmean // 2 + 1, size=b)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int32)
    n = int(lengths.sum())
    idx = rng.integers(0, v, size=n).astype(np.int32)
    w = rng.standard_normal((v, d)).astype(np.float32)
    g = rng.standard_normal((b, d)).astype(np.float32)
    seg = np.repeat(np.arange(b), lengths).astype(np.int32)

    wj, ij, oj, gj, sj = (jnp.asarray(a) for a in (w, idx, offsets, g, seg))
    w_t, i_t, o_t, g_t = (torch.from_numpy(a) for a in (w, idx.astype(np.int64), offsets.astype(np.int64), g))

    # Index arrays are jit *arguments* (not closed-over constants, which XLA would constant-fold).
    def xe(mode: str) -> Callable[..., Any]:
        return lambda wj, ij, oj, _sj: xembed.embedding_bag(ij, wj, oj, mode=mode)

    def hand(mode: str) -> Callable[..., Any]:
        seg = jax.ops.segment_sum if mode == "sum" else jax.ops.segment_max
        return lambda wj, ij, _oj, sj: seg(jnp.take(wj, ij, axis=0), sj, num_segments=b, indices_are_sorted=True)

    ins = (ij, oj, sj)
    rows = []
    for mode in ("sum", "max"):
        ref_out = tfn.embedding_bag(i_t, w_t, o_t, mode=mode)
        ref_grad = _torch_grad(mode, w_t, i_t, o_t, g_t).numpy()

        def torch_fwd(mode: str = mode) -> Any:
            return tfn.embedding_bag(i_t, w_t, o_t, mode=mode)

        def torch_bwd(mode: str = mode) -> Any:
            return _torch_grad(mode, w_t, i_t, o_t, g_t)

        timings: dict[str, tuple[float, float]] = {"torch": (_time(torch_fwd, repeats), _time(torch_bwd, repeats))}
        for name, f in (("xembed-jax-jit", xe(mode)), ("hand-written jnp", hand(mode))):
            fwd = jax.jit(f)
            grad = jax.jit(jax.grad(_loss(f, gj)))
            err_out = float(np.max(np.abs(np.asarray(fwd(wj, *ins)) - ref_out.numpy())))
            err_grad = float(np.max(np.abs(np.asarray(grad(wj, *ins)) - ref_grad)))
            print(f"{mode} {name}: max |out - torch| = {err_out:.2e}, max |grad - torch| = {err_grad:.2e}")
            timings[name] = (_time(_runner(fwd, wj, ins), repeats), _time(_runner(grad, wj, ins), repeats))
        for name, (tf, tb) in timings.items():
            rows.append((mode, name, tf, tb, tf / timings["torch"][0], tb / timings["torch"][1]))

    print(f"\nV={v} D={d} B={b} n={n} fp32, CPU, torch threads={args.threads}, jax {jax.__version__}, "
          f"torch {torch.__version__}, median of {repeats}\n")
    print("| mode | contender | fwd ms | fwd+bwd (grad) ms | fwd / torch | grad / torch |")
    print("|---|---|---:|---:|---:|---:|")
    for mode, name, tf, tb, rf, rb in rows:
        print(f"| {mode} | {name} | {tf:.2f} | {tb:.2f} | {rf:.2f} | {rb:.2f} |")
    print("\n(torch's grad column is forward + backward through autograd; the jax ones are jax.grad of the "
          "same loss, jitted.)")


if __name__ == "__main__":
    main()
