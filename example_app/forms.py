"""The forms: one to upload a file, one (just a CSRF token) to delete one.

The limits come from the app config (``UPLOAD_MAX_BYTES``, ``UPLOAD_ALLOWED_EXTENSIONS``) and
are checked here, before anything reaches the store: Flask-Store itself stores whatever it is
given, safely named, and leaves the policy of what to accept to the app.
"""

from __future__ import annotations

from flask import current_app
from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, FileField, FileRequired, FileSize
from wtforms import Field

from .formatting import human_size


def allowed_extensions() -> tuple[str, ...]:
    """The extensions the current app accepts, lower case, without dots."""
    return tuple(ext.lower().lstrip(".") for ext in current_app.config["UPLOAD_ALLOWED_EXTENSIONS"])


def accept_attribute() -> str:
    """The file input's ``accept`` value, so the browser's picker offers the allowed types."""
    return ",".join(f".{ext}" for ext in allowed_extensions())


def _check_type(form: FlaskForm, field: Field) -> None:
    names = ", ".join(ext.upper() for ext in allowed_extensions())
    filename = getattr(field.data, "filename", "") or "This file"
    message = f"“{filename}” is not a type this site accepts. Allowed types: {names}."
    FileAllowed(allowed_extensions(), message=message)(form, field)


def _check_size(form: FlaskForm, field: Field) -> None:
    limit = current_app.config["UPLOAD_MAX_BYTES"]
    filename = getattr(field.data, "filename", "") or "This file"
    message = f"“{filename}” is too large: files may be up to {human_size(limit)}."
    FileSize(max_size=limit, message=message)(form, field)


class UploadForm(FlaskForm):
    """A single file, required, of an allowed type and size."""

    file = FileField(
        "Choose a file",
        validators=[FileRequired(message="Choose a file to upload."), _check_type, _check_size],
    )

    def error_messages(self) -> list[str]:
        """Every validation error as one flat list (CSRF problems included)."""
        return [message for messages in self.errors.values() for message in messages]


class PhotoForm(FlaskForm):
    """One image for the photo gallery; whether it is a real image is decided from its
    bytes when it is saved (:class:`~flask_store.sqla.StoredImage`), not here."""

    photo = FileField(
        "Choose an image",
        validators=[FileRequired(message="Choose an image to add."), _check_size],
    )

    def error_messages(self) -> list[str]:
        """Every validation error as one flat list (CSRF problems included)."""
        return [message for messages in self.errors.values() for message in messages]


class DeleteForm(FlaskForm):
    """No fields of its own: it carries the CSRF token that guards the delete buttons."""
