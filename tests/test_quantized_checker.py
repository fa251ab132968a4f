"""The checker's quantized rows (docs/spec.md QUANT-*), items of the pytest suite: torch's own quantized ops and
xembed conform, and each deliberately broken quantized target is caught, at the default profile (50 examples),
from several seeds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

from checker_targets import quant_xembed
from checker_targets.quant_broken import QUANT_BROKEN

from xembed_conformance.checks.quantized import QUANTIZED_OPS
from xembed_conformance.runner import run_conformance

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.heavy  # whole checker runs (tests/conftest.py schedules them first)


def _by_status(rep: dict[str, Any]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for r in rep["results"]:
        out.setdefault(r["status"], set()).add(r["id"])
    return out


def test_torch_quantized_ops_conform_through_the_pytest_suite(tmp_path: Path) -> None:
    """torch conforms: its ops ignore `mode` (QUANT-TORCH-MODE, xfailed) and take no padding_idx (not offered);
    a target with only quantized ops gets only the quantized items, named by their check ids."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "tests"),
                                                                      os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "xembed_conformance",
                          "--impl=torch:ops.quantized", "--max-examples=15", "-p", "no:cacheprovider", "-rA",
                          "--report=rep"],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=900, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    res = _by_status(json.loads((tmp_path / "rep.json").read_text()))
    assert "fail" not in res, res
    assert res["xfail"]
    assert all("::mode=1" in r or "::mode=2" in r for r in res["xfail"])
    assert res["not offered"]
    assert all("padding_idx" in r for r in res["not offered"])
    assert len(res["pass"]) == 15
    assert {r.split("::")[0] for s in res.values() for r in s} == set(QUANTIZED_OPS)
    assert "| embedding_bag_4bit_prepack | weight | bytes | pass |" in (tmp_path / "rep.md").read_text()
    lines = out.stdout.splitlines()
    assert any(ln.startswith("PASSED") and ln.endswith("suite.py::embedding_bag_4bit_prepack::weight::bytes")
               for ln in lines)
    assert any(ln.startswith("XFAIL") and "suite.py::embedding_bag_byte_rowwise_offsets::mode=2 (max)::values" in ln
               for ln in lines)


def test_xembed_conforms_on_every_row() -> None:
    res = _by_status(run_conformance(quant_xembed, max_examples=15))
    assert set(res) == {"pass"}, res
    assert len(res["pass"]) == 27


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", sorted(QUANT_BROKEN))
def test_broken_quantized_targets_are_caught(name: str, seed: int) -> None:
    """Each broken target fails exactly the rows of its op that exercise its defect; the others pass."""
    target, expected = QUANT_BROKEN[name]
    assert target.__doc__
    op = next(iter(expected)).split("::")[0]
    rep = run_conformance(target, max_examples=50, seed=seed, only=[f"{op}::*"])
    fails = {r["id"] for r in rep["results"] if r["status"] == "fail"}
    assert fails == expected, {r["id"]: r["message"] for r in rep["results"]}
    assert {r["status"] for r in rep["results"] if r["id"] not in expected} <= {"pass"}
    assert all(r["repro"] and r["case"] for r in rep["results"] if r["status"] == "fail")


def test_crashing_quantized_target_is_isolated() -> None:
    """A segfaulting op is a failing check ("crash: ..."), in a worker process that the checker restarts: the
    run goes on with the next check."""
    rep = run_conformance("checker_targets.quant_broken:SEGFAULTS", max_examples=10,
                          only=["embedding_bag_byte_prepack::*", "embedding_bag_4bit_prepack::*"])
    by_id = {r["id"]: r for r in rep["results"]}
    crashed = by_id["embedding_bag_byte_prepack::weight::bytes"]
    assert crashed["status"] == "fail"
    assert crashed["message"].startswith("crash: signal"), crashed["message"]
    assert by_id["embedding_bag_4bit_prepack::weight::bytes"]["status"] == "pass"
    assert rep["worker_restarts"] >= 1
