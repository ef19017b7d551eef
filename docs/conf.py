"""Sphinx configuration for gala-deeppotential."""

from __future__ import annotations

import gala_deeppotential

project = "gala-deeppotential"
author = "gala-deeppotential developers"
release = version = gala_deeppotential.__version__

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

autosummary_generate = True
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_xref_param_type = False
# Cross-references are resolved against these projects' inventories when the
# network allows; offline builds fall back to plain text without warnings.
intersphinx_mapping = {}
nitpicky = False

html_theme = "alabaster"
html_static_path: list[str] = []
