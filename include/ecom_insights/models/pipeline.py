"""Training, the champion/challenger rule and scoring, against the warehouse and the registry.

The DAGs call these functions; the models themselves (models.churn, models.clv, ...) are pure.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import pandas as pd
from psycopg2.extras import execute_values

from ecom_insights.features import snapshot_dates, training_set
from ecom_insights.models import churn, clv
from ecom_insights.models import params as P
from ecom_insights.models.errors import NotEnoughData
from ecom_insights.models.registry import CHALLENGER, CHAMPION, ModelVersion, Registry

CHURN_EXPERIMENT = "ecom_churn"
CLV_EXPERIMENT = "ecom_clv"
EARLY_VALUE_EXPERIMENT = "ecom_early_value"


def activity_range(conn, as_of: date | None = None) -> tuple[date, date]:
    """First and last session day in core (up to `as_of` when given)."""
    with conn.cursor() as cur:
        cur.execute(
            "select min(session_date), max(session_date) from core.sessions "
            "where %(as_of)s::date is null or session_date <= %(as_of)s",
            {"as_of": as_of},
        )
        start, end = cur.fetchone()
    if start is None:
        raise ValueError("core.sessions is empty: nothing to train on")
    return start, end


@dataclass
class TrainingOutcome:
    """What one training produced, as logged to the registry and marts.model_training_log."""

    model_name: str
    validation_date: date
    metrics: dict[str, float]
    ships: bool
    run_id: str | None
    version: ModelVersion | None = None
    promoted: bool = False
    reason: str = ""
    top_drivers: dict[str, float] = field(default_factory=dict)


def churn_snapshots(conn, windows: churn.Windows) -> dict[date, pd.DataFrame]:
    """Training sets (features at D plus churned_90d) for every date of `windows`."""
    dates = [*windows.train, windows.calibration, windows.validation]
    return {d: training_set(conn, d) for d in dates}


def evaluate_churn(conn, model: churn.ChurnModel, validation: pd.DataFrame) -> dict[str, float]:
    """The model and the baselines on the validation window: model_* (ROC-AUC, PR-AUC, Brier,
    ECE), bgnbd_alive_* (1 - P(alive), the baseline the issue names), bgnbd_* (BG/NBD's
    P(no purchase in the next 90 days), its forecast of the label itself and the stronger of
    the two), rfm_* (the RFM rule), and the window's size."""
    frame = churn.eligible(validation).reset_index(drop=True)
    y = frame[churn.LABEL].astype(int).to_numpy()
    metrics = {
        f"model_{k}": v
        for k, v in churn.classification_metrics(
            y, model.predict_proba(frame), probabilities=True
        ).items()
    }
    # BG/NBD fitted on the purchases up to the validation date only
    baseline, _ = clv.churn_baseline(conn, model.windows.validation)
    bgnbd = baseline.set_index("customer_id").reindex(frame["customer_id"])
    for name, risk in (
        ("bgnbd_alive", bgnbd["churn_score"].to_numpy()),
        ("bgnbd", bgnbd["probability_no_purchase"].to_numpy()),
    ):
        metrics |= {
            f"{name}_{k}": v
            for k, v in churn.classification_metrics(y, risk, probabilities=True).items()
        }
    metrics |= {
        f"rfm_{k}": v
        for k, v in churn.classification_metrics(
            y, churn.rfm_rule_score(frame), probabilities=False
        ).items()
    }
    metrics["validation_customers"] = float(len(frame))
    metrics["validation_churn_rate"] = float(y.mean())
    return metrics


def beats_baselines(metrics: dict[str, float], metric: str = P.CHAMPION_METRIC) -> bool:
    """The shipping rule: better than both BG/NBD scores and the RFM rule on the validation
    window."""
    baselines = (metrics[f"{name}_{metric}"] for name in ("bgnbd_alive", "bgnbd", "rfm"))
    return metrics[f"model_{metric}"] > max(baselines)


def challenger_wins(
    challenger: float, champion: float, min_improvement: float = P.CHAMPION_MIN_IMPROVEMENT
) -> bool:
    """A challenger replaces the champion only if strictly better by the margin."""
    return challenger > champion + min_improvement


