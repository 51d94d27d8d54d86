"""``flask store ...`` through Flask's CliRunner, and once as a real ``flask`` process."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner

from flask_store import Store
from flask_store.exceptions import StoreUnavailableError
from flask_store.registry import get_registry


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        STORE_PATH=str(tmp_path / "local"),
        STORE_STORES={"mem": {"PROVIDER": "memory"}, "backup": {"PATH": str(tmp_path / "bk")}},
        SERVER_NAME="files.example.com",
    )
    store = Store(app)
    with app.app_context():
        store.Provider().save(b"alpha", name="a.txt")
        store.Provider(destination="docs").save(b"beta!", name="b.md")
    return app


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


def test_ls_lists_keys_sizes_and_dates(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["store", "ls"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[-1] for line in lines] == ["a.txt", "docs/b.md"]
    assert lines[0].split()[0] == "5"
    only_docs = runner.invoke(args=["store", "ls", "default", "docs/"])
    assert [line.split()[-1] for line in only_docs.output.splitlines()] == ["docs/b.md"]
    assert runner.invoke(args=["store", "ls", "mem"]).output == ""


def test_stat_and_url(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["store", "stat", "default/docs/b.md"])
    assert result.exit_code == 0, result.output
    assert "size:          5" in result.output
    assert "content-type:  text/markdown" in result.output
    url = runner.invoke(args=["store", "url", "default/docs/b.md"])
    assert url.output.strip() == "http://files.example.com/flaskstore/docs/b.md"


def test_cp_and_rm(runner: FlaskCliRunner, app: Flask) -> None:
    copied = runner.invoke(args=["store", "cp", "default/a.txt", "mem/"])
    assert copied.exit_code == 0, copied.output
    assert "copied default/a.txt -> mem/a.txt" in copied.output
    renamed = runner.invoke(args=["store", "cp", "default/a.txt", "mem/x/y.txt"])
    assert renamed.exit_code == 0
    again = runner.invoke(args=["store", "cp", "default/a.txt", "mem/"])
    assert again.exit_code == 1
    assert "already stored there; pass --force" in again.output
    with app.app_context():
        mem = Store().get("mem")
        assert mem.read("a.txt") == mem.read("x/y.txt") == b"alpha"
        assert mem.info("a.txt").content_type == "text/plain"
    removed = runner.invoke(args=["store", "rm", "mem/a.txt", "mem/x/y.txt"])
    assert removed.exit_code == 0
    with app.app_context():
        assert list(Store().get("mem")) == []


def test_sync_copies_what_is_missing_or_different(runner: FlaskCliRunner, app: Flask) -> None:
    dry = runner.invoke(args=["store", "sync", "default", "backup", "--dry-run"])
    assert dry.exit_code == 0
    assert "would copy 2, skipped 0, failed 0" in dry.output
    with app.app_context():
        assert list(Store().get("backup")) == []
    first = runner.invoke(args=["store", "sync", "default", "backup"])
    assert "copied 2, skipped 0, failed 0" in first.output
    with app.app_context():
        Store().Provider().replace("a.txt", b"alpha, longer now")
    second = runner.invoke(args=["store", "sync", "default", "backup"])
    assert "copied a.txt" in second.output
    assert "copied 1, skipped 1, failed 0" in second.output
    with app.app_context():
        assert Store().get("backup").read("a.txt") == b"alpha, longer now"
    checksum = runner.invoke(args=["store", "sync", "default", "backup", "--checksum"])
    assert "copied 0, skipped 2, failed 0" in checksum.output


def test_sync_checksum_catches_same_size_changes(runner: FlaskCliRunner, app: Flask) -> None:
    runner.invoke(args=["store", "sync", "default", "backup"])
    with app.app_context():
        Store().Provider().replace("a.txt", b"ALPHA")
    by_size = runner.invoke(args=["store", "sync", "default", "backup"])
    assert "copied 0, skipped 2" in by_size.output
    by_content = runner.invoke(args=["store", "sync", "default", "backup", "--checksum"])
    assert "copied 1, skipped 1" in by_content.output


def test_sync_copies_a_file_whose_content_type_changed(runner: FlaskCliRunner, app: Flask) -> None:
    runner.invoke(args=["store", "sync", "default", "backup"])
    with app.app_context():
        Store().Provider().replace("a.txt", b"alpha", content_type="text/x-alpha")
    synced = runner.invoke(args=["store", "sync", "default", "backup"])
    assert synced.output.splitlines() == ["copied a.txt", "copied 1, skipped 1, failed 0"]
    with app.app_context():
        assert Store().get("backup").info("a.txt").content_type == "text/x-alpha"


def test_verify_finds_damaged_files(runner: FlaskCliRunner, tmp_path: Path) -> None:
    assert runner.invoke(args=["store", "verify"]).stdout == "verified 2, failed 0\n"
    damaged = tmp_path / "local" / "a.txt"
    # Corrupt the file behind the store's back, keeping its inode (and so its metadata).
    with open(damaged, "r+b") as handle:
        handle.truncate(2)
    result = runner.invoke(args=["store", "verify"])
    assert result.exit_code == 1
    assert result.stdout == "verified 1, failed 1\n"
    (error,) = result.stderr.splitlines()
    assert error.startswith("error: default/a.txt: size is 2 bytes but ")


def test_verify_checks_recorded_checksums(runner: FlaskCliRunner, app: Flask) -> None:
    runner.invoke(args=["store", "cp", "default/a.txt", "mem/"])
    assert runner.invoke(args=["store", "verify", "mem"]).exit_code == 0
    with app.app_context():
        mem = Store().get("mem")
        stored = mem._files["a.txt"]  # type: ignore[attr-defined]
        mem._files["a.txt"] = type(stored)(b"alphA", stored.info)  # type: ignore[attr-defined]
    result = runner.invoke(args=["store", "verify", "mem"])
    assert result.exit_code == 1
    assert "checksum" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["store", "ls", "nope"], "No store is called 'nope'"),
        (["store", "stat", "default/missing.txt"], "No file is stored as 'missing.txt'"),
        (["store", "stat", "default/../etc/passwd"], "relative"),
        (["store", "cp", "default/a.txt", "nope/"], "No store is called 'nope'"),
        (["store", "sync", "default", "nope"], "No store is called 'nope'"),
        (["store", "url", "default/a.txt", "--expires", "0"], "Invalid value"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    runner: FlaskCliRunner, args: list[str], message: str
) -> None:
    result = runner.invoke(args=args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def write_copy_app(tmp_path: Path, files: int = 1) -> None:
    """``cliapp.py`` in ``tmp_path``: a local default store holding ``files`` files, and
    another local store called ``copy``."""
    (tmp_path / "cliapp.py").write_text(
        textwrap.dedent(
            f"""
            from flask import Flask
            from flask_store import Store

            def create_app():
                app = Flask(__name__, instance_path={str(tmp_path / "instance")!r})
                app.config["STORE_STORES"] = {{"copy": {{"PATH": "copy"}}}}
                Store(app)
                return app
            """
        )
    )
    uploads = tmp_path / "instance" / "uploads"
    uploads.mkdir(parents=True)
    (uploads / "hello.txt").write_bytes(b"hello")
    for n in range(1, files):
        (uploads / f"more-{n}.txt").write_bytes(b"more" * n)


def test_real_flask_process(tmp_path: Path) -> None:
    write_copy_app(tmp_path)
    env = {**os.environ, "FLASK_APP": "cliapp"}

    def flask(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flask", "store", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    synced = flask("sync", "default", "copy")
    assert synced.returncode == 0, synced.stderr
    assert synced.stdout == "copied hello.txt\ncopied 1, skipped 0, failed 0\n"
    assert (tmp_path / "instance" / "copy" / "hello.txt").read_bytes() == b"hello"
    missing = flask("ls", "nowhere")
    assert missing.returncode == 2
    assert missing.stderr.strip() == ("Error: No store is called 'nowhere'; known: copy, default.")
    # Too young for the sweep at start-up; --older-than 0 takes it.
    left = _temp_file(tmp_path / "instance" / "uploads", ".upload-left", 60)
    cleaned = flask("clean", "--older-than", "0")
    assert cleaned.returncode == 0, cleaned.stderr
    assert cleaned.stdout.splitlines() == [
        f"removed {left}",
        "removed 1 temporary file(s) from the store 'default'",
    ]
    assert sorted(p.name for p in left.parent.iterdir()) == ["hello.txt"]


def shown_on_a_terminal(
    flask_args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> str:
    """What ``flask *flask_args`` writes to a terminal (a pseudo-terminal as its stdout);
    the command must succeed."""
    terminal, child_side = pty.openpty()
    flask = str(Path(sys.executable).with_name("flask"))
    process = subprocess.Popen(
        [flask, *flask_args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=child_side,
        stderr=subprocess.PIPE,
    )
    os.close(child_side)
    shown = b""
    while True:
        try:
            chunk = os.read(terminal, 4096)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(terminal)
    assert process.wait(timeout=timeout) == 0
    return shown.decode()


def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    """On a terminal sync draws a progress bar instead of a line per file."""
    write_copy_app(tmp_path, files=5)
    text = shown_on_a_terminal(["--app", "cliapp", "store", "sync", "default", "copy"], tmp_path)
    assert "Syncing" in text and "100%" in text
    assert "copied hello.txt" not in text
    assert text.rstrip().endswith("copied 5, skipped 0, failed 0")
    assert len(list((tmp_path / "instance" / "copy").iterdir())) == 5


def _temp_file(folder: Path, name: str, age_seconds: float) -> Path:
    """A hidden temporary file like the one a killed upload leaves, ``age_seconds`` old."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"half an upload")
    stamp = time.time() - age_seconds
    os.utime(path, (stamp, stamp))
    return path


