"""End to end under a real scheduler: ingestion's Assets trigger the downstream DAGs.

This is the production shape in miniature: a PostgreSQL metadata database, the api-server
(which tasks report to through the Execution API), the dag-processor and the scheduler with
the LocalExecutor, each its own process. The test triggers the ingestion DAG the way a user
or a schedule would and waits for the scheduler to create the warehouse-health run from the
Asset events, then checks what that run wrote.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import date, timedelta

import pytest

from ecom_insights import features, runtime, warehouse
from ecom_insights.config import load_settings
from ecom_insights.generate import generate_dataset

AS_OF = date(2023, 6, 30)
TIMEOUT_SECONDS = 300


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def airflow_services(pg_server_url, database_url, tmp_path) -> Iterator[dict]:
    """api-server, dag-processor and scheduler on a fresh home and metadata database."""
    metadata_db = f"airflow_{secrets.token_hex(6)}"
    with warehouse.connect(pg_server_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f'create database "{metadata_db}"')
    metadata_url = warehouse.sqlalchemy_url(warehouse.with_database(pg_server_url, metadata_db))

    port = free_port()
    settings = load_settings(
        {"ECOM_HOME": str(tmp_path / "ecom"), "AIRFLOW_HOME": str(tmp_path / "airflow")}
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ECOM_"))}
    env.update(runtime.airflow_environment(settings, database_url, env={}))
    env.update(
        {
            "ECOM_DATABASE_URL": database_url,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        }
    )
    settings.airflow_home.mkdir(parents=True)
    # the daily schedule also starts a run on the (empty) landing directory: it must skip
    settings.landing_dir.mkdir(parents=True)
    airflow = runtime.airflow_executable()
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)

    processes = []
    logs = {}
    for name, command in {
        "api-server": ["api-server", "--port", str(port), "--host", "127.0.0.1"],
        "dag-processor": ["dag-processor"],
        "scheduler": ["scheduler"],
    }.items():
        logs[name] = tmp_path / f"{name}.log"
        processes.append(
            subprocess.Popen(
                [airflow, *command],
                env=env,
                stdout=logs[name].open("wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    try:
        yield {"env": env, "metadata_url": metadata_url, "logs": logs, "airflow": airflow}
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        with warehouse.connect(pg_server_url, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(f'drop database if exists "{metadata_db}" with (force)')


def metadata_query(metadata_url: str, query: str, params=()) -> list[tuple]:
    libpq_url = metadata_url.replace("postgresql+psycopg2://", "postgresql://")
    with warehouse.connect(libpq_url) as conn, conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


def wait_for(condition, what: str, services: dict, timeout: float = TIMEOUT_SECONDS):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(2)
    tails = {
        name: path.read_text(errors="replace")[-3000:] for name, path in services["logs"].items()
    }
    pytest.fail(f"timed out waiting for {what}; service logs:\n{json.dumps(tails, indent=1)}")


def trigger(services: dict, dag_id: str, logical_date: date, conf: dict) -> None:
    subprocess.run(
        [
            services["airflow"],
            "dags",
            "trigger",
            dag_id,
            "--conf",
            json.dumps(conf),
            "--logical-date",
            f"{logical_date.isoformat()}T00:00:00+00:00",
        ],
        env=services["env"],
        check=True,
        capture_output=True,
    )


def finished_runs(metadata_url: str, dag_id: str) -> list[tuple[str, str]]:
    """(state, run_type) of the DAG's finished runs that the test caused, oldest first."""
    return metadata_query(
        metadata_url,
        "select state, run_type from dag_run where dag_id = %s and state in "
        "('success', 'failed') and run_type <> 'scheduled' order by id",
        (dag_id,),
    )


# ecom_scoring is triggered by the feature snapshot (the data is too short for a model, so it
# scores nothing: the point here is that it fires)
DOWNSTREAM = ("ecom_warehouse_health", "ecom_features", "ecom_scoring")


