"""QueuedStore in a hostile environment: damaged records folders, clock steps, races."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from flask_store.exceptions import StoreUnavailableError
from flask_store.meta import FileInfo, FileMeta
from flask_store.stores.queued import QueuedStore
from flask_store.transfer.record_files import file_name
from tests.queued_remotes import BlockingStore
from tests.test_queued import JOIN, make_store

#: JSON nested deeper than Python's parser recurses: valid JSON, yet no record.
DEEPLY_NESTED = b"[" * 200_000 + b"]" * 200_000


def test_a_deeply_nested_record_is_skipped_by_reconcile(tmp_path: Path) -> None:
    store = make_store(tmp_path, transfer_delayed=True)
    store.save(b"a", name="a.txt")
    records = tmp_path / "local" / ".transfers"
    (records / "open" / f"{'0' * 64}.json").write_bytes(DEEPLY_NESTED)
    assert store.reconcile(include_delayed=True) == ["a.txt"]
    assert store.join(timeout=JOIN)
    assert store.state("a.txt") == "done"


def test_a_deeply_nested_intent_is_skipped_by_reconcile(tmp_path: Path) -> None:
    store = make_store(tmp_path, transfer_delayed=True)
    store.save(b"a", name="a.txt")
    records = tmp_path / "local" / ".transfers"
    (records / "intents" / "nested.intent").write_bytes(DEEPLY_NESTED + b"\n")
    (records / "intents" / "nested-key.intent").write_bytes(
        b'{"overwrite": false, "queued": true}\n' + DEEPLY_NESTED + b"\n"
    )
    assert store.reconcile(include_delayed=True) == ["a.txt"]
    assert store.join(timeout=JOIN)
    assert store.state("a.txt") == "done"


#: Reconciles the store in ``sys.argv[1]`` with its address space capped at 1 GiB, so a
#: reader that slurps a huge file fails here instead of taking the test machine's memory.
RECONCILE_IN_LITTLE_MEMORY = textwrap.dedent(
    """
    import json, resource, sys
    from flask_store.stores.queued import QueuedStore

    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    root = sys.argv[1]
    store = QueuedStore(
        queued_local={"PROVIDER": "local", "PATH": root + "/local"},
        queued_remote={"PROVIDER": "memory"},
        transfer_delayed=True,
        transfer_retry_delay=0,
    )
    queued = store.reconcile(include_delayed=True)
    store.join(timeout=20)
    print(json.dumps({"queued": queued, "states": [store.state(k) for k in queued]}))
    """
)


@pytest.mark.parametrize("where", ["open/" + "0" * 64 + ".json", "intents/huge.intent"])
def test_a_huge_file_in_the_records_is_skipped_without_reading_it_whole(
    tmp_path: Path, where: str
) -> None:
    store = make_store(tmp_path, transfer_delayed=True)
    store.save(b"a", name="a.txt")
    huge = tmp_path / "local" / ".transfers" / where
    with huge.open("wb") as sparse:  # 8 GiB that take no disk space
        sparse.truncate(8 << 30)
    command = [sys.executable, "-c", RECONCILE_IN_LITTLE_MEMORY, str(tmp_path)]
    child = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout.splitlines()[-1]) == {"queued": ["a.txt"], "states": ["done"]}
    assert huge.name in child.stderr  # logged as skipped


def _as_if_written_at(store: QueuedStore, key: str, when: datetime) -> None:
    """Rewrite ``key``'s record as queued and last changed at ``when`` (a clock that was
    wrong then)."""
    record = store.records.get(key)
    assert record is not None
    store.records._write(dataclasses.replace(record, queued=True, updated=when.isoformat()))


@pytest.mark.parametrize("older_than", [0.0, 300.0])
def test_a_record_written_while_the_clock_was_ahead_is_still_reconciled(
    tmp_path: Path, older_than: float
) -> None:
    store = make_store(tmp_path, transfer_delayed=True)
    store.save(b"a", name="a.txt")
    # Written while the clock was a day ahead, then NTP stepped it back.
    _as_if_written_at(store, "a.txt", datetime.now(timezone.utc) + timedelta(days=1))
    assert store.reconcile(older_than=older_than) == ["a.txt"]
    assert store.join(timeout=JOIN)
    assert store.state("a.txt") == "done"


def test_a_record_changed_a_moment_ago_on_a_host_a_little_ahead_waits_for_its_grace(
    tmp_path: Path,
) -> None:
    store = make_store(tmp_path, transfer_delayed=True)
    store.save(b"a", name="a.txt")
    _as_if_written_at(store, "a.txt", datetime.now(timezone.utc) + timedelta(seconds=10))
    assert store.reconcile(older_than=300) == []
    assert store.state("a.txt") == "pending"


class StoresThenFailsOnce(BlockingStore):
    """Holds its first write until ``GATE`` is set, stores it, then answers with an error (a
    remote that timed out after storing the upload); later writes just work."""

    def _write(
        self, chunks: Iterator[bytes], keys: Iterator[str], meta: FileMeta, overwrite: bool
    ) -> FileInfo:
        first = not self.entered.is_set()
        info = super()._write(chunks, keys, meta, overwrite)
        if first:
            raise StoreUnavailableError("injected: timed out after storing the upload")
        return info


def deleted_during_its_upload(
    tmp_path: Path, remote_kind: type[BlockingStore]
) -> tuple[QueuedStore, BlockingStore, threading.Event]:
    """A queued store whose remote holds ``a.txt``'s upload at ``gate``, the file deleted
    meanwhile: the store, its remote, and the gate that lets the old upload land."""
    gate = threading.Event()
    store = make_store(tmp_path, remote={"PROVIDER": remote_kind, "GATE": gate})
    remote = store.remote
    assert isinstance(remote, remote_kind)
    store.save(b"old bytes", name="a.txt")
    assert remote.entered.wait(JOIN)  # the old version's upload is under way
    assert store.delete("a.txt")
    return store, remote, gate


@pytest.mark.parametrize("saved_again", [False, True])
@pytest.mark.parametrize(
    "remote_kind", [BlockingStore, StoresThenFailsOnce], ids=["lands", "lands-then-fails"]
)
def test_a_file_deleted_during_its_upload_leaves_no_old_copy(
    tmp_path: Path, remote_kind: type[BlockingStore], saved_again: bool
) -> None:
    """The old version's upload lands on the remote after the delete (and may then fail: a
    remote that timed out after storing it). No copy of the deleted file stays there, and a
    save under the freed name meanwhile sends its new bytes."""
    store, remote, gate = deleted_during_its_upload(tmp_path, remote_kind)
    if saved_again:
        assert store.save(b"new bytes", name="a.txt").key == "a.txt"  # the name is free again
    gate.set()  # the old upload lands after the delete
    assert store.join(timeout=JOIN)
    if saved_again:
        assert store.state("a.txt") == "done"
        assert remote.read("a.txt") == b"new bytes"
        assert store.read("a.txt") == b"new bytes"
    else:
        assert not remote.exists("a.txt")  # no orphan of the deleted file
        assert not store.exists("a.txt")


@pytest.mark.parametrize(
    "remote_kind", [BlockingStore, StoresThenFailsOnce], ids=["lands", "lands-then-fails"]
)
def test_a_failed_drop_of_a_deleted_files_upload_still_lets_the_new_version_through(
    tmp_path: Path, remote_kind: type[BlockingStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old version's upload lands after the file was deleted and saved anew, and the
    remote is down for the delete that should drop it: the new version's transfer still
    ends done with its own bytes, over the stale copy it knows to be the deleted file's."""
    store, remote, gate = deleted_during_its_upload(tmp_path, remote_kind)
    assert store.save(b"new bytes", name="a.txt").key == "a.txt"
    delete, failed = remote.delete, list[str]()

    def down_once(key: str, *, if_etag: str | None = None) -> bool:
        if not failed:
            failed.append(key)
            raise StoreUnavailableError("injected: the remote store is down")
        return delete(key, if_etag=if_etag)

    monkeypatch.setattr(remote, "delete", down_once)
    gate.set()  # the old upload lands after the delete; dropping it fails
    assert store.join(timeout=JOIN)
    assert failed == ["a.txt"]
    assert store.state("a.txt") == "done"
    assert remote.read("a.txt") == b"new bytes"
    assert store.read("a.txt") == b"new bytes"


