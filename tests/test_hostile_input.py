"""Hostile names, full disks and broken state (issue 11, section 5).

- A very long filename gives a shortened key that works (extension kept, within the
  file-system and key limits), never a 5xx; no error or response shows a server path.
- A full disk while Werkzeug parses a request into a spool file, or while a LocalStore or a
  QueuedStore writes, is a :class:`StorageFullError` (507), and the partial file is gone by
  the time the error is raised.
- A damaged transfer record is logged and skipped: reconcile finishes all the others.
- A store whose URL prefix lies inside another store's never makes two files answer on one
  URL.
- FIFOs, sockets and symlink loops in a local store are 404s that block no worker, and are
  not keys; names made only of emoji or invisible characters get a visible key.

Full disks are real: a child process under a file-size limit (``RLIMIT_FSIZE``: the kernel
answers ``EFBIG``, no privileges needed) or on a 512 KiB tmpfs mounted in a private mount
namespace (``ENOSPC``; needs ``unshare``, as ``tests/test_local_faults.py`` does).
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request
from werkzeug.test import TestResponse

from flask_store import Store
from flask_store.exceptions import (
    FileNotFoundInStoreError,
    InvalidKeyError,
    NotConfiguredError,
)
from flask_store.naming import MAX_COMPONENT_BYTES, MAX_KEY_BYTES, clean_key, secure_filename
from flask_store.stores.local import LocalStore
from flask_store.stores.queued import QueuedStore
from flask_store.transfer.records import RecordBook
from tests.stores import run_python

#: Seconds a request may take before the test calls it blocked: only a safety net so a
#: regression fails instead of hanging CI, never a measurement.
BLOCKED_AFTER = 20


def make_app(tmp_path: Path, **config: Any) -> tuple[Flask, Store]:
    """An app with an upload view (``POST /upload``, field ``file``, optional ``folder``)."""
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(config)
    store = Store(app)

    @app.post("/upload")
    def upload() -> str:
        provider = store.Provider(destination=request.form.get("folder") or None)
        return provider.save(request.files["file"]).name

    return app, store


def upload(app: Flask, filename: str, data: bytes = b"data", **form: str) -> TestResponse:
    return app.test_client().post("/upload", data={"file": (io.BytesIO(data), filename), **form})


def is_visible(key: str) -> bool:
    """Whether every part of ``key`` shows: a letter or digit, no invisible edges."""
    for part in key.split("/"):
        if not any(unicodedata.category(c)[0] in "LN" for c in part):
            return False
        if unicodedata.category(part[0]) in ("Cf", "Mn", "Zs"):
            return False
        if unicodedata.category(part[-1]) in ("Cf", "Zs"):
            return False
        if any(unicodedata.category(c) in ("Cc", "Zs") for c in part):
            return False
    return True


# -- very long filenames ----------------------------------------------------------------------

LONG_NAMES = [
    "x" * 300 + ".png",
    "x" * 5000 + ".png",
    "я" * 300 + ".png",
    "я" * 5000,
    "中" * 5000 + ".jpg",
    "a" * 200 + "." + "я" * 200,
    "x" * 5000 + ".tar.gz",
]
PROVIDERS = {
    "local": {"STORE_PROVIDER": "local"},
    "memory": {"STORE_PROVIDER": "memory"},
    "queued": {"STORE_PROVIDER": "queued", "STORE_QUEUED_REMOTE": {"PROVIDER": "memory"}},
}


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
@pytest.mark.parametrize("filename", LONG_NAMES, ids=lambda n: f"{n[:3]}x{len(n.encode())}")
def test_a_very_long_filename_gives_a_short_working_key(
    tmp_path: Path, provider: str, filename: str
) -> None:
    app, store = make_app(tmp_path, **PROVIDERS[provider])
    answer = upload(app, filename, b"long")
    assert answer.status_code == 200, answer.text
    key = answer.text
    assert clean_key(key) == key
    assert len(key.encode()) <= MAX_COMPONENT_BYTES
    if filename.endswith((".png", ".jpg", ".tar.gz")):
        assert key.endswith(filename[filename.index(".") :][-7:])
    with app.app_context():
        info = store.Provider().file(key).info
        # The original filename is kept as metadata, shortened the same way (a 5,000 byte
        # name does not fit an extended attribute, S3's 2 KiB of metadata, or a header).
        assert len(info.filename.encode()) <= MAX_COMPONENT_BYTES
        assert info.filename[-4:] == filename[-4:]
    served = app.test_client().get(f"/flaskstore/{key}")
    assert (served.status_code, served.data) == (200, b"long")
    assert len(served.headers["Content-Disposition"]) < 4096


def test_a_long_name_in_a_deep_folder_is_shortened_to_fit_the_key(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path)
    folder = "/".join(["d" * 200] * 4)  # 803 bytes: room for a 196-byte name
    answer = upload(app, "x" * 5000 + ".png", folder=folder)
    assert answer.status_code == 200, answer.text
    assert answer.text.startswith(folder + "/") and answer.text.endswith(".png")
    assert len(answer.text.encode()) <= MAX_KEY_BYTES
    again = upload(app, "x" * 5000 + ".png", folder=folder)  # renamed: still fits
    assert again.status_code == 200 and again.text != answer.text
    assert len(again.text.encode()) <= MAX_KEY_BYTES


@pytest.mark.parametrize("filename", LONG_NAMES[:3], ids=["ascii", "ascii-5000", "cyrillic"])
def test_secure_filename_stays_within_the_component_limit(filename: str) -> None:
    name = secure_filename(filename)
    assert len(name.encode()) <= MAX_COMPONENT_BYTES - 16  # room for a rename's "_<id>"
    assert name.endswith(".png")


# -- emoji-only and invisible names -----------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "extension"),
    [
        ("😀😀.png", ".png"),
        ("😀", ""),
        ("\u200b\u200b.txt", ".txt"),
        ("\u200d", ""),
        ("\u200c\u200d.pdf", ".pdf"),
        ("\u3164.png", ".png"),  # HANGUL FILLER: a "letter" that draws nothing
        ("\ufe0f\ufe0f.gif", ".gif"),  # variation selectors alone
        ("\u0301\u0301.jpg", ".jpg"),  # combining marks with nothing to combine with
        ("?!.png", ".png"),
        ("_.csv", ".csv"),
    ],
)
def test_a_name_with_nothing_visible_gets_a_generated_visible_key(
    filename: str, extension: str
) -> None:
    name = secure_filename(filename)
    assert is_visible(name), repr(name)
    assert name.endswith(extension) and len(name) > len(extension) + 3
    assert clean_key(name) == name
    assert secure_filename(filename) != name  # a fresh id each time: no accidental clashes


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("\u200da\u200d.png", "a.png"),  # joiners at the edges join nothing: they go
        ("\u200c\u200cфото.jpg", "фото.jpg"),
        ("a\u200d_b.txt", "a_b.txt"),
        ("نامه\u200cها.pdf", "نامه\u200cها.pdf"),  # between letters a joiner stays
        ("\u3164a\u3164.txt", "a_.txt"),  # a filler is cleaned like "?" is
    ],
)
def test_invisible_characters_at_the_edges_of_a_name_go(filename: str, expected: str) -> None:
    assert secure_filename(filename) == expected


def test_emoji_and_invisible_names_upload_and_serve(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path)
    keys = []
    for filename in ["😀😀.png", "\u200b\u200b.txt", "\u200d"]:
        answer = upload(app, filename, filename.encode())
        assert answer.status_code == 200, answer.text
        assert is_visible(answer.text)
        keys.append(answer.text)
        assert app.test_client().get(f"/flaskstore/{answer.text}").data == filename.encode()
    assert len(set(keys)) == 3


# -- keys of the wrong type, keys naming a folder ---------------------------------------------


@pytest.mark.parametrize("key", [123, b"a.txt", 1.5, ["a.txt"]], ids=repr)
def test_a_key_that_is_no_string_is_an_invalid_key_on_every_path(tmp_path: Path, key: Any) -> None:
    """Writing, replacing, naming and reading a value each check the key's type, as reading
    a file already did: an ``AttributeError`` from deep inside was a 500 for the app."""
    store = LocalStore(path=str(tmp_path))
    calls: list[Callable[[], object]] = [
        lambda: store.put(key, b"x"),
        lambda: store.replace(key, b"x"),
        lambda: store.file(key),
        lambda: store.dump(key, {"a": 1}),
        lambda: store.load(key),
        lambda: store.at(key),
        lambda: store.open(key),
    ]
    for call in calls:
        with pytest.raises(InvalidKeyError, match="must be a string"):
            call()
    assert list(tmp_path.iterdir()) == []


def test_replacing_a_folder_of_files_by_a_file_is_an_invalid_key(tmp_path: Path) -> None:
    """``put("a", overwrite=True)`` where ``a/`` holds files: the key names a folder. It was
    a ``StoreUnavailableError`` (a 503, "try again later") from the failed rename."""
    store = LocalStore(path=str(tmp_path))
    store.put("a/b.txt", b"kept")
    with pytest.raises(InvalidKeyError, match="folder"):
        store.put("a", b"file", overwrite=True)
    assert store.read("a/b.txt") == b"kept"
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "a",
        "a/b.txt",
    ]


# -- no server path in errors -----------------------------------------------------------------

FD_EXHAUSTED = textwrap.dedent(
    """
    import os, resource, sys
    from flask_store.exceptions import StoreError
    from flask_store.stores.local import LocalStore

    store = LocalStore(path=sys.argv[1])
    store.unnamed_writes = sys.argv[2] == "unnamed"
    store.save(b"fits", name="first.txt")
    lowest_free = os.dup(0)
    os.close(lowest_free)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, lowest_free))  # none left
    try:
        store.save(b"x", name="second.txt")
    except Exception as exc:
        print(type(exc).__name__, isinstance(exc, StoreError), isinstance(exc, OSError))
        print(exc)
    else:
        sys.exit("no error raised")
    """
)


@pytest.mark.parametrize("mode", ["unnamed", "named"])
def test_an_os_error_while_saving_names_the_key_not_the_path(tmp_path: Path, mode: str) -> None:
    """EMFILE, for real: the open file limit lowered in a child process."""
    root = tmp_path / "store"
    child = run_python(FD_EXHAUSTED, root, mode)
    assert child.returncode == 0, child.stderr
    kind, message = child.stdout.splitlines()[:2]
    assert kind.endswith(" True True")  # a StoreError that is still an OSError
    assert "second.txt" in message
    assert str(tmp_path) not in child.stdout


def test_storage_full_message_has_no_path(tmp_path: Path) -> None:
    child = run_full(SAVE_UNTIL_FULL, tmp_path / "store", limit=1024 * 1024)
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout)
    assert report["error"] == "StorageFullError"
    assert "big.bin" in report["message"]
    assert str(tmp_path) not in child.stdout


SAVE_UNTIL_FULL = textwrap.dedent(
    """
    import json, sys
    from flask_store.exceptions import StorageFullError
    from flask_store.stores.local import LocalStore

    store = LocalStore(path=sys.argv[1])
    try:
        store.save(b"x" * (4 * 1024 * 1024), name="big.bin")
    except StorageFullError as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
    """
)


# -- full disks -------------------------------------------------------------------------------

#: Runs the script on stdin with ``RLIMIT_FSIZE`` set to ``argv[2]`` bytes (EFBIG past it).
UNDER_FILE_SIZE_LIMIT = (
    "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
    "limit = int(sys.argv[2]); resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)); "
    "sys.argv[1:] = sys.argv[1:2]; exec(sys.stdin.read())"
)


def run_full(script: str, root: Path, *, limit: int) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (argv[1] = ``root``) in a child that cannot write files over ``limit``."""
    return run_python(UNDER_FILE_SIZE_LIMIT, root, str(limit), stdin=script)


