"""Fixtures: ``backend`` (parametrised over every array library xembed supports), ``xp`` and ``device``.

``XEMBED_TEST_BACKENDS=numpy,torch`` restricts the backends (see ``xembed_testutils.selected_backends``).

Backends that cannot run here are reported as skipped with the honest reason (library not installed / no GPU);
GPU backends carry the ``gpu`` marker so ``-m "not gpu"`` / ``-m gpu`` select them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from xembed_testutils import Backend, selected_backends

BACKEND_PARAMS = [b.pytest_param() for b in selected_backends()]


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.param


@pytest.fixture
def xp(backend: Backend):
    """The raw namespace (numpy, array_api_strict, torch, cupy) used to create arrays for this backend."""
    return backend.xp


@pytest.fixture
def device(backend: Backend):
    """Device arrays are created on (torch_cuda → cuda; numpy → 'cpu'; array_api_strict → its default)."""
    return backend.device


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(params=["native", "fallback"])
def primitives(request):
    """Run under xembed's native primitives and under the standard-only fallback (``xembed._primitives.use``)."""
    from xembed import _primitives

    if request.param == "native":
        yield "native"
        return
    with _primitives.use("fallback"):
        yield "fallback"
