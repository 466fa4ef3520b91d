"""Trend and seasonality of daily demand: MSTL decomposition, named peaks, and the shift signal.

Demand is multiplicative (a busy Saturday in December is busy twice over), so each daily series
is decomposed on the log scale with statsmodels' MSTL (Bandara, Hyndman and Bergmeir, 2021:
STL iterated over several periods) and the components are returned as factors:

    value + 1  =  trend  x  weekly factor  x  yearly factor  x  residual factor

A seasonal period is fitted only when the series is longer than two full cycles of it (MSTL's
own rule: more than 14 days for the week, more than 728 for a year of 52 weeks); otherwise its
factor is missing, never guessed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

WEEKDAY_LABELS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTH_LABELS = (
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
)  # fmt: skip


@dataclass(frozen=True)
class Periods:
    weekly: int = 7
    # 52 weeks: a year that holds whole weeks, so that two years of daily data (730 days) are
    # more than the two cycles MSTL needs
    yearly: int = 364


def fill_days(daily: pd.DataFrame, first_day, last_day, columns) -> pd.DataFrame:
    """`daily` (indexed by date) on every day from first_day to last_day, missing days as 0."""
    days = pd.date_range(first_day, last_day, freq="D")
    frame = daily.copy()
    frame.index = pd.DatetimeIndex(frame.index)
    return frame.reindex(days, fill_value=0)[list(columns)].astype(float)


def decompose(series: pd.Series, periods: Periods = Periods()) -> pd.DataFrame:
    """MSTL of log(series + 1) for a daily series indexed by date, as multiplicative factors.

    Columns out: trend (on the series' scale, minus the 1), weekly_factor, yearly_factor,
    residual_factor; a factor is NaN when the series is not longer than two cycles of its
    period.
    """
    from statsmodels.tsa.seasonal import MSTL, STL

    out = pd.DataFrame(
        np.nan,
        index=series.index,
        columns=["trend", "weekly_factor", "yearly_factor", "residual_factor"],
    )
    fitted = [p for p in (periods.weekly, periods.yearly) if len(series) > 2 * p]
    if not fitted:
        return out
    logged = np.log1p(series.to_numpy(dtype=float))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MSTL warns about nothing we act on
        if len(fitted) == 1:
            result = STL(logged, period=fitted[0], robust=True).fit()
            seasonal = {fitted[0]: result.seasonal}
        else:
            result = MSTL(logged, periods=fitted, stl_kwargs={"robust": True}).fit()
            seasonal = {p: result.seasonal[:, k] for k, p in enumerate(fitted)}
    out["trend"] = np.expm1(result.trend)
    out["residual_factor"] = np.exp(result.resid)
    if periods.weekly in seasonal:
        out["weekly_factor"] = np.exp(seasonal[periods.weekly])
    if periods.yearly in seasonal:
        out["yearly_factor"] = np.exp(seasonal[periods.yearly])
    return out


def _log_profile(factors: pd.Series, period: str) -> pd.Series:
    """Mean log factor per weekday (1..7) or per month (1..12) of a daily factor series."""
    index = pd.DatetimeIndex(factors.index)
    keys = index.dayofweek + 1 if period == "weekly" else index.month
    return np.log(factors).groupby(keys).mean()


def seasonal_profile(components: pd.DataFrame) -> pd.DataFrame:
    """The weekly and yearly profiles of a decomposition, each position's factor and rank.

    Columns out: period (weekly | yearly), position (ISO weekday 1-7 or month 1-12), label,
    seasonal_factor (geometric mean of the daily factors there), peak_rank (1 = the highest),
    is_peak. A period that was not fitted has no rows.
    """
    rows = []
    for period, column, labels in (
        ("weekly", "weekly_factor", WEEKDAY_LABELS),
        ("yearly", "yearly_factor", MONTH_LABELS),
    ):
        factors = components[column].dropna()
        if factors.empty:
            continue
        profile = np.exp(_log_profile(factors, period))
        ranks = profile.rank(ascending=False, method="first").astype(int)
        for position, factor in profile.items():
            rows.append(
                {
                    "period": period,
                    "position": int(position),
                    "label": labels[int(position) - 1],
                    "seasonal_factor": float(factor),
                    "peak_rank": int(ranks[position]),
                    "is_peak": bool(ranks[position] == 1),
                }
            )
    return pd.DataFrame(
        rows, columns=["period", "position", "label", "seasonal_factor", "peak_rank", "is_peak"]
    )


def seasonality_shift(
    series: pd.Series,
    components: pd.DataFrame,
    *,
    period: str,
    recent_days: int,
    reference_days: int,
    min_correlation: float,
    periods: Periods = Periods(),
) -> dict:
    """Whether the recent seasonal profile still matches the one learnt before it.

    The reference model is the decomposition of `series` up to the recent window (the last
    `recent_days` days): its profile over its own last `reference_days` days is what a model
    trained then would expect. The recent profile comes from `components`, the decomposition
    of the whole series. A profile is the mean log factor per weekday or month; the signal is
    the Pearson correlation of the two profiles, and a shift is flagged when it falls below
    `min_correlation`. Without enough history to fit both (more than two cycles before the
    recent window), status is insufficient_history and nothing is flagged.
    Keys out: period, reference_start, reference_end, recent_start, recent_end,
    reference_peak, recent_peak, profile_correlation, mean_absolute_change (mean absolute
    difference of the profiles' logs, about a relative change), shift_detected, status.
    """
    column = f"{period}_factor"
    index = pd.DatetimeIndex(series.index)
    signal = {
        "period": period,
        "reference_start": None,
        "reference_end": None,
        "recent_start": None,
        "recent_end": index[-1].date() if len(index) else None,
        "reference_peak": None,
        "recent_peak": None,
        "profile_correlation": None,
        "mean_absolute_change": None,
        "shift_detected": None,
        "status": "insufficient_history",
    }
    if len(series) <= recent_days:
        return signal
    reference_factors = decompose(series.iloc[:-recent_days], periods)[column].dropna()
    recent_factors = components[column].iloc[-recent_days:].dropna()
    if len(reference_factors) < reference_days or len(recent_factors) < recent_days:
        return signal
    reference_factors = reference_factors.iloc[-reference_days:]
    reference_profile = _log_profile(reference_factors, period)
    recent_profile = _log_profile(recent_factors, period)
    positions = recent_profile.index.intersection(reference_profile.index)
    reference_profile = reference_profile[positions]
    recent_profile = recent_profile[positions]
    labels = WEEKDAY_LABELS if period == "weekly" else MONTH_LABELS
    correlation = float(np.corrcoef(recent_profile, reference_profile)[0, 1])
    shifted = bool(correlation < min_correlation)
    signal.update(
        reference_start=reference_factors.index[0].date(),
        reference_end=reference_factors.index[-1].date(),
        recent_start=recent_factors.index[0].date(),
        reference_peak=labels[int(reference_profile.idxmax()) - 1],
        recent_peak=labels[int(recent_profile.idxmax()) - 1],
        profile_correlation=correlation,
        mean_absolute_change=float((recent_profile - reference_profile).abs().mean()),
        shift_detected=shifted,
        status="shift" if shifted else "stable",
    )
    return signal
