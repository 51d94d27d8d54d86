"""LocalStore: files in a folder on the local file system (the default store).

Writes go to a file with no name yet (``O_TMPFILE``, see :mod:`flask_store.unnamed_files`)
or, where the file system cannot do that, to a hidden temporary file in the target folder;
either is then hard-linked under its key: the link fails if the key exists, which makes
choosing a free name atomic, and a reader never sees a partial file. A write that replaces
a file gets a hidden name only once complete, for the instant before the rename. Metadata
(original filename, content type, saved size) travels as one extended attribute on the same
inode, so it appears and disappears with the file itself.
File systems without user extended attributes still work; files then report their key's
basename as filename and a content type guessed from the extension.

An upload that Flask-Store already spooled to disk on the same file system (see
:mod:`flask_store.spooling`) skips the copy: an unnamed spool file is named under its key
at once, any other becomes the temporary file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import itertools
import json
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from typing import Any, BinaryIO, ClassVar, TypeAlias, TypeVar

from .. import unnamed_files
from ..config import COMMON_SETTINGS, Schema, Setting, StoreConfig, folder_path, of_type
from ..exceptions import (
    FileNotFoundInStoreError,
    InvalidKeyError,
    NotConfiguredError,
    StoreError,
)
from ..files import as_store_error, remove_if_same_file, remove_quietly, write_all
from ..meta import FileInfo, FileMeta, guess_content_type
from ..naming import clean_key
from ..sources import spool_of
from ..spooling import NO_LINK_ERRNOS, TEMP_PREFIX, link_fresh, temp_path
from .base import BaseStore, Location, first_free_key
from .local_deletes import noted_delete, settle_left_notes

__all__ = ["LOCAL_SETTINGS", "META_XATTR", "LocalStore"]

META_XATTR = "user.flask_store"
#: How ``json.dumps`` writes a string (ASCII, escaped): the metadata is built with it.
_json_string: Callable[[str], str] = json.encoder.encode_basestring_ascii
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
# Errors meaning "this file system cannot hard-link": claim keys by exclusive create instead.
_NO_XATTRS = {errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA, errno.EPERM, errno.E2BIG}

T = TypeVar("T")


#: The settings of a :class:`LocalStore`: the common ones, ``PATH`` a folder, and its own.
LOCAL_SETTINGS = Schema(
    COMMON_SETTINGS,
    [
        Setting("PATH", None, "The store's folder (relative: in the instance one).", folder_path),
        Setting("FSYNC", False, "Flush each file to disk before it is visible.", of_type(bool)),
        Setting(
            "SPOOL_UPLOADS",
            True,
            "Let Werkzeug write large uploads into the store's folder (moved, not copied).",
            of_type(bool),
        ),
    ],
)


def resolve_root(config: StoreConfig) -> str:
    """The store's folder: ``PATH`` if absolute, else relative to the instance folder.

    Unset, it is ``<instance_path>/uploads``: never the process's working directory.
    """
    path: str | os.PathLike[str] | None = config.value("PATH")
    if path and os.path.isabs(path):
        return os.fspath(path)
    if config.instance_path is None:
        raise config.error("PATH", "must be an absolute folder path outside a Flask app.")
    return os.path.join(config.instance_path, os.fspath(path or "uploads"))


class LocalStore(BaseStore):
    """Files in a folder on disk, served by the app under ``STORE_URL_PREFIX``.

    Settings: ``STORE_PATH`` (folder; created when missing), ``STORE_FSYNC`` (flush each file
    to disk before it becomes visible: survives power loss, costs a disk round trip),
    ``STORE_SPOOL_UPLOADS`` (default on: Werkzeug writes large uploads straight into this
    folder and ``save()`` renames them into place instead of copying; see
    :mod:`flask_store.spooling`).
    """

    schema: ClassVar[Schema] = LOCAL_SETTINGS
    #: Age after which a hidden temporary file counts as left over by a killed process.
    #: An upload still arriving keeps its spool file's modification time fresh.
    STALE_TEMP_SECONDS: ClassVar[float] = 24 * 3600

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        root = resolve_root(self.config)
        try:
            os.makedirs(root, exist_ok=True)
        except OSError as exc:
            # The setting, not the path: errors are shown where a server path must not be.
            raise NotConfiguredError(
                f"{self.config.label('PATH')}: cannot create the store's folder: {exc.strerror}."
            ) from exc
        self.root = os.path.realpath(root)
        #: Permissions of new files: what ``open()`` would give them under the process umask
        #: (``mkstemp`` alone would make them private to the owner).
        self.file_mode = 0o666 & ~_current_umask()
        self.fsync: bool = self.config.value("FSYNC")
        #: Whether the app spools large uploads into :attr:`root` so saves move, not copy.
        self.spool_uploads: bool = self.config.value("SPOOL_UPLOADS")
        #: Whether saves write an unnamed file (``O_TMPFILE``) and name it when complete,
        #: rather than writing a hidden temporary file and linking it (probed once).
        self.unnamed_writes: bool = unnamed_files.supported(self.root)

    def start(self) -> None:
        """Settle what killed processes left half-done: conditional deletes now
        (:meth:`settle_interrupted_deletes`), leftover temporary files in the background
        (:meth:`remove_stale_temp_files`).

        A process killed mid-upload leaves its hidden spool or temporary file behind; nothing
        else would ever remove it.
        """
        self.settle_interrupted_deletes()
        threading.Thread(
            target=self._remove_stale,
            args=(self.STALE_TEMP_SECONDS,),
            name="flask-store-tidy",
            daemon=True,
        ).start()

    def settle_interrupted_deletes(self) -> list[str]:
        """Finish or undo the conditional deletes (``delete(key, if_etag=...)``) whose
        process was killed between moving the file aside and deleting it or putting it
        back: the keys whose file was left aside. A newer file moved aside by mistake is
        put back under its key (unless an even newer one took it meanwhile: the newest
        wins), the version being deleted is deleted.

        :meth:`start` calls it, before the app's other start-up work could look for those
        files; a delete still running in another process is left to it.

        .. versionadded:: 0.2
        """
        return settle_left_notes(self.root, self.path, _settle_aside)

    def remove_stale_temp_files(self, older_than: float | None = None) -> list[str]:
        """Delete hidden temporary files (``.upload-*``) untouched for ``older_than`` seconds.

        :param older_than: age in seconds (default :attr:`STALE_TEMP_SECONDS`).
        :returns: the paths removed.
        """
        # First what killed deletes left aside: a newer file among them goes back.
        self.settle_interrupted_deletes()
        return self._remove_stale(self.STALE_TEMP_SECONDS if older_than is None else older_than)

    def _remove_stale(self, older_than: float) -> list[str]:
        """:meth:`remove_stale_temp_files` once the deletes are settled (:meth:`start`
        settles them before it starts this in the background)."""
        cutoff = time.time() - older_than
        removed = []
        for folder, _, names in os.walk(self.root):
            for name in names:
                if not name.startswith(TEMP_PREFIX):
                    continue
                path = os.path.join(folder, name)
                with contextlib.suppress(FileNotFoundError):
                    if os.lstat(path).st_mtime < cutoff:
                        os.unlink(path)
                        removed.append(path)
        return removed

    def path(self, key: str) -> str:
        """The absolute path of ``key``, checked to stay inside the store's folder.

        :raises InvalidKeyError: when the key, or a symlink on its way, leads outside.
        """
        return self._located(key)[1]

    def _located(self, key: str) -> tuple[str, str]:
        """``key`` checked (:func:`~flask_store.naming.clean_key`, once) and its :meth:`path`."""
        clean = clean_key(key)
        parts = clean.split("/")
        return clean, self._contained(key, parts, len(parts))

    def _new_path(self, key: str) -> str:
        """The absolute path where a new file is named ``key``, its folders checked.

        Only the folders on the way need checking: every way a save names a file (``link``,
        ``linkat``, an exclusive create, ``rename``) acts on a symlink in the last place
        itself and never follows it. A key at the top of the store costs no system call.
        """
        parts = clean_key(key).split("/")
        return self._contained(key, parts, len(parts) - 1)

    def _contained(self, key: str, parts: list[str], checked: int) -> str:
        """The path of ``parts``, refused if a symlink among the first ``checked`` leads out.

        The root is already resolved, so only a symlink below it can lead out. Looking at
        those few components (one lstat each, stopping where the path ends) costs far less
        than resolving the whole path from "/" on every call: path() runs on every request.
        """
        path = os.path.join(self.root, *parts)
        below = self.root
        for part in parts[:checked]:
            below = os.path.join(below, part)
            try:
                mode = os.lstat(below).st_mode
            except OSError:
                return path  # nothing exists from here on, so no symlink either
            if stat.S_ISLNK(mode):
                resolved = os.path.realpath(path)
                if resolved != path and not resolved.startswith(self.root + os.sep):
                    raise InvalidKeyError(f"The key {key!r} leads outside the store.")
                return path
        return path

    # -- writing ----------------------------------------------------------------------------

    def _write(
        self,
        chunks: Iterator[bytes],
        keys: Iterator[str],
        meta: FileMeta,
        overwrite: bool,
        before_replacing: Replacing | None = None,
    ) -> FileInfo:
        """The store contract's write; ``before_replacing`` (overwrites only, for
        :meth:`replace_when_ready`) is called with the complete file's ``stat`` just before
        it replaces the key (while it has no name yet, where it can), and the replace
        happens within the context it returns: when entering it raises, the file under the
        key stays as it was and the new one is removed."""
        first = next(keys)
        try:
            return self._write_as(first, chunks, keys, meta, overwrite, before_replacing)
        except StoreError:
            raise
        except OSError as exc:
            # A full disk is StorageFullError; any OS error names the key, not the path.
            raise as_store_error(exc, f"store {first!r}") from exc

    def _write_as(
        self,
        first: str,
        chunks: Iterator[bytes],
        keys: Iterator[str],
        meta: FileMeta,
        overwrite: bool,
        before_replacing: Replacing | None = None,
    ) -> FileInfo:
        """:meth:`_write` with the first key taken; OS errors are left to the caller."""
        first_path = self._new_path(first)
        folder = os.path.dirname(first_path)
        placing = _Placing(first, first_path, keys, overwrite, before_replacing)
        # Zero copy: a large upload Flask-Store spooled on this file system is moved, not read.
        taken = self._take_spool(chunks, placing, meta)
        if taken is not None:
            key, sealed = taken
        elif self.unnamed_writes:
            fd = self._in_folder(folder, first, unnamed_files.open_unnamed)
            try:
                sealed = self._fill(fd, chunks, meta)
                key = self._name_unnamed(fd, placing)
            finally:
                os.close(fd)
        else:
            fd, temp_path = self._in_folder(folder, first, _create_temp)
            try:
                try:
                    sealed = self._fill(fd, chunks, meta)
                finally:
                    os.close(fd)
                key = self._place(temp_path, placing)
            finally:
                remove_quietly(temp_path)
        return _info_from_stat(key, sealed, meta)

    def _name_unnamed(self, fd: int, placing: _Placing) -> str:
        """Give the complete unnamed file ``fd`` its key: the first free one, linked
        directly; or ``first`` replaced, through a hidden name given only for the instant
        before the rename (``linkat`` never replaces a name), so a process killed while
        writing leaves nothing behind either way."""

        def link(path: str) -> bool:
            return unnamed_files.link_unnamed(fd, path)

        if not placing.overwrite:
            return self._first_free(placing, link)
        # Entered before the hidden name: a failure to enter, or a kill, leaves nothing.
        with placing.replacing(os.fstat(fd)):
            temp = link_fresh(os.path.dirname(placing.first_path), link)
            if temp is None:
                raise OSError(errno.EOPNOTSUPP, "no link can be made to the unnamed file here")
            try:
                return self._place(temp, placing)
            finally:
                remove_quietly(temp)

    def _take_spool(
        self, chunks: Iterator[bytes], placing: _Placing, meta: FileMeta
    ) -> tuple[str, os.stat_result] | None:
        """Store the spool file behind ``chunks`` itself: its key and sealed ``fstat``, or
        ``None`` where the chunks must be copied (no spool file, or one read from, named
        elsewhere, on another file system...).

        An unnamed spool is sealed, then named as the store's own unnamed writes are
        (:meth:`_name_unnamed`); any other is moved to a hidden name first
        (:meth:`SpoolFile.move_to`).
        """
        spool = spool_of(chunks)
        if spool is None:
            return None
        first = placing.first
        folder = os.path.dirname(placing.first_path)
        fd = spool.unnamed_descriptor()
        if fd is not None:
            sealed = self._seal(fd, meta)
            try:
                key = self._in_folder(folder, first, lambda _: self._name_unnamed(fd, placing))
            except OSError as exc:
                if exc.errno in NO_LINK_ERRNOS:
                    return None
                raise
        else:
            moved = self._in_folder(folder, first, spool.move_to)
            if moved is None:
                return None
            try:
                sealed = self._seal(spool.fileno(), meta)
                key = self._place(moved, placing)
            finally:
                remove_quietly(moved)
        spool.mark_saved()
        return key, sealed

    def _in_folder(self, folder: str, key: str, create: Callable[[str], T]) -> T:
        """``create(folder)``, making ``folder`` first if it does not exist yet.

        Trying first spares the usual save, into a folder that exists, a ``stat``.
        """
        try:
            return create(folder)
        except (FileNotFoundError, NotADirectoryError):
            self._make_folder(folder, key)
        return create(folder)

    def _fill(self, fd: int, chunks: Iterator[bytes], meta: FileMeta) -> os.stat_result:
        """Write ``chunks`` into the new file ``fd`` (made by the store) and seal it."""
        for chunk in chunks:
            write_all(fd, chunk)
        return self._seal(fd, meta, created_by_us=True)

    def _seal(self, fd: int, meta: FileMeta, created_by_us: bool = False) -> os.stat_result:
        """Give a fully written temp file its mode, metadata and (with FSYNC) durability.

        :param created_by_us: the file was created with the store's mode already (by
            :func:`_create_temp` or :func:`~flask_store.unnamed_files.open_unnamed`); a
            spool file needs ``chmod``.
        """
        if not created_by_us:
            os.fchmod(fd, self.file_mode)
        if self.fsync:
            os.fsync(fd)
        sealed = os.fstat(fd)
        _set_meta(fd, meta, sealed.st_size)
        return sealed

    def _make_folder(self, folder: str, key: str) -> None:
        try:
            os.makedirs(folder, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise InvalidKeyError(f"Part of the key {key!r} is a file, not a folder.") from exc

    def _place(self, temp_path: str, placing: _Placing) -> str:
        """Give the complete file ``temp_path`` its key: the first one replaced, or the
        first free."""
        first = placing.first
        if placing.overwrite:
            with placing.replacing(os.stat(temp_path)):
                try:
                    os.replace(temp_path, placing.first_path)
                except IsADirectoryError:
                    raise InvalidKeyError(
                        f"The key {first!r} is a folder of other files, not a file to replace."
                    ) from None
            return first
        return self._first_free(placing, lambda path: _claim(temp_path, path))

    def _first_free(self, placing: _Placing, claim: Callable[[str], bool]) -> str:
        """Claim the first key, else the first of the others free: ``claim(path)`` takes a
        path."""
        first = placing.first
        return first_free_key(
            itertools.chain([first], placing.keys),
            lambda key: claim(placing.first_path if key == first else self._new_path(key)),
        )

    def replace_when_ready(
        self,
        chunks: Iterable[bytes],
        key: str,
        meta: FileMeta,
        ready: Callable[[FileInfo], AbstractContextManager[object]],
    ) -> FileInfo:
        """:meth:`BaseStore.replace_when_ready`: ``ready`` is entered with the complete file
        before it has a name (or under its hidden temporary one, where files cannot be
        unnamed), whose ETag the naming keeps; when entering it raises, that file is removed
        unnamed."""
        key = clean_key(key)

        def before_replacing(found: os.stat_result) -> AbstractContextManager[object]:
            return ready(_info_from_stat(key, found, meta))

        return self._write(iter(chunks), iter([key]), meta, True, before_replacing)

    # -- reading ----------------------------------------------------------------------------

    def open(self, key: str) -> BinaryIO:
        return self._open_regular(key)[0]

    def open_with_info(self, key: str) -> tuple[BinaryIO, FileInfo]:
        stream, found, clean = self._open_regular(key)
        try:
            info = _info_from_stat(clean, found, _get_meta(stream.fileno(), key))
        except BaseException:
            stream.close()
            raise
        return stream, info

    def _open_regular(self, key: str) -> tuple[BinaryIO, os.stat_result, str]:
        """Open the regular file stored as ``key``; return it with its ``fstat`` and the
        checked key.

        Opened without blocking and checked: a FIFO under the key would otherwise hold
        the worker until something writes to it; a FIFO, socket, device, folder or
        symlink loop is no file of the store. The check's ``fstat`` is returned so that
        :meth:`open_with_info` (every serve) needs no second one.
        """
        clean, path = self._located(key)
        try:
            stream = open(path, "rb", opener=_open_nonblocking)  # noqa: SIM115 - returned
        except OSError as exc:
            raise _read_error(exc, key) from exc
        try:
            fd = stream.fileno()
            found = os.fstat(fd)
            if not stat.S_ISREG(found.st_mode):
                raise FileNotFoundInStoreError(f"No file is stored as {key!r}.")
            os.set_blocking(fd, True)
        except BaseException:
            stream.close()
            raise
        return stream, found, clean

    def info(self, key: str) -> FileInfo:
        clean, path = self._located(key)
        try:
            found = os.stat(path)
        except OSError as exc:
            raise _read_error(exc, key) from exc
        if not stat.S_ISREG(found.st_mode):
            raise FileNotFoundInStoreError(f"No file is stored as {key!r}.")
        return _info_from_stat(clean, found, _get_meta(path, key))

    def exists(self, key: str) -> bool:
        try:
            return os.path.isfile(self.path(key))
        except InvalidKeyError:
            return False

    def verify(self, key: str) -> str | None:
        """Like :meth:`BaseStore.verify`, and also compares the size recorded at save time.

        A file truncated or appended to in place keeps its inode and so its metadata; its
        size then differs from the one recorded when it was saved.
        """
        problem = super().verify(key)
        if problem is not None:
            return problem
        saved_size = _recorded(self.path(key)).get("size")
        size = self.info(key).size
        if isinstance(saved_size, int) and saved_size != size:
            return f"size is {size} bytes but it was saved with {saved_size}"
        return None

    def delete(self, key: str, *, if_etag: str | None = None) -> bool:
        path = self.path(key)
        try:
            if if_etag is not None:
                return self._delete_version(key, path, if_etag)
            os.unlink(path)
        except IsADirectoryError as exc:
            raise InvalidKeyError(f"The key {key!r} is a folder, not a file.") from exc
        except OSError as exc:
            if exc.errno in _NOT_A_FILE:
                return False
            raise as_store_error(exc, f"delete {key!r}") from exc
        return True

    def _delete_version(self, key: str, path: str, etag: str) -> bool:
        """Delete the file at ``path`` if its ETag is ``etag``; ``False`` when another is
        there.

        Comparing and then unlinking could remove a newer file saved in between. So the
        file is moved aside first (a rename is atomic), and only the file moved aside is
        compared (:func:`_settle_aside`). A first look spares the move, which hides the key
        from readers for an instant, when another version is there already. The move is
        noted first (:func:`~flask_store.stores.local_deletes.noted_delete`): a process
        killed before settling it leaves the note, which the next :meth:`start`, queued
        reconciler pass or :meth:`remove_stale_temp_files` settles.

        :raises IsADirectoryError: when ``path`` is a folder.
        """
        if not _has_etag(os.stat(path), etag):
            if stat.S_ISDIR(os.lstat(path).st_mode):
                raise IsADirectoryError(errno.EISDIR, "is a folder", path)
            return False
        aside = temp_path(os.path.dirname(path))
        with noted_delete(self.root, key, aside, etag):
            os.rename(path, aside)
            return _settle_aside(path, aside, etag)

    def local_folder(self) -> str:
        """The store's folder (:attr:`root`): ``STORE_PATH``, resolved."""
        return self.root

    def location(self) -> Location:
        """The store's folder, symbolic links resolved."""
        return ("local", self.root)

    def keys(self, prefix: str = "") -> Iterator[str]:
        # Walk only the deepest folder the prefix names, then filter by the rest.
        folder = prefix.rpartition("/")[0]
        start = self.path(folder) if folder else self.root
        base = f"{clean_key(folder)}/" if folder else ""
        return iter(sorted(key for key in _regular_files(start, base) if key.startswith(prefix)))


