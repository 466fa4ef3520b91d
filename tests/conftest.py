"""Fixtures shared by every test: a real PostgreSQL, isolated homes, and an Airflow home.

PostgreSQL: `ECOM_TEST_DATABASE_URL` names a server to use (any database on it; the tests
create and drop their own databases); unset, one embedded server (pgserver) is started for
the session. Every test that asks for `database_url` gets a fresh, empty database.

Airflow reads its configuration once, when first imported, so the session's Airflow home and
SQLite metadata database are set in `pytest_configure`, before any test imports Airflow.
Tests point the `ecom_warehouse` connection at their own database through
AIRFLOW_CONN_ECOM_WAREHOUSE, which Airflow looks up at call time.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecom_insights import warehouse
from ecom_insights.config import load_settings

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="ecom-test-"))


def pytest_configure(config):
    from ecom_insights import runtime

    # pgserver logs each handle it opens and closes, even from atexit after pytest has closed
    # its log capture
    logging.getLogger("pgserver").setLevel(logging.WARNING)

    settings = load_settings(
        {"ECOM_HOME": str(_SESSION_DIR / "home"), "AIRFLOW_HOME": str(_SESSION_DIR / "airflow")}
    )
    # the developer's own Airflow or ECOM settings must not leak into the tests
    inherited = [n for n in os.environ if n.startswith(("AIRFLOW", "ECOM_"))]
    for name in inherited:
        if name != "ECOM_TEST_DATABASE_URL":
            del os.environ[name]
    placeholder = "postgresql://postgres@localhost:5432/postgres"
    os.environ.update(runtime.airflow_environment(settings, placeholder, env={}))
    os.environ["ECOM_HOME"] = str(settings.home)


def pytest_unconfigure(config):
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A URL of a real PostgreSQL server's maintenance database."""
    external = os.environ.get("ECOM_TEST_DATABASE_URL")
    if external:
        yield external
        return
    import pgserver

    # short path: the server's Unix socket lives in the data directory (~100 characters max)
    server = pgserver.get_server(_SESSION_DIR / "pg", cleanup_mode="stop")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture
def database_url(pg_server_url) -> Iterator[str]:
    """A fresh, empty database on the test server, dropped after the test."""
    name = f"ecom_test_{uuid.uuid4().hex[:12]}"
    with warehouse.connect(pg_server_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f'create database "{name}"')
    yield warehouse.with_database(pg_server_url, name)
    with warehouse.connect(pg_server_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def ecom_env(database_url, tmp_path, monkeypatch) -> dict[str, str]:
    """ECOM_HOME in the test's tmp dir and the warehouse (also as the Airflow connection)
    pointing at the test's own database."""
    home = tmp_path / "ecom"
    variables = {
        "ECOM_HOME": str(home),
        "ECOM_DATABASE_URL": database_url,
        "AIRFLOW_CONN_ECOM_WAREHOUSE": warehouse.airflow_connection_json(database_url),
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return variables


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """The session's Airflow metadata database, migrated once."""
    from ecom_insights import runtime

    runtime.migrate_metadata_db(load_settings())
