"""Small file-system helpers shared by the stores, the read cache and the transfer records."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable


def remove_quietly(path: str) -> None:
    """Remove the file ``path``; a file already gone is fine."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def remove_if_same_file(path: str, expected: os.stat_result) -> None:
    """Remove ``path`` only if it still names the file ``expected`` describes.

    For cleaning up a name this process made, without removing a file that has replaced it.
    """
    with contextlib.suppress(OSError):
        if os.path.samestat(os.lstat(path), expected):
            os.unlink(path)


def atomic_write(
    path: str,
    chunks: Iterable[bytes],
    *,
    temp_folder: str | None = None,
    temp_prefix: str = ".tmp-",
    fsync: bool = False,
) -> int:
    """Write ``chunks`` to ``path`` so that readers see the old file or the whole new one.

    The data goes to a hidden temporary file (in ``temp_folder``, by default beside ``path``;
    it must be on the same file system) that is then renamed over ``path``. With ``fsync``
    the data reaches the disk before the rename. Nothing is left behind on failure.

    :returns: the number of bytes written.
    """
    folder = temp_folder if temp_folder is not None else os.path.dirname(path)
    fd, temp_path = tempfile.mkstemp(prefix=temp_prefix, dir=folder)
    written = 0
    try:
        with open(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                written += len(chunk)
            if fsync:
                out.flush()
                os.fsync(out.fileno())
        os.replace(temp_path, path)
    finally:
        remove_quietly(temp_path)
    return written
