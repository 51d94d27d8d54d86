"""The app of the command-line page: uploads on disk, a backup folder, S3, and an outbox."""

from __future__ import annotations

from flask import Flask

from flask_store import Store

store = Store()

BUCKET = {"PROVIDER": "s3", "S3_BUCKET": "my-archive", "S3_REGION": "eu-west-1"}


def create_app(instance_path: str | None = None) -> Flask:
    app = Flask(__name__, instance_path=instance_path)
    app.config["STORE_DOMAIN"] = "https://www.example.com"  # the default store: <instance>/uploads
    app.config["STORE_STORES"] = {
        "backup": {"PROVIDER": "local", "PATH": "backup"},  # <instance>/backup
        "archive": {**BUCKET, "PATH": "archive"},  # s3://my-archive/archive/
        "outbox": {  # saved on disk, moved to S3 by `flask store transfer outbox --pending`
            "PROVIDER": "queued",
            "QUEUED_LOCAL": {"PROVIDER": "local", "PATH": "outbox"},
            "QUEUED_REMOTE": {**BUCKET, "PATH": "outbox"},
            "TRANSFER_DELAYED": True,
        },
    }
    store.init_app(app)
    return app
