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
import json
import logging
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterator

from ..exceptions import InvalidKeyError
from ..files import remove_quietly
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

#: What settles a file moved aside: ``settle(path, aside, etag)`` deletes ``aside`` if it
#: is the version ``etag``, else puts it back at ``path`` unless a newer file holds it.
Settle = Callable[[str, str, str], object]


@contextlib.contextmanager
def noted_delete(root: str, key: str, aside: str, etag: str) -> Iterator[None]:
    """Note, for the block's length, that the file of ``key`` is moved aside to ``aside``
    (a hidden name in its folder) to delete it if it is the version ``etag``.

    The note is written under a hidden name, locked, and only then given its name, so a
    start-up sweep never takes a note whose delete is still running. It is removed when the
    block ends, unless the block failed with the file still aside: the next start puts it
    back then.

    :raises OSError: when the note cannot be written (nothing was moved).
    """
    if fcntl is None:
        yield
        return
    folder = os.path.join(root, NOTES_FOLDER)
    name = secrets.token_hex(8)
    writing = os.path.join(folder, f".{name}")
    note = os.path.join(folder, name + _NOTE_SUFFIX)
    while True:
        # Not makedirs(exist_ok=True): it fails when another delete removes the folder
        # between its mkdir and its look.
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, 0o700)
        try:
            fd = os.open(writing, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            break
        except FileNotFoundError:
            continue  # another delete removed the empty folder in between
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            body = {"key": key, "aside": os.path.basename(aside), "etag": etag}
            os.write(fd, json.dumps(body).encode())
            os.rename(writing, note)
        except BaseException:
            _remove_note(writing)
            raise
        try:
            yield
        except BaseException:
            if not os.path.lexists(aside):
                _remove_note(note)  # nothing left aside: nothing to put back
            raise
        _remove_note(note)
    finally:
        os.close(fd)  # drops the lock


def _remove_note(note: str) -> None:
    """Remove ``note``, and its folder if no other note is in it: a store's folder keeps no
    trace of deletes once they are done."""
    remove_quietly(note)
    with contextlib.suppress(OSError):  # not empty (another delete's note), or gone
        os.rmdir(os.path.dirname(note))


def settle_left_notes(root: str, path_of: Callable[[str], str], settle: Settle) -> list[str]:
    """Settle the deletes that killed processes left noted in ``root``: the keys settled.

    Each file they left aside is deleted if it is the version they were deleting, else
    put back under its key (unless a newer file holds it). Notes of deletes still running
    (locked) are left alone; a damaged note is logged and removed.

    :param path_of: the path of a key, checked to stay in the store
        (:meth:`LocalStore.path <flask_store.stores.local.LocalStore.path>`).
    """
    folder = os.path.join(root, NOTES_FOLDER)
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    settled = []
    for name in names:
        note = os.path.join(folder, name)
        with contextlib.suppress(FileNotFoundError):  # finished meanwhile
            key = _settle_note(note, path_of, settle)
            if key is not None:
                settled.append(key)
    return settled


def _settle_note(note: str, path_of: Callable[[str], str], settle: Settle) -> str | None:
    """Settle the delete ``note`` names, if its process is gone; its key, or ``None``."""
    if fcntl is None:
        return None
    fd = os.open(note, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # its delete is running
        if not os.path.exists(note):
            return None  # finished between the listing and the lock
        if os.path.basename(note).startswith("."):
            # Being written, or its writer was killed before anything was moved: removed
            # once stale (a live writer creates it an instant before it locks it).
            if time.time() - os.fstat(fd).st_mtime > _STALE_WRITING_SECONDS:
                _remove_note(note)
            return None
        try:
            key, path, aside, etag = _read_note(os.pread(fd, _MAX_NOTE_BYTES, 0), path_of)
        except (ValueError, InvalidKeyError) as exc:
            log.warning("Removed a damaged note of a delete (%s): %s.", note, exc)
            _remove_note(note)
            return None
        if os.path.lexists(aside):
            settle(path, aside, etag)
            log.warning("Settled the delete of %r that a killed process left half-done.", key)
        _remove_note(note)
        return key
    finally:
        os.close(fd)


def _read_note(data: bytes, path_of: Callable[[str], str]) -> tuple[str, str, str, str]:
    """The key, its path, the path of the file moved aside and the ETag a note names.

    :raises ValueError: for a note that is not one (damage, or written by something else):
        a hidden name that is not a temporary one, or fields of another type.
    :raises InvalidKeyError: for a key that is not acceptable.
    """
    try:
        fields = json.loads(data) if len(data) < _MAX_NOTE_BYTES else None
    except RecursionError:  # nested deeper than the parser recurses
        raise ValueError("not a note") from None
    if not isinstance(fields, dict):
        raise ValueError("not a note")
    key, aside, etag = fields.get("key"), fields.get("aside"), fields.get("etag")
    if not (isinstance(key, str) and isinstance(aside, str) and isinstance(etag, str)):
        raise ValueError("a field is missing or not a string")
    if not aside.startswith(TEMP_PREFIX) or "/" in aside or os.sep in aside:
        raise ValueError(f"{aside!r} is not a hidden temporary name")
    path = path_of(key)
    return key, path, os.path.join(os.path.dirname(path), aside), etag
