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

__all__ = ["echo_error", "printable", "progress", "report_plain"]


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


def printable(text: str) -> str:
    """``text`` safe to show on a terminal or as one line of a log: every character that is
    not printable (an escape, a newline, a bidi override) written as Python escapes it.

    Keys listed from a store's folder or bucket and the filenames clients sent are not ours:
    shown raw, ``\\x1b]...`` would drive the operator's terminal and ``\\n`` forge lines of
    output that scripts read.

    >>> printable("cat.jpg")
    'cat.jpg'
    >>> printable("a\\x1b[2J\\nb")
    'a\\\\x1b[2J\\\\nb'
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def report_plain(line: str) -> None:
    """Print ``line`` (made :func:`printable`) when there is no progress bar to show it."""
    if not is_terminal():
        click.echo(printable(line))


def echo_error(store_name: str, key: str, problem: BaseException | str) -> None:
    """Name a failed file on stderr: ``error: STORE/KEY: what went wrong``, as one
    :func:`printable` line (the key may be one the store refused for its characters)."""
    if isinstance(problem, (StoreError, OSError, str)):
        reason = str(problem)
    else:
        reason = f"{type(problem).__name__}: {problem}"
    click.echo(printable(f"error: {store_name}/{key}: {reason}"), err=True)
