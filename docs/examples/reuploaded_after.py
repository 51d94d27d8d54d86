"""After: Flask-Store, serving at the same URLs as the UploadSet did."""

from __future__ import annotations

from typing import Any

from flask import Flask, abort, request

from flask_store import Store

store = Store()
IMAGES = ("jpg", "jpe", "jpeg", "png", "gif", "svg", "bmp", "webp")


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config["STORE_PATH"] = "/var/uploads/photos"
    app.config["STORE_URL_PREFIX"] = "/_uploads/photos"  # old links keep working
    app.config.update(test_config or {})
    store.init_app(app)

    @app.post("/photos")
    def upload() -> str:
        file = request.files["photo"]
        # An UploadSet refused other extensions; Flask-Store leaves that policy to the app.
        if not (file.filename or "").lower().endswith(tuple(f".{ext}" for ext in IMAGES)):
            abort(400, "Photos only.")
        return store.Provider().save(file).absolute_url()

    return app
