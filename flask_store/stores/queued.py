"""The ``queued`` provider: ``STORE_PROVIDER = "flask_store.stores.queued.QueuedStore"``.

The implementation lives in :mod:`flask_store.transfer`; this module gives it a provider path
beside the other stores.
"""

from ..transfer.queued import QueuedStore

__all__ = ["QueuedStore"]
