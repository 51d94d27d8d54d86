"""Request bodies: multipart uploads built once, so encoding them is never what is measured."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

BOUNDARY = "flask-store-bench-2f9c1d"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
FIELD = "file"


@dataclass(frozen=True)
class Multipart:
    """A one-file ``multipart/form-data`` body as preamble, file bytes and epilogue."""

    filename: str
    preamble: bytes
    epilogue: bytes
    size: int

    @classmethod
    def for_file(cls, filename: str, size: int) -> Multipart:
        preamble = (
            f"--{BOUNDARY}\r\n"
            f'Content-Disposition: form-data; name="{FIELD}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        return cls(filename, preamble, f"\r\n--{BOUNDARY}--\r\n".encode(), size)

    @property
    def content_length(self) -> int:
        return len(self.preamble) + self.size + len(self.epilogue)

    def body(self, data: bytes) -> bytes:
        """The whole body in memory (for the test client and files up to a few MiB)."""
        return self.preamble + data + self.epilogue

    def stream(self, block: bytes) -> Iterator[bytes]:
        """The body in pieces, repeating ``block`` for the file: flat memory for any size."""
        yield self.preamble
        left = self.size
        view = memoryview(block)
        while left > 0:
            piece = view[: min(left, len(block))]
            left -= len(piece)
            yield bytes(piece)
        yield self.epilogue


def random_bytes(size: int) -> bytes:
    """Incompressible content of ``size`` bytes."""
    return os.urandom(size)
