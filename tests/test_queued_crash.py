"""A process killed in the middle of its transfers loses nothing (thread executor).

A child process saves 50 files through a QueuedStore whose remote freezes mid-upload after
the first ten; the test kills it with SIGKILL while transfers are under way, then a fresh
store (a restarted app) reconciles: every file reaches the remote whole, under its own key.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from flask_store.stores.local import LocalStore
from flask_store.stores.queued import QueuedStore

ROOT = Path(__file__).resolve().parent.parent
FILES = 50
FROZEN_AFTER = 10
SAFETY_NET = 120  # seconds before a hung child counts as a failure (not a speed check)


def payload(number: int) -> bytes:
    """Distinct content per file, so a mix-up between keys would show."""
    return f"file {number:02d} ".encode() * (200 + number)


def crash_settings(tmp_path: Path) -> dict[str, Any]:
    return {
        "queued_local": {"PROVIDER": "local", "PATH": str(tmp_path / "local")},
        "queued_remote": {
            "PROVIDER": "tests.queued_remotes.GatedStore",
            "PATH": str(tmp_path / "remote"),
            "HOLD": str(tmp_path / "hold"),
            "BLOCKED": str(tmp_path / "blocked"),
            "OPEN_WRITES": FROZEN_AFTER,
        },
        "transfer_retry_delay": 0,
        "transfer_workers": 4,
    }


CHILD = """
import json, sys
from flask_store.stores.queued import QueuedStore
from tests.test_queued_crash import FILES, payload

store = QueuedStore(**json.loads(sys.argv[1]))
names = [store.save(payload(i), name=f"file-{i:02d}.bin").name for i in range(FILES)]
print(json.dumps(names), flush=True)
store.join()
"""


def wait_for(path: Path, process: subprocess.Popen[Any]) -> None:
    """Wait until ``path`` exists, failing if the child dies or hangs first."""
    deadline = time.monotonic() + SAFETY_NET
    while not path.exists():
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)


def save_then_sigkill_mid_transfer(tmp_path: Path, settings: dict[str, Any]) -> list[str]:
    """Run :data:`CHILD` with ``settings``: it saves :data:`FILES` files, its remote freezes
    (``HOLD``/``BLOCKED`` files in ``tmp_path``), and it is killed with SIGKILL right then.

    :returns: the keys the child's saves returned.
    """
    (tmp_path / "hold").touch()
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), json.dumps(settings)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        saved = json.loads(child.stdout.readline() or "null")
        assert saved == [f"file-{i:02d}.bin" for i in range(FILES)], child.stderr
        wait_for(tmp_path / "blocked", child)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    return saved


def test_sigkill_mid_transfer_then_reconcile_loses_nothing(tmp_path: Path) -> None:
    settings = crash_settings(tmp_path)
    saved = save_then_sigkill_mid_transfer(tmp_path, settings)

    remote_files = [p.name for p in (tmp_path / "remote").iterdir()]
    transferred_before = [name for name in remote_files if not name.startswith(".")]
    hidden = [name for name in remote_files if name.startswith(".")]
    # Killed for real in the middle: some files across, others cut off mid-write (the
    # child froze inside a write, see GatedStore), which leave nothing: an unnamed file
    # vanishes with its process.
    assert FROZEN_AFTER <= len(transferred_before) < FILES
    assert hidden == []
    os.unlink(tmp_path / "hold")

    restarted = QueuedStore(**settings)
    unfinished = restarted.reconcile()
    # At least the files not yet across; a file uploaded just before its "done" record was
    # written is pending too, and its second transfer finds the same bytes there.
    assert len(unfinished) >= FILES - len(transferred_before)
    assert restarted.join(SAFETY_NET)

    assert list(restarted.remote.keys()) == saved  # none lost, none under another key
    for number, key in enumerate(saved):
        assert restarted.remote.read(key) == payload(number)
        assert restarted.state(key) == "done"


KILLED_MID_SAVE = """
import contextlib, json, os, signal, sys
from flask_store.stores.queued import QueuedStore

