"""Refreshing a mart: `include/sql/marts/<name>.sql` into `marts.<name>` for one as-of date.

Each mart's SQL selects the rows of one as-of date, bound as `%(as_of_date)s`. The refresh
deletes that date's rows and inserts the new ones in one transaction, so a re-run for the
same date replaces rather than duplicates, and snapshots of other dates stay.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from pathlib import Path

from psycopg2 import sql

MARTS_SQL_DIR = Path(__file__).resolve().parent.parent / "sql" / "marts"


def mart_sql(name: str) -> str:
    return (MARTS_SQL_DIR / f"{name}.sql").read_text()


def refresh_mart(
    conn, name: str, as_of_date: date, parameters: Mapping[str, object] | None = None
) -> int:
    """Replace marts.<name>'s rows for `as_of_date`; return how many rows it now has for it.
    `parameters` binds the SQL's other parameters (thresholds, lists)."""
    query = mart_sql(name)
    table = sql.Identifier("marts", name)
    params = {**(parameters or {}), "as_of_date": as_of_date}
    with conn.cursor() as cur:
        cur.execute("create schema if not exists marts")
        cur.execute(
            sql.SQL("create table if not exists {} as {} with no data").format(
                table, sql.SQL(query)
            ),
            params,
        )
        cur.execute(sql.SQL("delete from {} where as_of_date = %s").format(table), (as_of_date,))
        cur.execute(sql.SQL("insert into {} {}").format(table, sql.SQL(query)), params)
        return cur.rowcount
