"""QueuedStore: local first, remote in the background, nothing lost (thread executor)."""

from __future__ import annotations

import errno
import io
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request

from flask_store import Store
from flask_store.exceptions import (
    FileExistsInStoreError,
    FileNotFoundInStoreError,
    NotConfiguredError,
    StorageFullError,
    TransferConflictError,
)
from flask_store.stores.memory import MemoryStore
from flask_store.stores.queued import QueuedStore, retry_delay
from flask_store.transfer.records import RecordBook, TransferRecord
from flask_store.transfer.signals import file_saved, file_transferred, transfer_failed
from flask_store.transfer.steps import RetryLater
from tests.queued_remotes import (
    BlockingStore,
    CorruptingStore,
    FlakyStore,
    InterruptedStore,
    LinkedMemoryStore,
    RangeRecordingStore,
)

JOIN = 30  # seconds: only a safety net against a hung test, never a measurement


#: The kinds of local side the tests that need no file on disk run with: any store can be
#: the local side of a queued store, since it only uses the store contract.
LOCAL_SIDES = ["local", "memory"]


def make_store(
    tmp_path: Path,
    remote: dict[str, Any] | None = None,
    *,
    local: str = "local",
    **settings: Any,
) -> QueuedStore:
    """A queued store; ``local="memory"`` keeps its local side in memory (its records in
    ``tmp_path / "records"``, since a memory store has no folder to keep them in)."""
    if local == "memory":
        settings.setdefault("transfer_records_path", str(tmp_path / "records"))
        local_settings: dict[str, Any] = {"PROVIDER": "memory"}
    else:
        local_settings = {"PROVIDER": "local", "PATH": str(tmp_path / "local")}
    return QueuedStore(
        queued_local=local_settings,
        queued_remote=remote or {"PROVIDER": "memory"},
        transfer_retry_delay=0,
        **settings,
    )


@pytest.fixture
def signals() -> Iterator[dict[str, list[dict[str, Any]]]]:
    """Every signal sent during the test, by name, with its keyword arguments."""
    seen: dict[str, list[dict[str, Any]]] = {"saved": [], "transferred": [], "failed": []}
    receivers: list[Callable[..., None]] = []
    for name, signal in [
        ("saved", file_saved),
        ("transferred", file_transferred),
        ("failed", transfer_failed),
    ]:

        def receiver(sender: object, _name: str = name, **kwargs: Any) -> None:
            seen[_name].append(kwargs)

        receivers.append(receiver)
        signal.connect(receiver)
    yield seen
    for signal, receiver in zip(
        (file_saved, file_transferred, transfer_failed), receivers, strict=True
    ):
        signal.disconnect(receiver)


def test_request_returns_while_the_remote_is_frozen(
    tmp_path: Path, signals: dict[str, list[dict[str, Any]]]
) -> None:
    gate = threading.Event()
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        STORE_PROVIDER="queued",
        STORE_QUEUED_LOCAL={"PROVIDER": "local", "PATH": str(tmp_path / "local")},
        STORE_QUEUED_REMOTE={"PROVIDER": BlockingStore, "GATE": gate},
        STORE_DOMAIN="http://files.test",
    )
    store = Store(app)

    @app.post("/upload")
    def upload() -> str:
        return store.Provider().save(request.files["afile"]).absolute_url()

    client = app.test_client()
    response = client.post("/upload", data={"afile": (io.BytesIO(b"photo"), "cat.jpg")})

    # The request finished while the remote is still holding the upload back.
    assert response.status_code == 200
    assert response.text == "http://files.test/flaskstore/cat.jpg"
    with app.app_context():
        queued = store.Provider()
        assert isinstance(queued, QueuedStore)
        remote = queued.remote
        assert isinstance(remote, BlockingStore)
        assert remote.entered.wait(JOIN), "the transfer never started"
        assert not remote.exists("cat.jpg")
        assert queued.state("cat.jpg") == "pending"
        served = client.get("/flaskstore/cat.jpg")
        assert (served.status_code, served.data) == (200, b"photo")
        assert [s["key"] for s in signals["saved"]] == ["cat.jpg"]
        assert signals["transferred"] == []

        gate.set()
        assert queued.join(JOIN)
        assert remote.read("cat.jpg") == b"photo"
        assert queued.state("cat.jpg") == "done"
        assert [s["key"] for s in signals["transferred"]] == ["cat.jpg"]
        # The local copy is kept by default, and the URL handed out still works.
        assert (tmp_path / "local" / "cat.jpg").read_bytes() == b"photo"
        assert client.get("/flaskstore/cat.jpg").data == b"photo"


