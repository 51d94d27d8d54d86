"""The photo gallery: images kept on database rows (Flask-SQLAlchemy on SQLite).

Each photo is a row of :class:`~example_app.models.Photo` whose ``image`` column is a
:class:`~flask_store.sqla.StoredImage`: assigning the upload and committing saves the image
and its thumbnail, a file that is not a real image is refused when the session flushes, and
deleting the row deletes its files once the commit succeeds.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from werkzeug.wrappers import Response

from flask_store.exceptions import InvalidFileError, StoreError

from .extensions import db
from .forms import DeleteForm, PhotoForm
from .models import Photo

bp = Blueprint("photos", __name__, url_prefix="/photos")


def render_photos(form: PhotoForm, errors: list[str], status: int = 200) -> tuple[str, int]:
    """The gallery page, newest photo first, with ``errors`` above the form."""
    photos = db.session.scalars(db.select(Photo).order_by(Photo.id.desc())).all()
    html = render_template(
        "photos.html", form=form, errors=errors, photos=photos, delete_form=DeleteForm()
    )
    return html, status


@bp.get("/")
def index() -> Any:
    """The thumbnails and the upload form."""
    return render_photos(PhotoForm(), [])


@bp.post("/")
def upload() -> Any:
    """Save the image on a new row; the commit keeps it, any failure leaves nothing."""
    form = PhotoForm()
    if not form.validate_on_submit():
        return render_photos(form, form.error_messages(), 400)
    photo = Photo(image=form.photo.data)
    db.session.add(photo)
    try:
        db.session.commit()  # the flush checks and saves the image, then the row commits
    except InvalidFileError as exc:  # InvalidImageError: not a real image
        db.session.rollback()
        return render_photos(form, [str(exc)], 400)
    except StoreError as exc:
        db.session.rollback()
        return render_photos(form, [f"The image could not be stored: {exc}"], 503)
    flash(f"Added “{photo.image.filename}”.", "success")
    return redirect(url_for(".index"))


@bp.post("/<int:photo_id>/delete")
def delete(photo_id: int) -> Response:
    """Delete the row; its image and thumbnail are deleted after the commit."""
    if not DeleteForm().validate_on_submit():
        flash("This page had expired, so nothing was deleted. Please try again.", "error")
        return redirect(url_for(".index"))
    photo = db.session.get(Photo, photo_id)
    if photo is None:
        abort(404)
    filename = photo.image.filename
    db.session.delete(photo)
    db.session.commit()
    flash(f"Deleted “{filename}”.", "success")
    return redirect(url_for(".index"))
