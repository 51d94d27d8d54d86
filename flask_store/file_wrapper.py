"""FileWrapper: what ``save()`` returns, a stored file that knows its URLs and metadata."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO

from . import urls

if TYPE_CHECKING:
    from .meta import FileInfo
    from .stores.base import BaseStore

__all__ = ["FileWrapper"]


class FileWrapper:
    """A file in a store.

    Cheap to create: metadata is fetched from the store on first use and then kept (call
    :meth:`refresh` to fetch it again). Keep :meth:`to_dict` (or just :attr:`key`) in your
    database and rebuild the wrapper later with ``store.Provider().file(key)``.

    One word per idea:

    - the **key** (:attr:`key`, and ``FileInfo.key`` in its metadata) names the file inside
      its store: ``"avatars/me.png"``. :attr:`name` and :meth:`relative_path` are older
      names for it, kept as aliases.
    - ``STORE_PATH`` is the store's root: a folder for a local store, a key prefix in the
      bucket for S3. Keys are relative to it.
    - :attr:`path` is the file's path across an app's stores, ``"<store name>/<key>"``
      (``store.get_file(path)``, the CLI).
    - :meth:`absolute_path` is where the file is on the local file system (local stores).

    :param store: the store holding the file.
    :param key: the file's key in the store.
    :param info: metadata already known (``save()`` passes it, to spare a lookup).
    """

    __slots__ = ("_info", "key", "store")

    def __init__(self, store: BaseStore, key: str, *, info: FileInfo | None = None) -> None:
        self.store = store
        #: The file's key inside its store: served at ``STORE_URL_PREFIX + "/" + key``.
        #:
        #: .. versionadded:: 0.2
        self.key = key
        self._info = info

    @property
    def name(self) -> str:
        """The file's key: an alias of :attr:`key`, the name it had in earlier versions.

        .. versionchanged:: 0.2
            An alias of :attr:`key`.
        """
        return self.key

    @name.setter
    def name(self, key: str) -> None:
        self.key = key

    # -- metadata ---------------------------------------------------------------------------

    @property
    def info(self) -> FileInfo:
        """All metadata at once (fetched from the store on first use)."""
        if self._info is None:
            self._info = self.store.info(self.key)
        return self._info

    def refresh(self) -> FileWrapper:
        """Forget cached metadata so the next access asks the store again."""
        self._info = None
        return self

    @property
    def filename(self) -> str:
        """The client's original filename (before it was made safe or renamed)."""
        return self.info.filename

    @property
    def size(self) -> int:
        """Size in bytes."""
        return self.info.size

    @property
    def content_type(self) -> str:
        """The content type the file is served with."""
        return self.info.content_type

    @property
    def last_modified(self) -> datetime:
        """When the file was stored (UTC)."""
        return self.info.last_modified

    @property
    def etag(self) -> str:
        """An entity tag that changes with the content."""
        return self.info.etag

    # -- locations --------------------------------------------------------------------------

    def relative_url(self) -> str:
        """The URL path that serves the file from this app: ``/flaskstore/a.jpg``."""
        return urls.relative_url(self.store.url_path(self.key))

    def absolute_url(self, expires: int | None = None) -> str:
        """The full URL of the file.

        For stores with direct URLs (S3) this is the bucket, CDN or presigned URL;
        ``expires`` (seconds) sets a presigned URL's lifetime. Otherwise it is the app's
        serving route on ``STORE_DOMAIN``, the current request's host, or ``SERVER_NAME``.
        """
        direct = self.store.direct_url(self.key, expires)
        if direct is not None:
            return direct
        return urls.absolute_url(self.store.url_path(self.key), self.store.domain)

    def absolute_path(self) -> str:
        """The file's path on the local file system (local stores only)."""
        return self.store.path(self.key)

    @property
    def path(self) -> str:
        """The file's stable path across an app's stores: ``"<store name>/<key>"``.

        ``store.get_file(path)`` finds the file again, whichever store is the default.
        """
        return f"{self.store.name}/{self.key}"

    def relative_path(self) -> str:
        """The file's path relative to the store's root (``STORE_PATH``): its :attr:`key`."""
        return self.key

    # -- content ----------------------------------------------------------------------------

    def open(self) -> BinaryIO:
        """Open the file for streaming reads; use it in a ``with`` block."""
        return self.store.open(self.key)

    def read(self) -> bytes:
        """The whole content; for small files (use :meth:`open` for large ones)."""
        return self.store.read(self.key)

    def exists(self) -> bool:
        """Whether the file is still in its store."""
        return self.store.exists(self.key)

    def delete(self) -> bool:
        """Delete the file; ``True`` if it was there. Safe to call twice."""
        self._info = None
        return self.store.delete(self.key)

    def transfer(self) -> None:
        """Queue this file's transfer to the remote store of its queued store, through the
        store's executor (what ``STORE_TRANSFER_DELAYED`` waits for); returns at once.

        :raises UnsupportedOperationError: when its store does not transfer files.
        """
        self.store.transfer(self.key)

    def wait(self, timeout: float | None = None) -> str:
        """Block until this file's transfer is settled, at most ``timeout`` seconds; its
        state then (``done``, ``failed``, or ``pending`` when the time ran out or the
        transfer was never asked for). ``done`` at once on a store that keeps its files."""
        self._info = None  # served from elsewhere once transferred
        return self.store.wait(self.key, timeout)

    def to_dict(self) -> dict[str, Any]:
        """A small JSON-able description to keep in a database.

        The key is under ``"name"``, as rows saved by earlier versions have it.
        """
        info = self.info
        return {
            "store": self.store.name,
            "name": self.key,
            "filename": info.filename,
            "content_type": info.content_type,
            "size": info.size,
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FileWrapper):
            return NotImplemented
        return (self.store.name, self.key) == (other.store.name, other.key)

    def __hash__(self) -> int:
        return hash((self.store.name, self.key))

    def __repr__(self) -> str:
        return f"<FileWrapper {self.store.name}:{self.key!r}>"
