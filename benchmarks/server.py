"""Real-server runs: each contender under gunicorn on 127.0.0.1, driven by a streaming client.

gunicorn (one sync worker) offers ``wsgi.file_wrapper`` with ``sendfile``, as production
servers do. The client streams request bodies from a repeated block and reads responses in
1 MiB pieces over a bare socket, so the harness itself stays small; nginx (``nginx()``) serves
a store's folder as the reference of the throughput runs. The worker's peak resident memory is read
from ``/proc`` (``VmHWM``, reset through ``clear_refs``) around each large transfer.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .payloads import CONTENT_TYPE, MIB, Multipart

READ_SIZE = MIB
#: Where the client reads response bodies: one buffer, so reading costs no allocations.
_BUFFER = memoryview(bytearray(READ_SIZE))
STARTUP_SECONDS = 30.0


def gunicorn_available() -> bool:
    """Whether gunicorn (the ``dev`` extra) is installed in this environment."""
    return importlib.util.find_spec("gunicorn") is not None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """A gunicorn master with one worker serving one contender."""

    name: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def worker_pid(self) -> int:
        """The single worker's process id (the one that handles requests)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        pids = children.read_text().split()
        if len(pids) != 1:
            raise RuntimeError(f"{self.name}: expected one gunicorn worker, found {pids}")
        return int(pids[0])

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)


#: The repository: gunicorn imports the benchmark apps from here.
ROOT = Path(__file__).resolve().parent.parent


def gunicorn_command(app: str, port: int, *options: str) -> list[str]:
    """gunicorn with one sync worker on 127.0.0.1:``port`` serving ``app`` (an import spec
    from the repository), without the control socket gunicorn 27 shares between instances;
    ``options`` come before the app (``--config=...``, ``--timeout=...``)."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers=1",
        "--worker-class=sync",
        "--no-control-socket",
        f"--bind=127.0.0.1:{port}",
        f"--chdir={ROOT}",
        *options,
        app,
    ]


@contextmanager
def serving(
    name: str,
    folder: str,
    log: Path,
    *options: str,
    env: Mapping[str, str] | None = None,
) -> Iterator[Server]:
    """Run contender ``name`` (storing into ``folder``) under gunicorn until the block ends
    (:func:`gunicorn_server`)."""
    app = f"benchmarks.contenders:wsgi_app({name!r}, {folder!r})"
    with gunicorn_server(name, app, log, *options, env=env) as server:
        yield server


@contextmanager
def gunicorn_server(
    name: str,
    app: str,
    log: Path,
    *options: str,
    env: Mapping[str, str] | None = None,
) -> Iterator[Server]:
    """Run ``app`` (an import spec, :func:`gunicorn_command`) under gunicorn on a free port
    until the block ends; its output goes to ``log``.

    ``options`` are added to gunicorn's command line (``--config=hooks.py``) and ``env`` to
    its environment. The process is stopped however the block ends, a failed startup included.
    """
    port = free_port()
    command = gunicorn_command(app, port, "--timeout=900", "--log-level=warning", *options)
    with log.open("ab") as log_file:
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    server = Server(name, port, process)
    try:
        wait_until_up(server, log)
        yield server
    finally:
        stop_process(process)


@contextmanager
def moto_server(workdir: Path) -> Iterator[str]:
    """A moto S3 server on a free loopback port, with no AWS settings; its endpoint URL."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with (workdir / "moto.log").open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(process, port, "the moto server did not start; see moto.log")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)


def wait_for_port(process: subprocess.Popen[bytes], port: int, failure: str) -> None:
    """Wait until ``process`` accepts connections on the loopback ``port``; raise
    ``RuntimeError(failure)`` if it exits or :data:`STARTUP_SECONDS` pass first."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(failure)
        time.sleep(0.05)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Stop a process started here: SIGTERM, then SIGKILL after 20 s."""
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_until_up(server: Server, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"gunicorn for {server.name} exited: {log.read_text()[-2000:]}")
        try:
            conn = server.connection()
            conn.request("GET", "/__ready__")
            conn.getresponse().read()
            conn.close()
            server.worker_pid  # noqa: B018 - raises until the worker is forked
            return
        except (OSError, RuntimeError):
            time.sleep(0.05)
    raise RuntimeError(f"gunicorn for {server.name} did not start: {log.read_text()[-2000:]}")


def post_upload(server: Server, multipart: Multipart, block: bytes) -> str:
    """Stream a multipart upload to ``/upload``; the URL path the contender serves it at."""
    conn = server.connection()
    try:
        conn.putrequest("POST", "/upload")
        conn.putheader("Content-Type", CONTENT_TYPE)
        conn.putheader("Content-Length", str(multipart.content_length))
        conn.endheaders()
        for piece in multipart.stream(block):
            conn.send(piece)
        response = conn.getresponse()
        body = response.read().decode()
        if response.status != 200:
            raise RuntimeError(f"upload to {server.name} answered {response.status}: {body[:300]}")
        return body
    finally:
        conn.close()


