"""Keys: safe names from client filenames, containment checks, and unique names.

A *key* is the name of a file inside a store, relative to the store's root: ``"photo.jpg"``
or ``"avatars/photo.jpg"``. Keys always use ``/``; no component is empty, ``.``, ``..`` or
hidden (leading dot: temporary files and store internals live there), and no key holds a
backslash, NUL or other control or invisible character. That makes every valid key safe to
join to a directory or an object prefix without escaping it. These are small pure functions
so that every store shares one definition.
"""

from __future__ import annotations

import os.path
import re
import secrets
import unicodedata
from collections.abc import Iterator
from typing import Literal

from .exceptions import InvalidFilenameError, InvalidKeyError

__all__ = [
    "MAX_COMPONENT_BYTES",
    "MAX_KEY_BYTES",
    "ON_CONFLICT_CHOICES",
    "OnConflict",
    "candidate_keys",
    "clean_key",
    "join_key",
    "recorded_filename",
    "room_for_name",
    "secure_filename",
    "split_extension",
    "stored_name",
    "with_unique_suffix",
]

OnConflict = Literal["rename", "overwrite", "error"]
ON_CONFLICT_CHOICES: tuple[OnConflict, ...] = ("rename", "overwrite", "error")

#: Longest key component in UTF-8 bytes; most file systems stop at 255.
MAX_COMPONENT_BYTES = 255
#: Longest whole key in UTF-8 bytes (S3 allows 1,024 for a whole object key, prefix included;
#: an S3 store's prefix and key are checked together against this too).
MAX_KEY_BYTES = 1000

# In filenames, anything but Unicode letters, marks (the vowel signs of Devanagari, Tamil...),
# digits, "_", "." and "-" becomes "_"; keeps "фото.jpg" and "हिन्दी.txt" readable.
_SAFE_CATEGORIES = ("L", "M", "N")
_SAFE_PUNCTUATION = frozenset("_.-")
_REPEATED_UNDERSCORES = re.compile(r"_{2,}")
#: What :func:`_is_safe_in_filename` refuses among ASCII characters, as one pattern: most
#: uploaded names are ASCII, and one substitution costs a tenth of the per-character test.
_UNSAFE_ASCII = re.compile(r"[^A-Za-z0-9_.\-]")
#: A name :func:`secure_filename` keeps as it is (ASCII letters and digits, ``-`` and ``_``
#: after the first character, one short extension), as most uploaded names are: matching
#: it costs a tenth of cleaning the name.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9]{1,31})?")
#: A key :func:`clean_key` gives back as it is: ASCII components that start with neither a
#: dot nor a space, joined by single slashes (checked after its length, which bounds every
#: component).
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*")
_PATH_SEPARATORS = re.compile(r"[/\\]")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
# In keys, characters that are invisible or reorder text: C0/C1 controls, line and paragraph
# separators, and format characters such as bidi overrides ("x\u202egpj.exe" displays as
# "xexe.jpg"). The zero-width (non-)joiners stay: Persian and Indic words need them.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
_JOINERS = frozenset("\u200c\u200d")
# Extensions that belong with the one before them: "a.tar.gz" renames to "a_<id>.tar.gz".
_COMPRESSION_SUFFIXES = frozenset({".gz", ".bz2", ".xz", ".zst", ".br", ".lz", ".z"})
# Letters that draw nothing (Hangul fillers): a name of them alone looks empty.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")
#: Bytes of a component kept free for the ``_<id>`` of a rename (:func:`with_unique_suffix`).
_RENAME_ROOM = 16
_MAX_EXTENSION_CHARS = 32
_WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul"}
    | {f"com{i}" for i in range(1, 10)}
    | {f"lpt{i}" for i in range(1, 10)}
)


def secure_filename(filename: str, max_bytes: int = MAX_COMPONENT_BYTES) -> str:
    """Turn a client-supplied filename into one safe, visible key component.

    Only the last path component counts (browsers on Windows send ``C:\\Users\\me\\a.jpg``).
    Unicode letters and digits are kept, everything else becomes ``_``; leading dots go so
    the name cannot be hidden or climb directories. A long name is shortened to ``max_bytes``
    of UTF-8 (less room for the ``_<id>`` a rename may add), keeping its extension.

    A name that has nothing visible to keep but had something (emoji only, zero-width or
    other invisible characters only, symbols with an extension) gets a generated one,
    ``file_<id>`` plus its extension, rather than an error or a key nobody can see.

    >>> secure_filename("../../etc/passwd")
    'passwd'
    >>> secure_filename("фото отпуск.jpg")
    'фото_отпуск.jpg'

    :param max_bytes: the longest result in UTF-8 bytes: the room left for the name in its
        key (:func:`room_for_name`).
    :raises InvalidFilenameError: when the name holds nothing at all (``"..."``, ``"///"``).
    """
    if _is_plain_name(filename, max_bytes):
        return filename
    return _cleaned_filename(filename, max_bytes)


