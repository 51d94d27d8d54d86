"""StoredFile columns in a session joined to an outer transaction, on real SQLite and a real
PostgreSQL server.

The usual test set-up (``conn.begin()``, then ``Session(bind=conn,
join_transaction_mode="create_savepoint")``) and every other way a session joins a
connection's transaction: the session's ``commit()`` only releases a savepoint, or does
nothing, so the files follow the connection's transaction instead. A file a row let go of is
deleted only once the connection really commits; the uploads of work the connection rolls
back (its own ROLLBACK, a savepoint of it, a failed COMMIT, closing it) are deleted then.
"""

from __future__ import annotations

import gc
import io
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from flask_store.sqla import OUTER_KEY, StoredFile, UnsavedFile
from tests.postgres_server import postgres_url
from tests.test_sqla import (
    Base,
    Doc,
    Link,
    app,
    committed_doc,
    fresh_database,
    kept,
    upload,
)

__all__ = ["app", "postgres_url"]  # fixtures, imported for the tests here

#: Every way a session joins a transaction begun on its connection outside it, in which the
#: session's commit() is no real COMMIT ("conditional_savepoint" is SQLAlchemy's default).
JOINING_MODES = ["create_savepoint", "conditional_savepoint", "rollback_only"]


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    """An empty database with the test tables, for outer transactions and savepoints."""
    yield from savepoint_database(request, tmp_path)


def savepoint_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    """:func:`~tests.test_sqla.fresh_database`, SQLite with SQLAlchemy's documented recipe
    for working savepoints (pysqlite's own BEGIN handling would let the RELEASE of the first
    savepoint commit the outer transaction)."""
    yield from fresh_database(
        request, tmp_path, connect=_sqlite_own_transactions, begin=_sqlite_begin
    )


def _sqlite_own_transactions(connection: Any, record: object) -> None:
    connection.isolation_level = None  # pysqlite emits no BEGIN of its own
    connection.execute("PRAGMA foreign_keys=ON")


def _sqlite_begin(connection: sa.Connection) -> None:
    connection.exec_driver_sql("BEGIN")


def first_doc(engine: sa.Engine) -> tuple[int, str]:
    """A doc committed before any outer transaction: its id and its file's key."""
    with Session(engine) as session:
        doc = committed_doc(session)
        return doc.id, doc.file.key


def replace_in(session: Session, number: int, data: bytes = b"second") -> str:
    """Replace doc ``number``'s file in ``session`` and commit: the new file's key."""
    doc = session.get(Doc, number)
    assert doc is not None
    doc.file = upload(data, "second.txt")
    session.commit()
    key: str = doc.file.key
    return key


def replace_joined(
    connection: sa.Connection, number: int, mode: Any = "conditional_savepoint"
) -> str:
    """Replace doc ``number``'s file in a session joined to ``connection``'s transaction in
    ``mode`` (SQLAlchemy's default: ``conditional_savepoint``), commit it and close it: the
    new file's key."""
    with Session(bind=connection, join_transaction_mode=mode) as session:
        return replace_in(session, number)


def file_of(engine: sa.Engine, number: int) -> bytes:
    """What doc ``number``'s file holds, read from the committed row."""
    with Session(engine) as session:
        doc = session.get(Doc, number)
        assert doc is not None
        data: bytes = doc.file.read()
        return data


@pytest.mark.parametrize("mode", JOINING_MODES)
def test_an_outer_rollback_keeps_the_file_a_joined_session_let_go_of(
    app: Flask, engine: sa.Engine, mode: Any
) -> None:
    number, first = first_doc(engine)
    with engine.connect() as connection:
        outer = connection.begin()
        with Session(bind=connection, join_transaction_mode=mode) as session:
            second = replace_in(session, number)
            added = Doc(title="b", file=upload(b"added", "added.txt"))
            session.add(added)
            session.commit()
            assert kept(app) == sorted([first, second, added.file.key])  # nothing committed
        outer.rollback()
        assert kept(app) == [first]  # the uploads of the rolled back rows are gone
    assert kept(app) == [first]
    assert file_of(engine, number) == b"first"


