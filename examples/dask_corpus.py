"""Bag-of-words embeddings of a whole corpus on a dask.distributed cluster.

The embedding table is created on the workers in 8 row chunks (it never exists in this process), the corpus
is one flat array of token ids chunked along positions with an offsets array (documents straddle chunk
boundaries), and ``xembed.embedding_bag`` builds a lazy graph that the workers run blockwise.  A sample of
documents is then recomputed with xembed on NumPy from only the rows it needs, and compared.

    python examples/dask_corpus.py                        # a local cluster of 2 worker processes
    python examples/dask_corpus.py --scheduler tcp://host:8786   # an existing cluster
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import dask.array as da
import numpy as np
from distributed import Client, LocalCluster

import xembed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scheduler", help="address of an existing dask scheduler (default: start a LocalCluster)")
    ap.add_argument("--vocab", type=int, default=400_000)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--docs", type=int, default=50_000)
    ap.add_argument("--mean-len", type=int, default=40)
    args = ap.parse_args()

    if args.scheduler:
        client = Client(args.scheduler)
    else:  # workers must import xembed: pass this checkout's src/ on when it is not installed
        src = str(Path(xembed.__file__).resolve().parents[1])
        env = {"PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)}
        client = Client(LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                     env=env))
    print(f"cluster: {len(client.scheduler_info()['workers'])} workers")

    rng = np.random.default_rng(0)
    lengths = rng.poisson(args.mean_len, args.docs)
    offsets = np.r_[0, np.cumsum(lengths)[:-1]]
    n_tokens = int(lengths.sum())
    tokens = da.random.default_rng(1).integers(0, args.vocab, n_tokens, chunks=n_tokens // 8 + 1)
    table = da.random.default_rng(2).standard_normal((args.vocab, args.dim), chunks=(args.vocab // 8 + 1,
                                                                                     args.dim))
    tokens, table = client.persist([tokens, table])  # on the workers, in chunks: never in this process

    docs = xembed.embedding_bag(tokens, table, da.from_array(offsets, chunks=args.docs // 8 + 1), mode="mean")
    n_tasks = len(docs.__dask_graph__())
    t0 = time.perf_counter()
    doc_emb = docs.compute()
    dt = time.perf_counter() - t0
    print(f"{args.docs} documents, {n_tokens} tokens, table {args.vocab}x{args.dim} in {table.numblocks[0]} "
          f"chunks: {n_tasks} tasks, {dt:.2f} s, {n_tokens / dt / 1e6:.2f} M tokens/s")

    # compare a sample with xembed on NumPy, fetching only the tokens and table rows the sample needs
    sample = np.sort(rng.choice(args.docs, 200, replace=False))
    starts, ends = offsets[sample], offsets[sample] + lengths[sample]
    pos = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends, strict=True)])
    sample_tokens = tokens[pos].compute()
    rows, local = np.unique(sample_tokens, return_inverse=True)
    sub_table = table[rows].compute()
    sample_offsets = np.r_[0, np.cumsum(lengths[sample])[:-1]]
    expected = xembed.embedding_bag(local, sub_table, sample_offsets, mode="mean")
    err = float(np.max(np.abs(doc_emb[sample] - expected)))
    print(f"sample of {sample.size} documents vs NumPy: max abs difference {err:.2e}")
    assert np.allclose(doc_emb[sample], expected, rtol=1e-12, atol=1e-12)
    client.close()


if __name__ == "__main__":
    main()
