"""xembed certified by the conformance checker (xembed_conformance, which knows nothing of xembed's internals).

The README's main job runs the full fast profile (50 examples per check); here a smaller budget keeps the
test-suite quick while still running every check (values, side effects, errors, gradients, --strict rows)
on every selected backend.  On ``jax`` and ``jax-jit`` the checker compiles every new shape (JAX dispatches op by
op eagerly, and jit compiles the whole call), so those two run 4 examples per check here (the README main job's
``--backend all`` runs 50).
"""

from __future__ import annotations

from typing import Any

import pytest
from xembed_testutils import selected_backends

from xembed_conformance.runner import run_conformance

_BACKENDS = {"numpy": ("numpy", None), "array_api_strict": ("array_api_strict", None), "torch": ("torch", None),
             "torch_cuda": ("torch", "cuda"), "cupy": ("cupy", None)}


def _checker_runs() -> list[Any]:
    """(test backend, checker backend, device, examples per check) for every selected backend."""
    runs = []
    for b in selected_backends():
        if b.value in _BACKENDS:
            runs.append(pytest.param(b, *_BACKENDS[b.value], 10, id=b.value, marks=b.marks()))
        elif b.value == "jax":
            runs += [pytest.param(b, mode, None, 2, id=mode, marks=b.marks()) for mode in ("jax", "jax-jit")]
    return runs


@pytest.mark.heavy(120)
@pytest.mark.parametrize(("backend", "name", "device", "examples"), _checker_runs())
def test_xembed_conforms(backend: Any, name: str, device: str | None, examples: int) -> None:  # noqa: ARG001
    """Every check passes (none skipped) with ``--strict``; jax / jax-jit with a smaller budget (module doc).
    ``backend``: the test backend (its marks and conftest's deselection); ``name``: the checker's backend."""
    rep = run_conformance("xembed", backend=name, device=device, max_examples=examples, strict=True)
    bad = {r["id"]: (r.get("message") or "")[:300] for r in rep["results"] if r["status"] in ("fail", "error")}
    assert not bad, bad
    assert rep["summary"]["pass"] >= 150, rep["summary"]
    assert not any(r["status"] == "skip" for r in rep["results"]), "no check may be skipped for xembed"
