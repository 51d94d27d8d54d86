"""Which settled transfer records ``flask store prune`` may remove, and removing them.

A queued store keeps a ``done`` record for every file it transferred
(:mod:`~flask_store.transfer.records`). That record is not only history: it says "serve this
key from the remote", and it is what keeps the key reserved once the local copy is gone
(``STORE_TRANSFER_DELETE_LOCAL``). A save that found the key free would claim it, and its
transfer would meet the remote's file under the same name. So a record may go only when it
no longer stands for any file:

- it is ``done`` and was last changed more than ``STORE_TRANSFER_RECORDS_KEEP`` seconds ago;
- neither the local nor the remote store holds its key any more (the file was deleted there
  by other means: a bucket lifecycle rule, a cleanup script);
- it is still exactly the current record of its key (a new save meanwhile keeps its own).

The check and the removal run under the key's transfer lock, so no transfer of the key runs
in between. Records of files that still exist stay however old they are: they are the
store's index of which names are taken.

.. versionadded:: 0.2
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from .stores.queued import QueuedStore
from .transfer.records import TransferRecord

__all__ = ["old_done_records", "prune_record"]


def old_done_records(store: QueuedStore, now: float) -> list[TransferRecord]:
    """``store``'s ``done`` records older than its ``TRANSFER_RECORDS_KEEP`` at ``now``
    (Unix seconds): the candidates for :func:`prune_record`.

    A keep reaching back before the first date a record can carry (``float("inf")``, or
    ``10**12`` seconds, for "keep them for ever") leaves no candidate: it used to raise
    ``OverflowError`` or ``ValueError`` out of ``flask store prune``.
    """
    keep: float = store.config.value("TRANSFER_RECORDS_KEEP")
    try:
        cutoff = datetime.fromtimestamp(now, timezone.utc) - timedelta(seconds=keep)
    except OverflowError:  # further back than any date: no record is that old
        return []
    return list(store.records.done_before(cutoff))


def prune_record(store: QueuedStore, record: TransferRecord) -> bool:
    """Remove ``record`` if no file is stored under its key on either side any more.

    :returns: whether it was removed (``False``: a store still holds the file, or the key
        was saved again meanwhile).
    :raises StoreError: when a store cannot be asked (the record stays).
    """
    with store.records.transferring(record.key):
        if store.local.exists(record.key) or store.remote.exists(record.key):
            return False
        return store.records.discard(record)
