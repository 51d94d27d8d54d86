"""What a new user meets in the first hour (issue 17), each point as that user would hit it.

Missing extras name themselves; errors a view meets become HTTP answers, not 500s; the docs'
samples are safe to copy; the CLI reads bare keys and copies into folders; ``make run-s3``
stops both servers however it ends; the README's curl upload works as written. Packaging
(the built wheel in a clean venv) is in ``tests/test_packaging.py``.
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Blueprint, Flask, request
from flask.testing import FlaskCliRunner
from moto import mock_aws
from werkzeug.serving import make_server

from example_app import create_app as create_example_app
from example_app.formatting import human_size
from example_app.settings import DEFAULTS as EXAMPLE_DEFAULTS
from flask_store import Store
from flask_store.exceptions import (
    BucketNotFoundError,
    EmptyFileError,
    FileTooLargeError,
    FileTypeRejectedError,
    InvalidArgumentError,
    InvalidFileError,
    InvalidKeyError,
    NotConfiguredError,
    StorageFullError,
    StoreError,
    StoreUnavailableError,
    UploadRejectedError,
)
from flask_store.optional import DISTRIBUTION, EXTRA_OF_MODULE
from flask_store.stores.s3 import S3Store
from tests.moto_server import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    bucket_contents,
    create_bucket,
    moto_server,
    s3_client,
)
from tests.redis_server import free_port
from tests.test_cli import shown_on_a_terminal

__all__ = ["moto_server"]  # the fixture

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"
JPEG = b"\xff\xd8\xff\xe0 fake jpeg"
#: Safety nets for servers that never start or stop; no test measures time with them.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0


# -- 2. a missing extra names itself ----------------------------------------------------------


def run_without(modules: list[str], script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter in which ``modules`` cannot be imported.

    ``sys.modules[name] = None`` is how Python itself marks a module as missing: importing
    it raises the ``ModuleNotFoundError`` an uninstalled package raises. (The built wheel in a
    venv without any extra is tried in tests/test_packaging.py.)
    """
    blocker = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules)
    return run_python(blocker + script, ROOT)