def _is_plain_name(filename: str, max_bytes: int) -> bool:
    """Whether :func:`_cleaned_filename` would give ``filename`` back unchanged, told
    without cleaning it: nothing to replace, no ``__`` to merge, no reserved device name,
    and short enough that neither the stem nor the extension is cut."""
    return (
        len(filename) <= (max_bytes - _RENAME_ROOM) // 2
        and _PLAIN_NAME.fullmatch(filename) is not None
        and "__" not in filename
        and filename.partition(".")[0].lower() not in _WINDOWS_RESERVED
    )


def _cleaned_filename(filename: str, max_bytes: int) -> str:
    """:func:`secure_filename` by the general rule, for every name."""
    base = unicodedata.normalize("NFC", _PATH_SEPARATORS.split(filename)[-1])
    # Split first: what is cleaned away must not turn "😀.png" into a hidden ".png".
    raw_stem, raw_ext = split_extension(base)
    stem = _sanitised(raw_stem).lstrip("._- ")
    ext = _clean_extension(_sanitised(raw_ext))
    if not _has_visible_character(stem):
        if not ext and base.isascii():
            raise InvalidFilenameError(
                f"The filename {filename[:100]!r} has no usable characters; pass name= to "
                "save() to choose one."
            )
        stem = f"file_{secrets.token_urlsafe(6)}"
    elif stem.lower() in _WINDOWS_RESERVED:
        stem = f"_{stem}"
    # Leave room for the "_<id>" a rename may add later.
    return _shortened(stem, ext, max_bytes - _RENAME_ROOM)


def recorded_filename(filename: str) -> str:
    """The client's original ``filename`` as a store records it: at most
    :data:`MAX_COMPONENT_BYTES` of UTF-8, extension kept, lone surrogates replaced.

    No file system names a file longer than that; a longer name would not fit an extended
    attribute, S3's 2 KiB of user metadata, or a ``Content-Disposition`` header.

    >>> recorded_filename("a" * 300 + ".pdf") == "a" * 251 + ".pdf"
    True
    """
    text = filename.encode("utf-8", "replace").decode()
    if len(text.encode()) <= MAX_COMPONENT_BYTES:
        return text
    return _shortened(*split_extension(text), MAX_COMPONENT_BYTES)


def stored_name(filename: str, folder: str | None = None) -> str:
    """The name ``save()`` gives a file the client called ``filename`` in ``folder`` (before
    any suffix a taken name gets): its last part, made safe, shortened to fit the key beside
    the folder. Its extension is the type the file is stored as, so a form judging an upload
    judges this name (:mod:`flask_store.wtf`), never the raw one.

    :raises InvalidFilenameError: when nothing usable is left of ``filename``.
    """
    return secure_filename(filename, room_for_name(folder))


def room_for_name(folder: str | None) -> int:
    """The most UTF-8 bytes a file's name may have in ``folder`` (``None``: the top)."""
    if not folder:
        return MAX_COMPONENT_BYTES
    return max(0, min(MAX_COMPONENT_BYTES, MAX_KEY_BYTES - len(folder.encode()) - 1))


def _sanitised(name: str) -> str:
    """``name`` with every character that is not safe and visible in a filename as ``_``.

    A zero-width (non-)joiner stays only between two letters or marks, where a script
    needs it; anywhere else it joins nothing and only hides.
    """
    if name.isascii():  # no joiners, and letters and digits are [A-Za-z0-9]
        return _REPEATED_UNDERSCORES.sub("_", _UNSAFE_ASCII.sub("_", name))
    chars = [char if _is_safe_in_filename(char) else "_" for char in name]
    for i, char in enumerate(chars):
        if char in _JOINERS and not (_is_letter(chars, i - 1) and _is_letter(chars, i + 1)):
            chars[i] = ""
    return _REPEATED_UNDERSCORES.sub("_", "".join(chars))


def _is_safe_in_filename(char: str) -> bool:
    if char in _SAFE_PUNCTUATION or char in _JOINERS:
        return True
    return unicodedata.category(char)[0] in _SAFE_CATEGORIES and char not in _BLANK_LETTERS


def _is_letter(chars: list[str], index: int) -> bool:
    """Whether ``chars[index]`` exists and is a letter or mark (not a joiner or ``_``)."""
    if not 0 <= index < len(chars) or len(chars[index]) != 1:
        return False
    return unicodedata.category(chars[index])[0] in "LM"


def _has_visible_character(text: str) -> bool:
    """Whether ``text`` shows something: a letter or a digit (marks alone draw nothing)."""
    if text.isascii():
        return any(char.isalnum() for char in text)
    return any(unicodedata.category(char)[0] in "LN" for char in text)


def _clean_extension(ext: str) -> str:
    """``ext`` without trailing dots and underscores; ``""`` when nothing visible is left."""
    ext = ext.rstrip("._- ")
    return ext if _has_visible_character(ext) else ""


def _has_invisible_characters(key: str) -> bool:
    """Whether ``key`` holds a control, separator or format character (see above)."""
    if key.isascii():
        return _CONTROL_CHARS.search(key) is not None
    return any(
        unicodedata.category(char) in _INVISIBLE_CATEGORIES and char not in _JOINERS for char in key
    )


