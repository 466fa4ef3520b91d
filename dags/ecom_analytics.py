"""
# Product and revenue analytics

Runs whenever ingestion has merged a batch into core (scheduled on the core Assets) and
refreshes, for the batch's as-of date, the marts that answer the product manager's and the
growth team's questions. Every mart row carries `as_of_date` and uses only data up to the end
of that date; a re-run for the same date replaces its rows.

- **refresh_product_marts** (SQL): `product_funnel`, the weekly funnel per product and
  category; `funnel_leakage`, leaks ranked by views x (peer rate - Wilson upper bound);
  `cross_sell_rules`, co-purchase, co-view and sequence rules above a support and count
  floor; `cross_sell_recommendations`, "customers who bought A also buy B".
- **refresh_demand_marts** (MSTL): `demand_trends`, daily, weekly and monthly demand with its
  trend, weekly and yearly components; `seasonality_profile`, the peaks named;
  `seasonality_shift`, the signal the monitoring uses to trigger retraining.
- **refresh_campaign_lift** (GLM): `campaign_lift`, each campaign against a seasonal
  quasi-Poisson counterfactual, with intervals.
- **refresh_cohort_marts** (SQL): `cohort_aov` and `cohort_retention` by signup month,
  acquisition channel and favourite category.

docs/analytics.md explains every mart's grain, columns and how to read it.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, get_current_context, task

from ecom_insights.assets import (
    CORE_CAMPAIGNS,
    CORE_CUSTOMERS,
    CORE_EVENTS,
    CORE_PRODUCTS,
    CORE_SESSIONS,
    MARTS_CAMPAIGN_LIFT,
    MARTS_COHORT_AOV,
    MARTS_COHORT_RETENTION,
    MARTS_CROSS_SELL_RECOMMENDATIONS,
    MARTS_CROSS_SELL_RULES,
    MARTS_DEMAND_TRENDS,
    MARTS_FUNNEL_LEAKAGE,
    MARTS_PRODUCT_FUNNEL,
    MARTS_SEASONALITY_PROFILE,
    MARTS_SEASONALITY_SHIFT,
)
from ecom_insights.orchestration import PIPELINE_START


def _refresh(function_name: str) -> dict:
    """Run one refresh function of ecom_insights.analytics.refresh for the run's as-of date."""
    from ecom_insights.analytics import refresh
    from ecom_insights.orchestration import as_of_date, warehouse_url
    from ecom_insights.warehouse import connect

    as_of = as_of_date(get_current_context())
    with connect(warehouse_url()) as conn:
        rows = getattr(refresh, function_name)(conn, as_of)
    return {"as_of_date": as_of.isoformat(), "rows": rows}


@dag(
    dag_id="ecom_analytics",
    schedule=(CORE_SESSIONS | CORE_CUSTOMERS | CORE_PRODUCTS | CORE_EVENTS | CORE_CAMPAIGNS),
    start_date=PIPELINE_START,
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "analytics", "retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["ecom", "analytics"],
    doc_md=__doc__,
)
def ecom_analytics():
    @task(
        outlets=[
            MARTS_PRODUCT_FUNNEL,
            MARTS_FUNNEL_LEAKAGE,
            MARTS_CROSS_SELL_RULES,
            MARTS_CROSS_SELL_RECOMMENDATIONS,
        ]
    )
    def refresh_product_marts() -> dict:
        return _refresh("refresh_product_marts")

    @task(outlets=[MARTS_DEMAND_TRENDS, MARTS_SEASONALITY_PROFILE, MARTS_SEASONALITY_SHIFT])
    def refresh_demand_marts() -> dict:
        return _refresh("refresh_demand_marts")

    @task(outlets=[MARTS_CAMPAIGN_LIFT])
    def refresh_campaign_lift() -> dict:
        return _refresh("refresh_campaign_lift")

    @task(outlets=[MARTS_COHORT_AOV, MARTS_COHORT_RETENTION])
    def refresh_cohort_marts() -> dict:
        return _refresh("refresh_cohort_marts")

    refresh_product_marts()
    refresh_demand_marts()
    refresh_campaign_lift()
    refresh_cohort_marts()


ecom_analytics()
