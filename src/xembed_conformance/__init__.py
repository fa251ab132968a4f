"""Conformance checker for ``embedding`` / ``embedding_bag`` implementations.

Checks any implementation (a module or object with ``embedding`` and/or
``embedding_bag`` callables taking ``torch.nn.functional``'s signatures) against
``torch.nn.functional`` on CPU in float64, option by option, with hypothesis.

Run ``python -m xembed_conformance --help`` from the repository root.  The checker never
imports xembed's internals: xembed is just another target (``--impl xembed``).
"""

from xembed_conformance.runner import run_conformance

__all__ = ["run_conformance"]
