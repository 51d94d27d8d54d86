"""Hostile tests of the recorded overwrites of a queued store and of the noted conditional
deletes of a local store: a spooled overwrite into a new folder or through the copy
fallback, a reconciler racing a live save, a local file restored from a backup, and
everything that can be in a store's ``.deleting`` folder instead of notes (links,
sockets, a file, a full disk). Each failed on the code before its fix."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from werkzeug.datastructures import FileStorage

from flask_store.spooling import SpoolFile
from flask_store.stores.local import LocalStore
from flask_store.stores.local_deletes import NOTES_FOLDER
from flask_store.stores.queued import QueuedStore
from flask_store.transfer.intents import Intent, Replacement
from flask_store.transfer.records import TransferRecord


def make_queued(tmp_path: Path, **settings: Any) -> QueuedStore:
    return QueuedStore(
        queued_local={"PROVIDER": "local", "PATH": str(tmp_path / "local")},
        queued_remote={"PROVIDER": "memory"},
        transfer_retry_delay=0,
        **settings,
    )


def spooled(folder: Path, data: bytes) -> SpoolFile:
    spool = SpoolFile(str(folder))
    spool.write(data)
    spool.seek(0)
    return spool


# -- recorded overwrites -------------------------------------------------------------------


def test_spooled_overwrite_into_a_new_folder_keeps_its_record(tmp_path: Path) -> None:
    """A large (spooled, unnamed) upload saved with overwrite into a folder that does not
    exist yet: the first naming attempt enters ``ready`` (records the transfer), fails
    with ENOENT, the record is put back (removed), ``_in_folder`` makes the folder and
    names the file again, this time with the hook already consumed: the file lands with
    no record, and is never transferred."""
    store = make_queued(tmp_path, on_conflict="overwrite", transfer_delayed=True)
    (tmp_path / "local").mkdir(exist_ok=True)
    spool = spooled(tmp_path / "local", b"BIG" * 1000)
    if spool.unnamed_descriptor() is None:
        pytest.skip("no unnamed spool files here")
    spool.seek(0)
    saved = store.put("new/sub/a.bin", FileStorage(spool, "a.bin"), overwrite=True)
    assert store.local.read("new/sub/a.bin") == b"BIG" * 1000
    record = store.records.get("new/sub/a.bin")
    assert record is not None, "the file landed without a transfer record"
    assert record.describes(store.local.info(saved.name))
    assert store.transfer_now("new/sub/a.bin") == "done"
    assert store.remote.read("new/sub/a.bin") == b"BIG" * 1000


def test_spooled_overwrite_that_falls_back_to_copying_keeps_its_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spool file cannot be linked into the store (EXDEV: the spool folder is on
    another file system): ``_name_unnamed`` enters ``ready`` (records the transfer), then
    raises EOPNOTSUPP through it (the record is put back), ``_take_spool`` returns None and
    the copy path names the file with the hook consumed: the new bytes replace the key
    under the OLD record (put back as ``done``), and never reach the remote."""
    from flask_store import unnamed_files

    store = make_queued(tmp_path, on_conflict="overwrite", transfer_delayed=True)
    store.put("a.bin", b"OLD", overwrite=True)
    assert store.transfer_now("a.bin") == "done"
    spool = spooled(tmp_path / "local", b"NEW" * 1000)
    link = unnamed_files.link_unnamed
    calls: list[int] = []

    def no_link_for_the_spool(fd: int, target: str) -> bool:
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(18, "Invalid cross-device link")  # EXDEV
        return link(fd, target)

    monkeypatch.setattr(unnamed_files, "link_unnamed", no_link_for_the_spool)
    store.put("a.bin", FileStorage(spool, "a.bin"), overwrite=True)
    monkeypatch.undo()
    if not calls:
        pytest.skip("no unnamed spool files here")
    assert store.local.read("a.bin") == b"NEW" * 1000
    record = store.records.get("a.bin")
    assert record is not None and record.describes(store.local.info("a.bin")), record
    store.transfer_now("a.bin")
    assert store.remote.read("a.bin") == b"NEW" * 1000


# -- hostile contents of .deleting ----------------------------------------------------------


