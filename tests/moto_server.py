"""A real moto S3 server for tests: a separate process on a free 127.0.0.1 port, over HTTP.

Use the session fixture in a test module (or a conftest)::

    from tests.moto_server import create_bucket, moto_server  # noqa: F401

    def test_upload(moto_server: str) -> None:
        bucket = create_bucket(moto_server)
        ...  # S3Store(s3_endpoint_url=moto_server, s3_bucket=bucket, s3_region=REGION)

The server starts once per test session (the first test that asks for it) and stops when the
session ends. Tests stay independent by each creating a bucket of their own with
:func:`create_bucket`. Nothing leaves the machine, and the server process gets no AWS
credentials or config from the environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from typing import TYPE_CHECKING

import boto3
import pytest

from tests.redis_server import free_port
from tests.redis_server import stop_process as stop_process  # for s3rver_server, test_celery

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

HOST = "127.0.0.1"
REGION = "us-east-1"
#: Credentials moto accepts (any will do); never real ones.
ACCESS_KEY = "testing"
SECRET_KEY = "testing"
_STARTUP_SECONDS = 30.0


class MotoServer:
    """A ``python -m moto.server`` process; :attr:`url` is its endpoint."""

    def __init__(self) -> None:
        port = free_port()
        self.url = f"http://{HOST}:{port}"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + _STARTUP_SECONDS
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1).close()
                return
            except (urllib.error.URLError, ConnectionError):
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"python -m moto.server exited with {self.process.returncode}; "
                        "is moto[server] installed?"
                    ) from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"The moto server did not answer on {self.url}.") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server process."""
        stop_process(self.process)


_shared: MotoServer | None = None


def shared_moto_server(config: pytest.Config) -> str:
    """The endpoint of this session's moto server, started on first use.

    For code that has a pytest ``request`` but not the fixture in scope (store factories):
    ``shared_moto_server(request.config)``.
    """
    global _shared
    if _shared is None:
        _shared = MotoServer()
        config.add_cleanup(_stop_shared)
    return _shared.url


def _stop_shared() -> None:
    global _shared
    if _shared is not None:
        _shared.stop()
        _shared = None


@pytest.fixture(scope="session")
def moto_server(pytestconfig: pytest.Config) -> str:
    """The endpoint URL of a real moto S3 server (one per test session)."""
    return shared_moto_server(pytestconfig)


def s3_client(endpoint_url: str | None = None) -> S3Client:
    """A boto3 client for the moto server at ``endpoint_url`` (or ``mock_aws`` when ``None``)."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


def create_bucket(endpoint_url: str | None = None, name: str | None = None) -> str:
    """Create a bucket (a fresh uniquely named one by default) and return its name."""
    bucket = name or f"test-{uuid.uuid4().hex[:20]}"
    s3_client(endpoint_url).create_bucket(Bucket=bucket)
    return bucket


def bucket_contents(client: S3Client, bucket: str, prefix: str = "") -> list[str]:
    """Every object and unfinished multipart upload in ``bucket``, sorted.

    Keys below ``prefix/`` are shown relative to it; any other key is shown whole with a
    leading ``/``, so a file written outside a store's prefix stands out. Unfinished
    multipart uploads appear as ``"<key> (unfinished upload)"``.
    """
    root = f"{prefix}/" if prefix else ""

    def shown(key: str) -> str:
        return key[len(root) :] if key.startswith(root) else f"/{key}"

    found = [
        shown(item["Key"])
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for item in page.get("Contents", [])
    ]
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    found += [f"{shown(upload['Key'])} (unfinished upload)" for upload in uploads]
    return sorted(found)