def run_python(
    script: str, cwd: Path, *, path: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter in ``cwd``, with ``path`` as its PYTHONPATH."""
    env = None if path is None else {**os.environ, "PYTHONPATH": str(path)}
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@contextmanager
def served_on_loopback(app: Flask) -> Iterator[str]:
    """``app`` served over HTTP on a free loopback port, in a thread; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


START_APP = """
from flask import Flask
from flask_store import Store
from flask_store.exceptions import NotConfiguredError
app = Flask(__name__, instance_path={instance!r})
app.config.update({config!r})
try:
    Store(app)
except NotConfiguredError as exc:
    print(exc)
else:
    print("started")
"""


@pytest.mark.parametrize(
    ("missing", "config", "extra"),
    [
        (["boto3", "botocore"], {"STORE_PROVIDER": "s3"}, "s3"),
        (["botocore"], {"STORE_PROVIDER": "s3"}, "s3"),
        (["boto3", "botocore"], {"STORE_PROVIDER": "s3-gevent"}, "s3"),
        (["boto3", "botocore"], {"STORE_PROVIDER": "flask_store.stores.s3.S3Store"}, "s3"),
        (
            ["rq"],
            {
                "STORE_PROVIDER": "queued",
                "STORE_QUEUED_REMOTE": {"PROVIDER": "memory"},
                "STORE_TRANSFER_EXECUTOR": "rq",
                "STORE_RQ_REDIS_URL": "redis://127.0.0.1:1/0",
            },
            "rq",
        ),
        (
            ["gevent"],
            {
                "STORE_PROVIDER": "queued",
                "STORE_QUEUED_REMOTE": {"PROVIDER": "memory"},
                "STORE_TRANSFER_EXECUTOR": "gevent",
            },
            "gevent",
        ),
    ],
)
def test_missing_optional_dependency_names_the_extra_to_install(
    tmp_path: Path, missing: list[str], config: dict[str, Any], extra: str
) -> None:
    script = START_APP.format(instance=str(tmp_path), config=config)
    result = run_without(missing, script)
    assert result.returncode == 0, result.stderr
    message = result.stdout.strip()
    # The command ends the message with nothing after it, so it can be copied as it is.
    assert message.endswith(f'Install it with: pip install "{DISTRIBUTION}[{extra}]"'), message
    assert "is not installed" in message
    assert "No module named" not in message


def test_an_app_module_that_is_missing_is_not_blamed_on_an_extra(tmp_path: Path) -> None:
    script = START_APP.format(
        instance=str(tmp_path), config={"STORE_PROVIDER": "myapp_stores.FancyStore"}
    )
    message = run_without([], script).stdout.strip()
    assert "cannot import 'myapp_stores.FancyStore'" in message
    assert "pip install" not in message


def test_every_extra_named_in_a_hint_is_one_setup_cfg_defines() -> None:
    import configparser

    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg", encoding="utf-8")
    extras = setup["options.extras_require"]
    assert setup["metadata"]["name"] == DISTRIBUTION
    for module, extra in EXTRA_OF_MODULE.items():
        assert extra in extras, f"{module!r} is said to come with [{extra}], which does not exist"


# -- 3. errors become HTTP answers ------------------------------------------------------------


def upload_app(tmp_path: Path, **config: Any) -> tuple[Flask, Store]:
    """The quick start's app and view, on a local store in ``tmp_path``."""
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(STORE_PATH=str(tmp_path / "uploads"), **config)
    store = Store(app)

    @app.post("/upload")
    def upload() -> str:
        return store.Provider().save(request.files.get("afile")).absolute_url()

    return app, store


def post_upload(app: Flask, filename: str, data: bytes = b"hi", accept: str | None = None) -> Any:
    headers = {"Accept": accept} if accept else {}
    return app.test_client().post(
        "/upload", data={"afile": (io.BytesIO(data), filename)}, headers=headers
    )


@pytest.mark.parametrize("filename", ["...", "/", " . "])
def test_quickstart_view_answers_400_for_an_unusable_filename(
    tmp_path: Path, filename: str
) -> None:
    app, _ = upload_app(tmp_path)
    answer = post_upload(app, filename)
    assert answer.status_code == 400, answer.text
    assert answer.mimetype == "text/html"
    assert "<h1>Bad Request</h1>" in answer.text
    assert list((tmp_path / "uploads").iterdir()) == []


def test_body_is_json_when_the_client_prefers_it(tmp_path: Path) -> None:
    app, _ = upload_app(tmp_path)
    answer = post_upload(app, "...", accept="application/json")
    assert answer.status_code == 400
    body = answer.get_json()
    assert set(body) == {"error", "message", "status"}
    assert body["error"] == "Bad Request"
    assert body["status"] == 400
    assert "'...'" in body["message"]
    for accept in ["text/html", "*/*", "text/html, application/json;q=0.5"]:
        assert post_upload(app, "...", accept=accept).mimetype == "text/html", accept
    assert post_upload(app, "...", accept="application/json, */*;q=0.1").is_json


def test_missing_or_empty_form_field_is_400(tmp_path: Path) -> None:
    app, _ = upload_app(tmp_path)
    json = {"Accept": "application/json"}
    missing = app.test_client().post("/upload", data={}, headers=json)
    assert missing.status_code == 400
    assert "save() was given None" in missing.get_json()["message"]
    empty = post_upload(app, "", b"", accept="application/json")
    assert empty.status_code == 400
    assert "The upload is empty" in empty.get_json()["message"]


def test_client_text_is_escaped_in_the_html_page(tmp_path: Path) -> None:
    app, _ = upload_app(tmp_path)

    @app.get("/refuse")
    def refuse() -> str:
        raise InvalidFileError("The file '<script>alert(1)</script>' is not welcome.")

    answer = app.test_client().get("/refuse")
    assert answer.status_code == 400
    assert "<script>" not in answer.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in answer.text


def raising_app(tmp_path: Path, error: BaseException, **config: Any) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(STORE_PROVIDER="memory", **config)
    Store(app)

    @app.get("/boom")
    def boom() -> str:
        raise error

    return app


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidFileError("bad"), 400),
        (EmptyFileError("empty"), 400),
        (UploadRejectedError("refused"), 400),
        (InvalidKeyError("bad key"), 400),
        (InvalidArgumentError("expires must be positive"), 400),
        (FileTooLargeError("The file is 30 MB, more than the 20 MB allowed."), 413),
        (FileTypeRejectedError("Only images, not 'text/html'."), 415),
        (StorageFullError("No space left"), 507),
        (StoreUnavailableError("down"), 503),
        (BucketNotFoundError("no bucket"), 503),
    ],
)
def test_each_error_gets_its_status(tmp_path: Path, error: StoreError, status: int) -> None:
    app = raising_app(tmp_path, error)
    answer = app.test_client().get("/boom", headers={"Accept": "application/json"})
    assert answer.status_code == status
    assert answer.get_json()["status"] == status
    if status < 500:
        assert answer.get_json()["message"] == str(error)