def test_a_dangling_notes_folder_symlink_does_not_hang_conditional_deletes(
    tmp_path: Path,
) -> None:
    """``.deleting`` is a dangling symlink (its target removed, a restored backup...):
    ``os.mkdir`` raises FileExistsError (suppressed), the note's ``os.open`` raises
    FileNotFoundError and ``noted_delete`` loops for ever, burning a core. Run in a child
    process, killed after 10 s."""
    code = (
        "import os, sys\n"
        "from flask_store.stores.local import LocalStore\n"
        "store = LocalStore(path=sys.argv[1])\n"
        "etag = store.put('a.txt', b'x').info.etag\n"
        "os.symlink(sys.argv[2], os.path.join(sys.argv[1], '.deleting'))\n"
        "print(store.delete('a.txt', if_etag=etag))\n"
    )
    try:
        child = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / "store"), str(tmp_path / "gone")],
            capture_output=True,
            timeout=10,
            text=True,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("delete(if_etag=...) spins for ever on a dangling .deleting symlink")
    assert child.returncode == 0, child.stderr


def test_a_symlink_among_the_notes_does_not_fail_start(tmp_path: Path) -> None:
    """An entry of ``.deleting`` that is a symlink: ``_settle_note`` opens it with
    O_NOFOLLOW, which raises ELOOP; only FileNotFoundError is suppressed, so
    ``settle_left_notes`` raises out of ``LocalStore.start()`` (the app cannot start),
    ``remove_stale_temp_files`` and the reconciler's pass."""
    root = tmp_path / "store"
    store = LocalStore(path=str(root))
    store.put("a.txt", b"x")
    (root / NOTES_FOLDER).mkdir()
    (tmp_path / "elsewhere.json").write_bytes(b"{}")
    os.symlink(tmp_path / "elsewhere.json", root / NOTES_FOLDER / "0123456789abcdef.json")
    store.settle_interrupted_deletes()


def test_a_socket_among_the_notes_does_not_fail_start(tmp_path: Path) -> None:
    """A socket in ``.deleting``: os.open raises ENXIO, out of settle_left_notes."""
    root = tmp_path / "store"
    store = LocalStore(path=str(root))
    (root / NOTES_FOLDER).mkdir()
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(root / NOTES_FOLDER / "s.json"))
        store.settle_interrupted_deletes()
    finally:
        sock.close()


def test_a_notes_folder_symlink_does_not_remove_files_outside_the_store(tmp_path: Path) -> None:
    """``.deleting`` is a symlink to a folder outside the store: listdir follows it, and
    every regular file there that is not a note is 'damaged' and removed."""
    root = tmp_path / "store"
    store = LocalStore(path=str(root))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_bytes(b"keep me")
    os.symlink(outside, root / NOTES_FOLDER)
    store.settle_interrupted_deletes()
    assert (outside / "precious.txt").exists(), "a file outside the store was removed"


def test_a_notes_folder_that_is_a_file_does_not_fail_every_conditional_delete(
    tmp_path: Path,
) -> None:
    """``.deleting`` is a regular file: every conditional delete (every transfer's removal
    of a sent local copy) fails with NotADirectoryError, and nothing repairs it."""
    store = LocalStore(path=str(tmp_path / "store"))
    etag = store.put("a.txt", b"x").info.etag
    (tmp_path / "store" / NOTES_FOLDER).write_bytes(b"")
    assert store.delete("a.txt", if_etag=etag)


