"""Transfers as jobs: one job per record version, retries that hold no worker, a periodic
reconciler that runs in one process at a time, and no debris left by killed writes.

(Issue 13 §1: retries without a sleeping worker, ``FileWrapper.transfer()``/``wait()``;
issue 14 points 2, 3 and 5.) Redis is a real ``redis-server``; RQ queues are inspected
directly.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from redis import Redis
from rq import Queue

from flask_store import Store
from flask_store.exceptions import (
    NotConfiguredError,
    StoreUnavailableError,
    UnsupportedOperationError,
)
from flask_store.meta import FileInfo, FileMeta
from flask_store.stores.memory import MemoryStore
from flask_store.stores.queued import QueuedStore
from flask_store.transfer import records
from flask_store.transfer.jobs import run_rq_transfer
from flask_store.transfer.records import TransferJob
from tests.redis_server import free_port, redis_url
from tests.waiting import wait_until

__all__ = ["redis_url"]

#: A safety net for waits that end as soon as the work is done; no test measures time.
SAFETY_NET = 60.0


class RefusingStore(MemoryStore):
    """A remote that refuses files whose name starts with ``refused`` (a remote that is down
    for some keys), and takes the others."""

    def _write(
        self, chunks: Iterator[bytes], keys: Iterator[str], meta: FileMeta, overwrite: bool
    ) -> FileInfo:
        if meta.filename.startswith("refused"):
            raise StoreUnavailableError("injected: the remote refuses this file")
        return super()._write(chunks, keys, meta, overwrite)


class OnceRefusingStore(MemoryStore):
    """A remote that refuses the first write of each file, then takes it."""

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.refused: set[str] = set()

    def _write(
        self, chunks: Iterator[bytes], keys: Iterator[str], meta: FileMeta, overwrite: bool
    ) -> FileInfo:
        if meta.filename not in self.refused:
            self.refused.add(meta.filename)
            raise StoreUnavailableError("injected: the remote is down this once")
        return super()._write(chunks, keys, meta, overwrite)


def queued(tmp_path: Path, **settings: Any) -> QueuedStore:
    """A queued store on ``tmp_path/local`` (records beside it) -> ``tmp_path/remote``."""
    values: dict[str, Any] = {
        "queued_local": {"PROVIDER": "local", "PATH": str(tmp_path / "local")},
        "queued_remote": {"PROVIDER": "local", "PATH": str(tmp_path / "remote")},
    }
    values.update(settings)
    return QueuedStore(**values)


def rq_store(tmp_path: Path, url: str, queue: str, **settings: Any) -> QueuedStore:
    return queued(tmp_path, transfer_executor="rq", rq_redis_url=url, rq_queue=queue, **settings)


# -- retries hold no worker ------------------------------------------------------------------


def test_a_waiting_retry_holds_no_worker(tmp_path: Path) -> None:
    """With one worker thread and an hour of back-off, the next file is not held up: the
    retry waits on a timer, not in the worker."""
    store = queued(
        tmp_path,
        queued_remote={"PROVIDER": RefusingStore},
        transfer_workers=1,
        transfer_retries=1,
        transfer_retry_delay=3600,
    )
    store.save(b"refused", name="refused.txt")
    store.save(b"fine", name="fine.txt")
    assert store.wait("fine.txt", timeout=SAFETY_NET) == "done"
    waiting = store.records.get("refused.txt")
    assert waiting is not None
    assert (waiting.state, waiting.attempts) == ("pending", 1)  # its retry is an hour away
    assert store.executor.is_live(TransferJob.of(waiting))  # so no reconciler queues it


def test_a_retry_runs_after_its_back_off(tmp_path: Path) -> None:
    store = queued(
        tmp_path,
        queued_remote={"PROVIDER": OnceRefusingStore},
        transfer_workers=1,
        transfer_retry_delay=0.01,
    )
    key = store.save(b"payload", name="a.txt").key
    assert store.join(timeout=SAFETY_NET)
    record = store.records.get(key)
    assert record is not None
    assert (record.state, record.attempts) == ("done", 1)
    assert store.remote.read(key) == b"payload"


# -- one job per record version ----------------------------------------------------------------


def test_reconcilers_never_queue_a_version_twice(tmp_path: Path, redis_url: str) -> None:
    web = rq_store(tmp_path, redis_url, "dedupe")
    jobs = Queue("dedupe", connection=Redis.from_url(redis_url))
    key = web.save(b"payload", name="a.txt").key
    assert jobs.count == 1

    # Another web process starting, the CLI, an explicit transfer(): its job waits in Redis.
    another = rq_store(tmp_path, redis_url, "dedupe")
    assert another.reconcile() == []
    assert web.reconcile() == []
    web.transfer(key)
    assert jobs.count == 1

    # A lost job (Redis restarted without its data) is queued again, once.
    jobs.empty()
    assert another.reconcile() == [key]
    assert web.reconcile() == []
    assert jobs.count == 1
    record = web.records.get(key)
    assert record is not None
    [job] = jobs.get_jobs()
    assert job.id == TransferJob.of(record).id(web.name)


def test_a_job_taken_by_a_worker_killed_at_once_is_queued_again(
    tmp_path: Path, redis_url: str
) -> None:
    """RQ moves a job it dequeues to an intermediate list and marks it started a moment
    later; a worker SIGKILLed in between leaves the job "queued" although no queue holds
    it (RQ's own clean-up looks at it ten minutes later). The reconciler must not trust
    that status: found by tests/test_deployment.py."""
    web = rq_store(tmp_path, redis_url, "taken")
    jobs = Queue("taken", connection=Redis.from_url(redis_url))
    key = web.save(b"payload", name="a.txt").key
    taken = Queue.dequeue_any([jobs], timeout=None, connection=jobs.connection)
    assert taken is not None and taken[0].get_status() == "queued"
    assert jobs.count == 0

    assert web.reconcile() == [key]
    assert jobs.count == 1


def test_a_handled_version_exits_without_loading_anything(tmp_path: Path) -> None:
    """The job of a version that was handled reads one record and returns: the app it
    names does not even exist, and is never looked for."""
    store = queued(tmp_path, transfer_delayed=True)
    key = store.save(b"payload", name="a.txt").key
    first = store.records.get(key)
    assert first is not None
    assert store.transfer_now(key) == "done"
    spec = {"app": "no_such_module:create_app()", "store": "default", "records": store.records.root}
    assert run_rq_transfer(spec, key, first.created, first.attempts) == "skipped"

    # A version still to run does look for its app (so the spec above would be used).
    other = store.save(b"other", name="b.txt").key
    store.reopen(other)
    pending = store.records.get(other)
    assert pending is not None
    with pytest.raises(NotConfiguredError, match="cannot load the app"):
        run_rq_transfer(spec, other, pending.created, pending.attempts)


def test_a_job_of_an_older_save_is_skipped(tmp_path: Path) -> None:
    store = queued(tmp_path, transfer_delayed=True, on_conflict="overwrite")
    key = store.save(b"one", name="a.txt").key
    old = store.records.get(key)
    assert old is not None
    store.save(b"two", name="a.txt")
    store.transfer(key)
    assert store.join(timeout=SAFETY_NET)
    assert store.run_job(TransferJob.of(old)) == "skipped"
    assert store.remote.read(key) == b"two"


# -- the periodic reconciler -------------------------------------------------------------------


def _pending_of_a_dead_process(tmp_path: Path, name: str) -> str:
    """A pending record whose job nobody holds: its save's broker was unreachable."""
    port = free_port()  # nothing listens there
    dead = rq_store(tmp_path, f"redis://127.0.0.1:{port}/0", "nowhere", rq_enqueue_timeout=0.2)
    key = dead.save(b"payload", name=name).key
    record = dead.records.get(key)
    assert record is not None and record.state == "pending"
    return key


def test_the_periodic_pass_queues_stalled_records_after_the_grace(tmp_path: Path) -> None:
    key = _pending_of_a_dead_process(tmp_path, "stalled.txt")
    patient = queued(tmp_path, transfer_reconcile_interval=0.01, transfer_reconcile_grace=3600)
    assert patient.reconcile_if_due() == []  # too young: maybe still in its first hands
    eager = queued(tmp_path, transfer_reconcile_interval=0.01, transfer_reconcile_grace=0)
    time.sleep(0.02)  # past the interval: the lease lets the next pass run
    assert eager.reconcile_if_due() == [key]
    assert eager.join(timeout=SAFETY_NET)
    assert eager.state(key) == "done"


def test_one_periodic_pass_per_interval_across_processes(tmp_path: Path) -> None:
    first = queued(tmp_path, transfer_reconcile_interval=3600)
    second = queued(tmp_path, transfer_reconcile_interval=3600)
    assert first.reconcile_if_due() == []  # ran, found nothing
    assert second.reconcile_if_due() is None  # not due: the first ran it a moment ago


def test_a_held_lease_keeps_other_processes_out(tmp_path: Path) -> None:
    store = queued(tmp_path, transfer_reconcile_interval=0.01)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LEASE, store.records.root],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        time.sleep(0.02)  # the pass is due: only the lease keeps this process out
        assert store.reconcile_if_due() is None
    finally:
        holder.communicate("", timeout=SAFETY_NET)  # end of input: it lets go and exits
    time.sleep(0.02)
    assert store.reconcile_if_due() == []