def test_clean_removes_only_stale_temporary_files(runner: FlaskCliRunner, tmp_path: Path) -> None:
    stale = _temp_file(tmp_path / "local" / "docs", ".upload-stale", 2 * 86400)
    fresh = _temp_file(tmp_path / "local", ".upload-fresh", 60)
    result = runner.invoke(args=["store", "clean"])
    assert result.exit_code == 0, result.output
    assert f"removed {stale}" in result.output
    assert (stale.exists(), fresh.exists()) == (False, True)
    assert (tmp_path / "local" / "a.txt").read_bytes() == b"alpha"
    assert runner.invoke(args=["store", "clean", "--older-than", "0"]).exit_code == 0
    assert not fresh.exists()
    memory = runner.invoke(args=["store", "clean", "mem"])
    assert memory.exit_code == 2
    assert "only stores on local disk" in memory.output


def test_starting_the_app_removes_stale_temporary_files(tmp_path: Path) -> None:
    stale = _temp_file(tmp_path / "files", ".upload-left-by-a-crash", 2 * 86400)
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config["STORE_PATH"] = str(tmp_path / "files")
    Store(app)
    deadline = time.monotonic() + 30  # a safety net for the background sweep, not a measure
    while stale.exists():
        assert time.monotonic() < deadline, "the stale temporary file was never removed"
        time.sleep(0.01)


