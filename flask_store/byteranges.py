"""Byte ranges of a file: which ones to serve, and the ``multipart/byteranges`` body of several.

A leaf module (RFC 9110 §14): it knows byte offsets and streams, nothing of stores or Flask.
The serving route asks :func:`spans_to_serve` which bytes a ``Range`` header gets, and answers
two or more spans with a :class:`MultipartByteranges` body read from one stream of the file.

The rules, chosen with nginx and Apache in mind and allowed by RFC 9110 §14.3:

- at most :data:`MAX_RANGES` ranges; a longer list is ignored (200 with the whole file), as
  nginx does beyond ``max_ranges`` and Apache beyond ``MaxRanges``;
- ranges outside the file are dropped; when none is left the answer is 416, when one is left
  it is a plain 206 (never a multipart body for a single range, §14.6);
- the ranges must come in ascending order and must not overlap; otherwise the whole file is
  sent. A list that does is how a client asks for more bytes than the file holds (the
  "Apache Killer" request), and no media player or download manager sends one.
"""

from __future__ import annotations

import io
import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import pairwise
from typing import BinaryIO

from .exceptions import FileChangedError

__all__ = [
    "MAX_RANGES",
    "MultipartBody",
    "MultipartByteranges",
    "Span",
    "content_range_of",
    "spans_to_serve",
    "starts_and_covers",
]

#: Most ranges one request may ask for and still be split; more are answered with the file.
MAX_RANGES = 16

#: Bytes read per step where a gap between parts is read and dropped.
_SKIP_BLOCK = 64 * 1024

#: ``(start, stop)``: the bytes from ``start`` up to, not including, ``stop``.
Span = tuple[int, int]


#: ``Content-Range`` of a 206: ``bytes first-last/size`` (at most 20 digits each: no size
#: S3 holds has more, and ``int()`` refuses thousands).
_CONTENT_RANGE = re.compile(r"bytes ([0-9]{1,20})-([0-9]{1,20})/([0-9]{1,20})")


def content_range_of(content_range: object, length: object) -> tuple[Span, int] | None:
    """The span of the object a 206 carries, and the object's size, from its
    ``Content-Range`` and ``Content-Length``; ``None`` unless ``Content-Range`` is
    ``bytes first-last/size`` with ``first <= last < size`` and the body holds
    ``last - first + 1`` bytes."""
    match = _CONTENT_RANGE.fullmatch(content_range) if isinstance(content_range, str) else None
    if match is None:
        return None
    first, last, size = (int(number) for number in match.groups())
    if not first <= last < size or length != last + 1 - first:
        return None
    return (first, last + 1), size


def starts_and_covers(sent: Span, wanted: Span) -> bool:
    """Whether bytes ``sent`` start where ``wanted`` does and hold all of it (readers stop at
    its end: s3rver answers ``bytes=0-0`` with the whole object)."""
    return sent[0] == wanted[0] and sent[1] >= wanted[1]


def spans_to_serve(ranges: Sequence[tuple[int, int | None]], size: int) -> list[Span] | None:
    """The spans of a file of ``size`` bytes that a 206 answers ``ranges`` with.

    :param ranges: byte ranges as Werkzeug's ``parse_range_header`` gives them: ``(start,
        stop)`` with ``stop`` exclusive, ``(start, None)`` for "from start on" and ``(-n,
        None)`` for the last ``n`` bytes.
    :returns: ``None`` to ignore the ranges and send the whole file (too many, out of order
        or overlapping); an empty list when none is satisfiable (416); else the spans, in
        ascending order.
    """
    if len(ranges) > MAX_RANGES:
        return None
    spans = [span for span in (_satisfiable(r, size) for r in ranges) if span is not None]
    if any(later[0] < earlier[1] for earlier, later in pairwise(spans)):
        return None
    return spans


def _satisfiable(byte_range: tuple[int, int | None], size: int) -> Span | None:
    """The span of ``byte_range`` within ``size`` bytes, or ``None`` if it starts beyond them.

    A suffix longer than the file means all of it, and a range running past the end stops
    there (RFC 9110 §14.1.2).
    """
    start, stop = byte_range
    if stop is None:
        start = max(size + start, 0) if start < 0 else start
        stop = size
    if start >= size:
        return None
    return start, min(stop, size)


