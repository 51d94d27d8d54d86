"""What is known about a stored file besides its bytes, and how it is worked out.

A leaf module: :class:`FileInfo` (what a store reports), :class:`FileMeta` (what a save
records), the content type guessed from a name, and the MD5 helpers that compare files.
Stores, transfers, the read cache and the serving route all speak these types.
"""

from __future__ import annotations

import functools
import hashlib
import mimetypes
from dataclasses import dataclass
from datetime import datetime
from typing import IO

from .headers import normalise_content_type
from .sources import CHUNK_SIZE

__all__ = ["FileInfo", "FileMeta", "guess_content_type", "measure", "recorded_md5"]

# Compressed files are served as what they are, never with a Content-Encoding a browser undoes.
_COMPRESSED_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "br": "application/x-brotli",
    "compress": "application/x-compress",
}


def guess_content_type(name: str) -> str:
    """The content type of a file called ``name``, from its extension.

    The answer is parsed like any other type: ``mimetypes`` also reads the system's
    ``mime.types`` files, which this library does not control. Answers are kept per
    extension: call :func:`mimetypes.add_type` before the app saves or serves files.
    """
    first_dot = name.find(".")
    if first_dot > 0 and ":" not in name and "/" not in name:
        # Only the extensions count (a URL scheme or a leading dot aside, which these
        # names cannot have): "a.tar.gz" and "b.tar.gz" share one answer, worked out once.
        return _guess_from_extensions(name[first_dot:])
    return _guessed(name)


@functools.lru_cache(maxsize=256)
def _guess_from_extensions(extensions: str) -> str:
    return _guessed("x" + extensions)


def _guessed(name: str) -> str:
    content_type, encoding = mimetypes.guess_type(name, strict=False)
    if encoding:
        return _COMPRESSED_TYPES.get(encoding, "application/octet-stream")
    return normalise_content_type(content_type)


@dataclass(frozen=True)
class FileMeta:
    """What a store records beside a file's bytes."""

    filename: str
    content_type: str


@dataclass(frozen=True)
class FileInfo:
    """A stored file's metadata, as the store knows it.

    :param key: the file's key in the store.
    :param size: size in bytes.
    :param content_type: the file's content type: always one parsed ``type/subtype``
        (:func:`~flask_store.headers.parse_content_type`). A value that is not one (written
        unchecked by an older version or another program, with a list of types or CR/LF)
        becomes ``application/octet-stream``, so it is served safely instead of failing.
        What a browser is sent is derived from it (:mod:`flask_store.headers`).
    :param filename: the client's original filename (the key's last part when unknown).
    :param last_modified: when it was written (timezone-aware, UTC).
    :param etag: an unquoted entity tag that changes whenever the content changes.
    """

    key: str
    size: int
    content_type: str
    filename: str
    last_modified: datetime
    etag: str

    def __post_init__(self) -> None:
        # Every store's metadata passes through here on its way out: one check covers them.
        object.__setattr__(self, "content_type", normalise_content_type(self.content_type))


def measure(stream: IO[bytes]) -> tuple[int, str]:
    """Length and hex MD5 of what is left in ``stream``, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    while chunk := stream.read(CHUNK_SIZE):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def recorded_md5(info: FileInfo) -> str | None:
    """The MD5 a store recorded as the ETag (S3 single-part uploads, MemoryStore), if any."""
    etag = info.etag.strip('"')
    is_md5 = len(etag) == 32 and all(c in "0123456789abcdef" for c in etag)
    return etag if is_md5 else None