def run_on_tiny_tmpfs(script: str, root: Path) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (argv[1] = ``root``) with a 512 KiB tmpfs mounted on ``root``."""
    if shutil.which("unshare") is None:
        pytest.skip("the unshare program (util-linux) is needed to mount a tiny tmpfs")
    root.mkdir(parents=True, exist_ok=True)
    mount_then_run = f'mount -t tmpfs -o size=512k tmpfs "$1" && exec {sys.executable} - "$1"'
    command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", mount_then_run, "sh"]
    child = subprocess.run(
        [*command, str(root)], input=script, capture_output=True, text=True, timeout=60
    )
    if child.returncode != 0 and "mount" in child.stderr:
        pytest.skip(f"cannot mount a tmpfs in a private namespace here: {child.stderr.strip()}")
    return child


#: A Flask app whose upload view lists the store's folder the moment reading the form fails.
SPOOL_UNTIL_FULL = textwrap.dedent(
    """
    import io, json, os, sys
    from flask import Flask, request
    from flask_store import Store

    root = sys.argv[1]
    app = Flask(__name__)
    app.config["STORE_PATH"] = root
    store = Store(app)
    seen = {}

    def files_in(folder):
        return sorted(name for _, _, names in os.walk(folder) for name in names)

    @app.post("/upload")
    def upload():
        try:
            upload = request.files["file"]
        except BaseException as exc:
            seen["error"] = type(exc).__name__
            seen["left_at_once"] = files_in(root)
            raise
        return store.Provider().save(upload).name

    boundary = "hostile-boundary"
    body = (
        f"--{boundary}\\r\\n"
        'Content-Disposition: form-data; name="file"; filename="big.bin"\\r\\n'
        "Content-Type: application/octet-stream\\r\\n\\r\\n"
    ).encode() + b"x" * (4 * 1024 * 1024) + f"\\r\\n--{boundary}--\\r\\n".encode()
    response = app.test_client().post(
        "/upload",
        input_stream=io.BytesIO(body),
        content_type=f"multipart/form-data; boundary={boundary}",
        content_length=len(body),
        headers={"Accept": "application/json"},
    )
    print(json.dumps({
        "status": response.status_code,
        "body": response.get_data(as_text=True),
        **seen,
        "left": files_in(root),
    }))
    """
)


def check_spool_report(child: subprocess.CompletedProcess[str], root: Path) -> None:
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout.splitlines()[-1])
    assert report["error"] == "StorageFullError"
    assert report["left_at_once"] == []  # removed before the error reached the view
    assert report["left"] == []
    assert report["status"] == 507
    assert json.loads(report["body"])["status"] == 507
    assert str(root) not in report["body"]


def test_a_full_disk_while_spooling_an_upload_is_507_and_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "store"
    check_spool_report(run_full(SPOOL_UNTIL_FULL, root, limit=1024 * 1024), root)


def test_no_space_while_spooling_an_upload_is_507_and_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "tiny"
    check_spool_report(run_on_tiny_tmpfs(SPOOL_UNTIL_FULL, root), root)


#: A QueuedStore whose data fits under the limit but whose transfer record does not.
QUEUED_UNTIL_FULL = textwrap.dedent(
    """
    import json, os, sys
    from flask_store.exceptions import StorageFullError
    from flask_store.stores.queued import QueuedStore

    root = sys.argv[1]
    store = QueuedStore(
        queued_local={"PROVIDER": "local", "PATH": root},
        queued_remote={"PROVIDER": "memory"},
        transfer_delayed=True,
    )
    store.local.unnamed_writes = os.environ.get("UNNAMED") == "1"
    try:
        store.save(os.urandom(int(os.environ["SIZE"])), name="a.txt")
    except StorageFullError as exc:
        error = [type(exc).__name__, str(exc)]
    else:
        error = None
    left = sorted(
        os.path.relpath(os.path.join(folder, name), root)
        for folder, _, names in os.walk(root)
        for name in names
    )
    # The empty lock files record changes take are made once and kept: not debris.
    left = [path for path in left if not path.startswith(".transfers/stripes/")]
    print(json.dumps({"error": error, "left": left, "keys": list(store.keys())}))
    """
)


@pytest.mark.parametrize(
    ("size", "limit", "said"),
    [
        (10, 150, "record the transfer of 'a.txt'"),
        (10, 20, "note the save in progress"),  # its first line is 38 bytes
        (10, 40, "note the save of 'a.txt'"),  # the key's line is cut short at 40
        (4096, 1024, "store 'a.txt'"),
    ],
    ids=["record-too-big", "intent-too-big", "intent-key-too-big", "data-too-big"],
)
@pytest.mark.parametrize("unnamed", ["1", "0"], ids=["unnamed", "named-temp"])
def test_a_full_disk_while_a_queued_store_saves_leaves_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    size: int,
    limit: int,
    said: str,
    unnamed: str,
) -> None:
    monkeypatch.setenv("SIZE", str(size))
    monkeypatch.setenv("UNNAMED", unnamed)
    root = tmp_path / "local"
    child = run_full(QUEUED_UNTIL_FULL, root, limit=limit)
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout)
    assert report["error"] == ["StorageFullError", f"No space left to {said}: File too large."]
    assert report["left"] == [] and report["keys"] == []


# -- broken transfer records ------------------------------------------------------------------


def queued_store(root: Path) -> QueuedStore:
    return QueuedStore(
        queued_local={"PROVIDER": "local", "PATH": str(root / "local")},
        queued_remote={"PROVIDER": "memory"},
        transfer_records_path=str(root / "records"),
        transfer_delayed=True,
        transfer_retry_delay=0,
    )


BadRecord = Callable[[Path], None]


def _garbage(path: Path) -> None:
    path.write_bytes(b"{not json at all\x00\xff")


def _wrong_fields(path: Path) -> None:
    path.write_text(json.dumps({"colour": "blue", "key": "x.txt"}))


def _wrong_types(path: Path) -> None:
    path.write_text(
        json.dumps(
            {
                "key": ["x.txt"],
                "state": "pending",
                "size": "big",
                "filename": 1,
                "content_type": None,
            }
        )
    )


def _not_an_object(path: Path) -> None:
    path.write_text("[1, 2, 3]")


def _a_folder(path: Path) -> None:
    path.mkdir()
    (path / "inside.json").write_text("{}")


def _a_fifo(path: Path) -> None:
    os.mkfifo(path)  # opening it for reading would wait for a writer forever


BAD_RECORDS: dict[str, BadRecord] = {
    "garbage": _garbage,
    "wrong-fields": _wrong_fields,
    "wrong-types": _wrong_types,
    "not-an-object": _not_an_object,
    "a-folder": _a_folder,
    "a-fifo": _a_fifo,
}


def run_with_timeout(action: Callable[[], Any]) -> Any:
    """Run ``action`` in a thread; fail (not hang) if it is still blocked after a while."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = action()
        except BaseException as exc:  # handed to the test thread below
            outcome["error"] = exc

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(BLOCKED_AFTER)
    assert not worker.is_alive(), "blocked: the call never returned"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.mark.parametrize("bad", sorted(BAD_RECORDS))
