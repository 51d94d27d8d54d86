"""``flask store ...``: list, inspect, copy, sync and verify files from the command line.

Paths name a file across the app's stores as ``STORE/KEY`` (:attr:`FileWrapper.path`); a path
whose first part names no store is a key of the default store (``big.bin`` is
``default/big.bin``). Exit codes: 0 when everything worked, 1 when some files failed (each
named on stderr), 2 for usage errors (a store name or path that does not exist, a key that
is not acceptable). Errors are one line, never a traceback.

Commands that touch many files (``ls``, ``sync``, ``verify``) work on ``--jobs`` files at a
time, in threads: a remote store spends most of each request waiting on the network. Results
are reported in key order whatever order the work finishes in. Long commands show a progress
bar on a terminal and plain lines elsewhere (:mod:`flask_store.console`).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NoReturn, ParamSpec, TypeVar

import click
from flask import current_app
from flask.cli import with_appcontext

from . import caches, prune, sqla_deletes, sync
from .console import echo_error, printable, progress, report_plain
from .exceptions import (
    FileExistsInStoreError,
    FileNotFoundInStoreError,
    InvalidArgumentError,
    InvalidKeyError,
    StoreError,
    StoreNotFoundError,
)
from .file_wrapper import FileWrapper
from .read_cache import ReadThroughCache
from .registry import StoreRegistry, get_registry
from .stores.base import BaseStore
from .stores.local import LocalStore
from .stores.queued import QueuedStore
from .transfer.cli import transfer_command, worker_command
from .tus_views import prune_expired_uploads

__all__ = ["store_cli"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

#: Errors that mean the command line itself is wrong: exit code 2.
USAGE_ERRORS = (StoreNotFoundError, InvalidKeyError, InvalidArgumentError)
DEFAULT_JOBS = 4
#: Bytes ``cat`` reads and writes at a time.
CHUNK_SIZE = 256 * 1024


class UsageProblem(click.ClickException):
    """A bad store name or path: one line on stderr and exit code 2."""

    exit_code = 2


def _one_line_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Report store errors escaping ``command`` as one ``Error:`` line, not a traceback.

    The message is made :func:`~flask_store.console.printable`: its text may come from a
    server (an S3-compatible one answers what it likes) or name a hostile key.
    """

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except USAGE_ERRORS as exc:
            raise UsageProblem(printable(str(exc))) from None
        except BrokenPipeError:
            _reader_went_away()
        except (StoreError, OSError) as exc:
            raise click.ClickException(printable(str(exc))) from None

    return run


def _reader_went_away() -> NoReturn:
    """Stop quietly: whoever read stdout has closed it (``flask store cat big | head``).

    That is no failure of a store, so no ``Error: [Errno 32] Broken pipe`` line. As Python's
    documentation advises for EPIPE, stdout is pointed at /dev/null first, so that flushing
    it at exit cannot fail again, and the exit code is 1.
    """
    with contextlib.suppress(OSError, ValueError):  # ValueError: stdout has no file
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    sys.exit(1)


def _registry() -> StoreRegistry:
    return get_registry(current_app)


def _store(name: str | None) -> BaseStore:
    return _registry().resolve(name)


def _is_store_name(name: str) -> bool:
    """Whether ``name`` is the name of one of the app's stores or aliases."""
    registry = _registry()
    return name in registry.stores or name in registry.aliases


def _known_stores() -> str:
    registry = _registry()
    return ", ".join(sorted([*registry.stores, *registry.aliases]))


def _names_a_store(path: str) -> bool:
    """Whether ``path`` starts with a store's name (``STORE/KEY``), not a bare key."""
    name, slash, _ = path.partition("/")
    return bool(slash) and _is_store_name(name)


def _locate(path: str) -> tuple[BaseStore, str]:
    """The store and (unchecked) key of ``path``: ``STORE/KEY`` when its first part names a
    store or an alias, else the whole path as a key of the default store."""
    if _names_a_store(path):
        name, _, key = path.partition("/")
        return _store(name), key
    return _store(None), path


