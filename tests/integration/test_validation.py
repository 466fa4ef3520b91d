"""The audit gate against a real PostgreSQL: a clean batch passes, each planted breach is named."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from psycopg2 import sql

from ecom_insights import contract, ingest, warehouse
from ecom_insights.config import PROJECT_ROOT
from ecom_insights.validation import load_suite, suite_path, validate_staging

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GX_ROOT = PROJECT_ROOT / "great_expectations"
STAGING_TABLES = ["customers", "sessions", "products", "events", "campaigns"]

# A batch that keeps every rule, including the edge cases the rules allow: an empty age or
# browsing time, a purchase of 0 (fully discounted), a campaign that starts and ends the
# same day, a product without a price.
CLEAN_BATCH: dict[str, list[dict]] = {
    "customers": [
        {"customer_id": "c1", "age": 34, "signup_date": "2024-01-05"},
        {"customer_id": "c2", "age": None, "signup_date": "2024-01-06"},
        {"customer_id": "c3", "age": 0, "signup_date": "2024-01-07"},
    ],
    "sessions": [
        {
            "session_id": "s1",
            "customer_id": "c1",
            "session_started_at": "2024-02-01 10:15",
            "session_date": "2024-02-01",
            "browsing_time_sec": 310.5,
            "purchase_made": True,
            "purchase_amount": "59.90",
            "pages_viewed": 7,
            "discount_amount": "5.00",
        },
        {
            "session_id": "s2",
            "customer_id": "c1",
            "session_started_at": "2024-02-02 18:00",
            "session_date": "2024-02-02",
            "browsing_time_sec": None,
            "purchase_made": False,
            "purchase_amount": "0",
            "pages_viewed": None,
            "discount_amount": None,
        },
        {
            "session_id": "s3",
            "customer_id": "c2",
            "session_started_at": "2024-02-03 09:00",
            "session_date": "2024-02-03",
            "browsing_time_sec": 0,
            "purchase_made": True,
            "purchase_amount": "0.00",
            "pages_viewed": 1,
            "discount_amount": "20.00",
        },
    ],
    "products": [
        {"product_id": "p1", "price": "19.99"},
        {"product_id": "p2", "price": None},
    ],
    "events": [
        {
            "event_id": f"e{number}",
            "session_id": "s1",
            "customer_id": "c1",
            "event_time": f"2024-02-01 10:{15 + number}",
            "event_type": event_type,
            "product_id": "p1",
            "price": "19.99",
        }
        for number, event_type in enumerate(contract.EVENT_TYPES, start=1)
    ],
    "campaigns": [
        {"campaign_id": "k1", "start_date": "2024-02-01", "end_date": "2024-02-01"},
        {"campaign_id": "k2", "start_date": "2024-02-01", "end_date": "2024-02-28"},
    ],
}


def _session(session_id: str, *, purchase_made: bool, purchase_amount: str) -> dict:
    return {
        "session_id": session_id,
        "customer_id": "c3",
        "session_started_at": "2024-02-04 12:00",
        "session_date": "2024-02-04",
        "purchase_made": purchase_made,
        "purchase_amount": purchase_amount,
    }


# One planted breach per kind of rule, each breaking exactly one expectation.
BREACHES: dict[str, list[dict]] = {
    "customers": [{"customer_id": "c4", "age": 130, "signup_date": "2024-01-08"}],
    "sessions": [
        _session("s1", purchase_made=False, purchase_amount="0"),  # s1 again
        _session("s4", purchase_made=True, purchase_amount="-3.00"),
        _session("s5", purchase_made=False, purchase_amount="12.00"),
    ],
    "events": [
        {
            "event_id": "e9",
            "session_id": "s1",
            "customer_id": "c1",
            "event_time": "2024-02-01 11:00",
            "event_type": "click",
            "product_id": "p1",
        }
    ],
    "campaigns": [{"campaign_id": "k3", "start_date": "2024-03-10", "end_date": "2024-03-01"}],
}

# (table, column, expectation, rows breaking it) for each breach above
EXPECTED_FAILURES = {
    ("customers", "age", "expect_column_values_to_be_between", 1),
    ("sessions", "session_id", "expect_column_values_to_be_unique", 2),
    ("sessions", "purchase_amount", "expect_column_values_to_be_between", 1),
    ("sessions", None, "unexpected_rows_expectation", 1),
    ("events", "event_type", "expect_column_values_to_be_in_set", 1),
    ("campaigns", None, "unexpected_rows_expectation", 1),
}


def load_staging(url: str, batch: dict[str, list[dict]]) -> None:
    """Replace the staging tables' content with `batch` (table -> rows)."""
    with warehouse.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(
            sql.SQL("truncate {}").format(
                sql.SQL(", ").join(sql.Identifier("staging", t) for t in STAGING_TABLES)
            )
        )
        for table, rows in batch.items():
            for row_number, row in enumerate(rows, start=1):
                row = {**row, "_file": f"{table}.csv", "_row_number": row_number}
                cursor.execute(
                    sql.SQL("insert into {} ({}) values ({})").format(
                        sql.Identifier("staging", table),
                        sql.SQL(", ").join(map(sql.Identifier, row)),
                        sql.SQL(", ").join(sql.Placeholder() * len(row)),
                    ),
                    list(row.values()),
                )