@pytest.mark.parametrize("where", ["open", "done"])
def test_a_broken_record_is_logged_and_skipped_by_reconcile(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, bad: str, where: str
) -> None:
    store = queued_store(tmp_path)
    for name in ["a.txt", "b.txt", "c.txt"]:
        store.save(name.encode(), name=name)
    BAD_RECORDS[bad](tmp_path / "records" / where / f"{'0' * 64}.json")
    with caplog.at_level(logging.WARNING, logger="flask_store.transfer"):
        queued = run_with_timeout(lambda: store.reconcile(include_delayed=True))
        assert store.join(timeout=BLOCKED_AFTER)
        listed = run_with_timeout(lambda: sorted(r.key for r in store.records))
    assert queued == listed == ["a.txt", "b.txt", "c.txt"]
    assert [store.state(name) for name in queued] == ["done"] * 3
    assert store.remote.read("b.txt") == b"b.txt"
    assert f"{where}/{'0' * 64}.json" in caplog.text
    assert str(tmp_path) not in caplog.text  # the record is named relative to its folder


def test_a_broken_record_of_a_key_reads_as_no_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = queued_store(tmp_path)
    store.save(b"a", name="a.txt")
    record_file = next((tmp_path / "records" / "open").iterdir())
    _garbage(record_file)
    with caplog.at_level(logging.WARNING, logger="flask_store.transfer"):
        assert RecordBook(str(tmp_path / "records")).get("a.txt") is None
        assert store.read("a.txt") == b"a"  # served from the local copy
        assert store.reconcile(include_delayed=True) == []
    assert record_file.name in caplog.text


