"""Refreshing the analytics marts for one as-of date, one function per DAG task.

Each function takes an open connection (the caller commits) and the as-of date, reads only
data up to the end of that date, and replaces that date's rows of its marts. It returns the
row count written per mart.
"""

from __future__ import annotations

from datetime import date

from ecom_insights.analytics.models import (
    fetch_frame,
    materialize,
    materialize_with_parameters,
    refresh_sql_mart,
    write_mart,
)
from ecom_insights.analytics.params import DEFAULT_PARAMS, AnalyticsParams

PRODUCT_MARTS = (
    "product_funnel",
    "funnel_leakage",
    "cross_sell_rules",
    "cross_sell_recommendations",  # reads cross_sell_rules: after it
)
COHORT_MARTS = ("cohort_aov", "cohort_retention")
# PostgreSQL's per-operation memory for the product marts' transaction (the default, 4 MB,
# sends the pair count of a real shop's baskets to disk sorts many times slower)
RULE_MINING_WORK_MEM = "256MB"

_DECOMPOSITION = {
    f"{metric}_{component}": "double precision"
    for metric in ("sessions", "orders", "revenue")
    for component in ("trend", "weekly_factor", "yearly_factor", "residual_factor")
}
DEMAND_TRENDS_COLUMNS = {
    "as_of_date": "date not null",
    "grain": "text not null",
    "period_start": "date not null",
    "period_end": "date not null",
    "is_partial_period": "boolean not null",
    "sessions": "bigint not null",
    "orders": "bigint not null",
    "revenue": "numeric(16,2) not null",
    "conversion_rate": "double precision",
    "average_order_value": "double precision",
    **_DECOMPOSITION,
}
SEASONALITY_PROFILE_COLUMNS = {
    "as_of_date": "date not null",
    "metric": "text not null",
    "period": "text not null",
    "position": "integer not null",
    "label": "text not null",
    "seasonal_factor": "double precision not null",
    "peak_rank": "integer not null",
    "is_peak": "boolean not null",
    "history_start": "date not null",
    "history_end": "date not null",
}
SEASONALITY_SHIFT_COLUMNS = {
    "as_of_date": "date not null",
    "metric": "text not null",
    "period": "text not null",
    "status": "text not null",
    "shift_detected": "boolean",
    "profile_correlation": "double precision",
    "min_profile_correlation": "double precision not null",
    "mean_absolute_change": "double precision",
    "reference_peak": "text",
    "recent_peak": "text",
    "reference_start": "date",
    "reference_end": "date",
    "recent_start": "date",
    "recent_end": "date",
}
# Columns of campaign_lift that are not double precision.
CAMPAIGN_LIFT_TYPES = {
    "campaign_id": "text not null",
    "campaign_name": "text",
    "channel": "text",
    "start_date": "date not null",
    "end_date": "date not null",
    "days_observed": "integer not null",
    "is_complete": "boolean not null",
    "sessions": "bigint not null",
    "orders": "bigint not null",
    "revenue": "numeric(16,2) not null",
    "confidence_level": "double precision not null",
    "baseline_training_days": "integer not null",
}


def funnel_source(conn, as_of_date: date) -> str:
    """'events' when core.events has an event up to the end of the as-of date, else 'sessions'."""
    with conn.cursor() as cur:
        cur.execute(
            "select exists (select 1 from core.events where event_time < %s::date + 1)",
            (as_of_date,),
        )
        return "events" if cur.fetchone()[0] else "sessions"


def refresh_product_marts(
    conn, as_of_date: date, params: AnalyticsParams = DEFAULT_PARAMS
) -> dict[str, int]:
    """product_funnel, funnel_leakage, cross_sell_rules and cross_sell_recommendations."""
    bound = params.sql_parameters(as_of_date)
    materialize(
        conn,
        "int_product_funnel_sessions",
        window_start=min(bound["funnel_start"], bound["leakage_start"], bound["cross_sell_start"]),
        as_of_date=as_of_date,
        funnel_source=funnel_source(conn, as_of_date),
    )
    materialize_with_parameters(conn, "int_cross_sell_basket_items", bound)
    with conn.cursor() as cur:
        # the pair count of rule mining is one large aggregation: let it hash in memory
        cur.execute("set local work_mem = %s", (RULE_MINING_WORK_MEM,))
    return {name: refresh_sql_mart(conn, name, bound) for name in PRODUCT_MARTS}