@pytest.mark.parametrize("mode", JOINING_MODES)
def test_an_outer_commit_deletes_the_file_a_joined_session_let_go_of(
    app: Flask, engine: sa.Engine, mode: Any
) -> None:
    number, first = first_doc(engine)
    with engine.connect() as connection:
        outer = connection.begin()
        second = replace_joined(connection, number, mode)
        assert kept(app) == sorted([first, second])  # the outer transaction is still open
        outer.commit()
    assert kept(app) == [second]
    assert file_of(engine, number) == b"second"


def test_the_next_transaction_of_a_committed_connection_finds_the_old_file_deleted(
    app: Flask, engine: sa.Engine
) -> None:
    # SQLAlchemy tells of no COMMIT that succeeded: the connection's next use does.
    number, first = first_doc(engine)
    with engine.connect() as connection:
        connection.begin()
        second = replace_joined(connection, number, "create_savepoint")
        connection.commit()
        connection.execute(sa.select(1))
        assert first not in kept(app)
        assert kept(app) == [second]
        connection.rollback()
    assert kept(app) == [second]


def test_closing_the_outer_connection_without_commit_is_a_rollback(
    app: Flask, engine: sa.Engine
) -> None:
    number, first = first_doc(engine)
    connection = engine.connect()
    connection.begin()
    replace_joined(connection, number, "create_savepoint")
    connection.close()
    assert kept(app) == [first]
    assert file_of(engine, number) == b"first"


def test_an_outer_connection_thrown_away_rolls_back(app: Flask, engine: sa.Engine) -> None:
    # An invalidated connection (a lost server, or invalidate()) takes its transaction along.
    number, first = first_doc(engine)
    with engine.connect() as connection:
        connection.begin()
        replace_joined(connection, number, "create_savepoint")
        connection.invalidate()
        assert kept(app) == [first]
    assert file_of(engine, number) == b"first"


def test_a_failed_outer_commit_keeps_the_old_file_and_drops_the_new_one(
    app: Flask, engine: sa.Engine
) -> None:
    number, first = first_doc(engine)
    with engine.connect() as connection:
        outer = connection.begin()
        with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
            session.add(Link(doc_id=987654))  # the deferred foreign key fails at COMMIT
            replace_in(session, number)
        with pytest.raises(sa.exc.IntegrityError):
            outer.commit()
        assert kept(app) == [first]
        # SQLite keeps a transaction whose COMMIT failed open, and SQLAlchemy, taking it for
        # ended, never rolls it back: throw that connection away.
        connection.invalidate()
    assert kept(app) == [first]
    assert file_of(engine, number) == b"first"


@pytest.mark.parametrize("outcome", ["rollback", "commit"])
def test_a_session_closed_without_commit_in_rollback_only_mode_leaves_its_work_to_the_outer(
    app: Flask, engine: sa.Engine, outcome: str
) -> None:
    # The session's close() does not roll back a transaction it joined: its flushed rows
    # stay in it, so their files follow that transaction, not the session.
    number, first = first_doc(engine)
    with engine.connect() as connection:
        outer = connection.begin()
        with Session(bind=connection, join_transaction_mode="rollback_only") as session:
            doc = session.get(Doc, number)
            assert doc is not None
            doc.file = upload(b"second", "second.txt")
            session.flush()
            second = doc.file.key
        assert kept(app) == sorted([first, second])
        if outcome == "rollback":
            outer.rollback()
        else:
            outer.commit()
    assert kept(app) == ([first] if outcome == "rollback" else [second])
    assert file_of(engine, number) == (b"first" if outcome == "rollback" else b"second")


@pytest.mark.parametrize("outcome", ["rollback", "commit"])
def test_two_sessions_on_one_connection_follow_its_transaction(
    app: Flask, engine: sa.Engine, outcome: str
) -> None:
    number, first = first_doc(engine)
    with engine.connect() as connection:
        outer = connection.begin()
        with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
            added = Doc(title="b", file=upload(b"added", "added.txt"))
            session.add(added)
            session.commit()
            added_key = added.file.key
        second = replace_joined(connection, number, "create_savepoint")
        if outcome == "rollback":
            outer.rollback()
        else:
            outer.commit()
    assert kept(app) == ([first] if outcome == "rollback" else sorted([added_key, second]))


