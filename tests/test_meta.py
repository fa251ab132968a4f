"""The repository's own consistency: every rule ID the project cites exists in docs/spec.md, nothing points to a
spec file that does not exist, and the mypy configuration covers every test module."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "docs" / "spec.md"
PREFIXES = ("REF", "EMB", "PAD", "BAG", "RENORM", "GRAD", "ACC", "TOL", "ERR", "DIV", "EXT", "MOD", "TORCH", "JAX",
            "JIT", "DASK", "PRIM", "VAL", "ARR", "SPARSE", "PULLBACK", "QUANT")
# An ID: a known prefix, then dash-separated upper-case / digit parts, or a trailing `*` (a family: `RENORM-*`).
ID_RE = re.compile(rf"(?<![-\w])(?:{'|'.join(PREFIXES)})(?:-[A-Z0-9]+)*(?:-\*|\b)")


def _spec_ids() -> set[str]:
    return set(re.findall(r"^- `([A-Z0-9*-]+)`", SPEC.read_text(encoding="utf-8"), re.MULTILINE))


def _citing_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "src" / "xembed").glob("*.py")), *sorted(ROOT.glob("tests/*.py")),
             *sorted(ROOT.glob("docs/guide/*.md")), *sorted(ROOT.glob("docs/project/*.md"))]
    return [f for f in files if f.name != "test_checker.py"]  # the checker's tests: its helper keeps them


def test_spec_ids_are_unique() -> None:
    """Every rule of docs/spec.md has its own ID."""
    ids = re.findall(r"^- `([A-Z0-9*-]+)`", SPEC.read_text(encoding="utf-8"), re.MULTILINE)
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    assert not dupes, f"duplicate rule IDs in docs/spec.md: {dupes}"


@pytest.mark.parametrize("path", _citing_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_cited_rule_ids_exist(path: Path) -> None:
    """A rule ID cited in README, xembed's source, the tests or the user guides is defined in docs/spec.md (a
    family `X-*` must name at least one rule)."""
    ids = _spec_ids()
    text = path.read_text(encoding="utf-8")
    missing = set()
    for m in ID_RE.finditer(text):
        cited = m.group(0)
        if "-" not in cited:
            continue  # a bare prefix word ("REF", "ERR") is not a citation
        if cited.endswith("-*"):
            if not any(i.startswith(cited[:-1]) for i in ids):
                missing.add(cited)
        elif cited not in ids:
            missing.add(cited)
    assert not missing, f"{path.relative_to(ROOT)} cites rule IDs docs/spec.md does not define: {sorted(missing)}"


@pytest.mark.parametrize("path", _citing_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_reference_to_a_missing_spec_file(path: Path) -> None:
    """The contract is docs/spec.md; no file of the project may send a reader to an upper-case spec file at the
    root, which does not exist."""
    missing = "SPEC" + ".md"
    assert not (ROOT / missing).exists()
    assert missing not in path.read_text(encoding="utf-8"), f"{path.relative_to(ROOT)} cites {missing}"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is Python >= 3.11")
def test_mypy_override_lists_every_test_module() -> None:
    """mypy patterns cannot say `test_*`, so pyproject.toml lists tests/'s modules by name: none may be missing."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = {m for o in config["tool"]["mypy"]["overrides"] for m in o["module"]}
    modules = {p.stem for p in (ROOT / "tests").glob("*.py")}
    assert modules <= listed, f"add to [[tool.mypy.overrides]] in pyproject.toml: {sorted(modules - listed)}"