@pytest.mark.parametrize("local", LOCAL_SIDES)
def test_failing_remote_is_retried_then_recorded_failed_then_reconciled(
    tmp_path: Path, signals: dict[str, list[dict[str, Any]]], local: str
) -> None:
    attempts: list[str] = []
    remote = {"PROVIDER": FlakyStore, "FAIL_TIMES": 3, "ATTEMPTS": attempts}
    store = make_store(tmp_path, remote, local=local, transfer_retries=2)
    store.save(b"precious", name="doc.pdf")
    assert store.join(JOIN)

    assert attempts == ["doc.pdf"] * 3  # the first try and two retries
    assert store.state("doc.pdf") == "failed"
    assert [(s["key"], s["attempts"]) for s in signals["failed"]] == [("doc.pdf", 3)]
    assert "remote store is down" in str(signals["failed"][0]["error"])
    assert not store.remote.exists("doc.pdf")
    assert store.local.read("doc.pdf") == b"precious"
    assert store.read("doc.pdf") == b"precious"  # still readable, from the local copy

    assert store.reconcile() == ["doc.pdf"]
    assert store.join(JOIN)
    assert store.state("doc.pdf") == "done"
    assert store.remote.read("doc.pdf") == b"precious"
    assert [s["key"] for s in signals["transferred"]] == ["doc.pdf"]


def test_retries_until_the_remote_comes_back(tmp_path: Path) -> None:
    attempts: list[str] = []
    remote = {"PROVIDER": FlakyStore, "FAIL_TIMES": 2, "ATTEMPTS": attempts}
    store = make_store(tmp_path, remote, transfer_retries=5)
    store.save(b"abc", name="a.txt")
    assert store.join(JOIN)
    assert len(attempts) == 3
    assert store.state("a.txt") == "done"
    record = store.records.get("a.txt")
    assert record is not None and record.attempts == 2


