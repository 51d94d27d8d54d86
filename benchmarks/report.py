"""The report: machine and versions, tables of medians and ratios, and the issue's targets."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from .contenders import BASELINE
from .payloads import MIB
from .s3_bench import BASELINE as BOTO3
from .s3_bench import LABELS as S3_LABELS
from .s3_bench import NAMES as S3_NAMES
from .s3_bench import PROXY_LABELS as S3_PROXY_LABELS
from .timing import Result

#: How Flask-Store reaches its figures, for readers of BENCHMARKS.md.
HOW = (
    "### How Flask-Store gets there",
    "",
    "- Large uploads are spooled by Werkzeug straight into a file with no name yet "
    "(`O_TMPFILE`) in the store's folder (`STORE_SPOOL_UPLOADS`); `save()` links that very "
    "file into place, so the save step copies nothing, and a worker killed mid-upload "
    "leaves nothing behind. The spool writes in 1 MiB blocks: Werkzeug's parser hands over "
    "pieces of odd sizes, and with 8 KiB buffered writes the stored file ended up in small "
    "page-cache folios and was measurably slower to read and send afterwards.",
    "- Stores on another file system, and remote stores, get a streamed 1 MiB-chunk copy.",
    "- File URLs are answered by a WSGI dispatcher in front of Flask (`STORE_SERVE_FAST`, "
    "on by default while the app has no request hooks): no request context, URL matching "
    "or response object, and the same answers, decided by the same functions.",
    "- The header fields of each version of a local file (ETag, Last-Modified, type, "
    "disposition, caching) are built once and cached by (key, device, inode, mtime, ctime, "
    "size): a GET costs one `open` and one `fstat`, a 304 or HEAD one `lstat`, and no "
    "extended attribute is read for a version already seen.",
    "- The whole file and single ranges go to the server's `wsgi.file_wrapper` with the "
    "descriptor at the range's start (gunicorn then `sendfile`s exactly Content-Length "
    "bytes); files from 1 MiB get `posix_fadvise(SEQUENTIAL)`; without a file wrapper it "
    "reads 64 KiB per step instead of Werkzeug's 8 KiB.",
    "- A body of 1 MiB or more sent to a peer on loopback (the benchmark client here; a "
    "reverse proxy on the same host in production) gets its socket send buffer capped at "
    "256 KiB (`flask_store/send_buffers.py`): Linux otherwise grows it to 4 MiB, and the "
    "pages `sendfile` queues leave the CPU cache before the receiver copies them out. "
    "Measured with a bare `sendfile` server, 64 MiB downloads took 25-45% less time and "
    "1 GiB ones about 25% less; peers on other hosts keep the growing buffer a long round "
    "trip needs.",
    "- Saving the same name again tries exactly two names (the name, then a random "
    "suffix claimed atomically with `link()`): no listing, no exists-loop.",
    "- S3: one PUT below 8 MiB, multipart above it with 8 MiB parts, at most 4 of them in "
    "memory at once, so memory is bounded whatever the file size.",
)

LIBRARIES = ("Flask", "Werkzeug", "Flask-Reuploaded", "filedepot", "gunicorn", "boto3", "moto")
#: A ratio this close above a target is reported as "within noise", not as met.
NOISE = 0.05


def duration(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def mebibytes(count: float) -> str:
    return f"{count / MIB:.1f} MiB"


def machine(workdir: str, load_at_start: float) -> list[str]:
    """Lines describing where and with what the numbers were measured."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    memory = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/meminfo").splitlines()
            if line.startswith("MemTotal")
        ),
        "unknown",
    )
    versions = ", ".join(f"{name} {_version(name)}" for name in LIBRARIES)
    return [
        f"- Machine: {platform.platform()}; {cpu}; {os.cpu_count()} cores; {memory} RAM",
        f"- File system of the stores: {_fs_type(workdir)} ({workdir})",
        f"- Python {platform.python_version()} ({platform.python_implementation()})",
        f"- Load average (1 min): {load_at_start:.2f} at the start, {os.getloadavg()[0]:.2f} "
        "at the end (anything above 0 is other work sharing the cores)",
        f"- Flask-Store {_version('Flask-Store-NG')} at {_git_revision()}; {versions}",
    ]


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_revision() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "flask_store"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown revision"
    return f"git {rev}{' + uncommitted changes in flask_store/' if dirty else ''}"


