"""The Flask extension: set-up, configuration checks, per-app state and URLs."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from flask import Blueprint, Flask, request, url_for

from flask_store import FileWrapper, Store
from flask_store.exceptions import NotConfiguredError, ProviderImportError
from flask_store.stores.local import LocalStore
from flask_store.stores.memory import MemoryStore


def make_app(tmp_path: Path, **config: object) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(config)
    return app


def test_seed_quick_start_works_verbatim(tmp_path: Path) -> None:
    app = Flask(__name__)
    app.config["STORE_DOMAIN"] = "http://127.0.0.1:5000"
    app.config["STORE_PATH"] = str(tmp_path / "some/path/to/somewhere")
    store = Store(app)

    @app.route("/upload", methods=["POST"])
    def upload() -> str:
        file = request.files.get("afile")
        provider = store.Provider()
        f = provider.save(file)
        return f.absolute_url()

    response = app.test_client().post(
        "/upload", data={"afile": (io.BytesIO(b"jpeg bytes"), "localfile.jpg")}
    )
    assert response.text == "http://127.0.0.1:5000/flaskstore/localfile.jpg"
    assert (tmp_path / "some/path/to/somewhere/localfile.jpg").read_bytes() == b"jpeg bytes"
    served = app.test_client().get("/flaskstore/localfile.jpg")
    assert served.data == b"jpeg bytes"
    assert served.mimetype == "image/jpeg"


def test_application_factory(tmp_path: Path) -> None:
    store = Store()

    def create_app() -> Flask:
        app = make_app(tmp_path, STORE_PROVIDER="memory")
        store.init_app(app)
        return app

    app = create_app()
    with app.app_context():
        assert isinstance(store.Provider(), MemoryStore)
        assert app.extensions["store"].resolve() is store.Provider()


def test_one_store_object_serves_two_apps_with_their_own_providers(tmp_path: Path) -> None:
    store = Store()
    local_app = make_app(tmp_path / "a", STORE_PATH=str(tmp_path / "files"))
    memory_app = make_app(tmp_path / "b", STORE_PROVIDER="memory", STORE_URL_PREFIX="/m")
    store.init_app(local_app)
    store.init_app(memory_app)
    with local_app.test_request_context():
        saved_local = store.Provider().save(b"on disk", name="x.txt")
        assert isinstance(saved_local.store, LocalStore)
        assert saved_local.relative_url() == "/flaskstore/x.txt"
    with memory_app.test_request_context():
        saved_memory = store.Provider().save(b"in memory", name="x.txt")
        assert isinstance(saved_memory.store, MemoryStore)
        assert saved_memory.relative_url() == "/m/x.txt"
    assert local_app.test_client().get("/flaskstore/x.txt").data == b"on disk"
    assert memory_app.test_client().get("/m/x.txt").data == b"in memory"
    assert memory_app.test_client().get("/flaskstore/x.txt").status_code == 404


def test_provider_outside_an_app_is_a_clear_error(tmp_path: Path) -> None:
    store = Store()
    app = make_app(tmp_path)
    with app.app_context(), pytest.raises(RuntimeError, match="init_app"):
        store.Provider()


def test_default_path_is_the_instance_folder_never_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    app = make_app(tmp_path)
    store = Store(app)
    with app.app_context():
        saved = store.Provider().save(b"x", name="a.txt")
        assert saved.absolute_path() == str(tmp_path / "instance" / "uploads" / "a.txt")
    assert not (tmp_path / "uploads").exists()


def test_relative_path_resolves_against_the_instance_folder(tmp_path: Path) -> None:
    app = make_app(tmp_path, STORE_PATH="media/files")
    store = Store(app)
    with app.app_context():
        saved = store.Provider().save(b"x", name="a.txt")
    assert (tmp_path / "instance/media/files/a.txt").read_bytes() == b"x"
    assert app.test_client().get(saved.relative_url()).data == b"x"


def test_provider_accepts_short_names_dotted_paths_and_classes(tmp_path: Path) -> None:
    for spec in ["memory", "flask_store.stores.memory.MemoryStore", MemoryStore]:
        app = make_app(tmp_path, STORE_PROVIDER=spec)
        with app.app_context():
            assert isinstance(Store(app).Provider(), MemoryStore)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("STORE_ON_CONFLICT", "replace", "STORE_ON_CONFLICT must be one of"),
        ("STORE_URL_PREFIX", "files", "STORE_URL_PREFIX must be a path"),
        ("STORE_URL_PREFIX", "/", "STORE_URL_PREFIX must be a path"),
        ("STORE_CACHE_MAX_AGE", "1h", "STORE_CACHE_MAX_AGE must be a non-negative integer"),
        ("STORE_SERVE", "yes", "STORE_SERVE must be bool"),
        ("STORE_PATH", 42, "STORE_PATH must be a folder path"),
        ("STORE_PROVIDER", "builtins.dict", "is not a Flask-Store store class"),
        ("STORE_PROVIDER", 3, "STORE_PROVIDER must be a store name or class"),
    ],
)
def test_bad_configuration_names_the_key(
    tmp_path: Path, key: str, value: object, message: str
) -> None:
    with pytest.raises(NotConfiguredError, match=message):
        Store(make_app(tmp_path, **{key: value}))


@pytest.mark.parametrize("path", ["no_such_module.Store", "flask_store.stores.local.Nope", "nope"])
def test_unimportable_provider_names_the_path(tmp_path: Path, path: str) -> None:
    with pytest.raises(ProviderImportError, match=path) as caught:
        Store(make_app(tmp_path, STORE_PROVIDER=path))
    assert isinstance(caught.value, ImportError)


def test_store_path_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(NotConfiguredError, match="STORE_PATH"):
        Store(make_app(tmp_path, STORE_PATH=str(blocker / "sub")))


def test_destination_argument_of_provider(tmp_path: Path) -> None:
    app = make_app(tmp_path, STORE_PROVIDER="memory")
    store = Store(app)
    with app.test_request_context():
        saved = store.Provider(destination="avatars").save(b"x", name="me.png")
        assert saved.name == "avatars/me.png"
        assert saved.relative_url() == "/flaskstore/avatars/me.png"
        assert store.Provider().destination is None


def test_absolute_url_from_request_host_server_name_and_domain(tmp_path: Path) -> None:
    app = make_app(tmp_path, STORE_PROVIDER="memory")
    store = Store(app)
    with app.test_request_context(base_url="https://files.example.org/app"):
        saved = store.Provider().save(b"x", name="фото 1.jpg")
        assert saved.relative_url() == "/app/flaskstore/%D1%84%D0%BE%D1%82%D0%BE_1.jpg"
        assert saved.absolute_url() == (
            "https://files.example.org/app/flaskstore/%D1%84%D0%BE%D1%82%D0%BE_1.jpg"
        )
    app.config.update(SERVER_NAME="example.com", PREFERRED_URL_SCHEME="https")
    with app.app_context():
        assert (
            store.Provider().file("a.txt").absolute_url() == "https://example.com/flaskstore/a.txt"
        )


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000/flaskstore/a.txt"),
        ("https://cdn.example.com/static/", "https://cdn.example.com/static/flaskstore/a.txt"),
        ("cdn.example.com", "http://cdn.example.com/flaskstore/a.txt"),
    ],
)
def test_store_domain_keeps_its_path(tmp_path: Path, domain: str, expected: str) -> None:
    app = make_app(tmp_path, STORE_PROVIDER="memory", STORE_DOMAIN=domain)
    store = Store(app)
    with app.test_request_context():
        assert store.Provider().file("a.txt").absolute_url() == expected


def test_serve_false_registers_no_route(tmp_path: Path) -> None:
    app = make_app(tmp_path, STORE_PROVIDER="memory", STORE_SERVE=False)
    store = Store(app)
    with app.app_context():
        store.Provider().save(b"x", name="a.txt")
    assert app.test_client().get("/flaskstore/a.txt").status_code == 404


@pytest.mark.parametrize("serve_fast", [False, "auto"])
def test_the_file_routes_own_their_blueprint_name(tmp_path: Path, serve_fast: object) -> None:
    """The serving endpoint ``flask_store.serve`` names a blueprint: Flask runs the hooks of
    the app's blueprint of that name for its URLs. Flask-Store holds the name, so such a
    blueprint is refused at registration instead of guarding file URLs only when Flask
    answers them (the fast path never looked at it)."""
    app = make_app(tmp_path, STORE_SERVE_FAST=serve_fast)
    Store(app)
    theirs = Blueprint("flask_store", __name__)
    theirs.before_request(lambda: ("members only", 403))
    with pytest.raises(ValueError, match="'flask_store' is already registered"):
        app.register_blueprint(theirs)
    assert app.test_client().get("/flaskstore/missing.txt").status_code == 404
    with app.test_request_context():
        assert url_for("flask_store.serve", key="a b.txt") == "/flaskstore/a%20b.txt"


def test_a_blueprint_named_flask_store_before_init_app_is_refused(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    app.register_blueprint(Blueprint("flask_store", __name__))
    with pytest.raises(NotConfiguredError, match="blueprint named 'flask_store'"):
        Store(app)


def test_init_app_twice_on_one_app_keeps_serving(tmp_path: Path) -> None:
    app = make_app(tmp_path, STORE_STORES={"avatars": {"PROVIDER": "memory"}})
    store = Store(app)
    store.init_app(app)
    with app.test_request_context():
        store.Provider().save(b"data", name="a.txt")
        face = store.Provider("avatars").save(b"face", name="me.png").relative_url()
    client = app.test_client()
    assert client.get("/flaskstore/a.txt").data == b"data"
    assert client.get(face).data == b"face"


def test_file_wrapper_is_exported_and_rebuilt_from_a_key(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    store = Store(app)
    with app.app_context():
        saved = store.Provider().save(b"data", name="report.csv")
        again = store.Provider().file(saved.to_dict()["name"])
        assert isinstance(again, FileWrapper)
        assert again.read() == b"data"
        assert again.content_type == "text/csv"
        assert again.relative_path() == "report.csv"
