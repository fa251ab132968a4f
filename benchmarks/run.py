"""xembed benchmark suite: ``python -m benchmarks [--quick] [--gpu] [--out DIR]`` (from the repository root).

Runs the standard workloads (see ``workloads.py``) through every contender (``contenders.py``), one thread
each on CPU, and prints / saves (JSON, markdown, PNG when matplotlib is installed) the median times, the
ratio of each contender to torch native measured in the same run, and the achieved bandwidth (bytes of rows
read + output written per second) against a copy of the same number of bytes measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _parse(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes, few repeats (< 2 minutes on 2 cores)")
    p.add_argument("--gpu", action="store_true", help="also run the CUDA contenders (torch CUDA, CuPy)")
    p.add_argument("--gpu-only", action="store_true", help="run only the CUDA contenders")
    p.add_argument("--out", default=None, help="output directory (default: benchmarks/results)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch / BLAS (default 1)")
    p.add_argument("--workloads", default=None, help="comma-separated subset of: " + "dlrm,large_batch,"
                   "text_cls,gpt2_tokens,dlrm_zipf,quantized (quantized tables against torch's quantized ops)")
    p.add_argument("--passes", default=None, help="comma-separated subset of passes (fwd_sum,...,bwd_sparse,fwd)")
    p.add_argument("--contenders", default=None, help="comma-separated subset of contenders")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement")
    p.add_argument("--budget", type=float, default=None, help="max seconds of repeats per measurement")
    p.add_argument("--no-check", action="store_true", help="skip comparing results against torch")
    p.add_argument("--no-memory", action="store_true", help="skip the tracemalloc measurement")
    p.add_argument("--small", action="store_true", help="only the small-call (per-call overhead) table")
    p.add_argument("--targets", action="store_true",
                   help="every speed / memory target of the package, same-run ratios (1 and 2 threads)")
    p.add_argument("--sections", default=None,
                   help="with --targets: comma-separated subset of "
                   "large,small,modules,numpy,memory,first_call,quantized")
    p.add_argument("--threading-layers", action="store_true",
                   help="numba's threading layers (workqueue / omp / tbb) on the parallel kernels, 2 threads")
    p.add_argument("--compile-latency", action="store_true",
                   help="only the first-call latency of the numba kernels (cold and warm disk cache)")
    return p.parse_args(argv)


def main(argv=None):
    args = _parse(argv)
    # thread counts must be fixed before NumPy / BLAS / torch load
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    if args.targets:  # numba's pool starts with two threads; each row sets the count it measures
        os.environ["NUMBA_NUM_THREADS"] = str(max(2, args.threads))
    here = Path(__file__).resolve().parent
    root = str(here.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        import xembed  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(Path(root) / "src"))
    from benchmarks import suite

    out = str(here / "results")
    if args.small:
        return suite.run_small(args, default_out=out)
    if args.targets:
        from benchmarks import targets

        return targets.run(args, default_out=out)
    if args.threading_layers:
        from benchmarks import layers

        return layers.run(args, default_out=out)
    if args.compile_latency:
        return suite.run_compile_latency(args, default_out=out)
    return suite.run(args, default_out=out)


if __name__ == "__main__":
    sys.exit(main())