@pytest.mark.parametrize("how", ["transfer", "reconcile"])
def test_a_fifo_in_place_of_a_transfer_lock_never_hangs(tmp_path: Path, how: str) -> None:
    store = make_store(tmp_path, transfer_delayed=True)
    store.save(b"a", name="a.txt")
    lock = tmp_path / "local" / ".transfers" / "locks" / file_name("a.txt")
    os.mkfifo(lock.with_suffix(".lock"))  # opening it to read waits for a writer
    if how == "transfer":
        action = threading.Thread(target=store.transfer, args=["a.txt"], daemon=True)
    else:
        action = threading.Thread(target=store.reconcile, args=[True], daemon=True)
    action.start()
    action.join(JOIN)
    assert not action.is_alive(), "it hangs on the FIFO"
    assert store.join(timeout=JOIN)
    assert store.state("a.txt") == "done"


def test_a_pass_stops_asking_an_executor_that_keeps_failing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broker that is down or frozen costs each submit its whole timeout: a pass over a
    backlog gives up after a few failures in a row, and the next pass queues everything."""
    store = make_store(tmp_path, transfer_delayed=True)
    keys = [store.save(b"x", name=f"f{i}.txt").key for i in range(20)]
    submit, tried = store.executor.submit, []

    def broker_down(job: object) -> None:
        tried.append(job)
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(store.executor, "submit", broker_down)
    assert store.reconcile(include_delayed=True) == []
    assert len(tried) == 3
    monkeypatch.setattr(store.executor, "submit", submit)
    assert sorted(store.reconcile(include_delayed=True)) == sorted(keys)
    assert store.join(timeout=JOIN)
    assert {store.state(key) for key in keys} == {"done"}
