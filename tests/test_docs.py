"""The documentation runs: the examples of the public docstrings, the ``pycon`` blocks of the pages in docs/, and
the Python blocks of README.md are executed, and README stays short and speaks to its users."""

from __future__ import annotations

import contextlib
import doctest
import importlib
import importlib.util
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
PUBLIC_MODULES = ["xembed", "xembed._api", "xembed._modules", "xembed._sparse", "xembed._quantized",
                  "xembed._traced_checks", "xembed.primitives", "xembed._primitives", "xembed._checkpoint",
                  "xembed.torch._modules",
                  "xembed.torch._functional", "xembed.torch._quantized"]
PYCON = re.compile(r"^```pycon\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _run(test: doctest.DocTest) -> None:
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    with _jax_defaults():
        runner.run(test)
    assert runner.failures == 0, f"{runner.failures} failing example(s) in {test.name} (output above)"


@contextlib.contextmanager
def _jax_defaults() -> Iterator[None]:
    """The examples show JAX's default dtypes (float32, int32) as a user sees them; test_jax.py switches
    ``jax_enable_x64`` on for the whole process when it is collected, so it is switched off around them."""
    if importlib.util.find_spec("jax") is None:
        yield
        return
    import jax

    with jax.enable_x64(False):
        yield


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_docstring_examples(module, tmp_path, monkeypatch):
    """Every Examples section of the public docstrings runs and prints what it shows (in a temporary directory:
    an example may write a file)."""
    monkeypatch.chdir(tmp_path)
    tests = doctest.DocTestFinder().find(importlib.import_module(module))
    if module != "xembed":
        assert any(t.examples for t in tests), f"{module} has no examples"
    for test in tests:
        _run(test)


def _pages() -> list[Path]:
    return sorted(p for p in (ROOT / "docs").rglob("*.md") if PYCON.search(p.read_text(encoding="utf-8")))


def _pycon_only(text: str) -> str:
    """The page with everything but its pycon blocks blanked out: line numbers stay those of the file, and each
    block ends with a blank line, so a statement's expected output never runs into the closing fence."""
    lines = text.split("\n")
    out = [""] * len(lines)
    for m in PYCON.finditer(text):
        first = text.count("\n", 0, m.start(1))
        for i, line in enumerate(m.group(1).split("\n")):
            out[first + i] = line
    return "\n".join(out)


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_page_examples(page, tmp_path, monkeypatch):
    """The ``pycon`` blocks of a page run in order, sharing one namespace, and print what the page shows (in a
    temporary directory: a page may write files)."""
    monkeypatch.chdir(tmp_path)
    text = _pycon_only(page.read_text(encoding="utf-8"))
    test = doctest.DocTestParser().get_doctest(text, {}, str(page.relative_to(ROOT)), str(page), 0)
    _run(test)


def test_the_guides_have_examples():
    """A guide that lost its examples (a fence renamed) would otherwise pass silently."""
    guides = sorted((ROOT / "docs" / "guide").glob("*.md"))
    assert guides
    runnable = set(_pages())
    without = [g.name for g in guides if g not in runnable and "GPU" not in g.read_text(encoding="utf-8")]
    assert not without, f"guides without pycon examples: {without}"


@pytest.mark.parametrize("script", ["train_bag_of_words.py", "fasttext_sqrtn.py"])
def test_training_examples_match_torch(script):
    """The training examples the docs point to run (shortened) and report agreement with torch (exit 0)."""
    res = subprocess.run([sys.executable, str(ROOT / "examples" / script), "--steps", "10"], capture_output=True,
                         text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert res.stdout.rstrip().endswith("OK"), res.stdout[-2000:]


README = ROOT / "README.md"


def test_readme_is_short_and_speaks_to_users():
    """README is a manual, not a log: at most 220 lines, and no work-history references (an issue number)."""
    text = README.read_text(encoding="utf-8")
    assert text.count("\n") <= 220, f"README.md has {text.count(chr(10))} lines"
    found = re.findall(r"\bissues?[ -]?#?\d+", text, re.IGNORECASE)
    assert not found, f"README.md cites {found}"


@pytest.mark.parametrize("marker", ["main-command", "test-command"])
def test_readme_commands_parse_as_ci_reads_them(marker):
    """.ci/run takes the first line of the bash block after each marker (the awk program below is its own)."""
    awk = f"/<!-- {marker} -->/{{f=1; next}} f && /^```/{{if (n++) exit; next}} f && n==1 {{print; exit}}"
    res = subprocess.run(["awk", awk, str(README)], capture_output=True, text=True, check=True)
    assert res.stdout.startswith('python -m pip install -e ".[test]"'), res.stdout
    assert "&& python -m pytest" in res.stdout, res.stdout


def _readme_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("block", _readme_blocks(), ids=lambda b: b.splitlines()[0][:40])
def test_readme_python_blocks_run(block, tmp_path, monkeypatch):
    """Every Python block of README.md runs as written (in a temporary directory: a block may write a file)."""
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})  # noqa: S102 (running the README's own code is the test)
