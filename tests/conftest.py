"""Fixtures: ``backend`` (parametrised over every array library xembed supports), ``xp`` and ``device``.

``XEMBED_TEST_BACKENDS=numpy,torch`` restricts the backends (see ``xembed_testutils.selected_backends``).

Skips are decided at collection, by markers, never inside test bodies:

* ``needs_backend(name)`` (put on every ``backend`` param, and on tests that need one backend): a test that
  needs a backend not usable here (library not installed, no CUDA device) or not selected is **deselected**,
  and the run ends with one line per reason (``xembed: 212 tests deselected: backend cupy unavailable (cupy is
  not installed)``) instead of one ``-ra`` line per test function.
* a ``dtype`` parameter the backend lacks (bfloat16 on NumPy, float16 on array-api-strict): skip marker with one
  reason string per (backend, dtype), so ``-ra`` folds them.
* ``skip_backend(name, reason=..., primitives=None)``: a test that does not apply to one backend (a skip marker,
  folded by -ra); with ``primitives="fallback"``, only under that param of the ``primitives`` fixture.

GPU backends also carry the ``gpu`` marker so ``-m "not gpu"`` / ``-m gpu`` select them.

Tests marked ``heavy`` or ``heavy(seconds)`` (whole conformance-checker runs, up to minutes each) are collected
first, the longest first: ``pytest -n 2`` (pytest-xdist's default ``load`` scheduling) deals the first tests out
in turn, so the heavy ones are shared between the workers from the start and the thousands of short tests fill in
around them, instead of one worker running them alone at the end.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import numpy as np
import pytest
from xembed_testutils import Backend, selected_backends

BACKEND_PARAMS = [b.pytest_param() for b in selected_backends()]
_DESELECTED: Counter[str] = Counter()


def _deselect_reason(item: pytest.Item) -> str | None:
    selected = set(selected_backends())
    for mark in item.iter_markers("needs_backend"):
        b = Backend(mark.args[0])
        reason = b.unavailable_reason()
        if reason is not None:
            return f"backend {b.value} unavailable ({reason})"
        if b not in selected:
            return f"backend {b.value} not selected by XEMBED_TEST_BACKENDS"
    return None


def _skip_reason(item: pytest.Item) -> str | None:
    params = getattr(item, "callspec", None)
    params = params.params if params is not None else {}
    backend = params.get("backend")
    for mark in item.iter_markers("skip_backend"):
        only = mark.kwargs.get("primitives")
        if (isinstance(backend, Backend) and backend.value == mark.args[0]
                and only in (None, params.get("primitives"))):
            where = backend.value if only is None else f"{backend.value}, {only} primitives"
            return f"{where}: {mark.kwargs['reason']}"
    dtype = params.get("dtype")
    if isinstance(backend, Backend) and isinstance(dtype, str) and not backend.has_dtype(dtype):
        return f"{backend.value} has no {dtype} dtype"
    return None


def _heaviness(item: pytest.Item) -> float:
    """Sort key: ``heavy(seconds)`` items by decreasing estimate (``heavy`` alone counts as a minute), then the rest."""
    mark = item.get_closest_marker("heavy")
    return 0.0 if mark is None else -float(mark.args[0] if mark.args else 60)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep, dropped = [], []
    for item in items:
        reason = _deselect_reason(item)
        if reason is None:
            keep.append(item)
            skip = _skip_reason(item)
            if skip is not None:
                item.add_marker(pytest.mark.skip(reason=skip))
        else:
            dropped.append(item)
            _DESELECTED[reason] += 1
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    keep.sort(key=_heaviness)  # stable: the heaviest first
    items[:] = keep


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for reason, n in sorted(_DESELECTED.items()):
        terminalreporter.write_line(f"xembed: {n} tests deselected: {reason}")


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.param


@pytest.fixture
def xp(backend: Backend) -> object:
    """The raw namespace (numpy, array_api_strict, torch, cupy) used to create arrays for this backend."""
    return backend.xp


@pytest.fixture
def device(backend: Backend) -> object:
    """Device arrays are created on (torch_cuda → cuda; numpy → 'cpu'; array_api_strict → its default)."""
    return backend.device


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(params=["native", "fallback"])
def primitives(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run under xembed's native primitives and under the standard-only fallback (``xembed._primitives.use``)."""
    from xembed import _primitives

    if request.param == "native":
        yield "native"
        return
    with _primitives.use("fallback"):
        yield "fallback"
