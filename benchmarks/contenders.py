"""The contenders: one minimal Flask app per library, all doing the same job.

Each app answers ``POST /upload`` (form field ``file``) by saving the upload under a name no
other upload has, and replies with the URL path that serves it; a ``GET`` of that path
returns the file. :func:`wsgi_app` builds the same apps for the real-server runs, in a
gunicorn worker (``benchmarks.contenders:wsgi_app('plain', '/tmp/folder')``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from flask import Flask, Response, request, send_from_directory
from flask.testing import FlaskClient
from werkzeug.datastructures import FileStorage
from werkzeug.utils import secure_filename

#: Saves a parsed upload (inside a request context) and returns the URL path serving it.
SaveStep = Callable[[FileStorage], str]


@dataclass
class Contender:
    """One library's app, and how to call its save step directly."""

    name: str
    label: str
    app: Flask
    folder: str
    save: SaveStep
    #: Whether its serving honours ``Range`` (filedepot's middleware always sends 200).
    ranges: bool = True
    #: Whether its serving route redirects elsewhere instead of sending bytes (S3).
    redirects: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def stored(self, client: FlaskClient, url: str) -> bytes:
        """The bytes stored for the upload served at ``url`` (to check, never timed).

        Local contenders are asked through their own serving route; S3 through the bucket.
        """
        read = self.extra.get("read")
        if read is not None:
            data: bytes = read(url)
            return data
        response = client.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} answered {response.status_code}")
        return response.get_data()

    def clear(self) -> None:
        """Delete every stored file (between samples, untimed) but keep the folder."""
        clear_folder(self.folder)
        reset = self.extra.get("reset")
        if reset is not None:
            reset()


def clear_folder(folder: str) -> None:
    """Delete everything in ``folder`` but the folder itself (untimed, between samples)."""
    for entry in os.scandir(folder):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)


def _upload_route(app: Flask, save: SaveStep) -> None:
    @app.post("/upload")
    def upload() -> str:
        return save(request.files["file"])


def plain(folder: str) -> Contender:
    """The baseline: ``FileStorage.save`` under a unique name, ``send_from_directory``."""
    app = Flask("plain")

    def save(upload: FileStorage) -> str:
        name = f"{uuid.uuid4().hex}_{secure_filename(upload.filename or 'file')}"
        upload.save(os.path.join(folder, name))
        return f"/files/{name}"

    @app.get("/files/<path:name>")
    def serve(name: str) -> Response:
        return send_from_directory(folder, name)

    _upload_route(app, save)
    return Contender("plain", "plain Flask", app, folder, save)


def reuploaded(folder: str) -> Contender:
    """Flask-Reuploaded: an ``UploadSet`` saved and served by its own blueprint."""
    from flask_uploads import ALL, UploadSet, configure_uploads

    app = Flask("reuploaded")
    app.config.update(UPLOADED_FILES_DEST=folder, UPLOADS_AUTOSERVE=True)
    files = UploadSet("files", ALL)
    configure_uploads(app, files)

    def save(upload: FileStorage) -> str:
        return f"/_uploads/files/{files.save(upload)}"

    _upload_route(app, save)
    return Contender("reuploaded", "Flask-Reuploaded", app, folder, save)


def depot(folder: str) -> Contender:
    """filedepot: a local depot, served by its WSGI middleware."""
    from depot.manager import DepotManager  # type: ignore[import-untyped]

    app = Flask("depot")
    name = f"bench{uuid.uuid4().hex[:8]}"
    DepotManager.configure(name, {"depot.storage_path": folder})
    app.wsgi_app = DepotManager.make_middleware(app.wsgi_app)  # type: ignore[method-assign]

    def save(upload: FileStorage) -> str:
        return f"/depot/{name}/{DepotManager.get(name).create(upload)}"

    _upload_route(app, save)
    return Contender("depot", "filedepot", app, folder, save, ranges=False)


def flask_store_local(folder: str) -> Contender:
    """Flask-Store with its default LocalStore (uploads spooled into the store's folder;
    files served by the fast path, ``STORE_SERVE_FAST = "auto"``: this app has no hooks)."""
    return _flask_store("store_local", "Flask-Store LocalStore", folder, "auto")


def flask_store_view(folder: str) -> Contender:
    """The same, with ``STORE_SERVE_FAST = False``: every file served by the Flask view."""
    return _flask_store("store_view", "Flask-Store, Flask view", folder, False)


def _flask_store(name: str, label: str, folder: str, serve_fast: bool | str) -> Contender:
    from flask_store import Store

    app = Flask(f"flask_store_{name}")
    app.config.update(STORE_PATH=folder, STORE_SERVE_FAST=serve_fast)
    store = Store(app)

    def save(upload: FileStorage) -> str:
        return store.Provider().save(upload).relative_url()

    _upload_route(app, save)
    return Contender(name, label, app, folder, save)


def s3_available() -> bool:
    """Whether this checkout has an S3 store to measure."""
    return importlib.util.find_spec("flask_store.stores.s3") is not None


#: Region and credentials of every S3 client in the harness: a local moto server, never AWS.
S3_REGION = "us-east-1"
S3_SECRET = "bench"


def s3_client(endpoint_url: str) -> Any:
    """A bare boto3 S3 client for the moto server at ``endpoint_url``."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=S3_REGION,
        aws_access_key_id=S3_SECRET,
        aws_secret_access_key=S3_SECRET,
    )


def s3_store_config(bucket: str, endpoint_url: str) -> dict[str, str]:
    """The ``STORE_*`` settings of an S3Store in ``bucket`` on the moto server."""
    return {
        "STORE_PROVIDER": "s3",
        "STORE_S3_BUCKET": bucket,
        "STORE_S3_REGION": S3_REGION,
        "STORE_S3_ACCESS_KEY": S3_SECRET,
        "STORE_S3_SECRET_KEY": S3_SECRET,
        "STORE_S3_ENDPOINT_URL": endpoint_url,
    }


def flask_store_s3(folder: str, endpoint_url: str) -> Contender:
    """Flask-Store's S3Store against an S3 server (a local moto server in the harness)."""
    from flask_store import Store

    client = s3_client(endpoint_url)
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    app = Flask("flask_store_s3")
    app.config.update(s3_store_config(bucket, endpoint_url))
    store = Store(app)

    def save(upload: FileStorage) -> str:
        return store.Provider().save(upload).relative_url()

    prefix = f"{Store.registry(app).resolve(None).url_prefix}/"

    def read(url: str) -> bytes:
        key = unquote(url.removeprefix(prefix))
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        data: bytes = body.read()
        return data

    def empty_bucket() -> None:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=item["Key"])

    _upload_route(app, save)
    return Contender(
        "store_s3",
        "Flask-Store S3Store (moto server)",
        app,
        folder,
        save,
        redirects=True,
        extra={"reset": empty_bucket, "read": read},
    )


#: The local contenders by name, baseline first.
LOCAL_FACTORIES: Mapping[str, Callable[[str], Contender]] = {
    "plain": plain,
    "reuploaded": reuploaded,
    "depot": depot,
    "store_local": flask_store_local,
    "store_view": flask_store_view,
}
BASELINE = "plain"


def wsgi_app(name: str, folder: str) -> Any:
    """The WSGI callable of contender ``name`` storing into ``folder`` (for gunicorn)."""
    return LOCAL_FACTORIES[name](folder).app
