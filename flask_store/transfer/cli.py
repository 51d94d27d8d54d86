"""Transfer commands: ``flask store transfer --pending`` and ``flask store worker``.

``transfer --pending`` is for operators: after an outage of the remote store, after a crash,
or for ``delayed`` mode. Transfers run one after another here (not in the app's executor),
with the store's retries: behind a progress bar on a terminal, a line per transferred file
elsewhere, then a summary. Exit code 0 when every file arrived, 1 when some failed (each
named on stderr), 2 for usage errors.

``worker`` runs the RQ jobs of the app's ``rq`` stores in this process, with the app loaded
once (RQ's default worker forks and loads the app again for every job), and RQ's scheduler,
which runs the retries. Run as many as you need, on every host that sees the local folder.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import click
from flask import current_app
from flask.cli import with_appcontext

from ..console import echo_error, progress, report_plain
from ..exceptions import StoreError
from ..registry import get_registry
from ..stores.queued import QueuedStore
from .jobs import preload_app
from .records import TransferRecord
from .rq_executor import RQExecutor

__all__ = ["transfer_command", "worker_command"]


@dataclass
class TransferSummary:
    """What a run of :func:`transfer_pending` achieved."""

    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def transfer_pending(
    store: QueuedStore,
    records: Iterable[TransferRecord],
    advance: Callable[[], None] = lambda: None,
) -> TransferSummary:
    """Transfer each of ``records`` now, calling ``advance`` after each (a progress bar's step).

    Failed and delayed records are reopened first, so each one gets its full retries.
    """
    summary = TransferSummary()
    for record in records:
        try:
            store.reopen(record.key)
            outcome = store.transfer_now(record.key)
        except StoreError as exc:
            echo_error(store.name, record.key, exc)
            summary.failed.append(record.key)
            continue
        finally:
            advance()
        if outcome == "failed":
            problem = store.records.get(record.key)
            echo_error(store.name, record.key, (problem and problem.error) or "failed")
            summary.failed.append(record.key)
        elif outcome == "done":
            summary.done.append(record.key)
            report_plain(f"transferred {record.key}")
    return summary


@click.command("transfer")
@click.argument("store", required=False)
@click.option("--pending", is_flag=True, help="Transfer every pending or failed file of STORE now.")
@with_appcontext
def transfer_command(store: str | None, pending: bool) -> None:
    """Move the files a queued STORE (default store if omitted) holds locally to its remote."""
    if not pending:
        raise click.UsageError("Say what to transfer: --pending (every pending or failed file).")
    try:
        target = get_registry(current_app).resolve(store)
    except StoreError as exc:
        raise click.UsageError(str(exc)) from None
    if not isinstance(target, QueuedStore):
        raise click.UsageError(
            f"The store {target.name!r} is a {type(target).__name__}, not a queued store; "
            "it has no transfers."
        )
    records = target.records.unsettled()
    with progress(len(records), "Transferring") as advance:
        summary = transfer_pending(target, records, advance)
    click.echo(f"transferred {len(summary.done)}, failed {len(summary.failed)}")
    if summary.failed:
        sys.exit(1)


@click.command("worker")
@click.argument("stores", nargs=-1)
@click.option("--burst", is_flag=True, help="Stop once the queues are empty.")
@click.option("--name", default=None, help="The worker's name in RQ (default: RQ's own).")
@with_appcontext
def worker_command(stores: tuple[str, ...], burst: bool, name: str | None) -> None:
    """Run the transfers of the app's rq STORES (default: all of them) in this process.

    The app is loaded once, jobs run one after another without forking, and RQ's scheduler
    runs here too (retries are scheduled jobs).
    """
    from redis import Redis
    from rq import SimpleWorker

    targets = _rq_stores(stores)
    urls = {store.config.value("RQ_REDIS_URL") for store in targets}
    if len(urls) > 1:
        raise click.UsageError(
            "These stores use different Redis servers; start one worker per server, naming "
            "its stores: " + ", ".join(sorted(store.name for store in targets))
        )
    for store in targets:
        app_path: str | None = store.config.value("RQ_APP")
        if app_path is not None:
            preload_app(app_path, current_app._get_current_object())  # type: ignore[attr-defined]
    queues = sorted({str(store.config.value("RQ_QUEUE")) for store in targets})
    worker = SimpleWorker(queues, connection=Redis.from_url(urls.pop()), name=name)
    click.echo(f"Running the transfers of {', '.join(s.name for s in targets)} from {queues}")
    worker.work(burst=burst, with_scheduler=True)


def _rq_stores(names: tuple[str, ...]) -> list[QueuedStore]:
    """The queued stores called ``names`` (all the app's ``rq`` ones when none is named)."""
    registry = get_registry(current_app)
    try:
        chosen = [registry.resolve(name) for name in names] or list(registry.stores.values())
    except StoreError as exc:
        raise click.UsageError(str(exc)) from None
    targets = [
        s for s in chosen if isinstance(s, QueuedStore) and isinstance(s.executor, RQExecutor)
    ]
    if not targets:
        raise click.UsageError(
            "No store here transfers through RQ (STORE_TRANSFER_EXECUTOR = 'rq'); Celery "
            "stores run in 'celery -A yourapp:celery worker -Q flask_store'."
        )
    if names and len(targets) < len(chosen):
        others = sorted(s.name for s in chosen if s not in targets)
        raise click.UsageError(f"Not stores with RQ transfers: {', '.join(others)}.")
    return targets
