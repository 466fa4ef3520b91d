"""The feature store: point-in-time customer features in PostgreSQL.

`marts.customer_features` is a view with one snapshot per registered as-of date D
(`marts.feature_snapshots`): a row for every customer signed up on or before D, computed
from data up to the end of D only. The SQL is layered under include/sql: staging views
(stg_*) over core, intermediate views (int_*), and the mart's view
(marts/customer_features.sql). docs/features.md defines every column.

The features are read off an additive state per customer
(`intermediate.int_customer_feature_state`: counts, sums, trailing windows, counts per
category, hour and weekday, and the modes picked from them), versioned by date: the
partition for V holds the versions written at V. A snapshot at D reads each customer's
latest version V in [base_date, D], where base_date is the full build it chains from: exact
at D but for the trailing windows, which are those at V and are moved to D when the snapshot
is read (ddl/feature_window_moves.sql), when the columns that depend on D alone (tenure,
recency, the calendar) are computed too. Two ways to write a snapshot, with identical
results (tests hold them to it):
- `build_features`: every customer's state from their whole history up to D
  (int_customer_feature_state.sql), registered with base_date = D;
- `roll_forward_features`: from the snapshot at P < D, when the new data lies in (P, D]: a
  version at D for the customers with activity (or their signup) in (P, D] only, from their
  latest version plus those days' sessions and events
  (int_customer_feature_state_roll_forward.sql), registered with P's base_date. Its cost
  follows the days' data, not the customer base.

A state version and its registry row are written in one transaction: readers see the old
snapshot or the new one, never half of one; the new partition is vacuumed after the commit.
State partitions that no registered snapshot reads (base_date <= V <= as_of_date) are
dropped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from psycopg2 import sql

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
STATE_TABLE = "int_customer_feature_state"
STATE_KEY = ("customer_id", "as_of_date")
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
# The most state versions a snapshot's chain may hold (its full build and the roll-forwards
# after it) before "auto" builds in full again: a read looks for each customer's latest
# version in every partition of the chain, so an endless chain would slow every read and
# every roll-forward day by day. 8 = a weekly full build under daily refreshes.
MAX_CHAIN_VERSIONS = 8
# The most days a snapshot's chain may span (its full build to its date) before "auto" builds
# in full again: a read moves the windows of every customer without a version at D by the
# sessions of the days that cross a window edge since the full build, five such days per day
# spanned (docs/features.md). 14 = a full build every other week under weekly refreshes.
MAX_CHAIN_DAYS = 14
# The roll-forward computes its customers in this many parts side by side, each part on a
# connection of its own: PostgreSQL runs the roll-forward's query (materialized CTEs, a
# lookup per customer) in one process, so the parts are what puts the machine's other cores
# to work (2 here, as max_parallel_workers_per_gather gives the full build).
ROLL_FORWARD_PARTS = 2


@dataclass(frozen=True)
class SnapshotBuild:
    as_of_date: date
    mode: str  # full | incremental
    rows: int
    recomputed_customers: int
    previous_date: date | None = None


def _sql(relative: str) -> str:
    return (SQL_DIR / relative).read_text()


def _models_fingerprint() -> str:
    """A digest of every SQL text that ensure_feature_models runs: the models are current
    when the mart's view carries it."""
    texts = [
        "ddl/warehouse.sql",
        "ddl/features.sql",
        *(f"{schema}/{name}.sql" for schema, name in FEATURE_VIEWS),
        "ddl/feature_session_totals.sql",
        "ddl/feature_window_moves.sql",
        "marts/customer_features.sql",
    ]
    digest = hashlib.sha256()
    for relative in texts:
        digest.update(_sql(relative).encode())
    return f"ecom_insights feature models {digest.hexdigest()}"