@pytest.mark.parametrize("inner", ["rollback", "commit"])
@pytest.mark.parametrize("outer_outcome", ["rollback", "commit"])
def test_a_savepoint_of_the_outer_transaction_decides_for_the_files_inside_it(
    app: Flask, engine: sa.Engine, inner: str, outer_outcome: str
) -> None:
    number, first = first_doc(engine)
    with engine.connect() as connection:
        outer = connection.begin()
        before = Doc(title="before", file=upload(b"before", "before.txt"))
        with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
            session.add(before)
            session.commit()
            before_key = before.file.key
        savepoint = connection.begin_nested()
        second = replace_joined(connection, number)  # in a savepoint: one of its own
        if inner == "rollback":
            savepoint.rollback()
            assert kept(app) == sorted([first, before_key])  # the savepoint's upload is gone
        else:
            savepoint.commit()
            assert kept(app) == sorted([first, second, before_key])
        if outer_outcome == "rollback":
            outer.rollback()
        else:
            outer.commit()
    if outer_outcome == "rollback":
        assert kept(app) == [first]
    elif inner == "rollback":
        assert kept(app) == sorted([first, before_key])
        assert file_of(engine, number) == b"first"
    else:
        assert kept(app) == sorted([second, before_key])
        assert file_of(engine, number) == b"second"


def test_a_released_savepoint_of_the_outer_transaction_belongs_to_the_one_around_it(
    app: Flask, engine: sa.Engine
) -> None:
    number, first = first_doc(engine)
    with engine.connect() as connection:
        outer = connection.begin()
        around = connection.begin_nested()
        released = connection.begin_nested()
        second = replace_joined(connection, number)
        released.commit()
        later = connection.begin_nested()  # a sibling: its rollback is no concern of the file
        later.rollback()
        assert kept(app) == sorted([first, second])
        around.rollback()
        assert kept(app) == [first]
        outer.commit()
    assert kept(app) == [first]
    assert file_of(engine, number) == b"first"


def test_a_session_controlling_the_outer_transaction_deletes_at_its_commit(
    app: Flask, engine: sa.Engine
) -> None:
    number, _ = first_doc(engine)
    with engine.connect() as connection:
        connection.begin()
        with Session(bind=connection, join_transaction_mode="control_fully") as session:
            second = replace_in(session, number)  # a real COMMIT
            assert kept(app) == [second]


def test_nothing_is_held_once_the_outer_transaction_is_over(app: Flask, engine: sa.Engine) -> None:
    number, first = first_doc(engine)
    source = io.BytesIO(b"an upload")
    still_held = weakref.ref(source)
    with engine.connect() as connection:
        outer = connection.begin()
        with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
            session.add(Doc(title="b", file=UnsavedFile(source, "b.txt")))
            replace_in(session, number)
        del source
        gc.collect()
        assert still_held() is None  # the outer transaction needs the files, not the uploads
        assert connection.info.get(OUTER_KEY)
        outer.rollback()
        assert OUTER_KEY not in connection.info
        assert kept(app) == [first]


def test_a_connection_dropped_with_files_in_a_savepoint_is_freed_and_rolled_back(
    app: Flask, engine: sa.Engine
) -> None:
    """A connection dropped without close() goes back to its pool when it is garbage
    collected (rolled back): the files waiting in its savepoint must not keep it alive."""
    number, first = first_doc(engine)
    connection = engine.connect()
    connection.begin()
    connection.begin_nested()
    replace_joined(connection, number)
    dropped = weakref.ref(connection)
    del connection
    gc.collect()
    assert dropped() is None
    assert kept(app) == [first]  # its work rolled back with it: the upload is gone
    assert file_of(engine, number) == b"first"