def test_retries_back_off_exponentially() -> None:
    assert [retry_delay(2.0, attempt) for attempt in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert retry_delay(0, 5) == 0


def test_each_retry_waits_twice_as_long_as_the_one_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The waits themselves are recorded (not slept) on this thread: no timing involved."""
    waits: list[float] = []
    this_thread, real_sleep = threading.current_thread(), time.sleep

    def recorded_sleep(seconds: float) -> None:
        if threading.current_thread() is this_thread:
            waits.append(seconds)
        else:
            real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", recorded_sleep)
    remote = {"PROVIDER": FlakyStore, "FAIL_TIMES": 3}
    store = make_store(tmp_path, remote, transfer_delayed=True, transfer_retries=5)
    store.retry_delay = 0.5
    store.save(b"abc", name="a.txt")
    assert store.transfer_now("a.txt") == "done"
    assert waits == [0.5, 1.0, 2.0]


def test_transfer_workers_bounds_the_threads_uploading_at_once(tmp_path: Path) -> None:
    gate = threading.Event()
    store = make_store(tmp_path, {"PROVIDER": BlockingStore, "GATE": gate}, transfer_workers=2)
    before = set(threading.enumerate())
    try:
        names = [store.save(b"%d" % i, name=f"f{i}.txt").name for i in range(5)]
        started = [t for t in threading.enumerate() if t not in before]
        assert [t.name for t in started] == ["flask-store-transfer"] * 2
    finally:
        gate.set()
    assert store.join(JOIN)
    assert [store.remote.read(name) for name in names] == [b"%d" % i for i in range(5)]


@pytest.mark.parametrize("local", LOCAL_SIDES)
def test_deleting_a_file_while_its_transfer_fails_ends_the_transfer(
    tmp_path: Path, signals: dict[str, list[dict[str, Any]]], local: str
) -> None:
    stores: list[QueuedStore] = []
    attempts: list[str] = []
    remote = {
        "PROVIDER": FlakyStore,
        "FAIL_TIMES": 10**6,
        "ATTEMPTS": attempts,
        "ON_FAILURE": lambda name: stores[0].delete(name),  # the user deletes it meanwhile
    }
    store = make_store(tmp_path, remote, local=local, transfer_delayed=True, transfer_retries=3)
    stores.append(store)
    store.save(b"x", name="a.txt")

    assert store.transfer_now("a.txt") == "gone"
    assert attempts == ["a.txt"]  # no retry of a file that no longer exists
    assert list(store.records) == []  # and no record brought back to reserve its name
    assert signals["failed"] == []
    assert not store.exists("a.txt")


@contextmanager
def when_a_transfer_waits(event: threading.Event) -> Iterator[None]:
    """Set ``event`` when a transfer logs that it waits for another transfer of its key."""

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "waits for another transfer" in record.getMessage():
                event.set()

    logger = logging.getLogger("flask_store.transfer")
    handler, level = Handler(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.parametrize("local", LOCAL_SIDES)
def test_a_second_transfer_of_a_file_waits_for_the_first(tmp_path: Path, local: str) -> None:
    """Two workers get the same file (start-up reconcile, duplicate jobs): the second waits
    for the first, then finds it done; the remote is written once."""
    stores: list[QueuedStore] = []
    second: list[threading.Thread] = []
    outcomes: list[str] = []
    waiting = threading.Event()

    def duplicate_transfer(name: str) -> None:
        thread = threading.Thread(target=lambda: outcomes.append(stores[0].transfer_now(name)))
        thread.start()
        second.append(thread)
        assert waiting.wait(JOIN)

    remote = {"PROVIDER": InterruptedStore, "INTERRUPT": duplicate_transfer}
    store = make_store(
        tmp_path, remote, local=local, transfer_delayed=True, transfer_delete_local=True
    )
    stores.append(store)
    store.save(b"x", name="a.txt")
    writes: list[str] = []
    store.remote.put = _counting(store.remote.put, writes)  # type: ignore[method-assign]

    with when_a_transfer_waits(waiting):
        outcomes.append(store.transfer_now("a.txt"))
        second[0].join(JOIN)

    assert outcomes == ["done", "done"]  # this one's, then the one that waited
    assert writes == ["a.txt"]
    assert store.state("a.txt") == "done"
    assert not store.local.exists("a.txt")
    assert store.read("a.txt") == b"x"  # from the remote, where the record points


def _counting(put: Callable[..., Any], writes: list[str]) -> Callable[..., Any]:
    def counted(key: str, *args: Any, **kwargs: Any) -> Any:
        writes.append(key)
        return put(key, *args, **kwargs)

    return counted


@pytest.mark.parametrize("local", LOCAL_SIDES)
@pytest.mark.parametrize("delete_local", [True, False])
def test_the_last_version_saved_wins_over_a_slower_older_transfer(
    tmp_path: Path, delete_local: bool, local: str
) -> None:
    """The old version's upload is slow; the user replaces the file meanwhile and its
    transfer is queued at once. The newer bytes must end on the remote, and the local copy
    may only go once the remote holds them."""
    stores: list[QueuedStore] = []
    turn = threading.Event()  # the newer transfer waits for the older one, or it finished

    def replace_meanwhile(name: str) -> None:
        stores[0].replace(name, b"NEW version")  # queues the newer version's transfer
        assert turn.wait(JOIN)

    remote = {"PROVIDER": InterruptedStore, "INTERRUPT": replace_meanwhile}
    store = make_store(
        tmp_path, remote, local=local, on_conflict="overwrite", transfer_delete_local=delete_local
    )
    stores.append(store)

    def finished(sender: object, key: str, **extra: Any) -> None:
        turn.set()

    with when_a_transfer_waits(turn), file_transferred.connected_to(finished):
        store.save(b"OLD version", name="report.txt")
        assert store.join(JOIN)

    assert store.remote.read("report.txt") == b"NEW version"
    assert store.state("report.txt") == "done"
    assert store.read("report.txt") == b"NEW version"
    assert list(store.local.keys()) == ([] if delete_local else ["report.txt"])
    if local == "local":  # and nothing moved aside is left in its folder
        assert sorted(p.name for p in (tmp_path / "local").iterdir()) == (
            [".transfers"] if delete_local else [".transfers", "report.txt"]
        )


@pytest.mark.parametrize("local", LOCAL_SIDES)
def test_the_local_copy_stays_when_a_newer_file_landed_after_the_upload(
    tmp_path: Path, local: str
) -> None:
    """A save whose record is not written yet (its file already in place) when the older
    transfer finishes: the older transfer must not delete that newer file."""
    stores: list[QueuedStore] = []

    def land_newer_file(sender: object, key: str, **extra: Any) -> None:
        # The newer save's write, with its record still to come.
        stores[0].local.put(key, b"NEW", overwrite=True)

    store = make_store(
        tmp_path,
        local=local,
        on_conflict="overwrite",
        transfer_delete_local=True,
        transfer_delayed=True,
    )
    stores.append(store)
    store.save(b"OLD", name="a.txt")
    with file_transferred.connected_to(land_newer_file):
        assert store.transfer_now("a.txt") == "done"
    assert store.local.read("a.txt") == b"NEW"  # kept for its own transfer
    if local == "local":  # and nothing moved aside is left in its folder
        assert sorted(p.name for p in (tmp_path / "local").iterdir()) == [".transfers", "a.txt"]
    assert store.remote.read("a.txt") == b"OLD"


@pytest.mark.parametrize("local", LOCAL_SIDES)
def test_a_full_disk_while_recording_an_overwrite_keeps_the_pending_old_version(
    tmp_path: Path, local: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills up as an overwriting save records its transfer: the save fails with
    StorageFullError and the store is as before it: the old version, not transferred yet,
    is still the key's local copy and record, reaches the remote, and no part of the new
    one is left."""
    store = make_store(tmp_path, local=local, on_conflict="overwrite", transfer_delayed=True)
    old = store.save(b"OLD version", name="a.txt")
    record = store.records.get("a.txt")

    def disk_full(record: TransferRecord) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(store.records, "_write", disk_full)
        with pytest.raises(StorageFullError):
            store.save(b"NEW version", name="a.txt")

    assert store.records.get("a.txt") == record
    assert store.local.read("a.txt") == b"OLD version"
    assert store.info("a.txt").etag == old.info.etag
    assert store.transfer_now("a.txt") == "done"
    assert store.remote.read("a.txt") == b"OLD version"
    if local == "local":  # nothing of the new version, nor of the save, is left
        assert sorted(p.name for p in (tmp_path / "local").iterdir()) == [".transfers", "a.txt"]
    assert os.listdir(os.path.join(store.records.root, "intents")) == []


@pytest.mark.parametrize("local", LOCAL_SIDES)
@pytest.mark.parametrize("before", ["no-file", "sent-and-removed", "pending"])
def test_a_transfer_between_an_overwrites_record_and_its_file_waits_for_the_file(
    tmp_path: Path, local: str, before: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An overwriting save records its transfer before its file takes the key. A transfer
    that runs in that instant (the start-up pass, ``flask store transfer``, another
    process) finds no local copy, or the old one: it must wait for the new file, never
    fail the transfer for good nor send the old bytes as the new version."""
    store = make_store(
        tmp_path,
        local=local,
        on_conflict="overwrite",
        transfer_delayed=True,
        transfer_delete_local=True,
    )
    if before != "no-file":
        store.save(b"OLD", name="a.txt")
    if before == "sent-and-removed":
        assert store.transfer_now("a.txt") == "done"
        assert not store.local.exists("a.txt")
    steps: list[object] = []
    looked = threading.Event()
    open_local, recording = store._open_local, store.records.recording

    def open_and_tell(record: TransferRecord) -> Any:
        try:
            return open_local(record)
        finally:
            looked.set()

    @contextmanager
    def recording_then_transfer(*args: Any, **kwargs: Any) -> Iterator[TransferRecord]:
        with recording(*args, **kwargs) as fresh:
            # Recorded; the file takes the key once this block ends. A transfer runs now:
            transfer = threading.Thread(target=lambda: steps.append(store.transfer_step("a.txt")))
            transfer.start()
            assert looked.wait(60)  # it looked for the local copy
            yield fresh
        transfer.join(60)

    with monkeypatch.context() as patched:
        patched.setattr(store, "_open_local", open_and_tell)
        patched.setattr(store.records, "recording", recording_then_transfer)
        store.save(b"NEW", name="a.txt")

    assert [type(step) for step in steps] == [RetryLater]
    assert store.transfer_now("a.txt") == "done"
    assert store.remote.read("a.txt") == b"NEW"


def test_two_overwriting_saves_of_one_key_leave_the_later_files_bytes_and_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two requests replace one key at once. The first is held as its file is about to take
    the key (its transfer recorded); the second must not record and land its file in
    between, or the first one's file lands over it: the key would hold the first save's
    bytes under the second save's record, and that transfer could never finish."""
    store = make_store(tmp_path, on_conflict="overwrite", transfer_delayed=True)
    store.save(b"OLD", name="a.txt")
    target = str(tmp_path / "local" / "a.txt")
    about_to_land, go_on = threading.Event(), threading.Event()
    replace = os.replace

    def hold_the_first(source: Any, destination: Any, **kwargs: Any) -> None:
        if destination == target and not about_to_land.is_set():
            about_to_land.set()
            assert go_on.wait(60)
        replace(source, destination, **kwargs)

    monkeypatch.setattr(os, "replace", hold_the_first)
    first = threading.Thread(target=store.save, args=(b"FIRST",), kwargs={"name": "a.txt"})
    first.start()
    assert about_to_land.wait(60)
    second = threading.Thread(target=store.save, args=(b"SECOND!",), kwargs={"name": "a.txt"})
    second.start()
    second.join(1.0)  # it may not land while the first is held: the key is being replaced
    go_on.set()
    first.join(60)
    second.join(60)
    monkeypatch.undo()

    assert store.local.read("a.txt") == b"SECOND!"
    record = store.records.get("a.txt")
    assert record is not None and record.describes(store.local.info("a.txt"))
    assert store.transfer_now("a.txt") == "done"
    assert store.remote.read("a.txt") == b"SECOND!"


def test_a_transfer_in_another_process_holds_the_key(tmp_path: Path) -> None:
    """The transfer lock is an flock in the records folder: a transfer of the same key in
    another process (an RQ worker) makes this one wait until it ends."""
    store = make_store(tmp_path, transfer_delayed=True)
    store.save(b"x", name="a.txt")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_KEY, store.records.root, "a.txt"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        waiting = threading.Event()
        outcome: list[str] = []
        with when_a_transfer_waits(waiting):
            worker = threading.Thread(target=lambda: outcome.append(store.transfer_now("a.txt")))
            worker.start()
            assert waiting.wait(JOIN)
            assert list(store.remote.keys()) == []  # nothing sent while the other one runs
            assert holder.stdin is not None
            holder.stdin.close()  # the other process's transfer ends
            worker.join(JOIN)
    finally:
        holder.kill()
        holder.wait()
    assert outcome == ["done"]
    assert store.remote.read("a.txt") == b"x"


HOLD_THE_KEY = """
import sys
from flask_store.transfer.records import RecordBook
with RecordBook(sys.argv[1]).transferring(sys.argv[2]):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_record_saved_again_is_not_updated_by_a_stale_transfer(tmp_path: Path) -> None:
    store = make_store(tmp_path, transfer_delayed=True)
    store.save(b"old", name="a.txt")
    stale = store.records.get("a.txt")
    assert stale is not None
    store.delete("a.txt")
    store.save(b"new", name="a.txt")  # the same key and version number, another save
    fresh = store.records.get("a.txt")
    assert fresh is not None and fresh.version == stale.version

    assert not store.records.update(stale, stale.moved("done"))
    assert store.records.get("a.txt") == fresh
    assert store.records.update(fresh, fresh.moved("failed"))
    current = store.records.get("a.txt")
    assert isinstance(current, TransferRecord) and current.state == "failed"


def test_a_crash_between_the_two_steps_of_a_move_keeps_the_newer_record(tmp_path: Path) -> None:
    """A move writes the record in its new folder, then removes the old one: a process that
    died in between leaves both, and the higher version counts, in both directions."""
    book = RecordBook(str(tmp_path / "records"))
    pending = book.create(TransferRecord("a.txt", "pending", size=1, filename="a", content_type=""))
    [open_file] = (tmp_path / "records" / "open").iterdir()
    left_behind = open_file.read_bytes()
    assert book.update(pending, pending.moved("done"))
    open_file.write_bytes(left_behind)  # the removal of the old file never happened

    done = book.get("a.txt")
    assert done is not None and done.state == "done" and done.version == pending.version + 1
    assert book.unsettled() == []
    assert list(book) == [done]

    [done_file] = (tmp_path / "records" / "done").iterdir()
    left_behind = done_file.read_bytes()
    again = book.create(done.moved("pending"))  # saved again under the key: pending, newer
    done_file.write_bytes(left_behind)
    assert book.get("a.txt") == again
    assert book.unsettled() == [again]
    assert list(book) == [again]


def test_a_corrupted_upload_is_removed_and_sent_again(
    tmp_path: Path, signals: dict[str, list[dict[str, Any]]]
) -> None:
    store = make_store(tmp_path, {"PROVIDER": CorruptingStore, "CORRUPT_TIMES": 1})
    store.save(b"0123456789", name="a.bin")
    assert store.join(JOIN)
    assert store.state("a.bin") == "done"
    assert store.remote.read("a.bin") == b"0123456789"
    record = store.records.get("a.bin")
    assert record is not None and record.attempts == 1
    assert signals["failed"] == []


@pytest.mark.parametrize("local", LOCAL_SIDES)
def test_same_bytes_already_on_the_remote_count_as_done(tmp_path: Path, local: str) -> None:
    store = make_store(tmp_path, local=local, transfer_delayed=True)
    store.save(b"same", name="a.txt")
    store.remote.put("a.txt", b"same")  # an earlier attempt uploaded, then died
    assert store.transfer_now("a.txt") == "done"
    assert list(store.remote.keys()) == ["a.txt"]


@pytest.mark.parametrize("local", LOCAL_SIDES)
def test_different_bytes_on_the_remote_are_never_overwritten(
    tmp_path: Path, signals: dict[str, list[dict[str, Any]]], local: str
) -> None:
    store = make_store(tmp_path, local=local, transfer_delayed=True, transfer_retries=3)
    store.save(b"mine", name="a.txt")
    store.remote.put("a.txt", b"theirs")
    assert store.transfer_now("a.txt") == "failed"
    assert store.remote.read("a.txt") == b"theirs"
    assert store.read("a.txt") == b"mine"
    error = signals["failed"][0]["error"]
    assert isinstance(error, TransferConflictError)
    assert signals["failed"][0]["attempts"] == 1  # a conflict is not retried
    record = store.records.get("a.txt")
    assert record is not None and "different file" in (record.error or "")


@pytest.mark.parametrize("local", LOCAL_SIDES)
def test_delete_local_keeps_the_key_reserved(tmp_path: Path, local: str) -> None:
    store = make_store(tmp_path, local=local, transfer_delete_local=True)
    first = store.save(b"one", name="a.txt")
    assert store.join(JOIN)
    assert not store.local.exists("a.txt")
    assert store.read("a.txt") == b"one"  # now from the remote

    second = store.save(b"two", name="a.txt")
    assert second.name != first.name  # renamed, never overwriting the transferred file
    assert store.join(JOIN)
    assert store.remote.read(first.name) == b"one"
    assert store.remote.read(second.name) == b"two"

    strict = make_store(tmp_path, local=local, transfer_delete_local=True, on_conflict="error")
    with pytest.raises(FileExistsInStoreError, match=r"a\.txt"):
        strict.save(b"three", name="a.txt")
    assert store.remote.read("a.txt") == b"one"


def test_a_local_file_without_record_is_named_when_its_key_is_taken(tmp_path: Path) -> None:
    store = make_store(tmp_path, on_conflict="error", transfer_delayed=True)
    (tmp_path / "local" / "a.txt").write_bytes(b"put there by other means")
    with pytest.raises(FileExistsInStoreError, match=r"stored as 'a\.txt'"):
        store.save(b"mine", name="a.txt")
    assert list(store.records) == []


@pytest.mark.parametrize(("theirs", "outcome"), [(b"same", "done"), (b"diff", "failed")])
def test_a_remote_without_md5_etags_is_compared_byte_for_byte(
    tmp_path: Path, theirs: bytes, outcome: str
) -> None:
    """A folder as the remote: its ETags are no MD5, so a key found taken is read and hashed
    (an earlier attempt's upload counts as done; another file of the same size does not)."""
    remote = {"PROVIDER": "local", "PATH": str(tmp_path / "remote")}
    store = make_store(tmp_path, remote, transfer_delayed=True)
    store.save(b"same", name="a.txt")
    store.remote.put("a.txt", theirs)
    assert store.transfer_now("a.txt") == outcome
    assert store.remote.read("a.txt") == theirs  # never overwritten
    assert store.read("a.txt") == b"same"


@pytest.mark.parametrize("local", LOCAL_SIDES)
def test_overwrite_policy_replaces_the_remote_copy_too(tmp_path: Path, local: str) -> None:
    store = make_store(tmp_path, local=local, on_conflict="overwrite")
    store.save(b"old", name="a.txt")
    assert store.join(JOIN)
    store.save(b"new", name="a.txt")
    assert store.join(JOIN)
    assert store.remote.read("a.txt") == b"new"
    assert store.read("a.txt") == b"new"


@pytest.mark.parametrize("local", LOCAL_SIDES)
def test_delayed_mode_waits_for_transfer(tmp_path: Path, local: str) -> None:
    store = make_store(tmp_path, local=local, transfer_delayed=True)
    store.save(b"later", name="a.txt")
    assert store.join(JOIN)
    assert store.state("a.txt") == "pending"
    assert store.reconcile() == []  # the start-up pass leaves delayed files alone
    assert not store.remote.exists("a.txt")
    store.transfer("a.txt")
    assert store.join(JOIN)
    assert store.remote.read("a.txt") == b"later"
    with pytest.raises(FileNotFoundInStoreError):
        store.transfer("never-saved.txt")


@pytest.mark.parametrize("local", LOCAL_SIDES)
def test_deleting_a_pending_file_removes_it_everywhere(tmp_path: Path, local: str) -> None:
    store = make_store(tmp_path, local=local, transfer_delayed=True)
    store.save(b"x", name="a.txt")
    assert store.delete("a.txt")
    assert store.transfer_now("a.txt") == "gone"
    assert not store.exists("a.txt")
    assert list(store.keys()) == []
    assert list(store.records) == []
    assert not store.delete("a.txt")


def test_start_up_reconciles_what_a_previous_process_left(tmp_path: Path) -> None:
    down = {"PROVIDER": FlakyStore, "FAIL_TIMES": 10**6}
    first = make_store(tmp_path, down, transfer_retries=0)
    first.save(b"a", name="a.txt")
    first.save(b"b", name="b.txt")
    assert first.join(JOIN)
    assert [first.state(k) for k in ("a.txt", "b.txt")] == ["failed", "failed"]

    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        STORE_PROVIDER="queued",
        STORE_QUEUED_LOCAL={"PROVIDER": "local", "PATH": str(tmp_path / "local")},
        STORE_QUEUED_REMOTE={"PROVIDER": "memory"},
    )
    Store(app)
    queued = Store.registry(app).resolve()
    assert isinstance(queued, QueuedStore)
    assert queued.join(JOIN)
    assert queued.remote.read("a.txt") == b"a"
    assert queued.remote.read("b.txt") == b"b"


def test_serving_redirects_once_transferred_to_a_remote_with_direct_urls(
    tmp_path: Path,
) -> None:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        STORE_PROVIDER="queued",
        STORE_QUEUED_LOCAL={"PROVIDER": "local", "PATH": str(tmp_path / "local")},
        STORE_QUEUED_REMOTE={"PROVIDER": LinkedMemoryStore},
        STORE_TRANSFER_DELAYED=True,
    )
    store = Store(app)
    client = app.test_client()
    with app.app_context():
        provider = store.Provider()
        assert isinstance(provider, QueuedStore)
        saved = provider.save(b"img", name="a.png")
        pending = client.get("/flaskstore/a.png")
        assert (pending.status_code, pending.data) == (200, b"img")
        assert saved.absolute_url() == "/flaskstore/a.png"
        provider.transfer("a.png")
        assert provider.join(JOIN)
        done = client.get("/flaskstore/a.png")
        assert (done.status_code, done.location) == (302, "https://cdn.example.com/a.png")
        assert saved.absolute_url() == "https://cdn.example.com/a.png"


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"STORE_QUEUED_REMOTE": None}, "STORE_QUEUED_REMOTE"),
        ({"STORE_QUEUED_REMOTE": "s3"}, "STORE_QUEUED_REMOTE"),
        ({"STORE_QUEUED_REMOTE": {"PROVIDER": "nope.Store"}}, "STORE_QUEUED_REMOTE['PROVIDER']"),
        ({"STORE_QUEUED_LOCAL": {"PATH": 3}}, "STORE_QUEUED_LOCAL['PATH']"),
        ({"STORE_QUEUED_REMOTE": {"PROVIDER": "queued"}}, "STORE_QUEUED_REMOTE['PROVIDER']"),
        ({"STORE_TRANSFER_EXECUTOR": "dramatiq"}, "STORE_TRANSFER_EXECUTOR"),
        ({"STORE_TRANSFER_RETRIES": -1}, "STORE_TRANSFER_RETRIES"),
        ({"STORE_TRANSFER_RETRY_DELAY": "soon"}, "STORE_TRANSFER_RETRY_DELAY"),
        ({"STORE_TRANSFER_WORKERS": 0}, "STORE_TRANSFER_WORKERS"),
        ({"STORE_TRANSFER_DELAYED": "yes"}, "STORE_TRANSFER_DELAYED"),
        ({"STORE_TRANSFER_EXECUTOR": "rq"}, "STORE_RQ_REDIS_URL"),
        (
            {"STORE_TRANSFER_EXECUTOR": "rq", "STORE_RQ_REDIS_URL": "localhost"},
            "STORE_RQ_REDIS_URL",
        ),
        ({"STORE_TRANSFER_EXECUTOR": "gevent"}, "STORE_TRANSFER_EXECUTOR"),
    ],
)
def test_bad_settings_fail_at_init_app_naming_the_key(
    tmp_path: Path, settings: dict[str, Any], named: str
) -> None:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(STORE_PROVIDER="queued", STORE_QUEUED_REMOTE={"PROVIDER": "memory"})
    app.config.update(settings)
    with pytest.raises(NotConfiguredError) as caught:
        Store(app)
    assert named in str(caught.value)