#: ``errno`` values of reads that mean "no file of the store here": gone, a folder where a
#: file should be, a symlink loop, a socket, a name too long for the file system.
_NOT_A_FILE = frozenset(
    {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.ENXIO, errno.ENAMETOOLONG}
)


def _read_error(exc: OSError, key: str) -> OSError:
    """The error reading ``key`` failed with: not found, or another one without the path."""
    if exc.errno in _NOT_A_FILE:
        return FileNotFoundInStoreError(f"No file is stored as {key!r}.")
    return as_store_error(exc, f"read {key!r}")


def _open_nonblocking(path: str, flags: int) -> int:
    """``open()``'s opener that never waits: opening a FIFO blocks until a writer comes."""
    return os.open(path, flags | os.O_NONBLOCK)


def _regular_files(start: str, base: str) -> Iterator[str]:
    """The keys of the regular files below the folder ``start`` (whose key is ``base``).

    Hidden names (temporary files, store internals) are skipped, as is anything that is
    not a file (:func:`_is_listed`). Symlinks to folders are not followed; folders that
    cannot be read are passed over.
    """
    folders = [(start, base)]
    while folders:
        folder, prefix = folders.pop()
        try:
            with os.scandir(folder) as entries:
                found = [entry for entry in entries if not entry.name.startswith(".")]
        except OSError:
            continue
        for entry in found:
            if entry.is_dir(follow_symlinks=False):
                folders.append((entry.path, f"{prefix}{entry.name}/"))
            elif _is_listed(entry):
                yield prefix + entry.name


