"""The pages: the gallery with its upload form, the upload endpoint and the delete buttons.

Uploads answer two kinds of client. A plain form post (no JavaScript) gets the usual
post/redirect/get with a flash message, or the page again with the errors. The drag-and-drop
script asks for JSON and gets the new gallery card (rendered by the same template) or the
error messages, so both paths share one validation and one template.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    session,
    url_for,
)
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response

from flask_store import FileWrapper
from flask_store.exceptions import (
    FileNotFoundInStoreError,
    InvalidFileError,
    InvalidKeyError,
    StoreError,
)

from .extensions import store
from .formatting import human_size, is_thumbnailable, type_label
from .forms import DeleteForm, UploadForm, accept_attribute

bp = Blueprint("gallery", __name__)
bp.add_app_template_filter(human_size, "human_size")
bp.add_app_template_filter(is_thumbnailable, "thumbnailable")
bp.add_app_template_global(type_label, "type_label")


def wants_json() -> bool:
    """Whether the client (the upload script) asked for JSON rather than a page."""
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def stored_files() -> list[FileWrapper]:
    """Every file in the store, newest first: the store itself is the list, no database."""
    provider = store.Provider()
    files = []
    for key in provider:
        wrapper = provider.file(key)
        try:
            wrapper.info  # noqa: B018 - fetch metadata now; skip files deleted meanwhile
        except FileNotFoundInStoreError:
            continue
        files.append(wrapper)
    files.sort(key=lambda f: f.last_modified, reverse=True)
    return files


def render_gallery(form: UploadForm, errors: list[str], status: int = 200) -> tuple[str, int]:
    """The page, with ``errors`` shown above the upload form."""
    html = render_template(
        "index.html",
        form=form,
        errors=errors,
        files=stored_files(),
        delete_form=DeleteForm(),
        accept=accept_attribute(),
        max_bytes=current_app.config["UPLOAD_MAX_BYTES"],
        store_kind=type(store.Provider()).__name__,
    )
    return html, status


def upload_failed(form: UploadForm, errors: list[str], status: int) -> Any:
    """Answer a refused upload in the shape the client asked for."""
    if wants_json():
        return jsonify(ok=False, errors=errors), status
    return render_gallery(form, errors, status)


@bp.get("/")
def index() -> Any:
    """The gallery and the upload form."""
    return render_gallery(UploadForm(), [])


@bp.post("/upload")
def upload() -> Any:
    """Validate the form, save the file in the store, show it."""
    form = UploadForm()
    if not form.validate_on_submit():
        return upload_failed(form, form.error_messages(), 400)
    try:
        saved = store.Provider().save(form.file.data)
    except InvalidFileError as exc:
        return upload_failed(form, [str(exc)], 400)
    except StoreError as exc:
        current_app.logger.exception("Saving an upload failed")
        return upload_failed(form, [f"The file could not be stored: {exc}"], 503)
    message = f"Uploaded “{saved.filename}” ({human_size(saved.size)})."
    if wants_json():
        card = render_template("_file_card.html", file=saved, delete_form=DeleteForm())
        return jsonify(ok=True, message=message, card=card, url=saved.relative_url()), 201
    flash(message, "success")
    return redirect(url_for(".index"))


@bp.post("/files/<path:key>/delete")
def delete(key: str) -> Response:
    """Delete one file (POST with the CSRF token of the gallery page)."""
    if not DeleteForm().validate_on_submit():
        flash("This page had expired, so nothing was deleted. Please try again.", "error")
        return redirect(url_for(".index"))
    try:
        wrapper = store.Provider().file(key)
        filename = wrapper.filename
    except InvalidKeyError:
        abort(404)
    except FileNotFoundInStoreError:
        flash("That file had already been deleted.", "info")
        return redirect(url_for(".index"))
    wrapper.delete()
    flash(f"Deleted “{filename}”.", "success")
    return redirect(url_for(".index"))


@bp.app_errorhandler(RequestEntityTooLarge)
def too_large(error: RequestEntityTooLarge) -> Any:
    """A request body over ``MAX_CONTENT_LENGTH``: say what the limit is."""
    limit = human_size(current_app.config["UPLOAD_MAX_BYTES"])
    message = f"That file is too large: files may be up to {limit}."
    if wants_json():
        return jsonify(ok=False, errors=[message]), 413
    flash(message, "error")
    return redirect(url_for(".index"))


# -- the "large file" page: resumable uploads with tus ---------------------------------------

#: Session mark set by the large-file page: only its visitors may start resumable uploads.
LARGE_UPLOADS_MARK = "large_uploads"
#: Uppy (https://uppy.io), the page's uploader: its tus plugin sends the file in resumable
#: pieces and its status bar shows the progress. Its prebuilt browser bundle (``window.Uppy``)
#: and style sheet are installed by ``make run`` / ``make test`` with npm into the virtualenv
#: (pinned in the Makefile: UPPY_VERSION) and served by the app, so the page needs no CDN.
#: Set ``UPPY_FOLDER`` to serve another copy of ``uppy/dist``.
UPPY_FOLDER = os.path.join(sys.prefix, "node", "node_modules", "uppy", "dist")
#: The only files of that folder the app serves: route name -> file name (fixed, never a
#: name taken from the request).
UPPY_FILES = {"script": "uppy.min.js", "style": "uppy.min.css"}


def uppy_folder() -> str:
    """The folder holding Uppy's bundle: ``UPPY_FOLDER`` in the app's config, or the venv's."""
    return str(current_app.config.get("UPPY_FOLDER") or UPPY_FOLDER)


def uppy_installed() -> bool:
    """Whether every file the page loads from Uppy is there (npm may be missing)."""
    folder = uppy_folder()
    return all(os.path.isfile(os.path.join(folder, name)) for name in UPPY_FILES.values())


def send_uppy_file(name: str, mimetype: str) -> Response:
    """One of Uppy's fixed files from :func:`uppy_folder`, or 404 when it is not installed."""
    path = os.path.join(uppy_folder(), name)
    if not os.path.isfile(path):
        abort(404)
    return send_file(path, mimetype=mimetype, max_age=3600)


@bp.get("/large")
def large() -> Any:
    """A page that sends one large file in resumable pieces (``STORE_TUS_URL_PREFIX``)."""
    session[LARGE_UPLOADS_MARK] = True
    return render_template(
        "large.html",
        endpoint=current_app.config["STORE_TUS_URL_PREFIX"] + "/",
        chunk_size=current_app.config.get("LARGE_UPLOAD_CHUNK_BYTES", 8 * 1024 * 1024),
        max_bytes=current_app.config["STORE_TUS_MAX_SIZE"],
        uppy_available=uppy_installed(),
    )


@bp.get("/vendor/uppy.min.js")
def uppy_script() -> Response:
    """Uppy's browser bundle (it sets ``window.Uppy``), served from the virtualenv."""
    return send_uppy_file(UPPY_FILES["script"], "text/javascript")


@bp.get("/vendor/uppy.min.css")
def uppy_style() -> Response:
    """Uppy's style sheet (its status bar), served from the virtualenv."""
    return send_uppy_file(UPPY_FILES["style"], "text/css")


@store.authorize_upload
def allow_resumable_upload(metadata: Mapping[str, str], length: int | None) -> bool:
    """Let visitors of the large-file page start uploads (a real app checks its user)."""
    return session.get(LARGE_UPLOADS_MARK) is True
