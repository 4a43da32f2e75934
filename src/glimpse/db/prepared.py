"""Prepared: a Core statement the busiest reads run straight on the driver's cursor.

SQLAlchemy's ``Connection.execute`` spends ~70 µs of Python on each statement (execution context,
events, result metadata) where the SQLite driver itself takes ~15 µs: on a request that runs three
statements that is most of its cost. A :class:`Prepared` statement keeps everything SQLAlchemy
contributes that matters (the SQL of each dialect, from its compiler; the bind and result type
conversions, from the column types; expanding ``IN`` lists; the same ``DBAPIError`` when the
database fails, with a dead connection invalidated) and skips the rest: it compiles once per
dialect and runs the SQL on the cursor of the connection the unit of work already holds, in its
transaction. Rows come back as plain dicts keyed by column name.
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


@dataclass(frozen=True, slots=True)
class _Plan:
    """One statement compiled for one dialect, with the conversions of its columns."""

    compiled: SQLCompiler
    keys: tuple[str, ...]
    #: (position, processor) of the result columns whose values need converting.
    converters: tuple[tuple[int, _Processor], ...]
    #: Whether the SQL depends on the parameters (an ``IN`` list): then SQLAlchemy renders each run's.
    expanding: bool
    #: The bound parameters in the order the driver takes them, each with its conversion.
    binds: tuple[tuple[str, _Processor | None], ...]
    #: The conversion of each bound parameter that has one, by name.
    processors: dict[str, _Processor]
    #: The values the statement itself binds (``column == 'value'``), under their parameter names.
    defaults: dict[str, Any]


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
            columns = list(self._statement.selected_columns)
            keys = tuple(column.key for column in columns)
            if None in keys:
                raise ValueError("every column a prepared statement selects needs a name")
            converters = []
            for position, column in enumerate(columns):
                processor = column.type.dialect_impl(dialect).result_processor(dialect, None)
                if processor is not None:
                    converters.append((position, processor))
            expanding = bool(compiled.literal_execute_params or compiled.post_compile_params)
            processors = {
                name: bind.type.dialect_impl(dialect).bind_processor(dialect)
                for bind, name in compiled.bind_names.items()
            }
            names = compiled.positiontup if compiled.positional else list(compiled.params)
            if compiled.escaped_bind_names:
                raise ValueError("a prepared statement's parameter names must need no quoting")
            plan = _Plan(
                compiled=compiled,
                keys=cast(tuple[str, ...], keys),
                converters=tuple(converters),
                expanding=expanding,
                binds=tuple((name, processors.get(name)) for name in names or ()),
                processors={
                    name: processor for name, processor in processors.items() if processor is not None
                },
                defaults={name: value for name, value in compiled.params.items() if value is not None},
            )
            self._plans[dialect] = plan
        return plan

    def rows(self, connection: Connection, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Every row the statement selects with ``params``, in the connection's transaction."""
        plan = self._plan(connection.dialect)
        compiled = plan.compiled
        args: Any
        if plan.expanding:
            state = compiled.construct_expanded_state(dict(params))
            sql, processors = state.statement, {**plan.processors, **state.processors}
            converted = {
                name: processors[name](value) if name in processors else value
                for name, value in state.parameters.items()
            }
            args = (
                tuple(converted[name] for name in state.positiontup or ())
                if compiled.positional
                else converted
            )
        else:
            sql = compiled.string
            given = {**plan.defaults, **params}
            converted_binds = [
                (name, given[name] if processor is None else processor(given[name]))
                for name, processor in plan.binds
            ]
            args = (
                tuple(value for _, value in converted_binds) if compiled.positional else dict(converted_binds)
            )
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
