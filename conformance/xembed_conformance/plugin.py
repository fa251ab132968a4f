"""The pytest plugin (entry point ``pytest11``): every check of the suite is one pytest item.

    pytest --pyargs xembed_conformance --impl=TARGET --backend=NAME [--strict] [--xfails=FILE] [-n 2]

The item's name is the check id (``function::option::aspect``), so ``-k``, ``-x``, ``-n`` (pytest-xdist),
``--junitxml`` and IDEs work as on any suite.  Verdicts: a conforming check passes; a failing one fails with its
shrunk case and a self-contained repro; a check that does not apply is skipped; a failure absorbed by the
xfails file is xfailed.  A checker-side error (a bad --impl, --backend, --only or xfails entry) stops the run at
collection (pytest's exit status 2); a checker error while checking fails its item, and the run exits with 2.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import pytest

SUITE_FILE = Path(__file__).with_name("suite.py")
PROFILES = {"fast": 50, "full": 500}
_SUITE = pytest.StashKey[Any]()
PROPERTY = "xembed_conformance"


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("xembed-conformance", "embedding / embedding_bag conformance "
                        "(pytest --pyargs xembed_conformance --impl=TARGET)")
    g.addoption("--impl", dest="xc_impl", default=None,
                help="target: MODULE, MODULE:ATTR, path/to/file.py or path/to/file.py:ATTR with `embedding` and/or "
                     "`embedding_bag` (optionally `embedding_vjp` / `embedding_bag_vjp`)")
    g.addoption("--backend", dest="xc_backend", default="numpy",
                help="array library whose arrays the target receives: numpy, torch, cupy, array_api_strict, jax, "
                     "jax-jit, dask, a registered one or module:BackendClass")
    g.addoption("--device", dest="xc_device", default=None, help="device for the backend's arrays (torch: cuda)")
    g.addoption("--conformance-strict", dest="xc_strict", action="store_true",
                help="also check the spec's own decisions where torch is unspecified or crashes; pytest >= 9's "
                     "own --strict turns this on too")
    g.addoption("--xfails", dest="xc_xfails", default=None,
                help="known-deviations file: 'CHECK-ID-GLOB | FAILURE-MESSAGE-GLOB  # reason' per line")
    g.addoption("--fail-on-stale", dest="xc_fail_on_stale", action="store_true",
                help="fail the run when an xfails entry absorbed no failure")
    g.addoption("--profile", dest="xc_profile", choices=sorted(PROFILES), default="fast",
                help="fast: 50 generated examples per check (scaled by each row's budget); full: 500")
    g.addoption("--max-examples", dest="xc_max_examples", type=int, default=None,
                help="generated examples per check (overrides --profile)")
    g.addoption("--seed", dest="xc_seed", type=int, default=0, help="hypothesis seed (a run is reproducible)")
    g.addoption("--report", dest="xc_report", default=None,
                help="write the report: PATH.md (+ PATH.json), PATH.json, or PATH (both)")
    g.addoption("--grad", dest="xc_grad", choices=["auto", "autograd", "vjp", "none"], default="auto",
                help="how gradients are obtained (auto: autograd on a backend that has it, else *_vjp)")
    g.addoption("--only", dest="xc_only", action="append", default=None, metavar="GLOB",
                help="run only checks whose id matches GLOB (repeatable; -k works too)")
    g.addoption("--no-isolation", dest="xc_no_isolation", action="store_true",
                help="call the target in pytest's process (default: a worker process restarted after a crash)")
    g.addoption("--conformance-quiet", dest="xc_quiet", action="store_true",
                help="no per-check progress letters: the summary and one line per failing check")


def _strict(config: pytest.Config) -> bool:
    return bool(config.getoption("xc_strict") or getattr(config.option, "strict", False) is True)


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("xc_impl") is not None:
        storage_default()
        config.pluginmanager.register(Run(config), "xembed_conformance_run")


def storage_default() -> None:
    """Hypothesis keeps its files in a cache directory, not in `.hypothesis/` of the current directory
    (HYPOTHESIS_STORAGE_DIRECTORY still wins).  The checks themselves use no example database (runs are
    reproducible from --seed)."""
    if os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        return
    from hypothesis import configuration

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    configuration.set_hypothesis_home_dir(str(Path(base) / "xembed-conformance" / "hypothesis"))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path == SUITE_FILE:
        return ConformanceFile.from_parent(parent, path=file_path)
    return None


class SetupFailedError(Exception):
    """A checker-side error at collection (never a verdict on the target)."""


class ConformanceFile(pytest.File):
    """The suite: one item per check id of the chosen backend."""

    def collect(self) -> list[pytest.Item]:
        from xembed_conformance.loading import SetupError, resolve_impl
        from xembed_conformance.runner import Suite, check_ids

        cfg = self.config
        impl = cfg.getoption("xc_impl")
        if str(Path.cwd()) not in sys.path:  # a target module in the current directory is importable
            sys.path.insert(0, str(Path.cwd()))
        backend, device = cfg.getoption("xc_backend"), cfg.getoption("xc_device")
        try:
            if impl is None:
                if not cfg.option.collectonly:
                    msg = "--impl is required to run the suite (--collect-only lists the checks)"
                    raise SetupFailedError(msg)
                return [CheckItem.from_parent(self, name=cid, spec=spec) for cid, spec in check_ids(backend, device)]
            n = cfg.getoption("xc_max_examples") or PROFILES[cfg.getoption("xc_profile")]
            suite = Suite(resolve_impl(impl), backend, device, strict=_strict(cfg), xfails=cfg.getoption("xc_xfails"),
                          grad=cfg.getoption("xc_grad"), isolate=not cfg.getoption("xc_no_isolation"),
                          max_examples=n, seed=cfg.getoption("xc_seed"), only=cfg.getoption("xc_only"))
        except SetupError as e:
            raise SetupFailedError(str(e)) from e
        cfg.stash[_SUITE] = suite
        cfg.add_cleanup(suite.close)
        return [CheckItem.from_parent(self, name=f"{row.fn}::{row.option}::{a}", spec=row.spec, check=(row, a))
                for row, a in suite.selected]

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:  # noqa: ARG002
        if isinstance(excinfo.value, SetupFailedError):
            return f"xembed-conformance: error: {excinfo.value}"
        return str(super().repr_failure(excinfo))


class CheckFailedError(AssertionError):
    """A check found a non-conformance (the item's failure)."""


class CheckerError(Exception):
    """The checker failed while checking (not a verdict on the target)."""


class CheckItem(pytest.Item):
    def __init__(self, *, spec: tuple[str, ...], check: Any = None, **kw: Any):
        super().__init__(**kw)
        self.spec, self.check = spec, check
        self.result: Any = None

    def runtest(self) -> None:
        suite = self.config.stash[_SUITE]
        r = suite.run(*self.check)
        self.result = r
        self.user_properties.append((PROPERTY, json.dumps({"result": asdict(r), "meta": suite.meta()}, default=str)))
        if r.status == "skip":
            pytest.skip(r.message)
        if r.status == "xfail":
            pytest.xfail(f"{r.xfail_reason} ({r.message})")
        if r.status == "fail":
            raise CheckFailedError(r.message)
        if r.status == "error":
            raise CheckerError(r.message)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:  # noqa: ARG002
        r = self.result
        if r is None or not isinstance(excinfo.value, (CheckFailedError, CheckerError)):
            return str(super().repr_failure(excinfo))
        from xembed_conformance.report import failure_text

        return failure_text(asdict(r), with_repro=self.config.getoption("tbstyle") != "line")

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.name}  [{', '.join(self.spec)}]"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """The result travels on the call report only (to the xdist controller): the teardown report, whose
    properties --junitxml records, does not carry the whole result (repro included) a second time."""
    report = yield
    if call.when == "teardown" and isinstance(item, CheckItem):
        report.user_properties = [p for p in report.user_properties if p[0] != PROPERTY]
    return report


class Run:
    """Registered per pytest run: gathers the items' results (from every xdist worker's reports) and, on the
    controller, writes the report, prints the summary and sets the exit status."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.results: list[dict[str, Any]] = []
        self.meta: dict[str, Any] = {}
        self.report: dict[str, Any] | None = None
        self.written: list[str] = []
        self.t0 = time.perf_counter()

    def pytest_report_teststatus(self, report: pytest.TestReport) -> tuple[str, str, str] | None:
        """--conformance-quiet: no progress letters (the summary lists the failing checks)."""
        if not self.config.getoption("xc_quiet") or not (report.when == "call" or report.skipped):
            return None
        if hasattr(report, "wasxfail"):
            return ("xfailed" if report.skipped else "xpassed"), "", ""
        return report.outcome, "", ""

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        if report.when == "call" and PROPERTY in props:
            data = json.loads(str(props[PROPERTY]))
            self.meta = self.meta or data["meta"]
            self.results.append(data["result"])

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if hasattr(self.config, "workerinput") or not self.results:  # an xdist worker: the controller reports
            return
        from xembed_conformance.runner import Result, build_report, check_ids, load_xfails

        cfg = self.config
        ids = check_ids(cfg.getoption("xc_backend"), cfg.getoption("xc_device"))
        order = {cid: i for i, (cid, _) in enumerate(ids)}
        results = sorted((Result(**{f.name: d[f.name] for f in fields(Result) if f.name in d}) for d in self.results),
                         key=lambda r: order.get(r.id, len(order)))
        self.report = build_report(self.meta, results, load_xfails(cfg.getoption("xc_xfails")),
                                   time.perf_counter() - self.t0, cfg.getoption("xc_fail_on_stale"))
        if cfg.getoption("xc_report"):
            from xembed_conformance.report import write

            self.written = write(self.report, cfg.getoption("xc_report"))
        if self.report["summary"]["error"]:
            session.exitstatus = pytest.ExitCode.INTERRUPTED  # 2: a checker error is never a verdict
        elif not self.report["conforms"] and exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED  # --fail-on-stale

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.report is None:
            return
        from xembed_conformance.report import summary_lines

        terminalreporter.write_line("")
        for line in summary_lines(self.report):
            terminalreporter.write_line(line)
        for p in self.written:
            terminalreporter.write_line(f"report written to {p}")
