"""StoredFile columns follow the transaction, on real SQLite and a real PostgreSQL server.

Every rule of flask_store.sqla is tried against both databases: a file saved for a
transaction that rolls back is deleted, a file a row lets go of is deleted only after the
commit succeeded, a failed commit keeps the old file, savepoints roll back only their own
files, and deletes that fail after a commit are owed and retried by ``flask store prune``.
The stores are local folders, so "gone" and "kept" are checked on disk.
"""

from __future__ import annotations

import gc
import io
import json
import logging
import os
import warnings
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from PIL import Image
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship
from werkzeug.datastructures import FileStorage

from flask_store import FileWrapper, Store
from flask_store.exceptions import (
    InvalidArgumentError,
    InvalidFileError,
    InvalidImageError,
    InvalidValueError,
    NotConfiguredError,
    StoreUnavailableError,
)
from flask_store.registry import EXTENSION_KEY, get_registry
from flask_store.sqla import (
    APP_STORES_KEY,
    ImageFile,
    StoredFile,
    StoredImage,
    UnsavedFile,
    delete_files_after_commit,
)
from flask_store.sqla_deletes import journal_for
from flask_store.stores.base import BaseStore
from flask_store.stores.local import LocalStore
from flask_store.stores.memory import MemoryStore
from tests.postgres_server import postgres_url

__all__ = ["postgres_url"]  # the fixture, imported for the PostgreSQL runs


class Base(DeclarativeBase):
    pass


class Doc(Base):
    __tablename__ = "docs"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(100), unique=True)
    file: Mapped[Any] = mapped_column(StoredFile(), nullable=True)
    scan: Mapped[Any] = mapped_column(StoredFile(store="archive"), nullable=True)
    pages: Mapped[list[Page]] = relationship(cascade="all, delete-orphan")


class Page(Base):
    """A child row: deleted with its doc by the ORM cascade, or as an orphan."""

    __tablename__ = "pages"

    id: Mapped[int] = mapped_column(primary_key=True)
    doc_id: Mapped[int] = mapped_column(sa.ForeignKey("docs.id"))
    image: Mapped[Any] = mapped_column(StoredFile(), nullable=True)


class Link(Base):
    """A row whose foreign key is checked at COMMIT: the way to make a commit fail."""

    __tablename__ = "links"

    id: Mapped[int] = mapped_column(primary_key=True)
    doc_id: Mapped[int] = mapped_column(
        sa.ForeignKey("docs.id", deferrable=True, initially="DEFERRED")
    )


class Photo(Base):
    __tablename__ = "photos"

    id: Mapped[int] = mapped_column(primary_key=True)
    image: Mapped[Any] = mapped_column(
        StoredImage(thumbnails={"small": (16, 16), "card": (40, 30)}), nullable=True
    )


class OutageStore(LocalStore):
    """A local store whose deletes fail while ``failing`` is set: a store outage."""

    failing = False

    def delete(self, key: str, *, if_etag: str | None = None) -> bool:
        if self.failing:
            raise StoreUnavailableError("the store is down (test outage)")
        return super().delete(key, if_etag=if_etag)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    """An empty database with the test tables, on SQLite and on PostgreSQL."""
    yield from fresh_database(request, tmp_path, connect=_sqlite_foreign_keys)


def fresh_database(
    request: pytest.FixtureRequest, tmp_path: Path, **sqlite_events: Any
) -> Iterator[sa.Engine]:
    """An engine on an empty database with the test tables (dropped again afterwards): a
    SQLite file in ``tmp_path`` or the PostgreSQL server, as ``request.param`` says.
    ``sqlite_events`` are engine event listeners by name, for SQLite only."""
    if request.param == "sqlite":
        made = sa.create_engine(f"sqlite:///{tmp_path / 'test.db'}")
        for name, listener in sqlite_events.items():
            sa.event.listen(made, name, listener)
    else:
        url = request.getfixturevalue("postgres_url")
        made = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    Base.metadata.drop_all(made)
    Base.metadata.create_all(made)
    try:
        yield made
    finally:
        Base.metadata.drop_all(made)
        made.dispose()


def _sqlite_foreign_keys(connection: Any, record: object) -> None:
    connection.execute("PRAGMA foreign_keys=ON")


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    """An app whose default store is a local folder (deletes can be made to fail) and whose
    ``archive`` store is another folder."""
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        STORE_PROVIDER=f"{__name__}.OutageStore",
        STORE_PATH=str(tmp_path / "files"),
        STORE_STORES={"archive": {"PROVIDER": "local", "PATH": str(tmp_path / "archive")}},
    )
    Store(app)
    with app.app_context():
        yield app


@pytest.fixture
def session(engine: sa.Engine, app: Flask) -> Iterator[Session]:
    with Session(engine) as made:
        yield made


def store_of(app: Flask, name: str | None = None) -> BaseStore:
    return get_registry(app).resolve(name)


def kept(app: Flask, name: str | None = None) -> list[str]:
    """The keys the store holds (hidden working folders are not keys)."""
    return sorted(store_of(app, name).keys())