def with_breaches() -> dict[str, list[dict]]:
    return {table: rows + BREACHES.get(table, []) for table, rows in CLEAN_BATCH.items()}


def files_under(folder: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in folder.rglob("*") if p.is_file()}


def test_a_clean_batch_passes_and_builds_data_docs(warehouse_url, tmp_path):
    load_staging(warehouse_url, CLEAN_BATCH)
    gx_project_before = files_under(GX_ROOT)
    data_docs_dir = tmp_path / "data_docs"

    summary = validate_staging(
        warehouse_url,
        STAGING_TABLES,
        gx_root=GX_ROOT,
        data_docs_dir=data_docs_dir,
        run_name="clean_batch",
    )

    assert summary.success, summary.describe()
    assert summary.failures == []
    assert list(summary.tables) == STAGING_TABLES
    for table, counts in summary.tables.items():
        assert counts["success"]
        assert counts["evaluated"] == len(load_suite(GX_ROOT, table).expectations)
        assert counts["successful"] == counts["evaluated"]
        assert counts["unsuccessful"] == 0
        assert counts["row_count"] == len(CLEAN_BATCH[table])
    assert summary.describe().startswith("Staging audit passed")

    assert summary.data_docs_index == data_docs_dir / "index.html"
    index = summary.data_docs_index.read_text()
    for table in STAGING_TABLES:
        assert f"staging_{table}" in index
    assert "clean_batch" in index
    # The run leaves the reviewed GX project as it found it: docs and results go elsewhere.
    assert files_under(GX_ROOT) == gx_project_before


def test_each_planted_breach_is_named_by_table_column_and_rule(warehouse_url, tmp_path):
    load_staging(warehouse_url, with_breaches())

    summary = validate_staging(
        warehouse_url,
        STAGING_TABLES,
        gx_root=GX_ROOT,
        data_docs_dir=tmp_path / "data_docs",
        run_name="broken_batch",
    )

    assert not summary.success
    found = {(f.table, f.column, f.expectation, f.unexpected_count) for f in summary.failures}
    assert found == EXPECTED_FAILURES
    assert not summary.tables["products"]["unsuccessful"]
    assert summary.tables["products"]["success"]
    assert summary.tables["sessions"]["unsuccessful"] == 3
    assert summary.tables["sessions"]["row_count"] == len(with_breaches()["sessions"])

    # The plain-words rule travels with each failure, so the alert says what broke.
    details = {(f.table, f.column, f.expectation): f.details for f in summary.failures}
    assert "'s1'" in details["sessions", "session_id", "expect_column_values_to_be_unique"]
    assert "'click'" in details["events", "event_type", "expect_column_values_to_be_in_set"]
    assert "purchase_made" in details["sessions", None, "unexpected_rows_expectation"]
    assert "end_date" in details["campaigns", None, "unexpected_rows_expectation"]

    message = summary.describe()
    assert message.startswith("Staging audit failed")
    for fragment in (
        "customers, sessions, events, campaigns",
        "customers.age: expect_column_values_to_be_between",
        "sessions.session_id: expect_column_values_to_be_unique",
        "sessions.purchase_amount: expect_column_values_to_be_between",
        "sessions: unexpected_rows_expectation: A session without a purchase has no order value",
        "events.event_type: expect_column_values_to_be_in_set",
        "campaigns: unexpected_rows_expectation: A campaign's start_date is on or before",
    ):
        assert fragment in message
    assert "products" not in message
    assert summary.data_docs_index.exists()


def test_only_the_tables_asked_for_are_validated(warehouse_url, tmp_path):
    load_staging(warehouse_url, with_breaches())

    summary = validate_staging(
        warehouse_url,
        ["products"],
        gx_root=GX_ROOT,
        data_docs_dir=tmp_path / "data_docs",
        run_name="products_only",
    )

    assert summary.success, summary.describe()
    assert list(summary.tables) == ["products"]


