"""Depot's several storages and aliases, as Flask-Store settings."""

from __future__ import annotations

from typing import Any

from flask import Flask

from flask_store import Store

store = Store()


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config["STORE_PATH"] = "/var/www/lfs"  # the default store, like depot's "default"
    app.config["STORE_STORES"] = {
        "local_avatars": {"PROVIDER": "local", "PATH": "/var/www/avatars"},
        "backup_avatars": {"PROVIDER": "local", "PATH": "/var/www/avatars_backup"},
    }
    app.config["STORE_ALIASES"] = {"avatar": "local_avatars"}  # DepotManager.alias()
    app.config.update(test_config or {})
    store.init_app(app)
    return app
