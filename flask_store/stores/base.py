"""The contract every store fulfils, and the logic they all share.

A backend implements six small operations (:meth:`BaseStore._write`, :meth:`~BaseStore.open`,
:meth:`~BaseStore.info`, :meth:`~BaseStore.exists`, :meth:`~BaseStore.delete`,
:meth:`~BaseStore.keys`). Everything else a user calls (``save()`` with its input checks,
naming and conflict policy, the dict-like face, URLs) lives here once.

A store built on other stores (a queued store's local and remote sides) uses only the
public contract: :meth:`~BaseStore.write` to write under the first free key of several,
:meth:`~BaseStore.delete` with ``if_etag`` to remove one version and never a newer one, and
:meth:`~BaseStore.local_folder` for a place on disk beside the files; never another store's
internals. So any store can stand on either side.
"""

from __future__ import annotations

import copy
import dataclasses
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Protocol, TypeAlias
from urllib.parse import quote

from ..byteranges import Span
from ..config import COMMON_SETTINGS, Schema, Setting, StoreConfig
from ..content_checks import ContentRules, apply_rules
from ..exceptions import (
    FileChangedError,
    FileExistsInStoreError,
    FileNotFoundInStoreError,
    InvalidArgumentError,
    InvalidFilenameError,
    StoreError,
    UnsupportedOperationError,
)
from ..file_wrapper import FileWrapper
from ..meta import FileInfo, FileMeta, guess_content_type, measure, recorded_md5
from ..naming import (
    OnConflict,
    candidate_keys,
    clean_key,
    join_key,
    recorded_filename,
    stored_name,
)
from ..sources import CHUNK_SIZE, Upload, open_upload
from ..values import (
    JSON_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    decode_json,
    decode_text,
    encode_json,
    encode_text,
    read_value,
)

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "ESCAPED_KEYS_SEGMENT",
    "BaseStore",
    "ByteRange",
    "FileInfo",
    "FileMeta",
    "Location",
    "OpenedSpan",
    "ReadSource",
    "check_byte_range",
    "first_free_key",
    "guess_content_type",
    "md5_of",
    "measure",
    "recorded_md5",
    "skip_to",
    "skipped_to",
]

#: The URL segment below a store's ``URL_PREFIX`` where every key of the store is answered
#: too; the URLs of keys in :attr:`BaseStore.covered_folders` use it. No key has a component
#: starting with ".", so no key's plain URL can be one of these.
ESCAPED_KEYS_SEGMENT = ".files"


def first_free_key(keys: Iterable[str], claim: Callable[[str], bool]) -> str:
    """Claim the first key of ``keys`` that ``claim`` reports free.

    ``claim(key)`` must atomically take ``key`` and return ``True``, or return ``False`` when
    another file holds it. Running out of keys means the policy forbids a rename.

    :raises FileExistsInStoreError: when every key is taken.
    """
    tried = None
    for key in keys:
        tried = key
        if claim(key):
            return key
    raise FileExistsInStoreError(
        f"A file is already stored as {tried!r}; delete it first, choose another name, "
        "or allow replacing it (STORE_ON_CONFLICT = 'rename' or 'overwrite')."
    )


def skip_to(stream: BinaryIO, position: int) -> None:
    """Move a freshly opened ``stream`` to byte ``position``, in chunks if it cannot seek."""
    if stream.seekable():
        stream.seek(position)
        return
    left = position
    while left > 0 and (chunk := stream.read(min(left, CHUNK_SIZE))):
        left -= len(chunk)


def skipped_to(stream: BinaryIO, position: int) -> BinaryIO:
    """``stream`` moved to byte ``position`` (:func:`skip_to`); closed if that fails, so a
    range opened by a store never leaks its file or connection."""
    try:
        skip_to(stream, position)
    except BaseException:
        stream.close()
        raise
    return stream


#: One byte range as Werkzeug's ``parse_range_header`` gives it: ``(start, stop)`` with
#: ``stop`` exclusive, ``(start, None)`` from ``start`` to the end, ``(-n, None)`` for the
#: last ``n`` bytes.
ByteRange = tuple[int, int | None]


