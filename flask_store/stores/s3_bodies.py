"""What an S3 store sends: the upload's bytes as a seekable body of known size.

A conditional write that loses a race is retried under the next key, so the bytes must be
readable again. A seekable stream (a Werkzeug upload, a file, ``bytes``) is sent as it is and
rewound; anything else is spooled to a temporary file once. Types in ``STORE_S3_GZIP_TYPES``
are compressed into a temporary file on the way, so memory stays flat whatever the size.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO, cast

from ..sources import CHUNK_SIZE, Upload, read_checked, seekable_extent

__all__ = ["Body", "prepare_body", "spool_body"]

#: Data smaller than this is spooled in memory, larger data goes to a temporary file.
SPOOL_IN_MEMORY = CHUNK_SIZE


@dataclass
class Body:
    """Bytes ready to send: ``size`` bytes of ``stream`` from ``start``.

    :param original_size: the size before compression (equal to ``size`` unless ``gzipped``).
    """

    stream: BinaryIO
    start: int
    size: int
    original_size: int
    gzipped: bool

    def rewind(self) -> BinaryIO:
        """The stream, positioned at the start of the data again."""
        self.stream.seek(self.start)
        return self.stream

    def md5(self) -> str:
        """The hex MD5 of the bytes sent: S3's ETag of the object after a single PUT.

        Read again from the stream, after the upload: nothing is held in memory.
        """
        digest = hashlib.md5(usedforsecurity=False)
        stream, left = self.rewind(), self.size
        while left > 0:
            chunk = stream.read(min(CHUNK_SIZE, left))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
        return digest.hexdigest()


class CheckedReader(io.RawIOBase):
    """A seekable upload stream whose read failures surface as :class:`UploadReadError`.

    boto3 reads the body in its own threads; without this a dropped client connection would
    arrive as a bare ``OSError`` from deep inside the transfer.
    """

    def __init__(self, stream: BinaryIO) -> None:
        super().__init__()
        self._stream = stream

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        return read_checked(self._stream, -1 if size is None else size)

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._stream.seek(offset, whence)
        return self._stream.tell()

    def tell(self) -> int:
        return self._stream.tell()


@contextmanager
def prepare_body(upload: Upload, gzipped: bool) -> Iterator[Body]:
    """The upload as a :class:`Body`, compressed with gzip when ``gzipped``.

    Temporary files are removed when the block ends.

    :raises UploadReadError: when reading the upload fails part-way.
    """
    extent = seekable_extent(upload.stream)
    if extent is None or gzipped:
        with spool_body(upload.chunks(), gzipped) as body:
            yield body
        return
    start, size = extent
    yield Body(cast(BinaryIO, CheckedReader(upload.stream)), start, size, size, gzipped=False)


@contextmanager
def spool_body(chunks: Iterator[bytes], gzipped: bool) -> Iterator[Body]:
    """``chunks`` copied into a temporary file (through gzip if asked) as a :class:`Body`."""
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool_file:
        spool = cast(BinaryIO, spool_file)
        original_size = 0
        target = (
            cast(BinaryIO, gzip.GzipFile(fileobj=spool, mode="wb", mtime=0)) if gzipped else spool
        )
        try:
            for chunk in chunks:
                target.write(chunk)
                original_size += len(chunk)
        finally:
            if gzipped:
                target.close()  # writes the gzip trailer; the spool stays open
        yield Body(spool, 0, spool.tell(), original_size, gzipped)