def apply_champion_rule(
    registry: Registry,
    version: ModelVersion,
    metric: str,
    challenger_value: float,
    rescore_champion: Callable[[object], tuple[float, bool]],
) -> tuple[bool, str]:
    """Give `version` the champion alias if there is no champion, or if it beats the current
    champion re-scored on the challenger's (the newest) validation data; else the
    challenger alias. `rescore_champion(model)` returns the champion's metric on that data
    and whether the comparison is fair (False when the champion was validated on newer data,
    so it may have seen these outcomes). Returns (promoted, reason)."""
    current = registry.alias(version.name, CHAMPION)
    if current is None:
        registry.set_alias(version, CHAMPION)
        return True, "first champion"
    champion_value, comparable = rescore_champion(registry.load(current))
    if comparable and challenger_wins(challenger_value, champion_value):
        registry.set_alias(version, CHAMPION)
        return True, (
            f"{metric} {challenger_value:.4f} beats champion {current.label} at "
            f"{champion_value:.4f} on the newest validation data"
        )
    registry.set_alias(version, CHALLENGER)
    return False, (
        f"champion {current.label} kept: {metric} {champion_value:.4f} vs challenger "
        f"{challenger_value:.4f} on the newest validation data"
        + ("" if comparable else " (the champion was validated on newer data)")
    )


def register_and_decide(
    conn,
    registry: Registry,
    model: churn.ChurnModel,
    metrics: dict[str, float],
    validation: pd.DataFrame,
) -> TrainingOutcome:
    """Log the run; register the model if it beats both baselines; then apply the
    champion/challenger rule on this (the newest) validation window."""
    ships = beats_baselines(metrics)
    importance = churn.driver_importance(model, churn.eligible(validation))
    params = {
        **P.CHURN_LGBM_PARAMS,
        **model.windows.as_dict(),
        "features": ",".join(model.features),
    }
    tags = {"ships": str(ships).lower(), "validation_date": model.windows.validation.isoformat()}
    run_id, version = registry.log_run(
        CHURN_EXPERIMENT,
        params,
        metrics,
        tags,
        model=model,
        register_as=P.CHURN_MODEL_NAME if ships else None,
    )
    outcome = TrainingOutcome(
        P.CHURN_MODEL_NAME,
        model.windows.validation,
        metrics,
        ships,
        run_id,
        version,
        top_drivers=importance.head(10).round(6).to_dict(),
    )
    if not ships:
        outcome.reason = (
            f"not shipped: {P.CHAMPION_METRIC} {metrics['model_' + P.CHAMPION_METRIC]:.4f} "
            f"does not beat BG/NBD {metrics['bgnbd_' + P.CHAMPION_METRIC]:.4f} "
            f"(P(alive) {metrics['bgnbd_alive_' + P.CHAMPION_METRIC]:.4f}) and RFM "
            f"{metrics['rfm_' + P.CHAMPION_METRIC]:.4f}"
        )
        return outcome
    frame = churn.eligible(validation)

    def rescore(champion: churn.ChurnModel) -> tuple[float, bool]:
        value = churn.classification_metrics(
            frame[churn.LABEL].astype(int), champion.predict_proba(frame), probabilities=False
        )[P.CHAMPION_METRIC]
        return value, champion.windows.validation <= model.windows.validation

    outcome.promoted, outcome.reason = apply_champion_rule(
        registry, version, P.CHAMPION_METRIC, metrics[f"model_{P.CHAMPION_METRIC}"], rescore
    )
    return outcome


def not_trained(conn, model_name: str, as_of: date, error: NotEnoughData) -> TrainingOutcome:
    """Record that the data could not support a model at `as_of`, and why."""
    outcome = TrainingOutcome(model_name, as_of, {}, False, None, reason=f"not trained: {error}")
    record_training(conn, as_of, outcome)
    return outcome


def train_churn(conn, registry: Registry, as_of: date | None = None) -> TrainingOutcome:
    """Train on the data up to `as_of` (all of it when None), evaluate against the baselines
    on the newest labelled window, register, and apply the champion/challenger rule. Data
    too short for the time windows is recorded as `not trained`, not raised."""
    start, end = activity_range(conn, as_of)
    try:
        windows = churn.training_windows(start, end)
        snapshots = churn_snapshots(conn, windows)
        conn.commit()
        model = churn.train(snapshots, windows)
    except NotEnoughData as error:
        return not_trained(conn, P.CHURN_MODEL_NAME, as_of or end, error)
    metrics = evaluate_churn(conn, model, snapshots[windows.validation])
    model.metrics = metrics
    outcome = register_and_decide(conn, registry, model, metrics, snapshots[windows.validation])
    record_training(conn, as_of or end, outcome)
    return outcome


