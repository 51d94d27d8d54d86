"""Flask-WTF validators that run ``save()``'s content checks on a form's ``FileField``.

Flask-WTF's own ``FileAllowed`` looks at the client's filename and ``FileSize`` at the size;
these look at the bytes, with the very checks ``save()`` runs
(:mod:`flask_store.content_checks`), so the form shows an error before anything is saved.
See "In forms" in the content checks guide for an example.

Without arguments they read the store's settings (``STORE_ALLOWED_TYPES``,
``STORE_MAX_SIZE``) from the current app; ``store="avatars"`` names another store. Each
file of a ``MultipleFileField`` is checked. A field with no file passes (``FileRequired`` is
the check for that), and so does a check whose setting is unset. WTForms is imported only
when a validator runs (``pip install Flask-WTF``).

.. versionadded:: 0.2
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from typing import Any, BinaryIO, cast

from werkzeug.datastructures import FileStorage

from .content_checks import ContentRules, check_size, check_type, read_head
from .exceptions import InvalidFilenameError, UploadRejectedError
from .meta import guess_content_type
from .naming import recorded_filename, stored_name
from .registry import get_registry
from .sources import seekable_extent

__all__ = ["StoreAllowed", "StoreMaxSize"]


class _StoreCheck(abc.ABC):
    """What both validators share: the store whose settings fill in, the message."""

    def __init__(self, *, store: str | None = None, message: str | None = None) -> None:
        self.store = store
        self.message = message

    def _setting(self, name: str) -> Any:
        """The value of the store's setting ``name`` in the current app."""
        return get_registry().resolve(self.store).config.value(name)

    def __call__(self, form: Any, field: Any) -> None:
        """Check the field's file, or each file of a ``MultipleFileField`` (a list).

        A list is checked file by file, as Flask-WTF's ``FileAllowed`` and ``FileSize`` do:
        otherwise one file of many would never be looked at.

        :raises StopValidation: at the first file refused (or whose name ``save()`` would
            refuse), with its message.
        """
        try:
            for upload in _chosen_files(field.data):
                self.check(upload)
        except (UploadRejectedError, InvalidFilenameError) as exc:
            # lazily: Flask-WTF is optional
            from wtforms.validators import StopValidation  # type: ignore[import-untyped]

            raise StopValidation(self.message or str(exc)) from exc

    @abc.abstractmethod
    def check(self, upload: FileStorage) -> None:
        """Raise :class:`~flask_store.exceptions.UploadRejectedError` for a refused file."""


def _chosen_files(data: Any) -> list[FileStorage]:
    """The files chosen in a field holding ``data``: a ``FileStorage`` or a list of them.

    A field with no file chosen gives none (``FileRequired`` is the check for that).
    """
    uploads = data if isinstance(data, list) else [data]
    return [upload for upload in uploads if isinstance(upload, FileStorage) and upload]


class StoreAllowed(_StoreCheck):
    """The file's type, detected from its first bytes, must be one of ``types``.

    :param types: media type patterns, as ``save(allowed_types=...)`` takes them; default:
        the store's ``STORE_ALLOWED_TYPES``.
    :param store: the store whose setting is the default (default: the default store).
    :param message: the error to show instead of the check's own.
    :raises InvalidArgumentError: when built with ``types`` that are not media types.
    """

    def __init__(
        self,
        types: Iterable[str] | None = None,
        *,
        store: str | None = None,
        message: str | None = None,
    ) -> None:
        super().__init__(store=store, message=message)
        self.types = ContentRules.of(allowed_types=types).allowed_types

    def check(self, upload: FileStorage) -> None:
        types = self.types
        if types is None:
            types = self._setting("ALLOWED_TYPES")
        if types is None:
            return
        filename = recorded_filename(upload.filename or "upload")
        # The name save() stores it under, not the raw one: else the form refuses files
        # save() takes ("cat.png."), and lets through names save() then refuses.
        declared = guess_content_type(stored_name(upload.filename or "upload"))
        stream = cast(BinaryIO, upload.stream)
        head, same = read_head(stream)
        if same is not stream:  # not seekable: the head is read for good; keep it readable
            upload.stream = same
        check_type(head, declared, types, filename)


class StoreMaxSize(_StoreCheck):
    """The file may have at most ``max_size`` bytes.

    :param max_size: the limit in bytes; default: the store's ``STORE_MAX_SIZE``.
    :param store: the store whose setting is the default (default: the default store).
    :param message: the error to show instead of the check's own.
    :raises InvalidArgumentError: when built with a size that is not a byte count.
    """

    def __init__(
        self, max_size: int | None = None, *, store: str | None = None, message: str | None = None
    ) -> None:
        super().__init__(store=store, message=message)
        self.max_size = ContentRules.of(max_size=max_size).max_size

    def check(self, upload: FileStorage) -> None:
        limit = self.max_size if self.max_size is not None else self._setting("MAX_SIZE")
        extent = seekable_extent(cast(BinaryIO, upload.stream))
        if limit is None or extent is None:
            return  # an unseekable stream is counted by save() while it is copied
        check_size(extent[1], limit, recorded_filename(upload.filename or "upload"))
