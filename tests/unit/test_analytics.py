"""The analytics' models on their own: seasonal decomposition, the seasonality-shift signal and
the campaign counterfactual, on generated and simulated data with known answers."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from ecom_insights.analytics.campaigns import campaign_lifts
from ecom_insights.analytics.demand import demand_trends
from ecom_insights.analytics.params import DEFAULT_PARAMS, funnel_start
from ecom_insights.analytics.seasonality import decompose, seasonal_profile, seasonality_shift
from ecom_insights.generate import generate_dataset

START = date(2023, 1, 1)


def _daily_sessions(tmp_path, days: int, shift_date: date | None, seed: int = 5) -> pd.Series:
    generate_dataset(
        tmp_path,
        customers=3000,
        days=days,
        seed=seed,
        start=START,
        minimal=True,
        shift_date=shift_date,
    )
    sessions = pd.read_csv(tmp_path / "sessions.csv", usecols=["session_date"])
    per_day = pd.to_datetime(sessions.session_date).dt.normalize().value_counts()
    every_day = pd.date_range(START, START + timedelta(days=days - 1), freq="D")
    return per_day.reindex(every_day, fill_value=0).astype(float)


# ---- decomposition


def test_a_period_is_fitted_only_with_more_than_two_cycles_of_it():
    days = pd.date_range("2024-01-01", periods=400, freq="D")
    series = pd.Series(100 + 10 * (days.dayofweek >= 5), index=days, dtype=float)
    parts = decompose(series)
    assert parts.yearly_factor.isna().all()  # 400 days: no yearly component, not a guess
    assert parts.weekly_factor.notna().all()
    assert decompose(series.iloc[:14]).isna().all().all()


def test_the_decomposition_finds_the_planted_peaks(tmp_path):
    series = _daily_sessions(tmp_path, days=730, shift_date=None)
    parts = decompose(series)
    # the factors multiply back to the series
    rebuilt = (parts.trend + 1) * parts.weekly_factor * parts.yearly_factor * parts.residual_factor
    np.testing.assert_allclose(rebuilt, series + 1, rtol=1e-9)
    profile = seasonal_profile(parts).set_index(["period", "label"])
    peaks = profile[profile.peak_rank <= 2]
    assert set(peaks.loc["yearly"].index) == {"Nov", "Dec"}
    assert set(peaks.loc["weekly"].index) == {"Sat", "Sun"}
    assert profile.loc[("yearly", "Dec"), "is_peak"]


# ---- seasonality shift


@pytest.mark.slow
@pytest.mark.parametrize("shifted", [False, True])
def test_the_shift_signal_flags_a_moved_yearly_peak_and_only_that(tmp_path, shifted):
    # Three years: the model's training window needs two, the recent window is the third.
    days = 1100
    shift_date = START + timedelta(days=days - 364) if shifted else None
    series = _daily_sessions(tmp_path, days=days, shift_date=shift_date)
    parts = decompose(series)
    signal = seasonality_shift(
        series,
        parts,
        period="yearly",
        recent_days=364,
        reference_days=364,
        min_correlation=DEFAULT_PARAMS.shift_min_profile_correlation,
    )
    assert signal["reference_peak"] == "Dec"
    assert signal["shift_detected"] is shifted
    assert signal["status"] == ("shift" if shifted else "stable")
    assert signal["recent_peak"] in ({"Jun", "Jul", "Aug"} if shifted else {"Nov", "Dec"})


def test_the_shift_signal_says_when_history_is_too_short():
    days = pd.date_range("2024-01-01", periods=500, freq="D")
    series = pd.Series(100.0, index=days)
    signal = seasonality_shift(
        series,
        decompose(series),
        period="yearly",
        recent_days=364,
        reference_days=364,
        min_correlation=0.5,
    )
    assert signal["status"] == "insufficient_history"
    assert signal["shift_detected"] is None


# ---- demand trends


def test_weeks_and_months_add_up_to_the_days_and_partial_periods_are_flagged():
    days = pd.date_range("2024-01-03", "2024-03-13", freq="D")  # a Wednesday to a Wednesday
    rng = np.random.default_rng(1)
    daily = pd.DataFrame(
        {
            "sessions": rng.poisson(100, len(days)).astype(float),
            "orders": rng.poisson(9, len(days)).astype(float),
        },
        index=days,
    )
    daily["revenue"] = daily.orders * 40.0
    rows, _ = demand_trends(daily, days[-1].date(), DEFAULT_PARAMS)
    for grain in ("week", "month"):
        periods = rows[rows.grain == grain]
        assert periods.sessions.sum() == daily.sessions.sum()
        assert periods.iloc[0].is_partial_period and periods.iloc[-1].is_partial_period
        assert not periods.iloc[1:-1].is_partial_period.any()
    weeks = rows[rows.grain == "week"]
    assert (pd.DatetimeIndex(weeks.period_start).dayofweek == 0).all()
    assert (
        rows[rows.grain == "day"].conversion_rate.tolist()
        == (daily.orders / daily.sessions).tolist()
    )


def test_the_funnel_window_starts_on_a_monday():
    assert funnel_start(date(2024, 12, 31), 1) == date(2024, 12, 30)
    assert funnel_start(date(2024, 12, 30), 2) == date(2024, 12, 23)


# ---- campaign counterfactual


def _simulated_shop(rng, lifts: list[float], days: int = 730):
    """Untreated and campaign sessions with a known conversion lift per campaign window."""
    index = pd.date_range("2023-01-01", periods=days, freq="D")
    t = np.arange(days)
    weekday = np.array([0.95, 0.9, 0.95, 1.0, 1.05, 1.15, 1.1])[index.dayofweek]
    conversion = 0.08 * weekday * (1 + 0.2 * np.sin(2 * np.pi * t / 365.25)) * (1 + t / 3000)
    sessions = rng.poisson(150 * weekday)
    untreated = pd.DataFrame(
        {"sessions": sessions, "orders": rng.binomial(sessions, conversion)}, index=index
    )
    untreated["revenue"] = untreated.orders * rng.gamma(4, 10, days)
    campaigns, carried = [], []
    for k, lift in enumerate(lifts):
        first = 40 + k * (days - 60) // len(lifts)
        window = index[first : first + 14]
        n = rng.poisson(60, len(window))
        orders = rng.binomial(n, np.minimum(conversion[first : first + 14] * (1 + lift), 1))
        amounts = [rng.gamma(4, 10, o) for o in orders]
        campaigns.append(
            {
                "campaign_id": f"CMP{k}",
                "name": f"campaign {k}",
                "channel": "email",
                "start_date": window[0].date(),
                "end_date": window[-1].date(),
            }
        )
        carried.append(
            pd.DataFrame(
                {
                    "campaign_id": f"CMP{k}",
                    "activity_date": window.date,
                    "sessions": n.astype(float),
                    "orders": orders.astype(float),
                    "revenue": [a.sum() for a in amounts],
                    "revenue_squared": [(a**2).sum() for a in amounts],
                }
            )
        )
    return pd.DataFrame(campaigns), pd.concat(carried, ignore_index=True), untreated


def _lifts(campaigns, carried, untreated):
    return campaign_lifts(
        campaigns,
        carried,
        untreated.astype(float),
        as_of_date=untreated.index[-1].date(),
        knot_days=DEFAULT_PARAMS.baseline_trend_knot_days,
        yearly_harmonics=DEFAULT_PARAMS.baseline_yearly_harmonics,
        confidence_level=0.95,
    )


def test_campaign_lift_intervals_cover_the_true_lift_about_95_percent_of_the_time():
    rng = np.random.default_rng(2024)
    planted = [0.0, 0.1, 0.3, 0.5]
    covered, estimates = [], []
    for _ in range(50):
        result = _lifts(*_simulated_shop(rng, planted))
        covered += list(
            (result.conversion_lift_lower <= planted) & (planted <= result.conversion_lift_upper)
        )
        estimates.append(result.conversion_lift.to_numpy())
    assert 0.9 <= np.mean(covered) <= 0.99
    # unbiased: the mean estimate of each campaign is close to its planted lift
    np.testing.assert_allclose(np.mean(estimates, axis=0), planted, atol=0.05)


def test_a_campaign_without_sessions_has_no_lift_rather_than_a_made_up_one():
    rng = np.random.default_rng(7)
    campaigns, carried, untreated = _simulated_shop(rng, [0.2, 0.2])
    carried = carried[carried.campaign_id == "CMP0"]
    result = _lifts(campaigns, carried, untreated).set_index("campaign_id")
    assert result.loc["CMP1", "sessions"] == 0
    assert np.isnan(result.loc["CMP1", "conversion_lift"])
    assert np.isfinite(result.loc["CMP0", "conversion_lift"])