def _file(path: str) -> FileWrapper:
    """The file at ``path`` (``STORE/KEY`` or a bare key), or a usage error saying why not."""
    if _is_store_name(path):
        raise UsageProblem(f"{path}: that is a store; name a file in it, as in {path}/KEY.")
    store, key = _locate(path)
    try:
        wrapper = store.file(key)
        wrapper.info  # noqa: B018 - fetch now so a missing file is a usage error
    except InvalidKeyError as exc:
        raise UsageProblem(f"{path}: {exc}") from None
    except FileNotFoundInStoreError as exc:
        if _names_a_store(path):
            raise UsageProblem(f"{path}: {exc}") from None
        raise UsageProblem(
            f"{path}: {exc} A path without a store name is a key of the default store "
            f"({store.name}); stores: {_known_stores()}."
        ) from None
    return wrapper


class Seconds(click.FloatRange):
    """A number of seconds within a range, never ``nan``.

    ``click.FloatRange`` lets ``nan`` through (every comparison with it is false), and an
    age of ``nan`` turns the age checks upside down: ``prune --text-older-than nan``
    deleted every text file, fresh ones too.
    """

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        seconds = super().convert(value, param, ctx)
        if math.isnan(seconds):
            self.fail(f"{value!r} is not a number of seconds.", param, ctx)
        return seconds


_jobs_option = click.option(
    "--jobs",
    "-j",
    type=click.IntRange(1, 64),
    default=DEFAULT_JOBS,
    show_default=True,
    help="Files handled at the same time.",
)


@click.group("store")
def store_cli() -> None:
    """Manage the files of Flask-Store's stores (paths are STORE/KEY)."""


@store_cli.command("ls")
@click.argument("store", required=False)
@click.argument("prefix", default="")
@_jobs_option
@with_appcontext
@_one_line_errors
def list_files(store: str | None, prefix: str, jobs: int) -> None:
    """List the keys of STORE (default store if omitted) that start with PREFIX.

    One argument may also be a path: STORE/PREFIX, or a PREFIX of the default store.
    """
    target, start, explicit = _listing(store, prefix)
    listed = failed = 0
    with FileWorkers(jobs) as workers:
        for key, info in workers.map(target.info, target.keys(start)):
            listed += 1
            if isinstance(info, BaseException):
                failed += 1
                echo_error(target.name, key, info)
                continue
            stamp = info.last_modified.strftime("%Y-%m-%d %H:%M:%S")
            click.echo(f"{info.size:>12}  {stamp}  {key}")
    if not listed and not explicit:
        # Neither a store nor a prefix of any key: most likely a mistyped store name.
        raise UsageProblem(f"No store is called {store!r}; known: {_known_stores()}.")
    if failed:
        sys.exit(1)


def _listing(store: str | None, prefix: str) -> tuple[BaseStore, str, bool]:
    """What ``ls STORE PREFIX`` lists: ``(store, prefix, whether a store was named)``."""
    if store is None or prefix or _is_store_name(store):
        return _store(store), prefix, True
    target, start = _locate(store)
    return target, start, _names_a_store(store)


@store_cli.command("stat")
@click.argument("path")
@with_appcontext
@_one_line_errors
def stat_file(path: str) -> None:
    """Show the metadata of the file at PATH (STORE/KEY, or a KEY of the default store)."""
    # Values are shown printable(): the filename is whatever the client sent.
    wrapper = _file(path)
    info = wrapper.info
    for label, value in [
        ("path", wrapper.path),
        ("size", info.size),
        ("content-type", info.content_type),
        ("filename", info.filename),
        ("last-modified", info.last_modified.isoformat()),
        ("etag", info.etag),
    ]:
        click.echo(f"{label + ':':<15}{printable(str(value))}")


@store_cli.command("url")
@click.argument("path")
@click.option("--expires", type=click.IntRange(min=1), help="Lifetime of a presigned URL (s).")
@with_appcontext
@_one_line_errors
def file_url(path: str, expires: int | None) -> None:
    """Print the absolute URL of the file at PATH (presigned with --expires, for S3).

    PATH is STORE/KEY, or a KEY of the default store.
    """
    click.echo(_file(path).absolute_url(expires=expires))


