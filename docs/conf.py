"""Sphinx configuration for the Flask-Store documentation (built with -W: warnings fail)."""

from __future__ import annotations

import os
import sys

DOCS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(DOCS))

import flask_store  # noqa: E402

project = "Flask-Store"
author = "The Flask-Store contributors"
copyright = "2026, The Flask-Store contributors"
release = flask_store.__version__
version = ".".join(release.split(".")[:2])

extensions = ["sphinx.ext.autodoc", "sphinx.ext.graphviz", "sphinx.ext.viewcode"]
graphviz_output_format = "svg"
exclude_patterns = ["_build", "examples"]
templates_path: list[str] = []

html_theme = "furo"
html_title = f"Flask-Store {release}"
html_static_path: list[str] = []

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True}