@pytest.mark.parametrize("error_class", [InvalidFileError, FileTooLargeError, StorageFullError])
def test_no_server_path_or_internals_in_any_body(
    tmp_path: Path, error_class: type[StoreError]
) -> None:
    secret = tmp_path / "srv" / "app" / ".upload-Xy3k9"
    error = error_class(f"Cannot write {secret} for 'cat.jpg' ([Errno 28] at {secret.parent}/)")
    app = raising_app(tmp_path, error)
    for accept in ["application/json", "text/html"]:
        answer = app.test_client().get("/boom", headers={"Accept": accept})
        assert str(tmp_path) not in answer.text
        assert "/srv/app" not in answer.text
        assert error_class.__name__ not in answer.text
        assert "Traceback" not in answer.text
    json = app.test_client().get("/boom", headers={"Accept": "application/json"}).get_json()
    if error_class is not StorageFullError:
        assert "'cat.jpg'" in json["message"]  # the useful part stays


def test_huge_client_text_is_cut(tmp_path: Path) -> None:
    app = raising_app(tmp_path, InvalidFileError("x" * 100_000))
    body = app.test_client().get("/boom", headers={"Accept": "application/json"}).get_json()
    assert len(body["message"]) <= 300
    assert body["message"].endswith("…")


def test_a_remote_store_that_is_down_answers_503_and_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    app, _ = upload_app(
        tmp_path,
        STORE_PROVIDER="s3",
        STORE_S3_BUCKET="files",
        STORE_S3_REGION="eu-west-1",
        STORE_S3_ENDPOINT_URL=endpoint,
    )
    with caplog.at_level(logging.ERROR):
        answer = post_upload(app, "cat.jpg", JPEG, accept="application/json")
    assert answer.status_code == 503
    assert answer.get_json()["message"] == (
        "The file store cannot be reached right now. Please try again later."
    )
    assert endpoint not in answer.text
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[0] is not None]
    assert any(issubclass(r.exc_info[0], StoreUnavailableError) for r in logged)  # type: ignore[index, arg-type]