store = QueuedStore(**json.loads(sys.argv[1]))
if sys.argv[2] == "replacing":
    # SIGKILL once the record of the replacing file is durable, before the file takes the key.
    recording = store.records.recording

    @contextlib.contextmanager
    def then_killed(*args, **kwargs):
        with recording(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
            yield

    store.records.recording = then_killed
else:
    # SIGKILL at the first instruction after the file became visible locally.
    store.records.create = lambda record: os.kill(os.getpid(), signal.SIGKILL)
store.save(b"precious new", name="invoice.pdf")
"""


@pytest.mark.parametrize("replacing", [False, True])
def test_a_save_killed_between_its_local_file_and_its_record_leaves_a_whole_store(
    tmp_path: Path, replacing: bool
) -> None:
    """A save killed after its file landed but before its record was written: the
    reconciler adopts the file from the save's intent and transfers it. A replacing save
    records first: killed after its record but before its file replaced the old one (whose
    local copy was already gone, its transfer done), it leaves the record it replaced to be
    put back, and the old version is still served."""
    settings: dict[str, Any] = {
        "queued_local": {"PROVIDER": "local", "PATH": str(tmp_path / "local")},
        "queued_remote": {"PROVIDER": "local", "PATH": str(tmp_path / "remote")},
        "transfer_retry_delay": 0,
        "transfer_delete_local": True,
        "on_conflict": "overwrite" if replacing else "rename",
    }
    if replacing:
        old = QueuedStore(**settings)
        old.save(b"old", name="invoice.pdf")
        assert old.join(SAFETY_NET) and old.state("invoice.pdf") == "done"
    how = "replacing" if replacing else "new"
    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED_MID_SAVE), json.dumps(settings), how],
        cwd=ROOT,
        capture_output=True,
        timeout=SAFETY_NET,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    stored = b"old" if replacing else b"precious new"
    if not replacing:
        assert (tmp_path / "local" / "invoice.pdf").read_bytes() == stored

    restarted = QueuedStore(**settings)
    assert restarted.reconcile() == ([] if replacing else ["invoice.pdf"])
    assert restarted.join(SAFETY_NET)
    assert restarted.state("invoice.pdf") == "done"
    assert restarted.read("invoice.pdf") == stored
    assert (tmp_path / "remote" / "invoice.pdf").read_bytes() == stored
    assert not (tmp_path / "local" / "invoice.pdf").exists()  # removed once verified
    assert restarted.reconcile() == []  # adopted once
    assert os.listdir(restarted.records.root + "/intents") == []
    assert sorted(p.name for p in (tmp_path / "local").iterdir()) == [".transfers"]


def test_an_intent_of_a_live_save_is_left_alone(tmp_path: Path) -> None:
    """A reconciler (another process starting) never adopts a save that is still running."""
    store = QueuedStore(
        queued_local={"PROVIDER": "local", "PATH": str(tmp_path / "local")},
        queued_remote={"PROVIDER": "memory"},
        transfer_delayed=True,
    )
    with store.records.intent(overwrite=False, queued=True) as intent:
        list(intent.noting(iter(["a.txt"])))
        (tmp_path / "local" / "a.txt").write_bytes(b"being saved")
        other = QueuedStore(
            queued_local={"PROVIDER": "local", "PATH": str(tmp_path / "local")},
            queued_remote={"PROVIDER": "memory"},
        )
        assert other.adopt_abandoned() == []
        assert other.records.get("a.txt") is None
    assert os.listdir(store.records.root + "/intents") == []


KILLED_IN_DELETE_VERSION = """
import os, signal, sys
from flask_store.stores import local
from flask_store.stores.local import LocalStore

root, case = sys.argv[1], sys.argv[2]
store = LocalStore(path=root)
old = store.put("a.txt", b"old").info.etag
if case == "newer-moved-aside":
    store.put("a.txt", b"newer save", overwrite=True)
    # The race: the newer save lands between the first look (which still saw the old
    # version) and the move aside.
    looks = iter([True])
    has_etag = local._has_etag
    local._has_etag = lambda found, etag: next(looks, None) or has_etag(found, etag)
rename = os.rename

def killed(source, target, **kwargs):
    if not str(source).endswith("a.txt"):
        return rename(source, target, **kwargs)  # not the move of the file (its note)
    if case != "before-the-move":
        rename(source, target, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)

local.os.rename = killed
store.delete("a.txt", if_etag=old)  # a transfer worker removing its sent local copy
"""


@pytest.mark.parametrize(
    ("case", "left"),
    [
        ("newer-moved-aside", b"newer save"),  # moved aside by mistake: put back
        ("deleted-moved-aside", None),  # the version to delete, moved aside: deleted
        ("before-the-move", b"old"),  # nothing moved yet: the delete never happened
    ],
)
@pytest.mark.parametrize("settled_by", ["start", "reconciler"])
def test_a_process_killed_in_a_conditional_delete_is_undone_or_finished_at_restart(
    tmp_path: Path, case: str, left: bytes | None, settled_by: str
) -> None:
    """A conditional delete (``delete(key, if_etag=...)``, what a transfer worker does to
    its sent local copy) moves the file aside under a hidden name to compare it. Killed
    right then, a newer save moved aside by mistake would stay hidden, its key empty, until
    the 24 h tidy-up deleted it. The delete notes what it moves first; the store's next
    start finishes or undoes it, or a queued store's next reconciler pass (a transfer
    worker killed while removing a sent local copy: the web app does not restart)."""
    root = tmp_path / "local"
    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED_IN_DELETE_VERSION), str(root), case],
        cwd=ROOT,
        capture_output=True,
        timeout=SAFETY_NET,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    if settled_by == "start":
        LocalStore(path=str(root)).start()  # the restart
    else:
        queued = QueuedStore(
            queued_local={"PROVIDER": "local", "PATH": str(root)},
            queued_remote={"PROVIDER": "memory"},
            transfer_records_path=str(tmp_path / "records"),
        )
        queued.reconcile()

    assert list(LocalStore(path=str(root)).keys()) == ([] if left is None else ["a.txt"])
    if left is not None:
        assert (root / "a.txt").read_bytes() == left
    hidden = [p for p in root.rglob("*") if p.name.startswith(".")]
    assert [p.name for p in hidden if p.is_file() or any(p.iterdir())] == []
