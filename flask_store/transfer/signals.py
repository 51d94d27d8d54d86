"""Signals sent by queued stores (blinker, as Flask's own signals).

Connect a receiver to learn when a file reached the remote store or gave up trying::

    from flask_store.transfer.signals import transfer_failed

    @transfer_failed.connect
    def alert(store, key, error, **extra):
        log.error("upload of %s failed: %s", key, error)

The sender is the :class:`~flask_store.stores.queued.QueuedStore`. ``file_transferred`` and
``transfer_failed`` are sent from wherever the transfer runs: a worker thread, a greenlet, or
the RQ worker process (where receivers of the web process do not see them).

.. versionadded:: 0.1
"""

from __future__ import annotations

from blinker import Namespace

__all__ = ["file_saved", "file_transferred", "transfer_failed"]

_signals = Namespace()

#: The file is on local disk and its transfer is recorded (``key``, ``info``), before the
#: transfer is queued.
file_saved = _signals.signal("flask-store-file-saved")

#: The file is on the remote store, verified (``key``, ``info``: the remote's metadata).
file_transferred = _signals.signal("flask-store-file-transferred")

#: The transfer ran out of retries or met a conflict (``key``, ``error``, ``attempts``); the
#: local copy stays and the record says ``failed`` until a reconciler run succeeds.
transfer_failed = _signals.signal("flask-store-transfer-failed")
