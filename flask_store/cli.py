"""``flask store ...``: list, inspect, copy, sync and verify files from the command line.

Exit codes: 0 when everything worked, 1 when some files failed (each named on stderr), 2 for
usage errors (a store name or path that does not exist). Errors are one line, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext

from .exceptions import FileNotFoundInStoreError, InvalidKeyError, StoreError, StoreNotFoundError
from .file_wrapper import FileWrapper
from .stores.base import BaseStore, measure


class UsageProblem(click.ClickException):
    """A bad store name or path: one line on stderr and exit code 2."""

    exit_code = 2


def _registry() -> Any:
    from .extension import Store

    return Store.registry(current_app)


def _store(name: str | None) -> BaseStore:
    try:
        store: BaseStore = _registry().resolve(name)
    except StoreNotFoundError as exc:
        raise UsageProblem(str(exc)) from None
    return store


def _file(path: str) -> FileWrapper:
    """The file at ``"<store>/<key>"``, or a usage error naming what is wrong."""
    name, _, key = path.partition("/")
    try:
        wrapper = _store(name).file(key)
        wrapper.info  # noqa: B018 - fetch now so a missing file is a usage error
    except (InvalidKeyError, FileNotFoundInStoreError) as exc:
        raise UsageProblem(f"{path}: {exc}") from None
    return wrapper


@click.group("store")
def store_cli() -> None:
    """Manage the files of Flask-Store's stores (paths are STORE/KEY)."""


@store_cli.command("ls")
@click.argument("store", required=False)
@click.argument("prefix", default="")
@with_appcontext
def list_files(store: str | None, prefix: str) -> None:
    """List the keys of STORE (default store if omitted) that start with PREFIX."""
    target = _store(store)
    for key in target.keys(prefix):
        info = target.info(key)
        stamp = info.last_modified.strftime("%Y-%m-%d %H:%M:%S")
        click.echo(f"{info.size:>12}  {stamp}  {key}")


@store_cli.command("stat")
@click.argument("path")
@with_appcontext
def stat_file(path: str) -> None:
    """Show the metadata of the file at PATH."""
    info = _file(path).info
    for label, value in [
        ("path", path),
        ("size", info.size),
        ("content-type", info.content_type),
        ("filename", info.filename),
        ("last-modified", info.last_modified.isoformat()),
        ("etag", info.etag),
    ]:
        click.echo(f"{label + ':':<15}{value}")


@store_cli.command("url")
@click.argument("path")
@click.option("--expires", type=click.IntRange(min=1), help="Lifetime of a presigned URL (s).")
@with_appcontext
def file_url(path: str, expires: int | None) -> None:
    """Print the absolute URL of the file at PATH."""
    click.echo(_file(path).absolute_url(expires=expires))


@store_cli.command("rm")
@click.argument("paths", nargs=-1, required=True)
@with_appcontext
def remove_files(paths: tuple[str, ...]) -> None:
    """Delete the files at PATHS."""
    for path in paths:
        _file(path).delete()
        click.echo(f"deleted {path}")


@store_cli.command("cp")
@click.argument("source")
@click.argument("destination")
@click.option("--force", is_flag=True, help="Replace a file already at DESTINATION.")
@with_appcontext
def copy_file(source: str, destination: str, force: bool) -> None:
    """Copy the file at SOURCE to DESTINATION (STORE/KEY, or STORE/ to keep the key)."""
    original = _file(source)
    name, _, key = destination.partition("/")
    target = _store(name)
    try:
        copy = copy_between(original.store, original.name, target, key or original.name, force)
    except StoreError as exc:
        raise click.ClickException(f"{source} -> {destination}: {exc}") from None
    click.echo(f"copied {source} -> {copy.path}")


@store_cli.command("sync")
@click.argument("source")
@click.argument("destination")
@click.option("--dry-run", is_flag=True, help="Only say what would be copied.")
@click.option("--checksum", is_flag=True, help="Compare contents, not only sizes.")
@with_appcontext
def sync_stores(source: str, destination: str, dry_run: bool, checksum: bool) -> None:
    """Copy every file of SOURCE that DESTINATION lacks or holds differently.

    Safe to interrupt and run again: files already copied are skipped, and each copy
    appears whole or not at all.
    """
    src, dst = _store(source), _store(destination)
    failures: list[str] = []
    copied = skipped = 0
    with _progress(list(src.keys()), "Syncing") as keys:
        for key in keys:
            try:
                if not needs_copy(src, dst, key, checksum):
                    skipped += 1
                    continue
                if not dry_run:
                    copy_between(src, key, dst, key, overwrite=True)
                copied += 1
                _report_plain(f"{'would copy' if dry_run else 'copied'} {key}")
            except StoreError as exc:
                failures.append(key)
                click.echo(f"error: {src.name}/{key}: {exc}", err=True)
    verb = "would copy" if dry_run else "copied"
    click.echo(f"{verb} {copied}, skipped {skipped}, failed {len(failures)}")
    if failures:
        sys.exit(1)


@store_cli.command("verify")
@click.argument("store", required=False)
@with_appcontext
def verify_store(store: str | None) -> None:
    """Read every file of STORE and check its size (and checksum, where one is recorded)."""
    target = _store(store)
    failures = 0
    with _progress(list(target.keys()), "Verifying") as keys:
        for key in keys:
            problem = target.verify(key)
            if problem:
                failures += 1
                click.echo(f"error: {target.name}/{key}: {problem}", err=True)
    click.echo(f"verified {len(list(target.keys())) - failures}, failed {failures}")
    if failures:
        sys.exit(1)


# -- the work behind the commands, usable from Python too -----------------------------------


def copy_between(
    source: BaseStore, key: str, target: BaseStore, target_key: str, overwrite: bool = False
) -> FileWrapper:
    """Stream the file ``key`` of ``source`` into ``target`` as ``target_key``, with metadata."""
    stream, info = source.open_with_info(key)
    with stream:
        return target.put(
            target_key,
            stream,
            filename=info.filename,
            content_type=info.content_type,
            overwrite=overwrite,
        )


def needs_copy(source: BaseStore, target: BaseStore, key: str, checksum: bool = False) -> bool:
    """Whether ``target`` lacks ``key`` or holds a different file under it."""
    try:
        theirs = target.info(key)
    except FileNotFoundInStoreError:
        return True
    ours = source.info(key)
    if ours.size != theirs.size or ours.content_type != theirs.content_type:
        return True
    return checksum and _digest(source, key) != _digest(target, key)


def _digest(store: BaseStore, key: str) -> str:
    with store.open(key) as stream:
        return measure(stream)[1]


def _is_terminal() -> bool:
    return sys.stdout.isatty()


@contextmanager
def _progress(items: list[str], label: str) -> Iterator[Iterable[str]]:
    """A progress bar on a terminal; the plain item list otherwise (lines are printed then)."""
    if _is_terminal():
        with click.progressbar(items, label=label) as bar:
            yield bar
    else:
        yield items


def _report_plain(line: str) -> None:
    if not _is_terminal():
        click.echo(line)


# -- `flask store transfer --pending`: queued stores' transfers (flask_store/transfer/cli.py) --
from .transfer.cli import transfer_command  # noqa: E402 - kept beside its registration

store_cli.add_command(transfer_command)