def train_early_value(conn, registry: Registry, as_of: date) -> TrainingOutcome:
    """Train the early high-value model at `as_of` (models.early_value), register it if it
    ranks better than first-30-day spend (normalised Gini on the validation cohorts), and
    apply the champion/challenger rule on those cohorts."""
    from ecom_insights.models import early_value

    try:
        frame = early_value.load_early_window(conn, as_of)
        model, metrics = early_value.train(frame)
    except NotEnoughData as error:
        return not_trained(conn, P.EARLY_VALUE_MODEL_NAME, as_of, error)
    metric = P.EARLY_VALUE_CHAMPION_METRIC
    ships = metrics[f"model_{metric}"] > metrics[f"baseline_spend_{metric}"]
    validation = early_value.split_cohorts(frame)[2]
    run_id, version = registry.log_run(
        EARLY_VALUE_EXPERIMENT,
        model.params,
        metrics,
        {"ships": str(ships).lower(), "content_version": model.version},
        model=model,
        register_as=P.EARLY_VALUE_MODEL_NAME if ships else None,
    )
    signals = model.signals.set_index("feature")["mean_abs_shap"].head(10)
    outcome = TrainingOutcome(
        P.EARLY_VALUE_MODEL_NAME,
        validation["signup_date"].max(),
        metrics,
        ships,
        run_id,
        version,
        top_drivers=signals.round(6).to_dict(),
    )
    if not ships:
        outcome.reason = (
            f"not shipped: {metric} {metrics['model_' + metric]:.4f} does not beat "
            f"first-30-day spend {metrics['baseline_spend_' + metric]:.4f}"
        )
    else:

        def rescore(champion) -> tuple[float, bool]:
            probability = early_value.score(champion, validation)["probability_high_value"]
            return early_value.normalised_gini(validation["future_value"], probability), True

        outcome.promoted, outcome.reason = apply_champion_rule(
            registry, version, metric, metrics[f"model_{metric}"], rescore
        )
    record_training(conn, as_of, outcome)
    return outcome


def score_early_value(conn, registry: Registry, as_of: date) -> Scoring:
    """Replace marts.early_high_value for `as_of` with the champion early-value model's
    scores: the customers past their first 30 days and still inside their label window.
    Without a champion the date is left empty."""
    from ecom_insights.models import early_value

    champion = registry.alias(P.EARLY_VALUE_MODEL_NAME, CHAMPION)
    if champion is None:
        empty = early_value.score(None, pd.DataFrame())
        return Scoring(early_value.write_early_high_value(conn, empty, as_of, ""), None)
    model = registry.load(champion)
    frame = early_value.scoring_rows(early_value.load_early_window(conn, as_of))
    scored = early_value.score(model, frame)
    rows = early_value.write_early_high_value(conn, scored, as_of, champion.label)
    return Scoring(rows, champion.label)


TRAINING_LOG_DDL = """
create table if not exists marts.model_training_log (
    model_name text not null,
    as_of_date date not null,
    trained_at timestamptz not null default now(),
    mlflow_run_id text,
    model_version text,
    ships boolean not null,
    promoted boolean not null,
    reason text not null,
    validation_date date not null,
    metrics jsonb not null,
    top_drivers jsonb not null,
    primary key (model_name, as_of_date)
)
"""