@store_cli.command("rm")
@click.argument("paths", nargs=-1, required=True)
@with_appcontext
@_one_line_errors
def remove_files(paths: tuple[str, ...]) -> None:
    """Delete the files at PATHS (nothing is deleted when one of them does not exist)."""
    failed = 0
    for wrapper in [_file(path) for path in paths]:
        try:
            wrapper.delete()
        except (StoreError, OSError) as exc:
            failed += 1
            echo_error(wrapper.store.name, wrapper.name, exc)
            continue
        click.echo(f"deleted {wrapper.path}")
    if failed:
        sys.exit(1)


@store_cli.command("cat")
@click.argument("paths", nargs=-1, required=True)
@with_appcontext
@_one_line_errors
def cat_files(paths: tuple[str, ...]) -> None:
    """Write the contents of the files at PATHS to stdout, one after another.

    Every path is checked first: nothing is written when one of them does not exist.
    """
    wrappers = [_file(path) for path in paths]
    out = sys.stdout.buffer
    for wrapper in wrappers:
        with wrapper.open() as stream:
            while chunk := stream.read(CHUNK_SIZE):
                out.write(chunk)
    out.flush()


@store_cli.command("clean")
@click.argument("store", required=False)
@click.option(
    "--older-than",
    type=Seconds(min=0),
    default=LocalStore.STALE_TEMP_SECONDS,
    show_default=True,
    help="Seconds a temporary file must have been untouched.",
)
@with_appcontext
@_one_line_errors
def clean_temp_files(store: str | None, older_than: float) -> None:
    """Delete temporary files that killed uploads left in STORE's folder (default store).

    The app also does this in the background when it starts.
    """
    target = _store(store)
    if not isinstance(target, (LocalStore, QueuedStore)):
        raise UsageProblem(
            f"{target.name}: only stores on local disk (and queued stores' local side and "
            "records) keep temporary files."
        )
    removed = target.remove_stale_temp_files(older_than)
    for path in removed:
        click.echo(f"removed {printable(path)}")
    click.echo(f"removed {len(removed)} temporary file(s) from the store {target.name!r}")


@store_cli.command("cp")
@click.argument("source")
@click.argument("destination")
@click.option("--force", is_flag=True, help="Replace a file already at DESTINATION.")
@with_appcontext
@_one_line_errors
def copy_file(source: str, destination: str, force: bool) -> None:
    """Copy the file at SOURCE to DESTINATION (STORE/KEY, or STORE/ to keep the key).

    A destination folder (STORE/FOLDER/, or a FOLDER that holds files) takes the file under
    its name, as cp does. The destination always names its store, so that a mistyped store
    name is an error rather than a new folder in the default store.
    """
    original = _file(source)
    target, given = _registry().locate(destination)
    try:
        maybe_folder = bool(given) and not given.endswith("/")
        key = copy_destination(
            original.name, given, is_folder=maybe_folder and _is_folder(target, given)
        )
        copy = sync.copy_between(original.store, original.name, target, key, force)
    except InvalidKeyError as exc:
        raise UsageProblem(f"{destination}: {exc}") from None
    except FileExistsInStoreError:
        raise click.ClickException(
            f"{source} -> {destination}: a file is already stored there; "
            "pass --force to replace it."
        ) from None
    except StoreError as exc:
        raise click.ClickException(f"{source} -> {destination}: {exc}") from None
    except OSError as exc:  # its text names the store's temporary files: say what happened
        reason = exc.strerror or type(exc).__name__
        raise click.ClickException(f"{source} -> {destination}: {reason}") from None
    click.echo(f"copied {original.path} -> {copy.path}")