def test_a_forked_child_does_not_keep_the_lease(tmp_path: Path) -> None:
    """A worker forked during a pass (gunicorn, Celery) must not hold the lease for life."""
    store = queued(tmp_path, transfer_reconcile_interval=0.01)
    with store.records.lease("reconcile", every=0) as mine:
        assert mine
        child = os.fork()
        if child == 0:  # the child lives on while the parent's pass ends
            time.sleep(2)
            os._exit(0)
    try:
        time.sleep(0.02)
        assert store.reconcile_if_due() == []  # the parent's pass ended: the lease is free
    finally:
        os.waitpid(child, 0)


#: A process that takes the reconciler's lease of the records folder argv[1] and holds it
#: until its standard input ends.
HOLD_LEASE = """
import sys
from flask_store.transfer.records import RecordBook
with RecordBook(sys.argv[1]).lease("reconcile", every=0) as mine:
    print("held" if mine else "refused", flush=True)
    sys.stdin.read()
"""


def test_the_periodic_passes_leave_the_apps_random_numbers_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reconciler's jitter has its own generator: an app (or a test framework) that
    seeds the module ``random`` gets the same numbers however many passes run meanwhile."""
    store = queued(tmp_path, transfer_reconcile_interval=0.01)
    passes: list[None] = []
    due = store.reconcile_if_due

    def counted(**options: Any) -> list[str] | None:
        passes.append(None)
        return due(**options)

    monkeypatch.setattr(store, "reconcile_if_due", counted)
    random.seed(16)
    expected = random.getstate()
    store.start()  # as init_app does
    try:
        wait_until(lambda: len(passes) >= 3, "three periodic passes", SAFETY_NET)
    finally:
        assert store.stop(timeout=SAFETY_NET)
    assert random.getstate() == expected


def test_a_running_app_reconciles_periodically_without_anyone_asking(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        STORE_PROVIDER="queued",
        STORE_QUEUED_LOCAL={"PROVIDER": "local", "PATH": str(tmp_path / "local")},
        STORE_QUEUED_REMOTE={"PROVIDER": "local", "PATH": str(tmp_path / "remote")},
        STORE_TRANSFER_RECONCILE_INTERVAL=0.05,
        STORE_TRANSFER_RECONCILE_GRACE=0,
    )
    Store(app)
    store = Store.registry(app).resolve()
    assert isinstance(store, QueuedStore)
    assert store.join(timeout=SAFETY_NET)  # the start-up pass is over
    try:
        key = _pending_of_a_dead_process(tmp_path, "later.txt")  # after start-up
        assert store.wait(key, timeout=SAFETY_NET) == "done", "no periodic pass ran"
    finally:
        assert store.stop(timeout=SAFETY_NET)
    assert (tmp_path / "remote" / key).read_bytes() == b"payload"


def _celery_app(tmp_path: Path, url: str, name: str, **settings: Any) -> tuple[Flask, QueuedStore]:
    """A web process of a Celery deployment: its own app on the shared folders and broker."""
    from celery import Celery

    app = Flask(name, instance_path=str(tmp_path / "instance"))
    app.config.update(
        STORE_PROVIDER="queued",
        STORE_QUEUED_LOCAL={"PROVIDER": "local", "PATH": str(tmp_path / "local")},
        STORE_QUEUED_REMOTE={"PROVIDER": "local", "PATH": str(tmp_path / "remote")},
        STORE_TRANSFER_EXECUTOR="celery",
        **settings,
    )
    store = Store(app)
    store.init_celery(Celery(name, broker=url))
    queued = Store.registry(app).resolve()
    assert isinstance(queued, QueuedStore)
    return app, queued


def test_a_process_starting_does_not_send_every_queued_celery_task_again(
    tmp_path: Path, redis_url: str
) -> None:
    """Celery cannot tell a queued task from a lost one: the start-up pass of each process
    (a gunicorn worker replaced, a Celery worker started) sent the whole backlog again,
    600 duplicates for 1,000 files in tests/test_deployment.py. Records younger than
    TRANSFER_RECONCILE_GRACE are left to the tasks already sent, as in the periodic pass."""
    broker = Redis.from_url(redis_url)
    app, first = _celery_app(tmp_path, redis_url, "first")
    with app.app_context():
        for name in ("a.txt", "b.txt", "c.txt"):
            first.save(b"payload", name=name)
    # The outbox thread hands them to Redis.
    wait_until(lambda: broker.llen("flask_store") >= 3, "the tasks in the broker", SAFETY_NET)
    try:
        _, second = _celery_app(tmp_path, redis_url, "second")  # another process starts
        try:
            assert second.join(timeout=SAFETY_NET / 4), "the start-up pass sent tasks again"
        finally:
            assert second.stop(timeout=SAFETY_NET)
        assert broker.llen("flask_store") == 3
    finally:
        assert first.stop(timeout=SAFETY_NET)
        broker.delete("flask_store")


def test_processes_starting_together_send_an_old_celery_task_once(
    tmp_path: Path, redis_url: str
) -> None:
    """A record older than the grace (its task lost, or never sent) was sent again by the
    start-up pass of every process that started: a deploy of 4 web workers and 2 Celery
    workers sent the backlog 6 times. Without a queue to ask, the start-up pass goes
    through the periodic pass's lease: one process per interval sends it."""
    broker = Redis.from_url(redis_url)
    key = _pending_of_a_dead_process(tmp_path, "old.txt")
    _, first = _celery_app(tmp_path, redis_url, "first", STORE_TRANSFER_RECONCILE_GRACE=0)
    try:
        # The first process's start-up pass sends it.
        wait_until(lambda: broker.llen("flask_store") >= 1, f"{key} sent", SAFETY_NET)
        _, second = _celery_app(tmp_path, redis_url, "second", STORE_TRANSFER_RECONCILE_GRACE=0)
        try:
            assert second.join(timeout=SAFETY_NET / 4), "the second start-up pass sent it again"
        finally:
            assert second.stop(timeout=SAFETY_NET)
        assert broker.llen("flask_store") == 1
    finally:
        assert first.stop(timeout=SAFETY_NET)
        broker.delete("flask_store")


