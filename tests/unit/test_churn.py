"""The churn model's pure parts: time windows, metrics, the RFM rule, bands and the rule that
moves the champion."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from ecom_insights.models import churn
from ecom_insights.models.pipeline import beats_baselines, challenger_wins


def test_windows_never_let_training_labels_reach_the_validation_window():
    windows = churn.training_windows(date(2023, 1, 1), date(2024, 12, 30))
    assert windows.validation == date(2024, 10, 1)  # 90 days before the end
    assert windows.calibration == date(2024, 7, 3)  # its labels end on the validation date
    assert max(windows.train) == date(2024, 4, 4)  # labels end on the calibration date
    assert len(windows.train) == 6
    assert all((b - a).days == 30 for a, b in zip(windows.train, windows.train[1:], strict=False))


def test_windows_refuse_data_too_short_with_the_reason():
    with pytest.raises(ValueError, match="needs at least 330"):
        churn.training_windows(date(2024, 1, 1), date(2024, 10, 1))


def test_windows_keep_only_training_dates_with_enough_history():
    windows = churn.training_windows(date(2023, 1, 1), date(2024, 1, 31))
    # 60 days of history before a training date: 2023-03-02 at the earliest
    assert windows.train == (date(2023, 3, 7), date(2023, 4, 6), date(2023, 5, 6))


def test_expected_calibration_error_is_zero_when_rates_match_and_grows_with_bias():
    y = np.array([0] * 8 + [1] * 2 + [0] * 2 + [1] * 8)
    p = np.array([0.2] * 10 + [0.8] * 10)
    assert churn.expected_calibration_error(y, p) == pytest.approx(0.0)
    assert churn.expected_calibration_error(y, np.clip(p + 0.1, 0, 1)) == pytest.approx(0.1)


def test_rfm_rule_ranks_the_long_gone_rare_small_spender_riskiest():
    frame = pd.DataFrame(
        {
            "recency_days": [5, 400, 60, 200, 30],
            "frequency": [12, 1, 4, 2, 8],
            "monetary": [900.0, 20.0, 300.0, 80.0, 500.0],
        }
    )
    scores = churn.rfm_rule_score(frame)
    assert scores.argmax() == 1 and scores.argmin() == 0
    assert ((scores >= 0) & (scores <= 1)).all()


def test_risk_bands_follow_the_documented_thresholds():
    assert [churn.risk_band(p) for p in (0.0, 0.39, 0.4, 0.69, 0.7, 1.0)] == [
        "low",
        "low",
        "medium",
        "medium",
        "high",
        "high",
    ]


def test_a_challenger_must_be_strictly_better_to_replace_the_champion():
    assert challenger_wins(0.81, 0.80)
    assert not challenger_wins(0.80, 0.80)
    assert not challenger_wins(0.79, 0.80)
    assert not challenger_wins(0.805, 0.80, min_improvement=0.01)


def test_a_model_ships_only_when_it_beats_every_baseline():
    metrics = {
        "model_roc_auc": 0.80,
        "bgnbd_alive_roc_auc": 0.6,
        "bgnbd_roc_auc": 0.78,
        "rfm_roc_auc": 0.75,
    }
    assert beats_baselines(metrics)
    assert not beats_baselines(metrics | {"bgnbd_roc_auc": 0.80})
    assert not beats_baselines(metrics | {"rfm_roc_auc": 0.81})
