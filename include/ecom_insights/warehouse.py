"""The one place that opens database connections.

The warehouse is any PostgreSQL named by `ECOM_DATABASE_URL`; without it, an embedded server
from the `pgserver` wheel (a real PostgreSQL 16, no install, no root) is started with its
data under ECOM_HOME and left running, so that the next command reuses it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from ecom_insights.config import Settings, load_settings


def database_url(settings: Settings | None = None) -> str:
    """The warehouse URL in use, starting the embedded server if no URL is configured."""
    settings = settings or load_settings()
    if settings.database_url:
        return settings.database_url
    return start_embedded_server(settings.embedded_pgdata)


def start_embedded_server(pgdata: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL whose data lives in `pgdata`; return its URL."""
    import logging
    import warnings

    # pgserver logs every handle it opens and closes, and platformdirs (which it imports) warns
    # about an unset XDG_RUNTIME_DIR; neither is news to the user.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    logging.getLogger("pgserver").setLevel(logging.WARNING)

    import pgserver  # imported here: it is only needed when no ECOM_DATABASE_URL is set

    pgdata.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None keeps the server running after this process exits, so that Airflow
    # tasks, the CLI and the dashboard all share it.
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    return server.get_uri()


@contextmanager
def connect(url: str, *, autocommit: bool = False) -> Iterator:
    """A psycopg2 connection that commits on success and rolls back on error."""
    import psycopg2

    conn = psycopg2.connect(url)
    conn.autocommit = autocommit
    try:
        yield conn
        if not autocommit:
            conn.commit()
    except BaseException:
        if not autocommit:
            conn.rollback()
        raise
    finally:
        conn.close()


@contextmanager
def sibling_connection(conn) -> Iterator:
    """Another connection to `conn`'s database as `conn`'s user (with its password), for
    work that runs beside `conn`'s on another server process; commits on success like
    `connect`."""
    import psycopg2

    parameters = {k: v for k, v in conn.get_dsn_parameters().items() if v}
    if conn.info.password:
        parameters["password"] = conn.info.password
    other = psycopg2.connect(**parameters)
    try:
        yield other
        other.commit()
    except BaseException:
        other.rollback()
        raise
    finally:
        other.close()


def sqlalchemy_url(url: str) -> str:
    """The same URL with the psycopg2 driver named, as SQLAlchemy (and so GX) expects."""
    scheme, rest = url.split("://", 1)
    if scheme in ("postgres", "postgresql"):
        scheme = "postgresql+psycopg2"
    return f"{scheme}://{rest}"


def url_parts(url: str) -> dict[str, str | int | None]:
    """Host, port, database, user and password of a libpq URL (a socket host included)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    host = parts.hostname or (query.get("host") or [None])[0]
    return {
        "host": host,
        "port": parts.port or int((query.get("port") or [5432])[0]),
        "database": unquote(parts.path.lstrip("/")) or "postgres",
        "user": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
    }


def airflow_connection_json(url: str) -> str:
    """The warehouse as an Airflow connection, for AIRFLOW_CONN_ECOM_WAREHOUSE."""
    parts = url_parts(url)
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": parts["host"],
            "port": parts["port"],
            "schema": parts["database"],
            "login": parts["user"],
            "password": parts["password"],
        }
    )


def url_from_airflow_connection(conn) -> str:
    """A libpq URL from an Airflow Connection (the inverse of `airflow_connection_json`)."""
    from urllib.parse import quote

    user = quote(conn.login or "", safe="")
    password = quote(conn.password or "", safe="")
    auth = f"{user}:{password}@" if user else ""
    database = conn.schema or "postgres"
    host = conn.host or "localhost"
    port = conn.port or 5432
    if host.startswith("/"):
        return f"postgresql://{auth}/{database}?host={quote(host, safe='/')}&port={port}"
    return f"postgresql://{auth}{host}:{port}/{database}"


def with_database(url: str, database: str) -> str:
    """The same server URL naming another database."""
    parts = urlsplit(url)
    return parts._replace(path=f"/{database}").geturl()


@contextmanager
def scratch_database(server_url: str | None = None, prefix: str = "scratch") -> Iterator[str]:
    """A throwaway database for a one-off measurement: on `server_url` when given, else on an
    embedded server in a temporary directory that is stopped afterwards. Yields its URL; the
    database is dropped on the way out, whatever happened."""
    import tempfile
    import uuid

    with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as scratch:
        pgdata = Path(scratch) / "pg"
        server = server_url or start_embedded_server(pgdata)
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with connect(server, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(f'create database "{name}"')  # a generated name, not user input
        try:
            yield with_database(server, name)
        finally:
            with connect(server, autocommit=True) as conn, conn.cursor() as cur:
                cur.execute(f'drop database if exists "{name}" with (force)')
            if not server_url:
                import pgserver

                pgserver.get_server(pgdata, cleanup_mode="stop").cleanup()
