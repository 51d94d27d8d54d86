"""The serving fast path (``STORE_SERVE_FAST``): the same answers as the Flask view, the
documented rule about app hooks, and the per-version header cache of local files.

The conformance and security tests (test_serving, test_http_semantics, test_content_types,
test_fuzz_serving) run over both paths already; here the fast path is compared with the
Flask view answer for answer, and what only the fast path does is checked.
"""

from __future__ import annotations

import io
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from flask import Blueprint, Flask, Response, request_started
from flask.testing import FlaskClient
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.test import TestResponse

from flask_store import Store, fast_path
from flask_store.exceptions import NotConfiguredError
from flask_store.serving import READ_BLOCK, SEQUENTIAL_FROM
from flask_store.stores.local import META_XATTR

BODY = bytes(range(256)) * 40  # 10 KiB


def make_app(folder: Path, fast: bool | str, **config: Any) -> Flask:
    app = Flask(__name__, instance_path=str(folder.parent / "instance"))
    app.config.update(STORE_PATH=str(folder), STORE_SERVE_FAST=fast, **config)
    Store(app)
    return app


def answered_fast(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count the requests the app's fast path answered itself and those it passed on."""
    counts: Counter[str] = Counter()
    dispatcher = app.wsgi_app
    assert isinstance(dispatcher, fast_path.FastServing)
    inner = dispatcher.wsgi_app
    pass_on = dispatcher.pass_on

    def counted_inner(environ: dict[str, Any], start_response: Any) -> Any:
        counts["flask"] += 1
        return inner(environ, start_response)

    def counted_pass_on(environ: dict[str, Any], start_response: Any) -> Any:
        counts["passed on"] += 1
        return pass_on(environ, start_response)

    monkeypatch.setattr(dispatcher, "wsgi_app", counted_inner)
    monkeypatch.setattr(dispatcher, "pass_on", counted_pass_on)
    return counts


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A store folder with plain, nested, active, empty, symlinked and odd files."""
    folder = tmp_path / "store"
    app = make_app(folder, False)
    with app.app_context():
        store = app.extensions["store"].resolve()
        store.put("data.bin", BODY)
        store.put("a/b/nested.txt", b"nested text\n", content_type="text/plain")
        store.put("page.html", b"<script>alert(1)</script>", content_type="text/html")
        store.put("script.js", b"alert(1)", content_type="text/javascript")
        store.put("empty.bin", b"")
        store.put("фото 100%.jpg", b"\xff\xd8\xff" + bytes(100))
    (tmp_path / "secret.txt").write_bytes(b"secret")
    (tmp_path / "secret_dir").mkdir()
    (tmp_path / "secret_dir" / "x.txt").write_bytes(b"secret")
    os.symlink(tmp_path / "secret.txt", folder / "out.txt")
    os.symlink(tmp_path / "secret_dir", folder / "outdir")
    os.symlink("data.bin", folder / "alias.bin")  # inside the store: a key like any other
    os.mkfifo(folder / "fifo")
    return folder


def normalised(response: TestResponse) -> tuple[str, list[tuple[str, str]], bytes]:
    """Status, header fields and body, with the random multipart boundary masked."""
    body = response.get_data()
    headers = list(response.headers.items())
    boundary = re.search(r"boundary=(\w+)", response.headers.get("Content-Type", ""))
    if boundary:
        body = body.replace(boundary.group(1).encode(), b"BOUNDARY")
        headers = [(k, v.replace(boundary.group(1), "BOUNDARY")) for k, v in headers]
    return response.status, headers, body


#: (method, URL, request headers) sent to both paths; ETAG stands for the file's ETag and
#: DATE for its Last-Modified.
REQUESTS: list[tuple[str, str, dict[str, str]]] = [
    ("GET", "/flaskstore/data.bin", {}),
    ("HEAD", "/flaskstore/data.bin", {}),
    ("GET", "/flaskstore/data.bin", {"If-None-Match": "ETAG"}),
    ("GET", "/flaskstore/data.bin", {"If-None-Match": 'W/ETAG, "x"'}),
    ("HEAD", "/flaskstore/data.bin", {"If-None-Match": "ETAG"}),
    ("GET", "/flaskstore/data.bin", {"If-None-Match": '"other"'}),
    ("GET", "/flaskstore/data.bin", {"If-Modified-Since": "DATE"}),
    ("GET", "/flaskstore/data.bin", {"If-Match": '"other"'}),
    ("HEAD", "/flaskstore/data.bin", {"If-Match": '"other"'}),
    ("GET", "/flaskstore/data.bin", {"If-Match": "ETAG", "Range": "bytes=5-9"}),
    ("GET", "/flaskstore/data.bin", {"If-Unmodified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}),
    ("GET", "/flaskstore/data.bin", {"Range": "bytes=0-0"}),
    ("GET", "/flaskstore/data.bin", {"Range": "bytes=-100"}),
    ("GET", "/flaskstore/data.bin", {"Range": "bytes=10-19,100-109,-5"}),
    ("GET", "/flaskstore/data.bin", {"Range": "bytes=10-19", "If-Range": "ETAG"}),
    ("GET", "/flaskstore/data.bin", {"Range": "bytes=10-19", "If-Range": '"other"'}),
    ("GET", "/flaskstore/data.bin", {"Range": "bytes=0-1,5-6", "If-Range": "ETAG"}),
    ("GET", "/flaskstore/data.bin", {"Range": "bytes=99999-"}),
    ("GET", "/flaskstore/data.bin", {"Range": "bytes=5-1"}),
    ("GET", "/flaskstore/data.bin", {"Range": "items=0-1"}),
    ("HEAD", "/flaskstore/data.bin", {"Range": "bytes=0-1"}),
    ("GET", "/flaskstore/a/b/nested.txt", {}),
    ("GET", "/flaskstore/page.html", {}),
    ("GET", "/flaskstore/script.js", {}),
    ("GET", "/flaskstore/empty.bin", {"Range": "bytes=0-0"}),
    ("GET", "/flaskstore/%D1%84%D0%BE%D1%82%D0%BE%20100%25.jpg", {}),
    ("GET", "/flaskstore/alias.bin", {}),
    ("HEAD", "/flaskstore/alias.bin", {}),
    ("GET", "/flaskstore/out.txt", {}),
    ("HEAD", "/flaskstore/out.txt", {}),
    ("GET", "/flaskstore/outdir/x.txt", {}),
    ("GET", "/flaskstore/fifo", {}),
    ("HEAD", "/flaskstore/fifo", {}),
    ("GET", "/flaskstore/a", {}),
    ("GET", "/flaskstore/a/", {}),
    ("GET", "/flaskstore/missing.bin", {}),
    ("GET", "/flaskstore/../secret.txt", {}),
    ("GET", "/flaskstore/a/../../secret.txt", {}),
    ("GET", "/flaskstore/%2e%2e/secret.txt", {}),
    ("GET", "/flaskstore//data.bin", {}),
    ("GET", "/flaskstore/", {}),
    ("GET", "/flaskstore", {}),
    ("GET", "/flaskstore/.upload-abc", {}),
    ("GET", "/flaskstore/data.bin%00", {}),
    ("GET", "/flaskstore/a%5Cb", {}),
    ("POST", "/flaskstore/data.bin", {}),
    ("OPTIONS", "/flaskstore/data.bin", {}),
    ("DELETE", "/flaskstore/data.bin", {}),
]


@pytest.mark.parametrize(("method", "url", "headers"), REQUESTS)
def test_the_fast_path_answers_as_the_flask_view(
    files: Path, method: str, url: str, headers: dict[str, str]
) -> None:
    """Status, every header field and every byte: the same on both paths."""
    slow = make_app(files, False).test_client()
    fast = make_app(files, True).test_client()
    plain = slow.get("/flaskstore/data.bin")
    values = {"ETAG": plain.headers["ETag"], "DATE": plain.headers["Last-Modified"]}
    sent = {name: _filled(value, values) for name, value in headers.items()}
    for warm_up in (True, False):  # a version's first answer, then one from the cache
        expected = normalised(slow.open(url, method=method, headers=sent))
        got = normalised(fast.open(url, method=method, headers=sent))
        assert got == expected, f"{method} {url} {sent} (cache warm: {not warm_up})"


def _filled(value: str, values: dict[str, str]) -> str:
    for name, filled in values.items():
        value = value.replace(name, filled)
    return value


def test_plain_answers_do_not_reach_flask(files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(files, True)
    counts = answered_fast(app, monkeypatch)
    client = app.test_client()
    etag = client.get("/flaskstore/data.bin").headers["ETag"]
    assert client.get("/flaskstore/data.bin", headers={"If-None-Match": etag}).status_code == 304
    assert client.head("/flaskstore/a/b/nested.txt").status_code == 200
    assert client.get("/flaskstore/data.bin", headers={"Range": "bytes=1-2"}).status_code == 206
    assert counts == {}
    assert client.get("/flaskstore/missing").status_code == 404  # the app's 404 page
    assert client.get("/flaskstore/data.bin", headers={"Range": "bytes=99999-"}).status_code == 416
    assert counts == {"passed on": 2, "flask": 2}


# -- the rule about app hooks ----------------------------------------------------------------


@pytest.mark.parametrize(("setting", "runs"), [("auto", True), (False, True), (True, False)])
def test_an_auth_hook_runs_unless_serve_fast_is_true(
    tmp_path: Path, setting: bool | str, runs: bool
) -> None:
    app = make_app(tmp_path / "store", setting)
    with app.app_context():
        app.extensions["store"].resolve().put("private.txt", b"secret")
    seen: list[str] = []

    @app.before_request
    def guard() -> Any:
        seen.append("before")
        return "no entry", 403

    response = app.test_client().get("/flaskstore/private.txt")
    assert (response.status_code, seen) == ((403, ["before"]) if runs else (200, []))


def test_auto_notices_hooks_added_after_the_first_request(tmp_path: Path) -> None:
    app = make_app(tmp_path / "store", "auto")
    with app.app_context():
        app.extensions["store"].resolve().put("a.txt", b"a")
    client = app.test_client()
    assert "X-After" not in client.get("/flaskstore/a.txt").headers
    app._got_first_request = False  # Flask refuses new hooks after a request it handled

    @app.after_request
    def mark(response: Any) -> Any:
        response.headers["X-After"] = "1"
        return response

    assert client.get("/flaskstore/a.txt").headers["X-After"] == "1"


@pytest.mark.parametrize(
    "add_hook",
    [
        lambda app: app.teardown_request(lambda exc: None),
        lambda app: app.url_value_preprocessor(lambda endpoint, values: None),
        lambda app: request_started.connect(_noted, app),
        lambda app: setattr(app, "response_class", type("Own", (Response,), {})),
    ],
    ids=["teardown_request", "url_value_preprocessor", "request_started", "response_class"],
)
def test_auto_leaves_apps_with_hooks_to_flask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, add_hook: Callable[[Flask], Any]
) -> None:
    app = make_app(tmp_path / "store", "auto")
    with app.app_context():
        app.extensions["store"].resolve().put("a.txt", b"a")
    add_hook(app)
    counts = answered_fast(app, monkeypatch)
    try:
        assert app.test_client().get("/flaskstore/a.txt").status_code == 200
    finally:
        request_started.disconnect(_noted)
    assert counts == {"flask": 1}


def _noted(sender: Any, **extra: Any) -> None:
    pass


def test_a_signal_receiver_of_another_app_leaves_the_fast_path_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(tmp_path / "store", "auto")
    with app.app_context():
        app.extensions["store"].resolve().put("a.txt", b"a")
    other = Flask("other")
    request_started.connect(_noted, other)
    counts = answered_fast(app, monkeypatch)
    try:
        assert app.test_client().get("/flaskstore/a.txt").status_code == 200
    finally:
        request_started.disconnect(_noted)
    assert counts == {}


def test_another_route_under_the_prefix_keeps_its_url(tmp_path: Path) -> None:
    app = make_app(tmp_path / "store", True)
    with app.app_context():
        app.extensions["store"].resolve().put("special", b"a stored file")
    client = app.test_client()
    assert client.get("/flaskstore/special").data == b"a stored file"  # answered fast
    app.add_url_rule("/flaskstore/special", "special", lambda: "the app's own page")
    assert client.get("/flaskstore/special").data == b"the app's own page"


def test_the_url_rules_are_scanned_once_while_only_files_are_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Answered fast, no request reaches Flask, so Flask never marks its first request: the
    # scan of every URL rule must not run again for each file, only when a rule is added.
    app = make_app(tmp_path / "store", True)
    with app.app_context():
        app.extensions["store"].resolve().put("a.txt", b"a")
    scans: list[bool] = []
    scan = fast_path._only_serving_rules

    def counted(*args: Any) -> bool:
        scans.append(scan(*args))
        return scans[-1]

    monkeypatch.setattr(fast_path, "_only_serving_rules", counted)
    client = app.test_client()
    for _ in range(3):
        assert client.get("/flaskstore/a.txt").data == b"a"
    assert scans == [True]
    app.add_url_rule("/flaskstore/a.txt", "mine", lambda: "the app's own page")
    assert client.get("/flaskstore/a.txt").data == b"the app's own page"
    assert scans == [True, False]


def test_blueprint_hooks_do_not_turn_the_fast_path_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A blueprint's hooks run for its own endpoints only, never for the serving route.
    app = make_app(tmp_path / "store", "auto")
    with app.app_context():
        app.extensions["store"].resolve().put("a.txt", b"a")
    admin = Blueprint("admin", __name__)
    admin.before_request(lambda: ("no", 403))
    app.register_blueprint(admin, url_prefix="/admin")
    counts = answered_fast(app, monkeypatch)
    assert app.test_client().get("/flaskstore/a.txt").status_code == 200
    assert counts == {}


def test_middleware_set_before_init_app(tmp_path: Path) -> None:
    """The fast path would run outside it: 'auto' leaves serving to Flask, True refuses."""
    for setting in ("auto", True):
        app = Flask(__name__, instance_path=str(tmp_path / "instance"))
        app.config.update(STORE_PATH=str(tmp_path / "store"), STORE_SERVE_FAST=setting)
        app.wsgi_app = ProxyFix(app.wsgi_app)  # type: ignore[method-assign]
        if setting is True:
            with pytest.raises(NotConfiguredError, match="STORE_SERVE_FAST"):
                Store(app)
        else:
            Store(app)
            assert isinstance(app.wsgi_app, ProxyFix)


def test_middleware_set_after_init_app_wraps_the_fast_path(tmp_path: Path) -> None:
    app = make_app(tmp_path / "store", True)
    app.wsgi_app = ProxyFix(app.wsgi_app)  # type: ignore[method-assign]
    assert isinstance(app.wsgi_app.app, fast_path.FastServing)


@pytest.mark.parametrize("headers", [{"If-Match": '"other"'}, {"If-None-Match": "*"}])
def test_middleware_adding_a_header_gets_a_fresh_header_list_each_time(
    tmp_path: Path, headers: dict[str, str]
) -> None:
    # WSGI middleware may append to the list handed to start_response: a header list kept
    # by the library (the 412's, a version's 304) must not grow with every answer.
    app = make_app(tmp_path / "store", True)
    with app.app_context():
        app.extensions["store"].resolve().put("a.txt", b"a")
    inner = app.wsgi_app

    def tagging(environ: dict[str, Any], start_response: Any) -> Any:
        def tagged(status: str, header_list: list[tuple[str, str]], *rest: Any) -> Any:
            header_list.append(("X-Tag", "1"))
            return start_response(status, header_list, *rest)

        return inner(environ, tagged)

    app.wsgi_app = tagging  # type: ignore[method-assign]
    client = app.test_client()
    for _ in range(2):
        response = client.get("/flaskstore/a.txt", headers=headers)
        assert response.status_code in (304, 412)
        assert response.headers.getlist("X-Tag") == ["1"]


@pytest.mark.parametrize("value", ["yes", 1, 0, "AUTO", "true"])
def test_serve_fast_refuses_other_values(tmp_path: Path, value: Any) -> None:
    with pytest.raises(NotConfiguredError, match="STORE_SERVE_FAST must be True, False or 'auto'"):
        make_app(tmp_path / "store", value)


def test_init_app_twice_keeps_one_dispatcher(tmp_path: Path) -> None:
    app = make_app(tmp_path / "store", True)
    Store().init_app(app)
    assert isinstance(app.wsgi_app, fast_path.FastServing)
    assert not isinstance(app.wsgi_app.wsgi_app, fast_path.FastServing)


def test_named_stores_and_covered_folders(tmp_path: Path) -> None:
    """Longest prefix first, as Flask's routing: /flaskstore/avatars is the avatars store;
    the default store's own avatars/ folder answers under /flaskstore/.files/."""
    stores = {"avatars": {"PATH": str(tmp_path / "avatars")}}
    for fast in (False, True):
        app = make_app(tmp_path / "store", fast, STORE_STORES=stores)
        with app.app_context():
            registry = app.extensions["store"]
            registry.resolve().put("avatars/me.png", b"default store", overwrite=True)
            registry.resolve("avatars").put("me.png", b"avatars store", overwrite=True)
        client = app.test_client()
        assert client.get("/flaskstore/avatars/me.png").data == b"avatars store"
        assert client.get("/flaskstore/.files/avatars/me.png").data == b"default store"
        assert client.get("/flaskstore/avatars").status_code == 404


# -- local files: one stat, and header fields cached per version -----------------------------


@pytest.fixture
def counted_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count the stat and extended-attribute calls this thread makes while requests are
    answered (the store's start-up tidying walks its folder in a thread of its own)."""
    counts: Counter[str] = Counter()
    mine = threading.get_ident()
    for name in ("stat", "lstat", "fstat", "getxattr"):
        original = getattr(os, name)

        def counted(*args: Any, _name: str = name, _original: Any = original, **kw: Any) -> Any:
            if threading.get_ident() == mine:
                counts[_name] += 1
            return _original(*args, **kw)

        monkeypatch.setattr(os, name, counted)
    return counts


def test_a_known_version_costs_one_stat_and_no_xattr(
    tmp_path: Path, counted_calls: Counter[str]
) -> None:
    app = make_app(tmp_path / "store", True)
    with app.app_context():
        app.extensions["store"].resolve().put("a.txt", b"hello")
    client = app.test_client()
    etag = client.get("/flaskstore/a.txt").headers["ETag"]  # the first answer fills the cache
    counted_calls.clear()
    assert client.get("/flaskstore/a.txt").data == b"hello"
    assert counted_calls == {"fstat": 1}
    counted_calls.clear()
    assert client.get("/flaskstore/a.txt", headers={"If-None-Match": etag}).status_code == 304
    assert client.head("/flaskstore/a.txt").status_code == 200
    assert counted_calls == {"lstat": 2}


def test_a_folder_on_the_way_costs_one_lstat(tmp_path: Path, counted_calls: Counter[str]) -> None:
    app = make_app(tmp_path / "store", True)
    with app.app_context():
        app.extensions["store"].resolve().put("a/b/c.txt", b"deep")
    client = app.test_client()
    client.get("/flaskstore/a/b/c.txt")
    counted_calls.clear()
    assert client.get("/flaskstore/a/b/c.txt").data == b"deep"
    assert counted_calls == {"lstat": 2, "fstat": 1}


def test_new_metadata_is_a_new_version(tmp_path: Path) -> None:
    """An extended attribute rewritten in place changes ctime: the cache is not trusted."""
    app = make_app(tmp_path / "store", True)
    with app.app_context():
        store = app.extensions["store"].resolve()
        store.put("a.txt", b"hello", content_type="text/plain")
    client = app.test_client()
    assert client.get("/flaskstore/a.txt").headers["Content-Type"].startswith("text/plain")
    path = store.path("a.txt")
    recorded = os.getxattr(path, META_XATTR).replace(b"text/plain", b"image/png")
    os.setxattr(path, META_XATTR, recorded)
    assert client.get("/flaskstore/a.txt").headers["Content-Type"] == "image/png"


def test_a_file_replaced_with_the_same_size_and_mtime_is_a_new_version(tmp_path: Path) -> None:
    app = make_app(tmp_path / "store", True)
    with app.app_context():
        store = app.extensions["store"].resolve()
        store.put("a.txt", b"first")
    client = app.test_client()
    first = client.get("/flaskstore/a.txt")
    before = os.stat(store.path("a.txt"))
    with app.app_context():
        store.put("a.txt", b"other", overwrite=True)
    os.utime(store.path("a.txt"), ns=(before.st_atime_ns, before.st_mtime_ns))
    second = client.get("/flaskstore/a.txt")
    assert second.data == b"other"
    assert second.headers["ETag"] != first.headers["ETag"]


def test_the_version_cache_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast_path, "MAX_VERSIONS", 3)
    app = make_app(tmp_path / "store", True)
    with app.app_context():
        for number in range(10):
            app.extensions["store"].resolve().put(f"{number}.txt", b"x")
    client = app.test_client()
    for number in range(10):
        assert client.get(f"/flaskstore/{number}.txt").data == b"x"
    assert isinstance(app.wsgi_app, fast_path.FastServing)
    assert len(app.wsgi_app._versions) <= 3


def test_a_future_mtime_is_not_cached(tmp_path: Path) -> None:
    app = make_app(tmp_path / "store", True)
    with app.app_context():
        store = app.extensions["store"].resolve()
        store.put("a.txt", b"x")
    future = os.stat(store.path("a.txt")).st_mtime + 3600
    os.utime(store.path("a.txt"), (future, future))
    client = app.test_client()
    assert client.get("/flaskstore/a.txt").status_code == 200
    assert isinstance(app.wsgi_app, fast_path.FastServing)
    assert app.wsgi_app._versions == {}


# -- what the WSGI server is handed -----------------------------------------------------------


class RecordingWrapper:
    """A ``wsgi.file_wrapper`` noting the file it was given and where its descriptor stood."""

    handed: ClassVar[list[tuple[int | None, int | None]]] = []

    def __init__(self, filelike: Any, block: int = 8192) -> None:
        self.filelike = filelike
        self.block = block
        descriptor: int | None = None
        position: int | None = None
        try:
            descriptor = filelike.fileno()
            position = os.lseek(filelike.fileno(), 0, os.SEEK_CUR)
        except (OSError, AttributeError, io.UnsupportedOperation):
            pass
        RecordingWrapper.handed.append((descriptor, position))

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.filelike.read(self.block):
            yield chunk

    def close(self) -> None:
        self.filelike.close()


def recording_client(tmp_path: Path, fast: bool, data: bytes) -> FlaskClient:
    """A client of an app that stores ``data`` as ``data.bin``, whose WSGI server offers
    :class:`RecordingWrapper` as its file wrapper (its record cleared)."""
    app = make_app(tmp_path / "store", fast)
    with app.app_context():
        app.extensions["store"].resolve().put("data.bin", data)
    client = app.test_client()
    client.environ_base["wsgi.file_wrapper"] = RecordingWrapper  # type: ignore[assignment]
    RecordingWrapper.handed.clear()
    return client


LARGE = bytes(range(256)) * 1024  # 256 KiB: more than SMALL_BODY


@pytest.mark.parametrize("fast", [False, True], ids=["flask", "fast"])
@pytest.mark.parametrize(
    ("range_header", "start", "length"),
    [
        (None, 0, len(LARGE)),
        ("bytes=1000-101999", 1000, 101000),
        ("bytes=-70000", len(LARGE) - 70000, 70000),
    ],
)
def test_whole_files_and_single_ranges_go_to_the_file_wrapper_at_their_offset(
    tmp_path: Path, fast: bool, range_header: str | None, start: int, length: int
) -> None:
    """gunicorn's sendfile sends from the descriptor's position for Content-Length bytes."""
    client = recording_client(tmp_path, fast, LARGE)
    headers = {"Range": range_header} if range_header else {}
    response = client.get("/flaskstore/data.bin", headers=headers)
    assert response.data == LARGE[start : start + length]
    assert response.headers["Content-Length"] == str(length)
    [(descriptor, position)] = RecordingWrapper.handed
    assert descriptor is not None
    assert position == start


@pytest.mark.parametrize("fast", [False, True], ids=["flask", "fast"])
def test_small_bodies_are_sent_as_one_chunk_and_the_file_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast: bool
) -> None:
    client = recording_client(tmp_path, fast, BODY)
    response = client.get("/flaskstore/data.bin", headers={"Range": "bytes=100-"}, buffered=False)
    assert list(response.response) == [BODY[100:]]
    assert RecordingWrapper.handed == []
    stored = str(tmp_path / "store" / "data.bin")
    assert stored not in _open_paths()


