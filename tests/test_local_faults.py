"""LocalStore on a full disk, without hard links, or with things in the way of a save:
clear errors, nothing left behind, nothing written outside the store.

The full-disk tests run the save in a child process: one on a real 256 KiB tmpfs mounted in
a private mount namespace (so ``write`` fails with ENOSPC), one under a file-size limit
(EFBIG). File systems without hard links (vfat, some FUSE mounts) are stood in for by an
``os.link`` that fails as theirs does.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from flask_store.exceptions import FileExistsInStoreError, InvalidKeyError
from flask_store.stores.local import LocalStore
from flask_store.stores.local_deletes import NOTES_FOLDER, noted_delete
from tests.stores import everything_stored, run_python

BOTH_WRITES = pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed", "named-temp"])


def local_store(tmp_path: Path, unnamed: bool, **settings: str) -> LocalStore:
    """A LocalStore in ``tmp_path/store`` writing unnamed files or named temporary files."""
    store = LocalStore(path=str(tmp_path / "store"), **settings)
    store.unnamed_writes = unnamed
    return store


SAVE_TOO_MUCH = textwrap.dedent(
    """
    import os, sys
    from flask_store.exceptions import StorageFullError
    from flask_store.stores.local import LocalStore

    root = sys.argv[1]
    store = LocalStore(path=root)
    store.save(b"small", name="fits.txt")
    try:
        store.save(b"x" * (4 * 1024 * 1024), name="too-big.bin")
    except StorageFullError as exc:
        print("StorageFullError:", exc)
    else:
        sys.exit("no error raised")
    left = sorted(name for _, _, names in os.walk(root) for name in names)
    print("LEFT", left)
    """
)


def save_too_much(command: list[str], root: Path) -> subprocess.CompletedProcess[str]:
    """Run :data:`SAVE_TOO_MUCH` (from stdin) with ``command`` standing for the Python call."""
    return subprocess.run(
        [*command, str(root)],
        input=SAVE_TOO_MUCH,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_full_disk_raises_storage_full_and_leaves_nothing(tmp_path: Path) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("the unshare program (util-linux) is needed to mount a tiny tmpfs")
    root = tmp_path / "tiny"
    root.mkdir()
    mount_then_save = f'mount -t tmpfs -o size=256k tmpfs "$1" && exec {sys.executable} - "$1"'
    command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", mount_then_save, "sh"]
    result = save_too_much(command, root)
    if result.returncode != 0 and "mount" in result.stderr:
        pytest.skip(f"cannot mount a tmpfs in a private namespace here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    assert "StorageFullError: No space left to store 'too-big.bin'" in result.stdout
    assert "LEFT ['fits.txt']" in result.stdout


def test_file_size_limit_raises_storage_full_and_leaves_nothing(tmp_path: Path) -> None:
    limit_then_save = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1024 * 1024, 1024 * 1024)); "
        "exec(sys.stdin.read())"
    )
    result = save_too_much([sys.executable, "-c", limit_then_save], tmp_path / "store")
    assert result.returncode == 0, result.stderr
    assert "StorageFullError" in result.stdout
    assert "LEFT ['fits.txt']" in result.stdout


def _no_hard_links(source: str, target: str, **options: object) -> None:
    raise OSError(errno.EPERM, "Operation not permitted")  # as on vfat/exFAT, some FUSE mounts


def test_without_hard_links_names_are_still_claimed_exclusively(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "link", _no_hard_links)
    store = LocalStore(path=str(tmp_path / "store"))
    store.unnamed_writes = False  # no hard links means no linkat of an unnamed file either
    first, second = store.save(b"one", name="a.txt"), store.save(b"two", name="a.txt")
    assert first.name == "a.txt" and second.name != "a.txt"
    assert (store.read(first.name), store.read(second.name)) == (b"one", b"two")
    assert everything_stored(store) == sorted([first.name, second.name])


def test_without_hard_links_a_failed_move_leaves_no_empty_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "link", _no_hard_links)
    store = LocalStore(path=str(tmp_path / "store"))
    store.unnamed_writes = False  # no hard links means no linkat of an unnamed file either

    def interrupted(source: str, target: str) -> None:
        raise KeyboardInterrupt  # the process is stopped between reserving and moving

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.save(b"important", name="doc.pdf")
    assert everything_stored(store) == []


KILLED_MID_WRITE = textwrap.dedent(
    """
    import io, os, signal, sys
    from flask_store.stores.local import LocalStore

    class DiesMidUpload(io.RawIOBase):
        reads = 0
        def readable(self):
            return True
        def readinto(self, buffer):
            self.reads += 1
            if self.reads > 3:
                os.kill(os.getpid(), signal.SIGKILL)  # the worker is killed mid-upload
            buffer[:1024] = b"x" * 1024
            return 1024

    store = LocalStore(path=sys.argv[1])
    store.unnamed_writes = sys.argv[2] == "unnamed"
    upload = io.BufferedReader(DiesMidUpload(), 1024)
    if sys.argv[3] == "replace":
        store.put("big.bin", b"old")
        store.put("big.bin", upload, overwrite=True)
    store.save(upload, name="big.bin")
    """
)


@pytest.mark.parametrize("mode", ["unnamed", "named"])
@pytest.mark.parametrize("save", ["save", "replace"])
def test_a_process_killed_mid_save_leaves_no_file_under_a_key(
    tmp_path: Path, mode: str, save: str
) -> None:
    root = tmp_path / "store"
    child = run_python(KILLED_MID_WRITE, root, mode, save)
    assert child.returncode == -9, child.stderr
    left = sorted(p.name for p in root.rglob("*") if p.is_file())
    kept = ["big.bin"] if save == "replace" else []
    if mode == "unnamed":
        assert left == kept  # the kernel freed the unnamed file
    else:
        # A hidden temporary file stays until the start-up sweep or `flask store clean`.
        hidden = [name for name in left if name not in kept]
        assert all(name.startswith(".upload-") for name in hidden) and len(hidden) == 1
    assert list(LocalStore(path=str(root)).keys()) == kept
    if save == "replace":
        assert (root / "big.bin").read_bytes() == b"old"  # the old version, whole


# -- things in the way of a save ----------------------------------------------------------


@BOTH_WRITES
def test_a_symlinked_folder_leading_out_is_never_saved_into(tmp_path: Path, unnamed: bool) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    store = local_store(tmp_path, unnamed)
    os.symlink(outside, tmp_path / "store" / "dir")
    with pytest.raises(InvalidKeyError, match="outside"):
        store.at("dir").save(b"x", name="a.txt")
    with pytest.raises(InvalidKeyError, match="outside"):
        store.at("dir/deeper").save(b"x", name="a.txt")
    with pytest.raises(InvalidKeyError, match="outside"):
        store.put("dir/b.txt", b"x")
    assert list(outside.iterdir()) == []


@BOTH_WRITES
def test_a_symlink_under_the_key_is_never_written_through(tmp_path: Path, unnamed: bool) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"secret")
    store = local_store(tmp_path, unnamed)
    os.symlink(secret, tmp_path / "store" / "a.txt")
    renamed = store.save(b"new", name="a.txt")
    assert renamed.name != "a.txt" and renamed.read() == b"new"
    with pytest.raises(FileExistsInStoreError):
        store.put("a.txt", b"new")
    replaced = local_store(tmp_path, unnamed, on_conflict="overwrite").save(b"new", name="a.txt")
    assert replaced.name == "a.txt"
    assert not (tmp_path / "store" / "a.txt").is_symlink()  # the link itself was replaced
    assert store.read("a.txt") == b"new"
    assert secret.read_bytes() == b"secret"


@BOTH_WRITES
def test_a_file_where_a_folder_should_be_is_refused(tmp_path: Path, unnamed: bool) -> None:
    store = local_store(tmp_path, unnamed)
    store.save(b"x", name="a.txt")
    for folder in ["a.txt", "a.txt/deeper"]:
        with pytest.raises(InvalidKeyError, match="is a file"):
            store.at(folder).save(b"y", name="b.txt")
    assert everything_stored(store) == ["a.txt"]


@BOTH_WRITES
def test_folders_removed_behind_the_store_are_made_again(tmp_path: Path, unnamed: bool) -> None:
    store = local_store(tmp_path, unnamed)
    shutil.rmtree(store.root)
    assert store.save(b"1", name="a.txt").read() == b"1"
    assert store.at("x/y").save(b"2", name="b.txt").name == "x/y/b.txt"
    assert everything_stored(store) == ["a.txt", "x/y/b.txt"]


# -- notes of conditional deletes (flask_store.stores.local_deletes) -------------------------


@pytest.mark.parametrize(
    "note",
    [
        b"not json",
        b"[" * 8000,  # deeper than the parser recurses
        b'{"key": "a.txt", "aside": "a.txt", "etag": "x"}',  # a key, not a hidden name
        b'{"key": "a.txt", "aside": ".upload-x/../../b.txt", "etag": "x"}',
        b'{"key": "../outside.txt", "aside": ".upload-x", "etag": "x"}',
        b'{"key": "a.txt", "aside": ".upload-x", "etag": 5}',
        b'{"key": "a.txt", "aside": ".upload-x"}',
        b"{" + b" " * 10000 + b"}",
    ],
)
def test_a_damaged_note_of_a_delete_touches_no_file(tmp_path: Path, note: bytes) -> None:
    """The ``.deleting`` folder is the store's own; a note that is not what a delete writes
    (damage, another program) is logged and removed at start, and moves or deletes
    nothing, whatever names it holds."""
    store = LocalStore(path=str(tmp_path / "store"))
    store.put("a.txt", b"kept")
    store.put("b.txt", b"kept too")
    (tmp_path / "outside.txt").write_bytes(b"outside")
    aside = tmp_path / "store" / ".upload-x"
    aside.write_bytes(b"some hidden file")
    notes = tmp_path / "store" / NOTES_FOLDER
    notes.mkdir()
    (notes / "0123456789abcdef.json").write_bytes(note)

    assert store.settle_interrupted_deletes() == []
    assert store.read("a.txt") == b"kept" and store.read("b.txt") == b"kept too"
    assert (tmp_path / "outside.txt").read_bytes() == b"outside"
    assert aside.read_bytes() == b"some hidden file"
    assert not notes.exists()


def test_the_note_of_a_delete_still_running_is_left_to_it(tmp_path: Path) -> None:
    """Another process's start (a new gunicorn worker) must not settle a delete that is
    running: its note is locked, and is left as it is."""
    store = LocalStore(path=str(tmp_path / "store"))
    etag = store.put("a.txt", b"old").info.etag
    aside = str(tmp_path / "store" / ".upload-running")
    with noted_delete(store.root, "a.txt", aside, etag):
        os.rename(tmp_path / "store" / "a.txt", aside)
        assert LocalStore(path=str(tmp_path / "store")).settle_interrupted_deletes() == []
        assert os.path.exists(aside) and len(os.listdir(os.path.dirname(aside))) == 2
        os.unlink(aside)
    assert os.listdir(tmp_path / "store") == []
    assert list(store.keys()) == []


def test_conditional_deletes_at_once_each_delete_their_file_and_leave_no_trace(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each delete makes the notes folder if it is missing and removes it when empty: with
    many at once, one removes the folder between another's look and its note (a transfer
    worker's delete failed so, ``makedirs`` raising FileExistsError, in a CI run), or
    right after another opened it. Every delete still writes its note."""
    store = LocalStore(path=str(tmp_path / "store"))
    etags = {f"f{n}.txt": store.put(f"f{n}.txt", b"x").info.etag for n in range(800)}
    keys = list(etags)
    with ThreadPoolExecutor(8) as pool:
        deleted = list(pool.map(lambda key: store.delete(key, if_etag=etags[key]), keys))
    assert deleted == [True] * len(keys)
    assert os.listdir(tmp_path / "store") == []
    assert [r.getMessage() for r in caplog.records if "without its note" in r.getMessage()] == []


def test_a_delete_whose_notes_folder_is_removed_under_it_makes_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(path=str(tmp_path / "store"))
    etag = store.put("a.txt", b"x").info.etag
    notes = tmp_path / "store" / NOTES_FOLDER
    mkdir = os.mkdir
    removed: list[str] = []

    def made_then_removed_by_another(path: Any, mode: int = 0o777) -> None:
        mkdir(path, mode)
        if not removed:
            removed.append(str(path))
            os.rmdir(path)  # another delete, done, removes the empty folder

    monkeypatch.setattr(os, "mkdir", made_then_removed_by_another)
    assert store.delete("a.txt", if_etag=etag)
    assert removed == [str(notes)] and not notes.exists()
    assert list(store.keys()) == []