def test_a_backlog_behind_stopped_celery_workers_is_sent_once_per_grace_period(
    tmp_path: Path, redis_url: str
) -> None:
    """With no worker running, each periodic pass found the same old records and sent them
    all again: a backlog grew by itself once per interval. A record is touched when it is
    sent, so it waits a whole grace period before the next copy."""
    broker = Redis.from_url(redis_url)
    key = _pending_of_a_dead_process(tmp_path, "old.txt")
    store = queued(tmp_path, transfer_reconcile_interval=0.01, transfer_reconcile_grace=3600)
    record = store.records.get(key)
    assert record is not None
    two_hours_ago = datetime.fromtimestamp(time.time() - 7200, timezone.utc).isoformat()
    assert store.records.update(record, dataclasses.replace(record, updated=two_hours_ago))
    _, web = _celery_app(
        tmp_path,
        redis_url,
        "web",
        STORE_TRANSFER_RECONCILE_INTERVAL=0.01,
        STORE_TRANSFER_RECONCILE_GRACE=3600,
    )
    try:
        # Its start-up pass sends the old record.
        wait_until(lambda: broker.llen("flask_store") >= 1, f"{key} sent", SAFETY_NET)
        for _ in range(3):  # later passes: the record was touched when sent
            time.sleep(0.02)
            assert web.reconcile_if_due() in ([], None)
        assert broker.llen("flask_store") == 1
    finally:
        assert web.stop(timeout=SAFETY_NET)
        broker.delete("flask_store")


