"""Exceptions raised by Flask-Store.

Every error a caller can act on has its own class, and each one also derives from the
built-in exception a Python programmer would reach for (``ValueError``, ``FileNotFoundError``,
``OSError``...), so ``except FileNotFoundError`` keeps working around Flask-Store calls.
All of them derive from :class:`StoreError`.
"""

from __future__ import annotations

__all__ = [
    "ACLNotSupportedError",
    "BucketNotFoundError",
    "CorruptUploadStateError",
    "EmptyFileError",
    "FileChangedError",
    "FileExistsInStoreError",
    "FileNotFoundInStoreError",
    "FileTooLargeError",
    "FileTypeRejectedError",
    "ImageTooLargeError",
    "InvalidArgumentError",
    "InvalidFileError",
    "InvalidFilenameError",
    "InvalidImageError",
    "InvalidKeyError",
    "InvalidValueError",
    "NotConfiguredError",
    "ProviderImportError",
    "ResumableUploadError",
    "StorageFullError",
    "StoreAccessDeniedError",
    "StoreError",
    "StoreNotFoundError",
    "StoreUnavailableError",
    "TransferConflictError",
    "TransferVerificationError",
    "UnsupportedByServerError",
    "UnsupportedOperationError",
    "UploadReadError",
    "UploadRejectedError",
]


class StoreError(Exception):
    """Base class of every Flask-Store error."""


class NotConfiguredError(StoreError):
    """The application configuration is missing a key or has a bad value.

    Raised by :meth:`flask_store.Store.init_app`; the message names the key.
    """


class ProviderImportError(NotConfiguredError, ImportError):
    """``STORE_PROVIDER`` names a class that cannot be imported."""


class StoreNotFoundError(StoreError, LookupError):
    """No store or alias has the name asked for (``store.Provider("avatars")``)."""


class InvalidFileError(StoreError, ValueError):
    """``save()`` was given something that is not a file it can store."""


class EmptyFileError(InvalidFileError):
    """The upload has no filename and no data (an empty form field)."""


class InvalidFilenameError(InvalidFileError):
    """A filename or key sanitises to nothing usable."""


class InvalidKeyError(StoreError, ValueError):
    """A key would leave the store's root, or contains characters a key may not hold."""


class FileNotFoundInStoreError(StoreError, FileNotFoundError):
    """No file is stored under the key."""


class FileChangedError(FileNotFoundInStoreError):
    """The file stored under the key is no longer the version asked for (its ETag differs).

    Raised by :meth:`~flask_store.stores.base.BaseStore.open_range` given ``etag=``, so that
    bytes are never served with the headers of another version.
    """


class FileExistsInStoreError(StoreError, FileExistsError):
    """A file is already stored under the key and ``on_conflict`` is ``"error"``."""


class UploadReadError(StoreError, OSError):
    """Reading the source failed part-way; nothing was stored."""


class StorageFullError(StoreError, OSError):
    """The store has no space (or quota) left; nothing was stored."""


class UnsupportedOperationError(StoreError):
    """The operation makes no sense for this kind of store (a local path of a remote file)."""


class StoreUnavailableError(StoreError, ConnectionError):
    """A remote store cannot be reached, does not exist, or refused access."""


class TransferConflictError(FileExistsInStoreError):
    """A background transfer found a different file under its key on the remote store.

    The transfer never overwrites it; the local copy stays and the transfer is recorded as
    failed until someone resolves the conflict.
    """


class TransferVerificationError(StoreError, OSError):
    """The remote store reports a size or checksum that differs from the local copy's."""


class BucketNotFoundError(StoreUnavailableError):
    """The bucket a remote store is configured with does not exist."""


class StoreAccessDeniedError(StoreUnavailableError, PermissionError):
    """The remote store refused the credentials or the operation (HTTP 403)."""


class UnsupportedByServerError(StoreUnavailableError):
    """An S3-compatible server lacks something the store relies on: it refused a feature of
    the request (``NotImplemented``, ``InvalidRequest``...), ignores conditional writes, or
    stored other bytes than were sent. Nothing was kept; the message names the setting that
    avoids it (``STORE_S3_CONDITIONAL_WRITES``, ``STORE_S3_CHECKSUM_CALCULATION``...).

    .. versionadded:: 0.2
    """