def make_png(width: int, height: int) -> bytes:
    """A real PNG of that size."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), "teal").save(out, "PNG")
    return out.getvalue()


def upload(data: bytes, filename: str, content_type: str = "") -> FileStorage:
    return FileStorage(io.BytesIO(data), filename=filename, content_type=content_type)


def committed_doc(session: Session, title: str = "a", data: bytes = b"first") -> Doc:
    doc = Doc(title=title, file=upload(data, f"{title}.txt"))
    session.add(doc)
    session.commit()
    return doc


# -- saving and reading ----------------------------------------------------------------------


def test_saved_at_flush_and_read_back_from_the_row_alone(app: Flask, session: Session) -> None:
    doc = Doc(title="report", file=upload(b"%PDF-1.7 report", "Q3 report.pdf"))
    assert isinstance(doc.file, UnsavedFile)  # nothing is stored before the flush
    assert kept(app) == []
    session.add(doc)
    session.flush()
    assert isinstance(doc.file, FileWrapper)
    key = doc.file.key
    session.commit()
    session.close()

    store_of(app).delete(key)  # the row is read without asking the store anything
    with Session(session.get_bind()) as later:
        again = later.scalars(sa.select(Doc)).one()
        assert isinstance(again.file, FileWrapper)
        assert (again.file.key, again.file.filename) == (key, "Q3 report.pdf")
        assert again.file.content_type == "application/pdf"
        assert again.file.size == len(b"%PDF-1.7 report")
        assert again.file.relative_url() == f"/flaskstore/{key}"
        assert again.scan is None


def test_document_is_small_json_naming_store_and_key(app: Flask, session: Session) -> None:
    doc = Doc(title="a", scan=UnsavedFile(b"scanned bytes", "scan.tiff"))
    session.add(doc)
    session.commit()
    raw = session.execute(sa.text("SELECT scan FROM docs")).scalar_one()
    document = json.loads(raw)
    assert document["store"] == "archive"
    assert document["filename"] == "scan.tiff"
    assert document["size"] == len(b"scanned bytes")
    assert set(document) == {"store", "key", "filename", "content_type", "size", "etag", "modified"}
    assert kept(app, "archive") == [document["key"]]
    assert kept(app) == []


def test_every_kind_of_source_is_saved(app: Flask, session: Session, tmp_path: Path) -> None:
    on_disk = tmp_path / "notes.txt"
    on_disk.write_bytes(b"from disk")
    existing = store_of(app).save(b"already stored", name="existing.txt")
    with open(on_disk, "rb") as opened:
        docs = [
            Doc(title="storage", file=upload(b"form", "form.txt")),
            Doc(title="bytes", file=b"raw bytes"),
            Doc(title="memoryview", file=memoryview(b"view")),
            Doc(title="opened", file=opened),
            Doc(title="wrapper", file=existing),
        ]
        docs[1].file = UnsavedFile(b"raw bytes", "raw.bin")
        docs[2].file = UnsavedFile(memoryview(b"view"), "view.bin")
        session.add_all(docs)
        session.commit()
    assert [doc.file.read() for doc in docs] == [
        b"form",
        b"raw bytes",
        b"view",
        b"from disk",
        b"already stored",
    ]
    assert docs[3].file.filename == "notes.txt"
    assert docs[4].file == existing


def test_bytes_without_a_name_are_refused_at_flush_and_nothing_is_left(
    app: Flask, session: Session
) -> None:
    session.add(Doc(title="a", file=b"no name"))
    with pytest.raises(InvalidFileError):
        session.flush()
    session.rollback()
    assert kept(app) == []


# -- hostile input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "junk",
    [
        "/etc/passwd",  # a str is a path on the server: never read one from a form value
        Path("/etc/passwd"),
        42,
        {"filename": "x"},
        io.StringIO("text, not bytes"),
        object(),
    ],
    ids=["str-path", "pathlike", "int", "dict", "text-stream", "object"],
)
def test_assigning_junk_raises_at_once_and_changes_nothing(
    app: Flask, session: Session, junk: object
) -> None:
    doc = committed_doc(session)
    before = doc.file
    with pytest.raises(InvalidFileError):
        doc.file = junk
    assert doc.file == before
    session.commit()
    assert kept(app) == [before.key]


@pytest.mark.parametrize(
    "source",
    ["path", "pathlike", "text-stream", "object"],
)
def test_an_unsaved_file_never_names_a_server_file(
    app: Flask, session: Session, tmp_path: Path, source: str
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"server secret")
    # An app wrapping a form's text in UnsavedFile (thinking it the content) must not let
    # the client choose a server file: the store reads a str as a path.
    junk: object = {
        "path": str(secret),
        "pathlike": secret,
        "text-stream": io.StringIO("text"),
        "object": object(),
    }[source]
    doc = committed_doc(session)
    before = doc.file
    with pytest.raises(InvalidFileError):
        doc.file = UnsavedFile(junk, "note.txt")
    session.commit()
    assert kept(app) == [before.key]


@pytest.mark.parametrize(
    "filename",
    [
        "../../../etc/passwd",
        "..\\..\\windows\\system32\\evil.dll",
        "/absolute/path.txt",
        "a\r\nContent-Type: text/html.txt",
        "nul\x00byte.txt",
        ".htaccess",
        "x" * 1000 + ".txt",
        "фото отпуск.jpg",
    ],
)
def test_hostile_filenames_stay_inside_the_store(
    app: Flask, session: Session, tmp_path: Path, filename: str
) -> None:
    doc = Doc(title="a", file=upload(b"payload", filename))
    session.add(doc)
    session.commit()
    root = (tmp_path / "files").resolve()
    on_disk = Path(doc.file.absolute_path()).resolve()
    assert on_disk.is_relative_to(root)
    assert on_disk.read_bytes() == b"payload"
    assert "/" not in doc.file.key and "\\" not in doc.file.key and "\x00" not in doc.file.key
    assert not doc.file.key.startswith(".")
    assert kept(app) == [doc.file.key]
    assert not (tmp_path / "etc").exists()


@pytest.mark.parametrize(
    "stored",
    [
        '{"store":"default","key":"../../etc/passwd","filename":"x","content_type":"text/plain",'
        '"size":1,"etag":"e","modified":"2026-01-01T00:00:00+00:00"}',
        '{"store":"default","key":"a.txt","filename":"x","content_type":"text/plain",'
        '"size":-1,"etag":"e","modified":"2026-01-01T00:00:00+00:00"}',
        '{"store":"default","key":"a.txt"}',
        '{"store":5,"key":["a"]}',
        "{not json",
        "../../etc/passwd",
        '{"store":' + "[" * 100_000 + "]" * 100_000 + "}",  # json.loads recurses per level
        '{"store":"default","key":"a.png","filename":"x","content_type":"image/png",'
        '"size":1,"etag":"e","modified":"2026-01-01T00:00:00+00:00","thumbnails":{"s":'
        '{"store":"default","key":"../../etc/passwd","filename":"x","content_type":"image/png",'
        '"size":1,"etag":"e","modified":"2026-01-01T00:00:00+00:00"}}}',
        # A lone surrogate: read back, then no database could store the document again.
        '{"store":"default","key":"a.txt","filename":"a\\ud800.txt","content_type":"text/plain",'
        '"size":1,"etag":"e","modified":"2026-01-01T00:00:00+00:00"}',
        '{"store":"default","key":"a.png","filename":"x","content_type":"image/png",'
        '"size":1,"etag":"e","modified":"2026-01-01T00:00:00+00:00","thumbnails":{"\\ud800":'
        '{"store":"default","key":"a.s.png","filename":"x","content_type":"image/png",'
        '"size":1,"etag":"e","modified":"2026-01-01T00:00:00+00:00"}}}',
    ],
    ids=[
        "key-outside-the-store",
        "negative-size",
        "missing-fields",
        "wrong-types",
        "not-json",
        "bare-key-outside-the-store",
        "nested-too-deep",
        "thumbnail-outside-the-store",
        "lone-surrogate",
        "lone-surrogate-thumbnail-name",
    ],
)
def test_a_tampered_row_is_refused_when_read(session: Session, stored: str) -> None:
    session.execute(
        sa.text("INSERT INTO docs (id, title, file) VALUES (1, 'a', :f)"), {"f": stored}
    )
    with pytest.raises(InvalidValueError, match="StoredFile column holds"):
        session.scalars(sa.select(Doc)).one()


def test_an_empty_form_field_is_refused_at_flush(app: Flask, session: Session) -> None:
    session.add(Doc(title="a", file=FileStorage(io.BytesIO(b""), filename="")))
    with pytest.raises(InvalidFileError, match="no file was chosen"):
        session.flush()
    session.rollback()
    assert kept(app) == []


def test_a_core_insert_cannot_smuggle_bytes_past_the_flush(app: Flask, session: Session) -> None:
    with pytest.raises(sa.exc.StatementError) as raised:
        session.execute(sa.insert(Doc).values(title="a", file=b"bytes"))
    assert isinstance(raised.value.orig, InvalidFileError)
    session.rollback()
    assert kept(app) == []


# -- rollback leaks nothing ----------------------------------------------------------------------


def test_rollback_deletes_every_file_saved_in_the_transaction(app: Flask, session: Session) -> None:
    doc = committed_doc(session)
    original = doc.file.key
    doc.file = upload(b"second", "second.txt")
    session.add(Doc(title="b", file=upload(b"new row", "b.txt"), scan=upload(b"s", "s.txt")))
    session.flush()
    assert len(kept(app)) == 3 and len(kept(app, "archive")) == 1
    session.rollback()
    assert kept(app) == [original]
    assert kept(app, "archive") == []
    assert doc.file.key == original


def test_closing_the_session_without_commit_is_a_rollback(app: Flask, engine: sa.Engine) -> None:
    with Session(engine) as session:
        session.add(Doc(title="a", file=upload(b"x", "x.txt")))
        session.flush()
        assert len(kept(app)) == 1
    assert kept(app) == []


def test_a_failed_flush_deletes_what_it_saved_even_without_rollback(
    app: Flask, session: Session
) -> None:
    committed_doc(session, "taken")
    session.add(Doc(title="taken", file=upload(b"dup", "dup.txt")))  # unique title: refused
    with pytest.raises(sa.exc.IntegrityError):
        session.flush()
    assert len(kept(app)) == 1  # the duplicate's file is gone already
    session.rollback()
    assert len(kept(app)) == 1


def test_a_row_retried_after_a_failed_commit_saves_its_file_again(
    app: Flask, session: Session
) -> None:
    committed_doc(session, "taken")
    doc = Doc(title="taken", file=upload(b"the upload", "up.txt"))  # unique title: refused
    session.add(doc)
    with pytest.raises(sa.exc.IntegrityError):
        session.commit()
    session.rollback()  # the file is deleted; the row kept a FileWrapper naming it
    assert isinstance(doc.file, UnsavedFile)
    doc.title = "free"
    session.add(doc)
    session.commit()
    assert doc.file.read() == b"the upload"
    assert len(kept(app)) == 2


def test_a_row_added_again_after_its_savepoint_rolled_back_saves_its_file_again(
    app: Flask, session: Session
) -> None:
    doc = Doc(title="a", file=upload(b"the upload", "up.txt"))
    with session.begin_nested() as savepoint:
        session.add(doc)
        session.flush()
        savepoint.rollback()
    assert kept(app) == []
    session.add(doc)
    session.commit()
    session.expire_all()
    assert session.scalars(sa.select(Doc)).one().file.read() == b"the upload"


def test_a_detached_row_merged_after_its_session_closed_saves_its_file_again(
    app: Flask, session: Session
) -> None:
    doc = committed_doc(session)
    first = doc.file.key
    doc.file = upload(b"second", "second.txt")
    session.flush()
    session.close()  # no commit: the second file is deleted, the detached row still names it
    assert kept(app) == [first]
    with Session(session.get_bind()) as later:
        later.merge(doc)
        later.commit()
        again = later.scalars(sa.select(Doc)).one()
        assert again.file.read() == b"second"
        assert kept(app) == [again.file.key]


# -- deletes wait for the commit -----------------------------------------------------------------


def test_replaced_file_is_deleted_only_after_commit(app: Flask, session: Session) -> None:
    doc = committed_doc(session)
    old = doc.file.key
    doc.file = upload(b"second", "second.txt")
    session.flush()
    new = doc.file.key
    assert kept(app) == sorted([old, new])  # flushed, not committed: the old file stays
    session.commit()
    assert kept(app) == [new]


@pytest.mark.parametrize("how", ["set-to-none", "session-delete", "orphan", "cascade"])
def test_let_go_files_are_deleted_after_commit(app: Flask, session: Session, how: str) -> None:
    doc = committed_doc(session)
    doc.pages.append(Page(image=upload(b"page", "page.png")))
    session.commit()
    page_key = doc.pages[0].image.key
    file_key = doc.file.key
    session.expire_all()  # nothing is loaded: the events must load what they need
    target = session.scalars(sa.select(Doc)).one()
    if how == "set-to-none":
        target.file = None
        expected = [page_key]
    elif how == "session-delete":
        session.delete(target.pages[0])
        expected = [file_key]
    elif how == "orphan":
        target.pages.clear()
        expected = [file_key]
    else:
        session.delete(target)
        expected = []
    session.flush()
    assert kept(app) == sorted([file_key, page_key])
    session.commit()
    assert kept(app) == expected


def test_deleting_a_row_after_reassigning_it_deletes_the_committed_file(
    app: Flask, session: Session
) -> None:
    doc = committed_doc(session)
    doc.file = upload(b"second", "second.txt")  # not flushed: the row goes before it is
    session.delete(doc)
    session.commit()
    assert kept(app) == []


def test_reassigning_the_same_file_deletes_nothing(app: Flask, session: Session) -> None:
    doc = committed_doc(session)
    doc.file = store_of(app).file(doc.file.key)
    session.commit()
    assert kept(app) == [doc.file.key]


@pytest.mark.parametrize("flushed_between", [False, True])
def test_a_file_moved_to_another_row_is_kept(
    app: Flask, session: Session, flushed_between: bool
) -> None:
    draft = committed_doc(session, "draft")
    final = committed_doc(session, "final", b"old final")
    moved, replaced = draft.file.key, final.file.key
    final.file = draft.file  # the draft's attachment is promoted...
    if flushed_between:
        session.flush()
    draft.file = None  # ...and the draft lets go of it
    session.commit()
    assert kept(app) == [moved]  # the final row's old file went, the moved one stays
    assert final.file.read() == b"first"
    assert replaced not in kept(app)


def test_a_file_moved_to_a_row_deleted_with_its_old_row_is_kept(
    app: Flask, session: Session
) -> None:
    draft = committed_doc(session, "draft")
    moved = draft.file.key
    session.add(Doc(title="final", file=draft.file))
    session.delete(draft)
    session.commit()
    assert kept(app) == [moved]


def test_going_back_to_the_old_file_keeps_it(app: Flask, session: Session) -> None:
    doc = committed_doc(session)
    old = doc.file
    doc.file = upload(b"second", "second.txt")
    session.flush()
    doc.file = old  # the app undoes the change before committing
    session.commit()
    assert kept(app) == [old.key]
    assert doc.file.read() == b"first"


class Pipe(io.RawIOBase):
    """A binary stream that cannot seek back, like a socket or a pipe."""

    def __init__(self, data: bytes) -> None:
        self.rest = data

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), len(self.rest))
        buffer[:count], self.rest = self.rest[:count], self.rest[count:]
        return count


@pytest.mark.parametrize("flushed_between", [False, True])
def test_one_upload_assigned_to_two_rows_is_saved_whole_for_each(
    app: Flask, session: Session, flushed_between: bool
) -> None:
    unsaved = UnsavedFile(upload(b"shared upload", "up.txt"), "up.txt")
    first = Doc(title="a", file=unsaved)
    session.add(first)
    if flushed_between:
        session.flush()
    second = Doc(title="b", file=unsaved)  # the second save read the spent stream: b""
    session.add(second)
    session.commit()
    assert first.file.read() == second.file.read() == b"shared upload"
    assert first.file.key != second.file.key  # each row owns its file
    first.file = None
    session.commit()
    assert kept(app) == [second.file.key]


def test_a_stream_that_cannot_seek_back_is_not_saved_twice(app: Flask, session: Session) -> None:
    unsaved = UnsavedFile(Pipe(b"read once"), "once.txt")
    session.add(Doc(title="a", file=unsaved))
    session.flush()
    session.add(Doc(title="b", file=unsaved))
    with pytest.raises(InvalidFileError, match="cannot be read again"):
        session.flush()
    session.rollback()
    assert kept(app) == []


def test_a_closed_file_saved_again_raises_an_invalid_file_error(
    app: Flask, session: Session, tmp_path: Path
) -> None:
    on_disk = tmp_path / "notes.txt"
    on_disk.write_bytes(b"from disk")
    with open(on_disk, "rb") as opened:
        unsaved = UnsavedFile(opened, "notes.txt")
        session.add(Doc(title="a", file=unsaved))
        session.flush()
    session.add(Doc(title="b", file=unsaved))  # seeking the closed file raised ValueError
    with pytest.raises(InvalidFileError, match="cannot be read again"):
        session.flush()
    session.rollback()
    assert kept(app) == []


def test_a_moved_file_let_go_of_again_is_deleted(app: Flask, session: Session) -> None:
    draft = committed_doc(session, "draft")
    final = committed_doc(session, "final", b"old final")
    final.file = draft.file
    draft.file = None
    session.flush()
    final.file = None  # nobody holds it any more
    session.commit()
    assert kept(app) == []


@pytest.mark.parametrize("how", ["set-to-none", "flushed-then-deleted", "deleted-unflushed"])
def test_a_file_copied_to_a_row_and_taken_away_again_stays_with_its_first_row(
    app: Flask, session: Session, how: str
) -> None:
    owner = committed_doc(session, "owner")
    other = committed_doc(session, "other", b"other")
    shared, others = owner.file.key, other.file.key
    other.file = owner.file  # a copy: the owner keeps naming the file
    if how == "set-to-none":
        session.flush()
        other.file = None
    elif how == "flushed-then-deleted":
        session.flush()
        session.delete(other)
    else:
        session.delete(other)  # the copy never reached the database
    session.commit()
    assert kept(app) == [shared]  # the owner's file was deleted while the owner named it
    assert owner.file.read() == b"first"
    assert others not in kept(app)


def test_failed_commit_keeps_the_old_file_constraint_at_commit(
    app: Flask, session: Session
) -> None:
    doc = committed_doc(session)
    old = doc.file.key
    doc.file = upload(b"second", "second.txt")
    session.add(Link(doc_id=987654))  # the deferred foreign key fails at COMMIT
    with pytest.raises(sa.exc.IntegrityError):
        session.commit()
    session.rollback()
    assert kept(app) == [old]
    assert doc.file.key == old
    assert doc.file.read() == b"first"


def test_failed_commit_keeps_the_old_file_before_commit_raises(
    app: Flask, session: Session
) -> None:
    doc = committed_doc(session)
    old = doc.file.key

    def refuse(failing: Session) -> None:
        raise RuntimeError("refused by a before_commit hook")

    doc.file = None
    session.flush()  # the row lets go of the file in the database already
    sa.event.listen(session, "before_commit", refuse)
    with pytest.raises(RuntimeError):
        session.commit()
    sa.event.remove(session, "before_commit", refuse)
    assert kept(app) == [old]
    session.rollback()
    assert kept(app) == [old]
    assert session.scalars(sa.select(Doc)).one().file.key == old


# -- savepoints -----------------------------------------------------------------------------------


def test_savepoint_rollback_deletes_only_its_own_files(app: Flask, session: Session) -> None:
    doc = committed_doc(session)
    first = doc.file.key
    outer = Doc(title="outer", file=upload(b"outer", "outer.txt"))
    session.add(outer)
    session.flush()
    outer_key = outer.file.key
    savepoint = session.begin_nested()
    doc.file = upload(b"inner", "inner.txt")
    session.add(Doc(title="inner", file=upload(b"inner row", "inner-row.txt")))
    session.flush()
    assert len(kept(app)) == 4
    savepoint.rollback()
    assert kept(app) == sorted([first, outer_key])  # the savepoint's two files are gone
    session.commit()
    assert kept(app) == sorted([first, outer_key])  # and the first file was not let go of
    assert doc.file.key == first


def test_released_savepoint_files_follow_the_outer_transaction(
    app: Flask, session: Session
) -> None:
    doc = committed_doc(session)
    first = doc.file.key
    with session.begin_nested():
        doc.file = upload(b"inner", "inner.txt")
    session.flush()
    assert len(kept(app)) == 2
    session.rollback()
    assert kept(app) == [first]


def test_savepoint_that_replaces_then_commits(app: Flask, session: Session) -> None:
    doc = committed_doc(session)
    with session.begin_nested():
        doc.file = upload(b"inner", "inner.txt")
    session.commit()
    assert kept(app) == [doc.file.key]
    assert doc.file.read() == b"inner"


# -- deletes that fail after the commit ----------------------------------------------------------


def test_delete_failing_after_commit_is_logged_owed_and_pruned(
    app: Flask, session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    doc = committed_doc(session)
    old = doc.file.key
    store = store_of(app)
    assert isinstance(store, OutageStore)
    doc.file = upload(b"second", "second.txt")
    store.failing = True
    with caplog.at_level(logging.ERROR, logger="flask_store"):
        session.commit()  # does not raise
    assert f"Could not delete default/{old}" in caplog.text
    assert "flask store prune" in caplog.text
    assert sorted(kept(app)) == sorted([old, doc.file.key])
    journal = journal_for(store)
    assert journal is not None
    assert [owed.key for owed in journal.entries()] == [old]

    result = app.test_cli_runner().invoke(args=["store", "prune"])
    assert result.exit_code == 1, result.output  # still down: the entry stays
    assert [owed.key for owed in journal.entries()] == [old]

    store.failing = False
    result = app.test_cli_runner().invoke(args=["store", "prune"])
    assert result.exit_code == 0, result.output
    assert "1 owed delete(s)" in result.output
    assert kept(app) == [doc.file.key]
    assert list(journal.entries()) == []


def test_owed_delete_never_takes_a_newer_file_saved_under_the_key(
    app: Flask, session: Session
) -> None:
    doc = committed_doc(session)
    old = doc.file.key
    store = store_of(app)
    assert isinstance(store, OutageStore)
    doc.file = None
    store.failing = True
    session.commit()
    store.failing = False
    store.put(old, b"a newer file under the same key", overwrite=True)
    result = app.test_cli_runner().invoke(args=["store", "prune"])
    assert result.exit_code == 0, result.output
    assert store.read(old) == b"a newer file under the same key"
    journal = journal_for(store)
    assert journal is not None and list(journal.entries()) == []


def test_rollback_delete_failing_is_owed_too(app: Flask, session: Session) -> None:
    store = store_of(app)
    assert isinstance(store, OutageStore)
    session.add(Doc(title="a", file=upload(b"x", "x.txt")))
    session.flush()
    store.failing = True
    session.rollback()  # does not raise
    store.failing = False
    journal = journal_for(store)
    assert journal is not None and len(list(journal.entries())) == 1
    assert app.test_cli_runner().invoke(args=["store", "prune"]).exit_code == 0
    assert kept(app) == []


# -- bulk deletes ----------------------------------------------------------------------------------


def test_bulk_delete_with_the_helper_deletes_files_after_commit(
    app: Flask, session: Session
) -> None:
    for title in ("a", "b", "keep"):
        committed_doc(session, title)
    condition = Doc.title.in_(["a", "b"])
    assert delete_files_after_commit(session, sa.select(Doc).where(condition)) == 2
    session.execute(sa.delete(Doc).where(condition))
    assert len(kept(app)) == 3
    session.commit()
    assert [key.partition("_")[0].partition(".")[0] for key in kept(app)] == ["keep"]


def test_bulk_delete_helper_then_rollback_keeps_the_files(app: Flask, session: Session) -> None:
    committed_doc(session)
    delete_files_after_commit(session, sa.select(Doc))
    session.execute(sa.delete(Doc))
    session.rollback()
    assert len(kept(app)) == 1


# -- finding the stores ----------------------------------------------------------------------------


def test_the_column_finds_the_apps_stores_where_the_registry_keeps_them() -> None:
    assert APP_STORES_KEY == EXTENSION_KEY


def test_a_store_name_outside_an_app_says_what_to_do(engine: sa.Engine) -> None:
    with Session(engine) as session:
        session.add(Doc(title="a", file=upload(b"x", "x.txt")))
        with pytest.raises(NotConfiguredError, match="app_context"):
            session.flush()


def test_a_store_object_works_without_flask(tmp_path: Path) -> None:
    memory = MemoryStore()

    class Plain(DeclarativeBase):
        pass

    class Note(Plain):
        __tablename__ = "notes"
        id: Mapped[int] = mapped_column(primary_key=True)
        body: Mapped[Any] = mapped_column(StoredFile(store=memory), nullable=True)

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'plain.db'}")
    Plain.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(Note(body=upload(b"plain", "plain.txt")))
        session.commit()
    with Session(engine) as session:
        note = session.scalars(sa.select(Note)).one()
        assert note.body.read() == b"plain"
        note.body = None
        session.commit()
    assert list(memory.keys()) == []
    engine.dispose()


def test_rows_of_flask_store_0_0_hold_a_bare_key(app: Flask, session: Session) -> None:
    store_of(app).put("legacy/old.png", b"\x89PNG old")
    session.execute(
        sa.text("INSERT INTO docs (id, title, file) VALUES (1, 'old', 'legacy/old.png')")
    )
    doc = session.scalars(sa.select(Doc)).one()
    assert doc.file.key == "legacy/old.png"
    assert doc.file.read() == b"\x89PNG old"
    doc.file = upload(b"new", "new.txt")
    session.commit()
    assert kept(app) == [doc.file.key]


def test_overwriting_store_never_overwrites_a_rows_old_file(app: Flask, session: Session) -> None:
    store = store_of(app)
    store.on_conflict = "overwrite"
    doc = committed_doc(session, "a", b"first")
    first = doc.file.key
    doc.file = upload(b"second", "a.txt")  # the same name as the first
    session.flush()
    assert doc.file.key != first  # renamed: the old file must outlive a failed commit
    assert store.read(first) == b"first"
    session.rollback()
    assert session.scalars(sa.select(Doc)).one().file.read() == b"first"


def test_owed_deletes_are_kept_in_the_instance_folder(app: Flask) -> None:
    journal = journal_for(store_of(app))
    assert journal is not None
    assert Path(journal.folder).is_relative_to(Path(app.instance_path))
    assert os.path.basename(journal.folder) == "default"


# -- images ---------------------------------------------------------------------------------


def test_image_saved_with_thumbnails_listed_in_the_row(app: Flask, session: Session) -> None:
    photo = Photo(image=upload(make_png(80, 60), "holiday.png"))
    session.add(photo)
    session.commit()
    session.expire_all()
    again = session.scalars(sa.select(Photo)).one()
    assert isinstance(again.image, ImageFile)
    assert again.image.filename == "holiday.png"
    assert set(again.image.thumbnails) == {"small", "card"}
    small = again.image.thumbnails["small"]
    assert isinstance(small, FileWrapper) and small.content_type == "image/png"
    assert small.read().startswith(b"\x89PNG")
    assert kept(app) == sorted([again.image.key, *(t.key for t in again.image.thumbnails.values())])
    raw = json.loads(session.execute(sa.text("SELECT image FROM photos")).scalar_one())
    assert set(raw["thumbnails"]) == {"small", "card"}


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (b"just text, named like an image", "fake.png"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "x.svg"),
        (make_png(40, 40)[:60], "truncated.png"),
    ],
    ids=["text-as-png", "svg", "truncated"],
)
def test_not_an_image_is_refused_at_flush_and_nothing_is_stored(
    app: Flask, session: Session, data: bytes, filename: str
) -> None:
    session.add(Photo(image=upload(data, filename, "image/png")))
    with pytest.raises(InvalidImageError, match=filename.replace(".", r"\.")):
        session.flush()
    assert kept(app) == []
    session.rollback()
    assert kept(app) == []


def test_replaced_image_goes_with_its_thumbnails_after_commit(app: Flask, session: Session) -> None:
    photo = Photo(image=upload(make_png(80, 60), "one.png"))
    session.add(photo)
    session.commit()
    first = kept(app)
    assert len(first) == 3
    photo.image = upload(make_png(60, 80), "two.png")
    session.flush()
    assert len(kept(app)) == 6
    session.commit()
    second = kept(app)
    assert len(second) == 3 and not set(first) & set(second)
    session.delete(photo)
    session.commit()
    assert kept(app) == []


def test_rolled_back_image_leaves_no_thumbnail(app: Flask, session: Session) -> None:
    session.add(Photo(image=upload(make_png(80, 60), "one.png")))
    session.flush()
    assert len(kept(app)) == 3
    session.rollback()
    assert kept(app) == []


def test_a_row_holding_bytes_is_refused_not_read_as_a_key(app: Flask, tmp_path: Path) -> None:
    # SQLite keeps a BLOB written into a TEXT column as bytes (PostgreSQL refuses it); str()
    # of it is "b'...'", which named a file "b'legacy.png'" instead of being refused.
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'blob.db'}")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.execute(
            sa.text("INSERT INTO docs (id, title, file) VALUES (1, 'a', :f)"), {"f": b"legacy.png"}
        )
        assert session.execute(sa.text("SELECT file FROM docs")).scalar_one() == b"legacy.png"
        with pytest.raises(InvalidValueError, match="StoredFile column holds"):
            session.scalars(sa.select(Doc)).one()
    engine.dispose()


def test_an_image_moved_to_a_file_column_keeps_its_thumbnails_with_it(
    app: Flask, session: Session
) -> None:
    photo = Photo(image=upload(make_png(80, 60), "one.png"))
    session.add(photo)
    session.commit()
    assert len(kept(app)) == 3
    doc = Doc(title="a", file=photo.image)  # the row's document names the thumbnails too
    photo.image = None
    session.add(doc)
    session.commit()
    assert len(kept(app)) == 3
    session.expire_all()
    doc.file = None
    session.commit()
    assert kept(app) == []  # the thumbnails were read back as nothing and stayed for good


def test_a_file_replaced_in_place_is_described_anew_and_deleted_when_let_go(
    app: Flask, session: Session
) -> None:
    doc = committed_doc(session)
    key = doc.file.key
    doc.file = store_of(app).replace(key, upload(b"second version", "second.txt"))
    session.commit()
    session.expire_all()
    assert doc.file.size == len(b"second version")  # the row kept the first version's document
    doc.file = None
    session.commit()
    assert kept(app) == []  # deleting "the first version" found a newer one and kept it


@pytest.mark.parametrize(
    "statement",
    [sa.select(Doc.id), sa.select(Doc.file), sa.select(Doc, Page), sa.select(sa.literal(1))],
    ids=["ids", "column-values", "two-models", "no-model"],  # two models: Page's files were missed
)
def test_bulk_delete_helper_refuses_a_select_of_anything_but_rows(
    app: Flask, session: Session, statement: sa.Select[Any]
) -> None:
    committed_doc(session)
    with pytest.raises(InvalidArgumentError, match="select\\(Doc\\)"):
        delete_files_after_commit(session, statement)
    session.commit()
    assert len(kept(app)) == 1


@pytest.mark.parametrize(
    "thumbnails",
    [{"s": "ab"}, {"s": (10,)}, {"s": None}, {"s": (1.5, 2)}, {"s": (True, 2)}, {"s": (0, 9)}],
    ids=["text", "one-side", "none", "float", "bool", "zero"],
)
def test_an_image_column_with_bad_thumbnail_sizes_is_refused_when_defined(
    thumbnails: dict[str, Any],
) -> None:
    # These raised ValueError, IndexError or TypeError, were rounded to other sizes, or
    # were accepted until every upload failed at the flush.
    with pytest.raises(InvalidArgumentError, match="thumbnail"):
        StoredImage(thumbnails=thumbnails)


def test_selecting_an_image_column_is_cached_without_a_warning() -> None:
    """SQLAlchemy caches compiled statements only for types that say they may be
    (``cache_ok``, not inherited): without it every query of an image column warned and
    was compiled again."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", sa.exc.SAWarning)
        key = sa.select(Photo.image)._generate_cache_key()  # what the statement cache uses
    assert key is not None


