"""A real s3rver for tests: an S3-compatible server from npm that lacks some S3 features.

s3rver (https://www.npmjs.com/package/s3rver) stands in for the MinIO, Ceph, R2 or older
appliance a user may point Flask-Store at. It ignores ``If-None-Match: *`` on PUT and
``If-Match`` on GET, does not list multipart uploads, answers ``NotImplemented`` to object
ACLs, and over HTTPS stores botocore's ``aws-chunked`` checksum framing as the object's
bytes. The tests use it to prove the store never claims a success that did not happen.

``make test`` installs it with npm into ``<virtualenv>/node`` (``S3RVER_VERSION``). The
program is looked for there, then as ``$FLASK_STORE_S3RVER``, then on ``PATH``; without it
(or without ``node``) the tests that need it are skipped with the reason, a failure under
``CI=true``.

One plain-HTTP and one HTTPS server start per test session, each on a free 127.0.0.1 port
with its data in a temporary folder removed when it stops. Tests stay independent by
creating a bucket of their own (:func:`create_bucket`). HTTPS uses a self-signed certificate
made here; clients trust it through :attr:`S3rver.ca_bundle` (boto3 reads
``AWS_CA_BUNDLE``).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.moto_server import stop_process
from tests.redis_server import free_port

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

HOST = "127.0.0.1"
REGION = "us-east-1"
#: s3rver's built-in credentials (it checks signatures against them).
ACCESS_KEY = "S3RVER"
SECRET_KEY = "S3RVER"
#: The version ``make test`` installs (keep the Makefile's ``S3RVER_VERSION`` in step).
S3RVER_VERSION = "3.7.1"
MISSING = (
    "s3rver (an S3-compatible server from npm) is not installed: `make test` installs it "
    f"into .venv/node (npm install --prefix .venv/node s3rver@{S3RVER_VERSION}); it needs "
    "node and npm (apt-get install nodejs npm)"
)
_STARTUP_SECONDS = 30.0


def s3rver_program() -> str | None:
    """The s3rver program to run, or ``None`` when it (or ``node``) is missing."""
    if shutil.which("node") is None:
        return None
    candidates = [
        Path(sys.prefix) / "node" / "node_modules" / ".bin" / "s3rver",
        os.environ.get("FLASK_STORE_S3RVER"),
        shutil.which("s3rver"),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


class S3rver:
    """An s3rver process on a free port; :attr:`url` is its endpoint.

    :param tls: serve HTTPS with a self-signed certificate (:attr:`ca_bundle`).
    :raises pytest.skip.Exception: when s3rver is not installed.
    """

    def __init__(self, *, tls: bool = False) -> None:
        program = s3rver_program()
        if program is None:
            pytest.skip(MISSING)
        self.folder = Path(tempfile.mkdtemp(prefix="s3rver-"))
        self.ca_bundle: str | None = None
        port = free_port()
        command = [program, "--silent", "-d", str(self.folder / "data"), "-a", HOST]
        command += ["-p", str(port)]
        if tls:
            key, self.ca_bundle = _self_signed_certificate(self.folder)
            command += ["--key", key, "--cert", self.ca_bundle]
        self.url = f"{'https' if tls else 'http'}://{HOST}:{port}"
        self._log = self.folder / "s3rver.log"
        with self._log.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        try:
            self._wait_until_ready(port)
        except BaseException:
            self.stop()
            raise

    def _wait_until_ready(self, port: int) -> None:
        deadline = time.monotonic() + _STARTUP_SECONDS
        while True:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    output = self._log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"s3rver did not start on {self.url}: {output}") from None
                time.sleep(0.05)

    def client(self) -> S3Client:
        """A boto3 client for this server (not a store's: default botocore settings)."""
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            verify=self.ca_bundle,
        )

    def create_bucket(self) -> str:
        """Create a fresh, uniquely named bucket and return its name."""
        bucket = f"test-{uuid.uuid4().hex[:20]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def stop(self) -> None:
        """Stop the server and remove its data."""
        stop_process(self.process)
        shutil.rmtree(self.folder, ignore_errors=True)


def _self_signed_certificate(folder: Path) -> tuple[str, str]:
    """A key and a certificate for 127.0.0.1, written to ``folder``: their paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path, certificate_path = folder / "key.pem", folder / "certificate.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return str(key_path), str(certificate_path)


_shared: dict[bool, S3rver] = {}


def shared_s3rver(config: pytest.Config, *, tls: bool = False) -> S3rver:
    """This session's s3rver (HTTPS with ``tls``), started on first use.

    For code that has a pytest ``request`` but not the fixture in scope (store factories):
    ``shared_s3rver(request.config)``.
    """
    if tls not in _shared:
        _shared[tls] = S3rver(tls=tls)
        config.add_cleanup(lambda: _shared.pop(tls).stop())
    return _shared[tls]


@pytest.fixture(scope="session")
def s3rver(pytestconfig: pytest.Config) -> S3rver:
    """A real s3rver over plain HTTP (one per test session)."""
    return shared_s3rver(pytestconfig)


@pytest.fixture(scope="session")
def s3rver_tls(pytestconfig: pytest.Config) -> S3rver:
    """A real s3rver over HTTPS (one per test session); trust :attr:`S3rver.ca_bundle`."""
    return shared_s3rver(pytestconfig, tls=True)
