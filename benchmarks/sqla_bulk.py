"""``python -m benchmarks.sqla_bulk``: what an ORM bulk DELETE costs with StoredFile columns.

A SQLite file holds ``--rows`` docs, each naming a file of a memory store (two file columns,
one of them empty, so the statement reads only rows that hold a file). Each way of deleting
them all runs in a fresh copy of that database and is measured from the statement to the
end of the commit (the files' deletes included):

- ``bulk``: ``session.execute(delete(Doc))``, whose files Flask-Store now reads first;
- ``bulk, keep files``: the same with ``flask_store_keep_files``: the statement alone, as
  before (its files stay: the leak this work removes);
- ``helper + bulk``: ``delete_files_after_commit(session, select(Doc))`` first, as the docs
  said before (loads whole ORM objects), then the statement (its read finds the same files);
- ``bulk update to None``: ``update(Doc).values(file=None)``.

Peak memory is Python's (tracemalloc) during that span; time is wall-clock. Not part of
``make test``.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from flask_store.sqla import KEEP_FILES, StoredFile, delete_files_after_commit
from flask_store.stores.memory import MemoryStore

STORE = MemoryStore()


class Base(DeclarativeBase):
    pass


class Doc(Base):
    __tablename__ = "docs"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(100))
    file: Mapped[Any] = mapped_column(StoredFile(store=STORE), nullable=True)
    scan: Mapped[Any] = mapped_column(StoredFile(store=STORE), nullable=True)


def populate(path: Path, rows: int) -> None:
    """A database of ``rows`` docs, each holding its own file of :data:`STORE`."""
    engine = sa.create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    with engine.begin() as connection:
        for start in range(0, rows, 1000):
            values = [
                {"title": f"doc {n}", "file": STORE.save(b"x", name=f"f{n}.txt"), "scan": None}
                for n in range(start, min(rows, start + 1000))
            ]
            connection.execute(sa.insert(Doc), values)
    engine.dispose()


def bulk(session: Session) -> None:
    session.execute(sa.delete(Doc))


def bulk_keeping_files(session: Session) -> None:
    session.execute(sa.delete(Doc).execution_options(**{KEEP_FILES: True}))


def helper_then_bulk(session: Session) -> None:
    delete_files_after_commit(session, sa.select(Doc))
    session.execute(sa.delete(Doc))


def bulk_update(session: Session) -> None:
    session.execute(sa.update(Doc).values(file=None))


WAYS: dict[str, Callable[[Session], None]] = {
    "bulk": bulk,
    "bulk, keep files": bulk_keeping_files,
    "helper + bulk": helper_then_bulk,
    "bulk update to None": bulk_update,
}


def measure(source: Path, folder: Path, way: Callable[[Session], None]) -> tuple[float, float, int]:
    """Seconds, peak MiB and the files left after ``way`` deleted every doc and committed.

    Two runs on fresh copies: one timed, one traced (tracemalloc slows Python down a lot).
    """
    elapsed, _, left = run(source, folder, way, traced=False)
    _, peak, _ = run(source, folder, way, traced=True)
    return elapsed, peak, left


def run(
    source: Path, folder: Path, way: Callable[[Session], None], traced: bool
) -> tuple[float, float, int]:
    copy = folder / "run.db"
    shutil.copy(source, copy)
    for key in list(STORE.keys()):
        STORE.delete(key)
    for n in range(count_rows(copy)):
        STORE.save(b"x", name=f"f{n}.txt")
    engine = sa.create_engine(f"sqlite:///{copy}")
    gc.collect()
    with Session(engine) as session:
        session.execute(sa.select(1))  # connect outside the measured span
        if traced:
            tracemalloc.start()
        started = time.perf_counter()
        way(session)
        session.commit()
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] if traced else 0
        tracemalloc.stop()
    engine.dispose()
    return elapsed, peak / 2**20, len(list(STORE.keys()))


def count_rows(path: Path) -> int:
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.connect() as connection:
        number = connection.execute(sa.select(sa.func.count()).select_from(Doc)).scalar_one()
    engine.dispose()
    return int(number)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        source = folder / "source.db"
        populate(source, arguments.rows)
        print(f"{arguments.rows} rows, SQLite file, memory store")
        print(f"{'way':<22} {'seconds':>8} {'peak MiB':>9} {'files left':>11}")
        for name, way in WAYS.items():
            seconds, peak, left = measure(source, folder, way)
            print(f"{name:<22} {seconds:>8.2f} {peak:>9.1f} {left:>11}")


if __name__ == "__main__":
    main()