#: Reconciles a store whose ``open/`` folder holds one record nobody may read (mode 000).
RECONCILE_WITH_UNREADABLE = textwrap.dedent(
    """
    import json, logging, sys
    from flask_store.stores.queued import QueuedStore

    logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(message)s")
    root = sys.argv[1]
    store = QueuedStore(
        queued_local={"PROVIDER": "local", "PATH": root + "/local"},
        queued_remote={"PROVIDER": "memory"},
        transfer_records_path=root + "/records",
        transfer_delayed=True,
        transfer_retry_delay=0,
    )
    queued = store.reconcile(include_delayed=True)
    store.join(timeout=20)
    print(json.dumps({"queued": queued, "states": [store.state(k) for k in queued]}))
    """
)


def test_an_unreadable_record_is_logged_and_skipped_by_reconcile(tmp_path: Path) -> None:
    store = queued_store(tmp_path)
    for name in ["a.txt", "b.txt"]:
        store.save(name.encode(), name=name)
    unreadable = tmp_path / "records" / "open" / f"{'1' * 64}.json"
    unreadable.write_text("{}")
    unreadable.chmod(0)
    command = [sys.executable, "-c", RECONCILE_WITH_UNREADABLE, str(tmp_path)]
    if os.geteuid() == 0:
        # root reads any file: drop the capabilities that let it, for this child only.
        if shutil.which("setpriv") is None:
            pytest.skip("running as root needs setpriv (util-linux) to drop DAC override")
        caps = "-dac_override,-dac_read_search"
        command = ["setpriv", "--bounding-set", caps, "--inh-caps", caps, *command]
    child = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert child.returncode == 0, child.stderr
    assert "Permission denied" in child.stdout and unreadable.name in child.stdout
    report = json.loads(child.stdout.splitlines()[-1])
    assert report == {"queued": ["a.txt", "b.txt"], "states": ["done", "done"]}


