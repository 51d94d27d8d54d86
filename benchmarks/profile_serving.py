"""``python -m benchmarks.profile_serving``: where a served request spends its time.

Runs one contender under gunicorn (one sync worker, ``--no-control-socket``) with every
call of the worker's ``handle`` (accept to close: parse, WSGI app, send) profiled by
``cProfile``, sends ``--requests`` GETs of a stored 1 KiB file, then as many conditional
GETs answered 304, and prints the top functions of each by their own time and by their
cumulative time. BENCHMARKS.md quotes the result ("Where the time goes").
"""

from __future__ import annotations

import argparse
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .payloads import KIB, MIB, Multipart, random_bytes
from .server import Server, download, post_upload, serving

#: The gunicorn config the worker runs with: ``handle`` profiled, stats dumped on exit.
HOOKS = """
import cProfile, os

def post_fork(server, worker):
    profile = cProfile.Profile()
    handle = worker.handle

    def profiled(*args):
        if os.path.exists(os.environ["PROFILE_SWITCH"]):
            return profile.runcall(handle, *args)
        return handle(*args)

    worker.handle = profiled
    worker._flask_store_profile = profile

def worker_exit(server, worker):
    worker._flask_store_profile.dump_stats(os.environ["PROFILE_OUT"])
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_serving")
    parser.add_argument("--contender", default="store_local", help="store_local (default)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--top", type=int, default=18)
    return parser.parse_args(argv)


def profile_of(
    server: Server, switch: Path, out: Path, url: str, headers: dict[str, str], n: int
) -> pstats.Stats:
    """Profile ``n`` GETs of ``url``; ``out`` is written when the worker exits."""
    status, size = (304, 0) if headers else (200, KIB)
    switch.touch()
    start = time.perf_counter()
    for _ in range(n):
        download(server, url, size, headers=headers, status=status)
    elapsed = time.perf_counter() - start
    switch.unlink()
    print(f"{n} requests, {elapsed / n * 1e6:.0f} µs each from the client", file=sys.stderr)
    server.process.terminate()
    server.process.wait(timeout=30)
    return pstats.Stats(str(out))


def report(title: str, stats: pstats.Stats, top: int, n: int) -> str:
    """The top functions by own time and by cumulative time, per request."""
    lines = [f"## {title}", ""]
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values())
    lines.append(f"profiled time per request: {total / n * 1e6:.0f} µs")
    app = [item for item in raw.items() if item[0][2] == "__call__" and "flask/app" in item[0][0]]
    if app:
        share = app[0][1][3] / total if total else 0
        lines.append(f"in the WSGI app (Flask's `__call__`): {share:.0%} of that time")
    tables = (
        ("tottime", 2, lambda name: True),
        ("cumtime", 3, lambda name: True),
        ("cumtime, Flask, Werkzeug and Flask-Store only", 3, _is_app_code),
    )
    for order, column, wanted in tables:
        lines += ["", f"| {order} µs/request | calls/request | function |", "|---|---|---|"]
        chosen = [item for item in raw.items() if wanted(item[0][0])]
        ranked = sorted(chosen, key=lambda item: item[1][column], reverse=True)[:top]
        for (filename, line, function), entry in ranked:
            where = _short(filename)
            lines.append(
                f"| {entry[column] / n * 1e6:.1f} | {entry[1] / n:.1f} | "
                f"`{where}:{line}({function})` |"
            )
    return "\n".join(lines)


def _is_app_code(filename: str) -> bool:
    return any(part in filename for part in ("flask_store/", "/flask/", "/werkzeug/", "/depot/"))


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def profile(name: str, conditional: bool, requests: int) -> pstats.Stats:
    """Profile ``requests`` GETs of a stored 1 KiB file (answered 304 when ``conditional``)
    through contender ``name`` under gunicorn, after 200 unprofiled ones."""
    with tempfile.TemporaryDirectory(prefix="flask-store-profile-") as tmp:
        workdir = Path(tmp)
        folder = workdir / "files"
        folder.mkdir()
        switch, out = workdir / "on", workdir / "profile.out"
        hooks = workdir / "hooks.py"
        hooks.write_text(HOOKS)
        with serving(
            name,
            str(folder),
            workdir / "gunicorn.log",
            f"--config={hooks}",
            env={"PROFILE_SWITCH": str(switch), "PROFILE_OUT": str(out)},
        ) as server:
            url = post_upload(server, Multipart.for_file("small.bin", KIB), random_bytes(MIB))
            etag = download(server, url, KIB)
            headers = {"If-None-Match": etag or ""} if conditional else {}
            status, size = (304, 0) if conditional else (200, KIB)
            for _ in range(200):
                download(server, url, size, headers=headers, status=status)
            return profile_of(server, switch, out, url, headers, requests)


def app_time(stats: pstats.Stats) -> tuple[float, float]:
    """Profiled seconds in gunicorn's ``handle`` (all of it) and in the WSGI app."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values())
    app = sum(
        entry[3]
        for (filename, _, function), entry in raw.items()
        if function == "__call__" and filename.endswith("flask/app.py")
    )
    return total, app


def summary(
    found: dict[tuple[str, bool], pstats.Stats], requests: int, labels: dict[str, str]
) -> list[str]:
    """BENCHMARKS.md's profile section: time per request in gunicorn and in the app, and
    where the app's time goes."""
    lines = [
        "## Where the time of a served request goes (profile)",
        "",
        f"`python -m benchmarks.profile_serving`: cProfile of gunicorn's `handle` (accept, "
        f"parse, WSGI app, send, close) for {requests:,} requests of a 1 KiB file per row, "
        "in this run. The profiler inflates every Python call, so compare rows, not with the "
        "tables above.",
        "",
        "| contender | request | µs per request in gunicorn's handle | of it in the WSGI app |",
        "|---|---|---|---|",
    ]
    for (name, conditional), stats in found.items():
        total, app = app_time(stats)
        request = "304 revalidation" if conditional else "GET 1 KiB"
        lines.append(
            f"| {labels.get(name, name)} | {request} | {total / requests * 1e6:.0f} | "
            f"{app / requests * 1e6:.0f} ({app / total:.0%}) |"
        )
    for (name, conditional), stats in found.items():
        if conditional:
            continue
        raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
        mine = [item for item in raw.items() if _is_app_code(item[0][0])]
        ranked = sorted(mine, key=lambda item: item[1][2], reverse=True)[:6]
        lines += [
            "",
            f"Top own times in the app, {labels.get(name, name)}, GET 1 KiB (µs per request): "
            + "; ".join(
                f"`{_short(filename)}:{function}` {entry[2] / requests * 1e6:.1f}"
                for (filename, _, function), entry in ranked
            ),
        ]
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sections = []
    for conditional in (False, True):
        stats = profile(args.contender, conditional, args.requests)
        title = "304 revalidation" if conditional else "1 KiB GET"
        sections.append(report(f"{args.contender}: {title}", stats, args.top, args.requests))
    print("\n\n".join(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