def test_an_image_column_with_thumbnails_not_a_mapping_is_refused_when_defined() -> None:
    with pytest.raises(InvalidArgumentError, match="thumbnails="):
        StoredImage(thumbnails=[("s", (1, 1))])  # type: ignore[arg-type]


def test_an_image_row_added_again_after_a_rollback_saves_image_and_thumbnails_again(
    app: Flask, session: Session
) -> None:
    photo = Photo(id=1, image=upload(make_png(80, 60), "one.png"))
    session.add(photo)
    session.flush()
    assert len(kept(app)) == 3
    session.rollback()
    assert kept(app) == []
    session.add(photo)
    session.commit()
    assert len(kept(app)) == 3
    assert photo.image.read().startswith(b"\x89PNG")


def test_a_flushed_upload_is_not_kept_in_memory_until_the_commit(
    app: Flask, session: Session
) -> None:
    # An import that flushes row by row and commits once must not hold every upload (its
    # bytes, its open file) until the commit: once saved and let go of by the app, it goes.
    source = io.BytesIO(b"a large upload")
    still_held = weakref.ref(source)
    session.add(Doc(title="a", file=UnsavedFile(source, "import.txt")))
    session.flush()
    del source
    gc.collect()
    assert still_held() is None
    # A row the app keeps drops its upload at the commit (it kept it for a rollback).
    source = io.BytesIO(b"another upload")
    still_held = weakref.ref(source)
    doc = Doc(title="b", file=UnsavedFile(source, "kept.txt"))
    session.add(doc)
    session.flush()
    del source
    session.commit()
    gc.collect()
    assert still_held() is None
    assert doc.file.read() == b"another upload"
    assert len(kept(app)) == 2


@pytest.mark.parametrize("how", ["set-to-none", "rollback"])
def test_a_file_the_app_saved_itself_stays_the_apps_until_a_row_committed_it(
    app: Flask, session: Session, how: str
) -> None:
    # A view saves the upload itself, puts it on a new row, then a validation error drops
    # it. The column cannot tell that file from another row's file copied here (deleting
    # that one lost data, 534f456), so it keeps it either way; the view deletes it, or
    # assigns the upload itself to have the transaction own it.
    saved = store_of(app).save(upload(b"mine", "mine.txt"))
    doc = Doc(title="a", file=saved)
    session.add(doc)
    session.flush()
    if how == "set-to-none":
        doc.file = None
        session.commit()
    else:
        session.rollback()
    assert kept(app) == [saved.key]
    doc = Doc(title="b", file=upload(b"mine", "mine.txt"))  # the upload, not a FileWrapper
    session.add(doc)
    session.flush()
    doc.file = None
    session.commit()
    assert kept(app) == [saved.key]
