"""The S3 contract against any server: an endpoint given in the environment.

Set these and ``pytest tests/test_contract.py -k s3-external`` runs the whole store contract
against that server (MinIO, Ceph, R2, an appliance...)::

    FLASK_STORE_TEST_S3_ENDPOINT=https://minio.example.com:9000   # required
    FLASK_STORE_TEST_S3_BUCKET=flask-store-tests                  # required, must exist
    FLASK_STORE_TEST_S3_ACCESS_KEY=...  FLASK_STORE_TEST_S3_SECRET_KEY=...
    FLASK_STORE_TEST_S3_REGION=us-east-1                          # default us-east-1
    FLASK_STORE_TEST_S3_CA_BUNDLE=/path/to/ca.pem                 # a private CA, if any

and, to try the settings an S3-compatible server may need, any of
``FLASK_STORE_TEST_S3_CONDITIONAL_WRITES``, ``_CHECKSUM_CALCULATION``,
``_CHECKSUM_VALIDATION``, ``_ADDRESSING_STYLE`` (the ``STORE_S3_*`` values).

Tests never create or delete the bucket: each test keeps its files below a prefix of its own,
``flask-store-tests/<random>/``, and everything below it is deleted when the test ends. Other
objects in the bucket are left alone and not looked at.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from flask_store.stores.base import BaseStore
from flask_store.stores.s3 import S3Store

ENV = "FLASK_STORE_TEST_S3_"
#: Where each test's prefix is made, below the bucket's root.
ROOT = "flask-store-tests"
#: ``STORE_S3_*`` settings that may come from the environment as they are.
PASSED_SETTINGS = (
    "CONDITIONAL_WRITES",
    "CHECKSUM_CALCULATION",
    "CHECKSUM_VALIDATION",
    "ADDRESSING_STYLE",
)


def _env(name: str) -> str | None:
    return os.environ.get(ENV + name) or None


def configured() -> bool:
    """Whether an external endpoint is set in the environment."""
    return _env("ENDPOINT") is not None


def settings() -> dict[str, Any]:
    """The S3Store settings of the external endpoint (without the per-test prefix)."""
    missing = [name for name in ("ENDPOINT", "BUCKET") if _env(name) is None]
    if missing:
        raise RuntimeError(f"Set {', '.join(ENV + name for name in missing)} as well.")
    values: dict[str, Any] = {
        "s3_endpoint_url": _env("ENDPOINT"),
        "s3_bucket": _env("BUCKET"),
        "s3_region": _env("REGION") or "us-east-1",
        "s3_access_key": _env("ACCESS_KEY"),
        "s3_secret_key": _env("SECRET_KEY"),
    }
    for name in PASSED_SETTINGS:
        if _env(name) is not None:
            values[f"s3_{name.lower()}"] = _env(name)
    return values


def scope_of(store: S3Store) -> str:
    """The test's own prefix: the store's ``STORE_PATH`` without its last part."""
    return store.settings.prefix.rpartition("/")[0] + "/"


def contents(store: S3Store) -> list[str]:
    """Every object below the test's prefix: relative to ``STORE_PATH``, or with a leading
    ``/`` relative to the test's prefix when outside ``STORE_PATH`` (a leak)."""
    scope, root = scope_of(store), store.settings.prefix + "/"
    pages = store.client.get_paginator("list_objects_v2").paginate(
        Bucket=store.bucket, Prefix=scope
    )
    keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
    shown = [key[len(root) :] if key.startswith(root) else "/" + key[len(scope) :] for key in keys]
    return sorted(shown)


def _remove_scope(store: S3Store) -> None:
    """Delete every object and unfinished upload below the test's prefix."""
    scope = scope_of(store)
    pages = store.client.get_paginator("list_objects_v2").paginate(
        Bucket=store.bucket, Prefix=scope
    )
    for page in pages:
        for item in page.get("Contents", []):
            store.client.delete_object(Bucket=store.bucket, Key=item["Key"])
    try:
        uploads = store.client.list_multipart_uploads(Bucket=store.bucket, Prefix=scope)
    except store.client.exceptions.ClientError:
        return  # a server that cannot list them (s3rver) cannot be cleaned of them either
    for upload in uploads.get("Uploads", []):
        store.client.abort_multipart_upload(
            Bucket=store.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
        )


@contextmanager
def external_store(request: pytest.FixtureRequest, more: dict[str, Any]) -> Iterator[BaseStore]:
    """A store on the external endpoint below a fresh prefix, emptied when the block ends."""
    ca_bundle = _env("CA_BUNDLE")
    if ca_bundle is not None:
        request.getfixturevalue("monkeypatch").setenv("AWS_CA_BUNDLE", ca_bundle)
    store = S3Store(path=f"{ROOT}/{uuid.uuid4().hex}/files", **{**settings(), **more})
    try:
        yield store
    finally:
        _remove_scope(store)