def test_a_missing_bucket_answers_503(tmp_path: Path) -> None:
    with mock_aws():
        app, _ = upload_app(
            tmp_path, STORE_PROVIDER="s3", STORE_S3_BUCKET="nobody", STORE_S3_REGION="eu-west-1"
        )
        answer = post_upload(app, "cat.jpg", JPEG)
    assert answer.status_code == 503
    assert "nobody" not in answer.text


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [(b"v" * 1001, "video/mp4", 413), (b"<script>alert(1)</script>", "text/html", 415)],
)
def test_a_refused_direct_upload_answers_413_or_415(
    moto_server: str, tmp_path: Path, data: bytes, content_type: str, status: int
) -> None:
    """A view that confirms a direct upload without a ``try``: the handlers answer for it."""
    bucket = create_bucket(moto_server)
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        SECRET_KEY="test",
        STORE_PROVIDER="s3",
        STORE_S3_BUCKET=bucket,
        STORE_S3_REGION=REGION,
        STORE_S3_ENDPOINT_URL=moto_server,
        STORE_S3_ACCESS_KEY=ACCESS_KEY,
        STORE_S3_SECRET_KEY=SECRET_KEY,
    )
    store = Store(app)

    def s3() -> S3Store:
        provider = store.Provider()
        assert isinstance(provider, S3Store)
        return provider

    @app.post("/confirm")
    def confirm() -> str:
        return s3().confirm_upload(request.form["key"]).name

    with app.app_context():
        form = s3().presigned_upload("clip.mp4", max_size=1000, content_type="video/mp4")
    # moto, like some S3-compatible servers, does not enforce the form's policy.
    fields = {**form.fields, "Content-Type": content_type}
    sent = requests.post(form.url, data=fields, files={"file": ("clip.mp4", data)}, timeout=60)
    assert sent.status_code in (200, 201, 204), sent.text
    answer = app.test_client().post(
        "/confirm", data={"key": form.key}, headers={"Accept": "application/json"}
    )
    assert answer.status_code == status, answer.text
    assert bucket_contents(s3_client(moto_server), bucket) == []  # refused and deleted


def test_store_handle_errors_off_leaves_them_to_the_app(tmp_path: Path) -> None:
    app, _ = upload_app(tmp_path, STORE_HANDLE_ERRORS=False)
    assert post_upload(app, "...").status_code == 500


def test_store_handle_errors_must_be_a_bool(tmp_path: Path) -> None:
    with pytest.raises(NotConfiguredError, match="STORE_HANDLE_ERRORS must be bool, not 'no'"):
        upload_app(tmp_path, STORE_HANDLE_ERRORS="no")


def teapot(error: Exception) -> tuple[str, int]:
    return f"the app's own: {type(error).__name__}", 418


