"""Reads and updates the ORM builds once per process and then only executes.

Django compiles a queryset to SQL on every evaluation, and for a small indexed read that costs
more CPU than PostgreSQL spends answering it (about 0.5 ms against 0.1 ms for a job's detail).
A `PreparedRead` builds its queryset once, with placeholder values (`slots`) where the real
values go, keeps the SQL, the parameters and the column converters Django chose, and later runs
that SQL with each slot's placeholder replaced by the value given. `PreparedUpdate` does the same
for a queryset's `update(...)`, and `PreparedInsert` for a new instance's `save()`. Only for the
hot statements: one whose shape changes with its input (an optional filter, an IN list) cannot
be prepared.

The placeholders must be values no caller passes as a constant of the same read: they are found
among the compiled parameters by equality, and each must be found at least once.

Each runs as a statement PostgreSQL plans once per session (auteur/core/postgres/plans.py), with
the compiled constants written into its text and a parameter for each slot.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from django.db import connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import NOT_PROVIDED, Field, Model, QuerySet
from django.db.models.fields import AutoFieldMixin
from django.db.models.sql import InsertQuery, UpdateQuery
from django.utils import timezone

from auteur.core.postgres.plans import Planned


class PreparedRead:
    """`build(**slots)` returns the queryset: of `.values(...)`, read with `rows`/`first` as dicts,
    or of model instances (no `select_related`), read with `objects`/`object`."""

    def __init__(self, build: Callable[..., QuerySet[Any, Any]], **slots: Any) -> None:
        self._build = build
        self._slots = slots

    @functools.cached_property
    def _compiled(self) -> _Compiled:
        # Compiled on first use; a racing thread compiling it again would get the same statement.
        query = self._build(**self._slots)
        compiler = query.query.get_compiler(using=query.db)
        sql, params = compiler.as_sql()
        order = _slotted(sql, params, self._slots)
        model = None
        if not query.query.values_select:  # a queryset of instances
            klass_info = compiler.klass_info
            if klass_info is None or klass_info.get("related_klass_infos"):
                raise AssertionError(f"only plain reads of one model can be prepared: {sql}")
            model = klass_info["model"]
            names = tuple(col.target.attname for col, _, _ in compiler.select)
        else:
            names = (*query.query.extra_select, *query.query.values_select, *query.query.annotation_select)
        converters = tuple(
            (position, tuple(functions), expression)
            for position, (functions, expression) in compiler.get_converters(
                [col for col, _, _ in compiler.select]
            ).items()
        )
        plan, slots = _planned(sql, order, connections[query.db])
        return _Compiled(plan, slots, query.db, names, converters, model)

    def _run(self, values: dict[str, Any]) -> tuple[_Compiled, list[Any]]:
        compiled = self._compiled
        connection = connections[compiled.alias]
        with connection.cursor() as cursor:
            compiled.plan.execute(cursor, [slot.value(values) for slot in compiled.slots])
            rows: list[Any] = cursor.fetchall()
        if compiled.converters:  # as Django's compiler applies them (JSON decoded, say)
            converted = []
            for row in rows:
                row = list(row)
                for position, functions, expression in compiled.converters:
                    value = row[position]
                    for convert in functions:
                        value = convert(value, expression, connection)
                    row[position] = value
                converted.append(row)
            rows = converted
        return compiled, rows

    def rows(self, **values: Any) -> list[dict[str, Any]]:
        compiled, rows = self._run(values)
        return [dict(zip(compiled.names, row, strict=True)) for row in rows]

    def first(self, **values: Any) -> dict[str, Any] | None:
        found = self.rows(**values)
        return found[0] if found else None

    def objects(self, **values: Any) -> list[Any]:
        compiled, rows = self._run(values)
        assert compiled.model is not None, "a read of values: use rows()"
        return [compiled.model.from_db(compiled.alias, compiled.names, row) for row in rows]

    def object(self, **values: Any) -> Any | None:
        found = self.objects(**values)
        return found[0] if found else None


@dataclass(frozen=True)
class _Compiled:
    plan: Planned
    slots: tuple[_Slot, ...]  # the plan's parameters
    alias: str
    names: tuple[str, ...]
    converters: tuple[tuple[int, tuple[Callable[..., Any], ...], Any], ...]
    model: Any  # the model of a read of instances, None for values


class PreparedUpdate:
    """`build(**slots).update(**changes(**slots))`, built once; `run(**values)` executes it and
    returns the number of rows it changed, as `update` does."""

    def __init__(self, build: Callable[..., QuerySet[Any, Any]], changes: Callable[..., dict[str, Any]],
                 **slots: Any) -> None:
        self._build, self._changes, self._slots = build, changes, slots

    @functools.cached_property
    def _compiled(self) -> tuple[str, tuple[Any, ...], str]:
        queryset = self._build(**self._slots)
        query: UpdateQuery = queryset.query.chain(UpdateQuery)  # type: ignore[assignment]
        query.add_update_values(self._changes(**self._slots))
        query.clear_select_clause()
        if query.related_updates:
            raise AssertionError("an update of inherited fields cannot be prepared")
        sql, params = query.get_compiler(queryset.db).as_sql()
        return sql, _slotted(sql, params, self._slots), queryset.db

    @functools.cached_property
    def _plan(self) -> tuple[Planned, tuple[_Slot, ...]]:
        sql, order, alias = self._compiled
        return _planned(sql, order, connections[alias])

    def run(self, **values: Any) -> int:
        alias = self._compiled[2]
        plan, slots = self._plan
        with transaction.mark_for_rollback_on_error(using=alias), connections[alias].cursor() as cursor:
            plan.execute(cursor, [slot.value(values) for slot in slots])
            return int(cursor.rowcount)

    def statement(self, **values: Any) -> tuple[str, list[Any]]:
        """The UPDATE's SQL and its parameters for these values, for a caller that runs it as part
        of a statement of its own (the default database's)."""
        sql, order, alias = self._compiled
        if alias != "default":
            raise AssertionError(f"an update of {alias!r} cannot join a statement on the default database")
        return sql, _params(order, values)


def _slotted(sql: str, params: tuple[Any, ...] | list[Any], slots: dict[str, Any]) -> tuple[Any, ...]:
    """The compiled parameters with a `_Slot` in place of each slot's placeholder."""
    order: list[Any] = []
    found: set[str] = set()
    for param in params:
        name = next((n for n, v in slots.items() if _same(param, v)), None)
        if name is not None:
            # The value as the field adapted it (an int as psycopg's Int4, say): wrapped alike.
            order.append(_Slot(name, None if type(param) is type(slots[name]) else type(param)))
            found.add(name)
            continue
        name = next((n for n, v in slots.items() if getattr(param, "obj", None) is v), None)
        if name is not None:  # a JSON field's value, wrapped by psycopg with the field's encoder
            wrapper: Callable[..., Any] = type(param)
            order.append(_Slot(name, functools.partial(wrapper, dumps=param.dumps)))
            found.add(name)
            continue
        order.append(param)
    missing = set(slots) - found
    if missing:
        raise AssertionError(f"slots {sorted(missing)} are not parameters of {sql}")
    return tuple(order)


def _planned(sql: str, order: tuple[Any, ...], connection: BaseDatabaseWrapper) -> tuple[Planned, tuple[_Slot, ...]]:
    """The compiled statement planned, its constants written into its text as literals (as
    psycopg writes them, with the connection's adapters) and a parameter for each slot."""
    connection.ensure_connection()
    params = iter(order)
    slots: list[_Slot] = []

    def place(match: re.Match[str]) -> str:
        if match.group() == "%%":
            return "%%"
        param = next(params)
        if isinstance(param, _Slot):
            slots.append(param)
            return "%s"
        return writer.mogrify("%s", [param]).replace("%", "%%")

    with psycopg.ClientCursor(connection.connection) as writer:
        text = re.sub("%%|%s", place, sql)
    if next(params, _Slot) is not _Slot:  # a parameter left over (None is a parameter like any)
        raise AssertionError(f"more parameters than placeholders: {sql}")
    return Planned(text), tuple(slots)


def _params(order: tuple[Any, ...], values: dict[str, Any]) -> list[Any]:
    """The compiled parameters with each slot's value for this call."""
    return [p.value(values) if isinstance(p, _Slot) else p for p in order]


def _same(param: Any, slot: Any) -> bool:
    """A compiled parameter is the slot's placeholder: equal, of its type or a subclass (the
    field's adaptation), and never a bool for a number or the reverse (True == 1)."""
    return isinstance(param, type(slot)) and isinstance(param, bool) == isinstance(slot, bool) and param == slot


class PreparedInsert:
    """`instance.save(force_insert=True)` of a model whose primary key is given before the insert
    (nothing comes back from the database), its INSERT compiled once: `run(instance)` computes each
    column's value as the ORM does (the field's `pre_save`, then `get_db_prep_save`) and executes
    the statement. Unlike `save`, it sends no pre_save/post_save signal: only for models that have
    no receiver (tests/auteur/test_prepared.py holds that for the models inserted so)."""

    def __init__(self, model: type[Model]) -> None:
        self._model = model

    @functools.cached_property
    def _compiled(self) -> tuple[Planned, tuple[Field[Any, Any], ...], str]:
        fields = tuple(f for f in self._model._meta.local_concrete_fields if not f.generated)
        alias = router.db_for_write(self._model)
        query = InsertQuery(self._model)
        query.insert_values(fields, [self._model()])
        ((sql, params),) = query.get_compiler(alias).as_sql()
        if len(params) != len(fields) or sql.count("%s") != len(fields):
            raise AssertionError(f"only one plain placeholder per column can be prepared: {sql}")
        return Planned(sql), fields, alias

    def run(self, instance: Model) -> None:
        plan, fields, alias = self._compiled
        connection = connections[alias]
        params = []
        for field in fields:
            value = field.pre_save(instance, True)
            if hasattr(value, "resolve_expression"):
                raise ValueError(f"{field.name}: an expression cannot be inserted by a prepared insert")
            params.append(field.get_db_prep_save(value, connection))
        with transaction.mark_for_rollback_on_error(using=alias), connection.cursor() as cursor:
            plan.execute(cursor, params)
        instance._state.adding, instance._state.db = False, alias


class _Slot:
    __slots__ = ("name", "wrap")

    def __init__(self, name: str, wrap: Callable[[Any], Any] | None) -> None:
        self.name, self.wrap = name, wrap

    def value(self, values: dict[str, Any]) -> Any:
        value = values[self.name]
        return value if self.wrap is None else self.wrap(value)


def insert_many(model: type[Model], count: int, *, varying: dict[str, list[Any]], same: dict[str, Any]) -> None:
    """INSERT `count` rows of `model` in one statement, without building an instance per row: each
    field named in `varying` takes its list's values (one per row), each in `same` one value for
    every row; any other field takes its default (an auto_now field: now), the database's default
    (an identity or `db_default` column) or NULL. Fields are named by attname (`user_id`). The
    values go as one array per varying column (`unnest`), so the statement's text and its
    parameters stay few whatever the count. Sends no signal (like PreparedInsert)."""
    alias = router.db_for_write(model)
    connection = connections[alias]
    columns, selects, scalars, arrays, array_types = [], [], [], [], []
    now = timezone.now()
    for field in model._meta.local_concrete_fields:
        name = field.attname
        if name in varying:
            values = varying[name]
            if len(values) != count:
                raise ValueError(f"{name}: {len(values)} values for {count} rows")
            arrays.append([field.get_db_prep_save(v, connection) for v in values])
            array_types.append(f"%s::{field.db_type(connection)}[]")
            selects.append(f"u.c{len(arrays)}")
        else:
            if name in same:
                value = same[name]
            elif isinstance(field, AutoFieldMixin) or field.db_default is not NOT_PROVIDED:
                continue  # the database's
            elif getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
                value = now
            elif field.has_default():
                if field.primary_key or (callable(field.default) and field.default not in (dict, list)):
                    raise ValueError(f"{name}: a default that differs per row must be given")
                value = field.get_default()
            else:
                value = None
            scalars.append(field.get_db_prep_save(value, connection))
            selects.append("%s")
        columns.append(connection.ops.quote_name(field.column))
    names = ", ".join(f"c{i + 1}" for i in range(len(arrays)))
    table = connection.ops.quote_name(model._meta.db_table)
    # Names from the model, values as parameters.
    sql = f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(selects)} FROM unnest({', '.join(array_types)}) AS u({names})"  # noqa: S608, E501
    with transaction.mark_for_rollback_on_error(using=alias), connection.cursor() as cursor:
        cursor.execute(sql, [*scalars, *arrays])
