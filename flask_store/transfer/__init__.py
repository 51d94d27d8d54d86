"""Background transfers from a local store to a remote one that never lose a file.

:class:`~flask_store.transfer.queued.QueuedStore` is the mechanism; ``S3GeventStore`` is the
same mechanism with S3 as the remote and greenlets as the executor. See ``docs/queued.rst``.
"""

from .queued import QueuedStore
from .records import RecordBook, TransferRecord
from .signals import file_saved, file_transferred, transfer_failed

__all__ = [
    "QueuedStore",
    "RecordBook",
    "TransferRecord",
    "file_saved",
    "file_transferred",
    "transfer_failed",
]