# -- debris of killed writes -------------------------------------------------------------------


def _aged(path: Path, data: bytes, seconds: float) -> Path:
    path.write_bytes(data)
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_debris_of_killed_writes_is_swept(tmp_path: Path) -> None:
    store = queued(tmp_path)
    tmp = Path(store.records.root) / "tmp"
    empty_intent = _aged(tmp / "0f.intent", b"", 3600)  # killed before its first line
    half_record = _aged(tmp / ".record-x1", b'{"key": "a.t', 3600)
    young = _aged(tmp / "1f.intent", b"", 0)  # its writer may be alive and slow
    live = _aged(tmp / "2f.intent", b'{"overwrite": false, "queued": true}\n', 3600)
    fd = os.open(live, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a live save holds its intent
        removed = store.records.sweep_debris(older_than=60)
        assert sorted(removed) == sorted([str(empty_intent), str(half_record)])
        assert young.exists() and live.exists()
    finally:
        os.close(fd)


#: A transfer killed (SIGKILL) between recording "done" and removing the local copy: the
#: file_transferred signal is sent right between the two.
KILLED_AFTER_DONE = """
import os, signal, sys
from flask_store.stores.queued import QueuedStore
from flask_store.transfer.signals import file_transferred

local, remote = sys.argv[1:]
store = QueuedStore(
    queued_local={"PROVIDER": "local", "PATH": local},
    queued_remote={"PROVIDER": "local", "PATH": remote},
    transfer_delayed=True,
    transfer_delete_local=True,
)
key = store.save(b"payload", name="a.txt").key
file_transferred.connect(lambda *_, **__: os.kill(os.getpid(), signal.SIGKILL), weak=False)
store.transfer_now(key)
"""


@pytest.mark.parametrize("clear_up", ["reconcile", "clean"])
def test_a_transfer_killed_before_removing_the_local_copy_is_finished(
    tmp_path: Path, clear_up: str
) -> None:
    """Found by tests/test_deployment.py: a Celery worker SIGKILLed right after a record
    became done left the local copy of a TRANSFER_DELETE_LOCAL store for ever (the
    reconciler looks at open records only). Its transfer lock file outlives it: the
    reconciler, and ``flask store clean`` (remove_stale_temp_files), finish what that
    transfer left."""
    local, remote = tmp_path / "local", tmp_path / "remote"
    code = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_DONE, str(local), str(remote)],
        timeout=SAFETY_NET,
        check=False,
    ).returncode
    assert code == -9
    store = queued(tmp_path, transfer_delayed=True, transfer_delete_local=True)
    assert store.state("a.txt") == "done"
    assert (local / "a.txt").exists()  # what the killed transfer left

    if clear_up == "reconcile":
        assert store.reconcile() == []
    else:
        store.remove_stale_temp_files(older_than=0)
    assert not (local / "a.txt").exists()
    assert (remote / "a.txt").read_bytes() == b"payload"
    assert [p.name for p in (Path(store.records.root) / "locks").iterdir()] == []