def _models_current(cur, fingerprint: str) -> bool:
    """Whether every object that ensure_feature_models creates exists as this code's SQL
    made it: the mart is a view stamped with `fingerprint`, and the views and the function
    that the state queries read are there (a cascade elsewhere may have dropped them)."""
    cur.execute(
        """
        select c.relkind = 'v'
           and obj_description(c.oid, 'pg_class') = %(fingerprint)s
           and to_regprocedure('intermediate.int_customer_session_totals(date, date)')
               is not null
           and to_regprocedure('intermediate.int_customer_window_moves(date, date, date, '
                               'intermediate.customer_version[])') is not null
           and (select bool_and(to_regclass(name) is not null) from unnest(%(views)s) as name)
        from pg_class c
        where c.oid = to_regclass('marts.customer_features')
        """,
        {
            "fingerprint": fingerprint,
            "views": [f"{schema}.{name}" for schema, name in FEATURE_VIEWS],
        },
    )
    found = cur.fetchone()
    return bool(found and found[0])


def ensure_feature_models(conn) -> None:
    """Create (or replace) the staging and intermediate views, the shared SQL functions, the
    state table, the snapshot registry and the marts.customer_features view. Idempotent, and
    a no-op when they are current (one catalogue query). Every build and roll-forward calls
    it inside its own transaction; re-running the DDL there (cheap: about 0.1 s) took
    ACCESS EXCLUSIVE locks on the mart and the staging views and held them until the
    multi-minute build committed, so that every reader (scoring, marts, the dashboard)
    waited for the whole build.

    A warehouse of an earlier version, where marts.customer_features is a table with a
    partition per snapshot, is migrated: the table is dropped and each of its dates is
    rebuilt in full, so that the same dates keep a snapshot."""
    fingerprint = _models_fingerprint()
    with conn.cursor() as cur:
        if _models_current(cur, fingerprint):
            return
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
        # the sessions' one-pass totals, which both state queries call, and the windows'
        # moves, which the roll-forward and the mart's view call: over the views above
        cur.execute(_sql("ddl/feature_session_totals.sql"))
        cur.execute(_sql("ddl/feature_window_moves.sql"))
        cur.execute(
            "select relkind from pg_class where oid = to_regclass('marts.customer_features')"
        )
        found = cur.fetchone()
        retired_dates = []
        if found is not None and found[0] != "v":
            retired_dates = _partition_dates(conn, "marts.customer_features")
            cur.execute("drop table marts.customer_features")
        cur.execute(
            sql.SQL("create or replace view marts.customer_features as {}").format(
                sql.SQL(_sql("marts/customer_features.sql"))
            )
        )
        cur.execute(
            sql.SQL("comment on view marts.customer_features is {}").format(
                sql.Literal(fingerprint)
            )
        )
    for as_of in retired_dates:
        build_features(conn, as_of)


def snapshot_dates(conn) -> list[date]:
    """The as-of dates that have a snapshot, oldest first."""
    with conn.cursor() as cur:
        cur.execute("select to_regclass('marts.feature_snapshots')")
        if cur.fetchone()[0] is None:
            return []
        cur.execute("select as_of_date from marts.feature_snapshots order by as_of_date")
        return [row[0] for row in cur.fetchall()]


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


def _base_dates(conn) -> dict[date, date]:
    """Each registered snapshot's as-of date and the full build it chains from."""
    with conn.cursor() as cur:
        cur.execute("select as_of_date, base_date from marts.feature_snapshots")
        return dict(cur.fetchall())


def build_features(conn, as_of: date) -> SnapshotBuild:
    """Build the snapshot at `as_of` from every customer's whole history up to that day: the
    state of every customer at `as_of`, registered as a snapshot of its own chain. The later
    snapshots whose chain runs through `as_of` now chain from it (their rows do not change:
    every customer with data up to `as_of` has a version at it)."""
    ensure_feature_models(conn)
    with conn.cursor() as cur:
        _set_build_settings(cur)
        _write_state(
            cur, as_of, _sql("intermediate/int_customer_feature_state.sql"), {"as_of_date": as_of}
        )
        rows = _snapshot_rows(cur, as_of)
        _register(cur, as_of, as_of, "full", None, rows)
        cur.execute(
            "update marts.feature_snapshots set base_date = %(as_of)s "
            "where base_date < %(as_of)s and as_of_date > %(as_of)s",
            {"as_of": as_of},
        )
    _drop_unread_state(conn)
    _vacuum_state(conn, as_of)
    return SnapshotBuild(as_of, "full", rows, recomputed_customers=rows)


