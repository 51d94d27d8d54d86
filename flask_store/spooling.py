"""Zero-copy saves: Werkzeug spools large uploads straight into the store's own folder.

Werkzeug parses a multipart request by writing each uploaded file into a temporary file
(``/tmp`` by default); ``FileStorage.save()`` then copies it again into place, so a 1 GiB
upload is written twice. With spooling switched on (``STORE_SPOOL_UPLOADS``, on by default
for :class:`~flask_store.stores.local.LocalStore`), the app's request class hands Werkzeug a
:class:`SpoolFile` instead: a file created by Flask-Store in the store's folder with no name
at all (``O_TMPFILE``, see :mod:`flask_store.unnamed_files`). ``LocalStore.save()`` then
gives that very file its name, with no second copy. A worker killed while the body arrives
(SIGKILL, the OOM killer) leaves nothing behind: the kernel frees a file nobody named.
Where the file system or the platform cannot make unnamed files, the spool file is a hidden
``.upload-*`` file instead, renamed into place; a killed worker leaves that one behind until
the tidy-up removes it (``LocalStore.remove_stale_temp_files``, ``flask store clean``).

Safety rules kept here:

- Only a :class:`SpoolFile` (created by this module, unnamed or under a name it chose) is
  ever moved; an arbitrary stream or a user's file given to ``save()`` is always copied.
- The file is moved only while nothing has been read from it yet, it is a regular file, and
  it has no name (an unnamed one: no link at all) or only its own (a named one: its name
  still leads to the open file, with a single link); otherwise ``save()`` copies.
- A spool file that is never saved is deleted when the request closes its files (Flask does
  at the end of every request), or when it is garbage collected, or at interpreter exit; an
  unnamed one also when the process dies.
- When the disk fills up (or a quota or file-size limit is reached) while an upload is
  spooled, the partial file is deleted at once and reading the form raises
  :class:`~flask_store.exceptions.StorageFullError` (answered ``507`` by the error handlers);
  when reading the form fails for any other reason (the client went away, the form is too
  large), every spool file of the request is deleted at once too.
- An unnamed file saved without replacing another gets one name only, its key
  (:meth:`SpoolFile.unnamed_descriptor`). Every name any other gets before its key is
  hidden (leading dot), so stores never list it and the serving route never serves it,
  even if a crash leaves one behind.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import secrets
import stat
import tempfile
import weakref
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, TypeVar

from werkzeug.wrappers import Request

from . import unnamed_files
from .files import as_store_error, remove_if_same_file, remove_quietly

if TYPE_CHECKING:
    from flask import Flask

__all__ = [
    "IN_MEMORY_LIMIT",
    "NO_LINK_ERRNOS",
    "SMALL_SPOOLS_PER_REQUEST",
    "TEMP_PREFIX",
    "WRITE_BUFFER",
    "SpoolFile",
    "enable_spooling",
    "link_fresh",
    "temp_path",
]

R = TypeVar("R", bound=Request)

#: Prefix of every temporary file Flask-Store writes beside stored files (hidden: never a key).
TEMP_PREFIX = ".upload-"


def temp_path(folder: str) -> str:
    """A fresh hidden temporary name in ``folder`` (72 random bits after
    :data:`TEMP_PREFIX`): never a key, and swept by the tidy-up if its writer dies."""
    return os.path.join(folder, TEMP_PREFIX + secrets.token_urlsafe(9))


#: Werkzeug keeps file parts up to this size in memory (``default_stream_factory``); a
#: request no larger than this cannot hold a larger part, so it is left to Werkzeug.
IN_MEMORY_LIMIT = 500 * 1024
#: How many of a request's spool files may turn out no larger than :data:`IN_MEMORY_LIMIT`
#: before its further parts are left to Werkzeug. A part that declares no size (browsers
#: never do) is spooled whenever the request is large, as it could be; a form of many small
#: files, or a client posting hundreds of tiny parts, would otherwise hold a descriptor and
#: a write buffer per part where Werkzeug keeps such parts in memory.
SMALL_SPOOLS_PER_REQUEST = 8
#: Write buffer of a spool file. Werkzeug's parser hands over pieces of odd sizes (a part is
#: cut wherever a boundary might start), so with the default 8 KiB buffer every write lands
#: at an odd offset and the page cache keeps the file in small folios: the stored file is
#: then slower to read and to send than one copied in whole blocks. Writing in mebibytes
#: keeps it in large folios and makes 16 times fewer system calls, for 1 MiB per upload.
WRITE_BUFFER = 1024 * 1024
#: ``errno`` values of a file system that makes no hard links (or no more of them).
NO_LINK_ERRNOS = frozenset(
    {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV}
)


class SpoolFile(io.BufferedRandom):
    """A readable, writable temporary file that Flask-Store created in ``folder``.

    It behaves like the file Werkzeug would have made (C-speed reads and writes, a real
    ``fileno()``; like Werkzeug's own temporary file, its ``name`` is that descriptor, not a
    path), and additionally knows how it was made so that a store on the same file system
    can take the file over with :meth:`move_to` instead of copying its bytes.

    :param folder: where to create the file; normally the store's root folder.
    :param unnamed: make a file with no name (``O_TMPFILE``) where the file system can; the
        request class passes what :func:`~flask_store.unnamed_files.supported` found for
        its folder. Otherwise, or where ``O_TMPFILE`` is refused, a hidden named file.
    :raises OSError: when the file cannot be created there.
    """

    def __init__(self, folder: str, *, unnamed: bool = True) -> None:
        fd, path = _create(folder, unnamed)
        try:
            raw = io.FileIO(fd, "r+")
        except BaseException:
            os.close(fd)
            if path is not None:
                remove_quietly(path)
            raise
        super().__init__(raw, buffer_size=WRITE_BUFFER)
        # Deletes a named file if the object is dropped without close() (and at interpreter
        # exit), but only while the name still leads to this file. An unnamed file needs
        # nothing: the kernel frees it with its last descriptor.
        self._start(path, lent=False, cleanup=_remove_own_name)

    @classmethod
    def lend(cls, path: str) -> SpoolFile:
        """Open the existing file ``path`` as a spool file that stays its owner's.

        A store on the same file system still takes it over without copying, but through
        a new hard link (:meth:`move_to`): the owner's name stays, so a save that fails
        after taking the file over loses nothing, and the owner removes its name once the
        file is saved. Closing or dropping the spool file never deletes anything. Where
        hard links cannot be made, the store copies it.

        Used for a finished tus upload's partial file (:mod:`flask_store.tus.receivers`).

        :raises OSError: when ``path`` cannot be opened for reading and writing.
        """
        raw = io.FileIO(path, "r+")
        spool = cls.__new__(cls)
        io.BufferedRandom.__init__(spool, raw, buffer_size=WRITE_BUFFER)
        spool._start(path, lent=True, cleanup=_leave_alone)
        return spool

    def _start(
        self,
        path: str | None,
        *,
        lent: bool,
        cleanup: Callable[[str | None, os.stat_result], Any],
    ) -> None:
        # The file is private to this object: only move_to() hands it over, exactly once.
        self._path = path  # None: the file has no name
        self._lent = lent
        self._moved = False
        self._saved = False
        self._discarded = False
        self._cleanup = weakref.finalize(self, cleanup, path, os.fstat(self.fileno()))

    def unnamed_descriptor(self) -> int | None:
        """This file's descriptor, with what the buffer held written out, if a store may
        name the file itself (``linkat``, as it names its own unnamed writes): it has no
        name, none at all yet, and nothing was read from it. ``None`` otherwise
        (:meth:`move_to` then says whether it can be moved at all).

        Once named, the file has a link, so it is never offered again; closing or dropping
        this stream leaves it alone (the kernel frees only a file without a name).
        """
        if self._path is not None or not self._untouched():
            return None
        self.flush()
        return self.fileno()

    def move_to(self, folder: str) -> str | None:
        """Give this named file a fresh hidden temporary name in ``folder`` and hand that
        name over (a lent file, :meth:`lend`, gets a new hard link and keeps its owner's
        name). An unnamed file is named by the store itself (:meth:`unnamed_descriptor`).

        The caller (a store's ``_write``) then owns the returned name: it claims a key with
        it and removes it afterwards. The open stream keeps reading the same data.

        :returns: the new path, or ``None`` when the file cannot be moved there (already
            moved, partly read, named or replaced on disk by someone else, or ``folder`` is
            on another file system); the caller then copies the stream as usual.
        """
        path = self._path
        if path is None or self._moved or not self._untouched():
            return None
        self.flush()
        if self._lent:
            target = link_fresh(folder, lambda name: _hard_link(path, name))
        elif os.path.dirname(path) == folder:
            target = path
        else:
            target = self._rename_into(path, folder)
        if target is None:
            return None
        self._moved = True
        self._cleanup.detach()
        return target

    def mark_saved(self) -> None:
        """Record that the file is now stored: later writes would change the stored file.

        The stream is left at its end, as after the streamed copy ``save()`` would have made.
        """
        self._saved = True
        self.seek(0, io.SEEK_END)

    def write(self, data: Any, /) -> int:
        self._refuse_if_saved()
        try:
            return super().write(data)
        except OSError as exc:
            raise self._failed(exc) from exc

    def flush(self) -> None:
        if self._discarded:
            return  # the file is gone: what the buffer holds has nowhere to go
        try:
            super().flush()
        except OSError as exc:
            raise self._failed(exc) from exc

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        # Seeking writes out what the buffer still holds: the disk may be full right then.
        try:
            return super().seek(offset, whence)
        except OSError as exc:
            raise self._failed(exc) from exc

    def truncate(self, size: int | None = None, /) -> int:
        self._refuse_if_saved()
        return super().truncate(size)

    def discard(self) -> None:
        """Delete the file now (unless a store took it over) and close the stream.

        Unlike :meth:`close`, this does not write out what the buffer still holds, which
        would fail again on a full disk.
        """
        self._discarded = True
        self._cleanup()
        with contextlib.suppress(OSError, ValueError):
            super().close()

    def _failed(self, exc: OSError) -> OSError:
        """Discard the partial file and say why, as a Flask-Store error without a path."""
        self.discard()
        return as_store_error(exc, "receive the upload")

    def close(self) -> None:
        """Close the stream and delete the temporary file unless a store took it over."""
        try:
            super().close()
        finally:
            self._cleanup()

    def _refuse_if_saved(self) -> None:
        if self._saved:
            raise io.UnsupportedOperation(
                "This upload has been saved by moving its file into the store; it is read-only "
                "now so the stored file cannot change."
            )

    def _untouched(self) -> bool:
        """Whether this open file is unread and has no name but its own (an unnamed file:
        none at all, so nobody else can have opened or changed it through a name)."""
        if self.closed or self.tell() != 0:
            return False
        opened = os.fstat(self.fileno())
        if self._path is None:
            return stat.S_ISREG(opened.st_mode) and opened.st_nlink == 0
        try:
            named = os.lstat(self._path)
        except OSError:
            return False
        return (
            stat.S_ISREG(named.st_mode)
            and (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)
            and named.st_nlink == 1
        )

    @staticmethod
    def _rename_into(path: str, folder: str) -> str | None:
        """Rename ``path`` onto a freshly reserved hidden name in ``folder``; ``None`` on EXDEV."""
        fd, target = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=folder)
        os.close(fd)
        try:
            os.rename(path, target)
        except OSError as exc:
            remove_quietly(target)
            if exc.errno == errno.EXDEV:
                return None
            raise
        return target


def _create(folder: str, unnamed: bool) -> tuple[int, str | None]:
    """A new spool file in ``folder``, open for reading and writing: its descriptor, and its
    path (``None`` for an unnamed file).

    An unnamed file where ``unnamed`` asks for one and the file system makes them; else a
    hidden named file, private to the process (``mkstemp``).
    """
    if unnamed:
        try:
            return unnamed_files.open_unnamed(folder, readable=True), None
        except OSError as exc:
            if exc.errno not in unnamed_files.UNSUPPORTED_ERRNOS:
                raise
    return tempfile.mkstemp(prefix=TEMP_PREFIX, dir=folder)


def link_fresh(folder: str, link: Callable[[str], bool]) -> str | None:
    """A fresh hidden temporary name in ``folder`` given by ``link(name)`` (``False`` when
    the name is taken); ``None`` where the file system makes no link there (EXDEV...).

    For a file written without a name that must replace another: it gets a name only for
    the instant before the rename, so a process killed while writing leaves nothing."""
    while True:
        target = temp_path(folder)
        try:
            if link(target):
                return target
        except OSError as exc:
            if exc.errno in NO_LINK_ERRNOS:
                return None
            raise
        # 72 random bits taken already: try another name


def _hard_link(path: str, target: str) -> bool:
    """A hard link ``target`` to ``path``; ``False`` if ``target`` exists."""
    try:
        os.link(path, target)
    except FileExistsError:
        return False
    return True


def _remove_own_name(path: str | None, expected: os.stat_result) -> None:
    """The clean-up of a spool file this module made: its name, if it has one that still
    leads to the file, is removed (an unnamed file is freed by the kernel once closed)."""
    if path is not None:
        remove_if_same_file(path, expected)


def _leave_alone(path: str | None, expected: os.stat_result) -> None:
    """The clean-up of a lent spool file (:meth:`SpoolFile.lend`): the file is its owner's."""


class _RequestSpools:
    """The spool files made for one request's parts while its form is parsed."""

    def __init__(self) -> None:
        self.files: list[SpoolFile] = []
        self._small = 0  # how many of them turned out small
        self._sized = 0  # how many of them were looked at

    def may_add(self) -> bool:
        """Whether one more part may be spooled: fewer than :data:`SMALL_SPOOLS_PER_REQUEST`
        of the spool files so far turned out small.

        Werkzeug asks for a part's file once the parts before it are complete (written out
        and rewound), so their sizes are known; each is looked at once.
        """
        for spool in self.files[self._sized :]:
            if not spool.closed and os.fstat(spool.fileno()).st_size <= IN_MEMORY_LIMIT:
                self._small += 1
        self._sized = len(self.files)
        return self._small < SMALL_SPOOLS_PER_REQUEST


def spooling_request_class(base: type[R], folder: str) -> type[R]:
    """A subclass of ``base`` whose large uploads are spooled into ``folder``.

    Subclassing whatever the app's request class is keeps a user's own customisations.
    Requests no larger than Werkzeug's in-memory limit, parts whose declared size is that
    small, and the further parts of a request once :data:`SMALL_SPOOLS_PER_REQUEST` of its
    spooled parts turned out that small, keep ``base``'s behaviour. If the folder is not
    writable the upload goes to ``base``'s usual temporary file, so a request never fails
    because of spooling.
    Whether the folder's file system makes unnamed files is probed once, here.
    """

    class SpoolingRequest(base):  # type: ignore[valid-type,misc]
        spool_folder = folder
        #: Whether spool files are unnamed (``O_TMPFILE``) rather than hidden named files.
        spool_unnamed = unnamed_files.supported(folder)

        def _get_file_stream(
            self,
            total_content_length: int | None,
            content_type: str | None,
            filename: str | None = None,
            content_length: int | None = None,
        ) -> IO[bytes]:
            # Werkzeug passes content_length=0 when the part declares no size.
            size = content_length or total_content_length
            if size is None or size > IN_MEMORY_LIMIT:
                spools: _RequestSpools | None = self.__dict__.get("_flask_store_spools")
                if spools is None:
                    spools = self.__dict__["_flask_store_spools"] = _RequestSpools()
                if spools.may_add():
                    with contextlib.suppress(OSError):
                        spool = SpoolFile(self.spool_folder, unnamed=self.spool_unnamed)
                        spools.files.append(spool)
                        return spool
            stream: IO[bytes] = super()._get_file_stream(
                total_content_length, content_type, filename, content_length
            )
            return stream

        def _load_form_data(self) -> None:
            # When parsing stops part-way (a full disk, a client gone, a form too large),
            # Werkzeug drops the files it made: delete ours now, not when collected.
            try:
                super()._load_form_data()
            except BaseException:
                spools: _RequestSpools | None = self.__dict__.get("_flask_store_spools")
                for spool in spools.files if spools is not None else ():
                    spool.discard()
                raise
            finally:
                self.__dict__.pop("_flask_store_spools", None)

    SpoolingRequest.__name__ = SpoolingRequest.__qualname__ = f"Spooling{base.__name__}"
    return SpoolingRequest


def enable_spooling(app: Flask, folder: str) -> None:
    """Make ``app`` spool large uploads into ``folder`` (see :func:`spooling_request_class`)."""
    app.request_class = spooling_request_class(app.request_class, folder)
