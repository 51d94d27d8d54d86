"""How the ``flask store`` commands talk to the person or the log reading them.

One rule for every long command (``sync``, ``verify``, ``transfer --pending``): on a terminal
a progress bar, then a one-line summary; anywhere else (a pipe, a file, cron) a plain line
per file worth naming, then the same summary, so logs stay readable. Failed files are named
on stderr in both cases, as ``error: STORE/KEY: what went wrong``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

from .exceptions import StoreError

__all__ = ["echo_error", "progress", "report_plain"]


def is_terminal() -> bool:
    """Whether stdout is a terminal (and so gets a progress bar instead of plain lines)."""
    return sys.stdout.isatty()


@contextmanager
def progress(total: int, label: str) -> Iterator[Callable[[], None]]:
    """A progress bar of ``total`` steps on a terminal; yields the function that advances it
    (which does nothing when stdout is not a terminal)."""
    if is_terminal():
        with click.progressbar(length=total, label=label) as bar:
            yield lambda: bar.update(1)
    else:
        yield lambda: None


def report_plain(line: str) -> None:
    """Print ``line`` when there is no progress bar to show the same thing."""
    if not is_terminal():
        click.echo(line)


def echo_error(store_name: str, key: str, problem: BaseException | str) -> None:
    """Name a failed file on stderr: ``error: STORE/KEY: what went wrong``."""
    if isinstance(problem, (StoreError, OSError, str)):
        reason = str(problem)
    else:
        reason = f"{type(problem).__name__}: {problem}"
    click.echo(f"error: {store_name}/{key}: {reason}", err=True)