def test_sqlite_without_the_savepoint_recipe_keeps_the_file_its_release_committed(
    app: Flask, tmp_path: Path
) -> None:
    # pysqlite sends no BEGIN for a SAVEPOINT: on a connection that ran nothing yet, the
    # session's RELEASE commits in SQLite while SQLAlchemy counts the outer transaction as
    # open. The row stays after the outer "rollback", so its file must stay too.
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'plain.db'}")
    Base.metadata.create_all(engine)
    number, first = first_doc(engine)
    with engine.connect() as connection:
        outer = connection.begin()
        second = replace_joined(connection, number, "create_savepoint")
        assert first not in kept(app)  # committed by the RELEASE: let go of for good
        outer.rollback()
    assert file_of(engine, number) == b"second"  # SQLite did commit it
    assert kept(app) == [second]
    engine.dispose()


@pytest.mark.parametrize("end", ["commit", "close"])
@pytest.mark.parametrize("mode", ["conditional_savepoint", "rollback_only"])
def test_an_autocommit_connection_keeps_the_files_its_rows_were_committed_with(
    app: Flask, engine: sa.Engine, mode: Any, end: str
) -> None:
    # AUTOCOMMIT commits each statement: the "outer transaction" holds nothing back, so its
    # ROLLBACK must not delete the upload of a row that is already committed.
    number, first = first_doc(engine)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        outer = connection.begin()
        with Session(bind=connection, join_transaction_mode=mode) as session:
            doc = session.get(Doc, number)
            assert doc is not None
            doc.file = upload(b"second", "second.txt")
            session.flush()  # committed by the database now
            second = doc.file.key
            if end == "commit":
                session.commit()
        outer.rollback()
    # PostgreSQL commits each statement; the SQLite recipe's own BEGIN makes even this
    # connection transactional, so its ROLLBACK undoes the row there. Either way the row
    # names a file that still exists, and only that one.
    committed_each_statement = engine.dialect.name == "postgresql"
    assert file_of(engine, number) == (b"second" if committed_each_statement else b"first")
    assert kept(app) == ([second] if committed_each_statement else [first])


class OtherBase(DeclarativeBase):
    pass


class Note(OtherBase):
    """A row of another database, for sessions over two engines."""

    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    file: Mapped[Any] = mapped_column(StoredFile(), nullable=True)


@pytest.mark.parametrize("outcome", ["rollback", "commit"])
def test_a_session_over_two_engines_settles_each_engines_files_by_its_own_transaction(
    app: Flask, engine: sa.Engine, tmp_path: Path, outcome: str
) -> None:
    # Only the docs' connection is in an outer transaction; the notes' engine really
    # commits at the session's commit, whatever that transaction does later.
    other = sa.create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    OtherBase.metadata.create_all(other)
    number, first = first_doc(engine)
    with Session(other) as session:
        note = Note(file=upload(b"note 1", "note1.txt"))
        session.add(note)
        session.commit()
        note_id, note_first = note.id, note.file.key
    with engine.connect() as connection:
        outer = connection.begin()
        binds: dict[Any, sa.Engine | sa.Connection] = {Doc: connection, Note: other}
        with Session(binds=binds, join_transaction_mode="create_savepoint") as session:
            found = session.get(Note, note_id)
            assert found is not None
            found.file = upload(b"note 2", "note2.txt")
            second = replace_in(session, number)
            note_second = found.file.key
        assert note_first not in kept(app)  # the notes' engine committed
        if outcome == "rollback":
            outer.rollback()
        else:
            outer.commit()
    with Session(other) as session:
        found = session.get(Note, note_id)
        assert found is not None and found.file.read() == b"note 2"
    doc_file = first if outcome == "rollback" else second
    assert kept(app) == sorted([doc_file, note_second])
    other.dispose()


def test_engines_whose_sessions_join_no_outer_transaction_get_no_connection_listeners(
    app: Flask, tmp_path: Path
) -> None:
    # Any connection listener sends every connection of the engine through SQLAlchemy's
    # slower evented path: only connections that files wait for get them.
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'plain.db'}")
    Base.metadata.create_all(engine)
    number, _ = first_doc(engine)
    with Session(engine) as session:
        replace_in(session, number)
    with engine.begin() as connection:
        connection.execute(sa.select(1))
    for name in ("begin", "commit", "rollback", "savepoint", "rollback_savepoint"):
        assert not getattr(engine.dispatch, name), name
    engine.dispose()
