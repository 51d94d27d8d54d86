"""A broker outage never fails an upload (issue 14, point 1).

Once a queued store has the file and its pending record on disk, handing the job to Redis is
bounded by ``RQ_ENQUEUE_TIMEOUT`` and a failure is logged, not raised: the client gets its
answer and the reconciler queues the transfer when the broker is back. Redis is a real
``redis-server``, frozen with SIGSTOP as a hung broker would be.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from rq import Queue

from flask_store.stores.queued import QueuedStore
from flask_store.transfer import executors, steps
from tests.redis_server import running_redis

#: A safety net for a save that would hang on the frozen broker; no test measures time.
HANG_NET = 60


@contextmanager
def frozen(server: Any) -> Iterator[None]:
    os.kill(server.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.pid, signal.SIGCONT)


def rq_store(tmp_path: Path, url: str) -> QueuedStore:
    return QueuedStore(
        queued_local={"PROVIDER": "local", "PATH": str(tmp_path / "local")},
        queued_remote={"PROVIDER": "memory"},
        transfer_executor="rq",
        rq_redis_url=url,
        rq_queue="outage",
        rq_enqueue_timeout=0.5,
    )


def save_in_thread(store: QueuedStore, name: str) -> dict[str, Any]:
    outcome: dict[str, Any] = {}

    def save() -> None:
        try:
            outcome["key"] = store.save(b"payload", name=name).key
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=save, daemon=True)
    thread.start()
    thread.join(HANG_NET)
    assert not thread.is_alive(), "the save hung on the frozen broker"
    return outcome


def test_a_frozen_broker_never_fails_a_save(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "redis"
    folder.mkdir()
    with running_redis(folder) as (url, server):
        store = rq_store(tmp_path, url)
        with caplog.at_level(logging.WARNING, "flask_store"), frozen(server):
            outcome = save_in_thread(store, "during-outage.txt")
        assert "error" not in outcome, outcome.get("error")
        key = outcome["key"]
        assert store.read(key) == b"payload"
        record = store.records.get(key)
        assert record is not None and record.state == "pending"
        assert f"Could not queue the transfer of {key!r}" in caplog.text

        # The broker is back: the reconciler queues what the save could not.
        assert store.reconcile() == [key]
        assert Queue("outage", connection=Redis.from_url(url)).count >= 1


def test_an_unreachable_broker_never_fails_a_save(tmp_path: Path) -> None:
    folder = tmp_path / "redis"
    folder.mkdir()
    with running_redis(folder) as (url, _server):
        pass  # started and stopped: nothing listens on its port now
    store = rq_store(tmp_path, url)
    outcome = save_in_thread(store, "no-broker.txt")
    assert "error" not in outcome, outcome.get("error")
    assert store.records.get(outcome["key"]) is not None


def test_the_rq_executor_forgets_settled_keys_without_a_join(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A web process never calls join(): the keys it remembers for join() must not grow
    with every save, only with the transfers still unsettled."""
    monkeypatch.setattr(steps, "SUBMITTED_TRIM", 4)
    folder = tmp_path / "redis"
    folder.mkdir()
    with running_redis(folder) as (url, _server):
        store = rq_store(tmp_path, url)
        executor = store.executor
        assert isinstance(executor, executors.RQExecutor)
        for number in range(20):
            key = store.save(b"payload", name=f"{number}.txt").key
            assert store.transfer_now(key) == "done"  # what a worker would do
        unsettled = store.save(b"payload", name="waiting.txt").key
        assert len(executor.submitted()) <= 4 + 1
        assert unsettled in executor.submitted()
        assert executor.join(timeout=0) is False  # waiting.txt still counts