def test_a_broken_intent_is_skipped_by_reconcile(tmp_path: Path) -> None:
    store = queued_store(tmp_path)
    store.save(b"a", name="a.txt")
    intents = tmp_path / "records" / "intents"
    (intents / "folder.intent").mkdir()
    (intents / "garbage.intent").write_bytes(b'[1, 2]\n"a.txt"\n')
    (intents / "wrong.intent").write_bytes(b'{"colour": 1}\n')
    os.mkfifo(intents / "fifo.intent")
    assert run_with_timeout(lambda: store.reconcile(include_delayed=True)) == ["a.txt"]
    assert store.join(timeout=BLOCKED_AFTER)
    assert store.state("a.txt") == "done"


# -- URL prefixes inside other stores' ---------------------------------------------------------


def test_a_named_store_never_shares_a_url_with_a_folder_of_the_default(tmp_path: Path) -> None:
    app, store = make_app(
        tmp_path, STORE_STORES={"avatars": {"PROVIDER": "memory"}}, SERVER_NAME="example.com"
    )
    with app.app_context():
        in_default = store.Provider().put("avatars/x.png", b"default's")
        in_named = store.Provider("avatars").put("x.png", b"avatars'")
        elsewhere = store.Provider().put("photos/x.png", b"photo")
        urls = {f.relative_url() for f in (in_default, in_named, elsewhere)}
        assert len(urls) == 3
        # Only the covered folder itself: a sibling whose name merely starts alike keeps
        # its plain URL, as does a file named like the folder.
        assert store.Provider().url_path("avatarsx/y.png") == "/flaskstore/avatarsx/y.png"
        assert store.Provider().url_path("avatars") == "/flaskstore/avatars"
        # Existing URLs stay: the named store's, and every file of the default outside
        # the folder the named store's prefix covers.
        assert in_named.relative_url() == "/flaskstore/avatars/x.png"
        assert elsewhere.relative_url() == "/flaskstore/photos/x.png"
        absolute = in_default.absolute_url()
    client = app.test_client()
    expected = [(in_default, b"default's"), (in_named, b"avatars'"), (elsewhere, b"photo")]
    for wrapper, data in expected:
        with app.app_context():
            url = wrapper.relative_url()
        assert client.get(url).data == data, url
    assert client.get(absolute).data == b"default's"
    # The escape is only a way in to the store's own keys: nothing else is reachable.
    assert client.get("/flaskstore/.files/../secret").status_code == 404
    assert client.get("/flaskstore/.files/.hidden").status_code == 404