def roll_forward_features(conn, as_of: date, previous: date | None = None) -> SnapshotBuild:
    """Build the snapshot at `as_of` from the one at `previous` (default: the latest before
    `as_of`), writing state versions only for the customers with new data in between.

    Correct when no data dated on or before `previous` has arrived since that snapshot was
    built; otherwise use `build_features` (the feature DAG decides from the asset events).
    It builds in full instead when `previous` has no snapshot, and when a later snapshot
    reads the state at `as_of` (its chain runs through that date): replacing that state by a
    partial one would change it. The customers are computed in ROLL_FORWARD_PARTS parts side
    by side, on `conn` and on as many more connections to its database (`_compute_parts`).
    """
    ensure_feature_models(conn)
    bases = _base_dates(conn)
    if previous is None:
        earlier = [d for d in sorted(bases) if d < as_of]
        if not earlier:
            raise ValueError(f"no snapshot before {as_of} to roll forward from")
        previous = earlier[-1]
    if previous >= as_of:
        raise ValueError(f"previous snapshot {previous} is not before {as_of}")
    if previous not in bases or any(
        later > as_of and base <= as_of for later, base in bases.items()
    ):
        return build_features(conn, as_of)
    # The models' DDL commits first: the other part's connection reads the views and
    # functions that ensure_feature_models may just have replaced, and would wait for this
    # transaction's locks while this one waits for that part.
    conn.commit()
    with conn.cursor() as cur:
        _set_roll_forward_settings(cur)
        recomputed = _write_state(
            cur,
            as_of,
            _sql("intermediate/int_customer_feature_state_roll_forward.sql"),
            {
                "as_of_date": as_of,
                "previous_date": previous,
                "base_date": bases[previous],
                "part": 0,
                "parts": ROLL_FORWARD_PARTS,
            },
            parts=ROLL_FORWARD_PARTS,
        )
        rows = _snapshot_rows(cur, as_of)
        _register(cur, as_of, bases[previous], "incremental", previous, recomputed)
    _drop_unread_state(conn)
    _vacuum_state(conn, as_of)
    return SnapshotBuild(as_of, "incremental", rows, recomputed, previous)


def refresh_features(
    conn, as_of: date, mode: str = "auto", earliest_new_activity: date | None = None
) -> SnapshotBuild:
    """Refresh the snapshot at `as_of`.

    mode "full" rebuilds it; "incremental" rolls the latest earlier snapshot forward; "auto"
    rolls forward when there is an earlier snapshot P and the new data starts after P
    (`earliest_new_activity` > P, as the ingestion's asset events report), and rebuilds
    otherwise: late data dated on or before P, nothing known about the new data, P's chain
    already holding MAX_CHAIN_VERSIONS state versions, or a chain that would span more than
    MAX_CHAIN_DAYS days.
    """
    if mode == "full":
        return build_features(conn, as_of)
    if mode == "incremental":
        return roll_forward_features(conn, as_of)
    if mode != "auto":
        raise ValueError(f"mode must be auto, full or incremental, not {mode!r}")
    ensure_feature_models(conn)
    bases = _base_dates(conn)
    earlier = sorted(d for d in bases if d < as_of)
    if earlier and earliest_new_activity is not None and earliest_new_activity > earlier[-1]:
        previous = earlier[-1]
        chain = [v for v in state_dates(conn) if bases[previous] <= v <= previous]
        if len(chain) < MAX_CHAIN_VERSIONS and (as_of - bases[previous]).days <= MAX_CHAIN_DAYS:
            return roll_forward_features(conn, as_of, previous)
    return build_features(conn, as_of)


def changed_customers(conn, previous: date, as_of: date) -> list[str]:
    """Customers with a session or an event in (previous, as_of]: those whose state a
    roll-forward from `previous` to `as_of` recomputes (its query finds them itself)."""
    with conn.cursor() as cur:
        cur.execute(
            """
            select customer_id from core.sessions
            where session_date > %(previous)s and session_date <= %(as_of)s
            union
            select customer_id from core.events
            where event_time >= %(previous)s::date + 1 and event_time < %(as_of)s::date + 1
            """,
            {"previous": previous, "as_of": as_of},
        )
        return sorted(row[0] for row in cur.fetchall())