def test_a_queued_store_starting_sweeps_its_local_side_like_a_local_store(
    tmp_path: Path,
) -> None:
    """A LocalStore removes what killed uploads left when the app starts; a queued store's
    local side did not (only ``flask store clean`` did), so a write killed mid-way left a
    hidden file in a TRANSFER_DELETE_LOCAL folder for good."""
    (tmp_path / "local").mkdir()
    left = _aged(tmp_path / "local" / ".upload-killed", b"half", 2 * 24 * 3600)
    fresh = _aged(tmp_path / "local" / ".upload-writing", b"half", 0)  # a live write's
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        STORE_PROVIDER="queued",
        STORE_QUEUED_LOCAL={"PROVIDER": "local", "PATH": str(tmp_path / "local")},
        STORE_QUEUED_REMOTE={"PROVIDER": "memory"},
    )
    Store(app)
    store = Store.registry(app).resolve()
    assert isinstance(store, QueuedStore)
    try:
        wait_until(lambda: not left.exists(), "the start-up sweep", SAFETY_NET)
        assert fresh.exists()
    finally:
        assert store.stop(timeout=SAFETY_NET)


def test_flask_store_clean_works_on_a_queued_store(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        STORE_PROVIDER="queued",
        STORE_QUEUED_LOCAL={"PROVIDER": "local", "PATH": str(tmp_path / "local")},
        STORE_QUEUED_REMOTE={"PROVIDER": "memory"},
    )
    Store(app)
    store = Store.registry(app).resolve()
    assert isinstance(store, QueuedStore)
    assert store.join(timeout=SAFETY_NET)  # the start-up pass (which sweeps too) is over
    upload = _aged(tmp_path / "local" / ".upload-left", b"half", 3600)
    debris = _aged(Path(store.records.root) / "tmp" / "3f.intent", b"", 3600)
    result = app.test_cli_runner().invoke(args=["store", "clean", "--older-than", "60"])
    assert result.exit_code == 0, result.output
    assert f"removed {upload}" in result.output
    assert f"removed {debris}" in result.output
    assert not upload.exists() and not debris.exists()