def test_a_store_nested_by_its_own_url_prefix_gets_the_same_guarantee(tmp_path: Path) -> None:
    app, store = make_app(
        tmp_path,
        STORE_URL_PREFIX="/files",
        STORE_STORES={"archive": {"PROVIDER": "memory", "URL_PREFIX": "/files/old/archive"}},
    )
    with app.app_context():
        shadowed = store.Provider().put("old/archive/a.txt", b"default's")
        beside = store.Provider().put("old/other/a.txt", b"beside")
        archived = store.get("archive").put("a.txt", b"archived")
        assert beside.relative_url() == "/files/old/other/a.txt"
        assert shadowed.relative_url() != archived.relative_url()
        urls = [(f.relative_url(), f.read()) for f in (shadowed, beside, archived)]
    client = app.test_client()
    for url, data in urls:
        assert client.get(url).data == data


@pytest.mark.parametrize("prefix", ["/flaskstore/.files", "/flaskstore/.files/x"])
def test_a_store_cannot_take_the_url_of_anothers_escaped_keys(tmp_path: Path, prefix: str) -> None:
    with pytest.raises(NotConfiguredError, match=r"'default'.*'x'|'x'.*'default'"):
        make_app(
            tmp_path,
            STORE_STORES={
                "avatars": {"PROVIDER": "memory"},
                "x": {"PROVIDER": "memory", "URL_PREFIX": prefix},
            },
        )


