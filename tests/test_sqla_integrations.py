"""StoredFile columns with the tools around them: Flask-SQLAlchemy's request-scoped session
(SQLite and PostgreSQL), a queued store's transfer, and Alembic's autogenerate."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata, produce_migrations, render_python_code
from alembic.migration import MigrationContext
from alembic.operations import Operations
from flask import Flask, request
from flask_sqlalchemy import SQLAlchemy
from werkzeug.datastructures import FileStorage

import flask_store.sqla
from flask_store import Store
from flask_store.registry import get_registry
from flask_store.sqla import StoredFile, StoredImage
from flask_store.stores.queued import QueuedStore
from tests.postgres_server import postgres_url

__all__ = ["postgres_url"]  # the fixture, imported for the PostgreSQL runs

db = SQLAlchemy()


class Invoice(db.Model):  # type: ignore[name-defined,misc]
    id = db.Column(db.Integer, primary_key=True)
    pdf = db.Column(StoredFile())
    scan = db.Column(StoredFile(store="archive"))
    photo = db.Column(StoredImage(thumbnails={"small": (64, 64), "card": (400, 300)}))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'app.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture
def app(database_uri: str, tmp_path: Path) -> Iterator[Flask]:
    """An app on Flask-SQLAlchemy with views that save, replace and forget to commit."""
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        SQLALCHEMY_DATABASE_URI=database_uri,
        STORE_PATH=str(tmp_path / "files"),
        STORE_STORES={"archive": {"PROVIDER": "memory"}},
    )
    db.init_app(app)
    Store(app)

    @app.post("/invoices")
    def create() -> str:
        invoice = Invoice(pdf=request.files["pdf"])
        db.session.add(invoice)
        db.session.commit()
        return str(invoice.id)

    @app.post("/invoices/<int:number>")
    def replace(number: int) -> str:
        invoice = db.get_or_404(Invoice, number)
        invoice.pdf = request.files["pdf"]
        if request.form.get("commit") == "no":
            db.session.flush()  # saved, then the request ends without a commit
            return "not committed"
        db.session.commit()
        return invoice.pdf.key

    with app.app_context():
        db.drop_all()
        db.create_all()
    try:
        yield app
    finally:
        with app.app_context():
            db.drop_all()
            db.engine.dispose()


def keys(app: Flask) -> list[str]:
    with app.app_context():
        return sorted(get_registry(app).resolve().keys())


def pdf(name: str, data: bytes = b"%PDF-1.7") -> dict[str, Any]:
    return {"pdf": (io.BytesIO(data), name)}


def test_flask_sqlalchemy_request_that_never_commits_leaks_nothing(app: Flask) -> None:
    client = app.test_client()
    created = client.post("/invoices", data=pdf("march.pdf"))
    assert created.status_code == 200
    first = keys(app)
    assert len(first) == 1

    # The request-scoped session is removed at the end of the request: a rollback.
    response = client.post(f"/invoices/{created.text}", data={**pdf("april.pdf"), "commit": "no"})
    assert response.text == "not committed"
    assert keys(app) == first


def test_flask_sqlalchemy_replace_deletes_the_old_file_after_commit(app: Flask) -> None:
    client = app.test_client()
    number = client.post("/invoices", data=pdf("march.pdf")).text
    new_key = client.post(f"/invoices/{number}", data=pdf("april.pdf", b"%PDF new")).text
    assert keys(app) == [new_key]
    with app.app_context():
        invoice = db.session.get(Invoice, int(number))
        assert invoice is not None
        assert (invoice.pdf.filename, invoice.pdf.read()) == ("april.pdf", b"%PDF new")


def queued_invoice_app(tmp_path: Path) -> Flask:
    """An app whose default store is queued (local folder -> local "remote" folder, with
    delayed transfers), with the invoice table created."""
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'queued.db'}",
        STORE_PROVIDER="queued",
        STORE_QUEUED_LOCAL={"PROVIDER": "local", "PATH": str(tmp_path / "local")},
        STORE_QUEUED_REMOTE={"PROVIDER": "local", "PATH": str(tmp_path / "remote")},
        STORE_TRANSFER_DELAYED=True,
    )
    db.init_app(app)
    Store(app)
    with app.app_context():
        db.create_all()
    return app


def committed_invoice() -> Invoice:
    """A committed invoice with a PDF (inside an app context)."""
    invoice = Invoice(pdf=FileStorage(io.BytesIO(b"%PDF"), filename="a.pdf"))
    db.session.add(invoice)
    db.session.commit()
    return invoice


def test_queued_store_file_on_a_row_transfers_on_request(tmp_path: Path) -> None:
    app = queued_invoice_app(tmp_path)
    with app.app_context():
        invoice = committed_invoice()
        store = get_registry(app).resolve()
        assert isinstance(store, QueuedStore)
        assert not (tmp_path / "remote" / invoice.pdf.key).exists()
        invoice.pdf.transfer()
        assert invoice.pdf.wait(timeout=30) == "done"
        assert (tmp_path / "remote" / invoice.pdf.key).read_bytes() == b"%PDF"
        db.session.delete(invoice)
        db.session.commit()
        assert list(store.keys()) == []
        db.engine.dispose()


# -- Alembic -------------------------------------------------------------------------------------


def test_alembic_renders_the_columns_with_nothing_but_flask_store_sqla(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'migrated.db'}")
    with engine.connect() as connection:
        context = MigrationContext.configure(connection)
        migration = produce_migrations(context, db.metadata)
        code = render_python_code(migration.upgrade_ops)
    assert "flask_store.sqla.StoredFile()" in code
    assert "flask_store.sqla.StoredFile(store='archive')" in code
    assert (
        "flask_store.sqla.StoredImage(thumbnails={'small': (64, 64), 'card': (400, 300)})" in code
    )

    # The migration runs with only flask_store.sqla imported: no app, no model.
    with engine.begin() as connection:
        operations = Operations(MigrationContext.configure(connection))
        namespace = {"op": operations, "sa": sa, "flask_store": flask_store}
        exec(compile("def upgrade():\n" + code, "migration", "exec"), namespace)
        namespace["upgrade"]()
    columns = {c["name"]: c["type"] for c in sa.inspect(engine).get_columns("invoice")}
    assert all(isinstance(columns[name], sa.Text) for name in ("pdf", "scan", "photo"))
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), db.metadata) == []
    engine.dispose()


def test_rendered_types_rebuild_equal_columns() -> None:
    for column in Invoice.__table__.columns:
        if isinstance(column.type, StoredFile):
            rebuilt = eval(repr(column.type), {**vars(flask_store.sqla)})
            assert type(rebuilt) is type(column.type)
            assert repr(rebuilt) == repr(column.type)
            assert rebuilt.store == column.type.store


def test_queued_store_file_transferred_then_deleted_from_a_fresh_row(tmp_path: Path) -> None:
    app = queued_invoice_app(tmp_path)
    with app.app_context():
        invoice = committed_invoice()
        number = invoice.id
        invoice.pdf.transfer()
        assert invoice.pdf.wait(timeout=30) == "done"
        db.session.remove()  # a later request: the row's document, as saved, is all it knows
    with app.app_context():
        store = get_registry(app).resolve()
        db.session.delete(db.session.get(Invoice, number))
        db.session.commit()
        assert list(store.keys()) == []
        assert list((tmp_path / "remote").iterdir()) == []
        db.engine.dispose()
