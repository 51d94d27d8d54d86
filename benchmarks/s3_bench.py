"""S3Store against bare boto3 on the same moto server: save speed, and memory of a big upload.

The baseline is what a hand-written app does: ``client.upload_fileobj(file, bucket, key)``
under a fresh key, with its Content-Type, boto3's defaults otherwise. Flask-Store does the same
job through ``S3Store.save(FileStorage(file, name))`` with its defaults (a conditional write
that can never overwrite, Content-Disposition, multipart above 8 MiB). Both read the same file
from disk, store under a name nobody used yet, and talk to one moto server; rounds alternate.

Memory is measured in a fresh child process per contender (``python -m benchmarks.s3_bench
memory ...``): its resident size after a warm-up save is its idle size, and the kernel's
high-water mark during one 256 MiB save is its peak.

The proxy scenarios alone run with ``python -m benchmarks.s3_bench proxy [--rounds N]
[--small]`` (``--small``: without the 64 MiB download), on a moto server of their own; they
print each scenario's medians and ratio instead of writing BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.datastructures import FileStorage

from .contenders import s3_client, s3_store_config
from .payloads import KIB, MIB
from .server import moto_server, peak_rss_rise, status_kib
from .timing import Result, Sampler, batch_size, batched, interleaved

#: Save sizes, with at most how many saves make one sample.
SIZES: Sequence[tuple[str, int, int]] = (
    ("1 KiB", KIB, 50),
    ("1 MiB", MIB, 20),
    ("64 MiB", 64 * MIB, 1),
)
MEMORY_SIZE = 256 * MIB
BASELINE = "boto3"
NAMES = (BASELINE, "store_s3")
LABELS = {BASELINE: "boto3 upload_fileobj", "store_s3": "Flask-Store S3Store.save"}
CONTENT_TYPE = "application/octet-stream"


@dataclass
class Uploader:
    """One way of putting a file from disk into a bucket; remembers the keys it wrote."""

    client: Any
    bucket: str
    put: Callable[[str], str]  # path -> object key

    def delete_all(self) -> None:
        """Empty the bucket (untimed), so the moto server's memory stays small."""
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for item in page.get("Contents", []):
                self.client.delete_object(Bucket=self.bucket, Key=item["Key"])


def uploader(name: str, endpoint: str) -> Uploader:
    """The contender ``name`` (``boto3`` or ``store_s3``), in a bucket of its own."""
    client = s3_client(endpoint)
    bucket = f"bench-{name.replace('_', '-')}-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    if name == BASELINE:

        def put(path: str) -> str:
            key = f"{uuid.uuid4().hex}.bin"
            with open(path, "rb") as source:
                client.upload_fileobj(source, bucket, key, ExtraArgs={"ContentType": CONTENT_TYPE})
            return key

        return Uploader(client, bucket, put)

    from flask_store import Store

    app = Flask("s3_bench")
    app.config.update(s3_store_config(bucket, endpoint))
    Store(app)
    store = Store.registry(app).resolve(None)

    def save(path: str) -> str:
        with open(path, "rb") as source:
            return store.save(FileStorage(source, f"{uuid.uuid4().hex}.bin")).name

    return Uploader(client, bucket, save)


def check_object(target: Uploader, key: str, path: str) -> None:
    """The object ``key`` holds exactly the file at ``path`` (streamed, hashed)."""
    response = target.client.get_object(Bucket=target.bucket, Key=key)
    if response.get("ContentType") != CONTENT_TYPE:
        raise AssertionError(f"{key}: Content-Type {response.get('ContentType')!r}")
    stored = _md5(response["Body"])
    with open(path, "rb") as source:
        expected = _md5(source)
    if stored != expected:
        raise AssertionError(f"{key}: stored bytes differ from the file")


def _md5(stream: Any) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    while chunk := stream.read(MIB):
        digest.update(chunk)
    return digest.hexdigest()


def write_payload(folder: Path, size: int) -> str:
    """A file of ``size`` random bytes in ``folder`` (written in 1 MiB pieces)."""
    path = folder / f"s3-payload-{size}.bin"
    with path.open("wb") as out:
        left = size
        while left > 0:
            out.write(os.urandom(min(left, MIB)))
            left -= MIB
    return str(path)


