"""
# Scoring: churn risk, customer value, segments

Runs when a feature snapshot is published (scheduled on `marts.customer_features`) or the
models were retrained (`models.trained`), for the snapshot's as-of date D:

- **score_churn**: `marts.churn_scores` with the champion churn model: probability, risk
  band and each customer's top drivers (TreeSHAP contributions).
- **refresh_customer_value**: `marts.customer_value`, BG/NBD and Gamma-Gamma fitted on the
  purchases up to D (refitted at every scoring: they condition on each customer's history,
  and the fit takes seconds), logged to MLflow's `ecom_clv` experiment.
- **score_early_value**: `marts.early_high_value` with the champion early high-value model,
  for the customers past their first 30 days and inside their first year.
- **refresh_segments**: `marts.customer_segments`, a segment with its recommended action and a
  score to rank by; then **export_segments** writes one CSV per segment for campaign tools
  under ECOM_HOME/exports/segments/D/.

Every mart is replaced for D on a re-run. docs/model-card.md describes the models and the
segment rules.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, get_current_context, task

from ecom_insights.assets import (
    MARTS_CHURN_SCORES,
    MARTS_CUSTOMER_FEATURES,
    MARTS_CUSTOMER_SEGMENTS,
    MARTS_CUSTOMER_VALUE,
    MARTS_EARLY_HIGH_VALUE,
    MODELS_TRAINED,
)
from ecom_insights.orchestration import PIPELINE_START


@dag(
    dag_id="ecom_scoring",
    schedule=(MARTS_CUSTOMER_FEATURES | MODELS_TRAINED),
    start_date=PIPELINE_START,
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "data-science",
        "retries": 1,
        "retry_delay": timedelta(minutes=2),
    },
    tags=["ecom", "models"],
    doc_md=__doc__,
)
def ecom_scoring():
    @task(outlets=[MARTS_CHURN_SCORES])
    def score_churn() -> dict:
        from ecom_insights.models.pipeline import open_registry
        from ecom_insights.models.pipeline import score_churn as score
        from ecom_insights.orchestration import as_of_date, warehouse_url
        from ecom_insights.warehouse import connect

        as_of = as_of_date(get_current_context())
        url = warehouse_url()
        with connect(url) as conn:
            return score(conn, open_registry(conn, url), as_of).as_dict(as_of)

    @task(outlets=[MARTS_CUSTOMER_VALUE])
    def refresh_customer_value() -> dict:
        from ecom_insights.models.pipeline import open_registry, refresh_and_log_customer_value
        from ecom_insights.orchestration import as_of_date, warehouse_url
        from ecom_insights.warehouse import connect

        as_of = as_of_date(get_current_context())
        url = warehouse_url()
        with connect(url) as conn:
            refreshed = refresh_and_log_customer_value(conn, open_registry(conn, url), as_of)
        return {"as_of_date": as_of.isoformat(), "rows": refreshed.rows}

    @task(outlets=[MARTS_EARLY_HIGH_VALUE])
    def score_early_value() -> dict:
        from ecom_insights.models.pipeline import open_registry
        from ecom_insights.models.pipeline import score_early_value as score
        from ecom_insights.orchestration import as_of_date, warehouse_url
        from ecom_insights.warehouse import connect

        as_of = as_of_date(get_current_context())
        url = warehouse_url()
        with connect(url) as conn:
            return score(conn, open_registry(conn, url), as_of).as_dict(as_of)

    @task(outlets=[MARTS_CUSTOMER_SEGMENTS])
    def refresh_segments(churn: dict, value: dict, early: dict) -> dict:
        from datetime import date

        from ecom_insights.models.segments import refresh_segments as refresh
        from ecom_insights.orchestration import warehouse_url
        from ecom_insights.warehouse import connect

        as_of = date.fromisoformat(churn["as_of_date"])
        with connect(warehouse_url()) as conn:
            rows = refresh(conn, as_of)
        return {"as_of_date": as_of.isoformat(), "rows": rows}

    @task
    def export_segments(segments: dict) -> dict:
        from datetime import date

        from ecom_insights.config import load_settings
        from ecom_insights.models.segments import export_segments as export
        from ecom_insights.orchestration import warehouse_url
        from ecom_insights.warehouse import connect

        as_of = date.fromisoformat(segments["as_of_date"])
        with connect(warehouse_url()) as conn:
            paths = export(conn, as_of, load_settings().home / "exports" / "segments")
        return {segment: str(path) for segment, path in paths.items()}

    segments = refresh_segments(score_churn(), refresh_customer_value(), score_early_value())
    export_segments(segments)


ecom_scoring()