def _is_listed(entry: os.DirEntry[str]) -> bool:
    """Whether ``entry`` is a key: a regular file, a symlink to one, or a broken symlink.

    A broken symlink is listed so that reading it reports it (``flask store sync`` and
    ``verify`` name it); a FIFO, socket or device, a symlink to one or to a folder, and a
    symlink loop are not files at all.
    """
    try:
        if entry.is_file():
            return True
        if not entry.is_symlink():
            return False
        os.stat(entry.path)  # it leads somewhere, but not to a regular file
        return False
    except FileNotFoundError:
        return True
    except OSError:  # a symlink loop (is_file() raises ELOOP), or no permission
        return False


def _settle_aside(path: str, aside: str, etag: str) -> bool:
    """Delete the file moved aside to ``aside`` if its ETag is ``etag`` (``True``), else put
    it back at ``path``, unless a newer one holds the key (the newest always wins). Should
    putting it back fail, the error is raised and the file is left aside, not removed."""
    if _has_etag(os.stat(aside), etag):
        os.unlink(aside)
        return True
    _claim(aside, path)
    remove_quietly(aside)
    return False


#: What a replacing write calls with its complete file's ``stat``: the context in which
#: the file takes its key (:meth:`LocalStore._write`).
Replacing: TypeAlias = Callable[[os.stat_result], AbstractContextManager[object]]


