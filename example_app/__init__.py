"""The Flask-Store example app: upload files, see them in a gallery, delete them; and a photo
gallery whose images live on database rows (``/photos``, Flask-SQLAlchemy on SQLite).

Run it with ``make run`` (local store in the instance folder) or ``make run-s3`` (S3 on a moto
server). ``create_app`` is the application factory ``flask --app example_app`` finds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

from . import photos, views
from .extensions import db, store
from .settings import DEFAULTS, load_or_create_secret_key, store_settings_from_env


def create_app(config: Mapping[str, Any] | None = None, instance_path: str | None = None) -> Flask:
    """Build the app: defaults, then ``STORE_*`` and ``FLASK_*`` environment, then ``config``.

    :param config: settings that win over everything else (tests pass theirs here).
    :param instance_path: the instance folder (uploads and the dev secret key live there);
        Flask's default, ``instance/`` beside the package, when not given.
    """
    app = Flask(__name__, instance_path=instance_path, instance_relative_config=True)
    app.config.from_mapping(DEFAULTS)
    app.config.update(store_settings_from_env())
    app.config.from_prefixed_env()  # FLASK_SECRET_KEY and friends
    if config:
        app.config.update(config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = load_or_create_secret_key(app.instance_path)
    if app.config.get("MAX_CONTENT_LENGTH") is None:
        # Room for the multipart envelope around the largest file the form accepts, so a
        # file just over the limit gets the form's own message rather than a bare 413.
        app.config["MAX_CONTENT_LENGTH"] = app.config["UPLOAD_MAX_BYTES"] + 64 * 1024
    set_photo_defaults(app)
    store.init_app(app)
    db.init_app(app)
    with app.app_context():
        db.create_all()  # the photo gallery's table, on first start
    app.register_blueprint(views.bp)
    app.register_blueprint(photos.bp)
    return app


def set_photo_defaults(app: Flask) -> None:
    """The photo gallery's database (SQLite in the instance folder) and its ``photos``
    store (a folder there too), unless the config names others."""
    os.makedirs(app.instance_path, exist_ok=True)
    database = os.path.join(app.instance_path, "example.db")
    app.config.setdefault("SQLALCHEMY_DATABASE_URI", f"sqlite:///{database}")
    stores = dict(app.config.get("STORE_STORES") or {})
    stores.setdefault("photos", {"PROVIDER": "local", "PATH": "photos"})
    app.config["STORE_STORES"] = stores


__all__ = ["create_app", "store"]