def test_hostile_names_reach_the_output_escaped(
    runner: FlaskCliRunner, app: Flask, tmp_path: Path
) -> None:
    """A client's filename, or a file someone left in a store's folder, may hold terminal
    escape sequences or newlines: output shows them escaped, one line per file."""
    hostile = "ok\x1b]0;pwned\x07\nerror: default/forged.txt: fake"
    with app.app_context():
        Store().Provider().put("upload.txt", b"x", filename=hostile)
    (tmp_path / "local" / "evil\x1b[2J\nforged.txt").write_bytes(b"y")

    stat = runner.invoke(args=["store", "stat", "default/upload.txt"])
    synced = runner.invoke(args=["store", "sync", "default", "backup"])

    assert stat.exit_code == 0, stat.output
    assert "filename:      ok\\x1b]0;pwned\\x07\\nerror: default/forged.txt: fake" in stat.stdout
    assert synced.exit_code == 1
    (error,) = synced.stderr.splitlines()
    assert error.startswith("error: default/evil\\x1b[2J\\nforged.txt: ")
    for output in (stat.output, synced.output):
        assert "\x1b" not in output and "\x07" not in output


def test_a_store_error_message_reaches_the_output_escaped(
    runner: FlaskCliRunner, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error's text may come from a server (an S3-compatible one answers what it likes):
    the ``Error:`` line shows its control characters escaped, as one line."""
    with app.app_context():
        store = get_registry(app).resolve()

    def down(key: str) -> None:
        raise StoreUnavailableError("down\x1b]0;pwned\x07\nforged line")

    monkeypatch.setattr(store, "info", down)
    result = runner.invoke(args=["store", "stat", "default/a.txt"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["Error: down\\x1b]0;pwned\\x07\\nforged line"]


def test_clean_refuses_an_age_that_is_not_a_number(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["store", "clean", "--older-than", "nan"])
    assert result.exit_code == 2
    assert "not a number" in result.stderr


def test_sync_into_a_store_inside_the_source_is_refused(tmp_path: Path) -> None:
    """A destination whose folder lies inside the source's has its files listed as the
    source's (``bk/...``): every run copied them into it again, one level deeper, and a
    cron job filled the disk."""
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        STORE_PATH=str(tmp_path / "files"),
        STORE_STORES={"bk": {"PATH": str(tmp_path / "files" / "bk")}},
    )
    store = Store(app)
    with app.app_context():
        store.Provider().save(b"alpha", name="a.txt")
    runner = app.test_cli_runner()

    for _ in range(3):
        result = runner.invoke(args=["store", "sync", "default", "bk"])
        assert result.exit_code == 2, result.output
        assert "'bk' is a folder of 'default'" in result.stderr
    assert list((tmp_path / "files" / "bk").iterdir()) == []
    # The other way round copies nothing back into itself.
    assert runner.invoke(args=["store", "sync", "bk", "default"]).exit_code == 0


def test_a_reader_that_stops_early_gets_no_error_line(tmp_path: Path) -> None:
    """``flask store cat big.bin | head -c 10``: the reader closing the pipe is not an error
    of the store, so no ``Error: [Errno 32] Broken pipe`` line (nor a traceback) on stderr."""
    write_copy_app(tmp_path)
    (tmp_path / "instance" / "uploads" / "big.bin").write_bytes(b"x" * (4 * 1024 * 1024))
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "store", "cat", "big.bin"],
        cwd=tmp_path,
        env={**os.environ, "FLASK_APP": "cliapp"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.read(10) == b"x" * 10
    process.stdout.close()  # more than a pipe holds is still to come: the next write fails
    errors = process.stderr.read()
    assert process.wait(timeout=60) == 1
    assert errors == b""
