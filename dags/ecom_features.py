"""
# Customer features

Runs whenever ingestion has merged a batch into core (scheduled on the `core.customers`,
`core.sessions` and `core.events` Assets) and refreshes the snapshot of
`marts.customer_features` for the batch's as-of date D: one row per customer signed up on or
before D, from data up to the end of D only. Definitions: docs/features.md.

With `mode` = `auto` (the default), the snapshot is rolled forward from the latest earlier
snapshot when the batch's data all lies after it (only the customers with new activity are
computed afresh), and rebuilt in full otherwise (late-arriving data, or a first snapshot).
`full` and `incremental` force one or the other.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag, get_current_context, task

from ecom_insights.assets import CORE_CUSTOMERS, CORE_EVENTS, CORE_SESSIONS, MARTS_CUSTOMER_FEATURES
from ecom_insights.orchestration import PIPELINE_START


@dag(
    dag_id="ecom_features",
    schedule=(CORE_CUSTOMERS | CORE_SESSIONS | CORE_EVENTS),
    start_date=PIPELINE_START,
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "data-engineering",
        "retries": 2,
        "retry_delay": timedelta(minutes=2),
    },
    params={
        "mode": Param(
            "auto",
            enum=["auto", "full", "incremental"],
            description="auto: roll forward when the new data lies after the latest "
            "snapshot, else rebuild; full: rebuild; incremental: roll forward.",
        )
    },
    tags=["ecom", "features"],
    doc_md=__doc__,
)
def ecom_features():
    @task(outlets=[MARTS_CUSTOMER_FEATURES])
    def refresh_customer_features() -> dict:
        from ecom_insights.features import refresh_features
        from ecom_insights.orchestration import as_of_date, earliest_new_activity, warehouse_url
        from ecom_insights.warehouse import connect

        context = get_current_context()
        as_of = as_of_date(context)
        with connect(warehouse_url()) as conn:
            build = refresh_features(
                conn, as_of, context["params"]["mode"], earliest_new_activity(context)
            )
        context["outlet_events"][MARTS_CUSTOMER_FEATURES].extra = {
            "as_of_date": as_of.isoformat(),
            "mode": build.mode,
            "rows": build.rows,
        }
        return {
            "as_of_date": as_of.isoformat(),
            "mode": build.mode,
            "rows": build.rows,
            "recomputed_customers": build.recomputed_customers,
        }

    refresh_customer_features()


ecom_features()