def test_rq_settings_must_be_picklable(tmp_path: Path) -> None:
    with pytest.raises(NotConfiguredError, match="pickled"):
        make_store(
            tmp_path,
            {"PROVIDER": "memory", "PATH": threading.Lock()},  # a MemoryStore ignores PATH
            transfer_executor="rq",
            rq_redis_url="redis://127.0.0.1:1/0",
        )


def test_records_are_written_before_save_returns_and_survive_a_new_store(
    tmp_path: Path,
) -> None:
    store = make_store(tmp_path, transfer_delayed=True)
    store.at("a").save(b"x", name="b.txt")
    again = make_store(tmp_path)  # a new process would see the same records
    record = again.records.get("a/b.txt")
    assert record is not None
    assert (record.state, record.size, record.filename) == ("pending", 1, "b.txt")
    assert again.holder("a/b.txt") is again.local
    assert [r.key for r in again.records.unsettled()] == ["a/b.txt"]


def test_ranged_reads_reach_the_store_holding_the_file(tmp_path: Path) -> None:
    # A remote with ranged reads (S3: a GET with Range) must get the range, not a whole read.
    ranges: list[tuple[str, int, int]] = []
    store = make_store(tmp_path, {"PROVIDER": RangeRecordingStore, "RANGES": ranges})
    store.save(b"0123456789", name="digits.txt")
    assert store.join(timeout=JOIN)
    with store.open_range("digits.txt", 2, 5) as part:
        assert part.read(3) == b"234"
    assert ranges == [("digits.txt", 2, 5)]


