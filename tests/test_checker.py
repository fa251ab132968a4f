"""The checker's own tests: it must pass the reference, catch every broken target, and produce
runnable reproductions.  Kept fast (small max_examples, selected rows)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from checker_targets.broken import BROKEN, CRASHING
from checker_targets.ext_broken import EXT_BROKEN
from hypothesis import given, settings
from hypothesis import strategies as st

import xembed_conformance
from xembed_conformance import reference as ref
from xembed_conformance.cases import Case
from xembed_conformance.loading import SetupError
from xembed_conformance.report import markdown, write
from xembed_conformance.runner import load_xfails, run_conformance
from xembed_conformance.strategies import Want, cases

ROOT = Path(__file__).resolve().parent.parent
XFAILS = str(Path(xembed_conformance.__file__).parent / "xfails" / "torch_strict.txt")
# subprocesses import the checker targets from tests/ (the package itself is installed)
_ENV = {**os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")]))}


def _status(rep: dict[str, Any]) -> dict[str, str]:
    return {r["id"]: r["status"] for r in rep["results"]}


@pytest.mark.heavy
def test_torch_reference_conforms() -> None:
    rep = run_conformance("torch.nn.functional", backend="torch", max_examples=12)
    bad = {k: v for k, v in _status(rep).items() if v in ("fail", "error")}
    if ref.bag_sgbf_grad_bug():
        # torch < 2.14 (the GPU machine's 2.11): the target is torch CPU itself, whose embedding_bag
        # scale_grad_by_freq gradient is wrong (docs/spec.md). Exactly those gradients must fail, nothing else.
        failing = [r for r in rep["results"] if r["status"] in ("fail", "error")]
        assert failing, "torch < 2.14 has the scale_grad_by_freq bug: the checker must report it"
        for r in failing:
            assert r["function"] == "embedding_bag", r["id"]
            assert r["aspect"] == "grad", r["id"]
            assert "scale_grad_by_freq=True" in r["case"], (r["id"], r["case"])
        return
    assert rep["conforms"], bad
    skipped = [r for r in rep["results"] if r["status"] == "skip"]
    assert skipped
    assert all("strict" in r["option"] for r in skipped)
    assert rep["summary"]["pass"] > 100


@pytest.mark.heavy
def test_torch_strict_with_known_deviations_conforms() -> None:
    # 40: an error row spends 12 examples, 6 of them boundary examples; the segfault needs generated ones
    rep = run_conformance("torch.nn.functional", backend="torch", max_examples=40, strict=True,
                          xfails=XFAILS, only=["*::error", "*weighted mean*"])
    st_ = _status(rep)
    assert rep["conforms"], {k: v for k, v in st_.items() if v in ("fail", "error")}
    assert st_["embedding_bag::strict: empty offsets with non-empty input::error"] == "xfail"  # segfault caught


def test_torch_strict_without_xfails_fails() -> None:
    rep = run_conformance("torch.nn.functional", backend="torch", max_examples=5, strict=True,
                          only=["embedding::strict: max_norm <= 0::error"])
    assert not rep["conforms"]


def _exec_repro(repro: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Run a generated repro in this process: it must end with its verdict, reproduced (exit status 1)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        exec(compile(repro, "<repro>", "exec"), {"__name__": "__repro__"})  # noqa: S102 - the generated snippet
    verdict = capsys.readouterr().out.strip().splitlines()[-1]
    assert exc.value.code == 1, verdict
    return verdict


@pytest.mark.heavy
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_target_is_caught(name: str, seed: int, capsys: pytest.CaptureFixture[str]) -> None:
    """Every deliberately broken target is caught at the default profile (50 examples) from seeds 0-4, and every
    generated repro -- which needs only the target, NumPy and torch -- reproduces the same failure."""
    target, ids = BROKEN[name]
    rep = run_conformance(f"checker_targets.broken:{name}", backend="torch", max_examples=50, only=ids, seed=seed,
                          isolate=False)
    st_ = _status(rep)
    assert not rep["conforms"], f"{name} ({target.__doc__}) was not caught with seed {seed}: {st_}"
    assert "error" not in st_.values(), st_
    failing = [r for r in rep["results"] if r["status"] == "fail"]
    for r in failing:
        assert "checker_targets.broken" in r["repro"]
        assert "xembed_conformance" not in r["repro"]
        assert r["repro"].rstrip().endswith("raise SystemExit(1 if problem else 0)")
        assert r["case"]
        assert r["hypothesis_notes"]
        assert any(n.startswith("Draw 1 (case (final arguments") for n in r["hypothesis_notes"])  # boundary too
        if seed == 0:
            verdict = _exec_repro(r["repro"], capsys)
            assert verdict.startswith("verdict: DOES NOT CONFORM -- " + r["cause"]), (verdict, r["message"])


@pytest.mark.heavy
def test_crashing_target_is_isolated(tmp_path: Path) -> None:
    """A segfaulting target: the crash is a failing check with case and repro, the run goes on, the report is
    written, and the repro crashes the same way."""
    _target, ids = CRASHING
    rep = run_conformance("checker_targets.broken:segfaults_on_long_inputs", backend="torch", max_examples=20,
                          only=[*ids, "embedding_bag::mode='max'::values"])
    st_ = _status(rep)
    crashed = [r for r in rep["results"] if r["message"].startswith("crash:")]
    assert crashed, st_
    assert st_["embedding_bag::mode='max'::values"] in ("pass", "fail")  # the run went on after the crash
    assert rep["worker_restarts"] >= 1
    paths = write(rep, str(tmp_path / "crash.md"))
    assert all(Path(p).exists() for p in paths)
    script = tmp_path / "repro.py"
    script.write_text(crashed[0]["repro"])
    out = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=_ENV, check=False, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode < 0, (out.returncode, out.stderr[-2000:])  # killed by a signal, as in the run


@pytest.mark.heavy
def test_independent_numpy_target_conforms_via_vjp() -> None:
    rep = run_conformance("checker_targets.np_target", backend="numpy", max_examples=8)
    assert rep["gradients"] == "vjp"
    assert rep["conforms"], {k: v for k, v in _status(rep).items() if v in ("fail", "error")}


def test_target_without_gradients_reports_skip() -> None:
    rep = run_conformance("checker_targets.np_target:no_grad", backend="numpy", max_examples=5,
                          only=["embedding::sparse::*", "embedding_bag::mode='max'::*"])
    st_ = _status(rep)
    assert st_["embedding::sparse::grad"] == "skip"
    assert st_["embedding_bag::mode='max'::grad"] == "skip"
    assert st_["embedding::sparse::values"] == "pass"
    assert rep["conforms"]


def test_missing_function_reports_skip() -> None:
    rep = run_conformance("checker_targets.np_target:sparse_coalesced", backend="numpy", max_examples=20,
                          only=["embedding::sparse::grad", "embedding_bag::mode='sum'::values"])
    st_ = _status(rep)
    assert st_["embedding_bag::mode='sum'::values"] == "skip"
    assert st_["embedding::sparse::grad"] == "fail"  # coalesced sparse gradient through the vjp protocol


def test_array_api_strict_backend_runs() -> None:
    rep = run_conformance("torch.nn.functional", backend="array_api_strict", max_examples=3,
                          only=["embedding::defaults (1-D input)::values"])
    # torch cannot take array_api_strict arrays: a clear failure, not a checker error
    assert _status(rep)["embedding::defaults (1-D input)::values"] == "fail"


def test_repro_is_self_contained_and_runs(tmp_path: Path) -> None:
    """A repro pasted into `python -` reproduces the failure without the checker: it prints the expected values
    and ends with its verdict (exit status 1)."""
    rep = run_conformance("checker_targets.broken:pad_in_mean_divisor", backend="torch", max_examples=50,
                          only=BROKEN["pad_in_mean_divisor"][1])
    fail = next(r for r in rep["results"] if r["status"] == "fail")
    out = subprocess.run([sys.executable, "-"], input=fail["repro"], cwd=tmp_path, env=_ENV, check=False,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stderr
    assert "reference output" in out.stdout
    assert "expected output:" in out.stdout
    assert out.stdout.strip().splitlines()[-1].startswith("verdict: DOES NOT CONFORM -- output: "), out.stdout


def test_repro_literals_keep_shape_and_dtype() -> None:
    from xembed_conformance.backends import make_backend, numpy_literal

    for a in (np.zeros((0, 1), np.int64), np.zeros((2, 0, 3)), np.asarray(5), np.arange(1000).reshape(10, 100),
              np.asarray([True, False])):
        b = eval(numpy_literal(a), {"np": np, "zlib": __import__("zlib"), "base64": __import__("base64")})
        assert b.shape == a.shape
        assert b.dtype.kind == a.dtype.kind
        assert np.array_equal(a, b)
    for name in ("numpy", "torch", "array_api_strict"):
        be = make_backend(name)
        expr = be.repro_array(np.zeros((0, 1)), "float32")
        ns = {"np": np}
        exec(be.repro_import(), ns)  # noqa: S102
        x = eval(expr, ns)
        assert tuple(x.shape) == (0, 1)
        assert be.dtype_name(x) == "float32"


def test_report_markdown_and_json(tmp_path: Path) -> None:
    rep = run_conformance(BROKEN["include_last_offset_ignored"][0], backend="torch", max_examples=5,
                          only=["embedding_bag::include_last_offset::*", "embedding::input 0-d::values"])
    md = markdown(rep)
    assert "| option | embedding | embedding grad | embedding_bag | embedding_bag grad |" in md
    assert "**FAIL**" in md
    assert "## Failures" in md
    assert "```python" in md
    paths = write(rep, str(tmp_path / "r.md"))
    assert sorted(Path(p).name for p in paths) == ["r.json", "r.md"]
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["conforms"] is False
    assert data["summary"]["fail"] >= 1


def test_cli_exit_status(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "xembed_conformance", "--backend", "torch", "--max-examples", "5", "-q"]
    ok = subprocess.run([*base, "--impl", "torch.nn.functional", "--only", "embedding::input N-D::*",
                         "--report", str(tmp_path / "ok")], cwd=ROOT, env=_ENV, check=False, capture_output=True,
                        text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert (tmp_path / "ok.md").exists()
    assert (tmp_path / "ok.json").exists()
    bad = subprocess.run([*base, "--impl", "checker_targets.broken:include_last_offset_ignored",
                          "--only", "embedding_bag::include_last_offset::values"],
                         cwd=ROOT, env=_ENV, check=False, capture_output=True, text=True)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "FAIL embedding_bag::include_last_offset::values" in bad.stdout  # quiet: one line per failing check
    assert "import" not in bad.stdout  # the repros are in the report, not on the terminal


@pytest.mark.parametrize("argv", [
    ["--impl", "no_such_module_xyz"],
    ["--impl", "torch.nn.functional:no_such_attr"],
    ["--impl", "torch.nn.functional", "--backend", "no_such_backend"],
    ["--impl", "torch.nn.functional", "--only", "embedding::no such row::*"],
    ["--impl", "/nonexistent/target.py"],
])
def test_cli_checker_side_errors_exit_2(argv: list[str]) -> None:
    out = subprocess.run([sys.executable, "-m", "xembed_conformance", "--max-examples", "2", *argv], cwd=ROOT,
                         env=_ENV, check=False, capture_output=True, text=True)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "xembed-conformance: error:" in out.stderr
    assert "Traceback" not in out.stderr


def test_cli_file_target_quiet_progress_and_stale_xfails(tmp_path: Path) -> None:
    """--impl takes a .py path (run from another directory); -q prints progress lines; a stale xfails entry is
    reported, and --fail-on-stale turns it into exit status 1; an entry matching no check id exits 2."""
    target = tmp_path / "t" / "my_target.py"
    target.parent.mkdir()
    target.write_text("from torch.nn.functional import embedding, embedding_bag\n")
    xf = tmp_path / "x.txt"
    xf.write_text("embedding::input N-D::values | output: *  # stale: it passes\n")
    base = [sys.executable, "-m", "xembed_conformance", "--impl", str(target), "--backend", "torch",
            "--max-examples", "3", "-q", "--only", "embedding::input N-D::*", "--xfails", str(xf)]
    ok = subprocess.run(base, cwd=tmp_path, env=_ENV, check=False, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "my_target.py on torch: CONFORMS" in ok.stdout
    assert "stale xfails entry, line 1" in ok.stdout
    stale = subprocess.run([*base, "--fail-on-stale"], cwd=tmp_path, env=_ENV, check=False, capture_output=True,
                           text=True)
    assert stale.returncode == 1, stale.stdout + stale.stderr
    xf.write_text("embedding::no such check::values | *  # matches nothing\n")
    assert subprocess.run(base, cwd=tmp_path, env=_ENV, check=False, capture_output=True, text=True).returncode == 2
    xf.write_text("embedding::input N-D::values  # no message glob\n")
    assert subprocess.run(base, cwd=tmp_path, env=_ENV, check=False, capture_output=True, text=True).returncode == 2


def test_xfails_file_is_scoped_by_check_and_message(tmp_path: Path) -> None:
    f = tmp_path / "x.txt"
    f.write_text("# comment\nembedding_bag::include_last_offset::values | output: shape *  # deliberate\n"
                 "embedding::input 0-d::* | *  # passes: xpass\n")
    x = load_xfails(str(f))[0]
    assert (x.check, x.message, x.reason) == ("embedding_bag::include_last_offset::values", "output: shape *",
                                              "deliberate")
    ids = ["embedding_bag::include_last_offset::values", "embedding::input 0-d::values"]
    rep = run_conformance("checker_targets.broken:include_last_offset_ignored", backend="torch", max_examples=5,
                          xfails=str(f), only=ids, isolate=False)
    st_ = _status(rep)
    assert st_ == {ids[0]: "xfail", ids[1]: "xpass"}
    assert rep["conforms"]
    assert [s["entry"] for s in rep["stale_xfails"]] == ["embedding::input 0-d::* | *"]
    # the same check with another failure message is NOT absorbed: one entry cannot hide another bug
    f.write_text("embedding_bag::include_last_offset::values | output: value at *  # another bug\n")
    rep = run_conformance("checker_targets.broken:include_last_offset_ignored", backend="torch", max_examples=5,
                          xfails=str(f), only=ids[:1], isolate=False)
    assert _status(rep) == {ids[0]: "fail"}
    assert not rep["conforms"]
    with pytest.raises(SetupError):
        run_conformance("torch.nn.functional", backend="torch", only=["nothing::matches"])


EXT_ROWS = ["embedding_bag::mode='sqrtn'::*", "embedding_bag::mode='sqrtn' × per_sample_weights::*",  # noqa: RUF001
            "embedding_bag::mode='min'::*", "embedding_bag::empty bags × mode='min'::*",  # noqa: RUF001
            "embedding_bag::weighted mean (per_sample_weights × mode='mean')::*",  # noqa: RUF001
            "embedding_bag::lengths= (instead of offsets)::*"]


def test_extension_not_offered_is_not_a_failure() -> None:
    """EXT-CHECKER: torch.nn.functional offers none of the extensions beyond torch: every row (values and grad) is
    "not offered", and the run conforms."""
    rep = run_conformance("torch.nn.functional", backend="torch", max_examples=10, only=EXT_ROWS)
    st_ = _status(rep)
    assert len(st_) == 12
    assert set(st_.values()) == {"not offered"}, st_
    assert rep["conforms"]


def test_xembed_offers_and_matches_the_extensions() -> None:
    """EXT-SQRTN*, EXT-WMEAN*, EXT-MIN*, EXT-LENGTHS, EXT-PAD, EXT-SGBF, EXT-SPARSE, EXT-CHECKER: xembed (NumPy,
    gradients through its vjp) matches the float64 reference on every extension row, values and gradients."""
    rep = run_conformance("xembed", backend="numpy", max_examples=25, strict=True, only=EXT_ROWS)
    st_ = _status(rep)
    assert len(st_) == 12
    assert set(st_.values()) == {"extension"}, {r["id"]: r["message"] for r in rep["results"]
                                                if r["status"] != "extension"}
    assert rep["conforms"]


@pytest.mark.heavy
@pytest.mark.parametrize("name", sorted(EXT_BROKEN))
def test_broken_extension_target_is_caught(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """EXT-SQRTN / EXT-WMEAN / EXT-WMEAN-GRAD: a target that offers an extension with the wrong divisor (or the
    wrong per_sample_weights gradient) fails exactly the rows that check it; the other rows still pass."""
    target, ids = EXT_BROKEN[name]
    rep = run_conformance(f"checker_targets.ext_broken:{name}", backend="numpy", max_examples=30, only=EXT_ROWS,
                          isolate=False)
    st_ = _status(rep)
    assert {i for i, s in st_.items() if s == "fail"} == set(ids), st_
    assert not rep["conforms"]
    assert target.__doc__
    for r in rep["results"]:  # the repro (lengths passed as an array, no torch reference call) reproduces it
        if r["status"] == "fail":
            verdict = _exec_repro(r["repro"], capsys)
            assert verdict.startswith("verdict: DOES NOT CONFORM -- " + r["cause"]), (verdict, r["message"])


def test_registered_backend_is_used_without_touching_the_checker() -> None:
    from xembed_conformance.backends import NumpyBackend, register_backend

    class Float64Only(NumpyBackend):
        name = "numpy64"
        float_dtypes: tuple[str, ...] = ("float64",)

    register_backend("numpy64", Float64Only, replace=True)
    rep = run_conformance("checker_targets.np_target", backend="numpy64", max_examples=3,
                          only=["embedding::defaults (1-D input)::*", "embedding::weight float*"], isolate=False)
    assert rep["backend"] == "numpy64"
    assert rep["conforms"], rep["results"]
    assert {r["id"] for r in rep["results"]} == {"embedding::defaults (1-D input)::values",
                                                 "embedding::defaults (1-D input)::grad",
                                                 "embedding::weight float64::values", "embedding::weight float64::grad"}


# --- the NumPy reference of docs/spec.md's gradient formulas (GRAD-*) agrees with torch (and covers its 2.13 bug) ---

@settings(max_examples=60, deadline=None, database=None)
@given(st.data(), st.sampled_from(["embedding", "embedding_bag"]))
def test_numpy_gradient_reference_matches_torch(data: st.DataObject, fn: str) -> None:
    want = Want(fn, shape="any", padding="any", sgbf="any", sparse="any", psw="any", ilo="any", grad=True,
                mode="any" if fn == "embedding_bag" else "default")
    case = data.draw(cases(want, ("float64",)))
    gw, gp = ref.oracle_grads(case, case.weight)
    ngw, ngp, idx, vals = ref.numpy_grads(case, case.weight)
    np.testing.assert_allclose(ngw, gw, rtol=1e-12, atol=1e-12)
    if gp is not None:
        assert ngp is not None
        np.testing.assert_allclose(ngp, gp, rtol=1e-12, atol=1e-12)
    if case.kwargs.get("sparse"):
        import torch
        import torch.nn.functional as F  # noqa: N812 - torch's customary name

        args, kw = ref.oracle_args(case)
        w = args[1].requires_grad_(True)
        getattr(F, fn)(*args, **kw).backward(torch.tensor(case.grad_out))
        assert w.grad._indices().reshape(-1).tolist() == idx.tolist()
        np.testing.assert_allclose(w.grad._values().numpy(), vals, rtol=1e-12, atol=1e-12)


def test_spec_example_of_the_213_bag_sgbf_bug() -> None:
    case = Case(fn="embedding_bag", weight=np.eye(8), wdtype="float64",
                input=np.array([4, 4, 2, 6, 4, 2, 1]), offsets=np.array([0, 3, 5]),
                kwargs={"mode": "sum", "scale_grad_by_freq": True}, grad_out=np.ones((3, 8)))
    gw, _, _, _ = ref.numpy_grads(case, case.weight)
    present = [1, 2, 4, 6]
    assert np.allclose(gw[present].sum(axis=1), 8.0)
    assert np.allclose(np.delete(gw, present, axis=0), 0.0)


def test_oracle_uses_numpy_formula_when_torch_has_the_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    real_bug = ref.bag_sgbf_grad_bug()
    monkeypatch.setattr(ref, "bag_sgbf_grad_bug", lambda: True)
    rep = run_conformance("torch.nn.functional", backend="torch", max_examples=15,
                          only=["embedding_bag::scale_grad_by_freq::grad"])
    # With the formula as oracle, a correct torch (>= 2.14) conforms and a buggy one (< 2.14) is caught.
    assert rep["conforms"] is not real_bug, rep["results"]


# --------------------------------------------------------------------------------------------------------
# immutable weights with max_norm: the max / min winner among rows within the renorm's rounding latitude
# --------------------------------------------------------------------------------------------------------

def _observed(values: np.ndarray) -> Any:
    from xembed_conformance.execute import Observed

    return Observed(True, "ndarray", tuple(values.shape), "float16", "cpu", values)


def _max_case(input_: list[int], offsets: list[int], weight: np.ndarray) -> Case:
    n_bags = len(offsets)
    return Case("embedding_bag", weight, "float16", np.asarray(input_, np.int64), offsets=np.asarray(offsets, np.int64),
                kwargs={"mode": "max", "max_norm": 1.0}, grad_out=np.ones((n_bags, weight.shape[1])))


def _winner_gradient(case: Case, actual: np.ndarray, bound: np.ndarray | None) -> np.ndarray:
    from xembed_conformance.checks.core import Tolerance
    from xembed_conformance.checks.gradients import near_tie_winners

    exp_gw, _ = ref.oracle_grads(case, case.weight)
    return near_tie_winners(case, {"grad_weight": _observed(actual)}, case.weight, bound, exp_gw,
                            Tolerance.for_case(case, 1, accumulate_f32=False))


def test_near_tie_winner_accepted_only_among_candidates() -> None:
    """Rows 0 and 1 are within the latitude of each other in column 0 (either may win there); row 2 is far below.
    Column 1 has a clear winner: its gradient must stay exactly where the reference puts it."""
    w = np.array([[0.5, 0.1], [0.5 - 1e-4, 0.4], [0.0, 0.0]])
    case = _max_case([0, 1, 2], [0], w)
    bound = np.full(w.shape, 1e-3)
    exp_gw, _ = ref.oracle_grads(case, w)
    np.testing.assert_array_equal(exp_gw, [[1, 0], [0, 1], [0, 0]])
    other_winner = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])  # column 0 went to row 1: allowed
    np.testing.assert_array_equal(_winner_gradient(case, other_winner, bound), other_winner)
    far_row = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # column 0 went to row 2: not a candidate
    np.testing.assert_array_equal(_winner_gradient(case, far_row, bound), exp_gw)
    # no latitude (a mutable weight, or no max_norm): the reference's winner only
    np.testing.assert_array_equal(_winner_gradient(case, other_winner, None), exp_gw)


def test_near_tie_identical_rows_stay_exact_and_zero_bags() -> None:
    """Two identical rows renorm identically: their tie goes to the first occurrence (no latitude); zero bags
    (empty offsets, found by the jax checker run) leave nothing to relax."""
    w = np.array([[0.5, 0.5], [0.5, 0.5], [0.0, 0.0]])
    case = _max_case([1, 0], [0], w)
    wrong = np.array([[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]])  # ties to the later occurrence
    exp_gw = _winner_gradient(case, wrong, np.full(w.shape, 1e-3))
    np.testing.assert_array_equal(exp_gw, [[0, 0], [1, 1], [0, 0]])
    empty = Case("embedding_bag", w, "float16", np.zeros(0, np.int64), offsets=np.zeros(0, np.int64),
                 kwargs={"mode": "max", "max_norm": 1.0}, grad_out=np.ones((0, 2)))
    np.testing.assert_array_equal(_winner_gradient(empty, np.zeros_like(w), np.full(w.shape, 1e-3)), 0.0)


# --------------------------------------------------------------------------------------------------------
# the pytest suite (pytest --pyargs xembed_conformance) and its thin wrapper
# --------------------------------------------------------------------------------------------------------

def _suite(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The suite as a user runs it: pytest in a directory of their own, the target importable from there."""
    from xembed_conformance.cli import _plugin_args

    cmd = [sys.executable, "-m", "pytest", "--pyargs", "xembed_conformance", "-p", "no:cacheprovider",
           "-W", "error", *_plugin_args(), *args]
    return subprocess.run(cmd, cwd=cwd, env=_ENV, check=False, capture_output=True, text=True, timeout=600)


