"""Deletes a store owes: kept on disk when they fail, retried by ``flask store prune``.

A file on a database row is deleted only once the transaction that replaced or deleted the
row has committed (:mod:`flask_store.sqla`); a file saved for a row whose transaction rolled
back is deleted then. Either delete runs after the database has spoken, so it must never
raise into the app: when the store cannot do it (an S3 outage, a full disk), the file is
owed. This module writes what is owed into a small journal, one JSON file per file, and
settles it later (:func:`retry_owed_deletes`, run by ``flask store prune``).

The journal of a store lives in ``<instance folder>/flask_store_deletes/<store name>/``, or,
for a store built outside a Flask app, in the hidden ``.deletes`` folder of a local store's
own folder (no key can name it). A store with neither (an S3 store built in a script) has no
journal: a failed delete there is only logged.

Every entry keeps the file's ETag, and the retry deletes only that version
(``delete(key, if_etag=...)``), so a file saved again under the same key since is never
taken in its place.

This module does not import SQLAlchemy: the CLI imports it.

.. versionadded:: 0.2
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

from .exceptions import FileNotFoundInStoreError, StoreError
from .stores.base import BaseStore

__all__ = [
    "DeleteJournal",
    "OwedDelete",
    "delete_or_owe",
    "journal_for",
    "retry_owed_deletes",
]

log = logging.getLogger("flask_store")

#: The folder below the app's instance folder holding each store's journal.
INSTANCE_FOLDER = "flask_store_deletes"
#: The hidden folder of a local store that holds its journal when there is no app.
HIDDEN_FOLDER = ".deletes"


@dataclass(frozen=True)
class OwedDelete:
    """One file a store still has to delete.

    :param key: the file's key in the store.
    :param etag: the version to delete (``None``: whatever the key holds).
    :param reason: why it was not deleted the first time (for the log and the CLI).
    :param since: when it was first owed (Unix seconds).
    """

    key: str
    etag: str | None
    reason: str = ""
    since: float = 0.0


class DeleteJournal:
    """The deletes one store owes, one JSON file each in ``folder``.

    Entries are written atomically (a temporary file renamed into place), so a crash never
    leaves half an entry; an entry that cannot be read is skipped and logged, never deleted.
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def _path(self, key: str, etag: str | None) -> str:
        # One entry per version: owing the same delete twice overwrites the same file.
        digest = hashlib.sha256(f"{key}\0{etag or ''}".encode()).hexdigest()[:40]
        return os.path.join(self.folder, f"{digest}.json")

    def record(self, owed: OwedDelete) -> None:
        """Remember ``owed`` until :meth:`settle` is called for it.

        :raises OSError: when the entry cannot be written.
        """
        os.makedirs(self.folder, exist_ok=True)
        body = json.dumps(
            {"key": owed.key, "etag": owed.etag, "reason": owed.reason, "since": owed.since}
        ).encode()
        fd, temporary = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(body)
            os.replace(temporary, self._path(owed.key, owed.etag))
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise

    def entries(self) -> Iterator[OwedDelete]:
        """Every delete still owed, oldest first."""
        try:
            names = sorted(os.listdir(self.folder))
        except FileNotFoundError:
            return
        found = []
        for name in names:
            if name.startswith(".") or not name.endswith(".json"):
                continue
            owed = self._read(os.path.join(self.folder, name))
            if owed is not None:
                found.append(owed)
        yield from sorted(found, key=lambda entry: entry.since)

    def _read(self, path: str) -> OwedDelete | None:
        try:
            with open(path, "rb") as entry:
                data = json.loads(entry.read())
            key, etag = data["key"], data["etag"]
            if not isinstance(key, str) or not (etag is None or isinstance(etag, str)):
                raise TypeError("key and etag must be strings")
            return OwedDelete(key, etag, str(data.get("reason", "")), float(data["since"]))
        except FileNotFoundError:  # settled meanwhile by another prune
            return None
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.error(
                "Skipping the unreadable owed-delete entry %s: %s", os.path.basename(path), exc
            )
            return None

    def settle(self, owed: OwedDelete) -> None:
        """Forget ``owed``: the file is gone."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(owed.key, owed.etag))


def journal_for(store: BaseStore) -> DeleteJournal | None:
    """Where ``store`` keeps the deletes it owes, or ``None`` when it has no place on disk."""
    instance_path = store.config.instance_path
    if instance_path:
        return DeleteJournal(os.path.join(instance_path, INSTANCE_FOLDER, store.name))
    folder = store.local_folder()
    if folder:
        return DeleteJournal(os.path.join(folder, HIDDEN_FOLDER))
    return None


def delete_or_owe(store: BaseStore, key: str, etag: str | None, why: str) -> bool:
    """Delete version ``etag`` of ``key``; never raise: a failure is logged and owed.

    :param why: what the delete is for, in the log (``"replaced on a committed row"``).
    :returns: whether the store no longer holds that version (deleted now, or already gone).
    """
    try:
        store.delete(key, if_etag=etag)
    except FileNotFoundInStoreError:
        return True
    except Exception as exc:  # after a commit nothing may reach the app
        owe(store, OwedDelete(key, etag, f"{type(exc).__name__}: {exc}", time.time()), why)
        return False
    return True


def owe(store: BaseStore, owed: OwedDelete, why: str) -> None:
    """Log that ``store`` could not delete ``owed.key`` and keep it in the store's journal."""
    journal = journal_for(store)
    where = "; `flask store prune` will retry it" if journal else "; it stays in the store"
    log.error("Could not delete %s/%s (%s): %s%s", store.name, owed.key, why, owed.reason, where)
    if journal is None:
        return
    try:
        journal.record(owed)
    except OSError as exc:
        log.error("Could not record the owed delete of %s/%s: %s", store.name, owed.key, exc)


def retry_owed_deletes(store: BaseStore) -> tuple[list[str], list[tuple[str, str]]]:
    """Try again every delete ``store`` owes.

    :returns: the keys now gone (deleted, or gone already, or saved again meanwhile: that
        newer file is kept), and ``(key, error)`` for each delete that failed again (its
        entry stays).
    """
    journal = journal_for(store)
    done: list[str] = []
    failed: list[tuple[str, str]] = []
    if journal is None:
        return done, failed
    for owed in journal.entries():
        try:
            store.delete(owed.key, if_etag=owed.etag)
        except FileNotFoundInStoreError:
            pass
        except (StoreError, OSError) as exc:
            failed.append((owed.key, f"{type(exc).__name__}: {exc}"))
            continue
        journal.settle(owed)
        done.append(owed.key)
    return done, failed
