"""The churn model on generated data with planted drivers, on a real PostgreSQL and a real
MLflow registry (in the test database's `mlflow` schema)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from ecom_insights import ingest, warehouse
from ecom_insights.generate import generate_dataset
from ecom_insights.models import churn, pipeline
from ecom_insights.models import params as P
from ecom_insights.models.registry import CHALLENGER, CHAMPION, Registry, tracking_uri

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# No planted effect on churn in the generator: habits of time.
NO_EFFECT_FEATURES = ("favourite_hour", "favourite_weekday", "weekend_session_share")


@pytest.fixture(scope="module")
def demo_url(pg_server_url, tmp_path_factory) -> Iterator[str]:
    """The demo's data (5,000 customers over two years, seed 42) loaded into core."""
    directory = tmp_path_factory.mktemp("churn-data")
    generate_dataset(directory, customers=5000, days=730, seed=42)
    name = f"ecom_churn_{uuid.uuid4().hex[:12]}"
    with warehouse.connect(pg_server_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f'create database "{name}"')
    url = warehouse.with_database(pg_server_url, name)
    with warehouse.connect(url) as conn:
        ingest.land_files(conn, directory, reprocess=True)
        ingest.apply_row_rules(conn, datetime(2025, 1, 1, tzinfo=UTC))
        ingest.merge_into_core(conn)
    yield url
    with warehouse.connect(pg_server_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture(scope="module")
def trained(demo_url):
    with warehouse.connect(demo_url) as conn:
        start, end = pipeline.activity_range(conn)
        windows = churn.training_windows(start, end)
        snapshots = pipeline.churn_snapshots(conn, windows)
        model = churn.train(snapshots, windows)
        metrics = pipeline.evaluate_churn(conn, model, snapshots[windows.validation])
    return model, metrics, snapshots


@pytest.fixture
def registry(demo_url, tmp_path) -> Registry:
    """An empty registry: a fresh schema named on the search path, per test."""
    schema = f"mlflow_{uuid.uuid4().hex[:8]}"
    with warehouse.connect(demo_url) as conn, conn.cursor() as cur:
        cur.execute(f"create schema {schema}")
    uri = tracking_uri(demo_url, env={}).replace("%3Dmlflow", f"%3D{schema}")
    return Registry(uri, (tmp_path / "artifacts").as_uri())


def test_the_model_beats_bgnbd_and_the_rfm_rule_on_the_later_window(trained):
    _, metrics, _ = trained
    assert metrics["model_roc_auc"] > 0.8
    assert metrics["model_roc_auc"] > metrics["bgnbd_roc_auc"] + 0.03
    assert metrics["model_roc_auc"] > metrics["bgnbd_alive_roc_auc"]
    assert metrics["model_roc_auc"] > metrics["rfm_roc_auc"] + 0.03
    assert metrics["model_pr_auc"] > max(metrics["bgnbd_pr_auc"], metrics["rfm_pr_auc"])
    # calibrated: the Brier score beats BG/NBD's and the calibration error stays small
    assert metrics["model_brier"] < metrics["bgnbd_brier"]
    assert metrics["model_ece"] < 0.08


def test_the_model_recovers_the_planted_churn_drivers(trained):
    """Planted: less browsing time, fewer sessions and more discount use raise the dropout
    rate. Each proxy must push risk the planted way and outweigh the features with no
    planted effect."""
    model, _, snapshots = trained
    frame = churn.eligible(snapshots[model.windows.validation]).reset_index(drop=True)
    importance = churn.driver_importance(model, frame)
    contributions = model.contributions(frame)
    planted_signs = {
        "avg_session_duration_sec": -1,
        "sessions_last_90d": -1,
        "discount_usage_share": +1,
    }
    noise = max(importance[name] for name in NO_EFFECT_FEATURES)
    for feature, sign in planted_signs.items():
        values = frame[feature].astype(float)
        known = values.notna()
        rho = spearmanr(values[known], contributions.loc[known, feature]).statistic
        assert np.sign(rho) == sign and abs(rho) > 0.5, (feature, rho)
        assert importance[feature] > noise, (feature, importance[feature], noise)
    assert list(importance.index[:3]).count("sessions_last_90d") == 1


def test_a_model_that_does_not_beat_the_baselines_is_not_registered(trained, demo_url, registry):
    model, _, snapshots = trained
    shuffled = _shuffled_labels(snapshots)
    weak = churn.train(shuffled, model.windows)
    with warehouse.connect(demo_url) as conn:
        metrics = pipeline.evaluate_churn(conn, weak, snapshots[model.windows.validation])
        outcome = pipeline.register_and_decide(
            conn, registry, weak, metrics, snapshots[model.windows.validation]
        )
    assert not outcome.ships and outcome.version is None
    assert "not shipped" in outcome.reason
    assert registry.alias(P.CHURN_MODEL_NAME, CHAMPION) is None


def test_a_better_challenger_replaces_a_champion_that_went_bad(trained, demo_url, registry):
    model, metrics, snapshots = trained
    validation = snapshots[model.windows.validation]
    # the registry's champion: a model that learned noise (shuffled labels)
    bad = churn.train(_shuffled_labels(snapshots), model.windows)
    _, bad_version = registry.log_run(
        pipeline.CHURN_EXPERIMENT, {}, {}, {}, model=bad, register_as=P.CHURN_MODEL_NAME
    )
    registry.set_alias(bad_version, CHAMPION)
    with warehouse.connect(demo_url) as conn:
        outcome = pipeline.register_and_decide(conn, registry, model, metrics, validation)
    assert outcome.promoted, outcome.reason
    assert registry.alias(P.CHURN_MODEL_NAME, CHAMPION).version == outcome.version.version
    assert outcome.version.version != bad_version.version


def test_a_challenger_no_better_than_the_champion_leaves_it_in_place(trained, demo_url, registry):
    model, metrics, snapshots = trained
    validation = snapshots[model.windows.validation]
    with warehouse.connect(demo_url) as conn:
        first = pipeline.register_and_decide(conn, registry, model, metrics, validation)
        # the same training again: equal, not better
        retrained = churn.train(snapshots, model.windows)
        second = pipeline.register_and_decide(conn, registry, retrained, metrics, validation)
    assert first.promoted and first.reason == "first champion"
    assert not second.promoted and "kept" in second.reason
    assert registry.alias(P.CHURN_MODEL_NAME, CHAMPION).version == first.version.version
    assert registry.alias(P.CHURN_MODEL_NAME, CHALLENGER).version == second.version.version


def test_scores_carry_calibrated_probabilities_and_exact_drivers(trained, demo_url, registry):
    model, metrics, snapshots = trained
    with warehouse.connect(demo_url) as conn:
        pipeline.register_and_decide(
            conn, registry, model, metrics, snapshots[model.windows.validation]
        )
        start, end = pipeline.activity_range(conn)
        scoring = pipeline.score_churn(conn, registry, end)
        again = pipeline.score_churn(conn, registry, end)  # a re-run replaces
        features = pipeline.features_at(conn, end)
        with conn.cursor() as cur:
            cur.execute(
                "select customer_id, churn_probability, risk_band, top_drivers, model_version "
                "from marts.churn_scores where as_of_date = %s order by customer_id",
                (end,),
            )
            scores = pd.DataFrame(cur.fetchall(), columns=[d[0] for d in cur.description])
    eligible = churn.eligible(features).reset_index(drop=True)
    assert scoring.rows == again.rows == len(scores) == len(eligible) > 1000
    assert scoring.model_version == f"{P.CHURN_MODEL_NAME}/v1"
    assert scores.churn_probability.between(0, 1).all()
    assert set(scores.risk_band) == {"low", "medium", "high"}
    assert scores.model_version.unique().tolist() == [f"{P.CHURN_MODEL_NAME}/v1"]
    # each listed driver's contribution is its exact TreeSHAP value, and they add up
    contributions = model.contributions(eligible).set_index(eligible.customer_id)
    log_odds = pd.Series(model.log_odds(eligible), index=eligible.customer_id)
    assert np.allclose(contributions.sum(axis=1), log_odds, atol=1e-6)
    for row in scores.sample(200, random_state=1).itertuples():
        drivers = (
            row.top_drivers if isinstance(row.top_drivers, list) else json.loads(row.top_drivers)
        )
        assert 0 < len(drivers) <= P.TOP_DRIVERS
        listed = [d["contribution"] for d in drivers]
        assert listed == sorted(listed, reverse=True) and min(listed) > 0
        for driver in drivers:
            exact = contributions.loc[row.customer_id, driver["feature"]]
            assert driver["contribution"] == pytest.approx(exact, abs=1e-6)


def test_without_a_champion_scoring_leaves_the_date_empty(demo_url, registry):
    with warehouse.connect(demo_url) as conn:
        start, end = pipeline.activity_range(conn)
        scoring = pipeline.score_churn(conn, registry, end)
        with conn.cursor() as cur:
            cur.execute("select count(*) from marts.churn_scores where as_of_date = %s", (end,))
            assert cur.fetchone()[0] == 0
    assert scoring.rows == 0 and scoring.model_version is None
    assert "no champion" in scoring.as_dict(end)["note"]


def test_data_too_short_is_recorded_as_not_trained(demo_url, registry):
    with warehouse.connect(demo_url) as conn:
        start, _ = pipeline.activity_range(conn)
        outcome = pipeline.train_churn(conn, registry, start + timedelta(days=200))
        with conn.cursor() as cur:
            cur.execute(
                "select ships, reason from marts.model_training_log "
                "where model_name = %s and as_of_date = %s",
                (P.CHURN_MODEL_NAME, start + timedelta(days=200)),
            )
            ships, reason = cur.fetchone()
    assert not outcome.ships and outcome.version is None
    assert not ships and reason.startswith("not trained: the data spans 200 days")


def _shuffled_labels(snapshots: dict) -> dict:
    rng = np.random.default_rng(0)
    return {
        d: frame.assign(**{churn.LABEL: rng.permutation(frame[churn.LABEL].to_numpy())})
        for d, frame in snapshots.items()
    }


def test_segments_follow_the_documented_precedence_and_export_per_segment(
    trained, demo_url, registry, tmp_path
):
    from ecom_insights.models import segments

    model, metrics, snapshots = trained
    with warehouse.connect(demo_url) as conn:
        pipeline.register_and_decide(
            conn, registry, model, metrics, snapshots[model.windows.validation]
        )
        _, end = pipeline.activity_range(conn)
        pipeline.score_churn(conn, registry, end)
        pipeline.refresh_and_log_customer_value(conn, registry, end)
        pipeline.score_early_value(conn, registry, end)  # no champion: an empty date
        rows = segments.refresh_segments(conn, end)
        assert segments.refresh_segments(conn, end) == rows  # a re-run replaces
        paths = segments.export_segments(conn, end, tmp_path)
        features = pipeline.features_at(conn, end)
        with conn.cursor() as cur:
            cur.execute(
                "select s.*, f.days_since_signup from marts.customer_segments s "
                "join marts.customer_features f using (as_of_date, customer_id) "
                "where s.as_of_date = %s",
                (end,),
            )
            mart = pd.DataFrame(cur.fetchall(), columns=[d[0] for d in cur.description])
            cur.execute(
                "select customer_id, expected_value_365d from marts.customer_value "
                "where as_of_date = %s",
                (end,),
            )
            value = dict(cur.fetchall())
    assert rows == len(mart) == len(features) and mart.customer_id.is_unique
    assert set(mart.segment) == set(P.SEGMENT_ACTIONS)
    # the rules, first match wins, recomputed here from the mart's inputs
    ev = mart.customer_id.map(value).astype(float).fillna(0)
    value_percentile = 100 * (ev.rank(method="min") - 1) / (len(ev) - 1)
    expected = np.select(
        [
            mart.days_since_signup <= P.SEGMENT_NEW_DAYS,
            mart.frequency == 0,
            mart.recency_days > P.SEGMENT_LOST_DAYS,
            mart.recency_days > P.SEGMENT_HIBERNATING_DAYS,
            mart.risk_band == "high",
            value_percentile >= P.SEGMENT_HIGH_LTV_PERCENTILE,
            mart.frequency >= P.SEGMENT_LOYAL_MIN_PURCHASES,
        ],
        ["new", "prospect", "lost", "hibernating", "at_risk", "high_ltv", "loyal"],
        default="active",
    )
    assert (mart.segment.to_numpy() == expected).all()
    assert (mart.recommended_action == mart.segment.map(P.SEGMENT_ACTIONS)).all()
    at_risk = mart[mart.segment == "at_risk"].sort_values("rank_in_segment")
    assert at_risk.segment_score.is_monotonic_decreasing
    assert at_risk.score_percentile.iloc[0] == 100
    for segment, path in paths.items():
        exported = pd.read_csv(path)
        in_mart = mart[mart.segment == segment].sort_values("rank_in_segment")
        assert exported.customer_id.tolist() == in_mart.customer_id.tolist()
        assert list(exported.columns) == list(segments.EXPORT_COLUMNS)


def test_training_then_scoring_dags_fill_every_model_mart(
    demo_url, airflow_db, tmp_path, monkeypatch
):
    """The two DAGs for real (dag.test), with MLflow at its default: the warehouse's
    `mlflow` schema."""
    from ecom_insights import runtime

    home = tmp_path / "ecom"
    monkeypatch.setenv("ECOM_HOME", str(home))
    monkeypatch.setenv("ECOM_DATABASE_URL", demo_url)
    monkeypatch.setenv("AIRFLOW_CONN_ECOM_WAREHOUSE", warehouse.airflow_connection_json(demo_url))
    monkeypatch.delenv("ECOM_MLFLOW_TRACKING_URI", raising=False)
    with warehouse.connect(demo_url) as conn:
        _, end = pipeline.activity_range(conn)

    training = runtime.run_dag("ecom_training", end)
    assert training.state == "success", training.task_states
    scoring = runtime.run_dag("ecom_scoring", end)
    assert scoring.state == "success", scoring.task_states

    def counts() -> dict[str, int]:
        result = {}
        with warehouse.connect(demo_url) as conn, conn.cursor() as cur:
            for mart in ("churn_scores", "customer_value", "early_high_value", "customer_segments"):
                cur.execute(f"select count(*) from marts.{mart} where as_of_date = %s", (end,))
                result[mart] = cur.fetchone()[0]
        return result

    first = counts()
    assert all(n > 0 for n in first.values()), first
    assert runtime.run_dag("ecom_scoring", end).state == "success"
    assert counts() == first  # a re-run replaces the date's rows
    with warehouse.connect(demo_url) as conn, conn.cursor() as cur:
        cur.execute(
            "select model_name, ships, promoted, model_version from marts.model_training_log "
            "where as_of_date = %s order by model_name",
            (end,),
        )
        assert cur.fetchall() == [
            ("ecom_churn", True, True, "ecom_churn/v1"),
            ("ecom_early_value", True, True, "ecom_early_value/v1"),
        ]
        cur.execute("select count(*) from mlflow.model_versions")
        assert cur.fetchone()[0] == 2
    exports = sorted(p.name for p in (home / "exports" / "segments" / end.isoformat()).iterdir())
    assert exports == sorted(f"{segment}.csv" for segment in P.SEGMENT_ACTIONS)
