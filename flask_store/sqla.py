"""Files on database rows: SQLAlchemy column types that follow the transaction.

.. code-block:: python

    from flask_store.sqla import StoredFile, StoredImage

    class Doc(db.Model):
        id = db.Column(db.Integer, primary_key=True)
        file = db.Column(StoredFile())                      # the default store
        scan = db.Column(StoredFile(store="archive"))       # a named store
        photo = db.Column(StoredImage(thumbnails={"small": (64, 64)}))

Assign a Werkzeug ``FileStorage``, a binary file object, ``bytes`` or a
:class:`~flask_store.FileWrapper`; read back a :class:`~flask_store.FileWrapper` (an
:class:`ImageFile`, with its thumbnails, for :class:`StoredImage`) or ``None``. The column
holds a small JSON document (store, key, filename, type, size, ETag, thumbnails) in a TEXT
column, so a row is read without asking the store anything.

**The transaction decides.** A file is saved when the session flushes (``flush()``, a query's
autoflush, or ``commit()``); until then the attribute holds an :class:`UnsavedFile`. Files
saved in a transaction that rolls back (``rollback()``, a failed commit, a session closed
without committing) are deleted; a savepoint (``begin_nested()``) that rolls back deletes
only the files saved inside it. A file the row no longer holds (replaced, set to ``None``,
or its row deleted) is deleted only **after the commit succeeded**: a failed commit leaves it
in place. Those deletes never raise into the app; a failure is logged and owed
(:mod:`flask_store.sqla_deletes`), and ``flask store prune`` retries it.

A session joined to a transaction begun on its connection outside it (``Session(bind=
connection)``, in any ``join_transaction_mode`` but a ``"control_fully"`` of the outermost
transaction) commits only a savepoint, or nothing; its files wait for the connection's own
transaction instead, after the session is closed if need be. What its rows let go of is
deleted once that transaction commits (SQLAlchemy tells of a COMMIT only before sending it,
so the connection's next transaction or its return to the pool says that it succeeded); what
it saved is deleted if that transaction rolls back, fails to commit or is closed, or a
savepoint of it around the session's work rolls back.

ORM bulk statements follow the same rules: ``session.execute(delete(Doc).where(...))`` and
``session.execute(update(Doc).values(file=...))`` let go of the files they take off their
rows (read first with the statement's WHERE, :mod:`flask_store.sqla_bulk`), unless run
with the execution option :data:`~flask_store.sqla_bulk.KEEP_FILES`. Core statements and
``ON DELETE CASCADE`` are not seen: :func:`delete_files_after_commit` covers them.

A FileWrapper given to a row in the transaction and dropped again in it is kept: it may be
another row's file. So a file the app saved itself stays the app's until a committed row
holds it; assign the upload instead to have the transaction save it and clean up after it.

The rules run on SQLAlchemy's session, mapper and pool events, registered when this module
is imported, and on the events of each connection whose transaction files wait for; they
work the same with Flask-SQLAlchemy and with a plain SQLAlchemy 2 session.

Stores are found by name in the current Flask app (``STORE_STORES``, aliases), or given as
a store object for code without an app: ``StoredFile(store=MemoryStore())``.

.. versionadded:: 0.2
"""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, ClassVar, Protocol

from flask import current_app, has_app_context
from sqlalchemy import Select, event, inspect
from sqlalchemy.engine import (
    Connection,
    Dialect,
    Engine,
    ExceptionContext,
    NestedTransaction,
    Result,
    Transaction,
)
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.orm import (
    InstanceState,
    Mapper,
    ORMExecuteState,
    Session,
    SessionTransaction,
    UOWTransaction,
    object_session,
    scoped_session,
)
from sqlalchemy.pool import ConnectionPoolEntry, Pool
from sqlalchemy.types import Text, TypeDecorator
from werkzeug.datastructures import FileStorage

from .exceptions import (
    InvalidArgumentError,
    InvalidFileError,
    InvalidKeyError,
    InvalidValueError,
    NotConfiguredError,
    StoreError,
)
from .file_wrapper import FileWrapper
from .images import checked_thumbnail_sizes, save_image
from .meta import FileInfo
from .naming import clean_key
from .sources import seekable_extent
from .sqla_bulk import KEEP_FILES, changed_file_attributes, file_changes, given_values
from .sqla_deletes import delete_or_owe
from .stores.base import BaseStore

__all__ = [
    "KEEP_FILES",
    "ImageFile",
    "StoredFile",
    "StoredImage",
    "UnsavedFile",
    "delete_files_after_commit",
]

log = logging.getLogger("flask_store")

#: Where an app keeps its stores: ``app.extensions["store"]``, set by ``Store.init_app``
#: (``flask_store.registry.EXTENSION_KEY``; the registry is a layer above this module, so
#: the name is repeated here, and a test keeps the two equal).
APP_STORES_KEY = "store"
#: Where a session keeps the files its transactions owe (``session.info[LEDGER_KEY]``).
LEDGER_KEY = "flask_store.files"
#: Where a session keeps, while its outermost transaction is open, each connection it runs on
#: with the transaction of that connection its work goes into (``session.info[JOINED_KEY]``).
JOINED_KEY = "flask_store.joined"
#: Where a connection keeps the files of sessions whose work went into its transaction and
#: waits for it (``connection.info[OUTER_KEY]``, an :class:`_Outer`), until it ends.
OUTER_KEY = "flask_store.outer"


class StoreLookup(Protocol):
    """What ``app.extensions["store"]`` offers: a store by name or alias."""

    def resolve(self, name: str | None = None) -> BaseStore:
        """The store called ``name`` (``None``: the default one)."""


def app_store(name: str | None) -> BaseStore:
    """The store called ``name`` (``None``: the default) in the current Flask app.

    :raises NotConfiguredError: outside an app context, or when Flask-Store is not set up.
    :raises StoreNotFoundError: when no store or alias has that name.
    """
    if not has_app_context():
        raise NotConfiguredError(
            f"The store {name or 'default'!r} of a StoredFile column is looked up in the "
            "current Flask app, and there is none: work inside 'with app.app_context():', "
            "or give the column a store object (StoredFile(store=MemoryStore()))."
        )
    stores: StoreLookup | None = current_app.extensions.get(APP_STORES_KEY)
    if stores is None:
        raise NotConfiguredError(
            "Flask-Store is not set up on this app; call Store(app) or store.init_app(app) "
            "before using StoredFile columns."
        )
    return stores.resolve(name)


