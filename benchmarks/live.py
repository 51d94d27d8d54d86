"""Scenarios through a real server: whole 64 MiB requests, and 1 GiB memory profiles."""

from __future__ import annotations

import time
from collections.abc import Mapping

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