def test_suite_collects_every_check_without_a_target(tmp_path: Path) -> None:
    from xembed_conformance.runner import check_ids

    out = _suite(["--collect-only", "-q", "--backend=torch"], tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    listed = [line.split("suite.py::", 1)[1] for line in out.stdout.splitlines() if "suite.py::" in line]
    assert listed == [cid for cid, _ in check_ids("torch")]
    assert _suite(["-q"], tmp_path).returncode == 2  # running needs --impl: a checker-side error


@pytest.mark.heavy
def test_suite_verdicts_xdist_junitxml_and_no_litter(tmp_path: Path) -> None:
    """The Done-when command from an empty directory: a file target, -n 2, --junitxml; exit 0 on torch, 1 on a
    broken target, with the failing check named in the JUnit XML and one line per failing check in the summary;
    nothing left in the directory but what was asked (no .hypothesis/, no .pytest_cache/)."""
    good = tmp_path / "good_target.py"
    good.write_text("from torch.nn.functional import embedding, embedding_bag\n")
    bad = tmp_path / "bad_target.py"
    bad.write_text("from checker_targets.broken import include_last_offset_ignored as t\n"
                   "embedding, embedding_bag = t.embedding, t.embedding_bag\n")
    common = ["--backend=torch", "-n", "2", "--max-examples=4", "-k", "include_last_offset or 0-d"]
    ok = _suite([f"--impl={good.name}", *common, "--junitxml=ok.xml"], tmp_path)
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
    assert "good_target.py on torch: CONFORMS" in ok.stdout
    fail = _suite([f"--impl={bad}", *common, "--junitxml=bad.xml", "--report=rep", "--conformance-quiet", "-q",
                   "--tb=no"], tmp_path)
    assert fail.returncode == 1, fail.stdout[-3000:] + fail.stderr[-3000:]
    assert "    FAIL embedding_bag::include_last_offset::values — output: shape" in fail.stdout
    xml = (tmp_path / "bad.xml").read_text()
    assert 'failures="0"' not in xml
    assert "include_last_offset" in xml
    assert json.loads((tmp_path / "rep.json").read_text())["conforms"] is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.xml", "bad_target.py", "good_target.py", "ok.xml",
                                                           "rep.json", "rep.md"]