@dataclasses.dataclass(slots=True)
class _Placing:
    """Where a complete file goes: ``first`` (at ``first_path``) replaced with
    ``overwrite``, else the first free of ``first`` and ``keys``; ``before_replacing`` as
    for :meth:`LocalStore._write`."""

    first: str
    first_path: str
    keys: Iterator[str]
    overwrite: bool
    before_replacing: Replacing | None = None

    @contextlib.contextmanager
    def replacing(self, found: os.stat_result) -> Iterator[None]:
        """The context to replace the key in: ``before_replacing``'s for the complete
        file's ``found`` stat, unless one is entered already (an unnamed file enters it
        before its hidden name, and is not announced again when renamed).

        A replace that fails leaves the hook for the next try: the folder made after all,
        or the copy a spool that cannot be linked falls back to, enters it again with its
        own file, so no file ever takes the key without it.
        """
        hook, self.before_replacing = self.before_replacing, None
        if hook is None:
            yield
            return
        try:
            with hook(found):
                yield
        except BaseException:
            self.before_replacing = hook
            raise


def _has_etag(found: os.stat_result, etag: str) -> bool:
    """Whether ``found`` is a regular file whose ETag is ``etag``."""
    return stat.S_ISREG(found.st_mode) and _etag(found) == etag


def _create_temp(folder: str) -> tuple[int, str]:
    """A new hidden file in ``folder``, open for writing: its descriptor and path.

    Like ``tempfile.mkstemp`` but cheaper on the save path, and created with the mode a
    plain ``open()`` gives (``0o666`` less the umask), so no ``chmod`` is needed.
    """
    while True:
        path = temp_path(folder)
        try:
            return os.open(path, _TEMP_FLAGS, 0o666), path
        except FileExistsError:
            continue  # 72 random bits taken already: try another name