def copy_destination(source_key: str, given: str, *, is_folder: bool) -> str:
    """The key ``cp`` writes: ``source_key`` for a store's root (``given`` empty), the
    source's name inside ``given`` when that is a folder, else ``given`` itself.

    >>> copy_destination("docs/notes.md", "", is_folder=False)
    'docs/notes.md'
    >>> copy_destination("docs/notes.md", "2026/", is_folder=False)
    '2026/notes.md'
    >>> copy_destination("docs/notes.md", "2026", is_folder=True)
    '2026/notes.md'
    >>> copy_destination("docs/notes.md", "old-notes.md", is_folder=False)
    'old-notes.md'
    """
    folder = given.rstrip("/")
    if not folder:
        return source_key
    if given.endswith("/") or is_folder:
        return f"{folder}/{source_key.rpartition('/')[2]}"
    return given


def _is_folder(store: BaseStore, key: str) -> bool:
    """Whether ``store`` holds files under ``key/`` (one listed key is enough to know)."""
    return next(iter(store.keys(f"{key.rstrip('/')}/")), None) is not None


@store_cli.command("sync")
@click.argument("source")
@click.argument("destination")
@click.option("--dry-run", is_flag=True, help="Only say what would be copied.")
@click.option(
    "--checksum",
    is_flag=True,
    help="Also compare contents where a store records no checksum (reads those files).",
)
@_jobs_option
@with_appcontext
@_one_line_errors
def sync_stores(source: str, destination: str, dry_run: bool, checksum: bool, jobs: int) -> None:
    """Copy every file of SOURCE that DESTINATION lacks or holds differently.

    Files differ when their sizes or content types do, or their checksums where both
    stores record one (--checksum computes the missing ones). Safe to interrupt and run
    again: files already copied are skipped, and each copy appears whole or not at all.
    """
    src, dst = _store(source), _store(destination)
    nested = _folder_inside(src, dst)
    if nested is not None:
        raise UsageProblem(
            f"{dst.name!r} is a folder of {src.name!r} ({nested}/): a sync would copy its "
            "files into it again, one level deeper at every run. Keep the two stores' "
            "folders apart."
        )
    keys = list(src.keys())
    present = set(dst.keys())
    summary = SyncSummary()

    def sync_one(key: str) -> bool:
        return sync.sync_file(
            src, dst, key, present=key in present, checksum=checksum, dry_run=dry_run
        )

    verb = "would copy" if dry_run else "copied"
    try:
        with (
            progress(len(keys), "Syncing") as advance,
            FileWorkers(jobs) as workers,
        ):
            for key, outcome in workers.map(sync_one, keys):
                advance()
                if isinstance(outcome, BaseException):
                    summary.failed.append(key)
                    echo_error(src.name, key, outcome)
                elif outcome:
                    summary.copied += 1
                    report_plain(f"{verb} {key}")
                else:
                    summary.skipped += 1
    except KeyboardInterrupt:
        click.echo(
            f"interrupted after {summary.done} of {len(keys)} files ({summary.line(verb)}); "
            "run the same sync again to finish",
            err=True,
        )
        sys.exit(1)
    click.echo(summary.line(verb))
    if summary.failed:
        sys.exit(1)


def _local_root(store: BaseStore) -> str | None:
    """The folder ``store`` keeps its files in on local disk (a queued store's local
    side), or ``None``."""
    if isinstance(store, QueuedStore):
        store = store.local
    return store.local_folder()


def _folder_inside(source: BaseStore, target: BaseStore) -> str | None:
    """The key of the folder of ``source`` that holds ``target``'s files, when ``target``'s
    folder lies below ``source``'s on local disk; else ``None``.

    ``source`` then lists ``target``'s files as its own, and syncing them into ``target``
    nests them one level deeper at every run.
    """
    outer, inner = _local_root(source), _local_root(target)
    if outer is None or inner is None:
        return None
    below = os.path.relpath(inner, outer)
    if below == os.curdir or below == os.pardir or below.startswith(os.pardir + os.sep):
        return None
    return below.replace(os.sep, "/")


@store_cli.command("verify")
@click.argument("store", required=False)
@_jobs_option
@with_appcontext
@_one_line_errors
def verify_store(store: str | None, jobs: int) -> None:
    """Read every file of STORE and check its size (and checksum, where one is recorded)."""
    target = _store(store)
    keys = list(target.keys())
    verified = failed = 0
    with (
        progress(len(keys), "Verifying") as advance,
        FileWorkers(jobs) as workers,
    ):
        for key, problem in workers.map(target.verify, keys):
            advance()
            if problem is None:
                verified += 1
                continue
            failed += 1
            echo_error(target.name, key, problem)
    click.echo(f"verified {verified}, failed {failed}")
    if failed:
        sys.exit(1)


