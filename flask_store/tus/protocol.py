"""The tus 1.0.0 protocol's headers, parsed strictly: nothing here knows about stores.

Every function takes a header's raw value (``None`` when absent) and returns what it means,
or raises :class:`~flask_store.exceptions.ResumableUploadError` carrying the status the
protocol prescribes. See https://tus.io/protocols/resumable-upload.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Any

from ..exceptions import ResumableUploadError
from ..headers import media_type

__all__ = [
    "CHECKSUM_ALGORITHMS",
    "EXTENSIONS",
    "MAX_METADATA_CHARS",
    "OFFSET_CONTENT_TYPE",
    "TUS_VERSION",
    "Checksum",
    "check_content_type",
    "check_version",
    "encode_metadata",
    "parse_checksum",
    "parse_content_length",
    "parse_defer_length",
    "parse_length",
    "parse_metadata",
    "parse_offset",
]

#: The only protocol version served (``Tus-Resumable`` / ``Tus-Version``).
TUS_VERSION = "1.0.0"
#: The extensions served, in the order ``Tus-Extension`` lists them.
EXTENSIONS = (
    "creation",
    "creation-with-upload",
    "creation-defer-length",
    "expiration",
    "checksum",
    "termination",
)
#: The body type of a PATCH (and of a creation-with-upload POST).
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
#: Checksum algorithms accepted in ``Upload-Checksum``, by their tus names.
CHECKSUM_ALGORITHMS: Mapping[str, Callable[[], Any]] = {
    "sha1": hashlib.sha1,
    "md5": lambda: hashlib.md5(usedforsecurity=False),
    "sha256": hashlib.sha256,
}
#: The longest ``Upload-Metadata`` accepted: the pairs are kept with the upload and echoed.
MAX_METADATA_CHARS = 4096
#: Twenty digits cover every size a 64-bit offset can hold; more is no size at all.
_DECIMAL = re.compile(r"[0-9]{1,20}")
# RFC 9110 token characters: a metadata key is one such word (no spaces, no commas).
_KEY = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")


def check_version(value: str | None) -> None:
    """Refuse a request whose ``Tus-Resumable`` is missing or another version (412)."""
    if value != TUS_VERSION:
        raise ResumableUploadError(
            f"This server speaks tus {TUS_VERSION}; send 'Tus-Resumable: {TUS_VERSION}'.", 412
        )


def _decimal(value: str, header: str) -> int:
    if not _DECIMAL.fullmatch(value):
        raise ResumableUploadError(f"{header} must be a non-negative whole number of bytes.")
    return int(value)


def parse_length(value: str | None, max_size: int) -> int | None:
    """``Upload-Length``: the upload's size, ``None`` when absent.

    :raises ResumableUploadError: 400 for anything but digits (a sign, spaces, hex, a
        fraction), 413 above ``max_size``.
    """
    if value is None:
        return None
    length = _decimal(value, "Upload-Length")
    if length > max_size:
        raise ResumableUploadError(
            f"The upload is larger than this server accepts ({max_size} bytes).", 413
        )
    return length


def parse_content_length(value: str | None) -> int | None:
    """``Content-Length`` of a PATCH or POST: ``None`` when absent or empty (a chunked body).

    :raises ResumableUploadError: 400 for anything but up to twenty ASCII digits (a
        thousand-digit value would otherwise fail converting to a number).
    """
    if not value:
        return None
    return _decimal(value, "Content-Length")


def parse_defer_length(value: str | None) -> bool:
    """``Upload-Defer-Length``: whether the size is sent later; only ``1`` is allowed."""
    if value is None:
        return False
    if value != "1":
        raise ResumableUploadError("Upload-Defer-Length must be 1.")
    return True


def parse_offset(value: str | None) -> int:
    """``Upload-Offset`` of a PATCH: required, digits only."""
    if value is None:
        raise ResumableUploadError("A PATCH must say where its bytes go: send Upload-Offset.")
    return _decimal(value, "Upload-Offset")


def check_content_type(value: str | None) -> None:
    """Refuse a body that is not ``application/offset+octet-stream`` (415).

    Parameters are ignored (``; charset=...`` means nothing for bytes); the media type must
    be exactly that one.
    """
    if media_type(value or "") != OFFSET_CONTENT_TYPE:
        raise ResumableUploadError(f"Send the bytes as Content-Type: {OFFSET_CONTENT_TYPE}.", 415)


def parse_metadata(value: str | None) -> dict[str, str]:
    """``Upload-Metadata``: comma-separated ``key base64value`` pairs (the value optional).

    Values are decoded as strict base64 and then as UTF-8 (``filename`` and ``filetype`` are
    text); a key may appear once.

    :returns: ``{key: text}``; a key without a value maps to ``""``.
    :raises ResumableUploadError: 400 for a malformed pair, a repeated or odd key, base64
        that is not canonical, or bytes that are not UTF-8 text without control characters.
    """
    if value is None or not value.strip():
        return {}
    if len(value) > MAX_METADATA_CHARS:
        raise ResumableUploadError(
            f"Upload-Metadata is longer than {MAX_METADATA_CHARS} characters."
        )
    pairs: dict[str, str] = {}
    for pair in value.split(","):
        key, _, encoded = pair.strip().partition(" ")
        if not _KEY.fullmatch(key) or " " in encoded.strip():
            raise ResumableUploadError("Upload-Metadata must be pairs of 'key base64value'.")
        if key in pairs:
            raise ResumableUploadError(f"Upload-Metadata names {key!r} twice.")
        pairs[key] = _decode_value(key, encoded.strip())
    return pairs


def _decode_value(key: str, encoded: str) -> str:
    try:
        raw = base64.b64decode(encoded.encode("ascii"), validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, UnicodeError) as exc:
        raise ResumableUploadError(f"Upload-Metadata {key!r} is not base64 of UTF-8 text.") from exc
    if base64.b64encode(raw).decode("ascii") != encoded:
        raise ResumableUploadError(f"Upload-Metadata {key!r} is not canonical base64.")
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise ResumableUploadError(f"Upload-Metadata {key!r} holds control characters.")
    return text


def encode_metadata(pairs: Mapping[str, str]) -> str:
    """The ``Upload-Metadata`` header for ``pairs`` (what HEAD answers with)."""
    return ",".join(
        f"{key} {base64.b64encode(text.encode()).decode('ascii')}" if text else key
        for key, text in pairs.items()
    )


class Checksum:
    """An ``Upload-Checksum``: the algorithm and the digest a PATCH's body must have.

    Feed the body to :meth:`update` as it arrives; :meth:`matches` says whether it is the
    body the client meant.
    """

    def __init__(self, algorithm: str, digest: bytes) -> None:
        self.algorithm = algorithm
        self.expected = digest
        self._hash = CHECKSUM_ALGORITHMS[algorithm]()

    def update(self, data: bytes) -> None:
        """Add the next bytes of the body."""
        self._hash.update(data)

    def matches(self) -> bool:
        """Whether the bytes fed so far have the expected digest."""
        digest: bytes = self._hash.digest()
        return digest == self.expected


def parse_checksum(value: str | None) -> Checksum | None:
    """``Upload-Checksum``: ``<algorithm> <base64 digest>``, ``None`` when absent.

    :raises ResumableUploadError: 400 for an algorithm not in :data:`CHECKSUM_ALGORITHMS`
        or a digest that is not base64 of that algorithm's length.
    """
    if value is None:
        return None
    algorithm, _, encoded = value.strip().partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise ResumableUploadError(
            f"Upload-Checksum: {algorithm!r} is not one of {', '.join(CHECKSUM_ALGORITHMS)}."
        )
    try:
        digest = base64.b64decode(encoded.strip().encode("ascii"), validate=True)
    except (binascii.Error, UnicodeError) as exc:
        raise ResumableUploadError("Upload-Checksum: the digest is not base64.") from exc
    if len(digest) != CHECKSUM_ALGORITHMS[algorithm]().digest_size:
        raise ResumableUploadError(f"Upload-Checksum: not a {algorithm} digest.")
    return Checksum(algorithm, digest)
