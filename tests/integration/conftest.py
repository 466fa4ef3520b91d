"""Integration fixtures: a database on the session's real PostgreSQL with the warehouse DDL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from ecom_insights import ingest, warehouse


@pytest.fixture(scope="session")
def warehouse_url(pg_server_url) -> Iterator[str]:
    """One database for the session with raw/staging/core created (tests that share it
    must leave it as they found it, or use the per-test `database_url` instead)."""
    name = f"ecom_shared_{uuid.uuid4().hex[:12]}"
    with warehouse.connect(pg_server_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f'create database "{name}"')
    url = warehouse.with_database(pg_server_url, name)
    with warehouse.connect(url) as conn:
        ingest.ensure_schema(conn)
    yield url
    with warehouse.connect(pg_server_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f'drop database if exists "{name}" with (force)')


INGESTED_TABLES = (
    "core.customers",
    "core.sessions",
    "core.products",
    "core.events",
    "core.campaigns",
    "raw.quarantine",
    "raw.load_log",
)


@pytest.fixture
def fingerprints():
    """A function: url -> {table: md5 of all its rows}, for "a re-run changes nothing"."""

    def fingerprint(url: str) -> dict[str, str]:
        result = {}
        with warehouse.connect(url) as conn, conn.cursor() as cur:
            for table in INGESTED_TABLES:
                cur.execute(
                    "select md5(coalesce(string_agg(t::text, '|' order by t::text), '')) "
                    f"from {table} t"  # names from the constant above
                )
                result[table] = cur.fetchone()[0]
        return result

    return fingerprint


def copy_activity_between(source, target, after, until):
    """Copy generated files keeping the customers, sessions and events dated in
    (after, until] (after=None: from the beginning); products and campaigns whole. Names the
    files with `until`, as a daily export would: sessions_<until>.csv, ..."""
    import pandas as pd

    target.mkdir(parents=True, exist_ok=True)
    for name, column in (
        ("customers", "signup_date"),
        ("sessions", "session_date"),
        ("events", "event_time"),
    ):
        frame = pd.read_csv(source / f"{name}.csv", dtype=str, keep_default_na=False)
        day = pd.to_datetime(frame[column]).dt.date
        keep = (day <= until) if after is None else ((day > after) & (day <= until))
        frame[keep].to_csv(target / f"{name}_{until.isoformat()}.csv", index=False)
    for name in ("products.csv", "campaigns.csv"):
        (target / name).write_bytes((source / name).read_bytes())
    return target


@pytest.fixture
def split_files():
    """A function copying generated files restricted to a range of days (see above)."""
    return copy_activity_between
