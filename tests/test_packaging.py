"""The distribution as a user gets it: ``make dist``'s sdist and wheel build, pass
``twine check``, hold the whole package and nothing else, and the wheel installs into a fresh
virtualenv and runs an app there.

Nothing here reaches the network: the build runs without isolation (setuptools comes from the
test extra), and the fresh virtualenv gets the wheel's declared dependencies, and only those,
from this test environment (linked in through a ``.pth`` file) instead of from the package
index. It sees nothing of this checkout: a module left out of the wheel, or a dependency
missing from ``install_requires``, fails here (``pip check`` and the app's imports).
"""

from __future__ import annotations

import email.parser
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from collections.abc import Iterable
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from flask_store import __version__
from flask_store.optional import DISTRIBUTION, EXTRA_OF_MODULE

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "flask_store"
#: What a build never needs from the checkout.
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "dist",
    "build",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    ".hypothesis",
    "instance",
    "node_modules",
    "_build",
)
#: A safety net for a build or install that hangs; no test measures time with it.
TIMEOUT = 600


def run(*command: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``command``; fail the test with its output when it fails."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, (
        f"$ {' '.join(map(str, command))}\n{result.stdout}\n{result.stderr}"
    )
    return result


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m build`` of a copy of the checkout (the build writes into its source
    folder, and other tests may be using this one): the folder holding the sdist and wheel."""
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    out = work / "dist"
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, source)
    return out


def only(folder: Path, pattern: str) -> Path:
    (found,) = folder.glob(pattern)
    return found


def test_sdist_and_wheel_pass_twine_check(dist: Path) -> None:
    wheel = only(dist, "*.whl")
    sdist = only(dist, "*.tar.gz")
    assert wheel.name == f"flask_store_ng-{__version__}-py3-none-any.whl"
    assert sdist.name == f"flask_store_ng-{__version__}.tar.gz"
    result = run(sys.executable, "-m", "twine", "check", "--strict", wheel, sdist)
    assert result.stdout.count("PASSED") == 2, result.stdout


def test_wheel_holds_every_module_and_nothing_else(dist: Path) -> None:
    with zipfile.ZipFile(only(dist, "*.whl")) as wheel:
        names = set(wheel.namelist())
        metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(wheel.read(metadata_name).decode())
    expected = {
        path.relative_to(ROOT).as_posix()
        for path in PACKAGE.rglob("*")
        if path.suffix in {".py", ".typed"} and "__pycache__" not in path.parts
    }
    packaged = {name for name in names if ".dist-info/" not in name}
    assert packaged == expected
    assert metadata["Name"] == DISTRIBUTION
    assert metadata["Version"] == __version__
    requires = " ".join(metadata.get_all("Requires-Dist") or [])
    assert "Flask" in requires and "Werkzeug" in requires
    assert set(metadata.get_all("Provides-Extra") or []) >= set(EXTRA_OF_MODULE.values())


def test_sdist_builds_from_what_it_holds(dist: Path) -> None:
    with tarfile.open(only(dist, "*.tar.gz")) as sdist:
        names = {name.partition("/")[2] for name in sdist.getnames()}
    for needed in ["setup.cfg", "pyproject.toml", "README.md", "flask_store/py.typed"]:
        assert needed in names, f"the sdist lacks {needed}"
    # ``python -m build`` made the wheel from the sdist, so the sdist is enough to build it.


APP = textwrap.dedent(
    """
    import io, os, flask_store
    from flask import Flask, request
    from flask_store import Store

    app = Flask(__name__, instance_path=os.path.abspath("instance"))
    store = Store(app)

    @app.post("/upload")
    def upload():
        return store.Provider().save(request.files["afile"]).relative_url()

    client = app.test_client()
    url = client.post("/upload", data={"afile": (io.BytesIO(b"hello"), "hi.txt")}).text
    print(url, client.get(url).data.decode(), flask_store.__file__)
    print(client.post("/upload", data={"afile": (io.BytesIO(b"x"), "...")}).status_code)

    app = Flask(__name__)
    app.config["STORE_PROVIDER"] = "s3"
    try:
        Store(app)
    except flask_store.exceptions.ProviderImportError as exc:
        print(exc)
    """
)


def test_wheel_installs_in_a_clean_venv_and_runs_an_app(dist: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    pip = (python, "-m", "pip", "--disable-pip-version-check", "--no-input")
    run(*pip, "install", "--no-index", "--no-deps", only(dist, "*.whl"))
    link_dependencies(python, tmp_path / "deps", wheel_requirements(only(dist, "*.whl")))
    run(*pip, "check")
    (tmp_path / "app.py").write_text(APP)
    result = run(python, "app.py", cwd=tmp_path)  # not the checkout: its flask_store is not seen
    served, status, missing_extra = result.stdout.strip().splitlines()
    url, body, location = served.split()
    assert (url, body) == ("/flaskstore/hi.txt", "hello")
    assert location.startswith(str(venv))
    assert (tmp_path / "instance" / "uploads" / "hi.txt").read_bytes() == b"hello"
    assert status == "400"
    # The base install has no boto3: the error names the extra, ready to copy.
    assert missing_extra.endswith(f'Install it with: pip install "{DISTRIBUTION}[s3]"')


def wheel_requirements(wheel: Path) -> list[str]:
    """The ``Requires-Dist`` lines of ``wheel`` that a plain install (no extras) needs."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(archive.read(name).decode())
    return metadata.get_all("Requires-Dist") or []


def dependency_closure(requirements: Iterable[str]) -> set[str]:
    """The installed distributions ``requirements`` need, with their own needs, no extras."""
    found: set[str] = set()
    todo = [Requirement(line) for line in requirements]
    while todo:
        requirement = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = importlib.metadata.distribution(requirement.name).metadata["Name"]
        if name not in found:
            found.add(name)
            todo.extend(Requirement(line) for line in importlib.metadata.requires(name) or [])
    return found


def link_dependencies(python: Path, folder: Path, requirements: Iterable[str]) -> None:
    """Make exactly the distributions ``requirements`` need importable by ``python``.

    Their files (packages, modules and ``.dist-info``) are linked into ``folder``, which a
    ``.pth`` file puts on the fresh virtualenv's path; nothing else of this environment is.
    """
    folder.mkdir()
    for name in dependency_closure(requirements):
        distribution = importlib.metadata.distribution(name)
        tops = {Path(str(f)).parts[0] for f in distribution.files or []}
        for top in tops - {".."}:
            source = Path(str(distribution.locate_file(top)))
            if source.exists() and not (folder / top).exists():
                (folder / top).symlink_to(source)
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))")
    (Path(site.stdout.strip()) / "dependencies.pth").write_text(f"{folder}\n")