# -- FileWrapper.transfer() and wait() -----------------------------------------------------------


def test_a_delayed_file_transfers_when_its_wrapper_asks(tmp_path: Path) -> None:
    store = queued(tmp_path, transfer_delayed=True)
    wrapper = store.save(b"payload", name="a.txt")
    assert wrapper.wait(timeout=0) == "pending"
    wrapper.transfer()
    assert wrapper.wait(timeout=SAFETY_NET) == "done"
    assert (tmp_path / "remote" / "a.txt").read_bytes() == b"payload"


def test_a_store_that_keeps_its_files_has_nothing_to_transfer(tmp_path: Path) -> None:
    wrapper = MemoryStore().save(b"payload", name="a.txt")
    assert wrapper.wait(timeout=0) == "done"
    with pytest.raises(UnsupportedOperationError, match="only a queued store"):
        wrapper.transfer()


def test_a_system_without_posix_locks_is_told_so_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records rely on flock and lockf; on Windows the store refuses to start, clearly."""
    monkeypatch.setattr(records, "fcntl", None)
    with pytest.raises(NotConfiguredError, match="POSIX file locks"):
        queued(tmp_path)


@pytest.mark.parametrize(
    "written", [b"", b"nan", b"inf", b"-inf", b"1e400", b"\xff\xfe", b"9" * 80]
)
def test_a_damaged_lease_file_never_stops_the_periodic_pass(tmp_path: Path, written: bytes) -> None:
    """The lease file holds the last pass's time; whatever a crash or a person left there
    must not keep the pass from running (nor crash it): it runs and writes a good time."""
    store = queued(tmp_path, transfer_reconcile_interval=3600)
    lease = Path(store.records.root) / "locks" / "reconcile.lease"
    lease.write_bytes(written)
    assert store.reconcile_if_due() == []
    assert float(lease.read_text()) <= time.time()
    assert store.reconcile_if_due() is None  # and the next pass waits for its interval
