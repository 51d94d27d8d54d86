"""``flask store ...`` against S3: a real moto server over HTTP, behind a counting proxy.

Every command runs through Flask's CliRunner and once as a real ``flask`` process. A sync of
1,000 files is interrupted (SIGKILL, and Ctrl+C) and resumed; the proxy proves that no file
was sent twice.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner

from flask_store import Store
from tests.counting_proxy import CountingProxy, bucket, proxy
from tests.moto_server import s3_client, shared_moto_server
from tests.queued_remotes import s3_settings
from tests.waiting import wait_until

__all__ = ["bucket", "proxy"]  # fixtures, imported for the tests below

FLASK = Path(sys.executable).with_name("flask")
#: Where the S3 store keeps its files in the bucket (STORE_PATH).
PREFIX = "files"


def store_config(tmp_path: Path, proxy: CountingProxy, bucket: str) -> dict[str, Any]:
    """A local default store, an S3 store (through the proxy) and a memory store."""
    return {
        "STORE_PATH": str(tmp_path / "local"),
        "STORE_STORES": {
            "s3": {"PROVIDER": "s3", **s3_settings(proxy.url, bucket, PREFIX), "URL_PREFIX": "/s3"},
            "mem": {"PROVIDER": "memory"},
        },
    }


@pytest.fixture
def app(tmp_path: Path, proxy: CountingProxy, bucket: str) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(store_config(tmp_path, proxy, bucket))
    store = Store(app)
    with app.app_context():
        store.Provider().save(b"alpha", name="a.txt")
        store.Provider(destination="docs").save(b"# beta", name="b.md")
        store.Provider().save(b"body { color: red }" * 20, name="style.css")
    return app


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


def ok(runner: FlaskCliRunner, *args: str) -> str:
    result = runner.invoke(args=["store", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        data: bytes = response.read()
        return data


def object_versions(bucket: str, endpoint: str) -> dict[str, tuple[str, Any]]:
    """ETag and LastModified of every object, read straight from the server."""
    pages = s3_client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {
        item["Key"]: (item["ETag"], item["LastModified"])
        for page in pages
        for item in page.get("Contents", [])
    }


# -- every command through CliRunner ------------------------------------------------------


def test_ls_and_stat_on_s3(runner: FlaskCliRunner, app: Flask) -> None:
    with app.app_context():
        s3 = Store().get("s3")
        s3.put("a.txt", b"alpha")
        s3.put("docs/b.md", b"# beta!")
    lines = ok(runner, "ls", "s3").splitlines()
    assert [line.split()[-1] for line in lines] == ["a.txt", "docs/b.md"]
    assert [line.split()[0] for line in lines] == ["5", "7"]
    assert [line.split()[-1] for line in ok(runner, "ls", "s3", "docs/").splitlines()] == [
        "docs/b.md"
    ]
    assert ok(runner, "ls", "s3", "nothing-here/") == ""
    stat = ok(runner, "stat", "s3/docs/b.md")
    assert "path:          s3/docs/b.md" in stat
    assert "size:          7" in stat
    assert "content-type:  text/markdown" in stat
    assert f"etag:          {hashlib.md5(b'# beta!').hexdigest()}" in stat


def test_url_with_expires_is_a_working_presigned_url(
    runner: FlaskCliRunner, app: Flask, proxy: CountingProxy, bucket: str
) -> None:
    with app.app_context():
        Store().get("s3").put("a.txt", b"alpha")
    plain = ok(runner, "url", "s3/a.txt").strip()
    assert plain == f"{proxy.url}/{bucket}/{PREFIX}/a.txt"
    presigned = ok(runner, "url", "s3/a.txt", "--expires", "600").strip()
    assert presigned.startswith(f"{proxy.url}/{bucket}/{PREFIX}/a.txt?")
    assert "X-Amz-Expires=600" in presigned and "X-Amz-Signature=" in presigned
    assert fetch(presigned) == b"alpha"
    too_long = runner.invoke(args=["store", "url", "s3/a.txt", "--expires", str(8 * 86400)])
    assert too_long.exit_code == 2
    assert too_long.stderr.strip() == (
        "Error: expires must be from 1 to 604800 seconds (7 days), not 691200."
    )


def test_cp_local_to_s3_and_back(runner: FlaskCliRunner, app: Flask, tmp_path: Path) -> None:
    assert "copied default/docs/b.md -> s3/docs/b.md" in ok(
        runner, "cp", "default/docs/b.md", "s3/"
    )
    ok(runner, "cp", "default/a.txt", "s3/renamed/a.txt")
    with app.app_context():
        s3 = Store().get("s3")
        assert s3.read("docs/b.md") == b"# beta"
        assert s3.info("docs/b.md").content_type == "text/markdown"
        assert s3.info("renamed/a.txt").filename == "a.txt"
    back = ok(runner, "cp", "s3/renamed/a.txt", "default/restored/a.txt")
    assert "copied s3/renamed/a.txt -> default/restored/a.txt" in back
    assert (tmp_path / "local" / "restored" / "a.txt").read_bytes() == b"alpha"

    taken = runner.invoke(args=["store", "cp", "default/a.txt", "s3/docs/b.md"])
    assert taken.exit_code == 1
    assert "already stored" in taken.stderr
    ok(runner, "cp", "default/a.txt", "s3/docs/b.md", "--force")
    with app.app_context():
        assert Store().get("s3").read("docs/b.md") == b"alpha"


def test_sync_to_s3_copies_what_is_missing_or_different(
    runner: FlaskCliRunner, app: Flask, proxy: CountingProxy, bucket: str, tmp_path: Path
) -> None:
    dry = ok(runner, "sync", "default", "s3", "--dry-run")
    assert dry.splitlines() == [
        "would copy a.txt",
        "would copy docs/b.md",
        "would copy style.css",
        "would copy 3, skipped 0, failed 0",
    ]
    assert proxy.stored_keys(bucket) == {}

    first = ok(runner, "sync", "default", "s3")
    assert "copied 3, skipped 0, failed 0" in first
    keys = {f"{PREFIX}/{key}" for key in ["a.txt", "docs/b.md", "style.css"]}
    assert proxy.stored_keys(bucket) == dict.fromkeys(keys, 1)
    # The listing showed none of them: nothing was asked about before copying.
    assert proxy.count("HEAD", bucket) == 0
    assert ok(runner, "sync", "default", "s3").endswith("copied 0, skipped 3, failed 0\n")
    # style.css is stored gzip-encoded; comparing contents still finds it the same.
    assert "copied 0, skipped 3" in ok(runner, "sync", "default", "s3", "--checksum")
    assert proxy.stored_keys(bucket) == dict.fromkeys(keys, 1)
    assert ok(runner, "verify", "s3") == "verified 3, failed 0\n"

    (tmp_path / "local" / "a.txt").write_bytes(b"alpha, longer")
    (tmp_path / "local" / "docs" / "b.md").write_bytes(b"# BETA")  # same size
    by_size = ok(runner, "sync", "default", "s3")
    assert by_size.splitlines() == ["copied a.txt", "copied 1, skipped 2, failed 0"]

    def reads() -> list[int]:
        return [proxy.count("GET", bucket, key) for key in sorted(keys)]

    before = reads()
    by_content = ok(runner, "sync", "default", "s3", "--checksum")
    assert by_content.splitlines() == ["copied docs/b.md", "copied 1, skipped 2, failed 0"]
    # S3 records an MD5 for docs/b.md and a.txt, so only the gzip-encoded file is read back.
    assert [after - earlier for after, earlier in zip(reads(), before, strict=True)] == [0, 0, 1]
    with app.app_context():
        s3 = Store().get("s3")
        assert [s3.read("a.txt"), s3.read("docs/b.md")] == [b"alpha, longer", b"# BETA"]


def test_sync_compares_checksums_both_stores_record(
    runner: FlaskCliRunner, app: Flask, proxy: CountingProxy, bucket: str
) -> None:
    with app.app_context():
        Store().get("mem").put("note.txt", b"first")
    ok(runner, "sync", "mem", "s3")
    with app.app_context():
        Store().get("mem").put("note.txt", b"FIRST", overwrite=True)  # same size
    synced = ok(runner, "sync", "mem", "s3")
    assert synced.splitlines() == ["copied note.txt", "copied 1, skipped 0, failed 0"]
    assert proxy.count("GET", bucket, f"{PREFIX}/note.txt") == 0  # compared by recorded MD5s
    with app.app_context():
        assert Store().get("s3").read("note.txt") == b"FIRST"


def test_sync_from_s3(runner: FlaskCliRunner, app: Flask, tmp_path: Path) -> None:
    ok(runner, "sync", "default", "s3")
    synced = ok(runner, "sync", "s3", "mem")
    assert "copied 3, skipped 0, failed 0" in synced
    with app.app_context():
        mem = Store().get("mem")
        assert mem.read("style.css") == (tmp_path / "local" / "style.css").read_bytes()
        assert mem.info("style.css").content_type == "text/css"
    assert ok(runner, "sync", "s3", "mem").endswith("copied 0, skipped 3, failed 0\n")


def test_verify_names_each_damaged_object(
    runner: FlaskCliRunner, app: Flask, proxy: CountingProxy, bucket: str
) -> None:
    ok(runner, "sync", "default", "s3")
    client = s3_client(proxy.url)
    # Written behind the store's back: a wrong recorded size, and a body that is not gzip.
    client.put_object(
        Bucket=bucket,
        Key=f"{PREFIX}/wrong-size.css",
        Body=gzip.compress(b"0123456789"),
        ContentEncoding="gzip",
        ContentType="text/css",
        Metadata={"uncompressed-size": "5"},
    )
    client.put_object(
        Bucket=bucket,
        Key=f"{PREFIX}/not-gzip.css",
        Body=b"plain text",
        ContentEncoding="gzip",
        ContentType="text/css",
    )
    result = runner.invoke(args=["store", "verify", "s3"])
    assert result.exit_code == 1
    assert result.stdout == "verified 3, failed 2\n"
    errors = result.stderr.splitlines()
    assert [line.split(":")[1].strip() for line in errors] == [
        "s3/not-gzip.css",
        "s3/wrong-size.css",
    ]
    assert "unreadable" in errors[0]
    assert "size is 10 bytes but metadata says 5" in errors[1]


def test_rm_on_s3_deletes_nothing_when_a_path_is_bad(
    runner: FlaskCliRunner, app: Flask, proxy: CountingProxy, bucket: str
) -> None:
    ok(runner, "sync", "default", "s3")
    refused = runner.invoke(args=["store", "rm", "s3/a.txt", "s3/missing.txt"])
    assert refused.exit_code == 2
    assert refused.stderr.strip() == "Error: s3/missing.txt: No file is stored as 'missing.txt'."
    assert proxy.count("DELETE", bucket) == 0
    removed = ok(runner, "rm", "s3/a.txt", "s3/docs/b.md")
    assert removed.splitlines() == ["deleted s3/a.txt", "deleted s3/docs/b.md"]
    assert [line.split()[-1] for line in ok(runner, "ls", "s3").splitlines()] == ["style.css"]
    assert proxy.count("DELETE", bucket) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ls", "nope"], "Error: No store is called 'nope'; known: default, mem, s3."),
        (["stat", "s3/missing.txt"], "Error: s3/missing.txt: No file is stored as 'missing.txt'."),
        (["stat", "s3"], "Error: s3: that is a store; name a file in it, as in s3/KEY."),
        (["stat", "s3/"], "Error: s3/: A key must have 1 to 1000 bytes in UTF-8."),
        (["stat", "s3/../x"], "Error: s3/../x: The key '../x' has a hidden, relative"),
        (["url", "s3/a.txt", "--expires", "0"], "Invalid value for '--expires'"),
        (["cp", "default/a.txt", "s3/../x"], "Error: s3/../x: The key '../x' has a hidden"),
        (["sync", "default", "nope"], "Error: No store is called 'nope'"),
        (["sync", "default", "s3", "--jobs", "0"], "Invalid value for '--jobs'"),
        (["verify", "nope"], "Error: No store is called 'nope'"),
        (["ls", "default", "../"], "Error: The key '..' has a hidden, relative"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    runner: FlaskCliRunner, args: list[str], message: str
) -> None:
    ok(runner, "cp", "default/a.txt", "s3/")
    result = runner.invoke(args=["store", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) <= 4  # click's usage lines, or one line


def test_sync_names_each_failed_file_and_goes_on(
    runner: FlaskCliRunner, app: Flask, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"secret")
    (tmp_path / "local" / "escape.txt").symlink_to(outside)
    (tmp_path / "local" / "dangling.txt").symlink_to(tmp_path / "local" / "gone.txt")
    result = runner.invoke(args=["store", "sync", "default", "s3"])
    assert result.exit_code == 1
    assert result.stdout.splitlines()[-1] == "copied 3, skipped 0, failed 2"
    errors = result.stderr.splitlines()
    assert len(errors) == 2
    assert errors[0] == "error: default/dangling.txt: No file is stored as 'dangling.txt'."
    assert errors[1].startswith("error: default/escape.txt: ")
    assert "leads outside the store" in errors[1]
    with app.app_context():
        assert sorted(Store().get("s3")) == ["a.txt", "docs/b.md", "style.css"]


def test_a_missing_bucket_is_one_line_not_a_traceback(tmp_path: Path, proxy: CountingProxy) -> None:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(store_config(tmp_path, proxy, "no-such-bucket"))
    Store(app)
    for args in [["ls", "s3"], ["sync", "default", "s3"], ["verify", "s3"]]:
        result = app.test_cli_runner().invoke(args=["store", *args])
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith("Error: Cannot list")
        assert "'no-such-bucket'" in result.stderr and "does not exist" in result.stderr
        assert len(result.stderr.splitlines()) == 1


# -- real `flask` processes ---------------------------------------------------------------


def write_app_module(tmp_path: Path, proxy: CountingProxy, bucket: str) -> Path:
    """``cliapp.py`` in ``tmp_path``: the same stores, for ``flask --app cliapp``."""
    config = store_config(tmp_path, proxy, bucket)
    module = tmp_path / "cliapp.py"
    module.write_text(
        textwrap.dedent(
            f"""
            from flask import Flask
            from flask_store import Store

            def create_app():
                app = Flask(__name__, instance_path={str(tmp_path / "instance")!r})
                app.config.update({config!r})
                Store(app)
                return app
            """
        )
    )
    return module


def flask_command(tmp_path: Path, *args: str) -> list[str]:
    return [str(FLASK), "--app", "cliapp", "store", *args]


def run_flask(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        flask_command(tmp_path, *args),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_every_command_as_a_real_flask_process(
    app: Flask, tmp_path: Path, proxy: CountingProxy, bucket: str
) -> None:
    write_app_module(tmp_path, proxy, bucket)

    def flask(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        result = run_flask(tmp_path, *args)
        assert result.returncode == code, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        return result

    assert flask("sync", "default", "s3", "--dry-run").stdout.endswith(
        "would copy 3, skipped 0, failed 0\n"
    )
    synced = flask("sync", "default", "s3")
    assert synced.stdout.splitlines() == [
        "copied a.txt",
        "copied docs/b.md",
        "copied style.css",
        "copied 3, skipped 0, failed 0",
    ]
    assert [line.split()[-1] for line in flask("ls", "s3").stdout.splitlines()] == [
        "a.txt",
        "docs/b.md",
        "style.css",
    ]
    assert "content-type:  text/css" in flask("stat", "s3/style.css").stdout
    presigned = flask("url", "s3/docs/b.md", "--expires", "60").stdout.strip()
    assert "X-Amz-Expires=60" in presigned
    assert fetch(presigned) == b"# beta"
    assert flask("cp", "default/a.txt", "s3/copy/a.txt").stdout == (
        "copied default/a.txt -> s3/copy/a.txt\n"
    )
    flask("cp", "s3/copy/a.txt", "default/from-s3/a.txt")
    assert (tmp_path / "local" / "from-s3" / "a.txt").read_bytes() == b"alpha"
    assert flask("verify", "s3").stdout == "verified 4, failed 0\n"
    assert flask("rm", "s3/copy/a.txt").stdout == "deleted s3/copy/a.txt\n"
    missing = flask("stat", "s3/copy/a.txt", code=2)
    assert missing.stderr == "Error: s3/copy/a.txt: No file is stored as 'copy/a.txt'.\n"
    unknown = flask("ls", "nowhere", code=2)
    assert unknown.stderr == "Error: No store is called 'nowhere'; known: default, mem, s3.\n"
    (tmp_path / "local" / "a.txt").unlink()
    (tmp_path / "local" / "a.txt").symlink_to(tmp_path / "gone")
    failed = flask("sync", "default", "s3", code=1)
    assert failed.stderr.startswith("error: default/a.txt: ")
    assert len(failed.stderr.splitlines()) == 1


def make_files(folder: Path, count: int) -> list[str]:
    """``count`` small files of different sizes, straight on disk; their keys."""
    keys = []
    for n in range(count):
        key = f"batch/{n // 100:02d}/file-{n:04d}.txt"
        path = folder / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"file {n} ".encode() * (1 + n % 7))
        keys.append(key)
    return keys


def start_sync(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        flask_command(tmp_path, "sync", "default", "s3", *args),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sync_of_1000_files_killed_part_way_resumes_without_copying_twice(
    tmp_path: Path, proxy: CountingProxy, bucket: str, pytestconfig: pytest.Config
) -> None:
    (tmp_path / "local").mkdir()
    keys = make_files(tmp_path / "local", 1000)
    write_app_module(tmp_path, proxy, bucket)
    proxy.hold_puts_after(400)  # the 401st PUT and later never reach the server...

    started = time.monotonic()
    process = start_sync(tmp_path, "--jobs", "8")
    try:
        assert proxy.holding.wait(120), "the sync never got to the 401st file"
        wait_until(lambda: sum(proxy.stored_keys(bucket).values()) == 400, "400 PUTs")
    finally:
        process.kill()  # ...and the process dies while they hang
        stdout, _ = process.communicate(timeout=60)
    proxy.release()
    assert process.returncode == -signal.SIGKILL
    printed = stdout.splitlines()
    assert len(printed) <= 400
    assert all(re.fullmatch(r"copied batch/\d\d/file-\d{4}\.txt", line) for line in printed)
    endpoint = shared_moto_server(pytestconfig)
    before = object_versions(bucket, endpoint)
    assert len(before) == 400
    assert {line.removeprefix("copied ") for line in printed} <= {
        key.removeprefix(f"{PREFIX}/") for key in before
    }

    resumed = run_flask(tmp_path, "sync", "default", "s3", "--jobs", "8")
    elapsed = time.monotonic() - started
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.splitlines()[-1] == "copied 600, skipped 400, failed 0"
    print(f"\n1,000-file sync, killed at 400 and resumed: {elapsed:.1f}s")
    assert proxy.stored_keys(bucket) == {f"{PREFIX}/{key}": 1 for key in keys}
    after = object_versions(bucket, endpoint)
    assert {key: after[key] for key in before} == before  # the first 400 were not rewritten
    again = run_flask(tmp_path, "sync", "default", "s3", "--jobs", "8")
    assert again.stdout.splitlines() == ["copied 0, skipped 1000, failed 0"]
    assert sum(proxy.stored_keys(bucket).values()) == 1000


def test_sync_interrupted_by_ctrl_c_finishes_files_in_progress(
    tmp_path: Path, proxy: CountingProxy, bucket: str
) -> None:
    (tmp_path / "local").mkdir()
    keys = make_files(tmp_path / "local", 200)
    write_app_module(tmp_path, proxy, bucket)
    proxy.hold_puts_after(50)
    process = start_sync(tmp_path, "--jobs", "4")
    try:
        assert proxy.holding.wait(120)
        process.send_signal(signal.SIGINT)
        assert process.stderr is not None
        assert process.stderr.readline() == (
            "Interrupted: finishing the files in progress, starting no more.\n"
        )
    finally:
        proxy.release()  # the held PUTs are dropped; boto3 sends them again
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1
    assert re.fullmatch(
        r"interrupted after \d+ of 200 files \(copied \d+, skipped 0, failed 0\); "
        r"run the same sync again to finish\n",
        stderr,
    )
    stored = sum(proxy.stored_keys(bucket).values())
    assert 50 <= stored < 200
    resumed = run_flask(tmp_path, "sync", "default", "s3")
    assert resumed.stdout.splitlines()[-1] == f"copied {200 - stored}, skipped {stored}, failed 0"
    assert proxy.stored_keys(bucket) == {f"{PREFIX}/{key}": 1 for key in keys}
