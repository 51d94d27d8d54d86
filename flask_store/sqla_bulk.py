"""What an ORM bulk UPDATE or DELETE takes off its rows: the stored-file values it drops.

``session.execute(delete(Doc).where(...))`` and ``session.execute(update(Doc).values(file=
None))`` change rows in the database without loading them, so no flush or mapper event sees
the files those rows let go of. Before such a statement runs, :mod:`flask_store.sqla` asks
this module which file attributes it changes (:func:`changed_file_attributes`: every one of
the table a DELETE deletes from, the ones an UPDATE sets) and reads, with the statement's own
WHERE, the value each row holds now and the value it gets (:func:`file_changes`). It lets go
of the old files as a flush would, once the statement has succeeded.

Only what is needed is read: the primary key and the file columns the statement drops, in
batches of :data:`BATCH` rows (a server-side cursor where the driver has one), never whole
ORM objects. A statement that changes no file column reads nothing. A statement run with the
execution option :data:`KEEP_FILES` (``delete(Doc).execution_options(flask_store_keep_files
=True)``) reads nothing either, and its rows' files stay in the store: for an app that deletes
them itself, such as a whole folder at once.

This module knows SQLAlchemy only, not the column types: the caller says which attributes
hold files.

.. versionadded:: 0.2
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Delete,
    Select,
    Text,
    Update,
    or_,
    select,
    tuple_,
    type_coerce,
)
from sqlalchemy.orm import Mapper, ORMExecuteState
from sqlalchemy.orm.exc import UnmappedColumnError
from sqlalchemy.sql.elements import BindParameter

__all__ = [
    "BATCH",
    "KEEP_FILES",
    "FileChange",
    "Given",
    "changed_file_attributes",
    "file_changes",
    "given_values",
]

#: The execution option that leaves the files of a bulk statement's rows in the store: the
#: app deletes them itself (or keeps them). Nothing is read before the statement.
KEEP_FILES = "flask_store_keep_files"
#: How many rows are read at a time: memory stays flat whatever the table's size.
BATCH = 1000


@dataclass(frozen=True)
class Given:
    """A value the statement gives every row it changes, known in Python (``None`` for a
    DELETE or ``values(file=None)``, a FileWrapper for ``values(file=wrapper)``)."""

    value: Any


#: An attribute whose new value each parameter set of an executemany UPDATE gives itself
#: (``session.execute(update(Doc), [{"id": 1, "file": None}, ...])``).
PER_ROW = Given(None)


@dataclass(frozen=True)
class FileChange:
    """One row's file attribute as the statement changes it.

    :param identity: the row's identity key (to find it among the session's loaded rows).
    :param key: the attribute's name.
    :param old: the value it holds now, as stored (the column's text, not yet read by its
        type: the caller reads it, and may find it tampered with).
    :param new: the value it gets (``None`` when the row is deleted).
    """

    identity: tuple[Any, ...]
    key: str
    old: Any
    new: Any


def changed_file_attributes(
    execute: ORMExecuteState, file_attributes: Collection[str]
) -> dict[str, Any]:
    """``{attribute: new value}`` of the file attributes the bulk statement changes: a
    :class:`Given` value, or a SQL expression each row's new value is computed by
    (``values(file=Doc.scan)``). Empty, and nothing read, when it changes none of them or
    carries :data:`KEEP_FILES`.

    A DELETE changes the file attributes of the table it deletes from: a joined-inheritance
    subclass's own table only (SQLAlchemy deletes from that table alone, so the base table's
    row, and its files, stay).
    """
    mapper: Mapper[Any] | None = execute.bind_arguments.get("mapper")
    if mapper is None or not file_attributes or execute.execution_options.get(KEEP_FILES):
        return {}
    if execute.is_delete:
        table = mapper.local_table
        return {key: Given(None) for key in file_attributes if mapper.c[key].table is table}
    if execute.is_executemany:
        named = {name for parameters in _parameter_sets(execute) for name in parameters}
        return {key: PER_ROW for key in file_attributes if key in named}
    changed: dict[str, Any] = {}
    for column, value in _set_clause(execute).items():
        key = _attribute_of(mapper, column)
        if key is not None and key in file_attributes:
            changed[key] = _given(value, execute.parameters)
    # Core also SETs a column that only the execution's parameters name:
    # session.execute(update(Doc).where(...), {"file": None}).
    parameters = execute.parameters
    if isinstance(parameters, Mapping):
        for key in file_attributes:
            if key not in changed and mapper.c[key].key in parameters:
                changed[key] = Given(parameters[mapper.c[key].key])
    return changed


def file_changes(
    execute: ORMExecuteState, changed: Mapping[str, Any], batch: int = BATCH
) -> Iterator[FileChange]:
    """The rows the bulk statement will change, read now with its WHERE (and its
    parameters and bind), ``batch`` rows at a time: each one's :class:`FileChange` for
    every attribute of ``changed`` (see :func:`changed_file_attributes`).

    Rows that hold no file in those attributes are left out by the database when every new
    value is known in Python: they let go of nothing, and what they get is in
    :func:`given_values`. A new value a row computes (``values(file=Doc.scan)``) is read
    from every row.
    """
    mapper: Mapper[Any] = execute.bind_arguments["mapper"]
    statement = _dml(execute)
    entity = statement.entity_description["entity"]  # the class or its alias
    keys = list(changed)
    identity = [getattr(entity, mapper.get_property_by_column(c).key) for c in mapper.primary_key]
    # As stored, not through the column type: a row whose value it refuses (tampered with)
    # must not stop the statement; the caller reads each one itself.
    olds = [type_coerce(getattr(entity, key), Text) for key in keys]
    computed = {
        # Labelled: a row's new value may be its own column (values(file=Doc.file)).
        key: type_coerce(value, mapper.c[key].type).label(f"flask_store_new_{key}")
        for key, value in changed.items()
        if not isinstance(value, Given)
    }
    query = select(*identity, *olds, *computed.values())
    whereclause = statement.whereclause
    if whereclause is not None:
        query = query.where(whereclause)
    if not computed:
        query = query.where(or_(*(old.is_not(None) for old in olds)))
    if execute.is_executemany:
        yield from _changes_by_key(execute, mapper, keys, query, identity, batch)
        return
    options = {"yield_per": batch, "autoflush": execute.execution_options.get("autoflush", True)}
    rows = execute.session.execute(
        query, execute.parameters, execution_options=options, bind_arguments=execute.bind_arguments
    )
    width = len(identity)
    for row in rows:
        key_of_row = mapper.identity_key_from_primary_key(tuple(row[:width]))
        values = dict(zip(keys, row[width:], strict=False))
        new_values = dict(zip(computed, row[width + len(keys) :], strict=True))
        for key in keys:
            new = new_values[key] if key in new_values else changed[key].value
            yield FileChange(key_of_row, key, values[key], new)


def given_values(execute: ORMExecuteState, changed: Mapping[str, Any]) -> Iterator[Any]:
    """The new values of ``changed`` known in Python: each :class:`Given` one, and those of
    every parameter set of an executemany UPDATE. The rows that get them hold them, whether
    or not they held a file before."""
    for value in changed.values():
        if isinstance(value, Given) and value is not PER_ROW:
            yield value.value
    if execute.is_executemany:
        for parameters in _parameter_sets(execute):
            yield from (parameters[key] for key in changed if key in parameters)


def _changes_by_key(
    execute: ORMExecuteState,
    mapper: Mapper[Any],
    keys: list[str],
    query: Select[Any],
    identity: Sequence[Any],
    batch: int,
) -> Iterator[FileChange]:
    """The changes of an executemany UPDATE (one parameter set per row, found by its
    primary key): each set's rows read ``batch`` sets at a time, and only the attributes
    that set gives a value."""
    names = [attribute.key for attribute in identity]
    # A set without the whole primary key is SQLAlchemy's to refuse, when the statement runs.
    sets = [
        parameters
        for parameters in _parameter_sets(execute)
        if parameters.keys() & keys and all(name in parameters for name in names)
    ]
    width = len(identity)
    for start in range(0, len(sets), batch):
        by_key = {
            tuple(parameters[name] for name in names): parameters
            for parameters in sets[start : start + batch]
        }
        matching = (
            identity[0].in_([key[0] for key in by_key])
            if width == 1
            else tuple_(*identity).in_(list(by_key))
        )
        rows = execute.session.execute(query.where(matching), bind_arguments=execute.bind_arguments)
        for row in rows:
            primary_key = tuple(row[:width])
            parameters = by_key.get(primary_key)
            if parameters is None:  # a key given as another type ("1" for 1): not matched
                continue
            key_of_row = mapper.identity_key_from_primary_key(primary_key)
            for key, old in zip(keys, row[width:], strict=False):
                if key in parameters:
                    yield FileChange(key_of_row, key, old, parameters[key])


def _dml(execute: ORMExecuteState) -> Update | Delete:
    """The bulk statement (``is_update`` or ``is_delete`` said it is one)."""
    statement = execute.statement
    assert isinstance(statement, (Update, Delete))
    return statement


def _parameter_sets(execute: ORMExecuteState) -> list[Mapping[str, Any]]:
    """The parameter sets of an executemany statement."""
    parameters = execute.parameters
    return list(parameters) if isinstance(parameters, Sequence) else []


def _set_clause(execute: ORMExecuteState) -> Mapping[Any, Any]:
    """``{column: value}`` of an UPDATE's ``values()`` (or ``ordered_values()``).

    SQLAlchemy has no public reader for them; its own ORM bulk UPDATE reads the same
    attribute (``_BulkUDCompileState._get_resolved_values``).
    """
    values: Mapping[Any, Any] | None = getattr(_dml(execute), "_values", None)
    return values or {}


def _attribute_of(mapper: Mapper[Any], column: Any) -> str | None:
    """The attribute of ``mapper`` that a SET clause's key names, or ``None`` (a column of
    another table, or a plain name)."""
    if isinstance(column, str):
        return column
    if not isinstance(column, ColumnElement):
        return None
    try:
        return mapper.get_property_by_column(column).key
    except UnmappedColumnError:
        return None


def _given(value: Any, parameters: Any) -> Any:
    """A :class:`Given` value for a literal (``values(file=None)``, ``values(file=
    wrapper)``), else the SQL expression itself: one whose value a row computes
    (``Doc.scan``, ``null()``), or a named parameter the execution supplies."""
    if not isinstance(value, BindParameter) or value.callable is not None:
        return value
    supplied = isinstance(parameters, Mapping) and value.key in parameters
    if value.required or supplied:
        return value
    return Given(value.value)
