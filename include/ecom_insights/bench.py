"""`make bench`: ingestion and the feature store at scale, against named peers, in one run.

    python -m ecom_insights.bench [--customers 1000000] [--data DIR] [--home DIR] [--skip-peers]
                                  [--only ingestion|features]

Steps, each timed on the same files and the same machine, each timed phase from a quiet disk
(`settle`):
1. demo data from the generator (reused when DIR already holds it);
2. a bare COPY of the files into typed tables shaped like core, with core's keys and
   indexes, and once without them: the physical reference for ingestion;
3. the ingestion steps (land, row rules, Great Expectations audit beside the merge into core);
4. a full build of the feature snapshot at the data's last day, against the same features
   computed by the pandas reference and by DuckDB over the same CSV files (each peer in
   its own process, so that its peak memory is its own); first, the last day's rows are
   put where its own daily batch would have appended them (`append_new_day`);
5. a roll-forward of that last day from the day before, against the full build;
6. a read of the rolled snapshot into a table (marts.customer_features is a view: the
   columns that depend on the as-of date, and each customer's latest state version, are
   computed when a snapshot is read, so a reader pays that part of the build).

The figures go to docs/benchmarks.md (the section between the bench markers) and to stdout.
`--only features` runs steps 4 to 6 alone on the data an earlier run left in --home (its
warehouse and files); `--only ingestion` stops after step 3. Either prints its figures
without writing the document (to iterate; the document's section needs the whole run).
The bench is no test: `make test` does not run it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from psycopg2 import sql

from ecom_insights.config import PROJECT_ROOT

BENCH_START = date(2023, 1, 1)
BENCH_DAYS = 730
BENCH_SEED = 42
# a day's rows in core's tables, by the day's own date (bound parameter `day`)
DAY_ROWS = {
    "sessions": "session_date = %(day)s",
    "events": "event_time >= %(day)s and event_time < %(day)s::date + 1",
}
MARK_BEGIN = "<!-- bench:begin -->"
MARK_END = "<!-- bench:end -->"
# Typed copies of the core tables for the bare-COPY reference: (file, table, columns), with
# the ids in "C" as in core.
COPY_TARGETS = {
    name: columns.format(id='text collate "C"')
    for name, columns in {
        "customers": "customer_id {id} primary key, age integer, gender text, location text, "
        "signup_date date not null, acquisition_channel text",
        "products": "product_id {id} primary key, product_name text, category text, "
        "price numeric(14,2)",
        "campaigns": "campaign_id {id} primary key, name text, channel text, start_date date, "
        "end_date date",
        "sessions": "session_id {id} primary key, customer_id {id} not null, "
        "session_date timestamp, product_viewed text, browsing_time_sec double precision, "
        "purchase_made boolean, purchase_amount numeric(14,2), pages_viewed integer, "
        "added_to_cart boolean, "
        "discount_amount numeric(14,2), device text, campaign_id {id}",
        "events": "event_id {id} primary key, session_id {id} not null, "
        "customer_id {id} not null, event_time timestamp, event_type text, product_id {id}, "
        "price numeric(14,2)",
    }.items()
}
# core's secondary indexes, rebuilt on the reference tables
COPY_INDEXES = {
    "sessions": ["(customer_id, session_date)", "(session_date)"],
    "events": ["(session_id)", "(customer_id, event_time)", "(event_time)"],
}


@dataclass
class Timings:
    seconds: dict[str, float] = field(default_factory=dict)

    def measure(self, name: str, function, *args, **kwargs):
        started = time.perf_counter()
        result = function(*args, **kwargs)
        self.seconds[name] = time.perf_counter() - started
        print(f"bench: {name:<40} {self.seconds[name]:8.1f} s", flush=True)
        return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--data", type=Path, help="generated data (default: under --home)")
    parser.add_argument("--home", type=Path, default=Path("/tmp/ecom-bench"))
    parser.add_argument("--skip-peers", action="store_true", help="no pandas / DuckDB runs")
    parser.add_argument("--doc", type=Path, default=PROJECT_ROOT / "docs" / "benchmarks.md")
    parser.add_argument(
        "--only",
        choices=["ingestion", "features"],
        help="ingestion: steps 1-3 only; features: only the feature steps, on data already "
        "loaded; either prints and does not write --doc",
    )
    args = parser.parse_args(argv)
    if args.only == "features":
        run_features_only(args.home, args.data or args.home / f"data-{args.customers}", args)
        return
    report = run(
        args.customers,
        args.data or args.home / f"data-{args.customers}",
        args.home,
        peers=not args.skip_peers,
        ingestion_only=args.only == "ingestion",
    )
    if args.only == "ingestion":
        print_ingestion_ratios(report)
        return
    write_report(
        args.doc, report, " ".join(["python -m ecom_insights.bench", *(argv or sys.argv[1:])])
    )


def run(
    customers: int, data: Path, home: Path, *, peers: bool, ingestion_only: bool = False
) -> dict:
    from ecom_insights import ingest, warehouse
    from ecom_insights.generate import generate_dataset
    from ecom_insights.validation import validate_staging

    timings = Timings()
    if not (data / "ground_truth.json").exists():
        timings.measure(
            "generate",
            generate_dataset,
            data,
            customers=customers,
            days=BENCH_DAYS,
            seed=BENCH_SEED,
            start=BENCH_START,
        )
    rows = json.loads((data / "ground_truth.json").read_text())["row_counts"]
    server_url = warehouse.start_embedded_server(home / "pgdata")
    databases = {}
    for name in ("bench_copy", "bench_copy_bare", "bench_ingest"):
        with warehouse.connect(server_url, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )
            cur.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        databases[name] = warehouse.with_database(server_url, name)

    # 2. the physical reference
    settle(server_url)
    timings.measure("bare COPY, keys and indexes", bare_copy, databases["bench_copy"], data, True)
    settle(server_url)
    timings.measure(
        "bare COPY, no keys or indexes", bare_copy, databases["bench_copy_bare"], data, False
    )
    for name in ("bench_copy", "bench_copy_bare"):  # dropped once timed: the disk is finite
        with warehouse.connect(server_url, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))

    # 3. ingestion, step by step (as the DAG's tasks run them)
    url = databases["bench_ingest"]
    settle(server_url)
    logical = datetime(2025, 1, 1, tzinfo=UTC)
    with warehouse.connect(url) as conn:
        timings.measure(
            "ingest: land (checks, COPY)", ingest.land_files, conn, data, reprocess=True
        )
    with warehouse.connect(url) as conn:
        timings.measure("ingest: row rules", ingest.apply_row_rules, conn, logical)

    def audit():
        return validate_staging(
            url,
            ["customers", "products", "campaigns", "sessions", "events"],
            gx_root=PROJECT_ROOT / "great_expectations",
            data_docs_dir=home / "data_docs",
            run_name="bench",
        )

    with warehouse.connect(url) as conn:
        # one step in the DAG: the merge runs beside the audit and commits once it passed
        timings.measure(
            "ingest: GX audit beside merge into core",
            ingest.merge_into_core_once_audited,
            conn,
            audit,
        )
    ingest_total = sum(v for k, v in timings.seconds.items() if k.startswith("ingest:"))
    if ingestion_only:
        return {"seconds": timings.seconds, "ingest_total": ingest_total}

    # 4 and 5: the feature store and its peers
    last_day, build, rolled, peer_memory = measure_features(url, data, timings, peers=peers)
    with warehouse.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "select pg_size_pretty(pg_database_size(current_database())), "
            "current_setting('server_version'), current_setting('shared_buffers'), "
            "current_setting('max_parallel_workers_per_gather')"
        )
        size, version, shared_buffers, parallel = cur.fetchone()

    return {
        "customers": customers,
        "rows": rows,
        "seconds": timings.seconds,
        "ingest_total": ingest_total,
        "peer_memory_mib": peer_memory,
        "feature_rows": build.rows,
        "rolled_recomputed": rolled.recomputed_customers,
        "last_day": last_day.isoformat(),
        "database_size": size,
        "postgres": version,
        "shared_buffers": shared_buffers,
        "parallel_workers": parallel,
        "machine": (
            f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"
        ),
    }


def settle(server_url: str) -> None:
    """Start a timed phase from a quiet disk: a CHECKPOINT writes the server's dirty buffers
    and a sync the kernel's, so that no phase pays for the writes of the one before it (the
    pipeline ran right after the reference's 20 GB of COPY and two DROP DATABASEs, and the
    2-second roll-forward right after a full build's writes). Untimed."""
    from ecom_insights import warehouse

    with warehouse.connect(server_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("checkpoint")
    os.sync()


def read_snapshot(conn, as_of: date) -> int:
    """Read the snapshot at `as_of` whole, as a model or an export does: into a temporary
    table (so that the time is PostgreSQL's, not the client's). Returns its rows."""
    with conn.cursor() as cur:
        cur.execute(
            "create temp table bench_snapshot as "
            "select * from marts.customer_features where as_of_date = %s",
            (as_of,),
        )
        rows = cur.rowcount
        cur.execute("drop table bench_snapshot")
        return rows


def measure_features(url: str, data: Path, timings: Timings, *, peers: bool):
    """Steps 4 and 5 on the loaded warehouse at `url`, into `timings`: the full build at the
    data's last day and its peers, then the build of the day before, the roll-forward of
    the last day from it, and one read of the snapshot. Returns (last day, the full build,
    the roll-forward, the peers' peak memory in MiB)."""
    from ecom_insights import features, warehouse

    with warehouse.connect(url) as conn:
        last_day = features.data_end(conn)
        features.ensure_feature_models(conn)
    append_new_day(url, last_day)
    settle(url)
    with warehouse.connect(url) as conn:
        build = timings.measure(
            "features: full build (PostgreSQL)", features.build_features, conn, last_day
        )
    peer_memory = {}
    if peers:
        for peer in ("pandas", "duckdb"):
            settle(url)
            seconds, peak_mib = run_peer(peer, data, last_day)
            timings.seconds[f"features: {peer}"] = seconds
            peer_memory[peer] = peak_mib
            print(
                f"bench: features: {peer:<30} {seconds:8.1f} s, peak {peak_mib:,.0f} MiB",
                flush=True,
            )
    # a new day: roll forward from the day before, against the full build
    settle(url)
    with warehouse.connect(url) as conn:
        timings.measure(
            "features: full build of the day before",
            features.build_features,
            conn,
            last_day - timedelta(days=1),
        )
    settle(url)
    with warehouse.connect(url) as conn:
        rolled = timings.measure(
            "features: roll forward one day", features.roll_forward_features, conn, last_day
        )
    settle(url)
    with warehouse.connect(url) as conn:
        timings.measure("features: read one snapshot", read_snapshot, conn, last_day)
    return last_day, build, rolled, peer_memory


def append_new_day(url: str, day: date) -> None:
    """Put the rows of `day` where a daily batch puts them: at the end of core.sessions and
    core.events, as the merge of that day's batch appends them. The generator writes each
    file customer by customer, so a bulk load of the whole history scatters one day's rows
    over the whole table (at 1,000,000 customers, a day's 57,499 sessions lay in 49,503 heap
    pages and its 155,167 events in 55,259), which no daily refresh meets in production.
    The rows are moved by one delete-and-insert per table (the deleted space is not reused
    before a vacuum), then the tables are vacuumed and analyzed, as autovacuum does after a
    batch. The vacuum must clean the indexes too: with dead rows on fewer than 2% of the
    pages it skips them by default, and the date index kept the moved sessions' old entries,
    which cost each read of the day 49,079 more pages (0.2 s, twice per roll-forward; EXPLAIN
    ANALYZE at 1,000,000 customers), where a daily batch leaves no dead rows. Untimed; the
    full builds and the roll-forward all run on the moved rows.

    A day already in place (an earlier run moved it) is left there: moved again, its rows
    would go back into the space that the first move freed, spread over the table as the
    bulk load left them, and a rerun of the feature steps (`--only features`) would time a
    roll-forward that no daily batch meets."""
    from ecom_insights import warehouse

    with warehouse.connect(url) as conn, conn.cursor() as cur:
        if all(_day_in_place(cur, table, day) for table in DAY_ROWS):
            return
        for table, day_rows in DAY_ROWS.items():
            cur.execute(
                sql.SQL(
                    "with moved as (delete from {table} where " + day_rows + " returning *) "
                    "insert into {table} select * from moved"
                ).format(table=sql.Identifier("core", table)),
                {"day": day},
            )
    with warehouse.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("vacuum (analyze, index_cleanup on) core.sessions, core.events")


def _day_in_place(cur, table: str, day: date) -> bool:
    """Whether the day's rows of core.<table> lie together at the table's end, as the merge
    of a daily batch leaves them (and append_new_day): the pages from the first that holds
    one of them to the table's last page hold no more other rows than theirs. At 1,000,000
    customers, as the bulk load left them, the 63,193 sessions of 2024-12-27 start on page 2
    of 341,376: one row in 322 from there on; moved, the 57,499 of 2024-12-30 fill the last
    822 pages."""
    cur.execute(
        sql.SQL(
            "select count(*), min((ctid::text::point)[0])::bigint from {} where " + DAY_ROWS[table]
        ).format(sql.Identifier("core", table)),
        {"day": day},
    )
    rows, first = cur.fetchone()
    if not rows:
        return False
    # a TID range scan of those pages alone
    cur.execute(
        sql.SQL("select count(*) from {} where ctid >= %s::tid").format(
            sql.Identifier("core", table)
        ),
        (f"({first},0)",),
    )
    return 2 * rows >= cur.fetchone()[0]


def run_features_only(home: Path, data: Path, args) -> None:
    """Steps 4 and 5 on the warehouse an earlier run loaded in `home`: prints the seconds and
    the ratios that the report would show."""
    from ecom_insights import warehouse

    url = warehouse.with_database(warehouse.start_embedded_server(home / "pgdata"), "bench_ingest")
    timings = Timings()
    _, _, rolled, _ = measure_features(url, data, timings, peers=not args.skip_peers)
    s = timings.seconds
    full = s["features: full build (PostgreSQL)"]
    for peer in ("pandas", "duckdb"):
        if f"features: {peer}" in s:
            print(f"bench: PostgreSQL / {peer}: {full / s[f'features: {peer}']:.2f}")
    print(
        f"bench: roll forward / full build: {s['features: roll forward one day'] / full:.3f} "
        f"({rolled.recomputed_customers:,} customers recomputed, {rolled.mode})"
    )
    print(f"bench: read one snapshot / full build: {s['features: read one snapshot'] / full:.3f}")


def bare_copy(url: str, data: Path, with_indexes: bool) -> None:
    """COPY every file into typed tables: the least work that puts the data in PostgreSQL."""
    from ecom_insights import warehouse

    with warehouse.connect(url) as conn, conn.cursor() as cur:
        for name, columns in COPY_TARGETS.items():
            if not with_indexes:
                columns = columns.replace(" primary key", "")
            cur.execute(
                sql.SQL("create table {} ({})").format(sql.Identifier(name), sql.SQL(columns))
            )
            with (data / f"{name}.csv").open("rb") as handle:
                cur.copy_expert(
                    sql.SQL("copy {} from stdin with (format csv, header true)")
                    .format(sql.Identifier(name))
                    .as_string(cur),
                    handle,
                    size=1 << 20,
                )
            for index in COPY_INDEXES.get(name, []) if with_indexes else []:
                cur.execute(
                    sql.SQL("create index on {} {}").format(sql.Identifier(name), sql.SQL(index))
                )


def print_ingestion_ratios(report: dict) -> None:
    """The ingestion comparisons of `write_report`, to stdout only."""
    s, total = report["seconds"], report["ingest_total"]
    print(f"bench: ingestion total {total:.1f} s")
    print(
        "bench: ingestion throughput / bare COPY with keys and indexes "
        f"{s['bare COPY, keys and indexes'] / total:.2f} (target at least 0.7), "
        f"/ bare COPY unindexed {s['bare COPY, no keys or indexes'] / total:.2f}"
    )


def run_peer(peer: str, data: Path, as_of: date) -> tuple[float, float]:
    """Seconds and peak resident MiB of one peer computing the features, in a child process
    (which reports its own peak, so that peers do not see each other's)."""
    function = "compute_features" if peer == "pandas" else "compute_features_duckdb"
    code = (
        "import resource, sys, time; from datetime import date; from pathlib import Path; "
        "from ecom_insights import features_reference as f; "
        "t = time.perf_counter(); "
        f"frame = f.{function}(Path(sys.argv[1]), date.fromisoformat(sys.argv[2])); "
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(data), as_of.isoformat()],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds, peak_kib = result.stdout.split()[-2:]
    return float(seconds), int(peak_kib) / 1024


def write_report(doc: Path, report: dict, command: str) -> None:
    s = report["seconds"]
    copy_indexed = s["bare COPY, keys and indexes"]
    copy_bare = s["bare COPY, no keys or indexes"]
    full = s["features: full build (PostgreSQL)"]
    rolled = s["features: roll forward one day"]
    rows = report["rows"]
    lines = [
        MARK_BEGIN,
        "## Ingestion and the feature store",
        "",
        f"Measured by `{command}` (`make bench`) on {date.today():%Y-%m-%d}: "
        f"{report['customers']:,} customers, {rows.get('sessions.csv', 0):,} sessions, "
        f"{rows.get('events.csv', 0):,} events, {report['machine']}; "
        f"PostgreSQL {report['postgres']} "
        f"(embedded, shared_buffers {report['shared_buffers']}, "
        f"{report['parallel_workers']} parallel workers per gather); warehouse "
        f"{report['database_size']} after the run. One run, one machine: every ratio below "
        "compares two figures of this same run.",
        "",
        "| step | seconds |",
        "|---|---:|",
        *[f"| {name} | {seconds:,.1f} |" for name, seconds in s.items()],
        "",
        "| comparison | ratio | target |",
        "|---|---:|---|",
        f"| ingestion throughput / bare COPY with core's keys and indexes | "
        f"{copy_indexed / report['ingest_total']:.2f} | at least 0.7 |",
        f"| ingestion throughput / bare COPY into unindexed tables | "
        f"{copy_bare / report['ingest_total']:.2f} | |",
    ]
    read = s["features: read one snapshot"]
    for peer in ("pandas", "duckdb"):
        key = f"features: {peer}"
        if key in s:
            lines.append(
                f"| full feature build: PostgreSQL time / {peer} time | {full / s[key]:.2f} | "
                + ("below 1 (faster)" if peer == "pandas" else "at most 2")
                + " |"
            )
            # the peers end with every row in memory; the build ends before the view's rows
            # are computed, so the build with one read of the snapshot is compared too
            lines.append(
                f"| full build and one read of the snapshot / {peer} time | "
                f"{(full + read) / s[key]:.2f} | |"
            )
    lines += [
        f"| roll forward one day / full build | {rolled / full:.3f} | below 0.05 |",
        f"| read one snapshot / full build | {s['features: read one snapshot'] / full:.3f} | |",
        "",
        "Peak memory of the peers (resident, their own process): "
        + ", ".join(f"{k} {v:,.0f} MiB" for k, v in report["peer_memory_mib"].items())
        + ". PostgreSQL's memory is bounded by its settings (shared_buffers, and work_mem = "
        "256MB per sort or hash in the feature build), not by the data's size.",
        f"The roll-forward recomputed {report['rolled_recomputed']:,} of "
        f"{report['feature_rows']:,} customers (those with activity on {report['last_day']}) "
        "and wrote state versions for them alone. Neither build writes the snapshot's rows: "
        "the view computes them, and moves the trailing windows of the customers without a "
        "version at the snapshot's date, when the snapshot is read (the read's own line "
        "above).",
        MARK_END,
    ]
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    if MARK_BEGIN in text:
        head, rest = text.split(MARK_BEGIN, 1)
        tail = rest.split(MARK_END, 1)[1]
        text = head + "\n".join(lines) + tail
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n"
    doc.write_text(text)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
