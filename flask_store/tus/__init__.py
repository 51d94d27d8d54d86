"""Resumable uploads: a tus 1.0.0 server on Flask-Store's own stores.

- :mod:`~flask_store.tus.protocol`: the protocol's headers, parsed strictly;
- :mod:`~flask_store.tus.state`: each upload's state and lock, on disk;
- :mod:`~flask_store.tus.receivers`: where the bytes wait (a partial file; an S3 multipart
  upload in :mod:`~flask_store.tus.s3`);
- :mod:`~flask_store.tus.server`: the rules of each request, apart from Flask.

The Flask views are in :mod:`flask_store.tus_views`; see docs/resumable.rst.

.. versionadded:: 0.2
"""

from __future__ import annotations

from .receivers import FileReceiver, Receiver, receiver_class_for
from .server import TusHooks, TusResponse, TusServer
from .state import UploadFolder, UploadState

__all__ = [
    "FileReceiver",
    "Receiver",
    "TusHooks",
    "TusResponse",
    "TusServer",
    "UploadFolder",
    "UploadState",
    "receiver_class_for",
]
