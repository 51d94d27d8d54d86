"""Content checks for every save: the type told by the bytes, and a size limit kept while
streaming.

Two rules, each a store setting and a ``save()`` argument:

- ``allowed_types`` (``STORE_ALLOWED_TYPES``): the file's type is detected from its first
  bytes (magic numbers, by `puremagic <https://pypi.org/project/puremagic/>`_) and must match
  one of the patterns (``"image/png"``, ``"image/*"``, ``"*/*"``). The name's type must match
  too, so a PDF cannot be saved as ``report.html``. A wildcard admits only the passive
  types the serving route shows inline (:data:`~flask_store.headers.INLINE_SAFE_TYPES`),
  never SVG, HTML, XML or scripts: list any other type exactly to allow it. Checked before
  anything is written.
- ``max_size`` (``STORE_MAX_SIZE``): the most bytes a file may have. A stream whose size is
  known is refused before anything is written; any other is counted while it is copied and
  the save stops at the first byte over, leaving nothing behind (the store removes its
  partial file, as it does for any failed write). Memory stays flat.

Refusals raise :class:`~flask_store.exceptions.FileTypeRejectedError` (``415``) and
:class:`~flask_store.exceptions.FileTooLargeError` (``413``), both
:class:`~flask_store.exceptions.UploadRejectedError`.

A leaf module: it knows uploads and types, not stores, so ``stores/base.py`` and the form
validators (:mod:`flask_store.wtf`) share it.

.. versionadded:: 0.2
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

from .exceptions import FileTooLargeError, FileTypeRejectedError, InvalidArgumentError
from .files import read_up_to
from .headers import FALLBACK_CONTENT_TYPE, is_active_content, media_type
from .optional import explained
from .sources import Upload, seekable_extent

__all__ = [
    "SNIFF_BYTES",
    "ContentRules",
    "LimitedStream",
    "apply_rules",
    "check_declared_type",
    "check_size",
    "check_type",
    "detected_types",
    "limited",
    "parse_allowed_types",
    "parse_max_size",
    "read_head",
    "type_allowed",
]

#: How many of the first bytes decide a file's type (puremagic's longest signatures fit).
SNIFF_BYTES = 8192
#: Text types a name may refine plain text into (a CSV is plain text to magic numbers).
_TEXT_LIKE = re.compile(r"text/[\w.+-]+|application/(?:[\w.-]+\+)?json")
_TOKEN = r"[!#$%&'+\-.^_`|~0-9a-z]+"
_PATTERN = re.compile(rf"\*/\*|{_TOKEN}/\*|{_TOKEN}/{_TOKEN}")
#: Bytes that never appear in text (NUL and the C0 controls but tab, LF, FF, CR, ESC).
_BINARY = re.compile(rb"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f]")


@dataclass(frozen=True)
class ContentRules:
    """The checks one save runs.

    :param allowed_types: media type patterns the file must match, or ``None`` for any.
    :param max_size: the most bytes the file may have, or ``None`` for no limit.
    """

    allowed_types: tuple[str, ...] | None = None
    max_size: int | None = None

    @classmethod
    def of(cls, allowed_types: Any = None, max_size: Any = None) -> ContentRules:
        """Rules from unchecked values (a setting, an argument).

        :raises InvalidArgumentError: naming the argument, for a pattern or a size that is
            not one.
        """
        try:
            types = None if allowed_types is None else parse_allowed_types(allowed_types)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"allowed_types {exc}") from None
        try:
            size = None if max_size is None else parse_max_size(max_size)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"max_size {exc}") from None
        return cls(types, size)

    def __bool__(self) -> bool:
        return self.allowed_types is not None or self.max_size is not None


def parse_allowed_types(value: Any) -> tuple[str, ...]:
    """``value`` as a tuple of lower-case patterns: ``"image/*"``, ``"application/pdf"``...

    A single string is one pattern. Idempotent: a parsed value parses to itself.

    :raises InvalidArgumentError: for anything but a non-empty list of patterns.
    """
    patterns = [value] if isinstance(value, str) else value
    if not isinstance(patterns, Iterable) or isinstance(patterns, (bytes, dict)):
        raise _bad_types(value)
    parsed = []
    for pattern in patterns:
        text = pattern.strip().lower() if isinstance(pattern, str) else None
        if text is None or not _PATTERN.fullmatch(text):
            raise _bad_types(value)
        parsed.append(text)
    if not parsed:
        raise _bad_types(value)
    return tuple(parsed)


def _bad_types(value: Any) -> InvalidArgumentError:
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:80] + "...(cut)"
    return InvalidArgumentError(
        "must be a non-empty list of media types such as ['image/*', 'application/pdf'] "
        f"(type/subtype, type/* or */*), not {shown}."
    )


def parse_max_size(value: Any) -> int:
    """``value`` as a byte count.

    :raises InvalidArgumentError: for anything but a non-negative ``int``.
    """
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidArgumentError(
            f"must be a non-negative number of bytes or None, not {value!r}."
        )
    return value


def type_allowed(detected: str, patterns: Iterable[str]) -> bool:
    """Whether the media type ``detected`` matches one of ``patterns``.

    A wildcard (``image/*``, ``*/*``) matches only the passive types the serving route
    shows inline (:func:`~flask_store.headers.is_inline_safe`), never active content
    (``image/svg+xml``, ``text/html``...): any other type must be listed exactly.

    >>> type_allowed("image/png", ["image/*"])
    True
    >>> type_allowed("image/svg+xml", ["image/*"])
    False
    >>> type_allowed("image/svg+xml", ["image/svg+xml"])
    True
    """
    for pattern in patterns:
        if pattern == detected:
            return True
        if pattern.endswith("/*") and not is_active_content(detected):
            family = pattern[:-1]
            if pattern == "*/*" or detected.startswith(family):
                return True
    return False


def detected_types(head: bytes, declared: str) -> tuple[str, ...]:
    """The types the first bytes of a file may be, best first.

    Magic numbers decide (several types when they cannot tell them apart: a ZIP head may be
    a .docx or an .xlsx). Bytes with no signature are ``text/plain`` when they read as text,
    else ``application/octet-stream``. Plain text takes the ``declared`` type when that is
    a passive text type (a CSV, JSON), which magic numbers cannot tell from plain text.

    :param declared: the type the file is stored with (given, or guessed from its name).
    """
    sniffed = _sniff(head)
    if sniffed:
        return sniffed
    if not _looks_like_text(head):
        return (FALLBACK_CONTENT_TYPE,)
    declared_type = media_type(declared)
    if _TEXT_LIKE.fullmatch(declared_type) and not is_active_content(declared_type):
        return (declared_type,)
    return ("text/plain",)


def _sniff(head: bytes) -> tuple[str, ...]:
    """The MIME types puremagic gives ``head`` with its best confidence (maybe none)."""
    try:
        import puremagic  # lazily: the optional ``checks`` extra
    except ModuleNotFoundError as exc:
        raise explained(exc, "allowed_types needs puremagic") from exc

    try:
        matches = puremagic.magic_string(head)
    except (puremagic.PureError, ValueError):
        return ()
    typed = [match for match in matches if match.mime_type]
    if not typed:
        return ()
    best = max(match.confidence for match in typed)
    found = dict.fromkeys(
        media_type(match.mime_type) for match in typed if match.confidence == best
    )
    return tuple(found)


def _looks_like_text(head: bytes) -> bool:
    """Whether ``head`` reads as UTF-8 text (a character cut at its end is allowed)."""
    if _BINARY.search(head):
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3 and exc.reason == "unexpected end of data"
    return True


def check_type(head: bytes, declared: str, patterns: Iterable[str], filename: str) -> None:
    """Refuse a file whose bytes or declared type match none of ``patterns``.

    :param head: the file's first :data:`SNIFF_BYTES` bytes (or all of a shorter file).
    :param declared: the type it would be stored with.
    :raises FileTypeRejectedError: naming the file, the type found and the types allowed.
    """
    patterns = tuple(patterns)
    found = detected_types(head, declared)
    if not any(type_allowed(each, patterns) for each in found):
        raise FileTypeRejectedError(
            f"{filename!r} is not accepted: its content is {found[0]}, and only "
            f"{', '.join(patterns)} may be saved here."
        )
    check_declared_type(declared, patterns, filename)


def check_declared_type(declared: str, patterns: Iterable[str], filename: str) -> None:
    """Refuse a file whose declared type (the one it would be stored with) matches none of
    ``patterns``, whatever its bytes: a direct upload's form is refused so before any byte.

    :raises FileTypeRejectedError: naming the file, the type and the types allowed.
    """
    declared_type = media_type(declared)
    if not type_allowed(declared_type, patterns):
        raise FileTypeRejectedError(
            f"{filename!r} is not accepted: it would be stored as {declared_type}, and only "
            f"{', '.join(patterns)} may be saved here; give it a name or content_type of "
            "its real type."
        )


def check_size(size: int, max_size: int, filename: str) -> None:
    """Refuse ``size`` bytes when more than ``max_size``.

    :raises FileTooLargeError: naming the file and the limit.
    """
    if size > max_size:
        raise _too_large(filename, max_size)


def _too_large(filename: str, max_size: int) -> FileTooLargeError:
    return FileTooLargeError(
        f"{filename!r} is not accepted: it is larger than the {max_size} bytes allowed."
    )


def read_head(stream: BinaryIO) -> tuple[bytes, BinaryIO]:
    """The first :data:`SNIFF_BYTES` bytes of ``stream``, and a stream that reads the whole.

    A seekable stream is read and moved back (the same stream is returned, so a spooled
    upload can still be moved into place); any other is wrapped to give the head again.
    """
    extent = seekable_extent(stream)
    if extent is not None:
        head = stream.read(SNIFF_BYTES)
        stream.seek(extent[0])
        return head, stream
    head = read_up_to(stream, SNIFF_BYTES)
    return head, cast(BinaryIO, LimitedStream(stream, head=head))


class LimitedStream(io.RawIOBase):
    """A stream read once, forward: an optional ``head`` already read, then ``stream``; and
    at most ``limit`` bytes of it, raising :class:`FileTooLargeError` at the first byte over.

    The count is of bytes handed on, so memory stays one read's worth whatever the size.
    """

    def __init__(
        self,
        stream: BinaryIO,
        *,
        head: bytes = b"",
        limit: int | None = None,
        filename: str = "",
    ) -> None:
        super().__init__()
        self._stream = stream
        self._head = head
        self._limit = limit
        self._filename = filename
        self._count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            data = self._head[: len(view)]
            self._head = self._head[len(data) :]
        else:
            data = self._stream.read(len(view)) or b""
        self._count += len(data)
        if self._limit is not None and self._count > self._limit:
            raise _too_large(self._filename, self._limit)
        view[: len(data)] = data
        return len(data)


def limited(stream: BinaryIO, max_size: int | None, filename: str) -> BinaryIO:
    """``stream``, refusing to give more than ``max_size`` bytes (``None``: as it is).

    :raises FileTooLargeError: now, for a seekable stream with more left than that;
        otherwise from the read that goes over.
    """
    if max_size is None:
        return stream
    extent = seekable_extent(stream)
    if extent is not None:
        check_size(extent[1], max_size, filename)
        return stream
    return cast(BinaryIO, LimitedStream(stream, limit=max_size, filename=filename))


def apply_rules(upload: Upload, declared: str, rules: ContentRules, filename: str) -> Upload:
    """``upload`` checked by ``rules``: refused now if it can be, else made to refuse while
    it is read.

    :param declared: the content type it would be stored with.
    :raises FileTypeRejectedError: when its type is not allowed.
    :raises FileTooLargeError: when its size is known and over the limit.
    """
    stream = upload.stream
    if rules.allowed_types is not None:
        head, stream = read_head(stream)
        check_type(head, declared, rules.allowed_types, filename)
    stream = limited(stream, rules.max_size, filename)
    if stream is upload.stream:
        return upload
    return Upload(stream, upload.filename, upload.content_type)
