"""Before: Flask-Reuploaded, with an UploadSet for photos."""

from __future__ import annotations

from typing import Any

from flask import Flask, abort, request
from flask_uploads import IMAGES, UploadNotAllowed, UploadSet, configure_uploads

photos = UploadSet("photos", IMAGES)


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config["UPLOADED_PHOTOS_DEST"] = "/var/uploads/photos"
    app.config["UPLOADS_AUTOSERVE"] = True
    app.config.update(test_config or {})
    configure_uploads(app, photos)

    @app.post("/photos")
    def upload() -> str:
        try:
            filename = photos.save(request.files["photo"])
        except UploadNotAllowed:
            abort(400, "Photos only.")
        return photos.url(filename)

    return app