def _open_paths() -> list[str]:
    """The files this process holds open."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("fast", [False, True], ids=["flask", "fast"])
def test_large_files_are_read_sequentially(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast: bool
) -> None:
    advised: list[int] = []
    original = os.posix_fadvise

    def noted(fd: int, offset: int, length: int, advice: int) -> None:
        advised.append(advice)
        original(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", noted)
    app = make_app(tmp_path / "store", fast)
    with app.app_context():
        store = app.extensions["store"].resolve()
        store.put("big.bin", bytes(SEQUENTIAL_FROM))
        store.put("small.bin", bytes(READ_BLOCK))
    client = app.test_client()
    assert len(client.get("/flaskstore/small.bin").data) == READ_BLOCK
    assert advised == []
    assert len(client.get("/flaskstore/big.bin").data) == SEQUENTIAL_FROM
    assert advised == [os.POSIX_FADV_SEQUENTIAL]


@pytest.mark.parametrize("fast", [False, True], ids=["flask", "fast"])
def test_a_file_replaced_while_served_never_mixes_two_versions(tmp_path: Path, fast: bool) -> None:
    """Headers and bytes of every answer are of one version, however the replacements fall."""
    first, second = b"A" * 5000, b"B" * 7000
    app = make_app(tmp_path / "store", fast)
    with app.app_context():
        store = app.extensions["store"].resolve()
        store.put("a.txt", first)
    done = threading.Event()

    def replace() -> None:
        with app.app_context():
            while not done.is_set():
                for body in (second, first):
                    store.put("a.txt", body, overwrite=True)

    replacer = threading.Thread(target=replace)
    replacer.start()
    client = app.test_client()
    try:
        for number in range(600):
            # Plain, ranged, and conditional (decided on an lstat, then opened) requests.
            headers = [{}, {"Range": "bytes=4990-5009"}, {"If-None-Match": '"other"'}][number % 3]
            response = client.get("/flaskstore/a.txt", headers=headers)
            length = int(response.headers["Content-Length"])
            assert len(response.data) == length
            if response.status_code == 206:
                total = int(response.headers["Content-Range"].rpartition("/")[2])
                whole = first if total == len(first) else second
                assert response.data == whole[4990:5010]
            else:
                assert response.data in (first, second)
    finally:
        done.set()
        replacer.join()


def test_a_store_that_does_not_serve_gets_no_fast_path(tmp_path: Path) -> None:
    stores = {"private": {"PATH": str(tmp_path / "private"), "SERVE": False}}
    app = make_app(tmp_path / "store", True, STORE_STORES=stores)
    with app.app_context():
        app.extensions["store"].resolve("private").put("a.txt", b"not served")
    assert app.test_client().get("/flaskstore/private/a.txt").status_code == 404


def test_a_url_prefix_beyond_ascii_is_answered_fast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(tmp_path / "store", True, STORE_URL_PREFIX="/файлы")
    with app.app_context():
        app.extensions["store"].resolve().put("a.txt", b"a")
    counts = answered_fast(app, monkeypatch)
    assert app.test_client().get("/%D1%84%D0%B0%D0%B9%D0%BB%D1%8B/a.txt").data == b"a"
    assert counts == {}


@pytest.mark.parametrize(
    ("config", "host", "status"),
    [
        ({"TRUSTED_HOSTS": ["files.example"]}, "files.example", 200),
        ({"TRUSTED_HOSTS": ["files.example"]}, "evil.example", 400),
        ({"SERVER_NAME": "files.example"}, "files.example", 200),
        ({"SERVER_NAME": "files.example"}, "evil.example", None),  # as this Flask decides
    ],
)
def test_the_host_rules_of_the_app_hold(
    tmp_path: Path, config: dict[str, Any], host: str, status: int | None
) -> None:
    answers = []
    for fast in (False, True):
        app = make_app(tmp_path / "store", fast, **config)
        if not fast:
            with app.app_context():
                app.extensions["store"].resolve().put("a.txt", b"a")
        answers.append(app.test_client().get("/flaskstore/a.txt", headers={"Host": host}))
    assert normalised(answers[1]) == normalised(answers[0])
    if status is not None:
        assert answers[1].status_code == status
