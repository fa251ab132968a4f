"""nox sessions for contributors: the test-suite, the other primitive paths, lint, docs, benchmarks.

    nox                          # default sessions: tests, fallback, lint, docs (+ tests-gpu on a GPU machine)
    nox -s tests                 # the test-suite on every installed CPU backend (posargs go to pytest)
    nox -s fallback              # the test-suite through the standard-only primitives
    nox -s dask                  # the dask path on a distributed LocalCluster of 2 worker processes
    nox -s lint                  # ruff check . and mypy, the quality gates of CI
    nox -s docs                  # the documentation site, warnings as errors, and numpydoc's docstring checks
    nox -s benchmarks            # the benchmark suite, quick profile (`-- --full` for the standard sizes)
    nox -s tests-gpu             # CuPy and torch CUDA (needs a CUDA GPU)
    nox -s conformance           # the conformance suite on xembed, one session per backend (-n 2 each)
    nox -s "conformance(torch)" -- --profile=full   # one backend; posargs go to pytest

`tests`, `fallback`, `dask`, `benchmarks` and `conformance` share one environment, `.nox/dev` (the `test` and
`bench` extras and the conformance suite, editable), made on first use and updated when pyproject.toml changes
(`conformance(cupy)` needs CuPy installed there too).  `lint` and `docs` have
small ones of their own: ruff and mypy with the packages mypy reads types from; Sphinx.  With `--no-venv` every
session runs in the current environment, which must then have what the session needs.

torch: on a machine without an NVIDIA GPU, torch is installed from PyTorch's CPU index
(https://download.pytorch.org/whl/cpu, a ~200 MB wheel) instead of PyPI's default CUDA build (several GB).
XEMBED_TORCH_INDEX=<url> picks another index; XEMBED_TORCH_INDEX=default keeps pip's configuration (a local
wheelhouse, a mirror).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
DEV_ENV = ROOT / ".nox" / "dev"
DEV_EXTRAS = "test,bench"
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
# The modules whose docstrings numpydoc checks (the public names of xembed live there).
PUBLIC_MODULES = ["src/xembed/_api.py", "src/xembed/_traced_checks.py", "src/xembed/_modules.py",
                  "src/xembed/_sparse.py", "src/xembed/_checkpoint.py", "src/xembed/_quantized.py",
                  "src/xembed/torch/_modules.py", "src/xembed/torch/_functional.py",
                  "src/xembed/torch/_quantized.py"]
# The libraries whose types mypy reads (torch comes first, from _install_torch): without one, its names are Any
# and strict mypy reports other errors than CI's.  Not needed: the project itself (mypy reads src/), its test
# plugins, array-api-strict, scipy, cupy, distributed (`ignore_missing_imports` in pyproject.toml).
#: the conformance suite's backends that the `test` extra installs (cupy: on a GPU machine only)
CONFORMANCE_BACKENDS = ["numpy", "array_api_strict", "torch", "jax", "jax-jit", "dask", "cupy"]
MYPY_NEEDS = ["numpy>=1.26", "pytest>=8", "hypothesis>=6.100", "numba>=0.60", "jax>=0.4.35", "dask[array]>=2024.12"]


def _has_cuda_gpu() -> bool:
    """True when an NVIDIA driver answers (`nvidia-smi -L` lists a GPU)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    res = subprocess.run([smi, "-L"], capture_output=True, text=True, check=False)
    return res.returncode == 0 and "GPU" in res.stdout


HAS_GPU = _has_cuda_gpu()
nox.options.sessions = ["tests", "fallback", "lint", "docs",
                        *(f"conformance({b})" for b in CONFORMANCE_BACKENDS if b != "cupy" or HAS_GPU),
                        *(["tests-gpu"] if HAS_GPU else [])]
nox.options.reuse_existing_virtualenvs = True


def _no_venv(session: nox.Session) -> bool:
    """`nox --no-venv`: run in the current environment, install nothing."""
    config = session._runner.global_config  # nox has no public accessor for the flag
    return bool(getattr(config, "no_venv", False)) or getattr(config, "force_venv_backend", None) == "none"


def _torch_index_args() -> list[str]:
    """pip arguments that choose where torch comes from (the module docstring says why)."""
    index = os.environ.get("XEMBED_TORCH_INDEX", "default" if HAS_GPU else CPU_TORCH_INDEX)
    return [] if index == "default" else ["--index-url", index]