@pytest.mark.integration
@pytest.mark.slow
def test_ingestion_assets_trigger_the_downstream_dags_under_the_scheduler(
    airflow_services, database_url, tmp_path, split_files
):
    generated = tmp_path / "generated"
    generate_dataset(generated, customers=200, days=181, seed=3, start=date(2023, 1, 1))
    yesterday = AS_OF - timedelta(days=1)
    # two daily deliveries: the history up to yesterday, then today's activity alone
    first = split_files(generated, tmp_path / "first", None, yesterday)
    second = split_files(generated, tmp_path / "second", yesterday, AS_OF)
    meta = airflow_services["metadata_url"]
    dag_ids = ("ecom_ingestion", *DOWNSTREAM)

    wait_for(
        lambda: (
            len(
                metadata_query(
                    meta,
                    "select dag_id from dag where dag_id = any(%s) and not is_paused",
                    (list(dag_ids),),
                )
            )
            == len(dag_ids)
        ),
        "the dag-processor to register the DAGs unpaused",
        airflow_services,
    )
    for number, (data, day) in enumerate(((first, yesterday), (second, AS_OF)), start=1):
        trigger(airflow_services, "ecom_ingestion", day, {"data_dir": str(data)})
        for dag_id in dag_ids:
            wait_for(
                lambda dag_id=dag_id, number=number: len(finished_runs(meta, dag_id)) == number,
                f"run {number} of {dag_id}",
                airflow_services,
            )

    assert finished_runs(meta, "ecom_ingestion") == [("success", "manual")] * 2
    for dag_id in DOWNSTREAM:
        assert finished_runs(meta, dag_id) == [("success", "asset_triggered")] * 2, dag_id

    events = metadata_query(
        meta,
        "select a.name, e.extra from asset_event e join asset a on a.id = e.asset_id "
        "where a.name in ('core.sessions', 'marts.customer_features') order by e.id",
    )
    by_asset = {}
    for name, extra in events:
        by_asset.setdefault(name, []).append(extra)
    assert [e["as_of_date"] for e in by_asset["core.sessions"]] == [
        yesterday.isoformat(),
        AS_OF.isoformat(),
    ]
    assert by_asset["core.sessions"][1]["min_activity_date"] == AS_OF.isoformat()
    # the first snapshot is built in full; the second day is rolled forward from it
    assert [(e["as_of_date"], e["mode"]) for e in by_asset["marts.customer_features"]] == [
        (yesterday.isoformat(), "full"),
        (AS_OF.isoformat(), "incremental"),
    ]

    with warehouse.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("select distinct as_of_date from marts.data_health order by 1")
        assert cur.fetchall() == [(yesterday,), (AS_OF,)]
        cur.execute(
            "select core_rows from marts.data_health where source = 'sessions' and as_of_date = %s",
            (AS_OF,),
        )
        sessions_in_core = cur.fetchone()[0]
        cur.execute(
            "create table rolled as select * from marts.customer_features where as_of_date = %s",
            (AS_OF,),
        )
    with (generated / "sessions.csv").open() as handle:
        assert sessions_in_core == sum(1 for _ in handle) - 1 > 0
    with warehouse.connect(database_url) as conn:
        features.build_features(conn, AS_OF)
    with warehouse.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from rolled")
        assert cur.fetchone()[0] > 0
        cur.execute(
            "select count(*) from ((select * from rolled except all select * from "
            "marts.customer_features where as_of_date = %(d)s) union all (select * from "
            "marts.customer_features where as_of_date = %(d)s except all select * from rolled)) x",
            {"d": AS_OF},
        )
        assert cur.fetchone()[0] == 0  # the scheduled roll-forward equals a full rebuild

    # the daily schedule's own run found an empty landing directory: skipped, not failed
    scheduled = metadata_query(
        meta, "select state from dag_run where dag_id = 'ecom_ingestion' and run_type = 'scheduled'"
    )
    assert all(state != "failed" for (state,) in scheduled)
