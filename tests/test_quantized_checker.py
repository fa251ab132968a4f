"""The checker's quantized rows (docs/spec.md QUANT-*): torch's own quantized ops and xembed conform, and each
deliberately broken quantized target is caught, at the default profile (50 examples), from several seeds."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from checker_targets import quant_xembed
from checker_targets.quant_broken import QUANT_BROKEN

from xembed_conformance.checks.quantized import QResult, load, run_quantized_conformance


def _by_status(results: list[QResult]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for r in results:
        out.setdefault(r.status, set()).add(r.row)
    return out


def test_torch_quantized_ops_conform() -> None:
    """torch conforms: its ops ignore `mode` (QUANT-TORCH-MODE, reported as xfail) and take no padding_idx."""
    res = _by_status(run_quantized_conformance(load("torch:ops.quantized"), max_examples=15))
    assert "fail" not in res, res
    assert all("mode=1" in r or "mode=2" in r for r in res["xfail"])
    assert all("padding_idx" in r for r in res["not offered"])
    assert len(res["pass"]) == 15


def test_xembed_conforms_on_every_row() -> None:
    res = _by_status(run_quantized_conformance(quant_xembed, max_examples=15))
    assert set(res) == {"pass"}, res


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", sorted(QUANT_BROKEN))
def test_broken_quantized_targets_are_caught(name: str, seed: int) -> None:
    """Each broken target fails exactly the rows of its op that exercise its defect; the others pass."""
    target, expected = QUANT_BROKEN[name]
    assert target.__doc__
    op = next(iter(expected)).split("::")[0]
    results = run_quantized_conformance(target, max_examples=50, seed=seed, only=lambda row: row.startswith(op))
    fails = {r.row for r in results if r.status == "fail"}
    assert fails == expected, {r.row: r.message for r in results}
    assert {r.status for r in results if r.row not in expected} <= {"pass"}