@store_cli.command("prune")
@click.argument("store", required=False)
@click.argument("prefix", default="")
@click.option(
    "--values",
    is_flag=True,
    help="Also delete expired JsonCache entries whose keys start with PREFIX.",
)
@click.option(
    "--text-older-than",
    type=Seconds(min=0, min_open=True),
    help="Also delete text files (TextCache entries) under PREFIX (required) this many "
    "seconds old.",
)
@_jobs_option
@with_appcontext
@_one_line_errors
def prune_store(
    store: str | None, prefix: str, values: bool, text_older_than: float | None, jobs: int
) -> None:
    """Delete what has expired in STORE (default store; STORE/PREFIX works too).

    Always: read-through cache entries older than STORE_CACHE_TTL and, for a queued store,
    done transfer records older than STORE_TRANSFER_RECORDS_KEEP whose file neither side
    holds any more; resumable (tus) uploads into STORE past STORE_TUS_EXPIRES (their
    partial files removed, their S3 multipart uploads aborted). With --values or
    --text-older-than, expired value-cache entries under PREFIX (each file there is looked
    at: give the prefix your caches use).
    """
    target, start = _prune_target(store, prefix)
    if text_older_than is not None and not start:
        # Every text/plain file under the prefix counts as a TextCache entry: without one,
        # every text file uploaded to the store would be deleted as expired.
        raise UsageProblem(
            "--text-older-than needs a PREFIX (the TextCache's): every text/plain file "
            "under it is deleted as an expired entry."
        )
    now = time.time()
    removed = PruneSummary()
    if values or text_older_than is not None:
        removed.values = _prune_values(target, start, now, values, text_older_than, jobs)
    if isinstance(target.read_cache, ReadThroughCache):
        removed.cached = target.read_cache.prune()
    if isinstance(target, QueuedStore):
        removed.records = _prune_records(target, now)
    removed.deletes = _retry_owed_deletes(target)
    removed.uploads = prune_expired_uploads(current_app, target)
    click.echo(removed.line())
    if removed.failed:
        sys.exit(1)


def _prune_target(store: str | None, prefix: str) -> tuple[BaseStore, str]:
    """What ``prune [STORE [PREFIX]]`` works on: ``(store, prefix)``.

    Unlike ``ls``, a lone argument must name a store (``STORE`` or ``STORE/PREFIX``): prune
    runs from cron, and a mistyped store name read as a prefix of the default store pruned
    the default store instead and exited 0, while the store meant was never pruned.

    :raises UsageProblem: when the lone argument names no store.
    """
    target, start, named = _listing(store, prefix)
    if not named:
        name = (store or "").partition("/")[0]
        raise UsageProblem(
            f"No store is called {name!r}; known: {_known_stores()}. "
            "A prefix of the default store is written default/PREFIX."
        )
    return target, start


@dataclass
class PruneSummary:
    """What a ``prune`` removed; ``failed`` counts files or records it could not look at."""

    values: tuple[int, int] = (0, 0)
    cached: int = 0
    records: tuple[int, int] = (0, 0)
    #: Deletes the store owed (:mod:`flask_store.sqla_deletes`): ``(done, failed)``.
    deletes: tuple[int, int] = (0, 0)
    #: Expired resumable (tus) uploads removed.
    uploads: int = 0

    @property
    def failed(self) -> int:
        return self.values[1] + self.records[1] + self.deletes[1]

    def line(self) -> str:
        owed = f", {self.deletes[0]} owed delete(s)" if any(self.deletes) else ""
        owed += f", {self.uploads} expired upload(s)" if self.uploads else ""
        return (
            f"removed {self.values[0]} cache value(s), {self.cached} read-cache entries, "
            f"{self.records[0]} transfer record(s){owed}; failed {self.failed}"
        )


