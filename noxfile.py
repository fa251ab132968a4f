"""nox sessions: the test-suite per backend, the standard-only fallback, lint/types, and the conformance report.

    nox                          # default sessions: CPU backends, fallback, lint, conformance (+ cupy on a GPU)
    nox -s "tests(numpy)" "tests(array_api_strict)" "tests(torch)"   # CPU backends
    nox -s "tests(cupy)"        # needs a CUDA GPU and CuPy (a default session only where `nvidia-smi` works)
    nox -s fallback              # every backend through the standard-only primitives
    nox -s lint                  # ruff check . and mypy (the quality gates of .ci/run)
    nox -s conformance           # the conformance suite on xembed, one session per backend (-n 2 each)
    nox -s "conformance(torch)" -- --profile=full   # one backend; posargs go to pytest
    nox -s dask                  # the dask path on a LocalCluster (tests/test_dask.py, checker included)
    nox -s benchmarks            # the benchmark suite, quick profile (pass --full for the standard sizes)
"""

from __future__ import annotations

import shutil
import subprocess

import nox

CPU_BACKENDS = ["numpy", "array_api_strict", "torch"]
#: the conformance suite's backends that the `test` extra installs (cupy: on a GPU machine only)
CONFORMANCE_BACKENDS = [*CPU_BACKENDS, "jax", "jax-jit", "dask", "cupy"]


def _has_cuda_gpu() -> bool:
    """True when an NVIDIA driver answers (`nvidia-smi -L` lists a GPU): only then is the CuPy session a default."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    res = subprocess.run([smi, "-L"], capture_output=True, text=True, check=False)
    return res.returncode == 0 and "GPU" in res.stdout


nox.options.sessions = [*(f"tests({b})" for b in CPU_BACKENDS), "fallback", "lint",
                        *(f"conformance({b})" for b in CONFORMANCE_BACKENDS if b != "cupy")]
if _has_cuda_gpu():
    nox.options.sessions.insert(len(CPU_BACKENDS), "tests(cupy)")
    nox.options.sessions.append("conformance(cupy)")
nox.options.reuse_existing_virtualenvs = True


@nox.session
@nox.parametrize("backend", [*CPU_BACKENDS, "cupy"], ids=[*CPU_BACKENDS, "cupy"])
def tests(session: nox.Session, backend: str) -> None:
    """The test-suite with only one backend in the `xp` fixture (XEMBED_TEST_BACKENDS)."""
    extras = "test,cupy" if backend == "cupy" else "test"
    session.install("-e", f".[{extras}]", "-e", "./conformance")
    backends = "cupy,torch_cuda" if backend == "cupy" else backend
    session.run("pytest", "-n", "2", *session.posargs, env={"XEMBED_TEST_BACKENDS": backends})


@nox.session
def fallback(session: nox.Session) -> None:
    """The test-suite with the native primitives disabled: proves the standard-only path everywhere."""
    session.install("-e", ".[test]", "-e", "./conformance")
    session.run("pytest", "-n", "2", "tests", *session.posargs, env={"XEMBED_PRIMITIVES": "fallback"})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff and mypy with the configuration in pyproject.toml (what .ci/run runs after the tests)."""
    session.install("-e", ".[test]", "-e", "./conformance", "ruff", "mypy")
    session.run("ruff", "check", ".")
    session.run("mypy")


@nox.session
def dask(session: nox.Session) -> None:
    """The dask path on a distributed LocalCluster of 2 worker processes (issue 13)."""
    session.install("-e", ".[test]", "-e", "./conformance")
    session.run("pytest", "tests/test_dask.py", *session.posargs)


@nox.session
@nox.parametrize("backend", CONFORMANCE_BACKENDS, ids=CONFORMANCE_BACKENDS)
def conformance(session: nox.Session, backend: str) -> None:
    """The conformance suite (pytest --pyargs xembed_conformance) on xembed for one backend, on two workers,
    with its report in conformance-report/<backend>.md/.json (default profile unless posargs say)."""
    extras = "test,cupy" if backend == "cupy" else "test"
    session.install("-e", f".[{extras}]", "-e", "./conformance")
    session.run(
        "pytest", "--pyargs", "xembed_conformance", "--impl=xembed", f"--backend={backend}", "--conformance-strict",
        "-n", "2", "-p", "no:cacheprovider", "--conformance-quiet", "-q", "--tb=no",
        f"--report=conformance-report/{backend}", *session.posargs,
    )


@nox.session
def benchmarks(session: nox.Session) -> None:
    """The benchmark suite (ratios to torch native in the same run); `-- --full` for the standard sizes."""
    session.install("-e", ".[bench]")
    args = list(session.posargs)
    quick = [] if "--full" in args else ["--quick"]
    args = [a for a in args if a != "--full"]
    session.run("python", "-m", "benchmarks", *quick, *args)
