"""Campaign lift against a counterfactual baseline from a seasonal model, with intervals.

The question: how did the sessions that carry a campaign's id convert (and spend) compared
with what those same sessions would have done without the campaign? The counterfactual is a
seasonal model of the untreated sessions (those carrying no campaign id), fitted on every day
outside all campaign windows up to the as-of date, so that neither the campaign nor any spill
over into its window can leak into its own baseline:

    log E[orders_d] = log(untreated sessions_d) + spline trend(d) + weekday(d) [+ yearly(d)]

a quasi-Poisson GLM (statsmodels; the dispersion is estimated, so extra-Poisson noise widens
the intervals rather than being ignored). Revenue per session has the same model. The yearly
Fourier terms enter only with more than two years of history, when they can be told apart
from the trend. On each campaign day the model gives the baseline conversion; weighting by the
campaign's sessions that day gives the expected orders E, against the observed orders O:

    lift = O / E - 1, with a log-scale interval from the binomial variance of O and the
    model's variance of E (delta method).

The concurrent comparison (campaign sessions against the untreated sessions of the same
days) is reported beside it: under random assignment of the id, as in the demo data, both
estimate the same lift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.interpolate import BSpline
from scipy.stats import norm

SPLINE_DEGREE = 3
DAYS_PER_YEAR = 365.25


@dataclass(frozen=True)
class SeasonalDesign:
    """The baseline model's regressors for any day, fixed by the training span."""

    first_day: pd.Timestamp
    last_day: pd.Timestamp
    knot_days: int
    yearly_harmonics: int  # 0: no yearly terms

    def matrix(self, days: pd.DatetimeIndex) -> np.ndarray:
        span = max((self.last_day - self.first_day).days, 1)
        t = np.clip((days - self.first_day).days.to_numpy(dtype=float), 0, span)
        interior = np.linspace(0, span, max(2, round(span / self.knot_days) + 1))[1:-1]
        knots = np.concatenate(
            [np.zeros(SPLINE_DEGREE + 1), interior, np.full(SPLINE_DEGREE + 1, float(span))]
        )
        # B-splines sum to one, so they stand in for the intercept
        trend = BSpline.design_matrix(t, knots, SPLINE_DEGREE).toarray()
        weekday = np.eye(7)[days.dayofweek.to_numpy()][:, 1:]  # Monday is the reference
        columns = [trend, weekday]
        day_of_year = days.dayofyear.to_numpy(dtype=float)
        for k in range(1, self.yearly_harmonics + 1):
            angle = 2 * np.pi * k * day_of_year / DAYS_PER_YEAR
            columns += [np.sin(angle)[:, None], np.cos(angle)[:, None]]
        return np.hstack(columns)


@dataclass(frozen=True)
class RateModel:
    """A fitted per-session rate: exp(X @ coefficients), with the coefficients' covariance."""

    design: SeasonalDesign
    coefficients: np.ndarray
    covariance: np.ndarray
    training_days: int

    def expected_total(self, days: pd.DatetimeIndex, sessions: np.ndarray) -> tuple[float, float]:
        """Sum over days of sessions x rate, and the variance of that sum (delta method)."""
        x = self.design.matrix(days)
        per_day = sessions * np.exp(x @ self.coefficients)
        gradient = per_day @ x
        return float(per_day.sum()), float(gradient @ self.covariance @ gradient)


def fit_rate_model(
    untreated: pd.DataFrame, outcome: str, campaign_days: pd.DatetimeIndex, design: SeasonalDesign
) -> RateModel | None:
    """Quasi-Poisson GLM of `outcome` per session on the untreated daily series.

    `untreated` is indexed by day with columns sessions and `outcome` (orders or revenue) of
    the sessions without a campaign id. Days in `campaign_days` and days without sessions are
    left out of the fit. None when too few days remain to fit the model.
    """
    import statsmodels.api as sm

    training = untreated[(untreated.sessions > 0) & ~untreated.index.isin(campaign_days)]
    x = design.matrix(pd.DatetimeIndex(training.index))
    if len(training) < 2 * x.shape[1] or training[outcome].sum() <= 0:
        return None
    result = sm.GLM(
        training[outcome].to_numpy(dtype=float),
        x,
        family=sm.families.Poisson(),
        offset=np.log(training.sessions.to_numpy(dtype=float)),
    ).fit(scale="X2")
    return RateModel(design, result.params, result.cov_params(), len(training))


