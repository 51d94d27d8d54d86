"""ORM bulk DELETE and UPDATE statements let go of the files of the rows they touch, on real
SQLite and a real PostgreSQL server.

``session.execute(delete(Doc).where(...))`` and ``session.execute(update(Doc).values(file=
...))`` change rows without loading them, so no flush or mapper event sees their files. The
``do_orm_execute`` listener of :mod:`flask_store.sqla` selects the files the statement takes
off its rows (with the statement's own WHERE) and lets go of them as a flush would: deleted
after the commit, kept if the transaction or savepoint rolls back or the statement fails.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, aliased, mapped_column

from flask_store.sqla import KEEP_FILES, StoredFile, delete_files_after_commit
from tests.postgres_server import postgres_url
from tests.test_sqla import (
    Doc,
    Link,
    OutageStore,
    Photo,
    app,
    engine,
    kept,
    make_png,
    session,
    store_of,
    upload,
)
from tests.test_sqla_savepoints import savepoint_database

__all__ = ["app", "engine", "postgres_url", "session"]  # fixtures, imported for the tests here


def titled(session: Session, *titles: str) -> dict[str, Doc]:
    """Committed docs, one per title, each with a file and a scan: ``{title: doc}``."""
    docs = {
        title: Doc(
            title=title,
            file=upload(title.encode(), f"{title}.txt"),
            scan=upload(b"scan " + title.encode(), f"{title}-scan.txt"),
        )
        for title in titles
    }
    session.add_all(docs.values())
    session.commit()
    return docs


def stems(app: Flask, store: str | None = None) -> list[str]:
    """The names of the files a store holds, without the unique suffix or extension."""
    return sorted(key.partition(".")[0].partition("_")[0] for key in kept(app, store))


class Statements:
    """The SQL statements an engine sends while listening."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.sent: list[str] = []

    def _record(self, *args: Any) -> None:
        self.sent.append(args[2].split()[0].upper())

    def __enter__(self) -> list[str]:
        sa.event.listen(self.engine, "before_cursor_execute", self._record)
        return self.sent

    def __exit__(self, *exc: object) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._record)


# -- DELETE ------------------------------------------------------------------------------------


def test_a_bulk_delete_deletes_its_rows_files_only_after_the_commit(
    app: Flask, session: Session
) -> None:
    titled(session, "a", "b", "keep")
    session.execute(sa.delete(Doc).where(Doc.title.in_(["a", "b"])))
    assert stems(app) == ["a", "b", "keep"]  # until the commit
    session.commit()
    assert stems(app) == ["keep"]
    assert stems(app, "archive") == ["keep-scan"]


def test_a_bulk_delete_without_where_deletes_every_rows_files(app: Flask, session: Session) -> None:
    titled(session, "a", "b")
    session.add(Photo(image=upload(make_png(80, 60), "beach.png")))
    session.commit()
    assert len(kept(app)) == 5  # two files, the image and its two thumbnails
    session.execute(sa.delete(Doc))
    session.execute(sa.delete(Photo))
    session.commit()
    assert kept(app) == [] and kept(app, "archive") == []


def test_a_rolled_back_bulk_delete_keeps_the_files(app: Flask, session: Session) -> None:
    titled(session, "a")
    session.execute(sa.delete(Doc))
    session.rollback()
    session.commit()
    assert stems(app) == ["a"] and stems(app, "archive") == ["a-scan"]


def test_a_bulk_delete_in_a_rolled_back_savepoint_keeps_the_files(
    app: Flask, session: Session
) -> None:
    titled(session, "a", "b")
    session.execute(sa.delete(Doc).where(Doc.title == "a"))
    savepoint = session.begin_nested()
    session.execute(sa.delete(Doc).where(Doc.title == "b"))
    savepoint.rollback()
    session.commit()
    assert stems(app) == ["b"]


def test_a_bulk_statement_that_fails_keeps_the_files_though_the_transaction_commits(
    app: Flask, session: Session
) -> None:
    # SQLite goes on after a failed statement; PostgreSQL refuses the commit then.
    titled(session, "a", "b")
    with pytest.raises(sa.exc.IntegrityError):  # two rows cannot share a title
        session.execute(sa.update(Doc).values(file=None, title="same"))
    try:
        session.commit()
    except sa.exc.DBAPIError:
        session.rollback()
    assert stems(app) == ["a", "b"]