# -- what the attribute holds before the flush ---------------------------------------------


class UnsavedFile:
    """A file assigned to a column and not saved yet: it is saved at the next flush.

    Reading the attribute before the flush gives this object; after it, the saved
    :class:`~flask_store.FileWrapper`. Call ``session.flush()`` to save now.

    :param source: the ``FileStorage``, binary file object or bytes assigned.
    :param filename: the name to save it under (default: the source's own).
    :raises InvalidFileError: for any other source (see :func:`checked_source`).
    """

    __slots__ = ("__weakref__", "_start", "filename", "source")

    def __init__(self, source: Any, filename: str | None = None) -> None:
        self.source = checked_source(source)
        #: The name the file will be saved under, or ``None`` to use the source's own.
        self.filename = filename
        # Where the source's stream began when first read (-1: it cannot seek back).
        self._start: int | None = None

    def source_from_start(self) -> Any:
        """The source, positioned where it began: what each save reads.

        One UnsavedFile can be saved more than once (assigned to two rows, or saved again
        after its transaction rolled back); each save must read the whole file, never the
        spent rest of the stream, which would store an empty file without a word.

        :raises InvalidFileError: when the source was read before and cannot seek back
            (a pipe, a socket, a file closed since).
        """
        if isinstance(self.source, (bytes, bytearray, memoryview)):
            return self.source
        stream = self.source.stream if isinstance(self.source, FileStorage) else self.source
        if self._start is None:
            extent = seekable_extent(stream)
            self._start = -1 if extent is None else extent[0]
            return self.source
        if not _seek(stream, self._start):
            raise InvalidFileError(
                f"The file {self.filename or ''!r} was read by an earlier save (for another "
                "row, or in a transaction that rolled back) and its stream cannot be read "
                "again: assign the saved FileWrapper, or the file again."
            )
        return self.source

    def __repr__(self) -> str:
        return f"<UnsavedFile {self.filename or type(self.source).__name__!r}>"


def _seek(stream: Any, position: int) -> bool:
    """Move ``stream`` to ``position`` (``-1``: it cannot seek); whether that worked."""
    if position < 0:
        return False
    try:
        stream.seek(position)
    except (OSError, ValueError):  # ValueError: the file was closed since
        return False
    return True


def checked_source(source: Any) -> Any:
    """``source``, when it is a file a column can save: a ``FileStorage``, ``bytes`` (or a
    ``bytearray``/``memoryview``) or a binary file object.

    The store's ``save()`` also reads a ``str`` or path as a file on the server; a column
    never does, whether the value is assigned or wrapped in an :class:`UnsavedFile`, so a
    form value can never choose which server file is stored.

    :raises InvalidFileError: for a ``str`` or path, a text stream, or anything else.
    """
    if isinstance(source, (FileStorage, bytes, bytearray, memoryview)):
        return source
    if isinstance(source, (str, os.PathLike)):
        raise InvalidFileError(
            "A StoredFile column takes the file itself, not a path or a string: assign "
            "request.files[...], bytes, or a file opened with open(path, 'rb')."
        )
    if isinstance(source, io.TextIOBase):
        raise InvalidFileError(
            "A StoredFile column needs a binary file; open it with 'rb', not 'r'."
        )
    if callable(getattr(source, "read", None)):
        return source
    raise InvalidFileError(
        f"A StoredFile column cannot store a {type(source).__name__}; assign a FileStorage, "
        "a binary file object, bytes, a FileWrapper or None."
    )


def accepted(value: Any) -> FileWrapper | UnsavedFile | None:
    """What the attribute holds once ``value`` is assigned to a stored-file column.

    :raises InvalidFileError: for anything but a ``FileStorage``, a binary file object,
        ``bytes`` (or a ``bytearray``/``memoryview``), a FileWrapper, an
        :class:`UnsavedFile` or ``None`` (:func:`checked_source`).
    """
    if value is None or isinstance(value, (FileWrapper, UnsavedFile)):
        return value
    if isinstance(value, FileStorage):
        return UnsavedFile(value, value.filename or None)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return UnsavedFile(bytes(value))
    source = checked_source(value)
    own_name = getattr(source, "name", None)
    return UnsavedFile(source, os.path.basename(own_name) if isinstance(own_name, str) else None)


# -- what is read back -----------------------------------------------------------------------


class ImageFile(FileWrapper):
    """A :class:`~flask_store.FileWrapper` for an image with its thumbnails.

    ``doc.photo.thumbnails["small"]`` is the thumbnail's own FileWrapper (served, listed and
    deleted like any file).
    """

    __slots__ = ("thumbnails",)

    def __init__(
        self,
        store: BaseStore,
        key: str,
        *,
        info: FileInfo | None = None,
        thumbnails: Mapping[str, FileWrapper] = MappingProxyType({}),
    ) -> None:
        super().__init__(store, key, info=info)
        #: Each thumbnail by the name the column gives it.
        self.thumbnails: Mapping[str, FileWrapper] = MappingProxyType(dict(thumbnails))


def files_of(value: object) -> list[FileWrapper]:
    """Every stored file a column value stands for: any thumbnails, then the file (the
    order they are deleted in, so a failure part-way never leaves thumbnails of a deleted
    image, as :func:`~flask_store.images.delete_image` does)."""
    if not isinstance(value, FileWrapper):
        return []
    if isinstance(value, ImageFile):
        return [*value.thumbnails.values(), value]
    return [value]


def _describe(wrapper: FileWrapper) -> dict[str, Any]:
    """One file's part of the column's JSON document (asks the store only when the
    wrapper does not know its metadata yet)."""
    info = wrapper.info
    return {
        "store": wrapper.store.name,
        "key": wrapper.key,
        "filename": info.filename,
        "content_type": info.content_type,
        "size": info.size,
        "etag": info.etag,
        "modified": info.last_modified.isoformat(),
    }


def to_document(wrapper: FileWrapper) -> str:
    """The JSON text a column stores for ``wrapper``."""
    document = _describe(wrapper)
    if isinstance(wrapper, ImageFile):
        document["thumbnails"] = {
            name: _describe(thumbnail) for name, thumbnail in wrapper.thumbnails.items()
        }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def _is_unicode(text: str) -> bool:
    """Whether ``text`` can be stored again: a lone surrogate (``"\\ud800"`` in the JSON)
    parses, but no database takes the document holding it, so a row read with one would
    fail at a later flush that writes it (the file copied to another row)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True)
class _Described:
    """One file as a column's document describes it."""

    store: str
    info: FileInfo


