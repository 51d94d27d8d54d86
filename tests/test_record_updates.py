"""A record's compare-and-write is one step across every process sharing the records folder.

The deployment test once ended with a transfer ``failed`` whose file was on S3: a web
process touched a pending record (Celery's "sent again" mark) after reading it, while a
worker finished the transfer, marked it ``done`` and deleted the local copy; the touch then
wrote ``pending`` over ``done``, and the next attempt found no local copy. Each process
checked the record under its own thread lock only.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from flask_store.transfer.records import RecordBook, TransferRecord

#: The other process: reads the record, says so, waits for the signal file, then tries to
#: mark that record done and prints whether it could.
OTHER_PROCESS = textwrap.dedent(
    """
    import os, sys, time
    from flask_store.transfer.records import RecordBook
    root, signal = sys.argv[1], sys.argv[2]
    book = RecordBook(root)
    expected = book.get("a.bin")
    print("ready", flush=True)
    while not os.path.exists(signal):
        time.sleep(0.005)
    print(book.update(expected, expected.moved("done")), flush=True)
    """
)


def pending(key: str) -> TransferRecord:
    return TransferRecord(key, "pending", size=1, filename=key, content_type="text/plain")


@pytest.mark.parametrize("change", ["update", "create", "forget"])
def test_a_record_changed_by_another_process_meanwhile_is_never_written_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    root = tmp_path / "records"
    book = RecordBook(str(root))
    record = book.create(pending("a.bin"))
    signal = tmp_path / "read"
    other = subprocess.Popen(
        [sys.executable, "-c", OTHER_PROCESS, str(root), str(signal)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert other.stdout is not None
    assert other.stdout.readline().strip() == "ready"
    # The change's first step is slowed down: the other process writes in the pause,
    # unless this change holds the key. An update or a save pauses after reading the
    # record, a delete before removing it.
    first_step = "_remove" if change == "forget" else "get"
    step = getattr(book, first_step)

    def pause() -> None:
        signal.touch()
        time.sleep(1.0)

    def slow_step(*args: Any) -> Any:
        if first_step == "get":
            found = step(*args)
            pause()
            return found
        pause()
        return step(*args)

    monkeypatch.setattr(book, first_step, slow_step)
    if change == "update":
        ours = book.update(record, record.moved("pending"))
    elif change == "create":  # a new save of the key
        ours = book.create(pending("a.bin")).version > record.version
    else:  # the file deleted
        ours = book.forget("a.bin")
    out, _ = other.communicate(timeout=60)
    theirs = out.strip() == "True"
    assert ours
    # The other process's compare-and-write saw this change and left it alone.
    assert not theirs
    final = RecordBook(str(root)).get("a.bin")
    assert final is None if change == "forget" else final is not None
    if final is not None:
        assert final.state == "pending"
