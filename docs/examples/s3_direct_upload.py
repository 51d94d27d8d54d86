"""Direct uploads: the browser sends a large file straight to the bucket, the app checks it."""

from __future__ import annotations

from typing import Any

from flask import Flask, abort, request, session

from flask_store import Store
from flask_store.exceptions import FileNotFoundInStoreError, UploadRejectedError

store = Store()


def create_app(config: dict[str, Any]) -> Flask:
    app = Flask(__name__)
    app.config.update(STORE_PROVIDER="s3", STORE_PATH="videos", VIDEO_MAX_BYTES=2 * 1024**3)
    app.config.update(config)  # SECRET_KEY, STORE_S3_BUCKET, STORE_S3_REGION...
    store.init_app(app)

    @app.post("/uploads")
    def start_upload() -> dict[str, Any]:
        """Step 1: sign a form for one file, and remember its key in the user's session."""
        upload = store.Provider().presigned_upload(
            request.json["filename"],
            max_size=app.config["VIDEO_MAX_BYTES"],
            content_type="video/mp4",
        )
        session["uploads"] = [*session.get("uploads", []), upload.key]
        return {"url": upload.url, "fields": dict(upload.fields), "key": upload.key}

    @app.post("/uploads/confirm")
    def confirm_upload() -> tuple[dict[str, Any], int]:
        """Step 2: the browser has posted the file to the bucket; check it and keep it."""
        key = request.json["key"]
        if key not in session.get("uploads", []):
            abort(404)  # only keys this user was given
        session["uploads"] = [k for k in session["uploads"] if k != key]
        try:
            video = store.Provider().confirm_upload(key)
        except FileNotFoundInStoreError:
            return {"error": "Nothing was uploaded."}, 400
        except UploadRejectedError as exc:
            return {"error": str(exc)}, 400  # too large or not a video: already deleted
        return {"name": video.name, "size": video.size, "url": video.relative_url()}, 201

    return app