def record_training(conn, as_of: date, outcome: TrainingOutcome) -> None:
    """One row per model and as-of date in marts.model_training_log (replaced on a re-run):
    what the dashboard's model-health page and `ecom run`'s summary show."""
    with conn.cursor() as cur:
        cur.execute("create schema if not exists marts")
        cur.execute(TRAINING_LOG_DDL)
        cur.execute(
            """
            insert into marts.model_training_log (model_name, as_of_date, mlflow_run_id,
                model_version, ships, promoted, reason, validation_date, metrics, top_drivers)
            values (%(model)s, %(as_of)s, %(run)s, %(version)s, %(ships)s, %(promoted)s,
                %(reason)s, %(validation)s, %(metrics)s, %(drivers)s)
            on conflict (model_name, as_of_date) do update set
                trained_at = now(), mlflow_run_id = excluded.mlflow_run_id,
                model_version = excluded.model_version, ships = excluded.ships,
                promoted = excluded.promoted, reason = excluded.reason,
                validation_date = excluded.validation_date, metrics = excluded.metrics,
                top_drivers = excluded.top_drivers
            """,
            {
                "model": outcome.model_name,
                "as_of": as_of,
                "run": outcome.run_id,
                "version": outcome.version.label if outcome.version else None,
                "ships": outcome.ships,
                "promoted": outcome.promoted,
                "reason": outcome.reason,
                "validation": outcome.validation_date,
                "metrics": json.dumps(outcome.metrics),
                "drivers": json.dumps(outcome.top_drivers),
            },
        )


# --- scoring

CHURN_SCORES_DDL = """
create table if not exists marts.churn_scores (
    customer_id text not null,
    as_of_date date not null,
    churn_probability double precision not null,
    risk_band text not null,
    top_drivers jsonb not null,
    model_version text not null,
    primary key (as_of_date, customer_id)
)
"""


def features_at(conn, as_of: date) -> pd.DataFrame:
    """The feature snapshot at `as_of` (built when missing)."""
    from ecom_insights.features import build_features

    if as_of not in snapshot_dates(conn):
        build_features(conn, as_of)
    with conn.cursor() as cur:
        cur.execute(
            "select * from marts.customer_features where as_of_date = %s order by customer_id",
            (as_of,),
        )
        columns = [d[0] for d in cur.description]
        return pd.DataFrame(cur.fetchall(), columns=columns)


@dataclass(frozen=True)
class Scoring:
    rows: int
    model_version: str | None  # None: no champion yet, nothing scored

    def as_dict(self, as_of: date) -> dict:
        note = (
            None
            if self.model_version
            else ("no champion model (see marts.model_training_log): no rows written")
        )
        return {
            "as_of_date": as_of.isoformat(),
            "rows": self.rows,
            "model_version": self.model_version,
            "note": note,
        }


def score_churn(conn, registry: Registry, as_of: date) -> Scoring:
    """Replace marts.churn_scores for `as_of` with the champion's scores. Without a champion
    (too little data so far, or no model beat the baselines) the date is left empty."""
    champion = registry.alias(P.CHURN_MODEL_NAME, CHAMPION)
    scores = pd.DataFrame()
    if champion is not None:
        model = registry.load(champion)
        scores = churn.score(model, features_at(conn, as_of), champion.label)
    rows = [
        (
            r.customer_id,
            r.as_of_date,
            float(r.churn_probability),
            r.risk_band,
            json.dumps(r.top_drivers),
            r.model_version,
        )
        for r in scores.itertuples(index=False)
    ]
    with conn.cursor() as cur:
        cur.execute("create schema if not exists marts")
        cur.execute(CHURN_SCORES_DDL)
        cur.execute("delete from marts.churn_scores where as_of_date = %s", (as_of,))
        execute_values(cur, "insert into marts.churn_scores values %s", rows, page_size=5000)
    return Scoring(len(rows), champion.label if champion else None)


def refresh_and_log_customer_value(conn, registry: Registry, as_of: date):
    """marts.customer_value at `as_of` (models.clv), its fitted parameters logged as a run of
    MLflow's `ecom_clv` experiment, whose id becomes the rows' model_version."""
    refreshed = clv.refresh_customer_value(conn, as_of)
    conn.commit()
    registry.log_run(
        CLV_EXPERIMENT,
        {**refreshed.parameters, "as_of_date": as_of, "model_version": refreshed.model_version},
        {
            **{k: float(v) for k, v in refreshed.parameters.items() if _is_number(v)},
            "customers_with_purchases": float(refreshed.customers_with_purchases),
            "rows": float(refreshed.rows),
        },
        {"as_of_date": as_of.isoformat()},
    )
    return refreshed


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def open_registry(conn, warehouse_url: str) -> Registry:
    """The registry of this warehouse, with model files under ECOM_HOME (or where
    ECOM_MLFLOW_ARTIFACTS says)."""
    from ecom_insights.config import load_settings

    return Registry.for_warehouse(conn, warehouse_url, load_settings().home)
