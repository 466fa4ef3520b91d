"""
# Model training (weekly retraining)

Every Monday at 04:00 UTC, and on demand, retrains the models on the warehouse's data up to
the run's date and registers them in MLflow (docs/model-card.md):

- **train_churn_model**: the 90-day churn model on point-in-time feature snapshots; validated
  on the newest labelled window (never a random split) against BG/NBD and the RFM rule. It is
  registered only if it beats both; it then replaces the `champion` only if it is better
  than the champion on that same newest window, else it becomes the `challenger`.
- **train_early_value_model**: the early high-value buyer model (a customer's first 30 days),
  registered if it orders customers by value better than first-30-day spend (normalised
  Gini on the newest signup cohorts), with the same champion/challenger rule.

Publishes `models.trained`, on which the scoring DAG re-scores the customers.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, get_current_context, task
from airflow.timetables.trigger import CronTriggerTimetable

from ecom_insights.assets import MODELS_TRAINED
from ecom_insights.orchestration import PIPELINE_START


def _train(function_name: str) -> dict:
    """Run one training function of ecom_insights.models.pipeline as of the run's date."""
    from ecom_insights.models import pipeline
    from ecom_insights.orchestration import as_of_date, warehouse_url
    from ecom_insights.warehouse import connect

    as_of = as_of_date(get_current_context())
    url = warehouse_url()
    with connect(url) as conn:
        outcome = getattr(pipeline, function_name)(conn, pipeline.open_registry(conn, url), as_of)
    return {
        "as_of_date": as_of.isoformat(),
        "ships": outcome.ships,
        "promoted": outcome.promoted,
        "version": outcome.version.label if outcome.version else None,
        "reason": outcome.reason,
        "metrics": {k: round(v, 4) for k, v in outcome.metrics.items()},
    }


@dag(
    dag_id="ecom_training",
    schedule=CronTriggerTimetable("0 4 * * 1", timezone="UTC"),
    start_date=PIPELINE_START,
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "data-science",
        "retries": 1,
        "retry_delay": timedelta(minutes=5),
    },
    tags=["ecom", "models"],
    doc_md=__doc__,
)
def ecom_training():
    @task
    def train_churn_model() -> dict:
        return _train("train_churn")

    @task
    def train_early_value_model() -> dict:
        return _train("train_early_value")

    @task(outlets=[MODELS_TRAINED])
    def publish(churn: dict, early_value: dict) -> dict:
        get_current_context()["outlet_events"][MODELS_TRAINED].extra = {
            "as_of_date": churn["as_of_date"],
            "churn_version": churn["version"],
            "churn_promoted": churn["promoted"],
            "early_value_version": early_value["version"],
            "early_value_promoted": early_value["promoted"],
        }
        return {"churn": churn, "early_value": early_value}

    publish(train_churn_model(), train_early_value_model())


ecom_training()
