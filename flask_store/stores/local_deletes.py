"""Notes of conditional deletes in a local folder, so a killed process never hides a file.

``LocalStore.delete(key, if_etag=...)`` moves the file aside under a hidden name, compares
that file, then deletes it or puts it back (a newer save that landed in between). A
process killed between the move and the put-back would leave the newer save hidden, its
key empty, until the 24 h tidy-up deleted it. So the delete first writes a note naming the
key, the hidden name and the ETag to delete, in the store's hidden ``.deleting`` folder,
and removes it when done (the folder too, once no other delete's note is in it). The note
is ``flock``-ed while its delete runs; a note nobody holds was left by a killed process,
and the store's next start settles it as the delete would have (:func:`settle_left_notes`).

Where ``flock`` does not exist (Windows), no note is written: the delete runs as before.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Iterator

from ..exceptions import InvalidKeyError
from ..files import loads_json, write_all
from ..spooling import TEMP_PREFIX

try:
    import fcntl
except ImportError:  # Windows: no flock, no notes
    fcntl = None  # type: ignore[assignment]

__all__ = ["NOTES_FOLDER", "noted_delete", "settle_left_notes"]

log = logging.getLogger("flask_store")

#: The hidden folder of the store's folder holding the notes (no key can name it).
NOTES_FOLDER = ".deleting"
_NOTE_SUFFIX = ".json"
#: Age after which a note still being written counts as left by a killed writer.
_STALE_WRITING_SECONDS = 60.0
#: A note is a few hundred bytes; more is damage, never read whole.
_MAX_NOTE_BYTES = 8192
#: The names this module gives the files of the notes folder: notes, and notes being
#: written. Nothing else there is touched.
_NOTE_NAME = re.compile(r"[0-9a-f]{16}\.json|\.[0-9a-f]{16}")
_NEW_NOTE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
#: How often a delete makes the notes folder again when others keep removing it.
_FOLDER_TRIES = 100

#: What settles a file moved aside: ``settle(path, aside, etag)`` deletes ``aside`` if it
#: is the version ``etag``, else puts it back at ``path`` unless a newer file holds it.
Settle = Callable[[str, str, str], object]


@contextlib.contextmanager
def noted_delete(root: str, key: str, aside: str, etag: str) -> Iterator[None]:
    """Note, for the block's length, that the file of ``key`` is moved aside to ``aside``
    (a hidden name in its folder) to delete it if it is the version ``etag``.

    The note is written under a hidden name, locked, and only then given its name, so a
    start-up sweep never takes a note whose delete is still running. It is removed when the
    block ends, unless the block failed with the file still aside: the next settle finishes
    the delete then.

    Where no note can be written (a full disk, which deleting is meant to relieve; a
    ``.deleting`` that is not a folder of the store's own), the delete runs without one,
    as it did before notes: it still never removes a newer file, and is only unprotected
    against a kill in its instant.
    """
    written = _write_note(root, key, aside, etag)
    if written is None:
        yield
        return
    folder_fd, fd, name = written
    try:
        try:
            yield
        except BaseException:
            if not os.path.lexists(aside):
                _remove_note(root, folder_fd, name)  # nothing left aside: nothing to settle
            raise
        _remove_note(root, folder_fd, name)
    finally:
        os.close(fd)  # drops the lock
        os.close(folder_fd)


def _write_note(root: str, key: str, aside: str, etag: str) -> tuple[int, int, str] | None:
    """Write and lock the note of a delete: the notes folder's descriptor, the note's, and
    its name; ``None`` when it cannot be written (logged), or where there is no ``flock``."""
    if fcntl is None:
        return None
    name = secrets.token_hex(8)
    writing = f".{name}"
    try:
        folder_fd, fd = _create_in_notes_folder(root, writing)
    except OSError as exc:
        log.warning("A delete in %r runs without its note: %s.", root, exc.strerror or exc)
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        body = {"key": key, "aside": os.path.basename(aside), "etag": etag}
        write_all(fd, json.dumps(body).encode())
        os.rename(writing, name + _NOTE_SUFFIX, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
    except OSError as exc:
        _remove_note(root, folder_fd, writing)
        os.close(fd)
        os.close(folder_fd)
        log.warning("A delete in %r runs without its note: %s.", root, exc.strerror or exc)
        return None
    return folder_fd, fd, name + _NOTE_SUFFIX


def _create_in_notes_folder(root: str, name: str) -> tuple[int, int]:
    """Create the file ``name`` in the notes folder (made if missing): the folder's
    descriptor and the file's.

    Another delete removes the folder once it is empty, which may be right after this one
    opened it: the file is then made in the folder made again.

    :raises OSError: when it cannot be made.
    """
    for _ in range(_FOLDER_TRIES):
        folder_fd = _open_notes_folder(root, create=True)
        try:
            return folder_fd, os.open(name, _NEW_NOTE, 0o600, dir_fd=folder_fd)
        except FileNotFoundError:
            os.close(folder_fd)  # removed after it was opened
        except BaseException:
            os.close(folder_fd)
            raise
    raise OSError(errno.EAGAIN, "the notes folder keeps being removed")


def _open_notes_folder(root: str, *, create: bool) -> int:
    """The store's notes folder, opened as a folder and never through a link: a
    descriptor every note is made, read and removed through.

    :raises OSError: when it cannot be opened (``ENOENT`` when missing and not
        ``create``; ``ELOOP`` or ``ENOTDIR`` when something else has its name).
    """
    folder = os.path.join(root, NOTES_FOLDER)
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(_FOLDER_TRIES):
        if create:
            with contextlib.suppress(FileExistsError):
                os.mkdir(folder, 0o700)
        try:
            return os.open(folder, flags)
        except FileNotFoundError:
            if not create:
                raise
            continue  # another delete removed the empty folder in between
    raise OSError(errno.EAGAIN, "the notes folder keeps being removed")


def _remove_note(root: str, folder_fd: int, name: str) -> None:
    """Remove the note ``name``, and the notes folder if no other note is in it: a store's
    folder keeps no trace of deletes once they are done."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=folder_fd)
    with contextlib.suppress(OSError):  # not empty (another delete's note), or gone
        os.rmdir(os.path.join(root, NOTES_FOLDER))


def settle_left_notes(root: str, path_of: Callable[[str], str], settle: Settle) -> list[str]:
    """Settle the deletes that killed processes left noted in ``root``: the keys whose
    file was left aside, now deleted or put back.

    Each file they left aside is deleted if it is the version they were deleting, else
    put back under its key (unless a newer file holds it). Notes of deletes still running
    (locked) are left alone, as is anything in the folder that is not a note of a delete
    (logged, never opened through a link nor removed); a damaged note is logged and
    removed.

    :param path_of: the path of a key, checked to stay in the store
        (:meth:`LocalStore.path <flask_store.stores.local.LocalStore.path>`).
    """
    if fcntl is None:
        return []
    try:
        folder_fd = _open_notes_folder(root, create=False)
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning("The notes of deletes in %r are not a folder: %s.", root, exc.strerror)
        return []
    settled = []
    try:
        for name in sorted(os.listdir(folder_fd)):
            if not _NOTE_NAME.fullmatch(name):
                log.warning("Left %r in the notes of deletes of %r: not a note.", name, root)
                continue
            try:
                key = _settle_note(root, folder_fd, name, path_of, settle)
            except FileNotFoundError:
                continue  # finished meanwhile
            except OSError as exc:
                log.warning("Left the note of a delete %r in %r: %s.", name, root, exc)
                continue
            if key is not None:
                settled.append(key)
    finally:
        os.close(folder_fd)
    return settled


def _settle_note(
    root: str, folder_fd: int, name: str, path_of: Callable[[str], str], settle: Settle
) -> str | None:
    """Settle the delete the note ``name`` names, if its process is gone: its key when a
    file it left aside was settled, else ``None``."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(name, flags, dir_fd=folder_fd)
    try:
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # its delete is running
        try:
            if not os.path.samestat(os.stat(name, dir_fd=folder_fd, follow_symlinks=False), found):
                return None  # finished between the listing and the lock
        except FileNotFoundError:
            return None
        if name.startswith("."):
            # Being written, or its writer was killed before anything was moved: removed
            # once stale (a live writer creates it an instant before it locks it).
            if time.time() - found.st_mtime > _STALE_WRITING_SECONDS:
                _remove_note(root, folder_fd, name)
            return None
        try:
            key, path, aside, etag = _read_note(os.pread(fd, _MAX_NOTE_BYTES, 0), path_of)
        except (ValueError, InvalidKeyError) as exc:
            log.warning("Removed a damaged note of a delete (%s in %r): %s.", name, root, exc)
            _remove_note(root, folder_fd, name)
            return None
        moved = os.path.lexists(aside)
        if moved:
            settle(path, aside, etag)
            log.warning("Settled the delete of %r that a killed process left half-done.", key)
        _remove_note(root, folder_fd, name)
        return key if moved else None
    finally:
        os.close(fd)


def _read_note(data: bytes, path_of: Callable[[str], str]) -> tuple[str, str, str, str]:
    """The key, its path, the path of the file moved aside and the ETag a note names.

    :raises ValueError: for a note that is not one (damage, or written by something else):
        a hidden name that is not a temporary one, or fields of another type.
    :raises InvalidKeyError: for a key that is not acceptable.
    """
    fields = loads_json(data) if len(data) < _MAX_NOTE_BYTES else None
    if not isinstance(fields, dict):
        raise ValueError("not a note")
    key, aside, etag = fields.get("key"), fields.get("aside"), fields.get("etag")
    if not (isinstance(key, str) and isinstance(aside, str) and isinstance(etag, str)):
        raise ValueError("a field is missing or not a string")
    if not aside.startswith(TEMP_PREFIX) or os.sep in aside:
        raise ValueError(f"{aside!r} is not a hidden temporary name")
    path = path_of(key)
    return key, path, os.path.join(os.path.dirname(path), aside), etag