def _described(part: object) -> _Described:
    """Check one file's part of a document; :class:`InvalidValueError` when it is not one."""
    if not isinstance(part, Mapping):
        raise InvalidValueError("A StoredFile column holds a document that is not an object.")
    try:
        text = {name: part[name] for name in ("store", "key", "filename", "content_type", "etag")}
        size, modified = part["size"], part["modified"]
        if not all(isinstance(value, str) for value in text.values()):
            raise TypeError("names must be strings")
        if not all(_is_unicode(value) for value in text.values()):
            raise ValueError("names must be Unicode text")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise TypeError("size must be a count of bytes")
        info = FileInfo(
            key=clean_key(text["key"]),  # a tampered row must not reach outside its store
            size=size,
            content_type=text["content_type"],
            filename=text["filename"],
            last_modified=datetime.fromisoformat(str(modified)),
            etag=text["etag"],
        )
    except (KeyError, TypeError, ValueError) as exc:  # InvalidKeyError is a ValueError
        raise InvalidValueError(f"A StoredFile column holds a malformed document: {exc}") from None
    return _Described(text["store"], info)


# -- the column types ------------------------------------------------------------------------


class StoredFile(TypeDecorator[FileWrapper]):
    """A column holding one stored file, saved and deleted with the transaction.

    :param store: the store new files are saved in: a name of the app's stores or aliases
        (looked up in the current app when a file is saved or a row is read), a store
        object, or ``None`` for the app's default store. Files already saved are found in
        the store their row names, so changing this later keeps old rows readable.

    The store never overwrites an older file with a new one here, whatever its
    ``ON_CONFLICT``: the old file must survive until the commit, so a clash is renamed
    (``ON_CONFLICT = "error"`` still refuses).
    """

    impl = Text
    cache_ok = True
    #: Whether every file read back is an :class:`ImageFile` (else only one whose document
    #: lists thumbnails).
    reads_images: ClassVar[bool] = False

    def __init__(self, store: str | BaseStore | None = None) -> None:
        super().__init__()
        if not (store is None or isinstance(store, (str, BaseStore))):
            raise NotConfiguredError(
                "StoredFile(store=...) takes a store's name or a store, "
                f"not {type(store).__name__}."
            )
        self._store = store

    @property
    def store(self) -> str | BaseStore | None:
        """The store new files go to, as given."""
        return self._store

    def column_store(self) -> BaseStore:
        """The store the column names: its store object, or the app's store of that name."""
        return self._store if isinstance(self._store, BaseStore) else app_store(self._store)

    def target_store(self) -> BaseStore:
        """The store a new file is saved in, set never to overwrite (see the class doc)."""
        store = self.column_store()
        if store.on_conflict != "overwrite":
            return store
        renaming = copy.copy(store)
        renaming.on_conflict = "rename"
        return renaming

    def store_named(self, name: str) -> BaseStore:
        """The store a row's document names: the column's own store object when it has that
        name, else the app's store of that name."""
        if isinstance(self._store, BaseStore) and self._store.name == name:
            return self._store
        return app_store(name)

    def save(self, unsaved: UnsavedFile) -> FileWrapper:
        """Save ``unsaved`` in :meth:`target_store`; what the flush runs."""
        return self.target_store().save(unsaved.source_from_start(), name=unsaved.filename)

    def compare_values(self, x: Any, y: Any) -> bool:
        """Whether the ORM sees no change: the same file *in the same version*.

        FileWrappers are equal when they name the same key, but a file replaced under its
        key (``store.replace()``) is a new version: the row must write its new document
        (size, ETag). Kept, the old document would later delete "the old version", find a
        newer one and keep the file for good. When a version cannot be told (the store
        cannot describe the file), the key alone decides, as before.
        """
        if not (isinstance(x, FileWrapper) and isinstance(y, FileWrapper)):
            return bool(x == y)
        if x is y:
            return True
        if x != y:
            return False
        try:
            return x.etag == y.etag
        except StoreError:
            return True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if isinstance(value, FileWrapper):
            return to_document(value)
        raise InvalidFileError(
            "A StoredFile column saves files when the ORM session flushes; an insert() or "
            "update() statement takes a FileWrapper (save the file first) or None."
        )

    def process_result_value(self, value: Any, dialect: Dialect) -> FileWrapper | None:
        """The FileWrapper a row's value names: its JSON document, or a bare key.

        :raises InvalidValueError: for a value that is not text (SQLite keeps a BLOB written
            into a TEXT column as ``bytes``, whose ``str()`` would be read as a key), or a
            document or key that is not acceptable.
        """
        if value is None:
            return None
        if not isinstance(value, str):
            raise InvalidValueError(
                f"A StoredFile column holds a {type(value).__name__}, not the text it writes."
            )
        text = value
        if not text.lstrip().startswith("{"):
            # A bare key, as Flask-Store 0.0.x's FlaskStoreType stored: the default store's
            # (or this column's) file, its metadata fetched when first used.
            try:
                return self.column_store().file(text)
            except InvalidKeyError as exc:
                raise InvalidValueError(f"A StoredFile column holds a bad key: {exc}") from None
        return self.from_document(self._parsed(text))

    @staticmethod
    def _parsed(text: str) -> Mapping[str, Any]:
        """The JSON object a row holds.

        :raises InvalidValueError: for text that is not a JSON object, including JSON nested
            too deep to parse (``json.loads`` recurses once per level and raises
            ``RecursionError``, which must not escape as anything but a bad value).
        """
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):
            raise InvalidValueError("A StoredFile column holds text that is not JSON.") from None
        if not isinstance(document, Mapping):
            raise InvalidValueError("A StoredFile column holds JSON that is not an object.")
        return document

    def from_document(self, document: Mapping[str, Any]) -> FileWrapper:
        """The FileWrapper a row's document describes, without asking the store.

        A document listing thumbnails gives an :class:`ImageFile` here too: an image moved
        from a :class:`StoredImage` column keeps its thumbnails in the document, and the row
        must know them to delete them with the image when it lets go of it.
        """
        described = _described(document)
        store = self.store_named(described.store)
        if "thumbnails" not in document and not self.reads_images:
            return FileWrapper(store, described.info.key, info=described.info)
        return ImageFile(
            store, described.info.key, info=described.info, thumbnails=self.thumbnails_in(document)
        )

    def thumbnails_in(self, document: Mapping[str, Any]) -> dict[str, FileWrapper]:
        """The thumbnails a row's document lists, by name.

        :raises InvalidValueError: when they are not an object of file documents.
        """
        parts = document.get("thumbnails") or {}
        if not isinstance(parts, Mapping):
            raise InvalidValueError("A StoredFile column holds thumbnails that are not an object.")
        thumbnails: dict[str, FileWrapper] = {}
        for name, part in parts.items():
            if not _is_unicode(name):
                raise InvalidValueError(f"A StoredFile column holds a bad thumbnail name {name!r}.")
            thumbnail = _described(part)
            thumbnails[str(name)] = FileWrapper(
                self.store_named(thumbnail.store), thumbnail.info.key, info=thumbnail.info
            )
        return thumbnails

    def __repr__(self) -> str:
        # What Alembic writes into a migration: a call with literals only.
        return f"{type(self).__name__}({self._repr_arguments()})"

    def _repr_arguments(self) -> str:
        if self._store is None:
            return ""
        name = self._store.name if isinstance(self._store, BaseStore) else self._store
        return f"store={name!r}"


