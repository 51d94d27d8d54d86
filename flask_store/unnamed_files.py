"""Files without a name until they are complete: Linux's ``O_TMPFILE`` and ``linkat``.

A file opened with ``O_TMPFILE`` in a folder has no directory entry; once its data is
written, ``linkat`` gives it a name, and fails if that name is taken. A save then costs one
directory entry instead of three (a temporary name, the final name, removing the first),
and a process killed mid-write leaves nothing behind: the kernel frees an unnamed file.

Where the platform or the file system lacks either call, :func:`supported` says so and the
store falls back to a named hidden temporary file. Large uploads are spooled into such
files too (:mod:`flask_store.spooling`), so a worker killed mid-request leaves nothing.
"""

from __future__ import annotations

import errno
import os
import secrets

from .files import remove_quietly

__all__ = ["UNSUPPORTED_ERRNOS", "link_unnamed", "open_unnamed", "supported"]

_O_TMPFILE: int | None = getattr(os, "O_TMPFILE", None)
#: ``os.link`` calls ``linkat`` with ``AT_SYMLINK_FOLLOW`` only when given a folder's
#: descriptor; plain ``link()`` would not follow ``/proc/self/fd``'s link to the file. Without
#: ``/proc`` (some chroots) that link is missing: ``linkat`` would fail with ENOENT, which
#: callers would take for a missing target folder.
_LINKAT_FOLLOWS = (
    os.link in os.supports_dir_fd
    and os.link in os.supports_follow_symlinks
    and os.path.isdir("/proc/self/fd")
)
#: ``errno`` values of :func:`open_unnamed` meaning "no unnamed files here": the file system
#: (EOPNOTSUPP) or the kernel (EISDIR, before Linux 3.11) cannot make them.
UNSUPPORTED_ERRNOS = frozenset({errno.EOPNOTSUPP, errno.ENOTSUP, errno.EISDIR})


def open_unnamed(folder: str, *, readable: bool = False) -> int:
    """A new file with no name in ``folder``, open for writing (and reading, if
    ``readable``), mode ``0o666`` less umask.

    :raises OSError: where unnamed files are not supported (an ``errno`` in
        :data:`UNSUPPORTED_ERRNOS`; see also :func:`supported`), or ``folder`` is unusable.
    """
    if _O_TMPFILE is None:
        raise OSError(errno.EOPNOTSUPP, "O_TMPFILE is not available here")
    access = os.O_RDWR if readable else os.O_WRONLY
    return os.open(folder, _O_TMPFILE | access | os.O_CLOEXEC, 0o666)


def link_unnamed(fd: int, target: str) -> bool:
    """Give the unnamed file ``fd`` the name ``target``; ``False`` if a file already has it.

    :raises OSError: for any other failure (EOPNOTSUPP where ``linkat`` cannot name it).
    """
    if not _LINKAT_FOLLOWS:
        raise OSError(errno.EOPNOTSUPP, "linkat of an unnamed file is not available here")
    try:
        # The source path is absolute, so linkat ignores src_dir_fd: it is there only to
        # make Python call linkat (with AT_SYMLINK_FOLLOW) instead of link().
        os.link(f"/proc/self/fd/{fd}", target, src_dir_fd=fd, follow_symlinks=True)
    except FileExistsError:
        return False
    return True


def supported(folder: str) -> bool:
    """Whether unnamed files can be made and named in ``folder`` (probed once, for real)."""
    probe = os.path.join(folder, f".probe-{secrets.token_hex(8)}")
    try:
        fd = open_unnamed(folder)
    except OSError:
        return False
    try:
        return link_unnamed(fd, probe)
    except OSError:
        return False
    finally:
        os.close(fd)
        remove_quietly(probe)