def _set_roll_forward_settings(cur) -> None:
    """The build settings, and hash joins only: the planner estimates the roll-forward's
    CTEs at 200 rows and sorts each of them for a chain of merge joins; hash joins take
    0.34 s instead of 0.41-0.51 s at 100,000 customers (docs/benchmarks.md)."""
    _set_build_settings(cur)
    cur.execute("set local enable_mergejoin = off")


def _set_build_settings(cur) -> None:
    """Settings for the rest of the build's transaction: the aggregates hash every customer's
    sessions and events, in memory and in parallel (see docs/benchmarks.md)."""
    cur.execute("set local work_mem = '256MB'")
    cur.execute("set local max_parallel_workers_per_gather = 2")
    cur.execute("set local parallel_setup_cost = 100")
    # compiling the expressions costs more than it saves at this size
    cur.execute("set local jit = off")


def _snapshot_rows(cur, as_of: date) -> int:
    """The number of rows of the snapshot at `as_of`: the customers signed up by then."""
    cur.execute("select count(*) from core.customers where signup_date <= %s", (as_of,))
    return cur.fetchone()[0]


def _register(
    cur, as_of: date, base: date, mode: str, previous: date | None, recomputed: int
) -> None:
    """Record (or replace) the snapshot at `as_of` in marts.feature_snapshots."""
    cur.execute(
        """
        insert into marts.feature_snapshots
            (as_of_date, base_date, mode, previous_date, recomputed_customers)
        values (%s, %s, %s, %s, %s)
        on conflict (as_of_date) do update set
            base_date = excluded.base_date,
            mode = excluded.mode,
            previous_date = excluded.previous_date,
            recomputed_customers = excluded.recomputed_customers,
            built_at = excluded.built_at
        """,
        (as_of, base, mode, previous, recomputed),
    )


def _vacuum_state(conn, as_of: date) -> None:
    """Commit the snapshot, then VACUUM its new state partition. CREATE TABLE AS leaves the
    visibility map and the rows' hint bits unset: every reader's index-only scan of the
    state's key (the view's latest versions, the window moves) then visits the heap, and the
    first one writes every page (EXPLAIN at 1,000,000 customers: `Heap Fetches: 222800`,
    `dirtied=137070` in the next roll-forward). VACUUM cannot run inside a transaction."""
    conn.commit()
    autocommit = conn.autocommit
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("vacuum {}").format(
                    sql.Identifier("intermediate", f"{STATE_TABLE}_{as_of:%Y%m%d}")
                )
            )
    finally:
        conn.autocommit = autocommit


def _drop_unread_state(conn) -> None:
    """Drop the state partitions that no registered snapshot reads: a snapshot at D reads
    the versions V with base_date <= V <= D."""
    bases = _base_dates(conn)
    with conn.cursor() as cur:
        for version in state_dates(conn):
            if not any(base <= version <= as_of for as_of, base in bases.items()):
                cur.execute(
                    sql.SQL("drop table {}").format(
                        sql.Identifier("intermediate", f"{STATE_TABLE}_{version:%Y%m%d}")
                    )
                )


