"""Running the analytics SQL: intermediate models as temporary tables, marts per as-of date.

Intermediate models (include/sql/intermediate/int_*.sql) become temporary tables of the
model's name, dropped at commit and analysed, so that the next model is planned on real row
counts. Most are free of parameters (they could serve as views) and have an `activity_date`
column: `materialize` selects from the model with that column restricted to a window ending
at the as-of date (PostgreSQL pushes the condition below the model's aggregation, so only the
window is read). A model that needs more (int_cross_sell_basket_items: a window, a
sequence horizon, the rules' floor) takes bound parameters itself:
`materialize_with_parameters`. The mart SQL (include/sql/marts/*.sql) reads these tables by
name and takes the bound parameters of `AnalyticsParams.sql_parameters`.

A mart is refreshed per as-of date with delete-then-insert in the caller's transaction, as
`ecom_insights.marts.refresh_mart` does; here the parameters are the analytics' own, marts
built in Python are written the same way, and every mart gets an index on as_of_date.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from psycopg2 import sql
from psycopg2.extras import execute_values

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"


def model_sql(layer: str, name: str) -> str:
    return (SQL_DIR / layer / f"{name}.sql").read_text()


def materialize(conn, name: str, *, window_start: date | None, as_of_date: date, **equals) -> int:
    """Create temp table `name` from intermediate/<name>.sql for activity_date in
    [window_start, as_of_date] (no lower bound when window_start is None) and each
    `column = value` of `equals`; return its row count."""
    conditions = [sql.SQL("activity_date <= %(as_of_date)s")]
    params: dict = {"as_of_date": as_of_date}
    if window_start is not None:
        conditions.append(sql.SQL("activity_date >= %(window_start)s"))
        params["window_start"] = window_start
    for column, value in equals.items():
        conditions.append(
            sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(column))
        )
        params[column] = value
    table = sql.Identifier(name)
    with conn.cursor() as cur:
        cur.execute(sql.SQL("drop table if exists pg_temp.{}").format(table))
        cur.execute(
            sql.SQL(
                "create temp table {} on commit drop as select * from ({}) as model where {}"
            ).format(
                table, sql.SQL(model_sql("intermediate", name)), sql.SQL(" and ").join(conditions)
            ),
            params,
        )
        rows = cur.rowcount
        cur.execute(sql.SQL("analyze {}").format(table))
    return rows


def materialize_with_parameters(conn, name: str, params: dict) -> int:
    """Create temp table `name` from intermediate/<name>.sql with its bound parameters."""
    table = sql.Identifier(name)
    with conn.cursor() as cur:
        cur.execute(sql.SQL("drop table if exists pg_temp.{}").format(table))
        cur.execute(
            sql.SQL("create temp table {} on commit drop as {}").format(
                table, sql.SQL(model_sql("intermediate", name))
            ),
            params,
        )
        rows = cur.rowcount
        cur.execute(sql.SQL("analyze {}").format(table))
    return rows


def _ensure_as_of_index(cur, name: str) -> None:
    cur.execute(
        sql.SQL("create index if not exists {} on {} (as_of_date)").format(
            sql.Identifier(f"{name}_as_of_date_idx"), sql.Identifier("marts", name)
        )
    )


def refresh_sql_mart(conn, name: str, params: dict) -> int:
    """Replace marts.<name>'s rows for params['as_of_date'] with marts/<name>.sql's result."""
    query = sql.SQL(model_sql("marts", name))
    table = sql.Identifier("marts", name)
    with conn.cursor() as cur:
        cur.execute("create schema if not exists marts")
        cur.execute(
            sql.SQL("create table if not exists {} as {} with no data").format(table, query),
            params,
        )
        _ensure_as_of_index(cur, name)
        cur.execute(
            sql.SQL("delete from {} where as_of_date = %s").format(table), (params["as_of_date"],)
        )
        cur.execute(sql.SQL("insert into {} {}").format(table, query), params)
        return cur.rowcount


def write_mart(
    conn, name: str, columns: dict[str, str], rows: list[tuple], as_of_date: date
) -> int:
    """Replace marts.<name>'s rows for `as_of_date` with `rows` (tuples in `columns` order,
    as_of_date first); `columns` maps each column to its PostgreSQL type."""
    table = sql.Identifier("marts", name)
    definition = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(column), sql.SQL(kind))
        for column, kind in columns.items()
    )
    with conn.cursor() as cur:
        cur.execute("create schema if not exists marts")
        cur.execute(sql.SQL("create table if not exists {} ({})").format(table, definition))
        _ensure_as_of_index(cur, name)
        cur.execute(sql.SQL("delete from {} where as_of_date = %s").format(table), (as_of_date,))
        if rows:
            execute_values(
                cur,
                sql.SQL("insert into {} ({}) values %s")
                .format(table, sql.SQL(", ").join(map(sql.Identifier, columns)))
                .as_string(cur),
                rows,
                page_size=1000,
            )
    return len(rows)


def fetch_frame(conn, query: str, params: dict):
    """The rows of a query as a pandas DataFrame with the query's column names."""
    import pandas as pd

    with conn.cursor() as cur:
        cur.execute(query, params)
        names = [column.name for column in cur.description]
        return pd.DataFrame(cur.fetchall(), columns=names)