@dataclasses.dataclass(frozen=True)
class OpenedSpan:
    """One byte range of a file, opened with the metadata of that same version
    (:meth:`BaseStore.open_span_with_info`).

    :param info: the version whose bytes ``stream`` holds.
    :param span: ``(start, stop)``: the bytes of the range asked for that lie in the file,
        as a 206 answers it (:func:`~flask_store.byteranges.spans_to_serve`); ``None`` when
        none do (the range starts at or past the end, or the file is empty).
    :param stream: the file's bytes from ``span``'s start; it may go on past its stop
        (readers stop there). ``None`` when ``span`` is. The caller closes it.

    .. versionadded:: 0.2
    """

    info: FileInfo
    span: Span | None
    stream: BinaryIO | None


def check_byte_range(byte_range: ByteRange) -> ByteRange:
    """``byte_range`` when it is one :data:`ByteRange`.

    :raises InvalidArgumentError: for a range that is empty, ends before it starts, or
        counts from the end and has a stop.
    """
    start, stop = byte_range
    if stop is not None and not 0 <= start < stop:
        raise InvalidArgumentError(f"The byte range {start}-{stop} is empty or negative.")
    return byte_range


def md5_of(store: BaseStore, key: str) -> str:
    """The hex MD5 of the file stored as ``key``, read from ``store`` in chunks."""
    with store.open(key) as stream:
        return measure(stream)[1]


def given_config(
    config: StoreConfig | Mapping[str, Any] | None, settings: Mapping[str, Any]
) -> StoreConfig:
    """The settings a store is built with, as one :class:`~flask_store.config.StoreConfig`
    (not yet checked): ``config`` with the keyword ``settings`` over it."""
    if isinstance(config, StoreConfig):
        if not settings:
            return config
        overrides = {key.upper(): value for key, value in settings.items()}
        return dataclasses.replace(config, values={**config.values, **overrides})
    return StoreConfig.from_kwargs({**(config or {}), **settings})


#: What :meth:`BaseStore.location` returns: strings naming a place, nested for a store built
#: of other stores (a queued store's local and remote).
Location: TypeAlias = tuple["str | Location", ...]


class ReadSource(Protocol):
    """What the serving route reads a store's files through: the store itself, or a cache
    in front of it (:attr:`BaseStore.read_cache`)."""

    def info(self, key: str) -> FileInfo:
        """The metadata of the file stored as ``key``."""

    def open_with_info(self, key: str) -> tuple[BinaryIO, FileInfo]:
        """Open ``key``, with metadata describing that same content."""


