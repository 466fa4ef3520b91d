"""The demand marts from the daily series: trends by day, week and month with the daily
decomposition, the named seasonal peaks, and the seasonality-shift signal.

Pure functions: a frame of daily sessions, orders and revenue in, mart rows out.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from ecom_insights.analytics.params import AnalyticsParams
from ecom_insights.analytics.seasonality import (
    Periods,
    decompose,
    seasonal_profile,
    seasonality_shift,
)

METRICS = ("sessions", "orders", "revenue")
# The shift signal watches volume; revenue per day is too heavy-tailed for a monthly profile
# of a small shop to be stable (docs/analytics.md).
SHIFT_METRICS = ("sessions", "orders")
COMPONENTS = ("trend", "weekly_factor", "yearly_factor", "residual_factor")


def _periods(params: AnalyticsParams) -> Periods:
    return Periods(weekly=params.weekly_period_days, yearly=params.yearly_period_days)


def _aggregate(daily: pd.DataFrame, grain: str, as_of_date: date) -> pd.DataFrame:
    index = pd.DatetimeIndex(daily.index)
    if grain == "day":
        starts, ends = index, index
    elif grain == "week":
        starts = index - pd.to_timedelta(index.dayofweek, unit="D")
        ends = starts + pd.Timedelta(days=6)
    else:
        starts = index.to_period("M").to_timestamp()
        ends = starts + pd.offsets.MonthEnd(0)
    frame = daily[list(METRICS)].groupby(starts).sum()
    frame.index.name = "period_start"
    frame["period_end"] = pd.Series(ends, index=starts).groupby(level=0).first()
    frame = frame.reset_index()
    frame.insert(0, "grain", grain)
    first_day = index.min()
    frame["is_partial_period"] = (frame.period_start < first_day) | (
        frame.period_end > pd.Timestamp(as_of_date)
    )
    frame["conversion_rate"] = frame.orders / frame.sessions.where(frame.sessions > 0)
    frame["average_order_value"] = frame.revenue / frame.orders.where(frame.orders > 0)
    return frame


def demand_trends(daily: pd.DataFrame, as_of_date: date, params: AnalyticsParams):
    """Trend rows and the decompositions of each metric.

    In: `daily` indexed by every day from the first session to the as-of date, with sessions,
    orders and revenue. Out: (rows, components) where rows has one row per day, ISO week and
    calendar month (grain, period_start, period_end, is_partial_period, the metrics,
    conversion_rate, average_order_value, and for day rows <metric>_<component> for each
    metric and decomposition component) and components maps each metric to its decomposition.
    """
    periods = _periods(params)
    components = {m: decompose(daily[m], periods) for m in METRICS}
    frames = [_aggregate(daily, grain, as_of_date) for grain in ("day", "week", "month")]
    day_rows = frames[0]
    for metric, parts in components.items():
        for component in COMPONENTS:
            day_rows[f"{metric}_{component}"] = parts[component].to_numpy()
    rows = pd.concat(frames, ignore_index=True)
    return rows, components


def demand_profiles(components: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The weekly and yearly seasonal profile of each metric, peaks ranked (metric first)."""
    profiles = [
        seasonal_profile(parts).assign(metric=metric) for metric, parts in components.items()
    ]
    frame = pd.concat(profiles, ignore_index=True) if profiles else pd.DataFrame()
    return frame[["metric", *[c for c in frame.columns if c != "metric"]]]


def demand_shift_signals(
    daily: pd.DataFrame, components: dict[str, pd.DataFrame], params: AnalyticsParams
) -> pd.DataFrame:
    """The seasonality-shift signal of SHIFT_METRICS, weekly and yearly (metric first)."""
    windows = {
        "weekly": (params.shift_weekly_recent_days, params.shift_weekly_reference_days),
        "yearly": (params.shift_yearly_recent_days, params.shift_yearly_reference_days),
    }
    rows = []
    for metric in SHIFT_METRICS:
        for period, (recent_days, reference_days) in windows.items():
            signal = seasonality_shift(
                daily[metric],
                components[metric],
                period=period,
                recent_days=recent_days,
                reference_days=reference_days,
                min_correlation=params.shift_min_profile_correlation,
                periods=_periods(params),
            )
            rows.append({"metric": metric, **signal})
    frame = pd.DataFrame(rows)
    frame["min_profile_correlation"] = params.shift_min_profile_correlation
    return frame


def as_rows(frame: pd.DataFrame, columns, as_of_date: date) -> list[tuple]:
    """Tuples for the database: as_of_date first, NaN and NaT as NULL, numpy as Python."""
    out = frame.reindex(columns=list(columns)).astype(object)
    out = out.where(pd.notna(out), None)
    records = []
    for values in out.itertuples(index=False):
        records.append((as_of_date, *(_plain(v) for v in values)))
    return records


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.date()
    return value