@pytest.mark.parametrize("local", LOCAL_SIDES)
def test_a_conditional_delete_goes_to_the_copy_that_is_served(tmp_path: Path, local: str) -> None:
    """Pending, the local copy's ETag decides; once transferred, the remote's. Either way
    the whole file goes (record, local copy, remote copy), or nothing does."""
    store = make_store(tmp_path, local=local, transfer_delayed=True, on_conflict="overwrite")
    pending = store.save(b"one", name="a.txt").etag
    assert pending == store.local.info("a.txt").etag
    assert store.delete("a.txt", if_etag="another version") is False
    assert store.delete("a.txt", if_etag=pending) is True
    assert store.transfer_now("a.txt") == "gone"
    assert (list(store.records), list(store.keys())) == ([], [])

    store.save(b"two", name="b.txt")
    assert store.transfer_now("b.txt") == "done"
    done = store.info("b.txt").etag
    assert done == store.remote.info("b.txt").etag
    assert store.delete("b.txt", if_etag="another version") is False
    assert store.delete("b.txt", if_etag=done) is True
    assert (list(store.records), list(store.keys())) == ([], [])


@pytest.mark.parametrize("local", LOCAL_SIDES)
@pytest.mark.parametrize("delete_local", [False, True])
def test_the_etag_a_save_returned_still_deletes_its_file_after_the_transfer(
    tmp_path: Path, local: str, delete_local: bool
) -> None:
    """An app keeps the ETag ``save()`` returned (a database column does) and deletes with
    it later: by then the remote serves the file under the remote store's own ETag. The
    version is the same, so it goes; another save of the key since keeps its file."""
    store = make_store(
        tmp_path,
        local=local,
        transfer_delayed=True,
        on_conflict="overwrite",
        transfer_delete_local=delete_local,
    )
    saved = store.save(b"one", name="a.txt").etag
    assert store.transfer_now("a.txt") == "done"
    assert store.delete("a.txt", if_etag=saved) is True
    assert (list(store.records), list(store.keys()), list(store.remote.keys())) == ([], [], [])

    old = store.save(b"old", name="b.txt").etag
    assert store.transfer_now("b.txt") == "done"
    store.save(b"newer", name="b.txt")  # saved again: the old ETag names no file now
    assert store.delete("b.txt", if_etag=old) is False
    assert store.read("b.txt") == b"newer"
    assert store.transfer_now("b.txt") == "done"
    assert store.delete("b.txt", if_etag=old) is False
    assert store.remote.read("b.txt") == b"newer"