def test_suite_groups_a_grad_failure_under_its_values_failure() -> None:
    from xembed_conformance.report import group_failures, summary_lines

    def res(cid: str, cause: str, message: str) -> dict[str, Any]:
        return {"id": cid, "aspect": cid.rsplit("::", 1)[1], "status": "fail", "cause": cause,
                "message": f"{cause}: {message}"}

    results = [res("embedding::scale::values", "output", "value at (0, 17) is 0.0, expected 1.25"),
               res("embedding::scale::grad", "output", "value at (2, 33) is 0.0, expected -0.5"),
               res("embedding::wide::values", "output", "value at (1, 9) is 0.0, expected 2.0"),
               res("embedding::sparse::grad", "sparse grad_weight layout", "indices [0], expected [0, 0]"),
               res("embedding::0-d::values", "call", "raised NotImplementedError: no"),
               res("embedding::0-d::grad", "vjp call", "raised NotImplementedError: no")]
    groups = group_failures(results)
    assert [[r["id"] for r, _ in g] for g in groups] == [
        ["embedding::scale::values", "embedding::wide::values", "embedding::scale::grad"],
        ["embedding::sparse::grad"], ["embedding::0-d::values", "embedding::0-d::grad"]]
    assert "as in `embedding::scale::values`" in groups[0][2][1]
    lines = summary_lines({"target": "t", "backend": "numpy", "conforms": False, "stale_xfails": [],
                           "summary": {"pass": 3, "fail": 6, "error": 0}, "results": results})
    assert lines[0] == "xembed-conformance: t on numpy: DOES NOT CONFORM (pass: 3, fail: 6)"
    assert sum(line.startswith("    FAIL ") for line in lines) == 6