# -- FIFOs, sockets and symlink loops in a local store ------------------------------------------


@pytest.fixture
def odd_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Flask, Path]]:
    """An app whose local store holds a FIFO, a socket, symlink loops and one real file."""
    app, store = make_app(tmp_path)
    with app.app_context():
        store.Provider().put("real.txt", b"real")
        root = Path(store.Provider().path("real.txt")).parent
    os.mkfifo(root / "fifo.txt")
    (root / "dir").mkdir()
    os.mkfifo(root / "dir" / "fifo.bin")
    os.symlink("loop.txt", root / "loop.txt")
    os.symlink("pong.txt", root / "ping.txt")
    os.symlink("ping.txt", root / "pong.txt")
    os.symlink("loopdir", root / "loopdir")
    monkeypatch.chdir(root)  # a socket's path must be short: bind it by a relative name
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind("socket.txt")
    server.listen(1)
    try:
        yield app, root
    finally:
        server.close()


ODD_KEYS = ["fifo.txt", "dir/fifo.bin", "socket.txt", "loop.txt", "ping.txt", "loopdir/x.txt"]


@pytest.mark.parametrize("key", ODD_KEYS)
@pytest.mark.parametrize("method", ["GET", "HEAD", "GET-range", "GET-conditional"])
def test_special_files_are_404_without_blocking(
    odd_files: tuple[Flask, Path], key: str, method: str
) -> None:
    app, root = odd_files
    headers = {"GET-range": {"Range": "bytes=0-1"}, "GET-conditional": {"If-None-Match": '"x"'}}
    response = run_with_timeout(
        lambda: app.test_client().open(
            f"/flaskstore/{key}", method=method[:4].strip("-"), headers=headers.get(method, {})
        )
    )
    assert response.status_code == 404
    assert str(root) not in response.get_data(as_text=True)


@pytest.mark.parametrize("key", ODD_KEYS)
def test_special_files_are_not_files_of_the_store(odd_files: tuple[Flask, Path], key: str) -> None:
    app, _ = odd_files
    with app.app_context():
        provider = Store().Provider()
        assert not provider.exists(key)
        with pytest.raises(FileNotFoundInStoreError):
            run_with_timeout(lambda: provider.open(key))
        with pytest.raises(FileNotFoundInStoreError):
            run_with_timeout(lambda: provider.info(key))
        with pytest.raises(FileNotFoundInStoreError):
            run_with_timeout(lambda: provider.open_with_info(key))


def test_special_files_are_not_listed(odd_files: tuple[Flask, Path]) -> None:
    app, root = odd_files
    assert stat.S_ISSOCK(os.lstat(root / "socket.txt").st_mode)
    with app.app_context():
        provider = Store().Provider()
        assert run_with_timeout(lambda: list(provider.keys())) == ["real.txt"]
        assert run_with_timeout(lambda: list(provider.keys("dir/"))) == []
        assert len(provider) == 1


def test_a_symlink_to_a_file_inside_the_store_is_still_a_key(tmp_path: Path) -> None:
    store = LocalStore(path=str(tmp_path / "store"))
    store.save(b"target", name="target.txt")
    os.symlink("target.txt", Path(store.root) / "alias.txt")
    # A broken link stays listed, so that sync and verify name it; reading it is a 404.
    os.symlink("gone.txt", Path(store.root) / "broken.txt")
    assert list(store.keys()) == ["alias.txt", "broken.txt", "target.txt"]
    assert store.read("alias.txt") == b"target"
    with pytest.raises(FileNotFoundInStoreError):
        store.open("broken.txt")