def test_a_bulk_delete_of_a_model_without_files_sends_nothing_more(
    app: Flask, session: Session, engine: sa.Engine
) -> None:
    with Statements(engine) as sent:
        session.execute(sa.delete(Link).where(Link.id == 1))
    assert sent == ["DELETE"]


def test_a_bulk_delete_loads_no_row_into_the_session(app: Flask, session: Session) -> None:
    session.add_all(
        Doc(title=str(number), file=upload(b"x", f"{number}.txt")) for number in range(50)
    )
    session.commit()
    session.expunge_all()
    session.execute(sa.delete(Doc))
    assert len(session.identity_map) == 0
    session.commit()
    assert kept(app) == []


# -- UPDATE ------------------------------------------------------------------------------------


def test_a_bulk_update_to_none_deletes_only_the_columns_it_sets(
    app: Flask, session: Session
) -> None:
    titled(session, "a", "b")
    session.execute(sa.update(Doc).where(Doc.title == "a").values(file=None))
    session.commit()
    assert stems(app) == ["b"]
    assert stems(app, "archive") == ["a-scan", "b-scan"]
    assert session.scalars(sa.select(Doc.title).where(Doc.file.is_(None))).all() == ["a"]


def test_a_bulk_update_to_a_new_file_keeps_it_and_deletes_the_old_one(
    app: Flask, session: Session
) -> None:
    titled(session, "a", "b")
    new = store_of(app).save(b"new", name="new.txt")
    session.execute(sa.update(Doc).values(file=new))
    session.commit()
    assert stems(app) == ["new"]
    assert [doc.file.read() for doc in session.scalars(sa.select(Doc))] == [b"new", b"new"]


def test_a_bulk_update_giving_rows_a_file_another_row_holds_keeps_it(
    app: Flask, session: Session
) -> None:
    docs = titled(session, "a", "b")
    session.execute(sa.update(Doc).where(Doc.title == "b").values(file=docs["a"].file))
    session.commit()
    assert stems(app) == ["a"]


@pytest.mark.parametrize("how", ["own-file", "own-column"])
def test_a_bulk_update_giving_rows_their_own_file_deletes_nothing(
    app: Flask, session: Session, how: str
) -> None:
    docs = titled(session, "a")
    value = docs["a"].file if how == "own-file" else Doc.file
    session.execute(sa.update(Doc).values(file=value))
    session.commit()
    assert stems(app) == ["a"]


def test_a_bulk_update_copying_another_column_deletes_the_old_file_only(
    app: Flask, session: Session
) -> None:
    titled(session, "a")
    session.execute(sa.update(Doc).values(file=Doc.scan))  # the scan, now held twice
    session.commit()
    assert kept(app) == [] and stems(app, "archive") == ["a-scan"]


def test_a_bulk_update_of_other_columns_sends_nothing_more(
    app: Flask, session: Session, engine: sa.Engine
) -> None:
    titled(session, "a")
    with Statements(engine) as sent:
        session.execute(sa.update(Doc).where(Doc.title == "a").values(title="b"))
    assert sent == ["UPDATE"]
    session.commit()
    assert stems(app) == ["a"]


def test_a_bulk_update_whose_parameters_set_the_file_deletes_the_old_one(
    app: Flask, session: Session
) -> None:
    titled(session, "a", "b")
    session.execute(sa.update(Doc).where(Doc.title == "a"), {"file": None})
    session.commit()
    assert stems(app) == ["b"]


def test_a_bulk_update_by_primary_key_deletes_the_files_it_replaces(
    app: Flask, session: Session
) -> None:
    docs = titled(session, "a", "b", "c")
    new = store_of(app).save(b"new", name="new.txt")
    session.execute(
        sa.update(Doc),
        [{"id": docs["a"].id, "file": None}, {"id": docs["b"].id, "file": new, "title": "bb"}],
    )
    session.commit()
    assert stems(app) == ["c", "new"]
    assert stems(app, "archive") == ["a-scan", "b-scan", "c-scan"]


