"""What ``save()`` accepts, turned into one shape: a readable binary stream and a filename.

Users hand ``save()`` a Werkzeug ``FileStorage`` from ``request.files``, a binary file object,
``bytes``, or a path on disk. Every store then deals with a single :class:`Upload`, and every
bad input is refused here, before a store creates anything.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, cast

from werkzeug.datastructures import FileStorage

from .exceptions import EmptyFileError, InvalidFileError, StoreError, UploadReadError
from .headers import parse_content_type
from .spooling import SpoolFile

__all__ = [
    "CHUNK_SIZE",
    "Upload",
    "UploadChunks",
    "open_upload",
    "read_checked",
    "seekable_extent",
    "spool_of",
]

#: Chunk size for every streamed copy: large enough for few syscalls, small enough for flat memory.
CHUNK_SIZE = 1024 * 1024


@dataclass
class Upload:
    """One file to store.

    :param stream: binary stream positioned at the start of the data.
    :param filename: the client's original filename (used to derive the key), or ``None``.
    :param content_type: the content type the caller vouches for, parsed
        (:func:`~flask_store.headers.parse_content_type`), or ``None`` to guess.
    """

    stream: BinaryIO
    filename: str | None
    content_type: str | None = None

    def chunks(self, size: int = CHUNK_SIZE) -> UploadChunks:
        """Read the stream in chunks, turning read failures into :class:`UploadReadError`."""
        return UploadChunks(self.stream, size)


class UploadChunks(Iterator[bytes]):
    """An upload's bytes in chunks, read lazily; what ``save()`` hands a store's ``_write``.

    Besides the bytes it tells a store whether the data already sits in a file Flask-Store
    spooled on disk (:attr:`spool`), which a store on the same file system may move into
    place instead of reading (see :mod:`flask_store.spooling`).
    """

    def __init__(self, stream: BinaryIO, size: int = CHUNK_SIZE) -> None:
        #: The Flask-Store spool file holding the data, or ``None`` for any other stream.
        self.spool: SpoolFile | None = stream if isinstance(stream, SpoolFile) else None
        self._chunks = _read_chunks(stream, size)

    def __next__(self) -> bytes:
        return next(self._chunks)


def _read_chunks(stream: BinaryIO, size: int) -> Iterator[bytes]:
    while chunk := read_checked(stream, size):
        yield chunk


def read_checked(stream: BinaryIO, size: int) -> bytes:
    """One ``read(size)`` of an upload, ``b""`` at its end; for stores that read streams.

    :raises UploadReadError: when the read fails.
    :raises InvalidFileError: when the stream gives text instead of bytes.
    """
    try:
        chunk = stream.read(size)
    except StoreError:
        raise  # a check of the stream (content_checks.LimitedStream) has said why already
    except (OSError, ValueError) as exc:
        raise UploadReadError(f"Reading the upload failed part-way: {exc}") from exc
    if not chunk:
        return b""
    if not isinstance(chunk, (bytes, bytearray, memoryview)):
        raise InvalidFileError(
            "save() needs a binary stream; open the file with 'rb' or pass bytes."
        )
    return bytes(chunk)


def spool_of(chunks: Iterator[bytes]) -> SpoolFile | None:
    """The Flask-Store spool file behind ``chunks``, if a store may take it over."""
    return chunks.spool if isinstance(chunks, UploadChunks) else None


@contextmanager
def open_upload(
    file: Any, name: str | None = None, content_type: str | None = None
) -> Iterator[Upload]:
    """Describe ``file`` as an :class:`Upload`, opening and closing a path if given one.

    :param file: a ``FileStorage``, binary file object, ``bytes``/``bytearray``/``memoryview``,
        or a filesystem path (``str`` or ``os.PathLike``).
    :param name: a filename to use instead of the one the file carries.
    :param content_type: a content type to store instead of guessing from the name; it is
        parsed first, so a bad one is refused before anything is opened or stored.
    :raises InvalidFileError: for ``None``, text, or objects that are not files.
    :raises EmptyFileError: for an empty form field (no filename and no data).
    :raises InvalidArgumentError: for a ``content_type`` that is not one media type.
    """
    if content_type is not None:
        content_type = parse_content_type(content_type)
    if file is None:
        raise InvalidFileError(
            "save() was given None; check that the form field name matches request.files "
            "and that the form uses enctype='multipart/form-data'."
        )
    if isinstance(file, FileStorage):
        yield _from_file_storage(file, name, content_type)
    elif isinstance(file, (bytes, bytearray, memoryview)):
        yield Upload(io.BytesIO(file), name, content_type)
    elif isinstance(file, (str, os.PathLike)):
        path = os.fspath(file)
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed by the with below
        except OSError as exc:
            # The file's name only: the message may reach a client through the error handlers.
            shown = os.path.basename(path)
            raise InvalidFileError(f"Cannot open {shown!r} to save it: {exc.strerror}.") from exc
        with handle:
            yield Upload(handle, name or os.path.basename(path), content_type)
    elif isinstance(file, io.TextIOBase):
        raise InvalidFileError("save() needs a binary file; open it with 'rb', not 'r'.")
    elif callable(getattr(file, "read", None)):
        own_name = getattr(file, "name", None)
        filename = name or (os.path.basename(own_name) if isinstance(own_name, str) else None)
        yield Upload(cast(BinaryIO, file), filename, content_type)
    else:
        raise InvalidFileError(
            f"save() cannot store a {type(file).__name__}; pass a FileStorage, a binary "
            "file object, bytes or a path."
        )


def _from_file_storage(storage: FileStorage, name: str | None, content_type: str | None) -> Upload:
    """An :class:`Upload` for a Werkzeug upload, refusing empty form fields."""
    stream = storage.stream
    if not storage.filename and not name and _is_empty(stream):
        raise EmptyFileError(
            "The upload is empty: no file was chosen in the form field. Check for this "
            "before saving (request.files['field'].filename is empty)."
        )
    return Upload(cast(BinaryIO, stream), name or storage.filename, content_type)


def seekable_extent(stream: IO[bytes]) -> tuple[int, int] | None:
    """``(position, bytes left)`` of a seekable stream, ``None`` for one that cannot seek.

    A stream with ``seek`` and ``tell`` but no ``seekable()`` is tried: Python 3.10's
    ``SpooledTemporaryFile``, which holds every Werkzeug 3 upload, lacks the method.
    """
    try:
        seekable = getattr(stream, "seekable", None)
        if seekable is not None and not seekable():
            return None
        start = stream.tell()
        stream.seek(0, io.SEEK_END)
        end = stream.tell()
        stream.seek(start)
    except (AttributeError, OSError, ValueError):
        return None
    return start, end - start


def _is_empty(stream: IO[bytes]) -> bool:
    """Whether a seekable stream holds no data (non-seekable streams count as non-empty)."""
    extent = seekable_extent(stream)
    return extent is not None and extent[1] == 0
