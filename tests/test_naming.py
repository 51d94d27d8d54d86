"""Keys never leave their store: property tests over generated filenames and keys."""

from __future__ import annotations

import os
import re
import unicodedata

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from flask_store import naming
from flask_store.exceptions import InvalidFilenameError, InvalidKeyError
from flask_store.naming import (
    MAX_COMPONENT_BYTES,
    MAX_KEY_BYTES,
    candidate_keys,
    clean_key,
    join_key,
    secure_filename,
    split_extension,
    with_unique_suffix,
)

ROOT = "/srv/store"
# Text that favours the characters attackers use: dots, slashes, backslashes, NUL, unicode.
hostile_text = st.lists(
    st.sampled_from(["..", "../", "..\\", "/", "\\", ".", "\x00", " ", "\u202e", "é", "中"])
    | st.characters(),
    max_size=120,
).map("".join)


def inside_root(key: str) -> bool:
    path = os.path.normpath(os.path.join(ROOT, *key.split("/")))
    return path.startswith(ROOT + os.sep)


@given(hostile_text)
@example("../../etc/passwd")
@example("..")
@example("C:\\Windows\\system32")
@example("\x00.jpg")
def test_secure_filename_never_leaves_the_root(filename: str) -> None:
    try:
        name = secure_filename(filename)
    except InvalidFilenameError:
        return
    assert clean_key(name) == name  # a valid single-component key
    assert "/" not in name
    assert inside_root(name)
    assert len(name.encode()) <= MAX_COMPONENT_BYTES


@given(hostile_text)
@example("a/../../b")
@example("/abs")
@example("a//b/")
def test_clean_key_accepts_only_contained_keys(key: str) -> None:
    try:
        cleaned = clean_key(key)
    except InvalidKeyError:
        return
    assert inside_root(cleaned)
    assert all(part and not part.startswith(".") for part in cleaned.split("/"))
    assert clean_key(cleaned) == cleaned


@given(hostile_text, hostile_text)
def test_join_key_of_anything_is_contained(folder: str, name: str) -> None:
    try:
        key = join_key(folder, name)
    except InvalidKeyError:
        return
    assert inside_root(key)


@given(st.from_regex(r"[a-z]{1,10}(\.[a-z]{1,4}){0,2}", fullmatch=True))
def test_unique_suffix_keeps_the_extension(name: str) -> None:
    renamed = with_unique_suffix(f"folder/{name}")
    stem, ext = split_extension(name)
    assert re.fullmatch(rf"folder/{re.escape(stem)}_[A-Za-z0-9_-]{{8}}{re.escape(ext)}", renamed)


@pytest.mark.parametrize("stem", ["x" * 187, "ф" * 94])
def test_unique_suffix_keeps_a_long_key_within_the_limit(stem: str) -> None:
    key = join_key("/".join(["d" * 200] * 4), f"{stem}.jpg")
    assert len(key.encode()) in (995, 996)
    renamed = with_unique_suffix(key)
    assert clean_key(renamed) == renamed
    assert len(renamed.encode()) <= MAX_KEY_BYTES
    assert re.fullmatch(rf"{'d' * 200}/.*/{stem[:-10]}[^/]*_[A-Za-z0-9_-]{{8}}\.jpg", renamed)


@pytest.mark.parametrize(
    "name", ["x" * 251 + ".jpg", "ф" * 125 + ".jpg", "x" * 255, "x." + "j" * 253]
)
def test_unique_suffix_keeps_a_long_name_within_the_component_limit(name: str) -> None:
    # A clean key whose name already has MAX_COMPONENT_BYTES: its renames must be keys too,
    # or ON_CONFLICT=rename refuses a key it was handed as valid.
    key = join_key("folder", name)
    renamed = with_unique_suffix(key)
    assert clean_key(renamed) == renamed
    assert len(renamed.rpartition("/")[2].encode()) <= MAX_COMPONENT_BYTES
    assert re.fullmatch(r"folder/(x*|ф+)_[A-Za-z0-9_-]{8}(\.jpg|\.j+)?", renamed)


def test_unicode_letters_are_kept() -> None:
    assert secure_filename("фото.jpg") == "фото.jpg"
    assert secure_filename("我的 文件.png") == "我的_文件.png"
    assert secure_filename("e\u0301te\u0301.txt") == "été.txt"  # normalised to NFC
    # Scripts written with combining vowel signs and joiners stay whole.
    assert secure_filename("हिन्दी.txt") == "हिन्दी.txt"
    assert secure_filename("தமிழ்.png") == "தமிழ்.png"
    assert secure_filename("نامه\u200cها.pdf") == "نامه\u200cها.pdf"


