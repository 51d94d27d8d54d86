"""``make run-s3``: the example app on S3, against a moto server on this machine.

Starts ``python -m moto.server`` on a free loopback port, creates a bucket there, then runs
``flask --app example_app run --debug`` with the ``STORE_*`` variables that switch the app to
``S3Store``. Everything stays on 127.0.0.1: no AWS account, no network. Stopping the app
(Ctrl+C) stops the moto server too; its data lives in memory and goes with it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

HOST = "127.0.0.1"
BUCKET = "flask-store-example"
REGION = "us-east-1"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def moto_server(startup_timeout: float = 30.0) -> Iterator[str]:
    """Run a moto server on a free port for the duration of the block; yield its URL."""
    port = free_port()
    url = f"http://{HOST}:{port}"
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)])
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"The moto server did not start on {url}.") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def s3_environment(endpoint_url: str) -> Mapping[str, str]:
    """The settings that put the example app on S3 at ``endpoint_url``.

    The bucket is private, as new S3 buckets are: the gallery's links redirect to presigned
    URLs (a plain object URL would answer 403 Access Denied).
    """
    return {
        "STORE_PROVIDER": "s3",
        "STORE_S3_BUCKET": BUCKET,
        "STORE_S3_REGION": REGION,
        "STORE_S3_ENDPOINT_URL": endpoint_url,
        "STORE_S3_ACCESS_KEY": "example",
        "STORE_S3_SECRET_KEY": "example",
        "STORE_PATH": "uploads",
        "STORE_S3_PRESIGNED": "true",
    }


def create_bucket(endpoint_url: str) -> None:
    """Create the example bucket on the moto server."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id="example",
        aws_secret_access_key="example",
    )
    client.create_bucket(Bucket=BUCKET)


def main(argv: list[str]) -> int:
    """Run moto, then the app on it, until the app stops."""
    with moto_server() as endpoint_url:
        create_bucket(endpoint_url)
        env = {**os.environ, **s3_environment(endpoint_url)}
        print(f" * S3 (moto) at {endpoint_url}, bucket {BUCKET!r}", flush=True)
        command = [sys.executable, "-m", "flask", "--app", "example_app", "run", "--debug", *argv]
        try:
            return subprocess.call(command, env=env)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
