"""The CLV fitting code reproduces Fader, Hardie and Lee's published CDNOW estimates.

The 2,357-customer CDNOW sample shipped in the lifetimes wheel, summarised over its first 39
weeks (to 1997-09-30), in weeks: BG/NBD r = 0.243, alpha = 4.414, a = 0.793, b = 2.426,
log-likelihood -9582.4 (Fader, Hardie and Lee 2005, "Counting your customers the easy way");
Gamma-Gamma on the 946 customers with a repeat purchase p = 6.25, q = 3.74, gamma = 15.44
(Fader, Hardie and Lee 2005, "RFM and CLV", and Hardie's note 025).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ecom_insights.models import clv


@pytest.fixture(scope="module")
def cdnow_summary() -> pd.DataFrame:
    """The published summary in clv's columns: weeks back to days (x 7), as the SQL gives."""
    from lifetimes.datasets import load_cdnow_summary_data_with_monetary_value

    published = load_cdnow_summary_data_with_monetary_value()
    return pd.DataFrame(
        {
            "customer_id": published.index.astype(str),
            "frequency": published["frequency"].to_numpy(),
            "recency_days": published["recency"].to_numpy() * clv.DAYS_PER_WEEK,
            "t_days": published["T"].to_numpy() * clv.DAYS_PER_WEEK,
            "monetary_value": published["monetary_value"].to_numpy(),
        }
    )


@pytest.fixture(scope="module")
def fitted(cdnow_summary) -> clv.FittedCLV:
    return clv.fit_clv(cdnow_summary)


def test_bgnbd_reproduces_the_published_cdnow_parameters(fitted):
    parameters = fitted.parameters()
    assert fitted.customers == 2357
    assert parameters["time_unit"] == "week"
    published = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    for name, value in published.items():
        assert parameters[f"bgnbd_{name}"] == pytest.approx(value, abs=0.002), name
    assert parameters["bgnbd_log_likelihood"] == pytest.approx(-9582.4, abs=0.1)


def test_gamma_gamma_reproduces_the_published_cdnow_parameters(fitted):
    parameters = fitted.parameters()
    assert fitted.repeat_customers == 946
    assert parameters["gamma_gamma_p"] == pytest.approx(6.25, abs=0.01)
    assert parameters["gamma_gamma_q"] == pytest.approx(3.74, abs=0.01)
    assert parameters["gamma_gamma_v"] == pytest.approx(15.44, abs=0.1)


def test_scores_match_the_published_worked_examples(fitted, cdnow_summary):
    # Fader-Hardie-Lee's customer with x = 2, t_x = 30.43, T = 38.86 weeks (ID 1 of the
    # sample): expected purchases in the next 39 weeks 1.226 (lifetimes' documented figure),
    # and a customer with no repeat purchase gets the population mean spend,
    # p v / (q - 1) = 35.17 (q, p, v as fitted).
    first = cdnow_summary.iloc[[0]]
    assert first["frequency"].item() == 2
    assert clv.expected_purchases(fitted, first, 39 * 7).item() == pytest.approx(1.226, abs=0.001)
    never = cdnow_summary[cdnow_summary["frequency"] == 0].iloc[[0]]
    p, q, v = (fitted.gamma_gamma.params_[k] for k in ("p", "q", "v"))
    assert clv.expected_purchase_value(fitted, never).item() == pytest.approx(p * v / (q - 1))


def test_scores_are_probabilities_and_non_negative_expectations(fitted, cdnow_summary):
    scores = clv.score_customers(fitted, cdnow_summary)
    assert scores["probability_alive"].between(0, 1).all()
    # no repeat purchase yet: BG/NBD says alive for sure (dropout only follows a purchase)
    assert (scores.loc[cdnow_summary["frequency"] == 0, "probability_alive"] == 1).all()
    assert (scores["expected_purchases_365d"] >= scores["expected_purchases_90d"]).all()
    assert (scores["expected_purchases_90d"] >= 0).all()
    assert np.allclose(
        scores["expected_value_365d"],
        scores["expected_purchases_365d"] * scores["expected_purchase_value"],
    )
    none_90d = clv.probability_no_purchase(fitted, cdnow_summary, 90)
    assert none_90d.between(1 - scores["probability_alive"], 1).all()


def test_no_data_fits_nothing_and_scores_nulls():
    empty = pd.DataFrame(columns=list(clv.SUMMARY_COLUMNS)).astype(
        {"frequency": int, "recency_days": int, "t_days": int, "monetary_value": float}
    )
    fitted = clv.fit_clv(empty)
    assert fitted.purchases is None and fitted.gamma_gamma is None
    assert fitted.parameters()["bgnbd_r"] is None
    assert clv.score_customers(fitted, empty).empty


def test_holdout_figures_count_absent_customers_as_no_purchase():
    predicted = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "predicted_purchases": [1.0, 2.0, 0.5],
            "predicted_value": [10.0, 20.0, 5.0],
            "predicted_no_purchase": [0.4, 0.2, 0.6],
        }
    )
    actual = pd.DataFrame(
        {"customer_id": ["a", "b"], "actual_purchases": [2, 2], "actual_value": [15.0, 30.0]}
    )
    figures = clv.holdout_figures(predicted, actual)
    assert figures["customers"] == 3
    assert figures["purchases_mae"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert figures["purchases_actual_total"] == 4
    assert figures["purchases_total_ratio"] == pytest.approx(3.5 / 4)
    assert figures["value_actual_total"] == 45
    assert figures["no_purchase_share_actual"] == pytest.approx(1 / 3)
    assert figures["no_purchase_share_predicted"] == pytest.approx(0.4)


def test_too_few_customers_give_no_fit_and_null_values_not_an_error():
    """A 15-row clickstream sample has three buyers: nothing to identify four parameters."""
    summary = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "frequency": [0, 1, 2],
            "recency_days": [0, 10, 40],
            "t_days": [30, 50, 60],
            "monetary_value": [0.0, 25.0, 40.0],
        }
    )
    fitted = clv.fit_clv(summary)
    assert fitted.purchases is None and fitted.gamma_gamma is None
    scores = clv.score_customers(fitted, summary)
    assert len(scores) == 3 and scores["expected_value_365d"].isna().all()
