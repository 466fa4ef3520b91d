"""The ingestion and warehouse-health DAGs, run for real with dag.test() on generated data."""

from __future__ import annotations

import csv
import shutil
from datetime import date
from pathlib import Path

import pytest

from ecom_insights import runtime
from ecom_insights.generate import generate_dataset
from ecom_insights.warehouse import connect

AS_OF = date(2023, 12, 31)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("generated")
    generate_dataset(directory, customers=300, days=365, seed=7, start=date(2023, 1, 1))
    return directory


def file_rows(path: Path) -> int:
    with path.open(newline="") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1


@pytest.mark.integration
def test_ingestion_dag_lands_generated_data_in_core(generated, ecom_env, airflow_db, fingerprints):
    outcome = runtime.run_dag("ecom_ingestion", AS_OF, conf={"data_dir": str(generated)})
    assert outcome.state == "success", outcome.failed_tasks

    url = ecom_env["ECOM_DATABASE_URL"]
    with connect(url) as conn, conn.cursor() as cur:
        for source in ("customers", "sessions", "products", "events", "campaigns"):
            cur.execute(f"select count(*) from core.{source}")
            assert cur.fetchone()[0] == file_rows(generated / f"{source}.csv") > 0, source
        cur.execute("select count(*) from raw.quarantine")
        assert cur.fetchone()[0] == 0  # the generator writes clean data
        cur.execute("select distinct status from raw.load_log")
        assert cur.fetchall() == [("loaded",)]

    docs = Path(ecom_env["ECOM_HOME"]) / "data_docs" / "index.html"
    assert docs.exists() and "staging_sessions" in docs.read_text()

    health = runtime.run_dag("ecom_warehouse_health", AS_OF)
    assert health.state == "success"
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "select source, core_rows, files_rejected, days_since_latest_activity "
            "from marts.data_health where as_of_date = %s order by source",
            (AS_OF,),
        )
        rows = {source: rest for source, *rest in cur.fetchall()}
    assert set(rows) == {"campaigns", "customers", "events", "products", "sessions"}
    assert rows["sessions"][0] == file_rows(generated / "sessions.csv")
    assert rows["sessions"][1] == 0
    assert 0 <= rows["sessions"][2] <= 7  # the generated year's last sessions are recent

    before = fingerprints(url)
    # the same files again: skipped, the run publishes nothing and changes nothing
    again = runtime.run_dag("ecom_ingestion", AS_OF, conf={"data_dir": str(generated)})
    assert again.task_states["land"] == "skipped"
    assert again.state == "incomplete"
    assert fingerprints(url) == before
    # reprocessed, they give the same tables
    again = runtime.run_dag(
        "ecom_ingestion", AS_OF, conf={"data_dir": str(generated), "reprocess": True}
    )
    assert again.state == "success"
    assert fingerprints(url) == before


@pytest.mark.integration
def test_a_rejected_file_fails_the_run_after_the_good_files_are_merged(
    generated, ecom_env, airflow_db, tmp_path
):
    data = tmp_path / "data"
    shutil.copytree(generated, data)
    (data / "products.csv").write_text("product_id,product_name,price\nP1,Mug,3\n")

    outcome = runtime.run_dag("ecom_ingestion", AS_OF, conf={"data_dir": str(data)})

    assert outcome.state == "failed"
    assert outcome.failed_tasks == ["report"]
    with connect(ecom_env["ECOM_DATABASE_URL"]) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from core.sessions")
        assert cur.fetchone()[0] == file_rows(generated / "sessions.csv")
        cur.execute("select count(*) from core.products")
        assert cur.fetchone()[0] == 0
        cur.execute("select message from raw.load_log where status = 'rejected'")
        assert cur.fetchall() == [
            ("products.csv: column 'category': required column is missing from the header",)
        ]