class ACLNotSupportedError(UnsupportedOperationError):
    """The bucket has ACLs disabled (S3 Object Ownership "bucket owner enforced").

    Grant access with a bucket policy, or presigned URLs, instead of per-object ACLs.
    """


class UploadRejectedError(InvalidFileError):
    """A direct upload broke the limits it was given (size, type), has no valid signature,
    came after its form expired, or reuses the form of a file already confirmed, and has been
    deleted (a confirmed file is never touched); or it was not made by
    ``presigned_upload()``, and has no limits to be checked against or breaks them, and is
    kept."""


class FileTooLargeError(UploadRejectedError):
    """An upload is larger than the limit it was given, and nothing of it is kept (only a
    file that ``confirm_upload()`` is asked about but did not stage is kept).

    Raised by ``save()`` at the first byte over its ``max_size`` or ``STORE_MAX_SIZE``
    (:mod:`flask_store.content_checks`) and for a direct upload over its ``max_size``; an
    app may raise it for its own limits too. The error handlers of ``STORE_HANDLE_ERRORS``
    answer it ``413 Content Too Large``.

    .. versionadded:: 0.2
    """


class FileTypeRejectedError(UploadRejectedError):
    """An upload's type is not one it was allowed to have, and nothing of it is kept (only
    a file that ``confirm_upload()`` is asked about but did not stage is kept).

    Raised by ``save()`` for bytes of a type its ``allowed_types`` or ``STORE_ALLOWED_TYPES``
    does not list (:mod:`flask_store.content_checks`) and for a direct upload of another
    type than its ``content_type``; an app may raise it for its own rules too. The error
    handlers of ``STORE_HANDLE_ERRORS`` answer it ``415 Unsupported Media Type``.

    .. versionadded:: 0.2
    """


class InvalidImageError(FileTypeRejectedError):
    """A file given as an image is not one: decided from its bytes (never its name or the
    client's type), it is not a JPEG, PNG, GIF or WebP that decodes whole, or it also holds
    markup or an archive (a polyglot). Nothing of it is kept; the message names the file.

    .. versionadded:: 0.2
    """


class ImageTooLargeError(FileTooLargeError, InvalidImageError):
    """An image declares more pixels than ``STORE_IMAGE_MAX_PIXELS`` (a decompression bomb:
    a small file that would decode to gigabytes). Refused from its header, before decoding;
    answered ``413`` by the error handlers.

    .. versionadded:: 0.2
    """


class InvalidArgumentError(StoreError, ValueError):
    """An argument to a store method is out of range (a URL lifetime, an upload size limit)."""


class InvalidValueError(StoreError, ValueError):
    """A file read as a value (:meth:`~flask_store.stores.base.BaseStore.load`,
    :meth:`~flask_store.stores.base.BaseStore.load_text`, a
    :class:`~flask_store.caches.JsonCache` entry) is not what it should be: not UTF-8, not
    JSON, or not a cache entry. The message names the key; the file is left as it is.

    .. versionadded:: 0.2
    """


class ResumableUploadError(StoreError):
    """A resumable (tus) upload request was refused; :attr:`status` is the HTTP answer.

    Raised by :mod:`flask_store.tus` for a request that breaks the tus protocol or its
    limits: a wrong ``Upload-Offset`` (409), a body that is not
    ``application/offset+octet-stream`` (415), an upload over its length or
    ``STORE_TUS_MAX_SIZE`` (413), a checksum mismatch (460), an upload that is unknown (404),
    expired or terminated (410), or busy with another request (423). Nothing of a refused
    request's body is kept.

    .. versionadded:: 0.2
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        #: The HTTP status the tus server answers with.
        self.status = status


class CorruptUploadStateError(ResumableUploadError, ValueError):
    """The state a resumable (tus) upload keeps on the server's disk is not one the server
    wrote: edited or damaged, it is not UTF-8 JSON, lacks a field, or holds a value of the
    wrong type or out of range (a negative length, an offset past it, an expiry no HTTP date
    can say). It is never used; the upload is answered ``410 Gone``, and ``flask store
    prune`` removes it once it is as old as an upload's lifetime.

    .. versionadded:: 0.2
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, 410)