def _install_torch(session: nox.Session, python: str = "python") -> None:
    """torch first, from the CPU index where there is no GPU, so that the extras then keep it."""
    session.run(python, "-m", "pip", "install", "-q", "torch>=2.14", *_torch_index_args(),
                external=True, silent=True)


def _dev_python(session: nox.Session) -> str:
    """The interpreter of the shared development environment, made or updated when needed."""
    if _no_venv(session):
        return "python"
    python = DEV_ENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    stamp = DEV_ENV / "installed.sha256"
    sources = [ROOT / "pyproject.toml", ROOT / "conformance" / "pyproject.toml"]
    wanted = hashlib.sha256(b"".join(p.read_bytes() for p in sources) + DEV_EXTRAS.encode()).hexdigest()
    if not python.exists():
        session.run("python", "-m", "venv", str(DEV_ENV), external=True)
    if not stamp.exists() or stamp.read_text() != wanted:
        session.log(f"installing .[{DEV_EXTRAS}] into {DEV_ENV.relative_to(ROOT)}")
        _install_torch(session, str(python))
        session.run(str(python), "-m", "pip", "install", "-q", "-e", f".[{DEV_EXTRAS}]", "-e", "./conformance",
                    external=True)
        stamp.write_text(wanted)
    return str(python)


def _pytest(session: nox.Session, *args: str, env: dict[str, str] | None = None) -> None:
    session.run(_dev_python(session), "-m", "pytest", *args, *session.posargs, env=env, external=True)


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """The test-suite on every installed CPU backend (XEMBED_TEST_BACKENDS=numpy,torch narrows it)."""
    _pytest(session, "-n", "2")


@nox.session(venv_backend="none")
def fallback(session: nox.Session) -> None:
    """The test-suite with the native primitives disabled: proves the standard-only path everywhere."""
    _pytest(session, "-n", "2", env={"XEMBED_PRIMITIVES": "fallback"})


@nox.session(venv_backend="none")
def dask(session: nox.Session) -> None:
    """The dask path on a distributed LocalCluster of 2 worker processes."""
    _pytest(session, "tests/test_dask.py")


@nox.session(venv_backend="none")
def benchmarks(session: nox.Session) -> None:
    """The benchmark suite (ratios to torch native in the same run); `-- --full` for the standard sizes."""
    args = list(session.posargs)
    quick = [] if "--full" in args else ["--quick"]
    args = [a for a in args if a != "--full"]
    session.run(_dev_python(session), "-m", "benchmarks", *quick, *args, external=True)


@nox.session(name="tests-gpu")
def tests_gpu(session: nox.Session) -> None:
    """The test-suite on CuPy and torch CUDA (a CUDA GPU, and the CUDA build of torch from pip's default index)."""
    if not _no_venv(session):
        session.install("-e", ".[test,cupy]", "-e", "./conformance")
    session.run("pytest", "-n", "2", *session.posargs, env={"XEMBED_TEST_BACKENDS": "cupy,torch_cuda"})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check . and mypy (strict; configuration in pyproject.toml), as CI runs them."""
    if not _no_venv(session):
        _install_torch(session)
        session.install("ruff", "mypy", *MYPY_NEEDS)
    session.run("ruff", "check", ".")
    session.run("mypy", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site in docs/_build/html (Sphinx, warnings as errors, numpydoc validation of the
    documented docstrings) and numpydoc's lint of the public modules.  The examples in the pages and docstrings
    run in the test-suite (tests/test_docs.py)."""
    if not _no_venv(session):
        _install_torch(session)  # the API page documents xembed.torch
        session.install("-e", ".[docs]")
    session.run("python", "-m", "numpydoc", "lint", *PUBLIC_MODULES)
    session.run("python", "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "docs", "docs/_build/html",
                *session.posargs)


@nox.session(venv_backend="none")
@nox.parametrize("backend", CONFORMANCE_BACKENDS, ids=CONFORMANCE_BACKENDS)
def conformance(session: nox.Session, backend: str) -> None:
    """The conformance suite (pytest --pyargs xembed_conformance) on xembed for one backend, on two workers,
    with its report in conformance-report/<backend>.md/.json (default profile unless posargs say)."""
    session.run(
        _dev_python(session), "-m", "pytest", "--pyargs", "xembed_conformance", "--impl=xembed",
        f"--backend={backend}", "--conformance-strict", "-n", "2", "-p", "no:cacheprovider", "--conformance-quiet",
        "-q", "--tb=no", f"--report=conformance-report/{backend}", *session.posargs, external=True,
    )