def test_the_records_folder_defaults_to_one_inside_the_local_stores_folder(
    tmp_path: Path,
) -> None:
    store = make_store(tmp_path)
    assert store.local.local_folder() == str((tmp_path / "local").resolve())
    assert store.records.root == os.path.join(str((tmp_path / "local").resolve()), ".transfers")


def test_a_local_side_without_a_folder_keeps_its_records_in_the_instance_folder(
    tmp_path: Path,
) -> None:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        STORE_PROVIDER="queued",
        STORE_QUEUED_LOCAL={"PROVIDER": "memory"},
        STORE_QUEUED_REMOTE={"PROVIDER": "memory"},
        STORE_STORES={
            "other": {
                "PROVIDER": "queued",
                "QUEUED_LOCAL": {"PROVIDER": "memory"},
                "QUEUED_REMOTE": {"PROVIDER": "memory"},
            }
        },
    )
    Store(app)
    registry = Store.registry(app)
    default, other = registry.resolve(), registry.resolve("other")
    assert isinstance(default, QueuedStore) and isinstance(other, QueuedStore)
    assert default.local.local_folder() is None
    # One folder per store: two stores' records of the same key never meet.
    transfers = tmp_path / "instance" / "flask_store_transfers"
    assert default.records.root == str(transfers / "default")
    assert other.records.root == str(transfers / "other")

    with pytest.raises(NotConfiguredError, match="TRANSFER_RECORDS_PATH"):
        QueuedStore(queued_local={"PROVIDER": "memory"}, queued_remote={"PROVIDER": "memory"})