def log_ratio_interval(
    observed: float, observed_log_var: float, expected: float, expected_var: float, z: float
) -> tuple[float, float, float]:
    """observed / expected - 1 and its interval, from independent log-scale variances."""
    if expected <= 0:
        return np.nan, np.nan, np.nan
    ratio = observed / expected
    spread = z * np.sqrt(observed_log_var + expected_var / expected**2)
    centre = np.log(max(ratio, 1e-12))
    return ratio - 1, float(np.exp(centre - spread) - 1), float(np.exp(centre + spread) - 1)


def campaign_lifts(
    campaigns: pd.DataFrame,
    campaign_days: pd.DataFrame,
    untreated: pd.DataFrame,
    *,
    as_of_date,
    knot_days: int,
    yearly_harmonics: int,
    confidence_level: float,
) -> pd.DataFrame:
    """Each campaign's conversion and revenue lift against the seasonal counterfactual.

    In: `campaigns` (campaign_id, name, channel, start_date, end_date), started by the as-of
    date; `campaign_days` (campaign_id, activity_date, sessions, orders, revenue,
    revenue_squared) of the sessions carrying each id; `untreated` indexed by every day from
    the first session to the as-of date, with sessions, orders and revenue of the sessions
    carrying no id. Out: one row per campaign (columns in CAMPAIGN_LIFT_COLUMNS order).
    """
    z = float(norm.ppf(0.5 + confidence_level / 2))
    days = pd.DatetimeIndex(untreated.index)
    windows = {
        row.campaign_id: pd.date_range(row.start_date, min(row.end_date, as_of_date), freq="D")
        for row in campaigns.itertuples()
    }
    all_window_days = (
        pd.DatetimeIndex(np.concatenate([w.to_numpy() for w in windows.values()]))
        if windows
        else pd.DatetimeIndex([])
    )
    span_days = (days[-1] - days[0]).days + 1 if len(days) else 0
    design = SeasonalDesign(
        first_day=days[0] if len(days) else pd.Timestamp(as_of_date),
        last_day=days[-1] if len(days) else pd.Timestamp(as_of_date),
        knot_days=knot_days,
        yearly_harmonics=yearly_harmonics if span_days > 2 * 364 else 0,
    )
    orders_model = fit_rate_model(untreated, "orders", all_window_days, design)
    revenue_model = fit_rate_model(untreated, "revenue", all_window_days, design)
    by_campaign = {
        campaign_id: frame.set_index(pd.DatetimeIndex(frame.activity_date))
        for campaign_id, frame in campaign_days.groupby("campaign_id")
    }
    rows = []
    for row in campaigns.itertuples():
        window = windows[row.campaign_id]
        carried = by_campaign.get(row.campaign_id, pd.DataFrame())
        carried = carried.reindex(window, fill_value=0) if len(carried) else None
        sessions = int(carried.sessions.sum()) if carried is not None else 0
        orders = int(carried.orders.sum()) if carried is not None else 0
        revenue = float(carried.revenue.sum()) if carried is not None else 0.0
        record = {
            "campaign_id": row.campaign_id,
            "campaign_name": row.name,
            "channel": row.channel,
            "start_date": row.start_date,
            "end_date": row.end_date,
            "days_observed": len(window),
            "is_complete": row.end_date <= as_of_date,
            "sessions": sessions,
            "orders": orders,
            "revenue": revenue,
            "conversion_rate": orders / sessions if sessions else np.nan,
            "revenue_per_session": revenue / sessions if sessions else np.nan,
        }
        record.update(_counterfactual(carried, orders_model, revenue_model, z))
        record.update(_concurrent(carried, untreated.reindex(window, fill_value=0), z))
        record.update(
            confidence_level=confidence_level,
            baseline_training_days=orders_model.training_days if orders_model else 0,
        )
        rows.append(record)
    return pd.DataFrame(rows, columns=CAMPAIGN_LIFT_COLUMNS)


