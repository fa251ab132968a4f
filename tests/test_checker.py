"""The checker's own tests: it must pass the reference, catch every broken target, and produce
runnable reproductions.  Kept fast (small max_examples, selected rows)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from checker_targets.broken import BROKEN
from hypothesis import given, settings
from hypothesis import strategies as st

from xembed_conformance import reference as ref
from xembed_conformance.cases import Case, draw_case
from xembed_conformance.report import markdown, write
from xembed_conformance.runner import load_xfails, run_conformance

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
XFAILS = os.path.join(ROOT, "src", "xembed_conformance", "xfails", "torch_strict.txt")
# subprocesses import the checker targets from tests/ (the package itself is installed)
_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.path.join(ROOT, "tests"), os.environ.get("PYTHONPATH")]))}


def _status(rep):
    return {r["id"]: r["status"] for r in rep["results"]}


def test_torch_reference_conforms():
    rep = run_conformance("torch.nn.functional", backend="torch", max_examples=12)
    bad = {k: v for k, v in _status(rep).items() if v in ("fail", "error")}
    if ref.bag_sgbf_grad_bug():
        # torch < 2.14 (the GPU machine's 2.11): the target is torch CPU itself, whose embedding_bag
        # scale_grad_by_freq gradient is wrong (SPEC.md). Exactly those gradients must fail, nothing else.
        failing = [r for r in rep["results"] if r["status"] in ("fail", "error")]
        assert failing, "torch < 2.14 has the scale_grad_by_freq bug: the checker must report it"
        for r in failing:
            assert r["function"] == "embedding_bag" and r["aspect"] == "grad", r["id"]
            assert "scale_grad_by_freq=True" in r["case"], (r["id"], r["case"])
        return
    assert rep["conforms"], bad
    skipped = [r for r in rep["results"] if r["status"] == "skip"]
    assert skipped and all("strict" in r["option"] for r in skipped)
    assert rep["summary"]["pass"] > 100


def test_torch_strict_with_known_deviations_conforms():
    rep = run_conformance("torch.nn.functional", backend="torch", max_examples=8, strict=True,
                          xfails=XFAILS, only=["*::error", "*NotImplementedError*"])
    st_ = _status(rep)
    assert rep["conforms"], {k: v for k, v in st_.items() if v in ("fail", "error")}
    assert st_["embedding_bag::strict: empty offsets with non-empty input::error"] == "xfail"  # segfault caught


def test_torch_strict_without_xfails_fails():
    rep = run_conformance("torch.nn.functional", backend="torch", max_examples=5, strict=True,
                          only=["embedding::strict: max_norm <= 0::error"])
    assert not rep["conforms"]


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_target_is_caught(name):
    target, ids = BROKEN[name]
    rep = run_conformance(target, backend="torch", max_examples=50, only=ids)
    st_ = _status(rep)
    assert set(st_) == set(ids), st_  # the ids exist
    assert not rep["conforms"], f"{name} ({target.__doc__}) was not caught: {st_}"
    assert "error" not in st_.values(), st_
    failing = [r for r in rep["results"] if r["status"] == "fail"]
    assert all(r["repro"] and "import" in r["repro"] for r in failing)


def test_independent_numpy_target_conforms_via_vjp():
    rep = run_conformance("checker_targets.np_target", backend="numpy", max_examples=8)
    assert rep["gradients"] == "vjp"
    assert rep["conforms"], {k: v for k, v in _status(rep).items() if v in ("fail", "error")}


def test_target_without_gradients_reports_skip():
    rep = run_conformance("checker_targets.np_target:no_grad", backend="numpy", max_examples=5,
                          only=["embedding::sparse::*", "embedding_bag::mode='max'::*"])
    st_ = _status(rep)
    assert st_["embedding::sparse::grad"] == "skip"
    assert st_["embedding_bag::mode='max'::grad"] == "skip"
    assert st_["embedding::sparse::values"] == "pass"
    assert rep["conforms"]


def test_missing_function_reports_skip():
    rep = run_conformance("checker_targets.np_target:sparse_coalesced", backend="numpy", max_examples=20,
                          only=["embedding::sparse::grad", "embedding_bag::mode='sum'::values"])
    st_ = _status(rep)
    assert st_["embedding_bag::mode='sum'::values"] == "skip"
    assert st_["embedding::sparse::grad"] == "fail"  # coalesced sparse gradient through the vjp protocol


def test_array_api_strict_backend_runs():
    rep = run_conformance("torch.nn.functional", backend="array_api_strict", max_examples=3,
                          only=["embedding::defaults (1-D input)::values"])
    # torch cannot take array_api_strict arrays: a clear failure, not a checker error
    assert _status(rep)["embedding::defaults (1-D input)::values"] == "fail"


def test_repro_is_self_contained_and_runs(tmp_path):
    target, ids = BROKEN["pad_in_mean_divisor"]
    rep = run_conformance("checker_targets.broken:pad_in_mean_divisor", backend="torch", max_examples=50,
                          only=ids)
    fail = next(r for r in rep["results"] if r["status"] == "fail")
    script = tmp_path / "repro.py"
    script.write_text(fail["repro"])
    # pasted into `python -` with the targets importable, as a user would
    out = subprocess.run([sys.executable, "-"], input=script.read_text(), cwd=ROOT, env=_ENV, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "reference output" in out.stdout and "output:" in out.stdout
    assert "checker_targets.broken" in fail["repro"]


def test_report_markdown_and_json(tmp_path):
    rep = run_conformance(BROKEN["include_last_offset_ignored"][0], backend="torch", max_examples=5,
                          only=["embedding_bag::include_last_offset::*", "embedding::input 0-d::values"])
    md = markdown(rep)
    assert "| option | embedding | embedding grad | embedding_bag | embedding_bag grad |" in md
    assert "**FAIL**" in md and "## Failures" in md and "```python" in md
    paths = write(rep, str(tmp_path / "r.md"))
    assert sorted(os.path.basename(p) for p in paths) == ["r.json", "r.md"]
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["conforms"] is False and data["summary"]["fail"] >= 1


def test_cli_exit_status(tmp_path):
    base = [sys.executable, "-m", "xembed_conformance", "--backend", "torch", "--max-examples", "5", "-q"]
    ok = subprocess.run(base + ["--impl", "torch.nn.functional", "--only", "embedding::input N-D::*",
                                "--report", str(tmp_path / "ok")], cwd=ROOT, env=_ENV, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert (tmp_path / "ok.md").exists() and (tmp_path / "ok.json").exists()
    bad = subprocess.run(base + ["--impl", "checker_targets.broken:include_last_offset_ignored",
                                 "--only", "embedding_bag::include_last_offset::values"],
                         cwd=ROOT, env=_ENV, capture_output=True, text=True)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "```python" in bad.stdout or "import" in bad.stdout


def test_xfails_file(tmp_path):
    f = tmp_path / "x.txt"
    f.write_text("# comment\nembedding_bag::include_last_offset::values  # deliberate\n"
                 "embedding::input 0-d::*  # passes: xpass\n")
    assert load_xfails(str(f))[0] == ("embedding_bag::include_last_offset::values", "deliberate")
    rep = run_conformance(BROKEN["include_last_offset_ignored"][0], backend="torch", max_examples=5,
                          xfails=str(f), only=["embedding_bag::include_last_offset::values",
                                               "embedding::input 0-d::values"])
    st_ = _status(rep)
    assert st_ == {"embedding_bag::include_last_offset::values": "xfail", "embedding::input 0-d::values": "xpass"}
    assert rep["conforms"]


# --- the NumPy reference of SPEC's gradient formulas agrees with torch (and covers its 2.13 bug) ---

@settings(max_examples=60, deadline=None, database=None)
@given(st.data(), st.sampled_from(["embedding", "embedding_bag"]))
def test_numpy_gradient_reference_matches_torch(data, fn):
    case = draw_case(data, fn, ("float64",), shape="any", padding="any", sgbf="any", sparse="any",
                     mode="any" if fn == "embedding_bag" else "default", psw="any", ilo="any", grad=True)
    gw, gp = ref.oracle_grads(case, case.weight)
    ngw, ngp, idx, vals = ref.numpy_grads(case, case.weight)
    np.testing.assert_allclose(ngw, gw, rtol=1e-12, atol=1e-12)
    if gp is not None:
        np.testing.assert_allclose(ngp, gp, rtol=1e-12, atol=1e-12)
    if case.kwargs.get("sparse"):
        import torch
        import torch.nn.functional as F

        args, kw = ref.oracle_args(case)
        w = args[1].requires_grad_(True)
        getattr(F, fn)(*args, **kw).backward(torch.tensor(case.grad_out))
        assert w.grad._indices().reshape(-1).tolist() == idx.tolist()
        np.testing.assert_allclose(w.grad._values().numpy(), vals, rtol=1e-12, atol=1e-12)


def test_spec_example_of_the_213_bag_sgbf_bug():
    case = Case(fn="embedding_bag", weight=np.eye(8), wdtype="float64",
                input=np.array([4, 4, 2, 6, 4, 2, 1]), offsets=np.array([0, 3, 5]),
                kwargs={"mode": "sum", "scale_grad_by_freq": True}, grad_out=np.ones((3, 8)))
    gw, _, _, _ = ref.numpy_grads(case, case.weight)
    present = [1, 2, 4, 6]
    assert np.allclose(gw[present].sum(axis=1), 8.0)
    assert np.allclose(np.delete(gw, present, axis=0), 0.0)


def test_oracle_uses_numpy_formula_when_torch_has_the_bug(monkeypatch):
    real_bug = ref.bag_sgbf_grad_bug()
    monkeypatch.setattr(ref, "bag_sgbf_grad_bug", lambda: True)
    rep = run_conformance("torch.nn.functional", backend="torch", max_examples=15,
                          only=["embedding_bag::scale_grad_by_freq::grad"])
    # With the formula as oracle, a correct torch (>= 2.14) conforms and a buggy one (< 2.14) is caught.
    assert rep["conforms"] is not real_bug, rep["results"]