class BaseStore(ABC):
    """A place to keep files: the interface every Flask-Store backend offers.

    Build one through :class:`flask_store.Store` (settings from ``STORE_*`` config keys) or
    directly with keyword settings: ``MemoryStore(url_prefix="/files")``.

    :param config: the store's settings; a :class:`~flask_store.config.StoreConfig` or a
        mapping of unprefixed keys (``{"PATH": ...}``).
    :param destination: a folder inside the store that :meth:`save` puts files in.
    :param settings: more settings as keyword arguments (``path=...`` is ``PATH``).
    :raises NotConfiguredError: when a setting is missing or wrong.
    """

    #: The settings this store kind reads: each one's default, check and doc. They are
    #: checked, and unknown keys refused, when a store is built. A store of your own extends
    #: its parent's: ``schema = Schema(MemoryStore.schema, [Setting("MY_KEY", 1, "doc")])``.
    schema: ClassVar[Schema] = COMMON_SETTINGS
    #: ``{name: default}`` of :attr:`schema`, read-only (derived for every subclass).
    defaults: ClassVar[Mapping[str, Any]] = COMMON_SETTINGS.defaults
    #: Whether the serving route redirects to :meth:`direct_url` instead of streaming.
    serve_by_redirect: bool = False
    #: Whether the URLs the serving route redirects to grant access by themselves
    #: (presigned): such redirects are sent ``Cache-Control: private, no-store``.
    private_redirects: bool = False
    #: Folders of this store (URL-quoted, each ending in ``/``) whose plain URLs another
    #: store's ``URL_PREFIX`` covers (``avatars/`` when a store serves at
    #: ``/flaskstore/avatars``): set once by the app's registry, in the form
    #: :meth:`url_path` tests a key against. Their files get URLs of their own.
    covered_folders: tuple[str, ...] = ()
    #: What the serving route reads files through when ``CACHE_TTL`` is set: a
    #: :class:`~flask_store.read_cache.ReadThroughCache` the app's registry attaches
    #: (:func:`~flask_store.read_cache.attach_read_cache`). A store built directly has none.
    read_cache: ReadSource | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "defaults" in cls.__dict__ and "schema" not in cls.__dict__:
            # A store written for 0.1 declared its own settings as ``defaults``.
            declared = [
                Setting(name, default, f"Declared in {cls.__name__}.defaults.")
                for name, default in cls.defaults.items()
            ]
            cls.schema = Schema(cls.schema, declared)
        cls.defaults = cls.schema.defaults

    def __init__(
        self,
        config: StoreConfig | Mapping[str, Any] | None = None,
        *,
        destination: str | None = None,
        **settings: Any,
    ) -> None:
        # The one place a store's settings are merged with its defaults and checked.
        config = self.schema.apply(given_config(config, settings), type(self).__name__)
        self.config = config
        self.name: str = config.name
        self.url_prefix: str = config.value("URL_PREFIX")
        self.domain: str | None = config.value("DOMAIN") or None
        self.serve: bool = config.value("SERVE")
        self.on_conflict: OnConflict = config.value("ON_CONFLICT")
        self.cache_max_age: int | None = config.value("CACHE_MAX_AGE")
        self.inline_active_content: bool = config.value("INLINE_ACTIVE_CONTENT")
        #: Whether script and style types (JavaScript, CSS, XSLT) are served as
        #: ``text/plain``, so an upload cannot be included as a script or stylesheet.
        self.scripts_as_text: bool = config.value("SERVE_SCRIPTS_AS_TEXT")
        #: The content checks of ``STORE_ALLOWED_TYPES`` and ``STORE_MAX_SIZE``, built once
        #: here (the schema has checked them) rather than on every save.
        self.content_rules = ContentRules(config.value("ALLOWED_TYPES"), config.value("MAX_SIZE"))
        self.destination: str | None = join_key(destination) if destination else None
        # Names this store object in the default location(): no other store holds its files.
        self._own_place = secrets.token_hex(16)

    # -- what each backend implements -------------------------------------------------------

    @abstractmethod
    def _write(
        self, chunks: Iterator[bytes], keys: Iterator[str], meta: FileMeta, overwrite: bool
    ) -> FileInfo:
        """Store the data under the first key of ``keys`` no other file holds.

        What :meth:`write` and :meth:`save` run; ``keys`` are already checked. Implementations
        write the data out of sight first and then claim a key atomically
        (:func:`first_free_key`), so readers never see half a file and two writers never
        share a key. With ``overwrite`` the first key is replaced instead. Nothing may be
        left behind when this raises.
        """

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """Open the file stored as ``key`` for streaming reads.

        :raises FileNotFoundInStoreError: when there is no such file.
        :raises InvalidKeyError: when the key is not acceptable.
        """

    @abstractmethod
    def info(self, key: str) -> FileInfo:
        """The metadata of the file stored as ``key``.

        :raises FileNotFoundInStoreError: when there is no such file.
        """

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether a file is stored as ``key`` (``False`` for keys that are not acceptable)."""

    @abstractmethod
    def delete(self, key: str, *, if_etag: str | None = None) -> bool:
        """Delete the file stored as ``key``; ``True`` if there was one. Safe to repeat.

        :param if_etag: delete only the version whose :attr:`FileInfo.etag` this is:
            ``False``, with nothing deleted, when ``key`` now holds another version (saved
            again meanwhile) or nothing. The comparison and the removal are one step where
            the backend allows (a local folder moves the file aside before comparing, S3
            sends ``If-Match``), so a newer version is never deleted in place of the old.
        :raises InvalidKeyError: when the key is not acceptable.

        .. versionchanged:: 0.2
            ``if_etag``.
        """

    @abstractmethod
    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every key in the store that starts with ``prefix``, in sorted order."""

    def location(self) -> Location:
        """Where this store's files live: equal for two stores exactly when they hold the
        same files under the same keys (an S3 store gives its endpoint, bucket and prefix).

        The read-through cache names its entries by it, so apps sharing a ``CACHE_PATH``
        share copies of one remote's files and never answer with another remote's. This
        default names this store object alone, as a memory store's files are in no other;
        a store whose files other processes reach overrides it, or its cache entries serve
        this object only.

        .. versionadded:: 0.2
        """
        return (f"{type(self).__module__}.{type(self).__qualname__}", self._own_place)

    # -- the public API built on the contract -----------------------------------------------

    def save(
        self,
        file: Any,
        name: str | None = None,
        content_type: str | None = None,
        *,
        allowed_types: Iterable[str] | None = None,
        max_size: int | None = None,
    ) -> FileWrapper:
        """Store ``file`` and return a :class:`~flask_store.FileWrapper` for it.

        The key is made from the file's name (made safe, inside :attr:`destination`); when it
        is taken, ``ON_CONFLICT`` decides: a new unique name, an overwrite, or an error.

        :param file: a Werkzeug ``FileStorage`` (``request.files["x"]``), a binary file
            object, ``bytes``, or a path to a file on disk.
        :param name: the filename to derive the key from, instead of the file's own. It is
            made safe like a client filename.
        :param content_type: the content type to serve the file with; by default it is
            guessed from the name, never taken from the client. It must be one media type
            (``"image/png"``, ``"text/plain; charset=utf-8"``); it is stored normalised.
        :raises InvalidFileError: for input that is not a file (and its subclasses for an
            empty upload or a name with nothing usable in it).
        :raises InvalidArgumentError: for a ``content_type`` that is not one well-formed
            media type (a list such as ``"text/plain, text/html"``, CR/LF, control
            characters, an empty value); nothing is stored.
        :param allowed_types: media types the file may have, detected from its first bytes
            (``["image/*", "application/pdf"]``); default: ``STORE_ALLOWED_TYPES``. See
            :mod:`flask_store.content_checks`.
        :param max_size: the most bytes the file may have, enforced while it is copied;
            default: ``STORE_MAX_SIZE``.
        :raises FileTypeRejectedError: when its bytes (or its name) are of a type not
            allowed; nothing is stored.
        :raises FileTooLargeError: at the first byte over ``max_size``; nothing is stored.
        :raises FileExistsInStoreError: when the name is taken and ``ON_CONFLICT`` is ``error``.
        :raises UploadReadError: when reading ``file`` fails part-way.
        :raises StorageFullError: when the store has no room left.

        .. versionchanged:: 0.2
            ``allowed_types`` and ``max_size``.
        """
        rules = self._rules(allowed_types, max_size)
        with open_upload(file, name, content_type) as upload:
            if not upload.filename:
                raise InvalidFilenameError(
                    "The file has no filename to derive a key from; pass name='...' to save()."
                )
            # Shortened to fit the key beside the destination folder: a long name still saves.
            safe_name = stored_name(upload.filename, self.destination)
            key = join_key(self.destination, safe_name)
            keys = candidate_keys(key, self.on_conflict)
            overwrite = self.on_conflict == "overwrite"
            return self._store(upload, keys, safe_name, overwrite=overwrite, rules=rules)

    def put(
        self,
        key: str,
        file: Any,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        overwrite: bool = False,
        allowed_types: Iterable[str] | None = None,
        max_size: int | None = None,
    ) -> FileWrapper:
        """Store ``file`` under exactly ``key`` (copies between stores, restores, sync).

        Unlike :meth:`save`, the key is used as given (after the containment check) and
        never renamed. Like every method but :meth:`save`, it takes the whole key in the
        store (a :attr:`FileWrapper.key <flask_store.FileWrapper.key>`): the
        :attr:`destination` folder applies to :meth:`save` only.

        :param filename: the original filename to record (default: the key's last part).
        :param overwrite: replace a file already stored as ``key`` instead of refusing.
        :param allowed_types: as :meth:`save`'s; unlike it, ``put()`` reads no
            ``STORE_ALLOWED_TYPES`` or ``STORE_MAX_SIZE``: it stores the app's own data
            (values, copies), not uploads.
        :param max_size: as :meth:`save`'s.
        :raises FileExistsInStoreError: when ``key`` is taken and ``overwrite`` is false.
        :raises InvalidKeyError: for a key :meth:`open` would refuse (``"/a.txt"``,
            ``"../a.txt"``): a key is checked, never repaired, so the key given is the key
            stored.

        .. versionchanged:: 0.2
            ``allowed_types`` and ``max_size``; an absolute key is refused, no longer
            stored without its leading slash.
        """
        rules = ContentRules.of(allowed_types, max_size)
        key = clean_key(key)
        basename = key.rpartition("/")[2]
        with open_upload(file, filename or basename, content_type) as upload:
            return self._store(upload, iter([key]), basename, overwrite=overwrite, rules=rules)

    def replace(
        self, key: str, file: Any, name: str | None = None, content_type: str | None = None
    ) -> FileWrapper:
        """Replace the content and metadata of the file stored as ``key``, keeping its key.

        :param name: the new original filename to record (default: the new file's own).
        :raises FileNotFoundInStoreError: when nothing is stored as ``key``.
        :raises UploadRejectedError: as :meth:`save` does, by ``STORE_ALLOWED_TYPES`` and
            ``STORE_MAX_SIZE``; the stored file is left as it was.
        """
        rules = self._rules(None, None)
        key = clean_key(key)
        if not self.exists(key):
            raise FileNotFoundInStoreError(f"No file is stored as {key!r}; nothing to replace.")
        with open_upload(file, name, content_type) as upload:
            type_name = key.rpartition("/")[2]
            return self._store(upload, iter([key]), type_name, overwrite=True, rules=rules)

    def _rules(self, allowed_types: Iterable[str] | None, max_size: int | None) -> ContentRules:
        """The content checks of an upload: the arguments given, else the store's settings.

        :raises InvalidArgumentError: for an argument that is not a list of types or a size.
        """
        if allowed_types is None and max_size is None:
            return self.content_rules
        return ContentRules.of(
            self.content_rules.allowed_types if allowed_types is None else allowed_types,
            self.content_rules.max_size if max_size is None else max_size,
        )

    def _store(
        self,
        upload: Upload,
        keys: Iterator[str],
        type_name: str,
        *,
        overwrite: bool,
        rules: ContentRules,
    ) -> FileWrapper:
        """Write ``upload`` under the first free key; ``type_name`` guesses its content type.

        ``rules`` are checked first: a type, or a known size, is refused before anything is
        written; an unknown size is counted while the store reads the upload, and the store
        removes its partial file when the count goes over.
        """
        meta = FileMeta(
            filename=recorded_filename(upload.filename or type_name),
            content_type=upload.content_type or guess_content_type(type_name),
        )
        if rules:
            upload = apply_rules(upload, meta.content_type, rules, meta.filename)
        info = self._write_upload(upload, keys, meta, overwrite=overwrite)
        return FileWrapper(self, info.key, info=info)

    def write(
        self,
        chunks: Iterable[bytes],
        keys: str | Iterable[str],
        meta: FileMeta,
        *,
        overwrite: bool = False,
    ) -> FileInfo:
        """Store ``chunks`` under the first of ``keys`` that no other file holds.

        The writing half of the contract, for code that builds on a store (a queued store
        writes its local copy with it): the bytes and the metadata are taken as given, and
        the keys are tried in order, the way :meth:`save` renames on a collision. Each key
        is checked (:func:`~flask_store.naming.clean_key`) when its turn comes. Claiming a
        key is atomic, so two writers never share one, and no reader sees half a file.

        :param chunks: the file's bytes, read once, in order.
        :param keys: the keys to try, in order, or a single key.
        :param meta: the original filename and the content type to record.
        :param overwrite: replace the file under the first key instead of trying the next.
        :returns: the metadata of the file written; its ``key`` is the one it got.
        :raises FileExistsInStoreError: when every key is taken (nothing is stored).
        :raises InvalidKeyError: when a key tried is not acceptable (nothing is stored).

        .. versionadded:: 0.2
        """
        tried = iter([keys]) if isinstance(keys, str) else iter(keys)
        # iter() of an iterator is the iterator itself: an upload's chunks keep telling a
        # store on the same disk that they come from a spool file it may move into place.
        return self._write(iter(chunks), (clean_key(key) for key in tried), meta, overwrite)

    def replace_when_ready(
        self,
        chunks: Iterable[bytes],
        key: str,
        meta: FileMeta,
        ready: Callable[[FileInfo], AbstractContextManager[object]],
    ) -> FileInfo:
        """Store ``chunks`` as ``key``, replacing the file stored as ``key`` if there is one,
        within ``ready``, entered once the new file is complete.

        ``ready(info)`` is given the info the new file will have (its ETag included) and
        entered before the new file takes the key, left right after: what has to be made
        durable first (a queued store's transfer record) is written as it is entered, and
        what must not happen meanwhile (another save of the key) is held off until it is
        left. When entering it raises, the error is raised here, the file stored before
        stays as it was, and nothing of the new one is left. When the file cannot take the
        key, the error is raised through ``ready``.

        This default writes the file first and enters ``ready`` after, removing the new
        file again when it fails: the old one is lost then. Stores that can hold a complete
        file out of sight (a local folder, memory) override it to keep it.

        .. versionadded:: 0.2
        """
        info = self.write(chunks, key, meta, overwrite=True)
        try:
            with ready(info):
                pass
        except BaseException:
            self.delete(info.key, if_etag=info.etag)  # no new file without what ready made
            raise
        return info

    def _write_upload(
        self, upload: Upload, keys: Iterator[str], meta: FileMeta, overwrite: bool
    ) -> FileInfo:
        """Store ``upload``; by default its chunks go to :meth:`_write`.

        A store that may have to send the data more than once overrides this to re-read the
        stream itself (S3 tries the next key when a conditional write loses a race).
        """
        return self._write(upload.chunks(), keys, meta, overwrite)

    def file(self, key: str) -> FileWrapper:
        """A :class:`~flask_store.FileWrapper` for the file stored as ``key`` (from a database).

        :raises InvalidKeyError: for a key :meth:`open` would refuse.

        .. versionchanged:: 0.2
            An absolute key (``"/a.txt"``) is refused, as :meth:`open` refuses it, instead
            of naming ``a.txt``.
        """
        return FileWrapper(self, clean_key(key))

    def at(self, destination: str) -> Self:
        """This store, saving into the folder ``destination`` (below any current one)."""
        moved = copy.copy(self)
        moved.destination = join_key(self.destination, destination)
        return moved

    def open_with_info(self, key: str) -> tuple[BinaryIO, FileInfo]:
        """Open ``key`` and return the stream with metadata describing that same content."""
        info = self.info(key)
        return self.open(key), info

    def open_range(self, key: str, start: int, stop: int, *, etag: str | None = None) -> BinaryIO:
        """Open ``key`` at byte ``start`` to read the bytes before ``stop``.

        The serving route calls this for a Range request it answers with 206, so that a
        remote store fetches only those bytes (S3 sends a ranged GET). The stream may go on
        past ``stop``; readers stop there. By default the file is opened and moved to
        ``start``: by seeking, or by reading and dropping bytes if it cannot seek.

        :param etag: the version to read (:attr:`FileInfo.etag`): the route's headers came
            from an earlier :meth:`info`, and the bytes must be of that same version. By
            default the opened file's own metadata is compared; S3 makes it a condition of
            its GET.
        :raises FileChangedError: when ``key`` now holds another version.
        """
        if etag is None:
            stream = self.open(key)
        else:
            stream, info = self.open_with_info(key)
            if info.etag != etag:
                stream.close()
                raise FileChangedError(f"The file stored as {key!r} has changed (ETag {etag!r}).")
        return skipped_to(stream, start)

    def open_span_with_info(self, key: str, byte_range: ByteRange) -> OpenedSpan | None:
        """Open one byte range of ``key`` with the metadata of that same version, in one
        step; ``None`` (the default) for a store that has no such step.

        The serving route asks this first for a GET of one range, and decides its answer
        (206, or 304, 412, 416, 200) on the metadata returned, as on :meth:`info`'s. A store
        that learns a file's metadata from the request that fetches its bytes offers it (S3:
        one ranged GET instead of a HEAD and a GET, the object's size read from its
        ``Content-Range``). Without it the route calls :meth:`info`, decides, and opens
        only what the answer needs (:meth:`open_range`): a 304, 412 or 416 opens nothing.

        :param byte_range: ``(start, stop)`` with ``stop`` exclusive, ``(start, None)`` from
            ``start`` on, or ``(-n, None)`` for the last ``n`` bytes (the form of Werkzeug's
            ``parse_range_header``), cut to the file as a 206 cuts it
            (:func:`~flask_store.byteranges.spans_to_serve`).
        :raises FileNotFoundInStoreError: when there is no such file.
        :raises InvalidKeyError: when the key is not acceptable.
        :raises InvalidArgumentError: for a range that is empty or ends before it starts.

        .. versionadded:: 0.2
        """
        check_byte_range(byte_range)
        return None

    def read(self, key: str) -> bytes:
        """The whole content of ``key``: for small files only; use :meth:`open` otherwise."""
        with self.open(key) as stream:
            return stream.read()

    def size(self, key: str) -> int:
        """Size in bytes of the file stored as ``key``."""
        return self.info(key).size

    def verify(self, key: str) -> str | None:
        """Read ``key`` whole and say what is wrong with it, or ``None`` when it is intact.

        Checks that it is readable, that its length matches its metadata, and that its MD5
        matches the one the store recorded, where it records one (S3 single-part uploads,
        MemoryStore).
        """
        try:
            stream, info = self.open_with_info(key)
            with stream:
                size, md5 = measure(stream)
        except (StoreError, OSError) as exc:
            return f"unreadable: {exc}"
        if size != info.size:
            return f"size is {size} bytes but metadata says {info.size}"
        recorded = recorded_md5(info)
        if recorded and recorded != md5:
            return f"checksum is {md5} but metadata says {recorded}"
        return None

    def path(self, key: str) -> str:
        """The absolute filesystem path of ``key``; only stores on local disk have one."""
        raise UnsupportedOperationError(
            f"{type(self).__name__} keeps files off the local file system; use open() or "
            "the file's URL instead of a path."
        )

    def local_folder(self) -> str | None:
        """The folder on this machine's disk that holds the store's files, or ``None``.

        Only a store keeping its files in a folder has one (a
        :class:`~flask_store.stores.local.LocalStore`: its ``STORE_PATH``, resolved). A
        store built on this one keeps its working files there, in a hidden folder no key
        can name (a queued store's transfer records: ``<folder>/.transfers``).

        .. versionadded:: 0.2
        """
        return None

    def url_path(self, key: str) -> str:
        """The path (below the site root) where the serving route answers for ``key``.

        A key in one of :attr:`covered_folders` is answered below
        ``<URL_PREFIX>/.files/`` (:data:`ESCAPED_KEYS_SEGMENT`): its plain URL belongs to
        the store whose URL prefix covers that folder.
        """
        quoted = quote(key, safe="/")
        if quoted.startswith(self.covered_folders):
            return f"{self.url_prefix}/{ESCAPED_KEYS_SEGMENT}/{quoted}"
        return f"{self.url_prefix}/{quoted}"

    def direct_url(self, key: str, expires: int | None = None) -> str | None:
        """A URL that reaches the file without this app (a bucket URL), or ``None``."""
        return None

    def redirect_url_for_serving(self, key: str) -> str | None:
        """Where the serving route redirects a request for ``key``, or ``None`` to stream it.

        Stores with :attr:`serve_by_redirect` redirect to :meth:`direct_url`. A store whose
        files move (a queued store: local while pending, remote afterwards) decides per key.
        """
        return self.direct_url(key) if self.serve_by_redirect else None

    def start(self) -> None:
        """Begin background work once the app is set up: ``init_app`` calls it, once.

        Stores built directly (scripts, RQ workers) are never started. Does nothing here;
        a queued store re-drives its unfinished transfers.
        """
        return

    def transfer(self, key: str) -> None:
        """Queue the move of ``key`` to a remote store: only queued stores move files.

        :raises UnsupportedOperationError: always, here (this store keeps its files).
        """
        raise UnsupportedOperationError(
            f"The store {self.name!r} keeps its files where it saved them; only a queued "
            f"store transfers them (asked to transfer {key!r})."
        )

    def wait(self, key: str, timeout: float | None = None) -> str:
        """Block until ``key`` is where it is going; its transfer state. ``done`` at once
        here: this store saved it where it stays. Queued stores wait for the transfer."""
        return "done"

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.exists(key)

    def __iter__(self) -> Iterator[str]:
        return self.keys()

    def __len__(self) -> int:
        return sum(1 for _ in self.keys())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # -- values: the ``backends`` interface (encoding in flask_store.values) ----------------

    def dump(self, key: str, value: Any) -> FileWrapper:
        """Store ``value`` as JSON under exactly ``key``, replacing what was there.

        The value becomes an ordinary file (UTF-8, ``application/json``), written atomically
        like any :meth:`put`: it lists, serves, transfers and syncs like the others.

        :raises InvalidArgumentError: for a value JSON cannot hold (a set, bytes, NaN or an
            infinity, a cycle, a lone surrogate); nothing is written.
        :raises InvalidKeyError: when the key is not acceptable; nothing is written.

        .. versionadded:: 0.2
        """
        return self._put_value(key, encode_json(value), JSON_CONTENT_TYPE)

    def load(self, key: str) -> Any:
        """The JSON value stored as ``key``, or ``None`` when nothing is stored there.

        A stored ``null`` is ``None`` too: ``key in store`` tells the two apart.

        :raises InvalidValueError: naming the key when the file is not UTF-8 JSON, or is
            larger than :data:`~flask_store.values.MAX_VALUE_SIZE` (16 MiB).

        .. versionadded:: 0.2
        """
        data = self._read_value(key)
        return None if data is None else decode_json(clean_key(key), data)

    def dump_text(self, key: str, value: str) -> FileWrapper:
        """Store the string ``value`` under exactly ``key`` (UTF-8, ``text/plain``),
        replacing what was there.

        :raises InvalidArgumentError: for a value that is not a ``str`` or holds lone
            surrogates; nothing is written.

        .. versionadded:: 0.2
        """
        return self._put_value(key, encode_text(value), TEXT_CONTENT_TYPE)

    def load_text(self, key: str) -> str | None:
        """The text stored as ``key``, or ``None`` when nothing is stored there.

        :raises InvalidValueError: naming the key when the file is not UTF-8, or is larger
            than :data:`~flask_store.values.MAX_VALUE_SIZE` (16 MiB).

        .. versionadded:: 0.2
        """
        data = self._read_value(key)
        return None if data is None else decode_text(clean_key(key), data)

    def _put_value(self, key: str, data: bytes, content_type: str) -> FileWrapper:
        return self.put(key, data, content_type=content_type, overwrite=True)

    def _read_value(self, key: str) -> bytes | None:
        """The bytes of the value ``key`` (bounded: :data:`~flask_store.values.MAX_VALUE_SIZE`),
        or ``None`` when nothing is stored there."""
        try:
            stream = self.open(key)
        except FileNotFoundInStoreError:
            return None
        with stream:
            return read_value(clean_key(key), stream)

    def items(self, prefix: str = "") -> Iterator[tuple[str, FileWrapper]]:
        """``(key, file)`` for every key that starts with ``prefix``, in :meth:`keys` order.

        .. versionadded:: 0.2
        """
        for key in self.keys(prefix):
            yield key, FileWrapper(self, key)

    def clear(self, prefix: str = "") -> int:
        """Delete every file whose key starts with ``prefix`` (all of them by default).

        ``prefix`` is matched as :meth:`keys` matches it, character by character:
        ``"photos"`` also takes ``"photos-old.jpg"``; end it with ``/`` for a folder.
        Files saved while it runs may stay.

        :returns: how many files were deleted.

        .. versionadded:: 0.2
        """
        return sum(1 for key in list(self.keys(prefix)) if self.delete(key))