def test_apps_handler_registered_before_init_app_wins(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.register_error_handler(StoreError, teapot)
    app.config["STORE_PATH"] = str(tmp_path / "uploads")
    store = Store(app)
    app.add_url_rule(
        "/upload",
        "upload",
        lambda: store.Provider().save(request.files["afile"]).name,
        methods=["POST"],
    )
    answer = post_upload(app, "...")
    assert (answer.status_code, answer.text) == (418, "the app's own: InvalidFilenameError")
    # Nothing of Flask-Store's was registered beside it.
    assert set(app.error_handler_spec[None][None]) == {StoreError}


@pytest.mark.parametrize("handled", [InvalidFileError, StoreError])
def test_apps_handler_registered_after_init_app_wins(
    tmp_path: Path, handled: type[StoreError]
) -> None:
    app, _ = upload_app(tmp_path)

    @app.get("/full")
    def full() -> str:
        raise StorageFullError("full")

    app.register_error_handler(handled, teapot)
    answer = post_upload(app, "...")
    assert (answer.status_code, answer.text) == (418, "the app's own: InvalidFilenameError")
    # An error the app's handler does not cover is still answered by Flask-Store.
    expected = 507 if handled is InvalidFileError else 418
    assert app.test_client().get("/full").status_code == expected


def test_blueprint_handler_wins_inside_its_blueprint(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config["STORE_PROVIDER"] = "memory"
    Store(app)
    api = Blueprint("api", __name__)
    api.register_error_handler(InvalidFileError, teapot)

    @api.get("/api/boom")
    def api_boom() -> str:
        raise InvalidFileError("bad")

    @app.get("/boom")
    def boom() -> str:
        raise InvalidFileError("bad")

    app.register_blueprint(api)
    assert app.test_client().get("/api/boom").status_code == 418
    assert app.test_client().get("/boom").status_code == 400


# -- 4. copy-paste-safe docs ------------------------------------------------------------------


def test_quickstart_copied_anywhere_keeps_files_in_its_instance_folder(tmp_path: Path) -> None:
    """Run the quick start as a reader would: the file copied into a folder of their own."""
    project = tmp_path / "myproject"
    project.mkdir()
    shutil.copy(EXAMPLES / "quickstart.py", project / "quickstart.py")
    script = (
        "import io, os, quickstart\n"
        "app = quickstart.create_app()\n"
        "client = app.test_client()\n"
        "answer = client.post('/upload', data={'afile': (io.BytesIO(b'jpeg'), 'cat.jpg')})\n"
        "print(answer.status_code, answer.text)\n"
    )
    result = run_python(script, project, path=project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "200 http://127.0.0.1:5000/flaskstore/cat.jpg"
    assert (project / "instance" / "uploads" / "cat.jpg").read_bytes() == b"jpeg"


def test_readme_first_sample_runs_and_keeps_files_in_its_instance_folder(tmp_path: Path) -> None:
    first = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    assert first
    (tmp_path / "readme_app.py").write_text(first[1])
    script = (
        "import io, readme_app\n"
        "client = readme_app.app.test_client()\n"
        "for name in ('localfile.jpg', '...'):\n"
        "    answer = client.post('/upload', data={'afile': (io.BytesIO(b'jpeg'), name)})\n"
        "    print(answer.status_code, answer.text if answer.status_code == 200 else '')\n"
    )
    result = run_python(script, tmp_path, path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == [
        "200 http://127.0.0.1:5000/flaskstore/localfile.jpg",
        "400 ",
    ]
    assert (tmp_path / "instance" / "uploads" / "localfile.jpg").read_bytes() == b"jpeg"


_ABSOLUTE_PATH_SETTING = re.compile(r"""PATH["']?\]?\s*[=:,]\s*(?:r|f)?["'](/[^"']*)["']""")


def samples() -> Iterator[tuple[str, str]]:
    """``(where, code)`` for the code a reader copies: docs/examples and the README's Python."""
    for path in sorted(EXAMPLES.glob("*.py")):
        yield path.name, path.read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for number, block in enumerate(re.findall(r"```python\n(.*?)```", readme, re.DOTALL)):
        yield f"README.md python block {number + 1}", block


#: Migration guides keep the folders of the app being migrated (Depot's documented
#: ``/var/www/lfs``, Flask-Reuploaded's destination): their reader's app already writes there.
MIGRATION_SAMPLES = {"depot_flask.py", "reuploaded_after.py"}


def test_no_sample_stores_files_at_an_absolute_path() -> None:
    found = [
        f"{where}: {match}"
        for where, code in samples()
        if where not in MIGRATION_SAMPLES
        for match in _ABSOLUTE_PATH_SETTING.findall(code)
    ]
    assert not found, "samples that would write outside the app's folders:\n" + "\n".join(found)


def test_the_absolute_path_check_catches_the_old_quickstart() -> None:
    old = 'app.config["STORE_PATH"] = "/some/path/to/somewhere"'
    assert _ABSOLUTE_PATH_SETTING.findall(old) == ["/some/path/to/somewhere"]
    assert _ABSOLUTE_PATH_SETTING.findall('{"PATH": "/srv/x"}') == ["/srv/x"]


# -- 5. CLI ergonomics ------------------------------------------------------------------------


@pytest.fixture
def cli_app(tmp_path: Path) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        STORE_PATH=str(tmp_path / "local"),
        STORE_STORES={"mem": {"PROVIDER": "memory"}},
        SERVER_NAME="files.example.com",
    )
    store = Store(app)
    with app.app_context():
        store.Provider().save(b"big bytes", name="big.bin")
        store.Provider().save(b"alpha", name="a.txt")
        store.Provider(destination="docs").save(b"# notes", name="notes.md")
        store.Provider(destination="newdir").save(b"x", name="x.txt")
    return app


@pytest.fixture
def runner(cli_app: Flask) -> FlaskCliRunner:
    return cli_app.test_cli_runner()


def test_stat_url_cat_rm_take_a_bare_key_of_the_default_store(runner: FlaskCliRunner) -> None:
    stat = runner.invoke(args=["store", "stat", "big.bin"])
    assert stat.exit_code == 0, stat.output
    assert stat.output.splitlines()[:2] == ["path:          default/big.bin", "size:          9"]
    nested = runner.invoke(args=["store", "stat", "docs/notes.md"])
    assert "path:          default/docs/notes.md" in nested.output
    url = runner.invoke(args=["store", "url", "big.bin"])
    assert url.output == "http://files.example.com/flaskstore/big.bin\n"
    cat = runner.invoke(args=["store", "cat", "a.txt", "default/docs/notes.md"])
    assert cat.exit_code == 0
    assert cat.stdout_bytes == b"alpha# notes"
    removed = runner.invoke(args=["store", "rm", "big.bin"])
    assert removed.output == "deleted default/big.bin\n"
    assert runner.invoke(args=["store", "stat", "default/big.bin"]).exit_code == 2


def test_a_missing_bare_key_says_where_it_was_looked_for(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["store", "stat", "photos/cat.jpg"])
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: photos/cat.jpg: No file is stored as 'photos/cat.jpg'. A path without a store "
        "name is a key of the default store (default); stores: default, mem.\n"
    )
    store_only = runner.invoke(args=["store", "stat", "mem"])
    assert store_only.exit_code == 2
    assert "mem: that is a store; name a file in it, as in mem/KEY." in store_only.stderr
    nothing_written = runner.invoke(args=["store", "cat", "a.txt", "missing.txt"])
    assert nothing_written.exit_code == 2
    assert nothing_written.stdout_bytes == b""


def test_ls_takes_a_path_or_a_bare_prefix(runner: FlaskCliRunner) -> None:
    def keys(*args: str) -> list[str]:
        result = runner.invoke(args=["store", "ls", *args])
        assert result.exit_code == 0, result.output
        return [line.split()[-1] for line in result.output.splitlines()]

    assert keys("docs/") == ["docs/notes.md"]
    assert keys("default/docs/") == ["docs/notes.md"]
    assert keys("default", "docs/") == ["docs/notes.md"]
    assert keys("new") == ["newdir/x.txt"]
    assert keys("mem") == []  # a store, empty: nothing to say
    typo = runner.invoke(args=["store", "ls", "photos"])
    assert typo.exit_code == 2
    assert typo.stderr == "Error: No store is called 'photos'; known: default, mem.\n"


def test_cp_into_a_folder_keeps_the_files_name(runner: FlaskCliRunner, cli_app: Flask) -> None:
    into_new = runner.invoke(args=["store", "cp", "default/a.txt", "default/fresh/"])
    assert into_new.output == "copied default/a.txt -> default/fresh/a.txt\n"
    into_existing = runner.invoke(args=["store", "cp", "docs/notes.md", "default/newdir"])
    assert into_existing.output == "copied default/docs/notes.md -> default/newdir/notes.md\n"
    store_root = runner.invoke(args=["store", "cp", "docs/notes.md", "mem/"])
    assert store_root.output == "copied default/docs/notes.md -> mem/docs/notes.md\n"
    store_name = runner.invoke(args=["store", "cp", "a.txt", "mem"])
    assert store_name.output == "copied default/a.txt -> mem/a.txt\n"
    with cli_app.app_context():
        default = Store().get()
        assert default.read("fresh/a.txt") == b"alpha"
        assert default.read("newdir/notes.md") == b"# notes"
        assert default.read("newdir/x.txt") == b"x"
        assert sorted(Store().get("mem").keys()) == ["a.txt", "docs/notes.md"]


def test_cp_onto_an_existing_folder_never_leaks_a_temporary_path(
    runner: FlaskCliRunner, tmp_path: Path
) -> None:
    for force in ([], ["--force"]):
        result = runner.invoke(args=["store", "cp", "default/a.txt", "default/newdir", *force])
        assert result.exit_code == 0, result.output
        assert str(tmp_path) not in result.output
        assert ".upload-" not in result.output
    assert (tmp_path / "local" / "newdir" / "a.txt").read_bytes() == b"alpha"
    assert (tmp_path / "local" / "newdir" / "x.txt").read_bytes() == b"x"


def test_cp_destination_must_name_its_store(runner: FlaskCliRunner, tmp_path: Path) -> None:
    """A mistyped store name in a destination must not become a folder in the default store."""
    result = runner.invoke(args=["store", "cp", "a.txt", "backpu/"])
    assert result.exit_code == 2
    assert "No store is called 'backpu'" in result.stderr
    assert not (tmp_path / "local" / "backpu").exists()


def test_transfer_pending_prints_a_line_per_file_off_a_terminal(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        STORE_PROVIDER="queued",
        STORE_QUEUED_LOCAL={"PROVIDER": "local", "PATH": str(tmp_path / "local")},
        STORE_QUEUED_REMOTE={"PROVIDER": "memory"},
        STORE_TRANSFER_DELAYED=True,
    )
    store = Store(app)
    with app.app_context():
        store.Provider().save(b"one", name="one.txt")
        store.Provider().save(b"two", name="two.txt")
    result = app.test_cli_runner().invoke(args=["store", "transfer", "--pending"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "transferred one.txt",
        "transferred two.txt",
        "transferred 2, failed 0",
    ]
    assert result.stderr == ""  # no bar label off a terminal


QUEUED_APP = """
from flask import Flask
from flask_store import Store

def create_app():
    app = Flask(__name__, instance_path={instance!r})
    app.config.update(
        STORE_PROVIDER="queued",
        STORE_QUEUED_REMOTE={{"PROVIDER": "local", "PATH": "remote"}},
        STORE_TRANSFER_DELAYED=True,
    )
    Store(app)
    return app
"""


def test_transfer_pending_draws_a_bar_on_a_terminal(tmp_path: Path) -> None:
    (tmp_path / "queuedapp.py").write_text(QUEUED_APP.format(instance=str(tmp_path / "inst")))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    saving = "import queuedapp\napp = queuedapp.create_app()\n" + "".join(
        f"with app.app_context(): app.extensions['store'].resolve().save(b'x', name='{n}.txt')\n"
        for n in ("one", "two", "three")
    )
    subprocess.run([sys.executable, "-c", saving], cwd=tmp_path, env=env, check=True, timeout=120)
    text = shown_on_a_terminal(
        ["--app", "queuedapp", "store", "transfer", "--pending"], tmp_path, env=env
    )
    assert "Transferring" in text and "100%" in text
    assert "transferred one.txt" not in text
    assert text.rstrip().endswith("transferred 3, failed 0")
    assert sorted(p.name for p in (tmp_path / "inst" / "remote").iterdir()) == [
        "one.txt",
        "three.txt",
        "two.txt",
    ]


# -- 6. make run-s3 stops both servers however it ends ----------------------------------------


def _process_table() -> dict[int, tuple[int, str]]:
    """``{pid: (parent pid, state)}`` of every process, from /proc (Linux)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # it ended meanwhile
            continue
        fields = stat.rpartition(")")[2].split()
        table[int(entry)] = (int(fields[1]), fields[0])
    return table


def descendants(pid: int) -> set[int]:
    table = _process_table()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        children = {child for child, (parent, _) in table.items() if parent in frontier}
        frontier = children - found
        found |= children
    return found


def cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def alive(pids: set[int]) -> set[int]:
    table = _process_table()
    return {pid for pid in pids if pid in table and table[pid][1] != "Z"}


def port_is_free(port: int) -> bool:
    """Whether a new server could listen on ``port`` (as the next ``make run-s3`` would)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_for(condition: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.1)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError):
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("ending", ["SIGTERM", "SIGHUP", "SIGINT", "SIGKILL", "moto dies"])
def test_run_s3_stops_moto_and_the_app_however_it_ends(tmp_path: Path, ending: str) -> None:
    port = free_port()
    log = tmp_path / "run-s3.log"
    env = {**os.environ, "FLASK_SECRET_KEY": "test"}  # no secret key file in the checkout
    with open(log, "wb") as output:
        runner = subprocess.Popen(
            [sys.executable, "-m", "example_app.dev_s3", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/"), "the app on S3", START_TIMEOUT)
        moto_port = int(re.search(r"S3 \(moto\) at http://127\.0\.0\.1:(\d+)", log.read_text())[1])  # type: ignore[index]
        children = descendants(runner.pid)
        assert len(children) >= 3, children  # moto, the app's reloader and its worker
        if ending == "moto dies":
            moto = [
                p for p in children if b"moto.server" in Path(f"/proc/{p}/cmdline").read_bytes()
            ]
            os.kill(moto[0], signal.SIGKILL)
        else:
            os.kill(runner.pid, getattr(signal, ending))
        runner.wait(timeout=STOP_TIMEOUT)
        wait_for(lambda: not alive(children), "every child to stop", STOP_TIMEOUT)
        assert port_is_free(port), f"port {port} is still taken"
        assert port_is_free(moto_port), f"moto's port {moto_port} is still taken"
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        for pid in alive(descendants(runner.pid)):
            os.kill(pid, signal.SIGKILL)


# -- 8. the README's example app section ------------------------------------------------------

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_says_which_types_and_size_the_example_app_accepts() -> None:
    sentence = re.search(r"The example app accepts (.*?) files up to ([\d.]+ [KMG]B)", README, re.S)
    assert sentence, "the README does not say what the example app accepts"
    listed = set(re.findall(r"`(\w+)`", sentence[1]))
    assert listed == set(EXAMPLE_DEFAULTS["UPLOAD_ALLOWED_EXTENSIONS"])
    assert sentence[2] == human_size(EXAMPLE_DEFAULTS["UPLOAD_MAX_BYTES"])


@pytest.fixture
def example_server(tmp_path: Path) -> Iterator[str]:
    """The example app served over HTTP on a free loopback port, storing in ``tmp_path``."""
    app = create_example_app(
        {"SECRET_KEY": "test", "STORE_PROVIDER": "local", "STORE_PATH": str(tmp_path / "up")},
        instance_path=str(tmp_path / "instance"),
    )
    with served_on_loopback(app) as url:
        yield url


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl, as the README does")
def test_readme_curl_upload_works_as_written(example_server: str, tmp_path: Path) -> None:
    block = re.search(r"<!-- curl-upload -->\n```sh\n(.*?)```", README, re.DOTALL)
    assert block, "the README has no marked curl upload"
    commands = [line for line in block[1].splitlines() if line and not line.startswith("#")]
    script = "\n".join(commands).replace("http://127.0.0.1:5000", example_server)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "photo.jpg").write_bytes(JPEG)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path / "work",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    output = re.search(r"```sh\n.*?```\n\nprints\s+`([^`]+)`", README[block.start() :], re.DOTALL)
    assert output, "the README does not say what the upload prints"
    assert result.stdout.strip() == output[1]
    assert (tmp_path / "up" / "photo.jpg").read_bytes() == JPEG
    with urllib.request.urlopen(example_server + output[1], timeout=30) as served:
        assert served.read() == JPEG
