"""xembed certified by the conformance checker (xembed_conformance, which knows nothing of xembed's internals).

The README's main job runs the full fast profile (50 examples per check); here a smaller budget keeps the
test-suite quick while still running every check (values, side effects, errors, gradients, --strict rows)
on every selected backend.  JAX is not run here: the checker on ``jax`` / ``jax-jit`` compiles every new shape
(tens of minutes on 2 cores, and it still reports the known float16 max_norm rows, README "Known limitations");
run it with ``python -m xembed_conformance --impl xembed --backend jax --strict`` (or ``jax-jit``).  tests/test_jax.py
covers the JAX path itself.
"""

from __future__ import annotations

from typing import Any

import pytest
from xembed_testutils import selected_backends

from xembed_conformance.runner import run_conformance

_BACKENDS = {"numpy": ("numpy", None), "array_api_strict": ("array_api_strict", None), "torch": ("torch", None),
             "torch_cuda": ("torch", "cuda"), "cupy": ("cupy", None)}


@pytest.mark.parametrize("backend", [b.pytest_param() for b in selected_backends() if b.value in _BACKENDS])
def test_xembed_conforms(backend: Any) -> None:
    name, device = _BACKENDS[backend.value]
    rep = run_conformance("xembed", backend=name, device=device, max_examples=10, strict=True)
    bad = {r["id"]: (r.get("message") or "")[:300] for r in rep["results"] if r["status"] in ("fail", "error")}
    assert not bad, bad
    assert rep["summary"]["pass"] >= 150, rep["summary"]
    assert not any(r["status"] == "skip" for r in rep["results"]), "no check may be skipped for xembed"
