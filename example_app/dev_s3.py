"""``make run-s3``: the example app on S3, against a moto server on this machine.

Starts ``python -m moto.server`` on a free loopback port, creates a bucket there, then runs
``flask --app example_app run --debug`` with the ``STORE_*`` variables that switch the app to
``S3Store``. Everything stays on 127.0.0.1: no AWS account, no network. Arguments are passed
on to ``flask run`` (``python -m example_app.dev_s3 --port 5001``).

Every way this ends stops both servers: Ctrl+C, ``SIGTERM`` (``kill``, a process manager),
``SIGHUP`` (the terminal closed), either server exiting by itself, and on Linux even this
process being killed outright. Each server runs in a process group of its own, which is
stopped whole (the app's reloader and its worker alike); moto's data lives in memory and
goes with it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import FrameType

HOST = "127.0.0.1"
BUCKET = "flask-store-example"
REGION = "us-east-1"
#: Seconds a server gets to stop after SIGTERM before it is killed.
STOP_TIMEOUT = 10.0
#: Signals that mean "stop now": Ctrl+C, kill, a closed terminal.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1


class Stopped(BaseException):
    """This process was asked to stop by a signal (a BaseException, as KeyboardInterrupt is,
    so that no `except Exception` on the way swallows it)."""


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """In a child, before it runs: get SIGTERM when the parent dies, however it dies (Linux)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@contextmanager
def running(
    command: Sequence[str], env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` in a process group of its own for the duration of the block.

    Leaving the block stops the whole group: SIGTERM, then SIGKILL after
    :data:`STOP_TIMEOUT`. Its own group keeps it out of the terminal's Ctrl+C, so the
    children stop in order, once, from here.
    """
    process = subprocess.Popen(
        list(command), env=env, start_new_session=True, preexec_fn=_die_with_parent
    )
    try:
        yield process
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop ``process`` and every process of its group, then reap it."""
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, STOP_TIMEOUT)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:  # the whole group is gone already
            break
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        if not _group_alive(process.pid):
            break
        time.sleep(0.1)  # the leader is gone; give the rest a moment before the next signal
    process.poll()


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


@contextmanager
def moto_server(startup_timeout: float = 30.0) -> Iterator[str]:
    """Run a moto server on a free port for the duration of the block; yield its URL."""
    with _moto(startup_timeout) as (_, url):
        yield url


@contextmanager
def _moto(startup_timeout: float) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    url = f"http://{HOST}:{port}"
    command = [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]
    with running(command) as process:
        deadline = time.monotonic() + startup_timeout
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"The moto server did not start on {url}.") from None
                time.sleep(0.1)
        yield process, url


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


def _stop(signum: int, frame: FrameType | None) -> None:
    """The handler of :data:`STOP_SIGNALS`: raise once, then ignore them, so that a second
    Ctrl+C cannot cut short the stopping of the servers."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise Stopped(signal.Signals(signum).name)


def first_exit(processes: Sequence[subprocess.Popen[bytes]], poll_seconds: float = 0.2) -> int:
    """Wait until one of ``processes`` exits; its exit code."""
    while True:
        for process in processes:
            code = process.poll()
            if code is not None:
                return code
        time.sleep(poll_seconds)


def main(argv: list[str]) -> int:
    """Run moto, then the app on it, until either stops or this process is told to stop."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _stop)
    try:
        with _moto(startup_timeout=30.0) as (moto, endpoint_url):
            create_bucket(endpoint_url)
            env = {**os.environ, **s3_environment(endpoint_url)}
            print(f" * S3 (moto) at {endpoint_url}, bucket {BUCKET!r}", flush=True)
            flask = [sys.executable, "-m", "flask", "--app", "example_app", "run", "--debug"]
            with running([*flask, *argv], env=env) as app:
                code = first_exit([app, moto])
                if moto.poll() is not None:
                    print(" * The moto server stopped; stopping the app.", file=sys.stderr)
                    return 1
                return code
    except Stopped:
        return 0
    finally:
        print(" * Stopped the app and the moto server.", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
