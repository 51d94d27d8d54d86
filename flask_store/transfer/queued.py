"""Moved: :class:`QueuedStore` lives in :mod:`flask_store.stores.queued` since 0.2.

Importing its names from here still works and warns, so existing code has time to move.
"""

from __future__ import annotations

import warnings
from typing import Any

from ..stores import queued as _moved

#: Nothing lives here any more: every name is looked up in :mod:`flask_store.stores.queued`.
__all__: list[str] = []


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    value = getattr(_moved, name)  # AttributeError for a name that never existed
    warnings.warn(
        f"flask_store.transfer.queued is deprecated; import {name} from flask_store.stores.queued.",
        DeprecationWarning,
        stacklevel=2,
    )
    return value