def test_a_row_changed_by_the_orm_then_by_a_bulk_update_loses_both_files(
    app: Flask, session: Session
) -> None:
    docs = titled(session, "a")
    docs["a"].file = upload(b"second", "second.txt")
    session.flush()
    session.execute(sa.update(Doc).values(file=None))
    session.commit()
    assert kept(app) == []


# -- every kind of statement -------------------------------------------------------------------


@pytest.mark.parametrize("synchronize", ["auto", "evaluate", "fetch", False])
def test_every_synchronize_session_strategy(
    app: Flask, session: Session, synchronize: str | bool
) -> None:
    docs = titled(session, "a", "b", "c")
    options = {"synchronize_session": synchronize}
    session.execute(
        sa.update(Doc).where(Doc.title == "a").values(file=None).execution_options(**options)
    )
    session.execute(sa.delete(Doc).where(Doc.title == "b").execution_options(**options))
    session.commit()
    assert stems(app) == ["c"]
    if synchronize in ("auto", "evaluate", "fetch"):
        assert docs["a"].file is None


def test_statements_with_returning(app: Flask, session: Session) -> None:
    docs = titled(session, "a", "b")
    updated = session.execute(
        sa.update(Doc).where(Doc.title == "a").values(file=None).returning(Doc.id)
    )
    assert updated.scalars().all() == [docs["a"].id]
    deleted = session.scalars(sa.delete(Doc).where(Doc.title == "b").returning(Doc.title))
    assert deleted.all() == ["b"]
    session.commit()
    assert kept(app) == [] and stems(app, "archive") == ["a-scan"]


def test_statements_against_an_aliased_entity(app: Flask, session: Session) -> None:
    titled(session, "a", "b", "c")
    alias = aliased(Doc)
    session.execute(sa.update(alias).where(alias.title == "a").values(file=None))
    session.execute(sa.delete(alias).where(alias.title == "b"))
    session.commit()
    assert stems(app) == ["c"]
    assert stems(app, "archive") == ["a-scan", "c-scan"]


def test_the_keep_files_option_leaves_the_files_to_the_app(app: Flask, session: Session) -> None:
    titled(session, "a", "b")
    session.execute(sa.delete(Doc).where(Doc.title == "a").execution_options(**{KEEP_FILES: True}))
    session.execute(sa.update(Doc).values(file=None), execution_options={KEEP_FILES: True})
    session.commit()
    assert stems(app) == ["a", "b"]


def test_the_helper_then_the_bulk_delete_deletes_each_file_once(
    app: Flask, session: Session, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    titled(session, "a", "keep")
    deleted: list[str] = []
    real_delete = OutageStore.delete

    def counting(store: OutageStore, key: str, *, if_etag: str | None = None) -> bool:
        deleted.append(key)
        return real_delete(store, key, if_etag=if_etag)

    monkeypatch.setattr(OutageStore, "delete", counting)
    condition = Doc.title == "a"
    assert delete_files_after_commit(session, sa.select(Doc).where(condition)) == 2
    session.execute(sa.delete(Doc).where(condition))
    with caplog.at_level(logging.WARNING, logger="flask_store"):
        session.commit()
    assert len(deleted) == 1 and stems(app) == ["keep"]
    assert stems(app, "archive") == ["keep-scan"]
    assert caplog.records == []


# -- joined-table inheritance ------------------------------------------------------------------


class PeopleBase(DeclarativeBase):
    pass


class Person(PeopleBase):
    __tablename__ = "people"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(20))
    name: Mapped[str] = mapped_column(sa.String(20))
    photo: Mapped[Any] = mapped_column(StoredFile(), nullable=True)
    __mapper_args__ = MappingProxyType({"polymorphic_on": kind, "polymorphic_identity": "person"})


class Manager(Person):
    __tablename__ = "managers"

    id: Mapped[int] = mapped_column(sa.ForeignKey("people.id"), primary_key=True)
    contract: Mapped[Any] = mapped_column(StoredFile(), nullable=True)
    __mapper_args__ = MappingProxyType({"polymorphic_identity": "manager"})


@pytest.fixture
def people(engine: sa.Engine) -> Iterator[sa.Engine]:
    PeopleBase.metadata.drop_all(engine)
    PeopleBase.metadata.create_all(engine)
    try:
        yield engine
    finally:
        PeopleBase.metadata.drop_all(engine)