def _fs_type(path: str) -> str:
    best, kind = "", "unknown"
    real = os.path.realpath(path)
    for line in _read("/proc/mounts").splitlines():
        parts = line.split()
        if len(parts) > 2 and real.startswith(parts[1]) and len(parts[1]) > len(best):
            best, kind = parts[1], parts[2]
    return kind


def cell(result: Result, name: str, baseline: str = BASELINE) -> str:
    """``median (ratio)`` of one contender in one scenario, or why there is none."""
    if name in result.errors:
        return "**ERROR**"
    if name in result.notes:
        return f"n/a: {result.notes[name]}"
    median = result.median(name)
    if median is None:
        return "n/a"
    ratio = result.ratio(name, baseline)
    return f"{duration(median)} ({ratio:.2f}x)" if ratio is not None else duration(median)


def timing_table(
    results: Sequence[Result],
    names: Sequence[str],
    labels: Mapping[str, str],
    baseline: str = BASELINE,
) -> list[str]:
    header = "| scenario | " + " | ".join(labels[n] for n in names) + " |"
    lines = [header, "|" + "---|" * (len(names) + 1)]
    for result in results:
        cells = " | ".join(cell(result, n, baseline) for n in names)
        lines.append(f"| {result.title} | {cells} |")
    return lines