def _shortened(stem: str, ext: str, max_bytes: int) -> str:
    """``stem + ext`` cut to ``max_bytes`` of UTF-8: the stem gives way, then the extension.

    An extension keeps at most :data:`_MAX_EXTENSION_CHARS` characters and half the room.
    A cut never splits a character, and leaves no joiner or separator at the stem's end.
    """
    ext = _cut(ext[:_MAX_EXTENSION_CHARS], max(max_bytes // 2, 0))
    cut = _cut(stem, max_bytes - len(ext.encode()))
    if cut != stem:
        stem = cut.rstrip("._-\u200c\u200d") or "file"
    return stem + ext


def _cut(text: str, max_bytes: int) -> str:
    """``text`` shortened to at most ``max_bytes`` of UTF-8, on a character boundary."""
    encoded = text.encode()
    if len(encoded) <= max_bytes:
        return text
    return encoded[: max(max_bytes, 0)].decode(errors="ignore")


def split_extension(name: str) -> tuple[str, str]:
    """Split ``name`` into stem and extension, keeping ``.tar.gz`` together."""
    stem, ext = os.path.splitext(name)
    if ext.lower() in _COMPRESSION_SUFFIXES:
        inner_stem, inner_ext = os.path.splitext(stem)
        if inner_ext and inner_stem:
            return inner_stem, inner_ext + ext
    return stem, ext


def clean_key(key: str) -> str:
    """Check that ``key`` stays inside its store and return it normalised.

    Repeated or trailing slashes are dropped; anything that could leave the root (``..``,
    an absolute path, a backslash, NUL) or reach store internals (a hidden component) is
    refused rather than repaired, because a key names an existing file.

    >>> clean_key("avatars//me.png")
    'avatars/me.png'

    :raises InvalidKeyError: when the key is not acceptable.
    """
    if not isinstance(key, str):
        raise InvalidKeyError(f"A key must be a string, not {type(key).__name__}.")
    if len(key) <= MAX_COMPONENT_BYTES and _PLAIN_KEY.fullmatch(key):
        return key  # already clean: what the checks would give back unchanged
    return _checked_key(key)


def _checked_key(key: str) -> str:
    """:func:`clean_key` by the general rule, for every key."""
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidKeyError(f"The key {key!r} is not valid Unicode text.") from None
    if not 0 < size <= MAX_KEY_BYTES:
        raise InvalidKeyError(f"A key must have 1 to {MAX_KEY_BYTES} bytes in UTF-8.")
    if "\\" in key or _has_invisible_characters(key):
        raise InvalidKeyError(
            f"The key {key!r} contains a backslash, or a control or invisible character."
        )
    if key.startswith("/"):
        raise InvalidKeyError(f"The key {key!r} is absolute; keys are relative to the store.")
    parts = [part for part in key.split("/") if part]
    if not parts:
        raise InvalidKeyError(f"The key {key!r} names no file.")
    for part in parts:
        if part.startswith(".") or part.strip() != part:
            raise InvalidKeyError(
                f"The key {key!r} has a hidden, relative or blank-edged component {part!r}."
            )
        if len(part.encode()) > MAX_COMPONENT_BYTES:
            raise InvalidKeyError(f"The key component {part[:40]!r}... is too long.")
    return "/".join(parts)


def join_key(*parts: str | None) -> str:
    """Join key parts (destination folders, a name) into one checked key.

    :raises InvalidKeyError: when a part is neither a string nor ``None``, or the joined
        key is not acceptable (:func:`clean_key`).
    """
    for part in parts:
        if part is not None and not isinstance(part, str):
            raise InvalidKeyError(f"A key must be a string, not {type(part).__name__}.")
    return clean_key("/".join(part.strip("/") for part in parts if part and part.strip("/")))


def with_unique_suffix(key: str) -> str:
    """``key`` with a short url-safe id before its extension: ``a.jpg`` -> ``a_Xy3_k9Qz.jpg``.

    Eight random url-safe characters (48 bits) make a collision between two renames of the
    same name vanishingly unlikely, and the store's atomic create still catches one. The stem
    is shortened if the id would push the key past :data:`MAX_KEY_BYTES` or its name past
    :data:`MAX_COMPONENT_BYTES`: the rename of a clean key is a clean key.
    """
    folder, _, name = key.rpartition("/")
    stem, ext = split_extension(name)
    suffix = f"_{secrets.token_urlsafe(6)}"
    # Bytes the new name may have: the stem gives way first, then a long extension.
    room = min(MAX_COMPONENT_BYTES, MAX_KEY_BYTES - len(key.encode()) + len(name.encode())) - len(
        suffix
    )
    stem = _cut(stem, room - len(ext.encode()))
    ext = _cut(ext, room - len(stem.encode()))
    renamed = f"{stem}{suffix}{ext}"
    return f"{folder}/{renamed}" if folder else renamed


def candidate_keys(key: str, on_conflict: OnConflict) -> Iterator[str]:
    """Yield the keys to try in turn when saving under ``key``.

    ``rename`` tries the key itself, then fresh unique names; the others try only ``key``
    (the store then overwrites it or reports the conflict).
    """
    yield key
    if on_conflict == "rename":
        while True:
            yield with_unique_suffix(key)