def _new_boundary() -> str:
    # Random for every answer: an uploader who wrote a boundary into a file to forge parts
    # of someone's response cannot know the one it will be cut with.
    return secrets.token_hex(16)


@dataclass(frozen=True)
class MultipartByteranges:
    """The frame of a ``multipart/byteranges`` body (RFC 9110 §14.6) for ``spans`` of a file.

    Each part carries the file's ``Content-Type`` and its own ``Content-Range``, then its
    bytes. The body's length is known before a byte is read, so the answer has a
    ``Content-Length`` as nginx's does.

    :param spans: two or more spans, ascending and apart (see :func:`spans_to_serve`).
    :param size: the file's size, for each part's ``Content-Range``.
    :param part_type: the ``Content-Type`` of the file, repeated in each part (left out when
        ``None``).
    """

    spans: tuple[Span, ...]
    size: int
    part_type: str | None
    boundary: str = field(default_factory=_new_boundary)

    @property
    def content_type(self) -> str:
        """The answer's ``Content-Type``."""
        return f"multipart/byteranges; boundary={self.boundary}"

    @cached_property
    def heads(self) -> tuple[bytes, ...]:
        """What comes before each part's bytes: its delimiter and header fields.

        Built once: :attr:`length` sums them and :class:`MultipartBody` sends them.
        """
        heads = []
        for number, (start, stop) in enumerate(self.spans):
            lines = [f"--{self.boundary}"]
            if self.part_type is not None:
                lines.append(f"Content-Type: {self.part_type}")
            lines.append(f"Content-Range: bytes {start}-{stop - 1}/{self.size}")
            # The CRLF that ends the previous part's bytes belongs to this delimiter.
            heads.append(("\r\n" if number else "") + "\r\n".join(lines) + "\r\n\r\n")
        return tuple(head.encode("latin-1") for head in heads)

    @property
    def tail(self) -> bytes:
        """The closing delimiter after the last part."""
        return f"\r\n--{self.boundary}--\r\n".encode("latin-1")

    @property
    def length(self) -> int:
        """The body's length in bytes."""
        data = sum(stop - start for start, stop in self.spans)
        return sum(map(len, self.heads)) + data + len(self.tail)

    def body(self, stream: BinaryIO, block: int) -> MultipartBody:
        """The body, read from ``stream``, which stands at the first span's start."""
        return MultipartBody(self, stream, block)


class MultipartBody:
    """The bytes of a :class:`MultipartByteranges`, read from one stream of the file.

    One stream for all parts, from the first byte asked for to the last, so no part comes
    from another version of the file. The gaps between parts are skipped by seeking where the
    stream can, else read and dropped, so stores whose streams cannot seek work too (the
    serving route hands S3 bodies over in a stream whose seek opens a new ranged GET past a
    long gap). Memory stays at one block.

    A WSGI iterable: the server calls :meth:`close` when the answer is done or abandoned,
    which closes the stream, also when no byte was ever read.
    """

    def __init__(self, frame: MultipartByteranges, stream: BinaryIO, block: int) -> None:
        self._frame = frame
        self._stream = stream
        self._block = block

    def __iter__(self) -> Iterator[bytes]:
        position = self._frame.spans[0][0]
        for head, (start, stop) in zip(self._frame.heads, self._frame.spans, strict=True):
            _skip(self._stream, start - position)
            yield head
            yield from _read_exactly(self._stream, stop - start, self._block)
            position = stop
        yield self._frame.tail

    def close(self) -> None:
        self._stream.close()


def _skip(stream: BinaryIO, count: int) -> None:
    """Move ``stream`` ``count`` bytes on from where it stands."""
    if count <= 0:
        return
    if stream.seekable():
        stream.seek(count, io.SEEK_CUR)
        return
    for _ in _read_exactly(stream, count, _SKIP_BLOCK):
        pass


def _read_exactly(stream: BinaryIO, count: int, block: int) -> Iterator[bytes]:
    """The next ``count`` bytes of ``stream``, in chunks of at most ``block``.

    :raises FileChangedError: when the stream ends first: the length and the ``Content-Range``
        already sent would be wrong, so the answer must break off rather than end short.
    """
    left = count
    while left > 0:
        chunk = stream.read(min(block, left))
        if not chunk:
            raise FileChangedError(
                f"The file ended {left} bytes early while a range of it was sent; "
                "it was changed or truncated while being read."
            )
        left -= len(chunk)
        yield chunk
