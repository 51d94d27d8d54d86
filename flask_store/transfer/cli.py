"""``flask store transfer --pending``: finish every unfinished transfer now, in this process.

For operators: after an outage of the remote store, after a crash, or for ``delayed`` mode.
Transfers run one after another here (not in the app's executor), with the store's retries:
behind a progress bar on a terminal, a line per transferred file elsewhere, then a summary.
Exit code 0 when every file arrived, 1 when some failed (each named on stderr), 2 for usage
errors.
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
from .records import TransferRecord

__all__ = ["transfer_command"]


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
