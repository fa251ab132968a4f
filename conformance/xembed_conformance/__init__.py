"""Conformance suite for ``embedding`` / ``embedding_bag`` implementations.

Checks any implementation (a module or object with ``embedding`` and/or ``embedding_bag`` callables taking
``torch.nn.functional``'s signatures) against ``torch.nn.functional`` on CPU in float64, option by option, with
hypothesis.  Run it as a pytest suite (``pytest --pyargs xembed_conformance --impl=TARGET --backend=NAME``), with
the ``xembed-conformance`` command (a thin wrapper over that suite), or from Python (:func:`run_conformance`).
The suite never imports xembed: xembed is just another target (``--impl xembed``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["run_conformance"]


def __getattr__(name: str) -> Any:
    # imported lazily: pytest imports this package through the plugin entry point before it can rewrite asserts,
    # and hypothesis (which the runner imports) must not be imported that early
    if name == "run_conformance":
        from xembed_conformance.runner import run_conformance

        return run_conformance
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
