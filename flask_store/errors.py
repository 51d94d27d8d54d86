"""HTTP answers for Flask-Store's errors, so a view that saves a file never answers ``500``
for a bad upload or a store in trouble.

With ``STORE_HANDLE_ERRORS`` (on by default) :meth:`~flask_store.Store.init_app` registers
:func:`handle_store_error` as a Flask error handler for each class of :data:`ANSWERS`:

- ``400 Bad Request``: :class:`~flask_store.exceptions.InvalidFileError` (a filename that
  is unusable, an empty upload...), :class:`~flask_store.exceptions.InvalidKeyError`,
  :class:`~flask_store.exceptions.InvalidArgumentError`;
- ``413 Content Too Large``: :class:`~flask_store.exceptions.FileTooLargeError`;
- ``415 Unsupported Media Type``: :class:`~flask_store.exceptions.FileTypeRejectedError`;
- ``507 Insufficient Storage``: :class:`~flask_store.exceptions.StorageFullError`;
- ``503 Service Unavailable``: :class:`~flask_store.exceptions.StoreUnavailableError` (a
  remote store that is down, a missing bucket, refused credentials).

The body is a short HTML page, or JSON (``{"error": ..., "message": ..., "status": ...}``)
when the request's ``Accept`` header prefers ``application/json``. A client error says the
exception's message with any absolute path taken out; a server-side one (``507``, ``503``)
says a fixed sentence and logs the exception for the operator. No body ever carries a server
path, a traceback or an exception's class.

The app's own handlers win: none is registered for a class that the app already handles
(itself or through a Flask-Store base class such as ``StoreError``), one the app registers
later for the same class replaces it, and one the app registers later for a Flask-Store base
class is called in its place. Blueprint handlers come first anyway, as Flask looks there
before the app's.

.. versionadded:: 0.2
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app, jsonify, request
from markupsafe import escape
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wrappers import Response

from .exceptions import (
    FileTooLargeError,
    FileTypeRejectedError,
    InvalidArgumentError,
    InvalidFileError,
    InvalidKeyError,
    NotConfiguredError,
    StorageFullError,
    StoreError,
    StoreUnavailableError,
)

__all__ = ["ANSWERS", "Answer", "error_response", "handle_store_error", "register_error_handlers"]

#: The setting that turns the handlers on (the default) or off.
SETTING = "STORE_HANDLE_ERRORS"
#: Longest message a body carries; a client's huge filename is not echoed whole.
MAX_MESSAGE_CHARS = 300

ErrorHandler = Callable[[Any], Any]


@dataclass(frozen=True)
class Answer:
    """How one kind of error is answered.

    :param status: the HTTP status.
    :param message: a fixed sentence said instead of the error's own message, for trouble on
        the server's side that the client can do nothing about and need not know the details
        of; ``None`` says the error's message.
    """

    status: int
    message: str | None = None


#: The answer to each error class; the most specific class of an error decides.
ANSWERS: Mapping[type[StoreError], Answer] = {
    InvalidFileError: Answer(400),
    InvalidKeyError: Answer(400),
    InvalidArgumentError: Answer(400),
    FileTooLargeError: Answer(413),
    FileTypeRejectedError: Answer(415),
    StorageFullError: Answer(507, "There is no room left to store the file."),
    StoreUnavailableError: Answer(
        503, "The file store cannot be reached right now. Please try again later."
    ),
}

# A path from the root: a slash at the start or after a space, quote, bracket, "=" or ","
# (so not "a/b", "../x", "</b>" or the path of "http://host/x"), then a path character.
_ABSOLUTE_PATH = re.compile(r"(?:^|(?<=[\s'\"(\[=,]))/[^\s'\"/<>()\[\]]+(?:/[^\s'\"/<>()\[\]]*)*")

_PAGE = """<!doctype html>
<html lang=en>
<title>{status} {reason}</title>
<h1>{reason}</h1>
<p>{message}</p>
"""


def register_error_handlers(app: Flask) -> None:
    """Answer Flask-Store's errors over HTTP in ``app``, unless ``STORE_HANDLE_ERRORS`` is off.

    Called by :meth:`~flask_store.Store.init_app`. A class the app already handles (itself,
    or through a Flask-Store base class) gets no handler from here.

    :raises NotConfiguredError: when ``STORE_HANDLE_ERRORS`` is not a bool.
    """
    enabled = app.config.get(SETTING, True)
    if not isinstance(enabled, bool):
        raise NotConfiguredError(f"{SETTING} must be bool, not {enabled!r}.")
    if not enabled:
        return
    for error_class in ANSWERS:
        if _apps_own_handler(app, error_class) is None:
            app.register_error_handler(error_class, handle_store_error)


def handle_store_error(error: StoreError) -> Any:
    """The Flask error handler: the app's own handler for a base class, else our answer."""
    theirs = _apps_own_handler(current_app, type(error))
    if theirs is not None:
        return current_app.ensure_sync(theirs)(error)
    answer = answer_for(error)
    if answer.status >= 500:
        current_app.logger.error(
            "Flask-Store answered %d to %s %s",
            answer.status,
            request.method,
            request.path,
            exc_info=error,
        )
    return error_response(answer.status, answer.message or public_message(error))


def answer_for(error: BaseException) -> Answer:
    """The answer of the most specific class of ``error`` that :data:`ANSWERS` lists.

    >>> answer_for(FileTooLargeError("too big")).status
    413
    >>> answer_for(InvalidFileError("no name")).status
    400
    """
    for cls in type(error).__mro__:
        answer = ANSWERS.get(cls)
        if answer is not None:
            return answer
    return Answer(500, HTTP_STATUS_CODES[500])


def public_message(error: BaseException) -> str:
    """The message of ``error`` as a client may read it: no absolute path, not too long.

    >>> public_message(InvalidFileError("Cannot read '/srv/app/tmp/x1' for 'cat.jpg'."))
    "Cannot read '…' for 'cat.jpg'."
    """
    text = _ABSOLUTE_PATH.sub("…", " ".join(str(error).split()))
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1] + "…"
    return text or HTTP_STATUS_CODES.get(answer_for(error).status, "Error")


def error_response(status: int, message: str) -> Response:
    """A ``status`` response saying ``message``: JSON when the request's ``Accept`` header
    prefers it to HTML, else a short HTML page (the message escaped)."""
    reason = HTTP_STATUS_CODES.get(status, "Error")
    response: Response
    if _prefers_json():
        response = jsonify(error=reason, message=message, status=status)
    else:
        page = _PAGE.format(status=status, reason=escape(reason), message=escape(message))
        response = current_app.response_class(page, mimetype="text/html")
    response.status_code = status
    return response


def _prefers_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def _apps_own_handler(app: Flask, error_class: type[BaseException]) -> ErrorHandler | None:
    """The app-wide handler the app registered for ``error_class`` or a Flask-Store base
    class of it (not ours); Flask's own lookup would prefer ours, the more specific one."""
    handlers = app.error_handler_spec.get(None, {}).get(None, {})
    for cls in error_class.__mro__:
        if not issubclass(cls, StoreError):
            continue
        handler = handlers.get(cls)
        if handler is not None and handler is not handle_store_error:
            return handler
    return None