# What the seasonal baseline gives a campaign: its counterfactual and the lifts against it.
COUNTERFACTUAL_COLUMNS = [
    "baseline_conversion_rate",
    "expected_orders",
    "incremental_orders",
    "conversion_lift",
    "conversion_lift_lower",
    "conversion_lift_upper",
    "baseline_revenue_per_session",
    "expected_revenue",
    "incremental_revenue",
    "revenue_lift",
    "revenue_lift_lower",
    "revenue_lift_upper",
]


def _counterfactual(carried, orders_model, revenue_model, z) -> dict:
    empty = dict.fromkeys(COUNTERFACTUAL_COLUMNS, np.nan)
    if carried is None or carried.sessions.sum() == 0 or orders_model is None:
        return empty
    days = pd.DatetimeIndex(carried.index)
    sessions = carried.sessions.to_numpy(dtype=float)
    n, orders = sessions.sum(), float(carried.orders.sum())
    expected, expected_var = orders_model.expected_total(days, sessions)
    # binomial variance of log(orders); half an order stands in for none
    orders_log_var = (1 - orders / n) / max(orders, 0.5)
    lift, lower, upper = log_ratio_interval(orders, orders_log_var, expected, expected_var, z)
    result = {
        **empty,
        "baseline_conversion_rate": expected / n,
        "expected_orders": expected,
        "incremental_orders": orders - expected,
        "conversion_lift": lift,
        "conversion_lift_lower": lower,
        "conversion_lift_upper": upper,
    }
    if revenue_model is not None:
        revenue = float(carried.revenue.sum())
        expected_revenue, expected_revenue_var = revenue_model.expected_total(days, sessions)
        square_sum = float(carried.revenue_squared.sum())
        per_session_var = max(square_sum - revenue**2 / n, 0.0) / max(n - 1, 1)
        revenue_log_var = n * per_session_var / revenue**2 if revenue > 0 else np.inf
        lift, lower, upper = log_ratio_interval(
            revenue, revenue_log_var, expected_revenue, expected_revenue_var, z
        )
        result.update(
            baseline_revenue_per_session=expected_revenue / n,
            expected_revenue=expected_revenue,
            incremental_revenue=revenue - expected_revenue,
            revenue_lift=lift,
            revenue_lift_lower=lower if revenue > 0 else np.nan,
            revenue_lift_upper=upper if revenue > 0 else np.nan,
        )
    return result


def _concurrent(carried, untreated_window: pd.DataFrame, z) -> dict:
    """Campaign sessions against the untreated sessions of the same days (Katz log ratio)."""
    control_sessions = int(untreated_window.sessions.sum())
    control_orders = int(untreated_window.orders.sum())
    result = {
        "concurrent_sessions": control_sessions,
        "concurrent_conversion_rate": control_orders / control_sessions
        if control_sessions
        else np.nan,
        "concurrent_conversion_lift": np.nan,
        "concurrent_conversion_lift_lower": np.nan,
        "concurrent_conversion_lift_upper": np.nan,
    }
    if carried is None or carried.orders.sum() == 0 or control_orders == 0:
        return result
    n_t, o_t = float(carried.sessions.sum()), float(carried.orders.sum())
    n_c, o_c = float(control_sessions), float(control_orders)
    ratio = (o_t / n_t) / (o_c / n_c)
    spread = z * np.sqrt(1 / o_t - 1 / n_t + 1 / o_c - 1 / n_c)
    result.update(
        concurrent_conversion_lift=ratio - 1,
        concurrent_conversion_lift_lower=float(ratio * np.exp(-spread) - 1),
        concurrent_conversion_lift_upper=float(ratio * np.exp(spread) - 1),
    )
    return result


CAMPAIGN_LIFT_COLUMNS = [
    "campaign_id",
    "campaign_name",
    "channel",
    "start_date",
    "end_date",
    "days_observed",
    "is_complete",
    "sessions",
    "orders",
    "revenue",
    "conversion_rate",
    "revenue_per_session",
    *COUNTERFACTUAL_COLUMNS,
    "concurrent_sessions",
    "concurrent_conversion_rate",
    "concurrent_conversion_lift",
    "concurrent_conversion_lift_lower",
    "concurrent_conversion_lift_upper",
    "confidence_level",
    "baseline_training_days",
]
