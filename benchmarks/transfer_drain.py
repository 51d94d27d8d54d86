"""``python -m benchmarks.transfer_drain``: transfers across processes, local disk -> S3.

A ``QueuedStore`` (local disk, then a moto S3 server over HTTP, local copies removed once on
S3) whose transfers run in two worker processes, started with the documented commands:

- RQ: two ``flask --app benchapp store worker`` (RQ's SimpleWorker, app loaded once);
- Celery: two ``celery -A benchapp:celery worker -Q flask_store --pool prefork -c 1``;
- for reference, two plain ``rq worker --with-scheduler`` (RQ's default worker forks and
  loads the app for every job), on a smaller backlog.

For each it measures:

- **drain rate**: a backlog of ``--backlog`` files of 100 KiB is saved (records written, jobs
  queued) while no worker runs; then the workers start. The rate is taken from the records
  themselves (the time each became ``done``), from the first transfer done to the last, so
  the workers' start-up is not counted. Target: at least 50 transfers/s.
- **save -> done latency at 80 uploads/s**: with the workers running, files are saved at a
  steady 80 per second for ``--seconds``; each file's latency is the time from its record's
  creation (the save) to its ``done`` (written by the worker). Target: p95 under 5 s.

The web side (the saves) is this process, as a web worker would be. Every file is checked
on S3 afterwards; a missing one is an error and the run exits non-zero. ``--append`` adds the
table to BENCHMARKS.md (append only: ``python -m benchmarks`` owns the rest of that file).
Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType

from redis import Redis

from flask_store import Store
from flask_store.stores.queued import QueuedStore
from flask_store.transfer.records import RecordBook

from .contenders import s3_client, s3_store_config
from .payloads import KIB
from .report import machine
from .server import free_port, moto_server, stop_process, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SIZE = 100 * KIB
RATE = 80.0
DRAIN_TARGET = 50.0
P95_TARGET = 5.0
WORKERS = 2
#: Threads saving files in the latency run, standing in for web workers.
SAVERS = 4
#: Safety nets: a run that takes longer than this has failed, whatever it measured.
START_SECONDS = 60.0
DRAIN_SECONDS = 900.0

APP_MODULE = '''\
"""The app under test: its stores, and (for Celery) the Celery app its workers load."""

import json
import logging
import os

from flask import Flask

from flask_store import Store

HERE = os.path.dirname(os.path.abspath(__file__))
logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(process)d %(name)s %(message)s")

app = Flask("benchapp", instance_path=os.path.join(HERE, "instance"))
with open(os.path.join(HERE, "settings.json")) as settings:
    app.config.update(json.load(settings))
store = Store(app)

if app.config["STORE_TRANSFER_EXECUTOR"] == "celery":
    from celery import Celery

    celery = Celery("benchapp", broker=app.config["BROKER_URL"])
    celery.conf.broker_connection_retry_on_startup = True
    store.init_celery(celery)
'''


@dataclass(frozen=True)
class Contender:
    """One way of running the two transfer workers."""

    label: str
    executor: str  # the store's TRANSFER_EXECUTOR
    command: tuple[str, ...]  # one worker; {name} is replaced
    ready: str  # printed in the worker's output once it takes jobs
    backlog_share: float = 1.0  # of --backlog and --seconds (forking workers are slow)
    reference: bool = False  # shown for comparison, not held to the targets


CONTENDERS = (
    Contender(
        "RQ, flask store worker",
        "rq",
        (str(BIN / "flask"), "--app", "benchapp:app", "store", "worker", "--name", "{name}"),
        "started with PID",
    ),
    Contender(
        "Celery, prefork -c 1",
        "celery",
        (
            str(BIN / "celery"), "-A", "benchapp:celery", "worker", "-Q", "flask_store",
            "--pool", "prefork", "-c", "1", "--without-gossip", "--without-mingle",
            "--without-heartbeat", "--loglevel", "INFO", "--hostname", "{name}@%h",
        ),
        " ready.",
    ),
    Contender(
        "RQ, plain rq worker (forks per job)",
        "rq",
        (
            str(BIN / "rq"), "worker", "--url", "{redis}", "--with-scheduler",
            "--name", "{name}", "flask_store",
        ),
        "started with PID",
        backlog_share=0.1,
        reference=True,
    ),
)  # fmt: skip


@dataclass
class Row:
    contender: Contender
    label: str
    backlog: int
    drain_rate: float
    offered: float
    p50: float
    p95: float
    files: int

    def line(self) -> str:
        drain = _verdict(self.contender, self.drain_rate >= DRAIN_TARGET)
        latency = _verdict(self.contender, self.p95 < P95_TARGET)
        return (
            f"| {self.label} | {self.backlog} | {self.drain_rate:.1f}/s ({drain}) | "
            f"{self.offered:.1f}/s, {self.files} files | {self.p50:.2f} s | "
            f"{self.p95:.2f} s ({latency}) |"
        )


def _verdict(contender: Contender, met: bool) -> str:
    if contender.reference:
        return "reference"
    return "met" if met else "**missed**"


def log(message: str) -> None:
    print(f"[transfer-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A throwaway redis-server on a free loopback port; its URL."""
    program = shutil.which("redis-server")
    if program is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    # fmt: off
    process = subprocess.Popen(
        [program, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly",
         "no", "--dir", str(folder), "--logfile", str(folder / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    # fmt: on
    try:
        wait_for_port(process, port, "redis-server did not start; see redis.log")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(process)


class Site:
    """One contender's deployment: app module, settings, bucket, and its workers."""

    def __init__(self, contender: Contender, folder: Path, redis: str, s3: str) -> None:
        self.contender = contender
        self.folder = folder
        self.redis = redis
        self.bucket = f"bench-{os.urandom(4).hex()}"
        self.s3 = s3_client(s3)
        self.s3.create_bucket(Bucket=self.bucket)
        folder.mkdir(parents=True)
        settings = {
            "STORE_PROVIDER": "queued",
            "STORE_QUEUED_LOCAL": {"PROVIDER": "local", "PATH": str(folder / "up")},
            "STORE_QUEUED_REMOTE": {
                key.removeprefix("STORE_"): value
                for key, value in s3_store_config(self.bucket, s3).items()
            },
            "STORE_TRANSFER_EXECUTOR": contender.executor,
            "STORE_TRANSFER_DELETE_LOCAL": True,
            "STORE_RQ_REDIS_URL": redis,
            "STORE_RQ_APP": "benchapp:app",
            "BROKER_URL": redis,
        }
        (folder / "settings.json").write_text(json.dumps(settings))
        (folder / "benchapp.py").write_text(APP_MODULE)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FLASK_"))}
        self.env.update(
            PYTHONPATH=os.pathsep.join([str(folder), str(ROOT)]),
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        )
        self.module = _load_app(folder)
        store = Store.registry(self.module.app).resolve()
        assert isinstance(store, QueuedStore)
        self.store = store
        self.records = RecordBook(store.records.root)
        self._started = 0

    @contextlib.contextmanager
    def workers(self) -> Iterator[None]:
        """Two workers, started and ready; stopped (SIGTERM, then SIGKILL) at the end."""
        processes = [self._start_worker() for _ in range(WORKERS)]
        try:
            for process, logfile in processes:
                deadline = time.monotonic() + START_SECONDS
                while self.contender.ready not in logfile.read_text(errors="replace"):
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"a worker did not start; see {logfile}")
                    time.sleep(0.05)
            yield
        finally:
            for process, _ in processes:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
            for process, _ in processes:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()

    def _start_worker(self) -> tuple[subprocess.Popen[bytes], Path]:
        self._started += 1
        name = f"w{self._started}-{os.urandom(3).hex()}"
        command = [part.format(name=name, redis=self.redis) for part in self.contender.command]
        logfile = self.folder / f"{name}.log"
        with logfile.open("ab") as output:
            process = subprocess.Popen(
                command,
                cwd=self.folder,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return process, logfile

    def save(self, number: int, block: bytes) -> str:
        body = number.to_bytes(8, "big") + block[8:]
        with self.module.app.app_context():
            return self.store.save(body, name=f"f{number:06d}.bin").key

    def queued_jobs(self) -> int:
        """Jobs waiting in the broker (RQ's queue, or Celery's list on Redis)."""
        return int(Redis.from_url(self.redis).llen(
            "rq:queue:flask_store" if self.contender.executor == "rq" else "flask_store"
        ))  # fmt: skip

    def wait_done(self, keys: list[str]) -> list[tuple[float, float]]:
        """Wait until every key's record is settled; (saved, done) Unix times of each."""
        deadline = time.monotonic() + DRAIN_SECONDS
        while os.listdir(os.path.join(self.records.root, "open")):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.contender.label}: not drained in {DRAIN_SECONDS} s")
            time.sleep(0.05)
        times = []
        for key in keys:
            record = self.records.get(key)
            if record is None or record.state != "done":
                raise RuntimeError(f"{self.contender.label}: {key} ended {record}")
            times.append((_unix(record.created), _unix(record.updated)))
        return times

    def check_remote(self, keys: list[str]) -> None:
        """Every key is on S3 (a wrong answer is an error, never a fast figure)."""
        found = {
            item["Key"]
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
            for item in page.get("Contents", [])
        }
        missing = sorted(set(keys) - found)
        if missing:
            raise RuntimeError(f"{self.contender.label}: {len(missing)} not on S3: {missing[:5]}")

    def close(self) -> None:
        self.store.stop(timeout=10)
        sys.modules.pop("benchapp", None)


def _load_app(folder: Path) -> ModuleType:
    sys.modules.pop("benchapp", None)
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module("benchapp")
    finally:
        sys.path.remove(str(folder))


def _unix(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def drain(site: Site, count: int, block: bytes) -> float:
    """Transfers per second of a ``count``-file backlog, first done to last done."""
    keys = [site.save(number, block) for number in range(count)]
    deadline = time.monotonic() + START_SECONDS
    while site.queued_jobs() < count:  # Celery's outbox thread hands them over
        if time.monotonic() > deadline:
            raise RuntimeError(f"{site.contender.label}: the backlog never reached the broker")
        time.sleep(0.05)
    with site.workers():
        done = sorted(finished for _, finished in site.wait_done(keys))
    site.check_remote(keys)
    return (count - 1) / (done[-1] - done[0])


def latency(site: Site, seconds: float, block: bytes) -> tuple[float, int, list[float]]:
    """Save at :data:`RATE` per second for ``seconds`` with the workers running, from
    :data:`SAVERS` threads (as several web workers would): the rate offered, the files, and
    each file's save -> done latency."""
    count = round(RATE * seconds)
    with site.workers(), ThreadPoolExecutor(SAVERS) as savers:
        started = time.monotonic()
        saving = []
        for number in range(count):
            pause = started + number / RATE - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            saving.append(savers.submit(site.save, 1_000_000 + number, block))
        keys = [future.result() for future in saving]
        offered = count / (time.monotonic() - started)
        times = site.wait_done(keys)
    site.check_remote(keys)
    return offered, count, [finished - saved for saved, finished in times]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def run(backlog: int, seconds: float, workdir: Path, only: list[str]) -> list[Row]:
    block = os.urandom(SIZE)
    rows = []
    with redis_server(workdir) as redis, moto_server(workdir) as s3:
        for number, contender in enumerate(CONTENDERS):
            if only and not any(word in contender.label for word in only):
                continue
            Redis.from_url(redis).flushdb()
            site = Site(contender, workdir / f"site{number}", redis, s3)
            try:
                count = max(10, round(backlog * contender.backlog_share))
                log(f"{contender.label}: draining {count} files")
                rate = drain(site, count, block)
                log(f"{contender.label}: {rate:.1f}/s; now {RATE:.0f} uploads/s for {seconds} s")
                offered, files, waits = latency(site, seconds * contender.backlog_share, block)
            finally:
                site.close()
            row = Row(
                contender,
                contender.label,
                count,
                rate,
                offered,
                statistics.median(waits),
                percentile(waits, 0.95),
                files,
            )
            log(row.line())
            rows.append(row)
    return rows


def report(rows: list[Row], lines: list[str], backlog: int, seconds: float) -> str:
    return "\n".join(
        [
            "",
            "## Transfers across processes",
            "",
            "A `QueuedStore` (local disk, then a moto S3 server over HTTP, local copies removed "
            "once on S3) with its transfers in two worker processes, one transfer at a time "
            "each (`python -m benchmarks.transfer_drain`). Drain rate: a backlog of 100 KiB "
            "files saved while no worker runs, then the workers start; the rate runs from the "
            "first transfer done to the last (target at least 50/s). Latency: files saved at "
            f"{RATE:.0f}/s for {seconds:.0f} s while the workers run, each timed from its save "
            "to its `done` record (target p95 under 5 s). The saves run in the benchmark's own "
            "process, as in a web worker. The plain forking `rq worker` ran a tenth of the "
            "backlog and of the time.",
            "",
            *lines,
            "",
            "| workers (two) | backlog | drain rate | uploads offered | save -> done p50 "
            "| save -> done p95 |",
            "|---|---|---|---|---|---|",
            *[row.line() for row in rows],
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.transfer_drain", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--backlog", type=int, default=1000, help="files in the backlog (1000)")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds at 80/s (20)")
    parser.add_argument("--only", nargs="*", default=[], help="contenders whose label has this")
    parser.add_argument("--workdir", default=None, help="where stores live (system temp)")
    parser.add_argument("--append", action="store_true", help="append to BENCHMARKS.md")
    parser.add_argument("--keep", action="store_true", help="keep the workdir (worker logs)")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="transfer-bench-", dir=args.workdir))
    rows = run(args.backlog, args.seconds, workdir, args.only)
    text = report(rows, machine(str(workdir), load), args.backlog, args.seconds)
    print(text)
    if args.append:
        with (ROOT / "BENCHMARKS.md").open("a", encoding="utf-8") as out:
            out.write(text)
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    held = [row for row in rows if not row.contender.reference]
    return 0 if all(r.drain_rate >= DRAIN_TARGET and r.p95 < P95_TARGET for r in held) else 1


if __name__ == "__main__":
    sys.exit(main())