def download(
    server: Server,
    url: str,
    expect_size: int,
    pattern: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    status: int = 200,
) -> str | None:
    """GET ``url`` on a new connection, reading into one reused 1 MiB buffer; checks the
    status and the body's length.

    A bare socket client: it writes the request in one ``sendall`` and reads the answer as
    it comes, so the client's own cost per request (about 30 µs) stays small beside the
    server's; ``http.client`` spent several times that, which diluted every ratio.

    :param pattern: when given, the body must be this block repeated (as
        :meth:`Multipart.stream` sends it), checked byte for byte.
    :returns: the response's ``ETag``, if any.
    """
    lines = [f"GET {url} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=600) as sock:
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(READ_SIZE)
            if not chunk:
                raise RuntimeError(f"GET {url} from {server.name}: closed before the headers")
            head += chunk
        head, _, body = head.partition(b"\r\n\r\n")
        found, fields = _parse_head(head)
        if found != status:
            raise RuntimeError(f"GET {url} from {server.name} answered {found}")
        length = int(fields.get("content-length", expect_size))
        if pattern is not None and not _repeats(pattern, 0, memoryview(body)):
            raise RuntimeError(f"GET {url} from {server.name}: wrong bytes at 0")
        received = len(body)
        while received < length and (count := sock.recv_into(_BUFFER)):
            if pattern is not None and not _repeats(pattern, received, _BUFFER[:count]):
                raise RuntimeError(f"GET {url} from {server.name}: wrong bytes at {received}")
            received += count
    if status == 304:
        received = 0  # a 304 carries no body, whatever Content-Length it repeats
    if received != expect_size:
        raise RuntimeError(f"GET {url} from {server.name}: {received} of {expect_size} bytes")
    return fields.get("etag")


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """The status code and the (lower-cased) header fields of a response head."""
    status_line, *field_lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in field_lines:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return int(status_line.split(" ", 2)[1]), fields


def _repeats(pattern: bytes, offset: int, data: memoryview) -> bool:
    """Whether ``data`` is what ``pattern`` repeated over and over holds at ``offset``."""
    position, done = offset % len(pattern), 0
    while done < len(data):
        size = min(len(pattern) - position, len(data) - done)
        if data[done : done + size].tobytes() != pattern[position : position + size]:
            return False
        done += size
        position = 0
    return True


def status_kib(pid: int, field: str) -> int:
    """A memory figure (``VmRSS``, ``VmHWM``) of process ``pid``, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {field}")


def peak_rss_rise(pid: int, action: Callable[[], None]) -> int:
    """Bytes by which ``pid``'s peak resident memory rose above its level before ``action``.

    Uses the kernel's own high-water mark (``VmHWM`` after ``clear_refs`` 5); where that
    cannot be reset, samples ``VmRSS`` every 2 ms instead.
    """
    before = status_kib(pid, "VmRSS")
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return _sampled_rise(pid, before, action)
    action()
    return max(0, status_kib(pid, "VmHWM") - before) * 1024


def _sampled_rise(pid: int, before: int, action: Callable[[], None]) -> int:
    peak = before
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, status_kib(pid, "VmRSS"))
            done.wait(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        action()
    finally:
        done.set()
        watcher.join()
    return max(0, peak - before) * 1024


def nginx_available() -> bool:
    """Whether nginx and wrk (the throughput reference and client) are installed."""
    return shutil.which("nginx") is not None and shutil.which("wrk") is not None


#: nginx as the physical reference: one worker (as gunicorn's one), sendfile, no access log,
#: and no keep-alive, so every request is a new connection as with gunicorn's sync worker.
NGINX_CONF = """
worker_processes 1;
daemon off;
{user}
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 0;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


@contextmanager
def nginx(root: str, workdir: Path) -> Iterator[int]:
    """nginx serving the folder ``root`` as static files on a free port; yields the port."""
    port = free_port()
    conf = workdir / "nginx.conf"
    user = "user root;" if os.geteuid() == 0 else ""  # workers must read the private tempdir
    conf.write_text(NGINX_CONF.format(user=user, workdir=workdir, port=port, root=root))
    with (workdir / "nginx.log").open("ab") as out:
        process = subprocess.Popen(
            ["nginx", "-c", str(conf), "-p", str(workdir), "-e", str(workdir / "nginx-error.log")],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(process, port, "nginx did not start; see nginx.log and nginx-error.log")
        yield port
    finally:
        stop_process(process)