class StoredImage(StoredFile):
    """A column holding an image and its thumbnails (:mod:`flask_store.images`).

    Only real images are accepted, judged from their bytes when the session flushes
    (:class:`~flask_store.exceptions.InvalidImageError`, nothing stored). Reading gives an
    :class:`ImageFile`; its thumbnails are deleted with it.

    :param thumbnails: ``{name: (width, height)}``: each thumbnail fits in its box, made
        once, when the image is saved. A bad name or size raises
        :class:`~flask_store.exceptions.InvalidArgumentError` here.
    :param strip_metadata: remove EXIF (GPS...) and other metadata from the saved original
        (default: the store's ``STORE_IMAGE_STRIP_METADATA``; thumbnails never keep any).
    :param max_pixels: the most pixels an image may declare (default: the store's
        ``STORE_IMAGE_MAX_PIXELS``).
    """

    reads_images = True
    #: As :class:`StoredFile`'s (SQLAlchemy does not inherit it): statements selecting an
    #: image column are compiled once and cached, not again at every query with a warning.
    cache_ok = True

    def __init__(
        self,
        store: str | BaseStore | None = None,
        thumbnails: Mapping[str, tuple[int, int]] | None = None,
        *,
        strip_metadata: bool | None = None,
        max_pixels: int | None = None,
    ) -> None:
        super().__init__(store)
        if not isinstance(thumbnails, (Mapping, type(None))):
            raise InvalidArgumentError(
                "StoredImage(thumbnails=...) takes {name: (width, height)}, "
                f"not a {type(thumbnails).__name__}."
            )
        # Checked now, as save_image() would at every flush: a bad size fails where the
        # column is defined, and is never rounded into another one.
        self._thumbnails = checked_thumbnail_sizes(thumbnails or {})
        self._strip_metadata = strip_metadata
        self._max_pixels = max_pixels

    @property
    def thumbnails(self) -> Mapping[str, tuple[int, int]]:
        """The thumbnails made of each image, ``{name: (width, height)}``."""
        return MappingProxyType(self._thumbnails)

    def save(self, unsaved: UnsavedFile) -> FileWrapper:
        saved = save_image(
            self.target_store(),
            unsaved.source_from_start(),
            filename=unsaved.filename,
            thumbnails=self._thumbnails,
            strip_metadata=self._strip_metadata,
            max_pixels=self._max_pixels,
        )
        original = saved.original
        return ImageFile(
            original.store, original.key, info=original.info, thumbnails=saved.thumbnails
        )

    def _repr_arguments(self) -> str:
        arguments = [super()._repr_arguments()]
        if self._thumbnails:
            arguments.append(f"thumbnails={self._thumbnails!r}")
        if self._strip_metadata is not None:
            arguments.append(f"strip_metadata={self._strip_metadata!r}")
        if self._max_pixels is not None:
            arguments.append(f"max_pixels={self._max_pixels!r}")
        return ", ".join(argument for argument in arguments if argument)


# -- which attributes of a mapped class hold files ---------------------------------------------

_stored_columns: weakref.WeakKeyDictionary[Mapper[Any], dict[str, StoredFile]] = (
    weakref.WeakKeyDictionary()
)


def stored_attributes(mapper: Mapper[Any]) -> dict[str, StoredFile]:
    """``{attribute name: column type}`` of ``mapper``'s stored-file columns."""
    found = _stored_columns.get(mapper)
    if found is None:
        found = {
            prop.key: prop.columns[0].type
            for prop in mapper.column_attrs
            if len(prop.columns) == 1 and isinstance(prop.columns[0].type, StoredFile)
        }
        _stored_columns[mapper] = found
    return found


@event.listens_for(Mapper, "mapper_configured")
def _instrument(mapper: Mapper[Any], class_: type) -> None:
    """Check every value assigned to a stored-file attribute when it is assigned, and make
    the attribute load the value it replaces (so a replaced file is known at flush)."""
    for key in stored_attributes(mapper):
        event.listen(
            getattr(class_, key), "set", _on_set, retval=True, active_history=True, raw=False
        )


def _on_set(target: object, value: Any, oldvalue: Any, initiator: object) -> Any:
    """The attribute event: the value the attribute holds instead (:func:`accepted`)."""
    return accepted(value)


# -- the transaction rules ---------------------------------------------------------------------


#: A row's attribute holding a file: the row's ORM state and the attribute's name.
Holder = tuple[InstanceState[Any], str]
#: Where a row keeps the uploads its open transaction saved (``row.__dict__[UPLOADS_KEY]``),
#: for :func:`_give_back`. On the row, not in the session's ledger, so an upload lives no
#: longer than its row: an import that flushes row by row does not hold every upload (its
#: bytes, its open file) until the commit.
UPLOADS_KEY = "_flask_store_uploads"
#: What a transaction did with a file (:class:`_Owed`).
SAVED, HELD, LET_GO = "saved", "held", "let go"
#: Where a session counts its flushes (``session.info[STEP_KEY]``), to order what they saw.
STEP_KEY = "flask_store.step"


