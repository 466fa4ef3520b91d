"""The feature store: point-in-time customer features in PostgreSQL.

`marts.customer_features` holds one snapshot per as-of date D (a list partition each): a row
for every customer signed up on or before D, computed from data up to the end of D only.
The SQL is layered under include/sql: staging views (stg_*) over core, intermediate views
(int_*), and the mart's query (marts/customer_features.sql). docs/features.md defines every
column.

The features are read off an additive state per customer
(`intermediate.int_customer_feature_state`: counts, sums, trailing windows, counts per
category, hour and weekday, and the modes picked from them), versioned by date like the
snapshots. Two ways to build a snapshot, with identical results (a test holds them to it):
- `build_features`: every customer's state from their whole history up to D
  (int_customer_feature_state.sql), then the snapshot from it;
- `roll_forward_features`: from the snapshot and the state at P < D, when the new data lies
  in (P, D]: the customers with activity in (P, D] (or signed up then) get a new state
  version, their state at P plus that data only (int_customer_feature_state_roll_forward.sql),
  and their row from it; the others are carried over with their date-dependent columns moved
  on (customer_features_roll_forward.sql). Without a state at P it builds in full.

Snapshots and state versions are built as standalone tables, indexed, then attached as the
partition for D in one transaction: readers see the old snapshot or the new one, never half
of one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from psycopg2 import sql

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
FEATURES_TABLE = "customer_features"
STATE_TABLE = "int_customer_feature_state"
# The views the mart reads, in dependency order: (schema, name), the SQL in
# include/sql/<schema>/<name>.sql.
FEATURE_VIEWS = (
    ("staging", "stg_sessions"),
    ("staging", "stg_events"),
    ("staging", "stg_products"),
    ("intermediate", "int_sessions_enriched"),
)
# views of earlier versions that nothing reads any more, dropped when the models are created
RETIRED_VIEWS = (("intermediate", "int_session_events_aggregated"),)
# Days after D over which churn is observed for the training label.
CHURN_HORIZON_DAYS = 90


@dataclass(frozen=True)
class SnapshotBuild:
    as_of_date: date
    mode: str  # full | incremental
    rows: int
    recomputed_customers: int
    previous_date: date | None = None


def _sql(relative: str) -> str:
    return (SQL_DIR / relative).read_text()


def ensure_feature_models(conn) -> None:
    """Create (or replace) the staging and intermediate views, the shared SQL functions and
    the partitioned marts.customer_features table."""
    with conn.cursor() as cur:
        # warehouse.sql first (idempotent): it gives an older core the ids in "C" that
        # features.sql gives the feature tables, should no ingestion have run since
        cur.execute(_sql("ddl/warehouse.sql"))
        cur.execute(_sql("ddl/features.sql"))
        cur.execute("create schema if not exists staging")
        for schema, name in RETIRED_VIEWS + tuple(reversed(FEATURE_VIEWS)):
            cur.execute(
                sql.SQL("drop view if exists {} cascade").format(sql.Identifier(schema, name))
            )
        for schema, name in FEATURE_VIEWS:
            query = _sql(f"{schema}/{name}.sql")
            cur.execute(
                sql.SQL("create view {} as {}").format(sql.Identifier(schema, name), sql.SQL(query))
            )
        cur.execute("select to_regclass('marts.customer_features')")
        if cur.fetchone()[0] is None:
            # the columns and types come from the query itself, so that they cannot drift
            cur.execute(
                sql.SQL("create temp table _features_shape as {} with no data").format(
                    sql.SQL(_sql("marts/customer_features.sql"))
                ),
                {"as_of_date": date(2000, 1, 1), "customer_ids": None},
            )
            cur.execute(
                "create table marts.customer_features (like _features_shape) "
                "partition by list (as_of_date)"
            )
            cur.execute(
                "alter table marts.customer_features add primary key (as_of_date, customer_id)"
            )
            cur.execute("drop table _features_shape")


def snapshot_dates(conn) -> list[date]:
    """The as-of dates that have a snapshot, oldest first."""
    return _partition_dates(conn, f"marts.{FEATURES_TABLE}")


def state_dates(conn) -> list[date]:
    """The dates that have a version of the feature state, oldest first."""
    return _partition_dates(conn, f"intermediate.{STATE_TABLE}")


def _partition_dates(conn, parent: str) -> list[date]:
    with conn.cursor() as cur:
        cur.execute(
            """
            select pg_get_expr(c.relpartbound, c.oid)
            from pg_inherits i
            join pg_class c on c.oid = i.inhrelid
            where i.inhparent = to_regclass(%s)
            """,
            (parent,),
        )
        bounds = [row[0] for row in cur.fetchall()]
    # bounds read FOR VALUES IN ('2024-06-30')
    return sorted(date.fromisoformat(b.split("'")[1]) for b in bounds)


def _partition_name(as_of: date) -> str:
    return f"{FEATURES_TABLE}_{as_of:%Y%m%d}"


def build_features(conn, as_of: date) -> SnapshotBuild:
    """Build the snapshot at `as_of` from every customer's whole history up to that day: the
    state of every customer at `as_of` first (it replaces the state versions before `as_of`,
    which it supersedes), then the snapshot from it."""
    ensure_feature_models(conn)
    with conn.cursor() as cur:
        _set_build_settings(cur)
        _write_partition(
            cur,
            ("intermediate", STATE_TABLE),
            as_of,
            [(_sql("intermediate/int_customer_feature_state.sql"), {"as_of_date": as_of})],
            key=("customer_id", "as_of_date"),
        )
        for older in state_dates(conn):
            if older < as_of:
                cur.execute(
                    sql.SQL("drop table {}").format(
                        sql.Identifier("intermediate", f"{STATE_TABLE}_{older:%Y%m%d}")
                    )
                )
    rows = _write_snapshot(
        conn,
        as_of,
        [(_sql("marts/customer_features.sql"), {"as_of_date": as_of, "customer_ids": None})],
    )
    return SnapshotBuild(as_of, "full", rows, recomputed_customers=rows)


def roll_forward_features(conn, as_of: date, previous: date | None = None) -> SnapshotBuild:
    """Build the snapshot at `as_of` from the one at `previous` (default: the latest before
    `as_of`), computing afresh only the customers with activity or a signup in between.

    Correct when no data dated on or before `previous` has arrived since that snapshot was
    built; otherwise use `build_features` (the feature DAG decides from the asset events).
    Without a state version at `previous` (pruned by a later full build, or a snapshot older
    than the state), it builds in full.
    """
    ensure_feature_models(conn)
    if previous is None:
        earlier = [d for d in snapshot_dates(conn) if d < as_of]
        if not earlier:
            raise ValueError(f"no snapshot before {as_of} to roll forward from")
        previous = earlier[-1]
    if previous >= as_of:
        raise ValueError(f"previous snapshot {previous} is not before {as_of}")
    if previous not in state_dates(conn):
        return build_features(conn, as_of)
    changed = changed_customers(conn, previous, as_of)
    with conn.cursor() as cur:
        _set_build_settings(cur)
        _write_partition(
            cur,
            ("intermediate", STATE_TABLE),
            as_of,
            [
                (
                    _sql("intermediate/int_customer_feature_state_roll_forward.sql"),
                    {
                        "as_of_date": as_of,
                        "previous_date": previous,
                        "changed_customer_ids": changed,
                    },
                )
            ],
            key=("customer_id", "as_of_date"),
        )
    rows = _write_snapshot(
        conn,
        as_of,
        [
            # the carried-over rows first: the largest query, which CREATE TABLE AS runs in
            # parallel
            (
                _sql("marts/customer_features_roll_forward.sql"),
                {
                    "as_of_date": as_of,
                    "previous_date": previous,
                    "changed_customer_ids": changed,
                },
            ),
            (_sql("marts/customer_features.sql"), {"as_of_date": as_of, "customer_ids": changed}),
        ],
    )
    return SnapshotBuild(as_of, "incremental", rows, len(changed), previous)


def refresh_features(
    conn, as_of: date, mode: str = "auto", earliest_new_activity: date | None = None
) -> SnapshotBuild:
    """Refresh the snapshot at `as_of`.

    mode "full" rebuilds it; "incremental" rolls the latest earlier snapshot forward; "auto"
    rolls forward when there is an earlier snapshot P and the new data starts after P
    (`earliest_new_activity` > P, as the ingestion's asset events report), and rebuilds
    otherwise: late data dated on or before P, or nothing known about the new data.
    """
    if mode == "full":
        return build_features(conn, as_of)
    if mode == "incremental":
        return roll_forward_features(conn, as_of)
    if mode != "auto":
        raise ValueError(f"mode must be auto, full or incremental, not {mode!r}")
    ensure_feature_models(conn)
    earlier = [d for d in snapshot_dates(conn) if d < as_of]
    if earlier and earliest_new_activity is not None and earliest_new_activity > earlier[-1]:
        return roll_forward_features(conn, as_of, earlier[-1])
    return build_features(conn, as_of)


def changed_customers(conn, previous: date, as_of: date) -> list[str]:
    """Customers with a session, an event or their signup in (previous, as_of]."""
    with conn.cursor() as cur:
        cur.execute(
            """
            select customer_id from core.sessions
            where session_date > %(previous)s and session_date <= %(as_of)s
            union
            select customer_id from core.events
            where event_time >= %(previous)s::date + 1 and event_time < %(as_of)s::date + 1
            union
            select customer_id from core.customers
            where signup_date > %(previous)s and signup_date <= %(as_of)s
            """,
            {"previous": previous, "as_of": as_of},
        )
        return sorted(row[0] for row in cur.fetchall())


def _set_build_settings(cur) -> None:
    """Settings for the rest of the build's transaction: the aggregates hash every customer's
    sessions and events, in memory and in parallel (see docs/benchmarks.md)."""
    cur.execute("set local work_mem = '256MB'")
    cur.execute("set local max_parallel_workers_per_gather = 2")
    cur.execute("set local parallel_setup_cost = 100")
    # compiling the expressions costs more than it saves at this size
    cur.execute("set local jit = off")


def _write_snapshot(conn, as_of: date, queries: list[tuple[str, dict]]) -> int:
    """Fill a standalone table with the queries' rows, index it, and swap it in as the
    partition for `as_of` of marts.customer_features."""
    with conn.cursor() as cur:
        _set_build_settings(cur)
        return _write_partition(
            cur, ("marts", FEATURES_TABLE), as_of, queries, key=("as_of_date", "customer_id")
        )


def _write_partition(
    cur, parent: tuple[str, str], as_of: date, queries: list[tuple[str, dict]], key: tuple
) -> int:
    """Fill a standalone table with the queries' rows (their columns are `parent`'s), give
    it `parent`'s NOT NULL columns and primary key `key`, and swap it in as the partition for
    `as_of` (replacing any)."""
    schema, table = parent
    partition = f"{table}_{as_of:%Y%m%d}"
    building = sql.Identifier(schema, f"{partition}_building")
    target = sql.Identifier(schema, partition)
    cur.execute(sql.SQL("drop table if exists {}").format(building))
    # CREATE TABLE AS, not INSERT ... SELECT: only the former runs its query in parallel
    (first, first_params), *more = queries
    cur.execute(sql.SQL("create table {} as {}").format(building, sql.SQL(first)), first_params)
    rows = cur.rowcount
    for query, params in more:
        cur.execute(sql.SQL("insert into {} {}").format(building, sql.SQL(query)), params)
        rows += cur.rowcount
    # ATTACH requires the parent's NOT NULL constraints (and the types, which it checks)
    cur.execute(
        "select attname from pg_attribute where attrelid = %s::regclass and attnum > 0 "
        "and not attisdropped and attnotnull order by attnum",
        (f"{schema}.{table}",),
    )
    not_null = [row[0] for row in cur.fetchall() if row[0] not in key]
    if not_null:
        cur.execute(
            sql.SQL("alter table {} {}").format(
                building,
                sql.SQL(", ").join(
                    sql.SQL("alter column {} set not null").format(sql.Identifier(c))
                    for c in not_null
                ),
            )
        )
    cur.execute(
        sql.SQL("alter table {} add primary key ({})").format(
            building, sql.SQL(", ").join(map(sql.Identifier, key))
        )
    )
    # the constraint lets ATTACH skip scanning the table to prove its rows belong
    cur.execute(
        sql.SQL("alter table {} add constraint {} check (as_of_date = {})").format(
            building,
            sql.Identifier(f"{partition}_as_of"),
            sql.Literal(as_of),
        )
    )
    # Statistics before anyone reads it: the next day's roll-forward joins this table at once,
    # and without statistics (autovacuum comes up to a minute later) the planner chose a
    # plan that took minutes instead of seconds at 100,000 customers (`make bench`).
    cur.execute(sql.SQL("analyze {}").format(building))
    cur.execute(sql.SQL("drop table if exists {}").format(target))
    cur.execute(sql.SQL("alter table {} rename to {}").format(building, sql.Identifier(partition)))
    cur.execute(
        sql.SQL("alter table {} attach partition {} for values in ({})").format(
            sql.Identifier(schema, table), target, sql.Literal(as_of)
        )
    )
    return rows


def data_end(conn) -> date | None:
    """The last day with a session in core."""
    with conn.cursor() as cur:
        cur.execute("select max(session_date) from core.sessions")
        return cur.fetchone()[0]


def training_set(conn, as_of: date, horizon_days: int = CHURN_HORIZON_DAYS):
    """Features at `as_of` with the label `churned_90d`: no purchase in (as_of, as_of + 90].

    Only for an as-of date at least `horizon_days` before the data's end, so that every
    label is observed. The features come from the snapshot at `as_of` (built here if it does
    not exist), which by construction uses no data after `as_of`.
    Returns a DataFrame: the mart's columns plus churned_90d (bool).
    """
    import pandas as pd

    end = data_end(conn)
    if end is None or as_of > end - timedelta(days=horizon_days):
        raise ValueError(
            f"as-of date {as_of} is less than {horizon_days} days before the data's end "
            f"({end}): its churn labels are not observed yet"
        )
    if as_of not in snapshot_dates(conn):
        build_features(conn, as_of)
    query = """
        select f.*,
               not exists (
                   select 1 from core.sessions s
                   where s.customer_id = f.customer_id and s.purchase_made
                     and s.session_date > %(as_of)s
                     and s.session_date <= %(as_of)s::date + %(horizon)s
               ) as churned_90d
        from marts.customer_features f
        where f.as_of_date = %(as_of)s
        order by f.customer_id
    """
    with conn.cursor() as cur:
        cur.execute(query, {"as_of": as_of, "horizon": horizon_days})
        columns = [d[0] for d in cur.description]
        return pd.DataFrame(cur.fetchall(), columns=columns)