def _write_state(cur, as_of: date, query: str, params: dict, parts: int = 1) -> int:
    """Fill a standalone table with the query's state rows, give it the state table's NOT
    NULL columns and primary key, and swap it in as the partition for `as_of` (replacing
    any). Returns the number of rows.

    With `parts` > 1 the query computes the part of the customers in its `part` parameter
    (of `parts`): part 0 here, the others side by side on connections of their own
    (`_compute_parts`), whose rows are then added. A query with `part` and `parts`
    parameters gets them in `params` for `parts` = 1 too."""
    partition = f"{STATE_TABLE}_{as_of:%Y%m%d}"
    building = sql.Identifier("intermediate", f"{partition}_building")
    target = sql.Identifier("intermediate", partition)
    cur.execute(sql.SQL("drop table if exists {}").format(building))
    if parts == 1:
        # CREATE TABLE AS, not INSERT ... SELECT: only the former runs its query in parallel
        cur.execute(sql.SQL("create table {} as {}").format(building, sql.SQL(query)), params)
        rows = cur.rowcount
    else:
        rows = _compute_parts(cur, f"{partition}_building", query, params, parts)
    # ATTACH requires the parent's NOT NULL constraints (and the types, which it checks)
    cur.execute(
        "select attname from pg_attribute where attrelid = %s::regclass and attnum > 0 "
        "and not attisdropped and attnotnull order by attnum",
        (f"intermediate.{STATE_TABLE}",),
    )
    not_null = [row[0] for row in cur.fetchall() if row[0] not in STATE_KEY]
    # One statement: the NOT NULL columns and the check are verified in one scan of the table.
    # The check lets ATTACH skip scanning the table to prove its rows belong.
    cur.execute(
        sql.SQL(
            "alter table {} {}, add constraint {} check (as_of_date = {}), add primary key ({})"
        ).format(
            building,
            sql.SQL(", ").join(
                sql.SQL("alter column {} set not null").format(sql.Identifier(c)) for c in not_null
            ),
            sql.Identifier(f"{partition}_as_of"),
            sql.Literal(as_of),
            sql.SQL(", ").join(map(sql.Identifier, STATE_KEY)),
        )
    )
    # Statistics before anyone reads it: the next day's roll-forward joins this table at once,
    # and without statistics (autovacuum comes up to a minute later) the planner chose a
    # plan that took minutes instead of seconds at 100,000 customers (`make bench`). The
    # readers join and filter on the key alone; the statistics of the other columns (arrays
    # among them) took 0.85 s of a 2 s roll-forward.
    cur.execute(
        sql.SQL("analyze {} ({})").format(
            building, sql.SQL(", ").join(map(sql.Identifier, STATE_KEY))
        )
    )
    cur.execute(sql.SQL("drop table if exists {}").format(target))
    cur.execute(sql.SQL("alter table {} rename to {}").format(building, sql.Identifier(partition)))
    cur.execute(
        sql.SQL("alter table {} attach partition {} for values in ({})").format(
            sql.Identifier("intermediate", STATE_TABLE), target, sql.Literal(as_of)
        )
    )
    return rows


def _compute_parts(cur, name: str, query: str, params: dict, parts: int) -> int:
    """Create intermediate.<name> as the query's part 0 while parts 1 to `parts` - 1 are
    computed at the same time on connections of their own (warehouse.sibling_connection),
    each into an unlogged table that it commits; then add their rows to it and drop those
    tables. Returns the number of rows. A part that fails raises here, and the caller's
    transaction rolls back; a part table left by a failure after its commit is dropped by
    the next run. The parts read in their own transactions: data committed meanwhile may
    reach one part and not another, as it may reach one statement of a build and not the
    next."""
    from concurrent.futures import ThreadPoolExecutor

    from ecom_insights import warehouse

    building = sql.Identifier("intermediate", name)

    def part_table(part: int) -> sql.Identifier:
        return sql.Identifier("intermediate", f"{name}_part{part}")

    def compute(part: int) -> None:
        with warehouse.sibling_connection(cur.connection) as conn, conn.cursor() as other:
            _set_roll_forward_settings(other)
            other.execute(sql.SQL("drop table if exists {}").format(part_table(part)))
            other.execute(
                sql.SQL("create unlogged table {} as {}").format(part_table(part), sql.SQL(query)),
                {**params, "part": part, "parts": parts},
            )

    with ThreadPoolExecutor(max_workers=parts - 1, thread_name_prefix="part") as pool:
        others = [pool.submit(compute, part) for part in range(1, parts)]
        cur.execute(
            sql.SQL("create table {} as {}").format(building, sql.SQL(query)),
            {**params, "part": 0, "parts": parts},
        )
        rows = cur.rowcount
        for other in others:
            other.result()
    for part in range(1, parts):
        cur.execute(sql.SQL("insert into {} select * from {}").format(building, part_table(part)))
        rows += cur.rowcount
        cur.execute(sql.SQL("drop table {}").format(part_table(part)))
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
