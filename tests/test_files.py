"""The file helpers every store shares: spans of an open file read and copied in blocks."""

from __future__ import annotations

import array
import errno
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flask_store.files import READ_CHUNK, FileSpan, copy_span

DATA = bytes(range(256)) * 40  # 10,240 bytes, each position recognisable


@pytest.fixture
def fd(tmp_path: Path) -> Iterator[int]:
    path = tmp_path / "data"
    path.write_bytes(DATA)
    opened = os.open(path, os.O_RDONLY)
    yield opened
    os.close(opened)


@given(
    start=st.integers(0, len(DATA)),
    length=st.integers(0, len(DATA)),
    reads=st.lists(st.integers(1, 3000), max_size=20),
)
def test_a_span_reads_exactly_its_bytes(
    tmp_path_factory: pytest.TempPathFactory, start: int, length: int, reads: list[int]
) -> None:
    length = min(length, len(DATA) - start)
    path = tmp_path_factory.mktemp("span") / "data"
    path.write_bytes(DATA)
    with open(path, "rb") as file:
        file.seek(123)
        span = FileSpan(file.fileno(), start, length)
        got = b"".join(span.read(size) for size in reads) + span.read()
        assert got == DATA[start : start + length]
        assert span.read() == b""
        assert file.tell() == 123  # the descriptor's own position is left alone


def test_a_span_seeks_like_a_file(fd: int) -> None:
    span = FileSpan(fd, 1000, 500)
    assert span.seekable() and span.readable()
    assert span.seek(0, io.SEEK_END) == 500  # how botocore measures a body
    assert span.read(10) == b""
    assert span.seek(-20, io.SEEK_END) == 480
    assert span.read(5) == DATA[1480:1485]
    assert span.seek(-5, io.SEEK_CUR) == 480
    assert span.tell() == 480
    assert span.seek(0) == 0
    assert span.read(3) == DATA[1000:1003]
    buffer = bytearray(600)
    assert span.readinto(buffer) == 497
    assert bytes(buffer[:497]) == DATA[1003:1500]
    with pytest.raises(ValueError, match="negative"):
        span.seek(-1)
    with pytest.raises(ValueError, match="whence"):
        span.seek(0, 7)


def test_a_span_past_the_files_end_is_an_error_not_a_short_read(fd: int) -> None:
    """A body announced with the span's length must never come short."""
    span = FileSpan(fd, len(DATA) - 10, 20)
    assert span.read(10) == DATA[-10:]
    with pytest.raises(OSError) as raised:
        span.read(10)
    assert raised.value.errno == errno.EIO


def test_a_closed_span_refuses_to_read_or_seek(fd: int) -> None:
    span = FileSpan(fd, 0, 10)
    span.close()
    for call in (lambda: span.read(1), lambda: span.seek(0), span.tell):
        with pytest.raises(ValueError, match="closed"):
            call()
    assert os.fstat(fd)  # the descriptor is its owner's: still open


def test_copy_span_copies_in_blocks_and_refuses_a_short_source(tmp_path: Path) -> None:
    data = os.urandom(2 * READ_CHUNK + 5)
    source_path, target_path = tmp_path / "source", tmp_path / "target"
    source_path.write_bytes(data)
    source = os.open(source_path, os.O_RDONLY)
    target = os.open(target_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        os.write(target, b"head")
        copy_span(source, target, 7, len(data) - 7)
        assert target_path.read_bytes() == b"head" + data[7:]
        with pytest.raises(OSError) as raised:
            copy_span(source, target, len(data) - 3, 4)
        assert raised.value.errno == errno.EIO
    finally:
        os.close(source)
        os.close(target)


def test_a_span_counts_bytes_into_a_buffer_of_wider_items(fd: int) -> None:
    """``readinto`` takes any writable buffer, as ``FileIO`` does: a buffer of 4-byte items
    holds four times its ``len()`` in bytes, and the span still ends where it ends."""
    span = FileSpan(fd, 10, 20)
    items = array.array("I", bytes(400))
    assert span.readinto(memoryview(items)) == 20
    assert items.tobytes()[:20] == DATA[10:30]
    assert items.tobytes()[20:] == bytes(380)
    assert span.tell() == 20
    assert span.read() == b""


@pytest.mark.parametrize(("start", "length"), [(-1, 5), (0, -1), (1.5, 5), (0, 2.0)])
def test_a_span_refuses_a_start_or_length_no_file_has(start: Any, length: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        FileSpan(0, start, length)


def test_a_span_seeks_to_whole_positions_only(fd: int) -> None:
    span = FileSpan(fd, 0, 10)
    with pytest.raises(TypeError):
        span.seek(1.5)  # type: ignore[arg-type]
    assert span.tell() == 0


def test_a_closed_span_is_neither_readable_nor_seekable(fd: int) -> None:
    """As ``FileIO``: asking a closed stream what it can do is an error."""
    span = FileSpan(fd, 0, 10)
    with span:
        assert span.read(2) == DATA[:2]
    for call in (span.readable, span.seekable, span.readall, lambda: span.readinto(bytearray(1))):
        with pytest.raises(ValueError, match="closed"):
            call()
