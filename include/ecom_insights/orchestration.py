"""What the DAG task bodies share: the warehouse URL from Airflow and the as-of date of a run.

Airflow is imported inside the functions, so the package stays importable without it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from ecom_insights.config import WAREHOUSE_CONN_ID

# The start_date of every DAG. Airflow runs no task for a logical date before its start_date
# (the run is marked successful with nothing done), and real exports reach back decades:
# CDNOW's purchases are from 1997-1998, the UCI Online Retail set from 2010-2011.
PIPELINE_START = datetime(1990, 1, 1, tzinfo=UTC)


def warehouse_url() -> str:
    """The warehouse URL from the Airflow connection `ecom_warehouse`."""
    from airflow.sdk import BaseHook

    from ecom_insights.warehouse import url_from_airflow_connection

    return url_from_airflow_connection(BaseHook.get_connection(WAREHOUSE_CONN_ID))


def as_of_date(context) -> date:
    """The business date a run is about.

    A scheduled or manual run has a logical date. A run triggered by an Asset has none: it
    takes the `as_of_date` that the producing run wrote into the asset event, and falls back
    to the day the run was queued.
    """
    logical = context.get("logical_date")
    if logical is not None:
        return logical.date()
    dates = [
        date.fromisoformat(event.extra["as_of_date"])
        for events in (context.get("triggering_asset_events") or {}).values()
        for event in events
        if event.extra and "as_of_date" in event.extra
    ]
    if dates:
        return max(dates)
    run_after: datetime = context["dag_run"].run_after
    return run_after.date()


def earliest_new_activity(context) -> date | None:
    """The first day of activity among the batches whose asset events triggered this run;
    None when the run was not triggered by ingestion (or a batch did not say)."""
    days = []
    for events in (context.get("triggering_asset_events") or {}).values():
        for event in events:
            if not event.extra or not event.extra.get("min_activity_date"):
                return None
            days.append(date.fromisoformat(event.extra["min_activity_date"]))
    return min(days) if days else None
