"""Background transfers from a local store to a remote one that never lose a file.

:class:`~flask_store.stores.queued.QueuedStore` is the store built on them;
``S3GeventStore`` is the same store with S3 as the remote and greenlets as the executor. See
``docs/queued.rst``. ``flask_store.transfer.QueuedStore`` still works, with a warning.
"""

import importlib
import warnings
from typing import Any

from .records import RecordBook, TransferRecord
from .signals import file_saved, file_transferred, transfer_failed

__all__ = [
    "RecordBook",
    "TransferRecord",
    "file_saved",
    "file_transferred",
    "transfer_failed",
]


def __getattr__(name: str) -> Any:
    if name == "QueuedStore":
        # Looked up when asked for: flask_store.stores.queued itself imports this package.
        queued = importlib.import_module("flask_store.stores.queued")
        warnings.warn(
            "flask_store.transfer.QueuedStore is deprecated; import it from "
            "flask_store.stores.queued.",
            DeprecationWarning,
            stacklevel=2,
        )
        return queued.QueuedStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
