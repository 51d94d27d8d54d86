"""Content types guessed from names (:func:`flask_store.meta.guess_content_type`), and the
metadata document a local store records."""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from flask_store import meta
from flask_store.meta import FileMeta, guess_content_type
from flask_store.stores.local import _meta_value

NAMES = st.text(alphabet="ab.:/\\ XZ", max_size=12).map(
    lambda text: text.replace("X", "tar").replace("Z", "gz")
)


@given(NAMES)
@example("a.tgz")
@example("b.TAR.GZ")
@example(".gz")
@example("..png")
@example("x.svgz")
@example("data:,a.html")
@example("a.b.c.PNG")
def test_guesses_kept_per_extension_match_asking_about_the_whole_name(name: str) -> None:
    assert guess_content_type(name) == meta._guessed(name)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("photo.JPG", "image/jpeg"),
        ("a.tar.gz", "application/gzip"),
        ("page.html", "text/html"),
        ("noextension", "application/octet-stream"),
        (".hidden.png", "image/png"),
    ],
)
def test_guessed_types(name: str, expected: str) -> None:
    assert guess_content_type(name) == expected


@given(st.text(), st.text(), st.integers(min_value=0, max_value=2**63))
def test_local_metadata_is_the_json_document_json_dumps_makes(
    filename: str, content_type: str, size: int
) -> None:
    """A local store's extended attribute, built by hand for speed, is ``json.dumps``'s."""
    value = _meta_value(FileMeta(filename=filename, content_type=content_type), size)
    expected = {"filename": filename, "content_type": content_type, "size": size}
    assert value == json.dumps(expected).encode()
