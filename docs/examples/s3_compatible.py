"""Flask-Store on an S3-compatible server (MinIO here) that lacks some of AWS's features."""

from __future__ import annotations

from typing import Any

from flask import Flask

from flask_store import Store

MINIO = {
    "STORE_PROVIDER": "s3",
    "STORE_S3_ENDPOINT_URL": "http://localhost:9000",
    "STORE_S3_REGION": "us-east-1",
    "STORE_S3_BUCKET": "uploads",
    "STORE_S3_ACCESS_KEY": "minio-user",
    "STORE_S3_SECRET_KEY": "minio-password",
    # Path-style URLs (http://localhost:9000/uploads/<key>): "auto" picks them anyway.
    "STORE_S3_ADDRESSING_STYLE": "path",
    # Only for servers that refuse boto3's default CRC32 checksums:
    "STORE_S3_CHECKSUM_CALCULATION": "when_required",
    "STORE_S3_CHECKSUM_VALIDATION": "when_required",
    # Only for servers without conditional writes (the default "probe" refuses to save
    # there rather than risk an overwrite); read the caveat of "off" first:
    "STORE_S3_CONDITIONAL_WRITES": "off",
}

store = Store()


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(MINIO)
    app.config.update(overrides or {})
    store.init_app(app)
    return app