@dataclass(frozen=True)
class _Owed:
    """A file a transaction has a say over.

    ``kind`` :data:`SAVED`: saved in ``origin`` from ``unsaved`` (a weak reference: the
    holder's row keeps it, see :data:`UPLOADS_KEY`) for ``holder``, deleted if ``origin``
    rolls back (and ``unsaved`` given back to the holder, see :func:`_undo`).
    :data:`LET_GO`: ``holder`` (a row's attribute) no longer holds it; :data:`HELD`:
    ``holder`` was given it (another row's file moved there, an old file put back). A
    saved file, or one let go of by a holder that held it before the transaction, is
    deleted once the outermost transaction commits, unless some holder's last word on it,
    by ``step`` (a flush), is that it holds it (:func:`_let_go_for_good`). Every entry is
    forgotten if ``origin`` rolls back.
    """

    file: FileWrapper
    origin: SessionTransaction
    kind: str
    step: int
    holder: Holder | None = None
    unsaved: weakref.ref[UnsavedFile] | None = None

    def upload(self) -> tuple[Holder, UnsavedFile] | None:
        """The holder of a saved file and the upload it was saved from, while both are
        known (the upload lives as long as its row keeps it)."""
        unsaved = None if self.unsaved is None else self.unsaved()
        if self.holder is None or unsaved is None:
            return None
        return self.holder, unsaved


def _ledger(session: Session) -> list[_Owed]:
    """What ``session``'s open transactions did with files, in the order it was seen."""
    ledger: list[_Owed] = session.info.setdefault(LEDGER_KEY, [])
    return ledger


def _current_transaction(session: Session) -> SessionTransaction:
    """The transaction the session's changes now belong to: the innermost savepoint, else
    the outermost transaction (begun now if the session has none yet)."""
    return session.get_nested_transaction() or session.get_transaction() or session.begin()