def test_key_length_counts_utf8_bytes_and_text_must_be_valid() -> None:
    fits = "/".join(["ф" * 120] * 4)  # 483 characters, 963 bytes
    assert len(fits.encode()) == 963
    assert clean_key(fits) == fits
    with pytest.raises(InvalidKeyError, match="bytes"):
        clean_key(fits + "/" + "x" * 40)  # 1,004 bytes: too long for an S3 object key
    with pytest.raises(InvalidKeyError, match="Unicode"):
        clean_key("lone\udc80surrogate.txt")


@pytest.mark.parametrize(
    "key", ["a\x85b", "a\u2028b", "a\u2029b", "a/\u200b/b", "x\u202egpj.exe", "a\u2066b"]
)
def test_keys_with_invisible_or_reordering_characters_are_refused(key: str) -> None:
    with pytest.raises(InvalidKeyError):
        clean_key(key)
    assert "\u202e" not in secure_filename("x\u202egpj.exe")


@pytest.mark.parametrize(
    ("hostile", "safe"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\photo.jpg", "photo.jpg"),
        (".bashrc", "bashrc"),
        ("CON.txt", "_CON.txt"),
        ("a b\tc?.txt", "a_b_c_.txt"),
        ("x" * 400 + ".jpg", "x" * 235 + ".jpg"),  # room left for a rename suffix
    ],
)
def test_secure_filename_examples(hostile: str, safe: str) -> None:
    assert secure_filename(hostile) == safe


def test_candidate_keys_follow_the_policy() -> None:
    assert list(candidate_keys("a.jpg", "error")) == ["a.jpg"]
    assert list(candidate_keys("a.jpg", "overwrite")) == ["a.jpg"]
    renames = candidate_keys("a.jpg", "rename")
    assert next(renames) == "a.jpg"
    assert len({next(renames) for _ in range(100)}) == 100


@given(st.text(alphabet=st.characters(max_codepoint=127)))
@example("a" + "\x00" * 3 + "--..__b")
def test_ascii_names_are_cleaned_as_the_general_rule_cleans_them(name: str) -> None:
    """The one-pattern shortcut for ASCII names keeps and replaces what the per-character
    rule (letters, digits, ``_.-``) does."""
    general = "".join(char if naming._is_safe_in_filename(char) else "_" for char in name)
    assert naming._sanitised(name) == naming._REPEATED_UNDERSCORES.sub("_", general)
    assert naming._has_visible_character(name) == any(
        unicodedata.category(char)[0] in "LN" for char in name
    )


@given(
    st.one_of(
        st.text(alphabet="aZ09_-.", max_size=300),
        st.sampled_from(["con", "CON.txt", "lpt1.png", "nul", "Com9.tar", "aux_.x"]),
        st.builds(lambda n: "a" * n + ".png", st.integers(0, 260)),
        st.builds(lambda n: "a." + "b" * n, st.integers(25, 40)),
    ),
    st.sampled_from([naming.MAX_COMPONENT_BYTES, 100, 60, 40, 20, 16, 0]),
)
@example("a__b.png", 255)
@example("a.gz", 255)
@example("con.txt", 255)
def test_plain_names_skip_cleaning_only_when_cleaning_keeps_them(name: str, room: int) -> None:
    """The shortcut for names that need no cleaning answers exactly what cleaning does."""
    try:
        cleaned = naming._cleaned_filename(name, room)
    except InvalidFilenameError:
        cleaned = None
    if naming._is_plain_name(name, room):
        assert cleaned == name
    if cleaned is not None and "file_" not in cleaned:
        assert secure_filename(name, room) == cleaned


@given(
    st.text(alphabet="a9._- /\\", max_size=30) | st.builds(lambda n: "k" * n, st.integers(250, 260))
)
@example("a/../b")
@example("./a")
@example("a//b/")
@example("a /b")
def test_plain_keys_skip_the_checks_only_when_the_checks_keep_them(key: str) -> None:
    """The shortcut for keys that are already clean answers exactly what the checks do."""
    try:
        checked: str | None = naming._checked_key(key)
    except InvalidKeyError:
        checked = None
    if naming._PLAIN_KEY.fullmatch(key) and len(key) <= naming.MAX_COMPONENT_BYTES:
        assert checked == key
    if checked is None:
        with pytest.raises(InvalidKeyError):
            clean_key(key)
    else:
        assert clean_key(key) == checked
