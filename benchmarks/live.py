"""Scenarios through a real server: whole 64 MiB requests, and 1 GiB memory profiles."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass

from .contenders import clear_folder
from .payloads import GIB, KIB, MIB, Multipart, random_bytes
from .server import Server, download, peak_rss_rise, post_upload
from .timing import Result, Sampler, batch_size, batched, interleaved, paired

BLOCK = random_bytes(MIB)


def upload_scenario(
    servers: Mapping[str, Server], folders: Mapping[str, str], size: int, rounds: int
) -> Result:
    """Whole streamed upload requests of ``size`` bytes through the server."""
    multipart = Multipart.for_file("live.bin", size)

    def prepare(name: str) -> Sampler:
        server = servers[name]
        download(server, post_upload(server, multipart, BLOCK), size, BLOCK)
        clear_folder(folders[name])

        def sample() -> float:
            start = time.perf_counter()
            post_upload(server, multipart, BLOCK)
            elapsed = time.perf_counter() - start
            clear_folder(folders[name])
            return elapsed

        return sample

    return interleaved(
        f"live_upload_{size}",
        f"upload through gunicorn, {size_label(size)}",
        list(servers),
        prepare,
        rounds,
    )


def size_label(size: int) -> str:
    if size >= GIB:
        return f"{size // GIB} GiB"
    return f"{size // MIB} MiB" if size >= MIB else f"{size // KIB} KiB"


def serve_scenario(servers: Mapping[str, Server], size: int, batch: int, rounds: int) -> Result:
    """Whole downloads of a stored ``size``-byte file through the server (sendfile offered)."""
    multipart = Multipart.for_file("live-serve.bin", size)

    def prepare(name: str) -> Sampler:
        server = servers[name]
        url = post_upload(server, multipart, BLOCK)
        download(server, url, size, BLOCK)

        def get() -> None:
            download(server, url, size)

        return batched(get, batch_size(get, batch))

    return interleaved(
        f"live_serve_{size}",
        f"download through gunicorn, {size_label(size)}",
        list(servers),
        prepare,
        rounds,
    )


def not_modified_scenario(servers: Mapping[str, Server], rounds: int) -> tuple[Result, Result]:
    """A conditional GET answered 304 against a full GET of the same 1 KiB file, paired."""
    multipart = Multipart.for_file("live-cached.bin", KIB)
    full = Result("live_full_paired", "full GET of the same file (paired with the 304)")

    def prepare(name: str) -> Sampler:
        server = servers[name]
        url = post_upload(server, multipart, BLOCK)
        etag = download(server, url, KIB, BLOCK)
        if not etag:
            raise RuntimeError(f"{name} sent no ETag")
        headers = {"If-None-Match": etag}

        def revalidate() -> None:
            download(server, url, 0, headers=headers, status=304)

        def get() -> None:
            download(server, url, KIB)

        return paired(full, name, revalidate, get, 100)

    result = interleaved(
        "live_not_modified",
        "conditional GET through gunicorn -> 304, 1 KiB file",
        list(servers),
        prepare,
        rounds,
    )
    full.errors.update(result.errors)
    return result, full


def memory_scenario(
    servers: Mapping[str, Server], folders: Mapping[str, str], size: int = GIB
) -> tuple[Result, Result]:
    """Peak memory rise of each server's worker while ``size`` bytes go up, then come down.

    Each result's ``values`` hold the rise in bytes per contender; its ``samples`` hold the
    single transfer's duration, for context.
    """
    label = size_label(size)
    up = Result("memory_upload", f"peak RSS rise of the server, {label} upload")
    down = Result("memory_download", f"peak RSS rise of the server, {label} download")
    multipart = Multipart.for_file("huge.bin", size)
    for name, server in servers.items():
        holder: dict[str, str] = {}

        def send(server: Server = server, holder: dict[str, str] = holder) -> None:
            holder["url"] = post_upload(server, multipart, BLOCK)

        def fetch(server: Server = server, holder: dict[str, str] = holder) -> None:
            download(server, holder["url"], size, BLOCK)

        try:
            pid = server.worker_pid
            start = time.perf_counter()
            up.values[name] = peak_rss_rise(pid, send)
            up.samples[name] = [time.perf_counter() - start]
            start = time.perf_counter()
            down.values[name] = peak_rss_rise(pid, fetch)
            down.samples[name] = [time.perf_counter() - start]
        except Exception as exc:
            target = down if name in up.values else up
            target.errors[name] = f"{type(exc).__name__}: {exc}"
        finally:
            clear_folder(folders[name])
    return up, down


def big_download_scenario(
    servers: Mapping[str, Server], folders: Mapping[str, str], size: int, rounds: int
) -> Result:
    """Whole downloads of one stored ``size``-byte file, ``rounds`` interleaved samples.

    The file is uploaded through each server first (and checked byte for byte); every
    sample is one download, read to the end by the client.
    """
    multipart = Multipart.for_file("big-serve.bin", size)

    def prepare(name: str) -> Sampler:
        server = servers[name]
        url = post_upload(server, multipart, BLOCK)
        download(server, url, size, BLOCK)

        def sample() -> float:
            start = time.perf_counter()
            download(server, url, size)
            return time.perf_counter() - start

        return sample

    try:
        return interleaved(
            f"live_serve_{size}",
            f"download through gunicorn, {size_label(size)} (one download per sample)",
            list(servers),
            prepare,
            rounds,
        )
    finally:
        for folder in folders.values():
            clear_folder(folder)


@dataclass(frozen=True)
class Endpoint:
    """One URL to load with wrk: a contender's (or nginx's) answer for a stored file."""

    port: int
    path: str
    headers: Mapping[str, str]


def throughput_scenario(
    key: str, title: str, endpoints: Mapping[str, Endpoint], rounds: int, seconds: float
) -> Result:
    """Requests per second at :data:`CONNECTIONS` concurrent connections (wrk), interleaved.

    Samples are seconds per request (1 / requests per second), so medians and ratios read
    like the other tables; the report also shows them as requests per second.
    """

    def prepare(name: str) -> Sampler:
        endpoint = endpoints[name]
        return lambda: 1 / wrk(endpoint, seconds)

    return interleaved(key, title, list(endpoints), prepare, rounds)


_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read \d+, write \d+, timeout (\d+)")

#: Concurrent connections of the throughput runs (wrk ``-c``), over 2 wrk threads.
CONNECTIONS = 16


def wrk(endpoint: Endpoint, seconds: float) -> float:
    """Requests per second wrk reaches against ``endpoint`` in ``seconds``.

    :raises RuntimeError: when any answer was an error (wrk counts non-2xx/3xx answers and
        socket errors), so a failing server never shows up as fast.
    """
    command = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds:g}s"]
    for name, value in endpoint.headers.items():
        command += ["-H", f"{name}: {value}"]
    command.append(f"http://127.0.0.1:{endpoint.port}{endpoint.path}")
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if "Non-2xx or 3xx responses" in output:
        raise RuntimeError(f"wrk saw error answers: {output.strip()[-300:]}")
    errors = _SOCKET_ERRORS.search(output)
    if errors and int(errors.group(1)) + int(errors.group(2)) > 0:
        raise RuntimeError(f"wrk saw connect errors or timeouts: {errors.group(0)}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if found is None:
        raise RuntimeError(f"wrk printed no rate: {output.strip()[-300:]}")
    return float(found.group(1))