def _package_imports() -> dict[str, set[str]]:
    """Each module of xembed_conformance -> the package's modules that importing it runs: its parent packages and
    what it imports, function-level imports included (``from xembed_conformance import reference`` counts as
    importing ``reference``), except inside a module's ``__getattr__`` (PEP 562: runs when that attribute is
    asked for, never while importing)."""
    import ast

    root = Path(xembed_conformance.__file__).parent
    names = {".".join(p.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__"): p
             for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        lazy = {id(n) for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "__getattr__"
                for n in ast.walk(f)}
        deps = {name.rsplit(".", k)[0] for k in range(1, name.count(".") + 1)}
        for node in ast.walk(tree):
            if id(node) in lazy:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.module in names:
                subs = {f"{node.module}.{a.name}" for a in node.names} & names.keys()
                deps |= subs or {node.module}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names} & names.keys()
        graph[name] = deps - {name}
    return graph


def test_the_package_import_graph_is_a_dag() -> None:
    graph = _package_imports()
    assert "xembed_conformance.loading" in graph["xembed_conformance.isolation"]
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        assert name not in path, "import circle: " + " -> ".join([*path[path.index(name):], name])
        if name not in done:
            for dep in sorted(graph[name]):
                visit(dep, [*path, name])
            done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_keras_rs_target_without_keras_rs_is_a_clear_setup_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped Keras-RS target is optional: without keras-rs, loading it is a checker-side error naming what
    to install (exit status 2 from the command), never a crash."""
    from xembed_conformance.loading import load_target

    pytest.importorskip("jax")
    monkeypatch.setitem(sys.modules, "keras_rs", None)  # import keras_rs raises ImportError
    monkeypatch.delitem(sys.modules, "xembed_conformance.targets.keras_rs", raising=False)
    with pytest.raises(SetupError, match=r"needs keras and keras-rs \(pip install keras keras-rs\)"):
        load_target("xembed_conformance.targets.keras_rs")


def test_a_jax_run_gives_back_jax_settings() -> None:
    """The checker's JAX backends switch on float64 and a compilation cache for the run only: a process that runs
    the checker in-process (a test session, a notebook) keeps its own dtypes and cache afterwards."""
    import jax

    before = {name: getattr(jax.config, name) for name in ("jax_enable_x64", "jax_compilation_cache_dir",
                                                           "jax_persistent_cache_min_compile_time_secs")}
    rep = run_conformance("xembed", backend="jax", max_examples=1, isolate=False,
                          only=["embedding::defaults (1-D input)::values"])
    assert rep["summary"]["pass"] == 1, rep["summary"]
    assert {name: getattr(jax.config, name) for name in before} == before
