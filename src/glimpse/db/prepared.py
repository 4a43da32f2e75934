"""Prepared: a Core statement the busiest reads run straight on the driver's cursor.

SQLAlchemy's ``Connection.execute`` spends ~70 µs of Python on each statement (execution context,
events, result metadata) where the SQLite driver itself takes ~15 µs: on a request that runs three
statements that is most of its cost. A :class:`Prepared` statement keeps everything SQLAlchemy
contributes that matters (the SQL of each dialect, from its compiler; the bind and result type
conversions, from the column types; ``IN`` lists, whose SQL it renders once per list length; the
same ``DBAPIError`` when the database fails, with a dead connection invalidated) and skips the
rest: it compiles once per dialect and runs the SQL on the cursor of the connection the unit of
work already holds, in its transaction. Rows come back as plain dicts keyed by column name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import CompoundSelect, Select
from sqlalchemy.sql.compiler import SQLCompiler

_Processor = Callable[[Any], Any]
#: Where a driver parameter's value comes from: the caller's parameter, the element of an ``IN``
#: list's (None: the whole value), and the conversion of its type.
_Source = tuple[str, int | None, _Processor | None]


@dataclass(frozen=True, slots=True)
class _Shape:
    """The SQL for one set of ``IN`` list lengths, and where each driver parameter comes from."""

    sql: str
    #: The parameters' names in the SQL, in order (for a driver that takes a dict).
    names: tuple[str, ...]
    sources: tuple[_Source, ...]


@dataclass(frozen=True, slots=True)
class _Plan:
    """One statement compiled for one dialect, with the conversions of its columns."""

    compiled: SQLCompiler
    keys: tuple[str, ...]
    #: (position, processor) of the result columns whose values need converting.
    converters: tuple[tuple[int, _Processor], ...]
    #: The parameters that are lists (``IN``): the SQL has a placeholder per element.
    expanding: tuple[str, ...]
    #: The values the statement itself binds (``column == 'value'``), under their parameter names.
    defaults: dict[str, Any]
    #: The SQL for each tuple of the ``IN`` lists' lengths seen so far (just ``()`` without lists).
    shapes: dict[tuple[int, ...], _Shape]


class Prepared:
    def __init__(self, statement: Select[Any] | CompoundSelect[Any]) -> None:
        self._statement = statement
        # Per dialect object (each engine has its own); one an engine no longer uses goes with it.
        self._plans: WeakKeyDictionary[Dialect, _Plan] = WeakKeyDictionary()

    def _plan(self, dialect: Dialect) -> _Plan:
        plan = self._plans.get(dialect)
        if plan is None:
            compiled = self._statement.compile(dialect=dialect)
            assert isinstance(compiled, SQLCompiler)
            if compiled.escaped_bind_names or compiled.literal_execute_params:
                raise ValueError(
                    "a prepared statement's parameters must be plain: names that need no quoting, "
                    "values the driver takes (not rendered into the SQL)"
                )
            columns = list(self._statement.selected_columns)
            keys = tuple(column.key for column in columns)
            if None in keys:
                raise ValueError("every column a prepared statement selects needs a name")
            converters = []
            for position, column in enumerate(columns):
                processor = column.type.dialect_impl(dialect).result_processor(dialect, None)
                if processor is not None:
                    converters.append((position, processor))
            plan = _Plan(
                compiled=compiled,
                keys=cast(tuple[str, ...], keys),
                converters=tuple(converters),
                expanding=tuple(sorted({bind.key for bind in compiled.binds.values() if bind.expanding})),
                defaults={name: value for name, value in compiled.params.items() if value is not None},
                shapes={},
            )
            self._plans[dialect] = plan
        return plan

    @staticmethod
    def _shape(plan: _Plan, lengths: tuple[int, ...], dialect: Dialect) -> _Shape:
        """The SQL and parameter order for these ``IN`` list lengths, worked out once by SQLAlchemy:
        it renders the statement for lists of unique markers, and each marker tells which list
        element a placeholder takes."""
        compiled = plan.compiled
        processors = {
            name: processor
            for bind, name in compiled.bind_names.items()
            if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        }
        sample: dict[str, Any] = {bind.key: None for bind in compiled.binds.values() if bind.required}
        markers: dict[int, tuple[str, int]] = {}
        for name, length in zip(plan.expanding, lengths, strict=True):
            sample[name] = [object() for _ in range(length)]
            markers.update({id(marker): (name, index) for index, marker in enumerate(sample[name])})
        state = compiled.construct_expanded_state(sample)
        processors.update(state.processors)
        names = tuple(state.positiontup or ()) if compiled.positional else tuple(state.parameters)
        sources = []
        for name in names:
            source, index = markers.get(id(state.parameters[name]), (name, None))
            sources.append((source, index, processors.get(name)))
        return _Shape(sql=state.statement, names=names, sources=tuple(sources))

    def rows(self, connection: Connection, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Every row the statement selects with ``params``, in the connection's transaction."""
        dialect = connection.dialect
        plan = self._plan(dialect)
        lengths = tuple(len(params[name]) for name in plan.expanding)
        shape = plan.shapes.get(lengths)
        if shape is None:
            shape = plan.shapes[lengths] = self._shape(plan, lengths, dialect)
        given = {**plan.defaults, **params}
        values = []
        for source, index, processor in shape.sources:
            value = given[source] if index is None else given[source][index]
            values.append(value if processor is None else processor(value))
        args: Any = tuple(values) if plan.compiled.positional else dict(zip(shape.names, values, strict=True))
        sql = shape.sql
        dbapi_connection = connection.connection
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(sql, args)
            fetched = cursor.fetchall()
        except connection.dialect.loaded_dbapi.Error as exc:
            gone = connection.dialect.is_disconnect(exc, dbapi_connection, cursor)
            if gone:
                connection.invalidate(exc)
            raise DBAPIError.instance(
                sql, args, exc, connection.dialect.loaded_dbapi.Error, connection_invalidated=gone
            ) from exc
        finally:
            cursor.close()
        keys = plan.keys
        if not plan.converters:
            return [dict(zip(keys, row, strict=True)) for row in fetched]
        result = []
        for row in fetched:
            values_of = list(row)
            for position, processor in plan.converters:
                values_of[position] = processor(values_of[position])
            result.append(dict(zip(keys, values_of, strict=True)))
        return result