def refresh_cohort_marts(
    conn, as_of_date: date, params: AnalyticsParams = DEFAULT_PARAMS
) -> dict[str, int]:
    """cohort_aov and cohort_retention."""
    bound = params.sql_parameters(as_of_date)
    materialize(conn, "int_cohort_customer_days", window_start=None, as_of_date=as_of_date)
    return {name: refresh_sql_mart(conn, name, bound) for name in COHORT_MARTS}


def daily_demand(conn, as_of_date: date):
    """Sessions, orders and revenue per day from the first session to the as-of date (every
    day, zeros where nothing happened), in total and for the untreated sessions."""
    import pandas as pd

    materialize(conn, "int_demand_trends_days", window_start=None, as_of_date=as_of_date)
    frame = fetch_frame(conn, "select * from int_demand_trends_days order by activity_date", {})
    if frame.empty:
        return frame
    frame = frame.set_index(pd.DatetimeIndex(frame.pop("activity_date")))
    days = pd.date_range(frame.index.min(), pd.Timestamp(as_of_date), freq="D")
    frame = frame.reindex(days, fill_value=0).astype(float)
    frame["untreated_sessions"] = frame.sessions - frame.campaign_sessions
    frame["untreated_orders"] = frame.orders - frame.campaign_orders
    frame["untreated_revenue"] = frame.revenue - frame.campaign_revenue
    return frame


def refresh_demand_marts(
    conn, as_of_date: date, params: AnalyticsParams = DEFAULT_PARAMS
) -> dict[str, int]:
    """demand_trends, seasonality_profile and seasonality_shift."""
    from ecom_insights.analytics.demand import (
        as_rows,
        demand_profiles,
        demand_shift_signals,
        demand_trends,
    )

    daily = daily_demand(conn, as_of_date)
    written = {}
    if daily.empty:
        trends = profile = shift = None
    else:
        trends, components = demand_trends(daily, as_of_date, params)
        profile = demand_profiles(components)
        profile["history_start"] = daily.index[0].date()
        profile["history_end"] = as_of_date
        shift = demand_shift_signals(daily, components, params)
    for name, frame, columns in (
        ("demand_trends", trends, DEMAND_TRENDS_COLUMNS),
        ("seasonality_profile", profile, SEASONALITY_PROFILE_COLUMNS),
        ("seasonality_shift", shift, SEASONALITY_SHIFT_COLUMNS),
    ):
        rows = [] if frame is None else as_rows(frame, list(columns)[1:], as_of_date)
        written[name] = write_mart(conn, name, columns, rows, as_of_date)
    return written


def refresh_campaign_lift(
    conn, as_of_date: date, params: AnalyticsParams = DEFAULT_PARAMS
) -> dict[str, int]:
    """campaign_lift: every campaign started by the as-of date."""
    import pandas as pd

    from ecom_insights.analytics.campaigns import CAMPAIGN_LIFT_COLUMNS, campaign_lifts
    from ecom_insights.analytics.demand import as_rows

    columns = {
        "as_of_date": "date not null",
        **{
            name: CAMPAIGN_LIFT_TYPES.get(name, "double precision")
            for name in CAMPAIGN_LIFT_COLUMNS
        },
    }
    campaigns = fetch_frame(
        conn,
        "select campaign_id, name, channel, start_date, end_date from core.campaigns "
        "where start_date <= %(as_of_date)s order by start_date, campaign_id",
        {"as_of_date": as_of_date},
    )
    daily = daily_demand(conn, as_of_date)
    rows = []
    if not campaigns.empty and not daily.empty:
        materialize(conn, "int_campaign_lift_days", window_start=None, as_of_date=as_of_date)
        campaign_days = fetch_frame(conn, "select * from int_campaign_lift_days", {})
        for column in ("sessions", "orders", "revenue", "revenue_squared"):
            campaign_days[column] = campaign_days[column].astype(float)
        untreated = pd.DataFrame(
            {
                "sessions": daily.untreated_sessions,
                "orders": daily.untreated_orders,
                "revenue": daily.untreated_revenue,
            }
        )
        lifts = campaign_lifts(
            campaigns,
            campaign_days,
            untreated,
            as_of_date=as_of_date,
            knot_days=params.baseline_trend_knot_days,
            yearly_harmonics=params.baseline_yearly_harmonics,
            confidence_level=params.confidence_level,
        )
        rows = as_rows(lifts, CAMPAIGN_LIFT_COLUMNS, as_of_date)
    return {"campaign_lift": write_mart(conn, "campaign_lift", columns, rows, as_of_date)}