class TransferringDuringDelete(MemoryStore):
    """A local side whose conditional delete lets the queued transfer finish first: the
    record moves from pending to done between QueuedStore.delete's read and its check."""

    queued: QueuedStore | None = None

    def delete(self, key: str, *, if_etag: str | None = None) -> bool:
        if self.queued is not None and if_etag is not None:
            queued, self.queued = self.queued, None  # once: the first, racing delete
            assert queued.transfer_now(key) == "done"
        return super().delete(key, if_etag=if_etag)


def test_a_conditional_delete_racing_the_transfer_leaves_no_copy(tmp_path: Path) -> None:
    store = QueuedStore(
        queued_local={"PROVIDER": f"{__name__}.TransferringDuringDelete"},
        queued_remote={"PROVIDER": "memory"},
        transfer_records_path=str(tmp_path / "records"),
        transfer_delayed=True,
    )
    assert isinstance(store.local, TransferringDuringDelete)
    store.local.queued = store
    store.put("race.txt", b"x")
    pending = store.info("race.txt")
    assert store.delete("race.txt", if_etag=pending.etag)
    assert "race.txt" not in store.remote and "race.txt" not in store
    assert store.records.get("race.txt") is None


class SavedAgainDuringDelete(MemoryStore):
    """A local side on which, right after a conditional delete, another process's save
    lands a new file of the key (its record not written yet)."""

    def delete(self, key: str, *, if_etag: str | None = None) -> bool:
        deleted = super().delete(key, if_etag=if_etag)
        if deleted and if_etag is not None:
            self.put(key, b"newer save")
        return deleted


