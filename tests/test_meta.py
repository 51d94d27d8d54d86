"""Content types guessed from names (:func:`flask_store.meta.guess_content_type`)."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from flask_store import meta
from flask_store.meta import guess_content_type

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
