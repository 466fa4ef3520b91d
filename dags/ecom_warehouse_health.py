"""
# Warehouse health

Runs whenever ingestion has merged a batch into core (scheduled on the `core.sessions` and
`core.customers` Assets) and refreshes `marts.data_health` for the batch's as-of date: rows in
core per source, files loaded and rejected, quarantine rate, and days since the latest
activity. The dashboard's data-health panel and the data engineers' checks read it.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, get_current_context, task

from ecom_insights.assets import CORE_CUSTOMERS, CORE_SESSIONS, MARTS_DATA_HEALTH
from ecom_insights.orchestration import PIPELINE_START


@dag(
    dag_id="ecom_warehouse_health",
    schedule=(CORE_SESSIONS | CORE_CUSTOMERS),
    start_date=PIPELINE_START,
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "data-engineering", "retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["ecom", "monitoring"],
    doc_md=__doc__,
)
def ecom_warehouse_health():
    @task(outlets=[MARTS_DATA_HEALTH])
    def refresh_data_health() -> dict:
        from ecom_insights.marts import refresh_mart
        from ecom_insights.orchestration import as_of_date, warehouse_url
        from ecom_insights.warehouse import connect

        as_of = as_of_date(get_current_context())
        with connect(warehouse_url()) as conn:
            rows = refresh_mart(conn, "data_health", as_of)
        return {"as_of_date": as_of.isoformat(), "rows": rows}

    refresh_data_health()


ecom_warehouse_health()