def test_a_conditional_delete_works_on_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Freeing space is what a full disk needs (a transfer removing sent local copies), and
    ``rename`` + ``unlink`` need no new block. The note does (mkdir of ``.deleting``, a
    new file): every conditional delete now fails with StorageFullError on a full disk,
    where the plain delete still works."""
    import errno

    store = LocalStore(path=str(tmp_path / "store"))
    etag = store.put("a.txt", b"x").info.etag
    mkdir = os.mkdir

    def full(path: Any, mode: int = 0o777, **kwargs: Any) -> None:
        if str(path).endswith(NOTES_FOLDER):
            raise OSError(errno.ENOSPC, "No space left on device")
        mkdir(path, mode, **kwargs)

    monkeypatch.setattr(os, "mkdir", full)
    assert store.delete("a.txt", if_etag=etag)


def test_the_reconciler_does_not_withdraw_a_live_saves_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replacing save S1 was killed between its record and its file (its intent notes the
    record R0 it replaced). The reconciler looks at that intent while a second replacing
    save S2 holds the key (its record R2 written, its file about to land). It must leave
    R2 alone: putting R0 back over it (it once checked only that the record it had read
    was unchanged, not that it was S1's) left S2's file under R0, never transferred."""
    store = make_queued(tmp_path, on_conflict="overwrite", transfer_delayed=True)
    store.save(b"OLD", name="a.txt")
    r0 = store.records.get("a.txt")
    assert r0 is not None
    # S1, killed: its record of a file that never landed; its intent notes R0.
    s1 = store.records.create(r0.moved("pending", local_etag="never-landed", size=3))
    intent = Intent(
        fd=-1,
        overwrite=True,
        queued=False,
        keys=["a.txt"],
        replaced={"a.txt": Replacement(r0, s1.created)},
    )
    recording = store.records.recording
    adopted: list[bool] = []

    @contextmanager
    def recording_while_reconciling(*args: Any, **kwargs: Any) -> Iterator[TransferRecord]:
        with recording(*args, **kwargs) as fresh:
            reconciler = threading.Thread(
                target=lambda: adopted.append(store._adopt("a.txt", intent))
            )
            reconciler.start()
            reconciler.join(10)  # it may wait for the key: S2 holds it until its file lands
            yield fresh
        reconciler.join(60)

    monkeypatch.setattr(store.records, "recording", recording_while_reconciling)
    store.save(b"SECOND", name="a.txt")  # S2
    monkeypatch.undo()
    assert adopted == [False]
    assert store.local.read("a.txt") == b"SECOND"
    record = store.records.get("a.txt")
    assert record is not None and record.describes(store.local.info("a.txt")), record


def test_a_pending_file_restored_from_a_backup_is_still_transferred(tmp_path: Path) -> None:
    """The local folder is restored or moved to a new disk (``cp -a``, rsync) while
    transfers are pending: same bytes, new inode, so a new ETag. Before, the transfer
    brought the record up to date and sent the file; now ``_open_local`` raises
    ``_NotYetStoredError`` ("a save replacing it is under way", which no save is) on
    every attempt until the retries run out: the transfer fails for good."""
    import shutil

    store = make_queued(tmp_path, transfer_delayed=True, transfer_retries=2)
    store.save(b"pending bytes", name="a.txt")
    path = tmp_path / "local" / "a.txt"
    shutil.copy2(path, tmp_path / "restored")
    os.replace(tmp_path / "restored", path)  # a new inode: a new ETag
    assert store.transfer_now("a.txt") == "done"
    assert store.remote.read("a.txt") == b"pending bytes"


@pytest.mark.parametrize(
    "noted",
    ["another-key", "not-a-record", "wrong-types"],
)
def test_a_damaged_replaces_line_of_an_intent_never_drops_or_writes_a_record(
    tmp_path: Path, noted: str
) -> None:
    """The intent of a killed replacing save names the record to put back. A line that does
    not hold the record of its own key (damage, a local attacker writing in the records
    folder) is ignored: put back, it would write a record for another key, or (read as
    'there was none') remove the key's record, leaving its file never transferred."""
    store = make_queued(tmp_path, on_conflict="overwrite", transfer_delayed=True)
    store.save(b"OLD", name="a.txt")
    r0 = store.records.get("a.txt")
    assert r0 is not None
    killed = store.records.create(r0.moved("pending", local_etag="never-landed", size=3))
    fields = dataclasses.asdict(r0)
    record: object = {
        "another-key": {**fields, "key": "b.txt"},
        "not-a-record": 5,
        "wrong-types": {**fields, "size": "three"},
    }[noted]
    intents = Path(store.records.root, "intents")
    lines = [
        {"overwrite": True, "queued": False},
        "a.txt",
        {"replaces": "a.txt", "record": record, "by": killed.created},
    ]
    (intents / "0123.intent").write_text("".join(json.dumps(line) + "\n" for line in lines))

    store.adopt_abandoned()

    assert store.records.get("b.txt") is None
    assert store.records.get("a.txt") is not None
    assert store.transfer_now("a.txt") == "done"
    assert store.remote.read("a.txt") == b"OLD"
