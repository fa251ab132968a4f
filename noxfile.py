"""nox sessions: the test-suite per backend, the standard-only fallback, and the conformance report.

    nox -s "tests(numpy)" "tests(array_api_strict)" "tests(torch)"   # CPU backends
    nox -s "tests(cupy)"        # needs a CUDA GPU and CuPy
    nox -s fallback              # every backend through the standard-only primitives
    nox -s conformance           # the conformance report for xembed on every installed backend
    nox -s dask                  # the dask path on a LocalCluster (tests/test_dask.py, checker included)
    nox -s benchmarks            # the benchmark suite, quick profile (pass --full for the standard sizes)
"""

import nox

nox.options.sessions = ["tests", "fallback", "conformance"]
nox.options.reuse_existing_virtualenvs = True

BACKENDS = ["numpy", "array_api_strict", "torch"]


@nox.session
@nox.parametrize("backend", BACKENDS + ["cupy"])
def tests(session, backend):
    """The test-suite with only one backend in the `xp` fixture (XEMBED_TEST_BACKENDS)."""
    extras = "test,cupy" if backend == "cupy" else "test"
    session.install("-e", f".[{extras}]")
    backends = "cupy,torch_cuda" if backend == "cupy" else backend
    session.run("pytest", "-n", "2", *session.posargs, env={"XEMBED_TEST_BACKENDS": backends})


@nox.session
def fallback(session):
    """The test-suite with the native primitives disabled: proves the standard-only path everywhere."""
    session.install("-e", ".[test]")
    session.run("pytest", "-n", "2", "tests", *session.posargs, env={"XEMBED_PRIMITIVES": "fallback"})


@nox.session
def dask(session):
    """The dask path on a distributed LocalCluster of 2 worker processes (issue 13)."""
    session.install("-e", ".[test]")
    session.run("pytest", "tests/test_dask.py", *session.posargs)


@nox.session
def conformance(session):
    """The conformance report for xembed on every installed backend (fast profile unless posargs say)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "xembed_conformance", "--impl", "xembed", "--backend", "all", "--strict",
                "--report", "conformance-report", *session.posargs)


@nox.session
def benchmarks(session):
    """The benchmark suite (ratios to torch native in the same run); `-- --full` for the standard sizes."""
    session.install("-e", ".[bench]")
    args = list(session.posargs)
    quick = [] if "--full" in args else ["--quick"]
    args = [a for a in args if a != "--full"]
    session.run("python", "-m", "benchmarks", *quick, *args)