def managers(session: Session, *names: str) -> None:
    session.add_all(
        Manager(
            name=name,
            photo=upload(b"photo", f"{name}-photo.txt"),
            contract=upload(b"contract", f"{name}-contract.txt"),
        )
        for name in names
    )
    session.commit()


def test_a_bulk_update_of_a_subclass_deletes_the_files_of_each_table(
    app: Flask, people: sa.Engine
) -> None:
    with Session(people) as session:
        managers(session, "ann", "bob")
        ann = session.scalars(sa.select(Manager.id).where(Manager.name == "ann")).one()
        # A WHERE on the subclass's own table: one on the base table's columns makes
        # SQLAlchemy send a cartesian product of both tables (and warn).
        session.execute(sa.update(Manager).where(Manager.id == ann).values(contract=None))
        session.execute(sa.update(Person).where(Person.name == "bob").values(photo=None))
        session.commit()
    assert stems(app) == ["ann-photo", "bob-contract"]


def test_a_bulk_delete_of_a_subclass_deletes_the_files_of_the_rows_it_deletes(
    app: Flask, people: sa.Engine
) -> None:
    # DELETE of a joined subclass deletes from its own table only (the base row stays, with
    # its photo): so only the contracts are let go of.
    with Session(people) as session:
        managers(session, "ann", "bob")
        session.execute(sa.delete(Manager).where(Manager.contract.is_not(None)))
        session.commit()
    assert stems(app) == ["ann-photo", "bob-photo"]


# -- a session in an outer transaction ---------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def joined_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    """As test_sqla_savepoints' engine: SQLite with SQLAlchemy's recipe for savepoints."""
    yield from savepoint_database(request, tmp_path)


@pytest.mark.parametrize("outcome", ["rollback", "commit"])
def test_a_bulk_delete_in_a_joined_session_waits_for_the_outer_transaction(
    app: Flask, joined_engine: sa.Engine, outcome: str
) -> None:
    with Session(joined_engine) as session:
        titled(session, "a")
    with joined_engine.connect() as connection:
        outer = connection.begin()
        with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
            session.execute(sa.delete(Doc))
            session.commit()
        assert stems(app) == ["a"]  # the outer transaction has not committed
        if outcome == "rollback":
            outer.rollback()
        else:
            outer.commit()
    assert stems(app) == (["a"] if outcome == "rollback" else [])


@pytest.mark.parametrize(
    "stored",
    ["{not json", "../../etc/passwd", '{"store":' + "[" * 100_000 + "]" * 100_000 + "}"],
    ids=["not-json", "bare-key-outside-the-store", "nested-too-deep"],
)
def test_a_bulk_delete_of_a_tampered_row_still_runs_and_deletes_the_other_rows_files(
    app: Flask, session: Session, stored: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A row whose file value the column refuses (tampered with in the database) must not
    stop the app deleting it: the statement runs, the other rows' files go after the
    commit, and nothing is deleted for the tampered value (logged)."""
    titled(session, "a", "keep")
    session.execute(
        sa.text("INSERT INTO docs (id, title, file) VALUES (99, 'bad', :f)"), {"f": stored}
    )
    session.commit()
    session.execute(sa.delete(Doc).where(Doc.title.in_(["a", "bad"])))
    session.commit()
    assert session.scalars(sa.select(Doc.title)).all() == ["keep"]
    assert stems(app) == ["keep"]
    assert stems(app, "archive") == ["keep-scan"]
    assert any("cannot be read" in record.getMessage() for record in caplog.records)


def test_a_bulk_update_by_primary_key_without_the_key_is_sqlalchemys_error(
    app: Flask, session: Session
) -> None:
    """A parameter set that names no primary key (a client's form turned into parameters)
    is refused by SQLAlchemy as it would be without Flask-Store, not by a KeyError from
    the files' read; nothing is let go."""
    titled(session, "a")
    with pytest.raises(sa.exc.InvalidRequestError):
        session.execute(sa.update(Doc), [{"file": None}])
    session.rollback()
    session.commit()
    assert stems(app) == ["a"]
