"""``python -m benchmarks.tus_bench``: a 1 GiB resumable (tus) upload through gunicorn.

One gunicorn sync worker runs a small app with Flask-Store's tus endpoint on a local store.
The client streams the same bytes (a repeated random block, so it stays small) two ways:

- tus: ``POST`` to create, then ``PATCH`` es of ``--chunk`` bytes, each over a fresh
  connection as browser clients do; once more with the connection cut in the middle of one
  ``PATCH`` and the upload resumed from ``HEAD``;
- a plain single multipart ``POST`` of the same file to a view calling ``save()``.

For each it reports the wall time, the throughput and the worker's peak resident-memory
rise (``VmHWM`` after ``clear_refs``), and checks the stored file's size. The target is a
rise under 32 MiB whatever the file's size. ``--append`` adds the table to BENCHMARKS.md
(append only: ``python -m benchmarks`` owns the rest of that file). Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, request

from flask_store import Store

from .contenders import s3_client, s3_store_config
from .payloads import GIB, MIB, Multipart
from .server import ROOT, Server, gunicorn_server, moto_server, peak_rss_rise, post_upload

BLOCK = os.urandom(MIB)
TUS = {"Tus-Resumable": "1.0.0"}
TARGET_RISE = 32 * MIB


#: The bucket of ``--s3`` runs, on a moto server started for the run.
BUCKET = "tus-bench"


def bench_app(folder: str, endpoint: str | None = None) -> Flask:
    """The app under test (gunicorn loads ``benchmarks.tus_bench:bench_app(...)``): a local
    store in ``folder``, or an S3 store on the server at ``endpoint``."""
    app = Flask("tus-bench", instance_path=os.path.join(folder, "instance"))
    app.config.update(
        STORE_PATH=os.path.join(folder, "store"),
        STORE_TUS_URL_PREFIX="/files",
        STORE_TUS_ALLOW_ANONYMOUS=True,
        STORE_TUS_MAX_SIZE=4 * GIB,
    )
    if endpoint is not None:
        app.config.update(s3_store_config(BUCKET, endpoint), STORE_PATH="bench")
    store = Store(app)

    @app.get("/__ready__")
    def ready() -> str:
        return "ok"

    @app.post("/upload")
    def upload() -> str:
        return store.Provider().save(request.files["file"]).relative_url()

    return app


def gunicorn(folder: str, log: Path, endpoint: str | None) -> AbstractContextManager[Server]:
    """The benchmark app (:func:`bench_app`) under gunicorn until the block ends."""
    return gunicorn_server("tus", f"benchmarks.tus_bench:bench_app({folder!r}, {endpoint!r})", log)


def _request(
    server: Server,
    method: str,
    url: str,
    headers: dict[str, str],
    body: Iterator[bytes] | None = None,
) -> http.client.HTTPResponse:
    conn = server.connection()
    conn.putrequest(method, url)
    for name, value in headers.items():
        conn.putheader(name, value)
    conn.endheaders()
    for piece in body or ():
        conn.send(piece)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def _pieces(offset: int, size: int) -> Iterator[bytes]:
    """``size`` bytes of the repeated block starting at ``offset`` of the file."""
    view = memoryview(BLOCK)
    while size > 0:
        start = offset % MIB
        piece = view[start : start + min(size, MIB - start)]
        yield bytes(piece)
        offset += len(piece)
        size -= len(piece)


def create(server: Server, size: int, name: str) -> str:
    metadata = f"filename {base64.b64encode(name.encode()).decode()}"
    answer = _request(
        server, "POST", "/files/", {**TUS, "Upload-Length": str(size), "Upload-Metadata": metadata}
    )
    if answer.status != 201:
        raise RuntimeError(f"creation answered {answer.status}")
    return str(answer.getheader("Location"))


def send_patch(server: Server, url: str, offset: int, size: int) -> int:
    headers = {
        **TUS,
        "Upload-Offset": str(offset),
        "Content-Type": "application/offset+octet-stream",
        "Content-Length": str(size),
    }
    answer = _request(server, "PATCH", url, headers, _pieces(offset, size))
    if answer.status != 204:
        raise RuntimeError(f"PATCH at {offset} answered {answer.status}")
    return int(answer.getheader("Upload-Offset") or -1)


def cut_patch(server: Server, url: str, offset: int, size: int) -> None:
    """Send half of a PATCH of ``size`` bytes, then drop the connection."""
    conn = server.connection()
    conn.putrequest("PATCH", url)
    for name, value in {
        **TUS,
        "Upload-Offset": str(offset),
        "Content-Type": "application/offset+octet-stream",
        "Content-Length": str(size),
    }.items():
        conn.putheader(name, value)
    conn.endheaders()
    for piece in _pieces(offset, size // 2):
        conn.send(piece)
    conn.close()


def head_offset(server: Server, url: str) -> int:
    for _ in range(200):
        answer = _request(server, "HEAD", url, TUS)
        if answer.status == 200:
            return int(answer.getheader("Upload-Offset") or -1)
        time.sleep(0.01)
    raise RuntimeError("HEAD never answered 200")


def tus_receive_only(server: Server, size: int, chunk: int) -> None:
    """Every PATCH but the last, then DELETE: what receiving costs, without the final save."""
    url = create(server, size, "a.bin")
    offset = 0
    while offset + chunk < size:
        offset = send_patch(server, url, offset, chunk)
    if _request(server, "DELETE", url, TUS).status != 204:
        raise RuntimeError("DELETE failed")


def tus_upload(server: Server, size: int, chunk: int, name: str, cut: bool) -> None:
    url = create(server, size, name)
    offset = 0
    cut_at = size // 2 // chunk * chunk
    while offset < size:
        length = min(chunk, size - offset)
        if cut and offset == cut_at:
            cut = False
            cut_patch(server, url, offset, length)
            time.sleep(0.2)  # let the worker notice the drop and commit what arrived
            offset = head_offset(server, url)
            continue
        offset = send_patch(server, url, offset, length)


@dataclass
class Row:
    label: str
    seconds: float
    rise: int
    size: int

    def line(self) -> str:
        rate = self.size / MIB / self.seconds
        flag = "" if self.rise < TARGET_RISE else " (over the 32 MiB target)"
        return (
            f"| {self.label} | {self.seconds:.2f} s | {rate:.0f} MiB/s | "
            f"{self.rise / MIB:.1f} MiB{flag} |"
        )


class Stored:
    """Where the uploads land: checks the stored size and removes the file between runs."""

    def __init__(self, folder: str, endpoint: str | None) -> None:
        self.path = Path(folder) / "store" / "a.bin"
        self.client: Any = None
        if endpoint is not None:
            self.client = s3_client(endpoint)
            self.client.create_bucket(Bucket=BUCKET)

    def stat(self) -> os.stat_result | int:
        if self.client is None:
            return self.path.stat()
        return int(self.client.head_object(Bucket=BUCKET, Key="bench/a.bin")["ContentLength"])

    def size(self) -> int:
        found = self.stat()
        return found if isinstance(found, int) else found.st_size

    def unlink(self) -> None:
        if self.client is None:
            self.path.unlink()
        else:
            self.client.delete_object(Bucket=BUCKET, Key="bench/a.bin")


def measure(
    label: str, size: int, pid: int, action: Callable[[], object], stored: Stored | None
) -> Row:
    started = time.perf_counter()

    def upload() -> None:
        action()

    rise = peak_rss_rise(pid, upload)
    seconds = time.perf_counter() - started
    if stored is not None:
        if stored.size() != size:
            raise RuntimeError(f"{label}: stored {stored.size()} bytes, not {size}")
        stored.unlink()
    return Row(label, seconds, rise, size)


def run(size: int, chunk: int, workdir: str, rounds: int, endpoint: str | None) -> list[Row]:
    """Each upload ``rounds`` times, interleaved: the best time and the highest RSS rise
    (a shared machine's noise only ever slows a run down)."""
    folder = tempfile.mkdtemp(prefix="tus-bench-", dir=workdir)
    store = Stored(folder, endpoint)
    with gunicorn(folder, Path(folder) / "gunicorn.log", endpoint) as server:
        pid = server.worker_pid
        tus_upload(server, 3 * MIB, MIB, "warm.bin", cut=False)  # imports, first files
        post_upload(server, Multipart.for_file("warm2.bin", MIB), BLOCK)
        uploads: list[tuple[str, Callable[[], object]]] = [
            (
                f"tus, {chunk // MIB} MiB PATCHes",
                lambda: tus_upload(server, size, chunk, "a.bin", cut=False),
            ),
            (
                f"tus, {chunk // MIB} MiB PATCHes, connection cut once and resumed",
                lambda: tus_upload(server, size, chunk, "a.bin", cut=True),
            ),
            (
                "plain single multipart POST, save()",
                lambda: post_upload(server, Multipart.for_file("a.bin", size), BLOCK),
            ),
        ]
        receive_only = f"tus, receiving only: all {chunk // MIB} MiB PATCHes but the last"
        uploads.append((receive_only, lambda: tus_receive_only(server, size, chunk)))
        best: dict[str, Row] = {}
        for _ in range(rounds):
            for label, action in uploads:
                row = measure(label, size, pid, action, None if label == receive_only else store)
                kept = best.setdefault(label, row)
                kept.seconds = min(kept.seconds, row.seconds)
                kept.rise = max(kept.rise, row.rise)
    return list(best.values())


def report(rows: list[Row], size: int, s3: bool, rounds: int) -> str:
    where = "S3Store on a moto server" if s3 else "LocalStore"
    finish = (
        "copies the assembled object inside the bucket to the file's key (`UploadPartCopy`; "
        "on moto the copy is moto's own work in this machine's Python, on S3 the bucket's)"
        if s3
        else "moves the partial file into place"
    )
    lines = [
        "",
        f"## Resumable uploads (tus), {size // MIB} MiB file through gunicorn, {where}",
        "",
        f"One gunicorn sync worker, {where}, client and server on one machine "
        f"(`python -m benchmarks.tus_bench`), each upload run {rounds} times interleaved: best "
        "time, highest peak RSS rise of the worker above its level just before the upload "
        "(target: under 32 MiB). The last PATCH saves the file through `save()`, which "
        f"{finish}.",
        "",
        "| upload | time | throughput | worker peak RSS rise |",
        "|---|---|---|---|",
        *[row.line() for row in rows],
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tus_bench", description=__doc__)
    parser.add_argument("--size", type=int, default=GIB, help="bytes to upload (1 GiB)")
    parser.add_argument("--chunk", type=int, default=8 * MIB, help="PATCH size (8 MiB)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each upload (3)")
    parser.add_argument("--s3", action="store_true", help="an S3 store on a moto server")
    parser.add_argument("--workdir", default=None, help="where the store lives (system temp)")
    parser.add_argument("--append", action="store_true", help="append to BENCHMARKS.md")
    args = parser.parse_args(argv)
    workdir = args.workdir or tempfile.gettempdir()
    if args.s3:
        with moto_server(Path(tempfile.mkdtemp(dir=workdir))) as endpoint:
            rows = run(args.size, args.chunk, workdir, args.rounds, endpoint)
    else:
        rows = run(args.size, args.chunk, workdir, args.rounds, None)
    text = report(rows, args.size, args.s3, args.rounds)
    print(text)
    if args.append:
        with (ROOT / "BENCHMARKS.md").open("a", encoding="utf-8") as out:
            out.write(text)
    return 0 if all(row.rise < TARGET_RISE for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
