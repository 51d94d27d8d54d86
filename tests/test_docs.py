"""The documentation builds without warnings, and every code sample in it runs.

Samples are either doctests inside the pages (run here page by page) or files under
``docs/examples/`` pulled in with ``literalinclude`` and exercised below, so none can rot.
"""

from __future__ import annotations

import doctest
import importlib
import io
import pkgutil
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

import flask_store
from flask_store.config import COMMON_DEFAULTS
from flask_store.stores import SHORT_NAMES, load_provider

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
PAGES = sorted(DOCS.glob("*.rst"))
#: As ``make docs`` builds: warnings are errors.
SPHINX_OPTIONS = ("-W", "--keep-going", "-q", "-b", "html")
DOCTEST_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
#: Code-block languages that are not Python and so are not run (shell sessions and the like).
NON_PYTHON_LANGUAGES = {"console", "text", "ini", "diff", "shell-session"}
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
    r"\.(?:setting|required|typed|choice|optional_number|error|label)\(\s*\"([A-Z][A-Z0-9_]*)\""
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