def collision_table(result: Result, names: Sequence[str], labels: Mapping[str, str]) -> list[str]:
    lines = [
        "| contender | first 100 (median) | last 100 (median) | last / first | "
        f"last / first, each save ÷ {labels[BASELINE]}'s beside it |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        if name in result.errors:
            lines.append(f"| {labels[name]} | **ERROR** | | | |")
        elif name in result.values:
            first, last = result.values[f"{name}:first"], result.values[f"{name}:last"]
            relative = result.values.get(f"{name}:relative")
            lines.append(
                f"| {labels[name]} | {duration(first)} | {duration(last)} | "
                f"{result.values[name]:.2f}x | "
                + (f"{relative:.2f}x |" if relative is not None else "n/a |")
            )
    return lines


def s3_memory_table(result: Result) -> list[str]:
    lines = [
        "| contender | idle RSS | peak RSS rise during the save | save time |",
        "|---|---|---|---|",
    ]
    for name in S3_NAMES:
        if name in result.errors:
            lines.append(f"| {S3_LABELS[name]} | **ERROR** | | |")
        elif name in result.values:
            lines.append(
                f"| {S3_LABELS[name]} | {mebibytes(result.values[f'{name}:idle'])} | "
                f"{mebibytes(result.values[name])} | {duration(result.samples[name][0])} |"
            )
    return lines


def memory_table(
    up: Result, down: Result, names: Sequence[str], labels: Mapping[str, str]
) -> list[str]:
    lines = [
        "| contender | upload: peak RSS rise | upload time | download: peak RSS rise | "
        "download time |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        row = [labels[name]]
        for result in (up, down):
            if name in result.errors:
                row += ["**ERROR**", ""]
            elif name in result.values:
                row += [mebibytes(result.values[name]), duration(result.samples[name][0])]
            else:
                row += ["n/a", ""]
        lines.append("| " + " | ".join(row) + " |")
    return lines


@dataclass(frozen=True)
class Target:
    """One of the issue's targets, checked against a measured value."""

    text: str
    measured: float | None
    limit: float
    unit: str = "x"
    strict: bool = False  # strict targets have no noise margin (memory, 304 vs full GET)
    #: Why Flask-Store can miss this target, printed under the table when it does.
    why: str = ""

    @property
    def met(self) -> bool:
        return self.measured is not None and self.measured <= self.limit

    def verdict(self) -> str:
        if self.measured is None:
            return "not measured"
        if self.met:
            return "met"
        if not self.strict and self.measured <= self.limit * (1 + NOISE):
            return "missed by < 5% (noise level)"
        return "**missed**"

    def shown(self) -> str:
        if self.measured is None:
            return "—"
        if self.unit == "MiB":
            return f"{self.measured:.1f} MiB"
        return f"{self.measured:.3f}x"


def throughput_table(
    results: Sequence[Result], names: Sequence[str], labels: Mapping[str, str]
) -> list[str]:
    """Requests per second (1 / the median seconds per request) of each throughput run."""
    header = "| scenario | " + " | ".join(labels.get(n, n) for n in names) + " |"
    lines = [header, "|" + "---|" * (len(names) + 1)]
    for result in results:
        cells = []
        for name in names:
            median = result.median(name)
            if name in result.errors:
                cells.append("**ERROR**")
            elif median:
                cells.append(f"{1 / median:,.0f}/s")
            else:
                cells.append("n/a")
        lines.append(f"| {result.title} | {' | '.join(cells)} |")
    return lines


def target_table(targets: Sequence[Target]) -> list[str]:
    lines = ["| target | Flask-Store | verdict |", "|---|---|---|"]
    lines += [f"| {t.text} | {t.shown()} | {t.verdict()} |" for t in targets]
    return lines


def misses(targets: Sequence[Target]) -> list[str]:
    """One honest sentence for every target this run did not meet."""
    lines = []
    for target in targets:
        if target.met:
            continue
        why = target.why or (
            "No cause beyond measurement noise was found; the peers' own spread in the "
            "tables below shows how large that noise is."
        )
        lines.append(f"- **{target.text}** ({target.shown()}, {target.verdict()}): {why}")
    return lines or ["Every target was met in this run."]


@dataclass
class Run:
    """Everything one run measured, and every error met on the way."""

    command: str
    #: Size of the memory profile through gunicorn (``--big``), or ``None`` when not run.
    big_size: int | None = None
    load_at_start: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    local_names: list[str] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    collisions: Result | None = None
    memory: tuple[Result, Result] | None = None
    s3: list[Result] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    machine: list[str] = field(default_factory=list)
    #: The profile section (:func:`benchmarks.profile_serving.summary`), when it was run.
    profile: list[str] = field(default_factory=list)

    def every(self) -> list[Result]:
        """Every result of the run."""
        found = [*self.results, *self.s3, *(self.memory or ())]
        return found + ([self.collisions] if self.collisions else [])

    def by_key(self) -> dict[str, Result]:
        return {result.key: result for result in self.every()}

    def label(self, name: str) -> str:
        """How contender ``name`` is called in the report."""
        return self.labels.get(name) or S3_LABELS.get(name, name)


def document(run: Run, targets: Sequence[Target]) -> str:
    """BENCHMARKS.md: machine, targets, then every table of the run."""
    test_client = [r for r in run.results if not r.key.startswith(("live", "rps"))]
    real_server = [r for r in run.results if r.key.startswith("live")]
    throughput = [r for r in run.results if r.key.startswith("rps")]
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{run.command}` (`make bench` runs the same). Every contender runs in "
        "one process, interleaved round by round in a "
        "rotating order; figures are medians, ratios are to the baseline (plain Flask: "
        "`FileStorage.save` under a unique name, `send_from_directory`; for S3, bare boto3). "
        "Lower is better.",
        "",
        *run.machine,
        "",
        "## Targets (issues 3, 6 and 16)",
        "",
        *target_table(targets),
        "",
        "### Where a target was missed",
        "",
        *misses(targets),
        "",
        *HOW,
        "",
        "## Through the test client",
        "",
        *timing_table(test_client, run.names, run.labels),
        "",
    ]
    if run.collisions:
        lines += [
            "## Same filename saved 1,000 times (collision cost as the folder grows)",
            "",
            *collision_table(run.collisions, run.names, run.labels),
            "",
        ]
    lines += [
        "## Through a real server (gunicorn, 1 sync worker, 127.0.0.1, bare socket client)",
        "",
        *timing_table(real_server, run.local_names, run.labels),
        "",
    ]
    if throughput:
        names = [*run.local_names, "nginx"]
        lines += [
            "## Requests per second at 16 connections (wrk, 2 threads; higher is better)",
            "",
            "Each contender under gunicorn (1 sync worker) as above; nginx (1 worker, "
            "sendfile, no keep-alive, so every request is a new connection as with gunicorn's "
            "sync worker) serves Flask-Store's folder as the physical reference. Medians of "
            "the rounds, each round a 1-second wrk run per contender, interleaved.",
            "",
            *throughput_table(throughput, names, run.labels),
            "",
        ]
    else:
        lines += ["_Requests per second not measured: it needs nginx and wrk installed._", ""]
    lines += run.profile
    if run.memory and run.big_size:
        lines += [
            f"## Server memory, {run.big_size // MIB} MiB file through gunicorn",
            "",
            *memory_table(*run.memory, run.local_names, run.labels),
            "",
        ]
    else:
        lines += ["_Server memory profile not run (pass `--big`)._", ""]
    lines += s3_section(run)
    lines += [f"_{note}_" for note in run.notes]
    if run.errors:
        lines += ["## ERRORS", "", *[f"- {error}" for error in run.errors], ""]
    return "\n".join(lines)


def s3_section(run: Run) -> list[str]:
    """S3Store against bare boto3 on the same moto server (issue 3)."""
    if not run.s3:
        return []
    speed = [r for r in run.s3 if r.key.startswith("s3_save_")]
    proxy = [r for r in run.s3 if r.key.startswith("s3_proxy")]
    memory = [r for r in run.s3 if r.key == "s3_memory"]
    lines = [
        "## S3: S3Store.save against boto3 upload_fileobj (same moto server)",
        "",
        "Both read the same file from disk and store it under a new key; boto3 with its "
        "defaults plus a Content-Type, S3Store with its own (conditional write, "
        "Content-Disposition, 8 MiB parts, 4 at a time).",
        "",
        *timing_table(speed, S3_NAMES, S3_LABELS, BOTO3),
        "",
    ]
    if proxy:
        lines += [
            'Files served by proxy (`STORE_S3_SERVE = "proxy"`, through the test client: '
            "the route streams the object in 64 KiB reads and passes a Range on as a ranged "
            "GET) against boto3 reading the same object straight from the same moto server:",
            "",
            *timing_table(proxy, S3_NAMES, S3_PROXY_LABELS, BOTO3),
            "",
        ]
    for result in memory:
        lines += [
            f"Memory of a fresh process ({result.title}; idle = after one warm-up save):",
            "",
            *s3_memory_table(result),
            "",
        ]
    return lines


def with_kept_sections(text: str, old: str) -> str:
    """``text`` (this run's document), followed by the sections of ``old`` that this run
    does not write: the images, resumable-upload and transfer benchmarks append their own
    sections to BENCHMARKS.md, and a run of this one must not drop them."""
    written = {line for line in text.splitlines() if line.startswith("## ")}
    kept: list[str] = []
    keeping = False
    for line in old.splitlines():
        if line.startswith("## "):
            keeping = line not in written
        if keeping:
            kept.append(line)
    if not kept:
        return text
    return text.rstrip("\n") + "\n\n" + "\n".join(kept).rstrip("\n") + "\n"
