"""The checks, by concern: ``values`` (outputs and the weight after the call), ``gradients``,
``errors`` (invalid inputs), ``strict`` (this spec's decisions where torch is unspecified),
``extensions`` (behaviour beyond torch), and ``rows`` (the rows of the report, each citing the
docs/spec.md rule IDs it checks)."""

from xembed_conformance.checks.core import Context, InternalError, Violation
from xembed_conformance.checks.rows import Row, build_rows

__all__ = ["Context", "InternalError", "Row", "Violation", "build_rows"]