def _within(transaction: SessionTransaction | None, outer: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is outer:
            return True
        transaction = transaction.parent
    return False


def _next_step(session: Session) -> int:
    """Start a new step (a flush, a bulk-delete helper call): what it sees comes after
    everything seen before."""
    step: int = session.info.get(STEP_KEY, 0) + 1
    session.info[STEP_KEY] = step
    return step


def _note(
    session: Session,
    files: Iterable[FileWrapper],
    kind: str,
    step: int,
    holder: Holder | None = None,
    unsaved: UnsavedFile | None = None,
) -> None:
    origin = _current_transaction(session)
    upload = None if unsaved is None else weakref.ref(unsaved)
    _ledger(session).extend(_Owed(file, origin, kind, step, holder, upload) for file in files)


def _let_go_for_good(ledger: Iterable[_Owed]) -> list[FileWrapper]:
    """The files the transaction saved, or that a row holding them before it let go of,
    and that no row holds in the end.

    A row's first word on a file says whether it held it before the transaction: a row
    given a file in the transaction (another row's file copied to it) that lets go of it
    again only takes back its own gain; the rows that named the file before still do, so
    that is no reason to delete it. Each holder's last word says whether it holds the file
    in the end (within a step, holding wins: a row given back the file it had keeps it),
    so a file moved from one row to another, in one flush or across several, is kept.
    """
    first: dict[tuple[FileWrapper, Holder | None], str] = {}
    last: dict[tuple[FileWrapper, Holder | None], str] = {}
    candidates: dict[FileWrapper, None] = {}
    for owed in sorted(ledger, key=lambda owed: (owed.step, owed.kind == HELD)):
        if owed.kind == SAVED:
            candidates[owed.file] = None
            continue
        kind = first.setdefault((owed.file, owed.holder), owed.kind)
        if kind == LET_GO:
            candidates[owed.file] = None
        last[owed.file, owed.holder] = owed.kind
    held = {file for (file, _), kind in last.items() if kind == HELD}
    return [file for file in candidates if file not in held]


@event.listens_for(Session, "before_flush")
def _before_flush(session: Session, context: UOWTransaction, instances: object) -> None:
    """Save the files assigned since the last flush, and note the files rows let go of
    and the files rows were given."""
    step = _next_step(session)
    for target in [*session.new, *session.dirty]:
        state = inspect(target)
        for key, column in stored_attributes(state.mapper).items():
            value = state.dict.get(key)
            if isinstance(value, UnsavedFile):
                saved = column.save(value)
                _note(session, files_of(saved), SAVED, step, (state, key), value)
                state.dict.setdefault(UPLOADS_KEY, []).append(value)
                setattr(target, key, saved)
            history = state.attrs[key].history
            added = [f for new in history.added for f in files_of(new)]
            _note(session, added, HELD, step, (state, key))
            deleted = [f for old in history.deleted for f in files_of(old)]
            _note(session, deleted, LET_GO, step, (state, key))


@event.listens_for(Mapper, "before_delete")
def _before_delete(mapper: Mapper[Any], connection: Connection, target: object) -> None:
    """A deleted row (``session.delete()``, a cascade, an orphan) lets go of its files."""
    keys = stored_attributes(mapper)
    session = object_session(target)
    if not keys or session is None:
        return
    step = session.info.get(STEP_KEY, 0)
    state = inspect(target)
    for key in keys:
        _note(session, _held_files(target, key), LET_GO, step, (state, key))


def _held_files(target: object, key: str) -> list[FileWrapper]:
    """The files attribute ``key`` of ``target`` holds in the database: its flushed value.

    A FileWrapper assigned since and not flushed never reached this row in the database:
    it is still held wherever it came from (another row's file copied here), so deleting
    the row does not take it along.
    """
    getattr(target, key)  # loads the value if it was expired
    history = inspect(target).attrs[key].history
    return [file for value in (*history.unchanged, *history.deleted) for file in files_of(value)]


@event.listens_for(Session, "after_begin")
def _after_begin(session: Session, transaction: SessionTransaction, connection: Connection) -> None:
    """Note the transaction of ``connection`` the session's work goes into: the one the
    session began, the savepoint it made (``join_transaction_mode="create_savepoint"``), or
    the outer transaction it joined (``"rollback_only"``, ``"control_fully"``)."""
    if transaction.parent is not None:
        return  # a savepoint of the session: its work goes where the outermost one's does
    joined = connection.get_nested_transaction() or connection.get_transaction()
    if joined is not None:
        session.info.setdefault(JOINED_KEY, []).append((connection, joined))


def _joined(session: Session) -> list[tuple[Connection, Transaction]]:
    """Each connection of the session's outermost transaction, with the transaction of that
    connection the session's work goes into (:func:`_after_begin`)."""
    joined: list[tuple[Connection, Transaction]] = session.info.get(JOINED_KEY, [])
    return joined


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    """The outermost transaction committed: delete what its rows let go of, now if that
    was the database's COMMIT, else when the connection's own transaction commits.

    A session joined to a transaction begun on its connection outside it commits only a
    savepoint, or nothing: its work is durable only once that transaction commits.
    """
    if session.in_nested_transaction():
        return  # a savepoint was released; its files now follow the enclosing transaction
    _settle(session, [connection for connection, _ in _joined(session)])


@event.listens_for(Session, "after_soft_rollback")
def _after_soft_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
    """A transaction or savepoint rolled back: delete the files saved inside it.

    A flush that failed rolls back its own inner transaction, which rolls back the savepoint
    or transaction around it in the database at once: that one can never commit now, so its
    files go now, even if the app never calls ``rollback()``.
    """
    _undo(session, _boundary(previous_transaction))


@event.listens_for(Session, "after_transaction_end")
def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    """The outermost transaction ended without a commit (``close()``): as a rollback,
    unless the session leaves the outer transaction it joined open
    (``join_transaction_mode="rollback_only"``): what it flushed stays in that transaction,
    so its files wait for it as a commit's would."""
    if transaction.parent is not None:
        return
    left_open = [connection for connection, joined in _joined(session) if joined.is_active]
    session.info.pop(JOINED_KEY, None)
    if left_open:  # kept there, or already committed if the database commits each statement
        _settle(session, left_open)
    else:
        _undo(session, transaction)


def _uncommitted(connection: Connection) -> bool:
    """Whether ``connection`` is still in a transaction, so the work in it is not committed.

    SQLAlchemy's word, checked against the driver's: pysqlite says whether SQLite is in a
    transaction (it sends no BEGIN for a SAVEPOINT, so on a connection that ran nothing
    before, SQLite's RELEASE of a session's savepoint commits, though SQLAlchemy still
    counts the outer transaction open); other drivers say whether they commit each statement
    (``isolation_level="AUTOCOMMIT"``), which leaves SQLAlchemy's transaction nothing to
    roll back.
    """
    if not connection.in_transaction():
        return False
    if connection.closed or connection.invalidated:  # the transaction is lost, not committed
        return True
    pooled = connection.connection
    in_transaction = getattr(pooled.driver_connection, "in_transaction", None)
    if in_transaction is not None:
        return bool(in_transaction)
    dbapi_connection = pooled.dbapi_connection
    # Not in every SQLAlchemy 2.0 release (setup.cfg allows any): without it, SQLAlchemy's
    # word, as for a dialect that cannot tell.
    detect = getattr(connection.dialect, "detect_autocommit_setting", None)
    if dbapi_connection is None or detect is None:
        return True
    try:
        return not detect(dbapi_connection)
    except NotImplementedError:  # a dialect that cannot tell
        return True


def _settle(session: Session, joined: list[Connection]) -> None:
    """The session's outermost transaction is over and its work kept: in the database, or
    in the transactions of those ``joined`` connections still in one. Delete the files its
    rows let go of now, or leave them to those transactions with the files it saved
    (:func:`_hand_over`).

    A session that saved and let go of no file returns at once, before asking any
    connection about its transaction: every commit of an app comes this way.
    """
    ledger = session.info.pop(LEDGER_KEY, None)
    if not ledger:
        return
    outer = [connection for connection in joined if _uncommitted(connection)]
    for owed in ledger:
        _drop_upload(owed)
    let_go = _let_go_for_good(ledger)
    if not outer:
        _delete_quietly(let_go, LET_GO_WHY)
        return
    # A session over several binds: each row's files wait for its own connection only.
    waits_for: dict[FileWrapper, list[Connection]] = {}
    saved: dict[Connection, list[FileWrapper]] = {}
    for owed in ledger:
        connections = _waiting_for(session, owed, outer)
        for connection in connections if owed.kind == SAVED else ():
            saved.setdefault(connection, []).append(owed.file)
        if owed.kind != HELD:
            waits_for.setdefault(owed.file, []).extend(connections)
    handed: dict[Connection, list[FileWrapper]] = {}
    for file in let_go:
        for connection in dict.fromkeys(waits_for[file]):  # any open one is reason to wait
            handed.setdefault(connection, []).append(file)
    _delete_quietly([file for file in let_go if not waits_for[file]], LET_GO_WHY)
    for connection in outer:
        _hand_over(connection, handed.get(connection, []), saved.get(connection, []))


def _waiting_for(session: Session, owed: _Owed, outer: list[Connection]) -> list[Connection]:
    """The connections of ``outer`` whose transactions hold the row of ``owed``: none when
    the row's database committed with the session, every one when that cannot be told.

    The session's bind for the row's mapper says which, as at the flush: a connection is
    one the session joined; an engine's connection is the session's own, committed with it.
    """
    try:
        bind = session.get_bind(mapper=owed.holder[0].mapper) if owed.holder else None
    except Exception:  # a bind chosen by more than the mapper (horizontal sharding)
        bind = None
    if isinstance(bind, Engine):
        return []
    if isinstance(bind, Connection):
        return [bind] if any(bind is connection for connection in outer) else []
    return outer


def _boundary(transaction: SessionTransaction) -> SessionTransaction:
    """The savepoint or outermost transaction that a rollback of ``transaction`` rolls back
    in the database (a flush's inner transaction rolls back the one around it)."""
    while transaction.parent is not None and not transaction.nested:
        transaction = transaction.parent
    return transaction


def _undo(session: Session, transaction: SessionTransaction) -> None:
    """Forget what ``transaction`` did with files, and delete the files saved inside it."""
    ledger = session.info.get(LEDGER_KEY)
    if not ledger:
        return
    undone = [owed for owed in ledger if _within(owed.origin, transaction)]
    ledger[:] = [owed for owed in ledger if not _within(owed.origin, transaction)]
    saved = [owed for owed in undone if owed.kind == SAVED]
    for owed in saved:
        _give_back(owed)
    for owed in saved:  # after every give-back: the row's list may be an upload's last hold
        _drop_upload(owed)
    _delete_quietly([owed.file for owed in saved], SAVED_WHY)


def _give_back(owed: _Owed) -> None:
    """Put the :class:`UnsavedFile` back on a row that still holds the file it was saved as.

    A rollback expires the rows it can reload, but a row it expunges (added in the rolled
    back transaction) or detaches (``close()``) keeps the saved FileWrapper in its
    ``__dict__``. Added or merged again, that row would commit a document naming a file the
    rollback deleted; holding the UnsavedFile instead, it saves the file again at the flush.
    """
    upload = owed.upload()
    if upload is None:
        return
    (state, key), unsaved = upload
    if state.dict.get(key) is owed.file:  # the file itself, not one of its thumbnails
        state.dict[key] = unsaved


def _drop_upload(owed: _Owed) -> None:
    """Let the row forget the upload ``owed`` was saved from: its transaction is over."""
    upload = owed.upload()
    if upload is None:
        return
    (state, _), unsaved = upload
    row = state.dict  # empty once the row is gone
    uploads = [kept for kept in row.get(UPLOADS_KEY, ()) if kept is not unsaved]
    if uploads:
        row[UPLOADS_KEY] = uploads
    else:
        row.pop(UPLOADS_KEY, None)


def _delete_quietly(files: Iterable[FileWrapper], why: str) -> None:
    """Delete each file once, never raising: a failure is logged and owed."""
    for file in dict.fromkeys(files):
        delete_or_owe(file.store, file.key, _etag_of(file), why)


def _etag_of(file: FileWrapper) -> str | None:
    """The version to delete: known from the row's document (a bare key of an older row
    asks the store); ``None``, any version, when the store cannot say."""
    try:
        return file.etag
    except Exception:  # an undescribable file is still deleted
        return None


#: Why a file is deleted, in the log of a delete that failed.
LET_GO_WHY, SAVED_WHY = "let go of by a committed row", "saved in a rolled back transaction"


# -- outer transactions: the connection decides ----------------------------------------------


@dataclass
class _Handed:
    """What a session's finished work left to the transaction of its connection.

    ``let_go`` is deleted once that transaction commits, ``saved`` (the uploads of the
    session's rows) if the work rolls back; ``savepoint`` refers to the connection's
    savepoint the work is in (``None``: none), so rolling that back undoes it. The reference
    is weak: this lives in the pool's record of the connection, and a strong one would keep
    a connection dropped without ``close()`` from ever going back to its pool.
    """

    let_go: list[FileWrapper]
    saved: list[FileWrapper]
    savepoint: weakref.ref[NestedTransaction] | None

    def in_savepoint(self, savepoint: NestedTransaction) -> bool:
        """Whether the work is in ``savepoint``."""
        return self.savepoint is not None and self.savepoint() is savepoint

    def savepoint_ended(self) -> bool:
        """Whether the savepoint the work was in is released (or gone)."""
        if self.savepoint is None:
            return False
        savepoint = self.savepoint()
        return savepoint is None or not savepoint.is_active


@dataclass
class _Outer:
    """The files waiting for one connection's transaction.

    ``committing``: its COMMIT was sent and no error came back. SQLAlchemy has no event
    after a COMMIT (the ``commit`` event comes before it, sqlalchemy#4943), so the
    connection's next ``begin`` or its return to the pool says that it succeeded.
    """

    handed: list[_Handed] = field(default_factory=list)
    committing: bool = False


def _outer(connection: Connection, create: bool = False) -> _Outer | None:
    """The files waiting for ``connection``'s transaction (kept in ``connection.info``,
    which is the DBAPI connection's, so they outlive the sessions and their Connection
    objects until the transaction ends).

    ``None`` without any, and for a connection closed or invalidated: its ``info`` would
    reconnect or raise, and the pool's events cover it (:func:`_pool_done`).
    """
    if connection.closed or connection.invalidated:
        return None
    if create:
        outer: _Outer = connection.info.setdefault(OUTER_KEY, _Outer())
        return outer
    return connection.info.get(OUTER_KEY)


def _hand_over(connection: Connection, let_go: list[FileWrapper], saved: list[FileWrapper]) -> None:
    """Leave ``let_go`` and ``saved`` to ``connection``'s transaction, in its innermost
    savepoint."""
    if not (let_go or saved):
        return
    outer = _outer(connection, create=True)
    if outer is None:  # the connection is gone, and its transaction with it
        _delete_quietly(saved, SAVED_WHY)
        return
    outer.handed.append(_Handed(let_go, saved, _weak(connection.get_nested_transaction())))
    _listen_to(connection)


def _listen_to(connection: Connection) -> None:
    """Follow ``connection``'s transaction from now on (:data:`CONNECTION_EVENTS`).

    On this connection only, not on every engine: any listener of an engine's connection
    events sends each of its connections through SQLAlchemy's slower evented path (about
    30 us more per ``with engine.begin()`` on SQLite), so apps that never join a session
    to an outer transaction pay nothing.
    """
    if not event.contains(connection, "commit", _on_commit):
        for name, listener in CONNECTION_EVENTS:
            event.listen(connection, name, listener)
    # SQLAlchemy takes this one for a whole engine (its dialect) only; it costs nothing but
    # on an error.
    if not event.contains(connection.engine, "handle_error", _on_error):
        event.listen(connection.engine, "handle_error", _on_error)


def _end(info: dict[Any, Any]) -> None:
    """The connection's transaction is over: committed if its COMMIT was under way (no error
    came back), else rolled back. Delete what its rows let go of, or what they saved."""
    outer: _Outer | None = info.pop(OUTER_KEY, None)
    if outer is None:
        return
    if outer.committing:
        _delete_quietly([file for handed in outer.handed for file in handed.let_go], LET_GO_WHY)
    else:
        _delete_quietly([file for handed in outer.handed for file in handed.saved], SAVED_WHY)


def _adopt_released(outer: _Outer, connection: Connection) -> None:
    """Give work done in savepoints released since to the innermost savepoint still open.

    Called before a savepoint begins or rolls back, so no savepoint began since the release:
    the innermost one open is the one the released savepoints were inside.
    """
    current = _weak(connection.get_nested_transaction())
    for handed in outer.handed:
        if handed.savepoint_ended():
            handed.savepoint = current


def _weak(savepoint: NestedTransaction | None) -> weakref.ref[NestedTransaction] | None:
    return None if savepoint is None else weakref.ref(savepoint)


def _on_commit(connection: Connection, xid: Any = None, is_prepared: bool = False) -> None:
    """The connection is about to COMMIT: whether it did, its next step tells."""
    outer = _outer(connection)
    if outer is not None:
        outer.committing = True


def _on_error(context: ExceptionContext) -> None:
    """An error during the COMMIT: the transaction did not commit (as for a session whose
    commit fails, its work counts as rolled back)."""
    connection = context.connection
    if connection is None:  # no connection made yet
        return
    outer = _outer(connection)
    if outer is not None and outer.committing:
        outer.committing = False
        _end(connection.info)


def _on_transaction_over(
    connection: Connection, xid: Any = None, is_prepared: bool = False
) -> None:
    """A ROLLBACK of the connection's transaction, or the next transaction beginning (the
    last one's COMMIT succeeded)."""
    if _outer(connection) is not None:
        _end(connection.info)


@event.listens_for(Pool, "checkin")
def _pool_done(dbapi_connection: DBAPIConnection | None, record: ConnectionPoolEntry) -> None:
    """The DBAPI connection is back in the pool, rolled back unless a COMMIT succeeded just
    before, or thrown away (an invalidated connection is checked in too, its transaction
    lost): its transaction is over."""
    _end(record.info)


def _on_savepoint(connection: Connection, name: str | None) -> None:
    """A savepoint begins: work of the savepoints released before belongs to the one open."""
    outer = _outer(connection)
    if outer is not None:
        _adopt_released(outer, connection)


def _on_rollback_savepoint(connection: Connection, name: str, context: None) -> None:
    """A savepoint of the connection rolls back: delete the files saved by the work in it."""
    outer = _outer(connection)
    if outer is None:
        return
    _adopt_released(outer, connection)
    savepoint = connection.get_nested_transaction()
    if savepoint is None:  # no savepoint open: nothing SQLAlchemy could roll back to
        return
    undone = [handed for handed in outer.handed if handed.in_savepoint(savepoint)]
    outer.handed = [handed for handed in outer.handed if not handed.in_savepoint(savepoint)]
    _delete_quietly([file for handed in undone for file in handed.saved], SAVED_WHY)


#: The connection events that follow a transaction holding files (:func:`_listen_to`).
CONNECTION_EVENTS: tuple[tuple[str, Any], ...] = (
    ("begin", _on_transaction_over),
    ("begin_twophase", _on_transaction_over),
    ("commit", _on_commit),
    ("commit_twophase", _on_commit),
    ("rollback", _on_transaction_over),
    ("rollback_twophase", _on_transaction_over),
    ("savepoint", _on_savepoint),
    ("rollback_savepoint", _on_rollback_savepoint),
)


# -- bulk statements -------------------------------------------------------------------------


@event.listens_for(Session, "do_orm_execute")
def _bulk_statement(execute: ORMExecuteState) -> Result[Any] | None:
    """An ORM bulk UPDATE or DELETE (``session.execute(delete(Doc).where(...))``): its rows
    let go of the files it takes off them, as a flush's would.

    Those rows are never loaded, so no other event sees them: their files are read first,
    with the statement's own WHERE (:mod:`flask_store.sqla_bulk`), then the statement runs,
    and only once it has succeeded are the files noted, so a statement that fails lets go of
    nothing. A row the session has loaded is the holder of its files, as at a flush; the
    others are noted without one (what a holder-less note keeps is never wrongly deleted:
    at worst a file stays).
    """
    if not (execute.is_update or execute.is_delete):
        return None  # every SELECT of the app comes this way
    mapper: Mapper[Any] | None = execute.bind_arguments.get("mapper")
    if mapper is None:
        return None
    columns = stored_attributes(mapper)
    changed = changed_file_attributes(execute, columns)
    if not changed:
        return None
    session = execute.session
    dialect = session.get_bind(mapper=mapper).dialect
    let_go: dict[tuple[FileWrapper, Holder | None], None] = {}
    held: dict[tuple[FileWrapper, Holder | None], None] = dict.fromkeys(
        (file, None) for value in given_values(execute, changed) for file in files_of(value)
    )
    for change in file_changes(execute, changed):
        loaded = session.identity_map.get(change.identity)
        holder: Holder | None = None if loaded is None else (inspect(loaded), change.key)
        old = _stored_value(columns[change.key], change.old, dialect)
        let_go.update(dict.fromkeys((file, holder) for file in files_of(old)))
        held.update(dict.fromkeys((file, holder) for file in files_of(change.new)))
    result = execute.invoke_statement()
    step = _next_step(session)
    for kind, noted in ((LET_GO, let_go), (HELD, held)):
        for file, holder in noted:
            _note(session, [file], kind, step, holder)
    return result


def _stored_value(column: StoredFile, stored: Any, dialect: Dialect) -> Any:
    """The file a bulk statement's row holds as ``stored`` (its column's text), read by
    ``column``; ``None`` (logged) for a value it refuses: the row was tampered with, and the
    statement runs all the same, leaving whatever file that value may name in the store."""
    try:
        return column.process_result_value(stored, dialect)
    except InvalidValueError as exc:
        log.warning("A bulk statement takes a row whose file cannot be read (%s): kept.", exc)
        return None


def delete_files_after_commit(
    session: Session | scoped_session[Any], statement: Select[Any]
) -> int:
    """Delete the files of the rows ``statement`` selects once the transaction commits.

    An ORM bulk statement (``session.execute(delete(Doc).where(...))``) needs no help: its
    files are let go of by itself (:func:`_bulk_statement`). Rows deleted or changed where
    the ORM cannot see it do: a Core statement on a ``Table``, or rows the database deletes
    itself (``ON DELETE CASCADE``). Call this first with the same condition, then run the
    statement, then commit::

        delete_files_after_commit(session, select(Page).where(Page.doc_id == 7))
        session.execute(delete(pages_table).where(pages_table.c.doc_id == 7))
        session.commit()

    A rollback keeps the files, as for any row. Calling it before an ORM bulk statement on
    the same rows does no harm: each file is deleted once.

    :param session: a session, or a ``scoped_session`` (Flask-SQLAlchemy's ``db.session``).
    :returns: how many files will be deleted.
    :raises InvalidArgumentError: when ``statement`` selects anything but whole rows of one
        model (columns, or two models, whose second one's files would be missed).
    """
    if not _selects_one_model(statement):
        raise InvalidArgumentError(
            "delete_files_after_commit() takes a select() of whole rows of one model, such "
            "as select(Doc).where(...): the same rows the bulk delete removes."
        )
    own = session() if isinstance(session, scoped_session) else session
    step = _next_step(own)
    count = 0
    for target in own.scalars(statement):
        state = inspect(target)
        for key in stored_attributes(state.mapper):
            files = _held_files(target, key)
            _note(own, files, LET_GO, step, (state, key))
            count += len(files)
    return count


def _selects_one_model(statement: Select[Any]) -> bool:
    """Whether ``statement`` selects whole rows of one mapped class (or an alias of one):
    columns would have no files to read, and a second model's rows would be left out."""
    described = statement.column_descriptions
    return (
        len(described) == 1
        and described[0].get("entity") is not None
        and described[0]["expr"] is described[0]["entity"]
    )
