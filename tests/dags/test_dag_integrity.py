"""Every DAG imports, follows the house conventions, and does no work at parse time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ecom_insights.config import PROJECT_ROOT
from ecom_insights.runtime import PIPELINE_DAGS

DAGS_FOLDER = PROJECT_ROOT / "dags"
DAG_FILES = sorted(p for p in DAGS_FOLDER.glob("*.py") if not p.name.startswith("_"))

# Modules that make parsing slow or that reach for data: they belong inside task bodies.
HEAVY_MODULES = (
    "pandas",
    "numpy",
    "sklearn",
    "great_expectations",
    "evidently",
    "psycopg2",
    "pyarrow",
    "pgserver",
    "lightgbm",
    "mlflow",
)
# The dag processor must parse a file well inside its 30 s import timeout; ours take ~0.1 s
# after Airflow itself is imported.
MAX_PARSE_SECONDS = 2.0


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_FOLDER))


def test_every_dag_file_imports_without_error(dagbag):
    assert DAG_FILES, "no DAG files found"
    assert dagbag.import_errors == {}


def test_one_dag_per_file_named_like_the_file(dagbag):
    for path in DAG_FILES:
        dags = [d for d in dagbag.dags.values() if Path(d.fileloc).name == path.name]
        assert [d.dag_id for d in dags] == [path.stem]


def test_the_pipeline_order_names_existing_dags(dagbag):
    assert set(PIPELINE_DAGS) <= set(dagbag.dag_ids)
    assert PIPELINE_DAGS[0] == "ecom_ingestion"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_dag_has_owner_retries_tags_and_docs(dagbag, path):
    dag = dagbag.dags.get(path.stem)
    assert dag.tags and "ecom" in dag.tags
    assert dag.doc_md and dag.doc_md.strip().startswith("#")
    assert dag.max_active_runs == 1  # runs of one DAG share staging tables
    for task in dag.tasks:
        assert task.owner not in ("", "airflow"), f"{task.task_id} has no owner"
        assert task.retries >= 1, f"{task.task_id} has no retries"


def test_assets_link_ingestion_to_its_consumers(dagbag):
    ingestion = dagbag.dags.get("ecom_ingestion")
    produced = {o.uri for t in ingestion.tasks for o in t.outlets}
    health = dagbag.dags.get("ecom_warehouse_health")
    consumed = {asset.uri for asset in health.timetable.asset_condition.objects}
    assert consumed, "the health DAG is not scheduled on Assets"
    assert consumed <= produced
    for uri in produced | consumed:
        scheme, rest = uri.split("://", 1)
        host_port, database, schema, table = rest.split("/")
        assert scheme == "postgres" and ":" in host_port and database and schema and table


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_parsing_does_no_io_and_no_heavy_imports(path, tmp_path):
    """Parse the file in a fresh interpreter whose sockets refuse to connect: a DAG file that
    opened a database or network connection at module level would fail to import."""
    probe = f"""
import json, socket, sys, time
import airflow.sdk
def refuse(*args, **kwargs):
    raise RuntimeError("network access while parsing a DAG file")
socket.socket.connect = refuse
socket.create_connection = refuse
started = time.perf_counter()
import runpy
runpy.run_path({str(path)!r})
elapsed = time.perf_counter() - started
print(json.dumps({{"seconds": elapsed,
                   "heavy": [m for m in {list(HEAVY_MODULES)!r} if m in sys.modules]}}))
"""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # a warehouse that cannot be reached: parsing must not try
        "ECOM_DATABASE_URL": "postgresql://nobody:secret@unreachable.invalid:5432/ecom",
    }
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert report["seconds"] < MAX_PARSE_SECONDS
