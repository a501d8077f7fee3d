"""Fast inserts for imports: PostgreSQL's COPY, with ids taken from the table's sequence
first so the caller can link rows (prompt → candidates → items) without reading them back.

Building a Django model instance per row costs more than the database does (measured in
bench/import_prompts.py: model __init__ and bulk_create's value preparation were ~60% of
an import).
"""

import json
from collections.abc import Sequence

from django.db import connection, models
from psycopg import sql

from tasks import dbstats


def insert(
    model: type[models.Model],
    columns: Sequence[str],
    rows: list[tuple],
    json_columns: Sequence[str] = (),
) -> list[int]:
    """Insert ``rows`` (values in ``columns`` order) and return their ids, in order.

    Values must already be what the column stores: ids for foreign keys (``*_id``
    columns), aware datetimes, and Python objects for the ``json_columns``.
    """
    if not rows:
        return []
    table = model._meta.db_table
    json_at = [columns.index(c) for c in json_columns]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [table, len(rows)],
        )
        ids = [row[0] for row in cursor.fetchall()]
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, ["id", *columns]))
        )
        dumps = json.dumps
        with cursor.cursor.copy(statement) as copy:
            for new_id, row in zip(ids, rows, strict=True):
                if json_at:
                    row = list(row)
                    for i in json_at:
                        row[i] = None if row[i] is None else dumps(row[i], ensure_ascii=False)
                copy.write_row((new_id, *row))
    dbstats.wrote(model, len(rows))
    return ids
