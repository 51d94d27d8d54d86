"""The Flask-Store example app: upload files, see them in a gallery, delete them.

Run it with ``make run`` (local store in the instance folder) or ``make run-s3`` (S3 on a moto
server). ``create_app`` is the application factory ``flask --app example_app`` finds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from . import views
from .extensions import store
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
    store.init_app(app)
    app.register_blueprint(views.bp)
    return app


__all__ = ["create_app", "store"]
