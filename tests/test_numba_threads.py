"""The parallel numba kernels really run on several threads, and leave torch's thread count alone (spec
``PRIM-THREADS``).

Both properties are per process (numba starts its thread pool once, the on-disk cache outlives the
process), so each check runs in fresh Python processes with an empty ``NUMBA_CACHE_DIR`` of its own.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xembed._primitives import _numba as nk  # numba missing: fails, does not skip

# Calls one compiled kernel directly (argv[1]: segment_sum / segment_max / gather_scatter; argv[2]: serial or
# parallel; nothing else touches numba's threads), then prints numba's threading layer, or the error numba
# raises when no thread pool was ever started.
_CALL_KERNEL = r"""
import sys
import numpy as np
import numba
from xembed._primitives import _numba as nk

family, variant = sys.argv[1], sys.argv[2]
kernel = getattr(nk, f"{family}_{variant}")
rng = np.random.default_rng(0)
w = rng.standard_normal((100, 32)).astype(np.float32)
idx = rng.integers(0, 100, 400)
offsets = np.arange(0, 401, 4)
out = np.zeros((100, 32), np.float32)
no_scale = np.empty(0, np.float32)
if family == "segment_sum":
    kernel(w, idx, offsets, no_scale, False, out, 16)
elif family == "segment_max":
    kernel(w, idx, offsets, out, np.empty((100, 32), np.int64), True, 16)
else:
    kernel(w, idx % 100, idx, no_scale, False, out, 2)
try:
    print("layer", numba.threading_layer())
except ValueError as e:
    print("no pool:", e)
"""

# Sets torch to one thread, runs one large xembed forward and backward on the numba kernels with numba
# allowed two threads, and prints torch's thread count, numba's layer and how many parallel launches ran.
_TORCH_THREADS = r"""
import numpy as np
import torch
torch.set_num_threads(1)
import numba
import xembed
from xembed import _primitives as prim
from xembed._primitives import _numba as nk

launches = []
for name in ("segment_sum_parallel", "gather_scatter_parallel"):
    kernel = getattr(nk, name)
    setattr(nk, name, lambda *a, _k=kernel, _n=name: (launches.append(_n), _k(*a))[1])
rng = np.random.default_rng(0)
w = rng.standard_normal((1000, 64)).astype(np.float32)
idx = rng.integers(0, 1000, 8192)
offsets = np.arange(0, 8192, 8)
seen = [torch.get_num_threads()]
with prim.use("numba"):
    xembed.embedding_bag(idx, w, offsets, mode="sum")
    seen.append(torch.get_num_threads())
    out, pullback = xembed.embedding_bag_vjp(idx, w, offsets, mode="sum")
    pullback(np.ones_like(out))
    seen.append(torch.get_num_threads())
print(max(seen), numba.threading_layer(), numba.get_num_threads(), len(launches))
"""


def _run(code: str, *args: str, cache: Path, **env: str) -> str:
    full = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    full.update(NUMBA_CACHE_DIR=str(cache), NUMBA_NUM_THREADS="2", **env)
    p = subprocess.run([sys.executable, "-c", code, *args], env=full, capture_output=True, text=True,
                       timeout=600, check=False)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip().splitlines()[-1]


def test_builds_have_distinct_cache_entries() -> None:
    """Every compiled kernel, serial and parallel builds included, has its own on-disk cache index."""
    paths = [(k._cache._cache_path, k._cache._impl._filename_base) for k in nk.KERNELS]
    assert len(set(paths)) == len(nk.KERNELS)
    assert {k.targetoptions.get("parallel", False) for k in nk.PARALLEL_KERNELS} == {True}


@pytest.mark.parametrize("family", ["segment_sum", "segment_max", "gather_scatter"])
def test_parallel_build_starts_threads_after_serial_was_cached(family: str, tmp_path: Path) -> None:
    """A parallel kernel run after its serial build filled the cache (in another process) still starts
    numba's thread pool: it is the parallel build, not the cached serial one."""
    assert _run(_CALL_KERNEL, family, "serial", cache=tmp_path).startswith("no pool")
    assert _run(_CALL_KERNEL, family, "parallel", cache=tmp_path).startswith("layer ")


_OMP = pytest.mark.skipif(importlib.util.find_spec("numba.np.ufunc.omppool") is None,
                          reason="numba has no OpenMP threading layer here")


@pytest.mark.parametrize("layer", [None, pytest.param("omp", marks=_OMP)])
def test_torch_thread_count_unchanged(layer: str | None, tmp_path: Path) -> None:
    """After a parallel xembed forward and backward, torch still has the one thread it was given: numba
    runs on ``workqueue`` unless told otherwise, and on any layer torch's count is restored."""
    env = {} if layer is None else {"NUMBA_THREADING_LAYER": layer}
    torch_threads, used, numba_threads, launches = _run(_TORCH_THREADS, cache=tmp_path, **env).split()
    assert (torch_threads, numba_threads, launches) == ("1", "2", "3")
    assert used == (layer or "workqueue")

