"""Where the example app's settings come from: defaults, the environment, the instance folder."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from typing import Any

#: What the upload form accepts; change them in the config passed to ``create_app``.
DEFAULTS: Mapping[str, Any] = {
    "UPLOAD_MAX_BYTES": 20_000_000,  # 20 MB, as the page says
    "UPLOAD_ALLOWED_EXTENSIONS": [
        "png",
        "jpg",
        "jpeg",
        "gif",
        "webp",
        "avif",
        "pdf",
        "txt",
        "md",
        "csv",
        "json",
        "zip",
    ],
    "STORE_CACHE_MAX_AGE": 3600,
    # The "large file" page: resumable (tus) uploads of up to 2 GiB, sent in 8 MiB pieces.
    "STORE_TUS_URL_PREFIX": "/resumable",
    "STORE_TUS_MAX_SIZE": 2 * 1024**3,
    "LARGE_UPLOAD_CHUNK_BYTES": 8 * 1024 * 1024,
}


def store_settings_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``STORE_*`` environment variables as config values.

    Values are read as JSON when they are JSON (``STORE_SERVE=false``, ``STORE_CACHE_MAX_AGE=60``),
    else kept as strings, as Flask's ``from_prefixed_env`` does for ``FLASK_*`` variables. This
    is how ``make run-s3`` switches the app to S3 without editing a file.
    """
    environ = os.environ if environ is None else environ
    settings: dict[str, Any] = {}
    for name, raw in environ.items():
        if name.startswith("STORE_"):
            try:
                settings[name] = json.loads(raw)
            except ValueError:
                settings[name] = raw
    return settings


def load_or_create_secret_key(instance_path: str) -> str:
    """A development secret key kept in the instance folder.

    Kept on disk rather than made per process, so the reloader of ``flask run --debug`` does
    not invalidate the CSRF token of a page that is already open. Set ``FLASK_SECRET_KEY`` in
    production instead.
    """
    os.makedirs(instance_path, exist_ok=True)
    path = os.path.join(instance_path, "secret_key")
    try:
        with open(path, encoding="ascii") as existing:
            key = existing.read().strip()
        if key:
            return key
    except FileNotFoundError:
        pass
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as new:
        new.write(key)
    return key
