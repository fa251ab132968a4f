"""Sphinx configuration of xembed's documentation (``nox -s docs``, or the command below).

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Markdown pages through myst-parser; the API pages from the docstrings through autodoc and numpydoc, whose
validation runs here, so a public docstring that breaks numpydoc's rules fails the build (``-W``).  The code in
the pages and in the docstrings is executed by the test-suite (``tests/test_docs.py``), not by this build.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import xembed

project = "xembed"
author = "the xembed developers"
copyright = "the xembed developers"
release = version = xembed.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "numpydoc"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "benchmarks/*.json"]
myst_heading_anchors = 3

autodoc_typehints = "none"  # the numpydoc Parameters section says it
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
# The checks of [tool.numpydoc_validation] in pyproject.toml (`numpydoc lint`), on every documented object.
numpydoc_validation_checks = {"all", "GL01", "ES01", "SA01"}
numpydoc_validation_exclude = {r"\.__init__$", r"\.__repr__$", r"\._[A-Za-z][A-Za-z0-9_]*$", r"\._Unpickler\."}

html_theme = "alabaster"
html_title = f"xembed {version}"
# Wide enough for the 110-column code of the guides without a scroll bar.
html_theme_options = {"page_width": "1240px", "body_max_width": "none"}