def speed_scenario(
    targets: Mapping[str, Uploader], label: str, path: str, batch: int, rounds: int
) -> Result:
    """Saves of the file at ``path``, each under a new name, interleaved by round."""

    def prepare(name: str) -> Sampler:
        target = targets[name]
        check_object(target, target.put(path), path)

        def put() -> None:
            target.put(path)

        count = batch_size(put, batch)
        target.delete_all()
        return batched(put, count, target.delete_all)

    size = os.path.getsize(path)
    return interleaved(f"s3_save_{size}", f"save, {label}", list(targets), prepare, rounds)


def memory_scenario(endpoint: str, targets: Mapping[str, Uploader], path: str) -> Result:
    """Peak RSS rise of a fresh process saving the file at ``path``, per contender."""
    result = Result("s3_memory", f"peak RSS rise, {os.path.getsize(path) // MIB} MiB save")
    for name, target in targets.items():
        try:
            found = json.loads(
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        f"{__package__}.s3_bench",
                        "memory",
                        name,
                        endpoint,
                        path,
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=600,
                    cwd=Path(__file__).resolve().parent.parent,
                ).stdout
            )
            child = Uploader(target.client, found["bucket"], target.put)
            check_object(child, found["key"], path)
            child.delete_all()
            target.client.delete_bucket(Bucket=child.bucket)
        except subprocess.CalledProcessError as exc:
            result.errors[name] = f"child failed: {exc.stderr.strip()[-500:]}"
            continue
        except Exception as exc:
            result.errors[name] = f"{type(exc).__name__}: {exc}"
            continue
        result.values[name] = found["rise"]
        result.values[f"{name}:idle"] = found["idle"]
        result.samples[name] = [found["seconds"]]
    return result


#: Labels of the proxy scenarios: the same bytes fetched by boto3 from the bucket, and
#: through the app's serving route with ``STORE_S3_SERVE = "proxy"``.
PROXY_LABELS = {BASELINE: "boto3 get_object (direct)", "store_s3": "Flask-Store proxy route"}
PROXY_SIZES: Sequence[tuple[str, int, int]] = (("1 MiB", MIB, 20), ("64 MiB", 64 * MIB, 1))
#: Range of the ranged proxy scenario: 64 KiB of the 1 MiB object.
PROXY_RANGE = (1000, 66535)


def proxy_scenarios(
    endpoint: str, rounds: int, sizes: Sequence[tuple[str, int, int]] = PROXY_SIZES
) -> list[Result]:
    """A file served by proxy (the route streams the object in 64 KiB reads, and passes a
    Range on as one ranged GET) against boto3 reading the same object straight from the moto
    server; through the test client, body read to the end in the chunks sent. ``sizes``:
    the whole-file downloads (label, bytes, most fetches per sample); the ranged one reads
    from a 1 MiB object whatever they are."""
    client = s3_client(endpoint)
    bucket = f"bench-proxy-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    from flask_store import Store

    app = Flask("flask_store_s3_proxy")
    app.config.update(s3_store_config(bucket, endpoint), STORE_S3_SERVE="proxy")
    Store(app)
    web = app.test_client()
    results = []
    with app.app_context():
        store = app.extensions["store"].resolve()
        keys = {
            size: store.put(f"proxy-{size}.bin", os.urandom(size)).key
            for size in {MIB, *(size for _, size, _ in sizes)}
        }
    object_keys = {size: store.object_key(key) for size, key in keys.items()}

    def direct(size: int, headers: Mapping[str, str]) -> int:
        extra = {"Range": headers["Range"]} if headers else {}
        body = client.get_object(Bucket=bucket, Key=object_keys[size], **extra)["Body"]
        received = 0
        while chunk := body.read(64 * KIB):
            received += len(chunk)
        return received

    def proxied(size: int, headers: Mapping[str, str]) -> int:
        response = web.get(
            f"{store.url_prefix}/{keys[size]}", headers=dict(headers), buffered=False
        )
        received = sum(len(chunk) for chunk in response.response)
        response.close()
        if response.status_code not in (200, 206):
            raise RuntimeError(f"the proxy route answered {response.status_code}")
        return received

    first, last = PROXY_RANGE
    cases: list[tuple[str, str, int, Mapping[str, str], int, int]] = [
        (f"s3_proxy_{size}", f"GET {label}", size, {}, size, batch) for label, size, batch in sizes
    ]
    cases.append(
        (
            "s3_proxy_range",
            "Range 64 KiB of 1 MiB",
            MIB,
            {"Range": f"bytes={first}-{last}"},
            last + 1 - first,
            20,
        )
    )
    fetchers = {BASELINE: direct, "store_s3": proxied}
    for key, title, size, headers, expected, batch in cases:

        def prepare(
            name: str,
            size: int = size,
            headers: Any = headers,
            expected: int = expected,
            batch: int = batch,
        ) -> Sampler:
            fetch = fetchers[name]

            def once() -> None:
                if fetch(size, headers) != expected:
                    raise RuntimeError(f"{name} fetched the wrong number of bytes")

            return batched(once, batch_size(once, batch))

        results.append(interleaved(key, title, list(fetchers), prepare, rounds))
    return results