def test_suites_cover_every_source_and_name_only_staging_columns(warehouse_url):
    with warehouse.connect(warehouse_url) as conn, conn.cursor() as cursor:
        cursor.execute(
            "select table_name, column_name from information_schema.columns"
            " where table_schema = 'staging'"
        )
        staging_columns: dict[str, set[str]] = {}
        for table, column in cursor.fetchall():
            staging_columns.setdefault(table, set()).add(column)

    for source in contract.SOURCES:
        suite = load_suite(GX_ROOT, source.name)
        for expectation in suite.expectations:
            column = getattr(expectation, "column", None)
            assert column is None or column in staging_columns[source.name], (
                f"{suite.name} checks {column}, which staging.{source.name} does not have"
            )
            assert expectation.notes, f"{suite.name}: {expectation.expectation_type} has no notes"

    event_types = next(
        e for e in load_suite(GX_ROOT, "events").expectations if getattr(e, "value_set", None)
    )
    assert sorted(event_types.value_set) == sorted(contract.EVENT_TYPES)


def test_a_suite_with_an_unreadable_expectation_is_refused(tmp_path):
    suite = json.loads(suite_path(GX_ROOT, "products").read_text())
    # GX itself would drop this expectation with only a log line, and the audit would pass.
    suite["expectations"].append(
        {"type": "expect_column_values_to_be_positive_ish", "kwargs": {"column": "price"}}
    )
    broken = suite_path(tmp_path, "products")
    broken.parent.mkdir(parents=True)
    broken.write_text(json.dumps(suite))

    with pytest.raises(ValueError, match="cannot read"):
        load_suite(tmp_path, "products")


def core_counts(url: str) -> dict[str, int]:
    with warehouse.connect(url) as conn, conn.cursor() as cursor:
        counts = {}
        for table in STAGING_TABLES:
            cursor.execute(sql.SQL("select count(*) from {}").format(sql.Identifier("core", table)))
            counts[table] = cursor.fetchone()[0]
        return counts


def audit_seeing_the_merge(url: str, data_docs_dir: Path, seen: dict):
    """The real audit, which first waits (on its own connection) until the merge holds its
    lock on core.events, the last table it merges: proof that the two run side by side.
    (It must not read core: the first load's merge holds core's tables locked until it
    commits, which it does only after the audit returns.)"""

    def audit():
        with warehouse.connect(url) as conn, conn.cursor() as cursor:
            for _ in range(600):
                cursor.execute(
                    "select exists (select from pg_locks where relation = 'core.events'::regclass"
                    " and pid <> pg_backend_pid() and granted)"
                )
                if cursor.fetchone()[0]:
                    seen["merge_running"] = True
                    break
                time.sleep(0.1)
        return validate_staging(
            url, STAGING_TABLES, gx_root=GX_ROOT, data_docs_dir=data_docs_dir, run_name="beside"
        )

    return audit


def test_a_failed_audit_rolls_back_the_merge_that_ran_beside_it(database_url, tmp_path):
    with warehouse.connect(database_url) as conn:
        ingest.ensure_schema(conn)
    batch = {**CLEAN_BATCH, "customers": CLEAN_BATCH["customers"] + BREACHES["customers"]}
    load_staging(database_url, batch)
    seen: dict = {}

    audit = audit_seeing_the_merge(database_url, tmp_path / "data_docs", seen)
    with pytest.raises(ingest.AuditFailed) as failure, warehouse.connect(database_url) as conn:
        ingest.merge_into_core_once_audited(conn, audit)

    assert seen == {"merge_running": True}
    assert "customers.age: expect_column_values_to_be_between" in str(failure.value)
    assert not failure.value.summary.success
    assert core_counts(database_url) == dict.fromkeys(STAGING_TABLES, 0)


def test_a_passed_audit_lets_the_merge_beside_it_commit(database_url, tmp_path):
    with warehouse.connect(database_url) as conn:
        ingest.ensure_schema(conn)
    load_staging(database_url, CLEAN_BATCH)
    seen: dict = {}

    audit = audit_seeing_the_merge(database_url, tmp_path / "data_docs", seen)
    with warehouse.connect(database_url) as conn:
        summary, merged = ingest.merge_into_core_once_audited(conn, audit)

    assert seen == {"merge_running": True}
    assert summary.success
    assert {table: counts["inserted"] for table, counts in merged.items()} == {
        table: len(rows) for table, rows in CLEAN_BATCH.items()
    }
    assert core_counts(database_url) == {table: len(rows) for table, rows in CLEAN_BATCH.items()}


