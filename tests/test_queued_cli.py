"""``flask store transfer --pending``: the command-line reconciler."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

from flask_store import Store
from flask_store.stores.queued import QueuedStore
from tests.queued_remotes import FlakyStore

JOIN = 30


def make_app(tmp_path: Path, fail_times: int, **config: Any) -> tuple[Flask, QueuedStore]:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        STORE_PROVIDER="queued",
        STORE_QUEUED_LOCAL={"PROVIDER": "local", "PATH": str(tmp_path / "local")},
        STORE_QUEUED_REMOTE={"PROVIDER": FlakyStore, "FAIL_TIMES": fail_times},
        STORE_TRANSFER_RETRIES=0,
        STORE_TRANSFER_RETRY_DELAY=0,
        **config,
    )
    Store(app)
    store = Store.registry(app).resolve()
    assert isinstance(store, QueuedStore)
    return app, store


def test_transfer_pending_finishes_failed_and_delayed_files(tmp_path: Path) -> None:
    app, store = make_app(tmp_path, fail_times=2)
    store.save(b"a", name="a.txt")
    store.save(b"b", name="b.txt")
    assert store.join(JOIN)
    assert [store.state("a.txt"), store.state("b.txt")] == ["failed", "failed"]

    result = app.test_cli_runner().invoke(args=["store", "transfer", "--pending"])
    assert result.exit_code == 0, result.output
    assert "transferred 2, failed 0" in result.output
    assert store.remote.read("a.txt") == b"a"
    assert store.remote.read("b.txt") == b"b"

    again = app.test_cli_runner().invoke(args=["store", "transfer", "--pending"])
    assert "transferred 0, failed 0" in again.output


def test_transfer_pending_reports_files_that_still_fail(tmp_path: Path) -> None:
    app, store = make_app(tmp_path, fail_times=10**6, STORE_TRANSFER_DELAYED=True)
    store.save(b"a", name="a.txt")
    result = app.test_cli_runner().invoke(args=["store", "transfer", "--pending"])
    assert result.exit_code == 1
    assert "default/a.txt: injected: the remote store is down" in result.stderr
    assert "transferred 0, failed 1" in result.stdout
    assert store.state("a.txt") == "failed"
    assert (tmp_path / "local" / "a.txt").read_bytes() == b"a"


def test_transfer_usage_errors(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path, fail_times=0, STORE_STORES={"plain": {"PROVIDER": "memory"}})
    runner = app.test_cli_runner()
    missing_flag = runner.invoke(args=["store", "transfer"])
    assert missing_flag.exit_code == 2
    assert "--pending" in missing_flag.output
    not_queued = runner.invoke(args=["store", "transfer", "plain", "--pending"])
    assert not_queued.exit_code == 2
    assert "not a queued store" in not_queued.output
    unknown = runner.invoke(args=["store", "transfer", "nope", "--pending"])
    assert unknown.exit_code == 2