def test_a_conditional_delete_never_removes_a_newer_local_save(tmp_path: Path) -> None:
    """Only the copy whose ETag was given goes: the local side is not deleted a second
    time, unconditionally, when the key has no record (a save between its file and its
    record would lose its file)."""
    store = QueuedStore(
        queued_local={"PROVIDER": f"{__name__}.SavedAgainDuringDelete"},
        queued_remote={"PROVIDER": "memory"},
        transfer_records_path=str(tmp_path / "records"),
        transfer_delayed=True,
    )
    store.local.put("other-means.txt", b"old")  # no record: put there by other means
    old = store.info("other-means.txt").etag
    assert store.delete("other-means.txt", if_etag=old) is True
    with store.local.open("other-means.txt") as newer:
        assert newer.read() == b"newer save"


def read_and_close(stream: io.IOBase) -> bytes:
    with stream:
        data: bytes = stream.read()
    return data


#: Each way of reading a queued store's file: what it answers for ``digits.txt``.
READS: dict[str, Callable[[QueuedStore], Any]] = {
    "open": lambda store: read_and_close(store.open("digits.txt")),
    "open_with_info": lambda store: read_and_close(store.open_with_info("digits.txt")[0]),
    "open_range": lambda store: read_and_close(store.open_range("digits.txt", 2, 5)),
    "info": lambda store: store.info("digits.txt").size,
    "exists": lambda store: store.exists("digits.txt"),
    "read": lambda store: store.read("digits.txt"),
}


@pytest.mark.parametrize("local", LOCAL_SIDES)
@pytest.mark.parametrize("read", sorted(READS))
def test_a_read_racing_the_end_of_the_transfer_finds_the_remote_copy(
    tmp_path: Path, local: str, read: str
) -> None:
    """A read picks the local side (transfer pending); before it reaches the file, the
    transfer ends and deletes the local copy (TRANSFER_DELETE_LOCAL). The file exists, on
    the remote: the read must find it there, not answer "no such file"."""
    store = make_store(tmp_path, local=local, transfer_delayed=True, transfer_delete_local=True)
    store.save(b"0123456789", name="digits.txt")
    expected = READS[read](store)
    side = store.local
    method = {"read": "open"}.get(read, read)
    real = getattr(side, method)

    def transferred_first(*args: Any, **kwargs: Any) -> Any:
        setattr(side, method, real)  # once
        store.transfer("digits.txt")
        assert store.join(JOIN)
        assert store.state("digits.txt") == "done" and not side.exists("digits.txt")
        return real(*args, **kwargs)

    setattr(side, method, transferred_first)
    assert READS[read](store) == expected
