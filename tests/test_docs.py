"""The documentation builds without warnings, and every code sample in it runs.

Samples are either doctests inside the pages (run here page by page) or files under
``docs/examples/`` pulled in with ``literalinclude`` and exercised below, so none can rot.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import io
import json
import os
import pkgutil
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

import flask_store
from flask_store.config import APP_SETTINGS, COMMON_DEFAULTS, Schema
from flask_store.stores import SHORT_NAMES, load_provider
from flask_store.stores.s3 import S3Store
from flask_store.stores.s3_config import S3_DEFAULTS
from tests.moto_server import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    create_bucket,
    moto_server,
    s3_client,
)

__all__ = ["moto_server"]  # the fixture, imported for the S3 examples' tests

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
PAGES = sorted(DOCS.glob("*.rst"))
#: As ``make docs`` builds: warnings are errors.
SPHINX_OPTIONS = ("-W", "--keep-going", "-q", "-b", "html")
DOCTEST_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
#: Code-block languages that are not Python and so are not run (shell sessions and the like).
NON_PYTHON_LANGUAGES = {
    "console",
    "text",
    "ini",
    "diff",
    "shell-session",
    "json",
    "javascript",
}
JPEG = b"\xff\xd8\xff\xe0 fake jpeg"
PNG = b"\x89PNG\r\n\x1a\n fake png"


@pytest.fixture(scope="module", autouse=True)
def _examples_importable() -> Iterator[None]:
    """Import ``docs/examples/*.py`` by their plain names, as a reader would run them."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        yield
    finally:
        sys.path.remove(str(EXAMPLES))


def example(name: str) -> ModuleType:
    """A fresh import of ``docs/examples/<name>.py`` (its module-level ``Store`` is new)."""
    sys.modules.pop(name, None)
    return importlib.import_module(name)


# -- the build --------------------------------------------------------------------------------


def test_docs_build_with_warnings_as_errors(tmp_path: Path) -> None:
    if shutil.which("dot") is None:
        pytest.skip(
            "Graphviz's dot is missing (apt-get install graphviz): docs/internals.rst needs it"
        )
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", *SPHINX_OPTIONS, str(DOCS), str(tmp_path / "html")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    index = (tmp_path / "html" / "index.html").read_text()
    for page in PAGES:
        if page.stem != "index":
            assert f'href="{page.stem}.html"' in index, f"{page.name} is not in the contents"
    api = (tmp_path / "html" / "api.html").read_text()
    assert "flask_store.FileWrapper.absolute_url" in api


# -- samples in the pages ---------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=[page.stem for page in PAGES])
def test_doctests_in_page_pass(page: Path) -> None:
    result = doctest.testfile(
        str(page), module_relative=False, optionflags=DOCTEST_FLAGS, encoding="utf-8"
    )
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {page.name}; see stdout"


def _documented_modules() -> list[ModuleType]:
    modules = [flask_store]
    for info in pkgutil.walk_packages(flask_store.__path__, "flask_store."):
        try:
            modules.append(importlib.import_module(info.name))
        except ImportError as exc:  # an optional dependency (gevent, rq) is not installed
            pytest.fail(f"{info.name} cannot be imported for its doctests: {exc}")
    return modules


def test_doctests_in_docstrings_pass() -> None:
    """The API reference shows the docstrings, so their examples are samples too."""
    attempted = 0
    for module in _documented_modules():
        result = doctest.testmod(module, optionflags=DOCTEST_FLAGS)
        assert result.failed == 0, f"{result.failed} doctest(s) failed in {module.__name__}"
        attempted += result.attempted
    assert attempted > 0


def test_python_samples_are_all_run() -> None:
    """No page shows Python that this module does not run: doctests or included examples."""
    directive = re.compile(r"^\s*\.\. (?:code-block|code|sourcecode)::\s*(\S*)", re.MULTILINE)
    include = re.compile(r"^\s*\.\. literalinclude::\s*(\S+)", re.MULTILINE)
    included: set[str] = set()
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for language in directive.findall(text):
            assert language in NON_PYTHON_LANGUAGES, (
                f"{page.name} has a {language or 'default'} code block; write Python samples "
                "as doctests or as files in docs/examples/ that tests/test_docs.py runs."
            )
        for target in include.findall(text):
            path = (page.parent / target).resolve()
            assert path.parent == EXAMPLES, f"{page.name} includes {target} from outside examples/"
            included.add(path.stem)
    examples = {path.stem for path in EXAMPLES.glob("*.py")}
    assert included == examples, f"examples not shown in any page: {examples - included}"
    assert examples == EXERCISED_EXAMPLES, f"examples no test runs: {examples - EXERCISED_EXAMPLES}"


# -- the configuration reference --------------------------------------------------------------

_READS_KEY = re.compile(
    r"\.(?:setting|required|typed|choice|optional_number|error|label|value|checked)\(\s*\"([A-Z][A-Z0-9_]*)\""
)
_PREFIXED_KEY = re.compile(r"\"STORE_([A-Z][A-Z0-9_]*)\"")
_HELPER_READS_KEY = re.compile(r"\b(?:config|cfg),\s*\"(?!STORE_)([A-Z][A-Z0-9_]*)\"")


def keys_the_code_reads() -> set[str]:
    """Every ``STORE_*`` key: defaults, store class defaults, and keys read in the source."""
    keys = set(COMMON_DEFAULTS)
    for path in SHORT_NAMES.values():
        keys |= set(load_provider(path).defaults)
    for source in Path(flask_store.__file__).parent.rglob("*.py"):
        text = source.read_text(encoding="utf-8")
        for pattern in (_READS_KEY, _PREFIXED_KEY, _HELPER_READS_KEY):
            keys |= set(pattern.findall(text))
    return {f"STORE_{key}" for key in keys}


def test_configuration_reference_lists_every_key() -> None:
    reference = (DOCS / "configuration.rst").read_text(encoding="utf-8")
    documented = set(re.findall(r"``(STORE_[A-Z0-9_]+)``", reference))
    missing = keys_the_code_reads() - documented
    assert not missing, f"configuration.rst does not document {sorted(missing)}"


_TABLE_ROW = re.compile(
    r"^\s*\* - ``(STORE_[A-Z0-9_]+)``\s*\n\s*- [^\n]*\n\s*- (.*?)\n\s*- ", re.MULTILINE | re.DOTALL
)
#: A documented default that is prose (``<instance>/uploads``), not a Python value to compare.
UNCHECKED = object()


def documented_rows(page: Path) -> list[tuple[str, object]]:
    """``(key, default)`` of each row of the Key / Type / Default / Meaning tables of ``page``
    (a key may have a row in several tables: another store kind, another default).

    A default written as one literal (````"auto"````, ````8388608```` (8 MiB)) is that Python
    value, several literals are a list, "required" is ``None``; anything else is unchecked.
    """
    found: list[tuple[str, object]] = []
    for key, cell in _TABLE_ROW.findall(page.read_text(encoding="utf-8")):
        if " ".join(cell.split()) == "required":
            found.append((key, None))
            continue
        try:
            values = [ast.literal_eval(literal) for literal in re.findall(r"``(.+?)``", cell)]
        except (ValueError, SyntaxError):
            values = []
        found.append((key, values[0] if len(values) == 1 else values or UNCHECKED))
    return found


def documented_defaults(page: Path) -> dict[str, object]:
    """``{key: default}`` of :func:`documented_rows` (the last row of a key wins)."""
    return dict(documented_rows(page))


def code_defaults(provider: str | None = None) -> dict[str, list[object]]:
    """The defaults the code applies, by ``STORE_*`` key: those of ``provider`` (a short name)
    and every store's common ones, or, without a provider, those of any store."""
    names = [provider] if provider else list(SHORT_NAMES)
    found: dict[str, list[object]] = {}
    for defaults in [COMMON_DEFAULTS, *(load_provider(name).defaults for name in names)]:
        for key, value in defaults.items():
            found.setdefault(f"STORE_{key}", []).append(as_documented(value))
    return found


def as_documented(value: object) -> object:
    """A default as the docs write it: mappings as dicts, sequences as lists."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (tuple, list, frozenset)):
        return list(value)
    return value


@pytest.mark.parametrize(
    ("name", "provider"), [("configuration", None), ("s3", "s3"), ("s3-gevent", "s3-gevent")]
)
def test_documented_defaults_are_the_code_defaults(name: str, provider: str | None) -> None:
    documented = documented_defaults(DOCS / f"{name}.rst")
    code = code_defaults(provider)
    checked = 0
    for key, default in documented.items():
        if default is UNCHECKED or key not in code:
            continue
        typed = [(value, type(value)) for value in code[key]]
        assert (default, type(default)) in typed, (
            f"{name}.rst gives {key} the default {default!r}; the code uses {code[key]}"
        )
        checked += 1
    # Enough rows were read that a table the pattern no longer matches cannot pass unseen.
    assert checked >= {"configuration": 40, "s3": 18, "s3-gevent": 2}[name]


#: Every schema a user can meet: each store kind's and the app's own keys.
SCHEMAS: list[Schema] = [APP_SETTINGS, *(load_provider(name).schema for name in SHORT_NAMES)]


def schema_defaults() -> dict[str, list[object]]:
    """``{STORE_key: [default of each schema that has it]}`` over :data:`SCHEMAS`."""
    found: dict[str, list[object]] = {}
    for schema in SCHEMAS:
        for name, setting in schema.items():
            found.setdefault(f"STORE_{name}", []).append(as_documented(setting.default))
    return found


def test_configuration_reference_is_the_schemas() -> None:
    """Every setting of every schema has a row in configuration.rst giving its default (each
    default a store kind gives it), and every row is a setting of some schema."""
    rows = documented_rows(DOCS / "configuration.rst")
    code = schema_defaults()
    # Keys of an inner store's settings (``STORE_STAGING_FSYNC``) may be documented too.
    family = {
        f"STORE_{prefix}{name}": [as_documented(setting.default)]
        for schema in SCHEMAS
        for prefix, inner in schema.families.items()
        for name, setting in inner.items()
    }
    undocumented = set(code) - {key for key, _ in rows}
    assert not undocumented, f"configuration.rst has no row for {sorted(undocumented)}"
    unknown = {key for key, _ in rows} - set(code) - set(family)
    assert not unknown, f"configuration.rst documents keys no schema has: {sorted(unknown)}"
    typed = {key: [(value, type(value)) for value in values] for key, values in code.items()}
    for key, values in family.items():
        typed.setdefault(key, [(value, type(value)) for value in values])
    for key, default in rows:
        if default is UNCHECKED:  # prose: what an unset (None) value means
            assert None in code.get(key, family.get(key, [])), f"{key}: {default}"
        else:
            assert (default, type(default)) in typed[key], (
                f"configuration.rst gives {key} the default {default!r}; the schemas: {typed[key]}"
            )
    for key, values in code.items():
        shown = [default for row_key, default in rows if row_key == key]
        for value in values:
            assert (value, type(value)) in [(d, type(d)) for d in shown] or (
                value is None and UNCHECKED in shown
            ), f"configuration.rst never gives {key} the default {value!r} (it shows {shown})"


def test_s3_page_documents_every_s3_setting() -> None:
    page = (DOCS / "s3.rst").read_text(encoding="utf-8")
    missing = {f"STORE_{key}" for key in S3_DEFAULTS} - set(re.findall(r"``(STORE_\w+)``", page))
    assert not missing, f"s3.rst does not document {sorted(missing)}"
    assert set(documented_defaults(DOCS / "s3.rst")) == {f"STORE_{key}" for key in S3_DEFAULTS}


# -- the example files ------------------------------------------------------------------------

EXERCISED_EXAMPLES = {
    "quickstart",
    "forms",
    "test_with_memory_store",
    "reuploaded_before",
    "reuploaded_after",
    "depot_before",
    "depot_after",
    "depot_flask",
    "s3_direct_upload",
    "s3_compatible",
    "s3_gevent_app",
    "cli_app",
    "celery_myapp",  # the worker's module in tests/test_celery.py
}


def post(client: FlaskClient, url: str, field: str, data: bytes, filename: str) -> Any:
    return client.post(url, data={field: (io.BytesIO(data), filename)})


def test_quickstart_answers_as_the_seed_says(tmp_path: Path) -> None:
    app = example("quickstart").create_app({"STORE_PATH": str(tmp_path / "somewhere")})
    client = app.test_client()
    response = post(client, "/upload", "afile", JPEG, "localfile.jpg")
    assert response.text == "http://127.0.0.1:5000/flaskstore/localfile.jpg"
    assert (tmp_path / "somewhere" / "localfile.jpg").read_bytes() == JPEG
    assert client.get("/flaskstore/localfile.jpg").data == JPEG
    again = post(client, "/upload", "afile", JPEG, "localfile.jpg").text
    assert re.fullmatch(r"http://127\.0\.0\.1:5000/flaskstore/localfile_[\w-]{8}\.jpg", again)


def test_forms_example_validates_then_saves() -> None:
    app = example("forms").create_app({"STORE_PROVIDER": "memory"})
    client = app.test_client()
    page = client.get("/avatar").text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert token
    form = {"csrf_token": token.group(1)}

    saved = client.post("/avatar", data={**form, "photo": (io.BytesIO(PNG), "me.png")})
    assert saved.status_code == 302
    assert saved.headers["Location"] == "/flaskstore/avatars/me.png"
    assert client.get("/flaskstore/avatars/me.png").data == PNG

    wrong_type = client.post("/avatar", data={**form, "photo": (io.BytesIO(b"x"), "a.exe")})
    assert "Photos only: PNG, JPEG, GIF or WebP." in wrong_type.text
    too_big = client.post(
        "/avatar", data={**form, "photo": (io.BytesIO(b"x" * 2_000_001), "big.png")}
    )
    assert "Photos may be up to 2 MB." in too_big.text
    assert "Choose a photo." in client.post("/avatar", data=form).text
    no_csrf = client.post("/avatar", data={"photo": (io.BytesIO(PNG), "me.png")})
    assert no_csrf.status_code == 200
    assert "avatars/me_" not in no_csrf.text


def test_testing_guide_example_passes() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "test_with_memory_store.py",
        ],
        cwd=EXAMPLES,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_reuploaded_migration_keeps_urls(tmp_path: Path) -> None:
    before = example("reuploaded_before").create_app(
        {"UPLOADED_PHOTOS_DEST": str(tmp_path / "before")}
    )
    after = example("reuploaded_after").create_app({"STORE_PATH": str(tmp_path / "after")})
    urls = []
    for app in (before, after):
        client = app.test_client()
        url = post(client, "/photos", "photo", PNG, "cat.png").text
        assert client.get(url).data == PNG
        assert post(client, "/photos", "photo", b"MZ", "cat.exe").status_code == 400
        urls.append(url)
    assert urls[0] == urls[1] == "http://localhost/_uploads/photos/cat.png"


def test_depot_migration_gives_the_same_results(tmp_path: Path) -> None:
    from depot.manager import DepotManager

    try:
        before = example("depot_before").save_and_read(str(tmp_path / "depot"))
    finally:
        DepotManager._clear()
    after = example("depot_after").save_and_read(str(tmp_path / "store"))
    assert before == after == ("file.txt", "text/plain", b"HELLO WORLD")


def test_depot_storages_and_aliases_as_settings(tmp_path: Path) -> None:
    module = example("depot_flask")
    app: Flask = module.create_app(
        {
            "STORE_PATH": str(tmp_path / "lfs"),
            "STORE_STORES": {
                "local_avatars": {"PROVIDER": "local", "PATH": str(tmp_path / "avatars")},
                "backup_avatars": {"PROVIDER": "local", "PATH": str(tmp_path / "backup")},
            },
        }
    )
    with app.app_context():
        avatar = module.store.Provider("avatar")
        assert avatar is module.store.Provider("local_avatars")
        saved = avatar.save(PNG, name="thumbnail.png")
        assert saved.path == "local_avatars/thumbnail.png"
        assert module.store.get_file(saved.path).read() == PNG
    result = app.test_cli_runner().invoke(args=["store", "sync", "avatar", "backup_avatars"])
    assert result.exit_code == 0, result.output
    assert "copied 1, skipped 0, failed 0" in result.output
    assert (tmp_path / "backup" / "thumbnail.png").read_bytes() == PNG


# -- S3 examples, against a real moto server over HTTP ------------------------------------------


def s3_settings(endpoint_url: str, bucket: str) -> dict[str, Any]:
    """The ``STORE_S3_*`` settings that point an example app at the test's moto server."""
    return {
        "STORE_S3_BUCKET": bucket,
        "STORE_S3_REGION": REGION,
        "STORE_S3_ENDPOINT_URL": endpoint_url,
        "STORE_S3_ACCESS_KEY": ACCESS_KEY,
        "STORE_S3_SECRET_KEY": SECRET_KEY,
    }


def test_direct_upload_example_keeps_good_files_and_deletes_bad_ones(moto_server: str) -> None:
    bucket = create_bucket(moto_server)
    app = example("s3_direct_upload").create_app(
        {"SECRET_KEY": "docs", "VIDEO_MAX_BYTES": 1000, **s3_settings(moto_server, bucket)}
    )
    client = app.test_client()

    def browser_upload(data: bytes, content_type: str = "video/mp4") -> str:
        """What the page's JavaScript does: get a form, post the file straight to the bucket."""
        form = client.post("/uploads", json={"filename": "Holiday clip.mp4"}).json
        assert form is not None
        # moto does not enforce POST policies, like some S3-compatible servers: a browser
        # can send another type than the one signed, and confirm_upload must catch it.
        fields = {**form["fields"], "Content-Type": content_type}
        file = {"file": ("Holiday clip.mp4", data, content_type)}
        sent = requests.post(form["url"], data=fields, files=file, timeout=60)
        assert sent.status_code in (200, 201, 204), sent.text
        key: str = form["key"]
        assert re.fullmatch(r"Holiday_clip_[\w-]{8}\.mp4", key)
        return key

    def confirm(key: str) -> Any:
        return client.post("/uploads/confirm", json={"key": key})

    video = b"\x00\x00\x00\x18ftypmp42" + b"v" * 500
    key = browser_upload(video)
    confirmed = confirm(key)
    assert confirmed.status_code == 201, confirmed.text
    assert confirmed.json == {"name": key, "size": len(video), "url": f"/flaskstore/{key}"}
    stored = s3_client(moto_server).get_object(Bucket=bucket, Key=f"videos/{key}")
    assert stored["Body"].read() == video
    assert (
        client.get(f"/flaskstore/{key}")
        .headers["Location"]
        .startswith(f"{moto_server}/{bucket}/videos/{key}")
    )
    assert confirm(key).status_code == 404  # a key is confirmed once

    too_big = browser_upload(b"v" * 1001)
    refused = confirm(too_big)
    assert refused.status_code == 400
    assert "1001 bytes, more than the 1000 allowed" in refused.json["error"]
    wrong_type = browser_upload(b"<script>alert(1)</script>", "text/html")
    assert "not 'video/mp4'" in confirm(wrong_type).json["error"]

    never_sent = client.post("/uploads", json={"filename": "x.mp4"}).json["key"]
    assert confirm(never_sent).json == {"error": "Nothing was uploaded."}
    assert confirm("someone-elses.mp4").status_code == 404

    listed = s3_client(moto_server).list_objects_v2(Bucket=bucket).get("Contents", [])
    assert [item["Key"] for item in listed] == [f"videos/{key}"]  # the refused ones are gone


def test_s3_compatible_example_sends_no_checksums_and_no_conditions(moto_server: str) -> None:
    module = example("s3_compatible")
    bucket = create_bucket(moto_server)
    app = module.create_app(s3_settings(moto_server, bucket))
    with app.app_context():
        provider = module.store.Provider()
    sent: list[dict[str, str]] = []
    provider.client.meta.events.register(
        "before-send.s3.PutObject", lambda request, **_: sent.append(dict(request.headers))
    )
    first = provider.save(b"one", name="a.txt")
    second = provider.save(b"two", name="a.txt")  # the checked rename still renames
    assert first.name == "a.txt"
    assert re.fullmatch(r"a_[\w-]{8}\.txt", second.name)
    assert first.absolute_url() == f"{moto_server}/{bucket}/a.txt"  # path style
    assert requests.get(first.absolute_url(expires=60), timeout=60).content == b"one"
    assert len(sent) == 2
    for headers in sent:
        names = {name.lower() for name in headers}
        assert "if-none-match" not in names
        assert not any(name.startswith("x-amz-checksum-") for name in names), names

    # With the defaults both are sent: the example's settings are what turned them off.
    aws_like = S3Store(
        **{k[len("STORE_") :].lower(): v for k, v in s3_settings(moto_server, bucket).items()}
    )
    aws_like.client.meta.events.register(
        "before-send.s3.PutObject", lambda request, **_: sent.append(dict(request.headers))
    )
    aws_like.save(b"three", name="b.txt")
    names = {name.lower() for name in sent[-1]}
    assert "if-none-match" in names
    assert any(name.startswith("x-amz-checksum-") for name in names), names


def run_gevent_example(settings: dict[str, Any], *script: str, cwd: Path) -> Any:
    """Run ``script`` after the example's app is made with ``settings``; its JSON output.

    The example patches the standard library on import, as its reader's app would, so it
    runs in a child process, never in the one running the tests.
    """
    child = "\n".join(
        [
            "import sys",
            "import s3_gevent_app  # it patches the standard library first",
            "import io, json",
            "app = s3_gevent_app.create_app(json.loads(sys.argv[1]))",
            "client = app.test_client()",
            *script,
        ]
    )
    environment = {**os.environ, "PYTHONPATH": str(EXAMPLES)}
    result = subprocess.run(
        [sys.executable, "-c", child, json.dumps(settings)],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_gevent_example_uploads_in_greenlets_and_the_cli_finishes_the_rest(
    moto_server: str, tmp_path: Path
) -> None:
    bucket = create_bucket(moto_server)
    settings = {**s3_settings(moto_server, bucket), "STORE_STAGING_PATH": str(tmp_path / "stage")}
    report = run_gevent_example(
        settings,
        'url = client.post("/upload", data={"afile": (io.BytesIO(b"hi"), "hello.txt")}).text',
        "with app.app_context():",
        "    store = s3_gevent_app.store.Provider()",
        "    joined = store.join(60)",
        "    state = store.state('hello.txt')",
        "    executor = type(store.executor).__name__",
        "served = client.get(url)",
        "print(json.dumps([url, joined, state, executor, served.status_code,"
        " served.headers.get('Location')]))",
        cwd=tmp_path,
    )
    assert report == [
        "/flaskstore/hello.txt",
        True,
        "done",
        "GeventExecutor",
        302,
        f"{moto_server}/{bucket}/uploads/hello.txt",
    ]
    s3 = s3_client(moto_server)
    assert s3.get_object(Bucket=bucket, Key="uploads/hello.txt")["Body"].read() == b"hi"
    assert not (tmp_path / "stage" / "hello.txt").exists()  # the staged copy is gone

    # A process that ends before its uploads (here: delayed) leaves them pending on disk...
    delayed = {**settings, "STORE_TRANSFER_DELAYED": True}
    report = run_gevent_example(
        delayed,
        'url = client.post("/upload", data={"afile": (io.BytesIO(b"later"), "later.txt")}).text',
        "with app.app_context():",
        "    state = s3_gevent_app.store.Provider().state('later.txt')",
        "print(json.dumps([url, state, client.get(url).data.decode()]))",
        cwd=tmp_path,
    )
    assert report == ["/flaskstore/later.txt", "pending", "later"]  # served from staging
    # ...and the command the page shows uploads them, in a process the app module patched.
    app = f"s3_gevent_app:create_app({settings!r})"
    flask = str(Path(sys.executable).with_name("flask"))
    result = subprocess.run(
        [flask, "--app", app, "store", "transfer", "--pending"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(EXAMPLES)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "transferred 1, failed 0" in result.stdout
    assert s3.get_object(Bucket=bucket, Key="uploads/later.txt")["Body"].read() == b"later"


# -- the command-line page: its console sessions, run in order --------------------------------

CLI_PAGE = DOCS / "cli.rst"
CLI_PROMPT = "flask --app cli_app store"
_CONSOLE_BLOCK = re.compile(r"^( *)\.\. code-block:: console\n\n((?:\1   .*\n|\n)+)", re.MULTILINE)
#: What differs between two runs of a session; masked in the page and in the output alike.
_VOLATILE = [
    (re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?(?:\+00:00)?"), "<time>"),
    (re.compile(r"^(etag:\s+)\S+$", re.MULTILINE), r"\1<etag>"),
    (re.compile(r"(X-Amz-(?:Credential|Date|Signature)=)[^&\s]+"), r"\1<signed>"),
]
#: What the app's stores hold before the first session, as the page says.
CLI_UPLOADS = {"cat.jpg": JPEG.ljust(48213, b"\0"), "docs/notes.md": b"# Notes\n".ljust(112, b".")}
CLI_OUTBOX = {"report-march.pdf": b"%PDF march", "report-april.pdf": b"%PDF april"}


def console_sessions(page: Path) -> list[tuple[str, str]]:
    """``(command, expected output)`` for every ``$`` line of the page's console blocks."""
    steps: list[tuple[str, str]] = []
    for _, block in _CONSOLE_BLOCK.findall(page.read_text(encoding="utf-8")):
        for line in textwrap.dedent(block).strip("\n").splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], ""))
            else:
                command, expected = steps[-1]
                steps[-1] = (command, expected + line + "\n")
    return steps


def masked(text: str) -> str:
    """``text`` with its times, ETags and signatures replaced by placeholders."""
    for pattern, replacement in _VOLATILE:
        text = pattern.sub(replacement, text)
    return text


def test_cli_page_sessions_print_what_the_page_shows(tmp_path: Path) -> None:
    import boto3
    from moto import mock_aws

    with mock_aws():  # the page's bucket, in this process
        boto3.client("s3", region_name="eu-west-1").create_bucket(
            Bucket="my-archive", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        module = example("cli_app")
        app: Flask = module.create_app(instance_path=str(tmp_path / "instance"))
        with app.app_context():
            for key, data in CLI_UPLOADS.items():
                folder, _, name = key.rpartition("/")
                module.store.Provider(destination=folder or None).save(data, name=name)
            for key, data in CLI_OUTBOX.items():
                module.store.get("outbox").save(data, name=key)
        runner = app.test_cli_runner()
        steps = console_sessions(CLI_PAGE)
        assert len(steps) >= 20, "the page's sessions were not found"
        exit_code, previous = None, ""
        for command, expected in steps:
            if command == "echo $?":
                assert f"{exit_code}\n" == expected, f"the exit code of `$ {previous}`"
                continue
            assert command.startswith(CLI_PROMPT + " "), command
            args = ["store", *shlex.split(command[len(CLI_PROMPT) :])]
            result = runner.invoke(args=args, prog_name="flask")
            assert result.exception is None or isinstance(result.exception, SystemExit), (
                command,
                result.exc_info,
            )
            # The page's app lives in /srv/myapp; this one in a temporary folder.
            output = result.output.replace(str(tmp_path), "/srv/myapp")
            assert masked(output) == masked(expected), f"$ {command}"
            exit_code, previous = result.exit_code, command

        # The page's example of a damaged file, named on stderr with exit code 1.
        damaged = tmp_path / "instance" / "backup" / "cat.jpg"
        with open(damaged, "r+b") as handle:
            handle.truncate(1024)
        verify = runner.invoke(args=["store", "verify", "backup"])
        assert verify.exit_code == 1
        line = "error: backup/cat.jpg: size is 1024 bytes but it was saved with 48213"
        assert verify.stderr == line + "\n"
        assert f"``{line}``" in " ".join(CLI_PAGE.read_text(encoding="utf-8").split())


def test_documented_cache_pruning_keeps_fresh_entries_and_serving_working(tmp_path: Path) -> None:
    """The ``flask store prune`` session named-stores.rst gives for expired cache entries."""
    page = (DOCS / "named-stores.rst").read_text(encoding="utf-8")
    [(command, output)] = list(console_sessions(DOCS / "named-stores.rst"))
    assert '"CACHE_PATH": cache_folder,  # e.g. "/var/cache/myapp/reports"' in page
    flask_args = shlex.split(command)
    assert flask_args[:3] == ["flask", "--app", "myapp"]
    folder = str(tmp_path / "cache")

    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        STORE_PROVIDER="memory",
        STORE_STORES={"reports": {"PROVIDER": "memory", "CACHE_TTL": 300, "CACHE_PATH": folder}},
    )
    store = flask_store.Store(app)
    with app.app_context():
        reports = store.Provider("reports")
        for name in ("old.txt", "fresh.txt"):
            reports.save(name.encode(), name=name)
        cache = reports.read_cache
    assert cache is not None
    client = app.test_client()
    url = {name: reports.file(name).relative_url() for name in ("old.txt", "fresh.txt")}
    assert client.get(url["old.txt"]).data == b"old.txt"
    assert client.get(url["fresh.txt"]).data == b"fresh.txt"
    record = Path(cache.entry_folder("old.txt")) / "entry.json"
    stale = json.loads(record.read_text(encoding="utf-8"))
    stale["fetched"] -= 3600  # fetched an hour ago: past the TTL
    record.write_text(json.dumps(stale), encoding="utf-8")

    pruned = app.test_cli_runner().invoke(args=flask_args[3:])
    assert pruned.exit_code == 0, pruned.output
    assert pruned.output == output

    assert not Path(cache.entry_folder("old.txt")).exists()
    assert len(list(Path(cache.entry_folder("fresh.txt")).iterdir())) == 2
    assert client.get(url["old.txt"]).data == b"old.txt"  # fetched and cached again
    assert len(list(Path(cache.entry_folder("old.txt")).iterdir())) == 2
