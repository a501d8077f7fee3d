"""Model instances from SQL written out, for the requests every annotator and expert makes
many times an hour.

On those paths the ORM's compilation of a query cost more CPU than PostgreSQL's answer:
0.5-1.4 ms a query against about 0.1 ms for the same statement written out (measured with
the production settings on this project's 2-core machine), and a web process's CPU is what
the people sharing it wait for. ``select`` reads one row of a join and makes an instance of
each model in it, converted as the ORM converts its columns (JSON, say), related instances
set where the caller says.

A statement written out is not scoped by django-scopes: each one names the organization in
its WHERE, and its callers' tests check that another organization's row is not found.
"""

import re
from collections.abc import Iterable, Sequence

from django.db import connection, models
from django_scopes import get_scope
from django_scopes.exceptions import ScopeError

# An array literal's body made of elements of digits, lower-case letters, _ and -.
_PLAIN_ELEMENTS = re.compile(r"(?:[0-9a-z_-]+(?:,[0-9a-z_-]+)*)?")


def array(values: Iterable) -> str:
    """A PostgreSQL array literal (``'{1,2,3}'``) of ids, hex digests or choice values, for
    one ``%s::bigint[]`` or ``%s::text[]`` parameter. Django's cursors bind on the client,
    and a Python list is quoted there element by element: 10,000 ids took 17 ms against
    3 ms as a literal, 5,000 digests 30 ms against 7 (2-core machine). An element that
    would mean something else unquoted (empty, ``null``, a space, a quote, a comma, a brace,
    a capital) is refused with a ValueError; not for free text."""
    elements = [str(value) for value in values]
    body = ",".join(elements)
    if (
        _PLAIN_ELEMENTS.fullmatch(body) is None
        or body.count(",") != max(len(elements) - 1, 0)
        or "null" in elements
    ):
        raise ValueError("array() takes ids, digests and choice values only")
    return "{" + body + "}"


def columns(alias: str | None, model: type[models.Model]) -> str:
    """The model's columns, quoted (a message's "order" is a keyword), as ``select`` reads
    them, from table ``alias`` (bare names for None: a RETURNING list)."""
    prefix, quote = f"{alias}." if alias else "", connection.ops.quote_name
    return ", ".join(f"{prefix}{quote(field.column)}" for field in model._meta.concrete_fields)


def scope_organization_id() -> int:
    """The organization of the django-scopes scope the caller is in (the tenancy
    middleware's, for a request), for a statement written out to name in its WHERE. Outside
    a scope (or in scopes_disabled) a ScopeError, as a scoped manager's query raises."""
    organization = get_scope().get("organization")
    if organization is None:
        raise ScopeError("A statement written out needs an organization's scope.")
    return getattr(organization, "pk", organization)


def instance(model: type[models.Model], values: Sequence):
    """An instance from its columns (``columns``' order), as the ORM would make it."""
    fields = model._meta.concrete_fields
    values = [
        field.from_db_value(value, None, connection) if hasattr(field, "from_db_value") else value
        for field, value in zip(fields, values, strict=True)
    ]
    return model.from_db(connection.alias, [field.attname for field in fields], values)


def split(row: Sequence, models_in_row: Sequence[type[models.Model]]) -> list:
    """One instance of each model from a row holding their ``columns`` one after another."""
    sizes = [len(model._meta.concrete_fields) for model in models_in_row]
    if sum(sizes) != len(row):
        raise ValueError(f"the row has {len(row)} columns, the models {sum(sizes)}")
    made, start = [], 0
    for model, size in zip(models_in_row, sizes, strict=True):
        made.append(instance(model, row[start : start + size]))
        start += size
    return made


def select_all(sql: str, params, models_in_row: Sequence[type[models.Model]]) -> list[list]:
    """Every row of ``sql``, each as one instance per model (``split``)."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [split(row, models_in_row) for row in cursor.fetchall()]


def rows(model: type[models.Model], where: str, params) -> list:
    """The instances of ``model`` whose rows of its own table match ``where`` (a constant
    condition with %s placeholders; it may end in FOR UPDATE)."""
    table = connection.ops.quote_name(model._meta.db_table)
    sql = f"SELECT {columns(None, model)} FROM {table} WHERE {where}"  # noqa: S608
    return [row[0] for row in select_all(sql, params, (model,))]


def select(sql: str, params, models_in_row: Sequence[type[models.Model]]) -> list | None:
    """The first row of ``sql`` as one instance per model (``split``), or None."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return None if row is None else split(row, models_in_row)