def test_an_audit_that_cannot_run_rolls_back_the_merge(database_url, tmp_path):
    with warehouse.connect(database_url) as conn:
        ingest.ensure_schema(conn)
    load_staging(database_url, CLEAN_BATCH)

    def audit():
        return validate_staging(
            database_url,
            STAGING_TABLES,
            gx_root=tmp_path / "no_suites",
            data_docs_dir=tmp_path / "data_docs",
            run_name="no_suites",
        )

    missing = pytest.raises(FileNotFoundError, match="No expectation suite")
    with missing, warehouse.connect(database_url) as conn:
        ingest.merge_into_core_once_audited(conn, audit)
    assert core_counts(database_url) == dict.fromkeys(STAGING_TABLES, 0)


def core_lock_holders(url: str) -> dict[str, set[int]]:
    """Per core table, the server processes (other than the asking one) that hold a lock."""
    with warehouse.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(
            "select c.relname, array_agg(distinct l.pid) from pg_locks l "
            "join pg_class c on c.oid = l.relation "
            "join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = 'core' and c.relkind = 'r' and l.granted "
            "and l.pid <> pg_backend_pid() group by c.relname"
        )
        return {table: set(pids) for table, pids in cursor.fetchall()}


def real_audit(url: str, data_docs_dir: Path, run_name: str):
    """The audit as the DAG runs it: every staging table against the project's suites."""
    return lambda: validate_staging(
        url, STAGING_TABLES, gx_root=GX_ROOT, data_docs_dir=data_docs_dir, run_name=run_name
    )


def fail_inserts_into_core_events(url: str, body: str) -> None:
    with warehouse.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(
            "create function core.refuse() returns trigger language plpgsql as $$ begin "
            f"{body}; return null; end $$"
        )
        cursor.execute(
            "create trigger refuse before insert on core.events "
            "for each statement execute function core.refuse()"
        )


def test_a_failing_merge_rolls_back_core_and_raises_its_error(database_url, tmp_path):
    with warehouse.connect(database_url) as conn:
        ingest.ensure_schema(conn)
    load_staging(database_url, CLEAN_BATCH)
    fail_inserts_into_core_events(database_url, "raise exception 'disk full, say'")
    audit = real_audit(database_url, tmp_path, "x")

    refused = pytest.raises(Exception, match="disk full, say")
    with refused, warehouse.connect(database_url) as conn:
        ingest.merge_into_core_once_audited(conn, audit)
    assert core_counts(database_url) == dict.fromkeys(STAGING_TABLES, 0)


def test_a_failed_audit_cancels_the_merge_still_running(database_url, tmp_path):
    with warehouse.connect(database_url) as conn:
        ingest.ensure_schema(conn)
    load_staging(
        database_url, {**CLEAN_BATCH, "customers": CLEAN_BATCH["customers"] + BREACHES["customers"]}
    )
    # the insert into core.events would take a minute: the failed audit must not wait for it
    fail_inserts_into_core_events(database_url, "perform pg_sleep(60)")
    audit = real_audit(database_url, tmp_path, "y")

    started = time.perf_counter()
    with pytest.raises(ingest.AuditFailed), warehouse.connect(database_url) as conn:
        ingest.merge_into_core_once_audited(conn, audit)
    assert time.perf_counter() - started < 30
    assert core_counts(database_url) == dict.fromkeys(STAGING_TABLES, 0)
    assert core_lock_holders(database_url) == {}  # no transaction left behind


class TaskStopped(Exception):
    """Raised in the main thread by a signal, as Airflow stops a task that it was asked to."""


def test_a_task_stopped_during_the_merge_cancels_it(database_url, tmp_path):
    with warehouse.connect(database_url) as conn:
        ingest.ensure_schema(conn)
    load_staging(database_url, CLEAN_BATCH)
    fail_inserts_into_core_events(database_url, "perform pg_sleep(60)")

    def stop(signum, frame):
        raise TaskStopped

    previous = signal.signal(signal.SIGUSR1, stop)
    timer = threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGUSR1))
    started = time.perf_counter()
    try:
        timer.start()
        with pytest.raises(TaskStopped), warehouse.connect(database_url) as conn:
            ingest.merge_into_core_once_audited(conn, lambda: SimpleNamespace(success=True))
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)
    assert time.perf_counter() - started < 30
    assert core_counts(database_url) == dict.fromkeys(STAGING_TABLES, 0)
    assert core_lock_holders(database_url) == {}
