"""Sphinx configuration for the Flask-Store documentation (built with -W: warnings fail)."""

from __future__ import annotations

import os
import sys
from typing import Any

from sphinx.application import Sphinx

DOCS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(DOCS))

import flask_store  # noqa: E402

project = "Flask-Store"
author = "The Flask-Store contributors"
copyright = "2026, The Flask-Store contributors"
release = flask_store.__version__
version = ".".join(release.split(".")[:2])

extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode"]
exclude_patterns = ["_build", "examples"]
templates_path: list[str] = []

html_theme = "furo"
html_title = f"Flask-Store {release}"
html_static_path: list[str] = []

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True}

#: Pages other parts of the project add when their code lands: listed in the table of
#: contents once their file exists, so the build stays green (and complete) either way.
OPTIONAL_STORE_PAGES = ("s3", "gevent", "queued")
OPTIONAL_PAGES_MARKER = "optional-store-pages"


def optional_store_pages(srcdir: str) -> list[str]:
    """The optional store pages present in ``srcdir``, in reading order."""
    return [page for page in OPTIONAL_STORE_PAGES if os.path.exists(f"{srcdir}/{page}.rst")]


def _fill_store_toctree(app: Sphinx, docname: str, source: list[str]) -> None:
    """Put the optional store pages that exist into the index's table of contents."""
    if docname == "index":
        entries = "".join(f"   {page}\n" for page in optional_store_pages(str(app.srcdir)))
        source[0] = source[0].replace(f"   {OPTIONAL_PAGES_MARKER}\n", entries)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("source-read", _fill_store_toctree)
    return {"parallel_read_safe": True}