def run(endpoint: str, workdir: Path, rounds: int) -> list[Result]:
    """Every S3 scenario against the moto server at ``endpoint``; payloads live in ``workdir``."""
    targets = {name: uploader(name, endpoint) for name in NAMES}
    results = []
    for label, size, batch in SIZES:
        path = write_payload(workdir, size)
        try:
            results.append(speed_scenario(targets, label, path, batch, rounds))
        finally:
            os.unlink(path)
    results += proxy_scenarios(endpoint, rounds)
    path = write_payload(workdir, MEMORY_SIZE)
    try:
        results.append(memory_scenario(endpoint, targets, path))
    finally:
        os.unlink(path)
    return results


# -- the child process of the memory scenario ----------------------------------------------


def _child(name: str, endpoint: str, path: str) -> dict[str, Any]:
    """Save ``path`` once as contender ``name`` and report the memory it took."""
    target = uploader(name, endpoint)
    warm_up = Path(path).with_name(f"warm-up-{os.getpid()}.bin")
    warm_up.write_bytes(os.urandom(KIB))
    try:
        target.put(str(warm_up))  # the client, its connections and the code paths are ready
    finally:
        warm_up.unlink()
    idle = status_kib(os.getpid(), "VmRSS") * KIB
    keys: list[str] = []
    start = time.perf_counter()
    rise = peak_rss_rise(os.getpid(), lambda: keys.append(target.put(path)))
    seconds = time.perf_counter() - start
    return {"bucket": target.bucket, "key": keys[0], "rise": rise, "idle": idle, "seconds": seconds}


def run_proxy(rounds: int, *, small: bool) -> list[Result]:
    """The proxy scenarios alone, on a moto server started for them."""
    sizes = [case for case in PROXY_SIZES if case[1] <= MIB] if small else PROXY_SIZES
    with tempfile.TemporaryDirectory() as workdir, moto_server(Path(workdir)) as endpoint:
        return proxy_scenarios(endpoint, rounds, sizes)


def proxy_summary(result: Result) -> str:
    """One line: the scenario, each contender's median in ms, and the proxy's ratio."""
    medians = {name: result.median(name) for name in (BASELINE, "store_s3")}
    shown = ", ".join(
        f"{PROXY_LABELS[name]} {median * 1000:.2f} ms"
        for name, median in medians.items()
        if median is not None
    )
    ratio = result.ratio("store_s3", BASELINE)
    errors = f" errors: {result.errors}" if result.errors else ""
    return f"{result.title}: {shown}; ratio {ratio and f'{ratio:.2f}x'}{errors}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.s3_bench")
    modes = parser.add_subparsers(dest="mode", required=True)
    memory = modes.add_parser("memory", help="the child process of the memory scenario")
    memory.add_argument("name", choices=NAMES)
    memory.add_argument("endpoint")
    memory.add_argument("path")
    proxy = modes.add_parser("proxy", help="only the proxy scenarios; print their medians")
    proxy.add_argument("--rounds", type=int, default=15)
    proxy.add_argument("--small", action="store_true", help="leave out the 64 MiB download")
    args = parser.parse_args(argv)
    if args.mode == "proxy":
        print(f"load average {os.getloadavg()[0]:.2f}")
        for result in run_proxy(args.rounds, small=args.small):
            print(proxy_summary(result))
        print(f"load average {os.getloadavg()[0]:.2f}")
        return
    print(json.dumps(_child(args.name, args.endpoint, args.path)))


if __name__ == "__main__":
    main()