def _claim(temp_path: str, target: str) -> bool:
    """Give ``temp_path``'s file the name ``target`` unless a file already has it."""
    try:
        os.link(temp_path, target)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in NO_LINK_ERRNOS:
            raise
    # No hard links here: reserve the name with an empty file created exclusively, then
    # move the data onto it. Readers may see that empty file for an instant; if the move
    # fails, the reservation is removed so no empty file is left under the key.
    try:
        fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        reservation = os.fstat(fd)
    finally:
        os.close(fd)
    try:
        os.replace(temp_path, target)
    except BaseException:
        remove_if_same_file(target, reservation)
        raise
    return True


def _current_umask() -> int:
    # The only portable way to read the umask is to set it; done once, at configuration time.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _set_meta(fd: int, meta: FileMeta, size: int) -> None:
    """Attach ``meta`` and the saved ``size`` to the open file (skipped without xattrs).

    The size lets :meth:`LocalStore.verify` notice a file changed behind the store's back.
    """
    try:
        os.setxattr(fd, META_XATTR, _meta_value(meta, size))
    except OSError as exc:
        if exc.errno not in _NO_XATTRS:
            raise


def _meta_value(meta: FileMeta, size: int) -> bytes:
    """``json.dumps`` of the metadata, byte for byte, at a third of its cost (every save):
    each string goes through the encoder ``json.dumps`` itself uses for them."""
    filename, content_type = _json_string(meta.filename), _json_string(meta.content_type)
    return f'{{"filename": {filename}, "content_type": {content_type}, "size": {size:d}}}'.encode()