def _prune_values(
    target: BaseStore,
    prefix: str,
    now: float,
    values: bool,
    text_older_than: float | None,
    jobs: int,
) -> tuple[int, int]:
    """Delete expired JsonCache (``values``) and TextCache entries under ``prefix``:
    ``(removed, failed)``."""

    def expired(key: str) -> bool:
        if values and caches.expired_json_entry(target, key, now):
            return True
        return text_older_than is not None and caches.expired_text_entry(
            target, key, text_older_than, now
        )

    keys = list(target.keys(prefix))
    removed = failed = 0
    with progress(len(keys), "Pruning") as advance, FileWorkers(jobs) as workers:
        for key, outcome in workers.map(expired, keys):
            advance()
            if isinstance(outcome, BaseException):
                failed += 1
                echo_error(target.name, key, outcome)
            elif outcome:
                removed += 1
                report_plain(f"removed {target.name}/{key}")
    return removed, failed


def _prune_records(target: QueuedStore, now: float) -> tuple[int, int]:
    """Remove the done transfer records that reserve nothing any more: ``(removed, failed)``."""
    removed = failed = 0
    for record in prune.old_done_records(target, now):
        try:
            if prune.prune_record(target, record):
                removed += 1
                report_plain(f"removed the transfer record of {target.name}/{record.key}")
        except (StoreError, OSError) as exc:
            failed += 1
            echo_error(target.name, record.key, exc)
    return removed, failed


def _retry_owed_deletes(target: BaseStore) -> tuple[int, int]:
    """Retry the deletes ``target`` owes after commits and rollbacks of rows that held its
    files (:mod:`flask_store.sqla_deletes`): ``(done, failed)``."""
    done, failed = sqla_deletes.retry_owed_deletes(target)
    for key in done:
        report_plain(f"deleted {target.name}/{key} (owed)")
    for key, problem in failed:
        echo_error(target.name, key, problem)
    return len(done), len(failed)


# -- helpers of the commands ----------------------------------------------------------------


@dataclass
class SyncSummary:
    """What a ``sync`` did so far."""

    copied: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)

    @property
    def done(self) -> int:
        """How many files were looked at."""
        return self.copied + self.skipped + len(self.failed)

    def line(self, verb: str) -> str:
        return f"{verb} {self.copied}, skipped {self.skipped}, failed {len(self.failed)}"


class FileWorkers:
    """Threads that handle files ``jobs`` at a time; use as a context manager.

    Leaving the block cancels what has not started and waits for what has, so each file
    is handled whole or not at all; on Ctrl+C it first says so on stderr.
    """

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self._executor = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="flask-store")

    def __enter__(self) -> FileWorkers:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is KeyboardInterrupt:
            click.echo("Interrupted: finishing the files in progress, starting no more.", err=True)
        self._executor.shutdown(wait=True, cancel_futures=True)

    def map(
        self, work: Callable[[str], T], keys: Iterable[str]
    ) -> Iterator[tuple[str, T | BaseException]]:
        """``work(key)`` for each key, yielded as ``(key, result)`` in the keys' order.

        A file's failure is its result (the exception), so one bad file does not stop the
        rest. Only a few keys are in flight at a time, however many there are.
        """

        def attempt(key: str) -> T | BaseException:
            try:
                return work(key)
            except Exception as exc:  # reported per file; the others go on
                return exc

        window: deque[tuple[str, Future[T | BaseException]]] = deque()
        for key in keys:
            window.append((key, self._executor.submit(attempt, key)))
            if len(window) >= 2 * self.jobs:
                done_key, future = window.popleft()
                yield done_key, future.result()
        while window:
            done_key, future = window.popleft()
            yield done_key, future.result()


store_cli.add_command(transfer_command)  # flask store transfer --pending
store_cli.add_command(worker_command)  # flask store worker


#: Names that moved to :mod:`flask_store.sync` in 0.2; importing them from here still works.
_MOVED_TO_SYNC = frozenset({"copy_between", "needs_copy", "sync_file"})


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_SYNC:
        warnings.warn(
            f"flask_store.cli.{name} is deprecated; import it from flask_store.sync.",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(sync, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
