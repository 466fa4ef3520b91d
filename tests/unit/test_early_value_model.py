"""The early high-value model's pure parts on tiny frames: the metrics, the horizon rule, the
time split, and a planted driver that the model finds and first-window spend misses."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from ecom_insights.models import early_value
from ecom_insights.models.early_value import (
    CATEGORICAL_FEATURES,
    NUMERIC_FEATURES,
    EarlyValueParams,
    choose_horizon,
    normalised_gini,
    precision_at_top,
    split_cohorts,
    time_split,
)

# ---- metrics


def test_normalised_gini_is_one_for_the_perfect_order_and_minus_one_for_the_reverse():
    value = np.array([0.0, 0.0, 5.0, 1.0, 20.0, 3.0])
    assert normalised_gini(value, value) == pytest.approx(1.0)
    assert normalised_gini(value, -value) == pytest.approx(-1.0)
    assert normalised_gini(value, value**2 + 7) == pytest.approx(1.0)  # only the order counts


def test_normalised_gini_credits_no_order_among_tied_scores():
    value = np.array([0.0, 1.0, 2.0, 3.0, 10.0])
    assert normalised_gini(value, np.zeros(5)) == pytest.approx(0.0)
    # one customer told apart, the rest tied: between random (0) and perfect (1)
    assert 0 < normalised_gini(value, np.array([0, 0, 0, 0, 1.0])) < 1


def test_normalised_gini_of_constant_values_is_an_error():
    with pytest.raises(ValueError, match="undefined"):
        normalised_gini(np.ones(4), np.arange(4))


def test_precision_at_top_counts_the_positives_among_the_highest_scores():
    positive = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 1], dtype=bool)
    score = np.array([0.9, 0.8, 0.7, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.0])
    assert precision_at_top(positive, score, 0.2) == 0.5  # top 2: one positive
    assert precision_at_top(positive, score, 0.3) == pytest.approx(2 / 3)
    assert precision_at_top(positive, score, 0.01) == 1.0  # at least one customer


# ---- windows and splits


def test_the_horizon_is_a_year_when_the_data_allows_and_shrinks_in_steps_otherwise():
    assert choose_horizon(date(2023, 1, 1), date(2024, 12, 30)) == 365  # the demo's 730 days
    # Online Retail: 2010-12-01 .. 2011-12-09 is 374 days: 374 - 30 - 150 = 194 -> 180
    assert choose_horizon(date(2010, 12, 1), date(2011, 12, 9)) == 180
    with pytest.raises(ValueError, match="min_horizon_days"):
        choose_horizon(date(2011, 1, 1), date(2011, 8, 1))


def test_the_time_split_holds_out_the_latest_signups_and_never_cuts_a_day():
    days = pd.Series([date(2024, 1, 1) + timedelta(days=d // 3) for d in range(30)])
    latest = time_split(days, 0.25)
    assert days[latest].min() > days[~latest].max()
    assert latest.sum() in (6, 9)  # whole days of 3 signups, about a quarter


# ---- training on a planted driver


def planted_frame(customers: int = 4000, seed: int = 3) -> pd.DataFrame:
    """Customers whose later value is driven by their early sessions, not their early spend;
    early spend is noise of the same scale. Signups spread over 300 days."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {column: rng.normal(size=customers) for column in NUMERIC_FEATURES},
    )
    frame["sessions"] = rng.poisson(3, customers).astype(float)
    frame["spend"] = rng.gamma(2.0, 20.0, customers)
    for column in CATEGORICAL_FEATURES:
        frame[column] = rng.choice(["a", "b", "c"], customers)
    frame["customer_id"] = [f"C{i:05d}" for i in range(customers)]
    frame["signup_date"] = [
        date(2024, 1, 1) + timedelta(days=int(d)) for d in rng.integers(0, 300, customers)
    ]
    frame["future_value"] = np.exp(0.6 * frame["sessions"] + rng.normal(0, 0.6, customers))
    threshold = frame["future_value"].quantile(0.95)
    frame["is_labelled"] = True
    frame["is_top_value"] = frame["future_value"] >= threshold
    return frame


def test_the_model_finds_a_planted_driver_that_first_window_spend_misses():
    frame = planted_frame()
    model, metrics = early_value.train(frame)
    assert metrics["model_precision_at_top"] >= 0.4
    assert metrics["baseline_spend_precision_at_top"] <= 0.15  # spend is noise here
    assert metrics["model_normalised_gini"] > metrics["baseline_spend_normalised_gini"] + 0.3
    assert model.signals.loc[0, "feature"] == "sessions"
    assert model.signals.loc[0, "direction"] > 0.5
    # calibrated: the mean probability is near the validation cohorts' positive rate
    assert metrics["model_mean_probability"] == pytest.approx(
        metrics["validation_positive_rate"], abs=0.03
    )


def test_training_reads_labelled_customers_only_and_validates_on_later_signups():
    frame = planted_frame()
    frame["is_top_value"] = frame["is_top_value"].astype(object)  # NULL when not labelled
    frame.loc[frame.index[:500], ["is_labelled", "future_value", "is_top_value"]] = [
        False,
        np.nan,
        None,
    ]
    training, calibration, validation = split_cohorts(frame, EarlyValueParams())
    assert len(training) + len(calibration) + len(validation) == len(frame) - 500
    assert training.signup_date.max() < calibration.signup_date.min()
    assert calibration.signup_date.max() < validation.signup_date.min()
    model, metrics = early_value.train(frame)
    assert metrics["validation_customers"] == len(validation)
    assert model.params["validation_customers"] == len(validation)


def test_scores_rank_every_customer_and_flag_the_top_share():
    frame = planted_frame(customers=2000)
    model, _ = early_value.train(frame)
    unseen = planted_frame(customers=301, seed=9).drop(
        columns=["is_labelled", "future_value", "is_top_value"]
    )
    unseen.loc[0, "location"] = "a level never seen in training"
    scored = early_value.score(model, unseen)
    assert list(scored.columns) == [
        "customer_id",
        "signup_date",
        "probability_high_value",
        "percentile",
        "is_top_5pct",
    ]
    assert scored["probability_high_value"].between(0, 1).all()
    assert scored["percentile"].min() == 0 and scored["percentile"].max() == 100
    assert scored["is_top_5pct"].sum() == math.ceil(0.05 * 301)
    top = scored[scored["is_top_5pct"]]
    assert top["probability_high_value"].min() >= scored["probability_high_value"].quantile(0.9)
    assert model.version.startswith("early-value-")
    assert early_value.score(model, unseen.iloc[:0]).empty