def _recorded(path_or_fd: str | int) -> dict[str, Any]:
    """What :func:`_set_meta` attached to a file; ``{}`` where there is nothing readable."""
    try:
        recorded = json.loads(os.getxattr(path_or_fd, META_XATTR))
    except (OSError, ValueError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def _get_meta(path_or_fd: str | int, key: str) -> FileMeta:
    """The metadata recorded with a file, or what can be derived from its key."""
    basename = key.rpartition("/")[2]
    recorded = _recorded(path_or_fd)
    return FileMeta(
        filename=str(recorded.get("filename") or basename),
        content_type=str(recorded.get("content_type") or guess_content_type(basename)),
    )


def _info_from_stat(key: str, stat: os.stat_result, meta: FileMeta) -> FileInfo:
    return FileInfo(
        key=key,
        size=stat.st_size,
        content_type=meta.content_type,
        filename=meta.filename,
        last_modified=datetime.fromtimestamp(stat.st_mtime, timezone.utc),
        etag=_etag(stat),
    )


def _etag(found: os.stat_result) -> str:
    """A file's ETag: its inode, modification time and size. Files are replaced, never
    rewritten, so a new version is a new inode; the time and size catch edits in place."""
    return f"{found.st_ino:x}-{found.st_mtime_ns:x}-{found.st_size:x}"
