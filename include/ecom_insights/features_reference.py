"""marts.customer_features recomputed from the input files, independently of the warehouse.

Two implementations that share no code with include/sql, each over the contract's CSV files
(customers.csv and sessions.csv; products.csv and events.csv when present):

- `compute_features`: plain pandas, as a data scientist would write it in a notebook;
- `compute_features_duckdb`: DuckDB SQL straight over the files.

They are the oracle of tests/integration/test_features_reference.py and the pandas and DuckDB
sides of `make bench`. docs/features.md defines every column; the rules both follow:

- D is the as-of date; a session or an event belongs to the day it started or happened on,
  and only days up to D count. A trailing window of n days is (D - n, D].
- A purchase is a session with purchase_made true; its money is purchase_amount.
- An optional column or file that is absent gives the features it feeds as NULL, not 0.
- Ratios and averages are computed from integer totals (counts, cents, microseconds) and
  rounded half away from zero, as PostgreSQL's round(numeric) does; a tie in a mode goes to
  the smallest value (text: in byte order, PostgreSQL's "C" collation).

Output: one row per customer signed up on or before D, ordered by customer_id, with the
columns and dtypes of FEATURE_COLUMNS. The mart's numeric columns are floats here: each is
the double nearest to the mart's exact decimal, so the two compare equal after float().

The files are read as written: ingestion's row rules are not applied, so a file with rows
that ingestion would quarantine gives other results than the mart. Money is taken to have at
most 2 decimals and browsing_time_sec at most 6 (the generator writes 2 and 0).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from ecom_insights.ingest import FALSE_WORDS, TRUE_WORDS

# The mart's columns in its order, with the dtype each has here: Int64 (nullable) where the
# mart's integer can be NULL, NaN for a NULL float, None for a NULL text, NaT for a NULL date.
FEATURE_COLUMNS: dict[str, str] = {
    # ids
    "customer_id": "object",
    "as_of_date": "datetime64[ns]",
    # tenure
    "days_since_signup": "int64",
    # recency
    "last_purchase_date": "datetime64[ns]",
    "recency_days": "Int64",
    "recency_bucket": "object",
    "last_session_date": "datetime64[ns]",
    "days_since_last_session": "Int64",
    # frequency and money
    "frequency": "int64",
    "monetary": "float64",
    "avg_order_value": "float64",
    "sessions_count": "int64",
    "avg_session_duration_sec": "float64",
    "purchase_rate": "float64",
    # trailing windows
    "sessions_last_7d": "int64",
    "sessions_last_30d": "int64",
    "sessions_last_90d": "int64",
    "purchases_last_7d": "int64",
    "purchases_last_30d": "int64",
    "purchases_last_90d": "int64",
    "monetary_last_30d": "float64",
    "cltv_proxy_365d": "float64",
    "sessions_prev_90d": "int64",
    "monetary_prev_90d": "float64",
    # trends
    "sessions_trend_30d": "float64",
    "monetary_trend_30d": "float64",
    # engagement
    "avg_pages_per_session": "float64",
    "product_views_per_session": "float64",
    "add_to_cart_rate": "float64",
    "discount_usage_share": "float64",
    # categories
    "categories_viewed": "Int64",
    "top_category": "object",
    "favourite_category": "object",
    # habits
    "favourite_hour": "Int64",
    "favourite_weekday": "Int64",
    "weekend_session_share": "float64",
    # calendar of the as-of date
    "as_of_month": "int64",
    "as_of_quarter": "int64",
    "is_holiday_season": "bool",
    "season": "object",
}

# Windows in days, each (D - n, D]; the trend compares the last 30 days with the 90 before.
TRAILING_WINDOWS_DAYS = (7, 30, 90)
CLTV_WINDOW_DAYS = 365
TREND_RECENT_DAYS = 30
TREND_BASELINE_DAYS = 90  # (D - 120, D - 30]
# Upper bounds (inclusive) of the recency buckets, in days since the last purchase.
RECENCY_BUCKETS = ((7, "0-7"), (30, "8-30"), (90, "31-90"), (180, "91-180"), (365, "181-365"))
HOLIDAY_MONTHS = (11, 12)
SEASONS = {12: "winter", 1: "winter", 2: "winter", 3: "spring", 4: "spring", 5: "spring"}
SEASONS |= {6: "summer", 7: "summer", 8: "summer", 9: "autumn", 10: "autumn", 11: "autumn"}

# Decimal places of the rounded averages and ratios (as the mart's round(..., n)).
RATE_PLACES = 4
MONEY_PLACES = 2
MICROS = 1_000_000  # browsing_time_sec is summed in microseconds, exactly

SESSION_COLUMNS = [
    "customer_id",
    "session_date",
    "product_viewed",
    "browsing_time_sec",
    "purchase_made",
    "purchase_amount",
    # optional
    "pages_viewed",
    "added_to_cart",
    "discount_amount",
]
EVENT_COLUMNS = ["session_id", "customer_id", "event_time", "event_type"]


# --- pandas -------------------------------------------------------------------------------


def compute_features(data_dir: Path, as_of: date) -> pd.DataFrame:
    """marts.customer_features at `as_of`, in pandas, from the CSV files in `data_dir`."""
    data_dir = Path(data_dir)
    day = pd.Timestamp(as_of)

    customers = _read_csv(data_dir / "customers.csv", ["customer_id", "signup_date"])
    customers["signup_date"] = _timestamps(customers["signup_date"]).dt.normalize()
    customers = customers[customers["signup_date"] <= day]
    customers = customers.sort_values("customer_id", ignore_index=True)

    sessions = _read_csv(data_dir / "sessions.csv", SESSION_COLUMNS)
    started_at = _timestamps(sessions.pop("session_date"))
    sessions["session_date"] = started_at.dt.normalize()
    sessions["hour"] = started_at.dt.hour
    sessions["weekday"] = started_at.dt.dayofweek + 1  # ISO: 1 = Monday ... 7 = Sunday
    del started_at
    # group by the customer's row number in `customers` (-1: signed up after D, or unknown)
    sessions["customer"] = _row_of(sessions.pop("customer_id"), customers["customer_id"])
    sessions = sessions[(sessions["session_date"] <= day) & (sessions["customer"] >= 0)]

    products_csv = data_dir / "products.csv"
    if products_csv.exists():
        products = _read_csv(products_csv, ["product_id", "category"])
        category_of = products.set_index("product_id")["category"]
        sessions["category"] = sessions["product_viewed"].map(category_of)
    else:
        sessions["category"] = None

    purchase = _flags(sessions["purchase_made"]).fillna(False).astype(bool)
    amount_cents = _cents(sessions["purchase_amount"].fillna(0))  # empty: 0, as in core
    spend_cents = amount_cents.where(purchase, 0)
    days_ago = (day - sessions["session_date"]).dt.days  # 0 = D itself
    recent = days_ago < TREND_RECENT_DAYS
    baseline = ~recent & (days_ago < TREND_RECENT_DAYS + TREND_BASELINE_DAYS)

    per_session = pd.DataFrame(
        {
            "customer": sessions["customer"],
            "sessions_count": 1,
            "frequency": purchase,
            "monetary_cents": spend_cents,
            "monetary_last_30d_cents": spend_cents.where(recent, 0),
            "cltv_cents": spend_cents.where(days_ago < CLTV_WINDOW_DAYS, 0),
            "sessions_prev_90d": baseline,
            "monetary_prev_90d_cents": spend_cents.where(baseline, 0),
            "weekend_sessions": sessions["weekday"] >= 6,
        }
    )
    for n in TRAILING_WINDOWS_DAYS:
        per_session[f"sessions_last_{n}d"] = days_ago < n
        per_session[f"purchases_last_{n}d"] = purchase & (days_ago < n)
    # optional columns: a total and the number of sessions that have the value
    if "browsing_time_sec" in sessions:
        browsing = sessions["browsing_time_sec"]
        per_session["browsing_micros"] = (browsing.fillna(0) * MICROS).round().astype("int64")
        per_session["browsing_known"] = browsing.notna()
    if "pages_viewed" in sessions:
        per_session["pages"] = sessions["pages_viewed"].fillna(0).astype("int64")
        per_session["pages_known"] = sessions["pages_viewed"].notna()
    if "added_to_cart" in sessions:
        cart_flag = _flags(sessions["added_to_cart"])
        per_session["cart_flags"] = cart_flag.fillna(False).astype(bool)
        per_session["cart_flags_known"] = cart_flag.notna()
    if "discount_amount" in sessions:
        discount = sessions["discount_amount"]
        per_session["purchases_discount_known"] = purchase & discount.notna()
        per_session["purchases_with_discount"] = purchase & (discount > 0)

    # one row per customer, in the order of `customers`; NA where a customer has no sessions
    rows = customers.index
    totals = per_session.groupby("customer").sum().reindex(rows).astype("Int64")
    by_customer = sessions.groupby("customer")
    totals["last_session_date"] = by_customer["session_date"].max()
    totals["last_purchase_date"] = sessions[purchase].groupby("customer")["session_date"].max()
    totals["categories_viewed"] = by_customer["category"].nunique()
    totals["top_category"] = _most_frequent(sessions["customer"], sessions["category"])
    totals["favourite_category"] = _most_frequent(
        sessions.loc[purchase, "customer"], sessions.loc[purchase, "category"]
    )
    totals["favourite_hour"] = _most_frequent(sessions["customer"], sessions["hour"])
    totals["favourite_weekday"] = _most_frequent(sessions["customer"], sessions["weekday"])
    del sessions, per_session, by_customer

    events_csv = data_dir / "events.csv"
    if events_csv.exists():
        # the largest file (about 2.7 events a session): its text stays in Arrow (as Python
        # strings it would take several times the memory), and it is filtered by masks,
        # never copied whole
        events = _read_csv(events_csv, EVENT_COLUMNS, dtype_backend="pyarrow")
        # an event counts for the customer_id it carries, on the day it happened
        events["customer"] = _row_of(events.pop("customer_id"), customers["customer_id"])
        counted = (_timestamps(events.pop("event_time")).dt.normalize() <= day) & (
            events["customer"] >= 0
        )
        totals["events"] = events.loc[counted, "customer"].value_counts()
        views = counted & (events["event_type"] == "view")
        totals["view_events"] = events.loc[views, "customer"].value_counts()
        carts = counted & (events["event_type"] == "cart")
        cart_sessions = events.loc[carts, ["customer", "session_id"]].drop_duplicates()
        totals["sessions_with_cart_event"] = cart_sessions["customer"].value_counts()
        del events, counted, views, carts, cart_sessions
    has_events = totals.get("events", pd.Series(0, index=rows)).fillna(0) > 0

    out = pd.DataFrame({"customer_id": customers["customer_id"], "as_of_date": day})
    out["days_since_signup"] = (day - customers["signup_date"]).dt.days
    # recency
    out["last_purchase_date"] = totals["last_purchase_date"]
    out["recency_days"] = (day - totals["last_purchase_date"]).dt.days.astype("Int64")
    out["recency_bucket"] = out["recency_days"].map(_recency_bucket, na_action="ignore")
    out["recency_bucket"] = out["recency_bucket"].fillna("never")
    out["last_session_date"] = totals["last_session_date"]
    out["days_since_last_session"] = (day - totals["last_session_date"]).dt.days.astype("Int64")
    # frequency and money
    out["frequency"] = totals["frequency"].fillna(0)
    out["monetary"] = totals["monetary_cents"].fillna(0) / 100
    out["avg_order_value"] = _ratio(
        totals["monetary_cents"], totals["frequency"] * 100, MONEY_PLACES
    )
    out["sessions_count"] = totals["sessions_count"].fillna(0)
    out["avg_session_duration_sec"] = _optional_ratio(
        totals, "browsing_micros", "browsing_known", denominator_scale=MICROS
    )
    out["purchase_rate"] = _ratio(totals["frequency"], totals["sessions_count"])
    # trailing windows
    for n in TRAILING_WINDOWS_DAYS:
        out[f"sessions_last_{n}d"] = totals[f"sessions_last_{n}d"].fillna(0)
    for n in TRAILING_WINDOWS_DAYS:
        out[f"purchases_last_{n}d"] = totals[f"purchases_last_{n}d"].fillna(0)
    out["monetary_last_30d"] = totals["monetary_last_30d_cents"].fillna(0) / 100
    out["cltv_proxy_365d"] = totals["cltv_cents"].fillna(0) / 100
    out["sessions_prev_90d"] = totals["sessions_prev_90d"].fillna(0)
    out["monetary_prev_90d"] = totals["monetary_prev_90d_cents"].fillna(0) / 100
    # trends: last 30 days / (previous 90 days / 3) = 3 x last 30 days / previous 90 days
    months = TREND_BASELINE_DAYS // TREND_RECENT_DAYS
    out["sessions_trend_30d"] = _ratio(
        totals["sessions_last_30d"] * months, totals["sessions_prev_90d"]
    )
    out["monetary_trend_30d"] = _ratio(
        totals["monetary_last_30d_cents"] * months, totals["monetary_prev_90d_cents"]
    )
    # engagement
    out["avg_pages_per_session"] = _optional_ratio(totals, "pages", "pages_known")
    # a customer with events but no view among them has 0 views, not none known
    out["product_views_per_session"] = _ratio(
        totals.get("view_events", pd.Series(0, index=totals.index)).fillna(0).where(has_events),
        totals["sessions_count"],
    )
    from_events = _ratio(
        totals.get("sessions_with_cart_event", pd.Series(0, index=totals.index)).fillna(0),
        totals["sessions_count"],
    )
    from_flags = _optional_ratio(totals, "cart_flags", "cart_flags_known")
    out["add_to_cart_rate"] = from_events.where(has_events, from_flags)
    out["discount_usage_share"] = _optional_ratio(
        totals, "purchases_with_discount", "purchases_discount_known"
    )
    # categories
    out["categories_viewed"] = totals["categories_viewed"].where(totals["top_category"].notna())
    out["top_category"] = totals["top_category"]
    out["favourite_category"] = totals["favourite_category"]
    # habits
    out["favourite_hour"] = totals["favourite_hour"]
    out["favourite_weekday"] = totals["favourite_weekday"]
    out["weekend_session_share"] = _ratio(totals["weekend_sessions"], totals["sessions_count"])
    # calendar of the as-of date
    out["as_of_month"] = as_of.month
    out["as_of_quarter"] = (as_of.month - 1) // 3 + 1
    out["is_holiday_season"] = as_of.month in HOLIDAY_MONTHS
    out["season"] = SEASONS[as_of.month]
    return conform(out)


def _read_csv(path: Path, wanted: list[str], **options) -> pd.DataFrame:
    """The wanted columns that the file has (optional ones may be absent)."""
    header = pd.read_csv(path, nrows=0).columns
    columns = [c for c in wanted if c in header]
    return pd.read_csv(path, engine="pyarrow", usecols=columns, **options)


def _timestamps(values: pd.Series) -> pd.Series:
    """A date or a timestamp per value (a date is its midnight), as the contract parses it."""
    if pd.api.types.is_datetime64_any_dtype(values) or values.dtype.kind == "M":
        return values
    return pd.to_datetime(values, format="ISO8601")


def _row_of(customer_ids: pd.Series, known: pd.Series) -> np.ndarray:
    """The position of each id in `known` (unique ids), -1 for an id not in it. The ids are
    factorized first: a customer has many rows, so each distinct id is looked up once."""
    ids = customer_ids.astype("category")
    row_of_id = pd.Categorical(ids.cat.categories, categories=known).codes
    codes = ids.cat.codes.to_numpy()
    return np.where(codes >= 0, row_of_id[codes], -1)


def _flags(values: pd.Series) -> pd.Series:
    """A boolean column as the contract spells it (true/t/1/yes/y, false/..., any case), with
    NA for an empty value."""
    if pd.api.types.is_bool_dtype(values):
        return values.astype("boolean")
    if pd.api.types.is_numeric_dtype(values):  # a column of 1 and 0 is read as numbers
        return values.map({1: True, 0: False}).astype("boolean")
    words = values.astype("category")
    meaning = {True: True, False: False}
    meaning |= {word: True for word in TRUE_WORDS} | {word: False for word in FALSE_WORDS}
    spelled = {value: meaning[str(value).strip().lower()] for value in words.cat.categories}
    return words.map(spelled).astype("boolean")


def _cents(money: pd.Series) -> pd.Series:
    """Money as whole cents (amounts have at most 2 decimals)."""
    return (money * 100).round().astype("int64")


def _most_frequent(keys: pd.Series, values: pd.Series) -> pd.Series:
    """Per key, its most frequent non-null value; a tie goes to the smallest value (as
    PostgreSQL's mode(), which returns the first of the tied values in sort order)."""
    pairs = pd.DataFrame({"key": keys, "value": values}).dropna()
    counts = pairs.groupby(["key", "value"], observed=True).size().rename("n").reset_index()
    counts = counts.sort_values(["key", "n", "value"], ascending=[True, False, True])
    return counts.drop_duplicates("key").set_index("key")["value"]


def _ratio(numerator: pd.Series, denominator: pd.Series, places: int = RATE_PLACES) -> pd.Series:
    """numerator / denominator rounded to `places` decimals, half away from zero, exactly
    (integer arithmetic: a float mean would turn 0.03125 into 0.0312 or 0.0313 by luck);
    NaN where either is missing or the denominator is 0. Both are non-negative integers."""
    numerator = pd.Series(numerator).astype("Int64")
    denominator = pd.Series(denominator).astype("Int64")
    valid = (numerator.notna() & denominator.notna() & (denominator != 0)).to_numpy(bool)
    num = numerator.to_numpy("int64", na_value=0)[valid]
    den = denominator.to_numpy("int64", na_value=1)[valid]
    whole, rest = np.divmod(num, den)
    scale = 10**places
    fraction = (2 * rest * scale + den) // (2 * den)  # rest < den: no overflow
    result = np.full(len(numerator), np.nan)
    result[valid] = (whole * scale + fraction) / scale
    return pd.Series(result, index=numerator.index)


def _optional_ratio(
    totals: pd.DataFrame, numerator: str, denominator: str, denominator_scale: int = 1
) -> pd.Series:
    """The rounded ratio of two totals of an optional column; NaN when the file lacks it."""
    if numerator not in totals:
        return pd.Series(np.nan, index=totals.index)
    return _ratio(totals[numerator], totals[denominator] * denominator_scale)


def _recency_bucket(days: int) -> str:
    for upper, label in RECENCY_BUCKETS:
        if days <= upper:
            return label
    return "365+"


def conform(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with exactly FEATURE_COLUMNS, in order, in their dtypes, rows by customer_id
    (text NULLs as None). Used by both implementations, and by tests to read the mart alike."""
    missing = set(FEATURE_COLUMNS) - set(frame.columns)
    if missing:
        raise ValueError(f"columns missing: {sorted(missing)}")
    out = frame[list(FEATURE_COLUMNS)].copy()
    for column, dtype in FEATURE_COLUMNS.items():
        values = out[column]
        if dtype == "object":
            values = values.astype(object).where(values.notna(), None)
        elif dtype == "float64":
            values = values.astype(object).where(values.notna(), np.nan).astype("float64")
        elif dtype.startswith("datetime64"):
            values = pd.to_datetime(values).astype(dtype)
        else:
            values = values.astype(dtype)
        out[column] = values
    return out.sort_values("customer_id", ignore_index=True)


# --- DuckDB --------------------------------------------------------------------------------

# Types of the columns read; everything else in the files is left unread.
_DUCKDB_TYPES = {
    "customers.csv": {"customer_id": "varchar", "signup_date": "timestamp"},
    "sessions.csv": {
        "customer_id": "varchar",
        "session_date": "timestamp",
        "product_viewed": "varchar",
        "browsing_time_sec": "double",
        "purchase_made": "varchar",
        "purchase_amount": "decimal(14,2)",
        "pages_viewed": "bigint",
        "added_to_cart": "varchar",
        "discount_amount": "decimal(14,2)",
    },
    "products.csv": {"product_id": "varchar", "category": "varchar"},
    "events.csv": {
        "session_id": "varchar",
        "customer_id": "varchar",
        "event_time": "timestamp",
        "event_type": "varchar",
    },
}

_DUCKDB_QUERY = """
with

-- import
customers as (
    select customer_id, signup_date
    from (
        select customer_id, cast(signup_date as date) as signup_date
        from customers_file
    )
    where signup_date <= $as_of
),

products as (
    select product_id, category from products_file
),

sessions as materialized (
    select
        s.customer_id,
        s.session_date,
        hour(s.started_at) as hour,
        isodow(s.started_at) as weekday,
        s.browsing_time_sec,
        s.pages_viewed,
        s.added_to_cart,
        s.purchase_made,
        case when s.purchase_made then s.amount_cents else 0 end as spend_cents,
        s.discount_amount,
        $as_of - s.session_date as days_ago,
        p.category
    from (
        select
            * exclude (session_date),
            session_date as started_at,
            cast(session_date as date) as session_date,
            lower(trim(purchase_made_text)) in ({true_words}) as purchase_made,
            lower(trim(added_to_cart_text)) in ({true_words}) as added_to_cart,
            cast(coalesce(purchase_amount, 0) * 100 as bigint) as amount_cents
        from sessions_file
    ) as s
    left join products as p on p.product_id = s.product_viewed
    where s.session_date <= $as_of
      and s.customer_id in (select customer_id from customers)
),

events as (
    select customer_id, session_id, event_type
    from events_file
    where cast(event_time as date) <= $as_of
),

-- logic
session_totals as (
    select
        customer_id,
        count(*) as sessions_count,
        count(*) filter (where purchase_made) as frequency,
        sum(spend_cents) as monetary_cents,
        max(session_date) filter (where purchase_made) as last_purchase_date,
        max(session_date) as last_session_date,
        sum(cast(round(browsing_time_sec * 1000000) as hugeint)) as browsing_micros,
        count(browsing_time_sec) as browsing_known,
        sum(pages_viewed) as pages,
        count(pages_viewed) as pages_known,
        count(*) filter (where added_to_cart) as cart_flags,
        count(added_to_cart) as cart_flags_known,
        count(discount_amount) filter (where purchase_made) as purchases_discount_known,
        count(*) filter (where purchase_made and discount_amount > 0) as purchases_with_discount,
        count(*) filter (where days_ago < 7) as sessions_last_7d,
        count(*) filter (where days_ago < 30) as sessions_last_30d,
        count(*) filter (where days_ago < 90) as sessions_last_90d,
        count(*) filter (where purchase_made and days_ago < 7) as purchases_last_7d,
        count(*) filter (where purchase_made and days_ago < 30) as purchases_last_30d,
        count(*) filter (where purchase_made and days_ago < 90) as purchases_last_90d,
        coalesce(sum(spend_cents) filter (where days_ago < 30), 0) as monetary_last_30d_cents,
        coalesce(sum(spend_cents) filter (where days_ago < 365), 0) as cltv_cents,
        count(*) filter (where days_ago >= 30 and days_ago < 120) as sessions_prev_90d,
        coalesce(sum(spend_cents) filter (where days_ago >= 30 and days_ago < 120), 0)
            as monetary_prev_90d_cents,
        count(distinct category) as categories_viewed,
        count(*) filter (where weekday >= 6) as weekend_sessions
    from sessions
    group by customer_id
),

-- modes: the most frequent value, ties to the smallest
category_counts as (
    select customer_id, category as value, count(*) as n
    from sessions where category is not null group by all
),

purchase_category_counts as (
    select customer_id, category as value, count(*) as n
    from sessions where category is not null and purchase_made group by all
),

hour_counts as (
    select customer_id, hour as value, count(*) as n from sessions group by all
),

weekday_counts as (
    select customer_id, weekday as value, count(*) as n from sessions group by all
),

top_categories as (
    select customer_id, value from category_counts
    qualify row_number() over (partition by customer_id order by n desc, value) = 1
),

favourite_categories as (
    select customer_id, value from purchase_category_counts
    qualify row_number() over (partition by customer_id order by n desc, value) = 1
),

favourite_hours as (
    select customer_id, value from hour_counts
    qualify row_number() over (partition by customer_id order by n desc, value) = 1
),

favourite_weekdays as (
    select customer_id, value from weekday_counts
    qualify row_number() over (partition by customer_id order by n desc, value) = 1
),

event_totals as (
    select
        customer_id,
        count(*) filter (where event_type = 'view') as view_events,
        count(distinct session_id) filter (where event_type = 'cart') as sessions_with_cart_event
    from events
    group by customer_id
),

final as (
    select
        -- ids
        c.customer_id,
        $as_of as as_of_date,
        -- tenure
        $as_of - c.signup_date as days_since_signup,
        -- recency
        s.last_purchase_date,
        $as_of - s.last_purchase_date as recency_days,
        case
            when s.last_purchase_date is null then 'never'
            when $as_of - s.last_purchase_date <= 7 then '0-7'
            when $as_of - s.last_purchase_date <= 30 then '8-30'
            when $as_of - s.last_purchase_date <= 90 then '31-90'
            when $as_of - s.last_purchase_date <= 180 then '91-180'
            when $as_of - s.last_purchase_date <= 365 then '181-365'
            else '365+'
        end as recency_bucket,
        s.last_session_date,
        $as_of - s.last_session_date as days_since_last_session,
        -- frequency and money
        coalesce(s.frequency, 0) as frequency,
        coalesce(s.monetary_cents, 0) / 100 as monetary,
        rounded_ratio(s.monetary_cents, s.frequency * 100, 100) as avg_order_value,
        coalesce(s.sessions_count, 0) as sessions_count,
        rounded_ratio(s.browsing_micros, s.browsing_known * 1000000, 10000)
            as avg_session_duration_sec,
        rounded_ratio(s.frequency, s.sessions_count, 10000) as purchase_rate,
        -- trailing windows
        coalesce(s.sessions_last_7d, 0) as sessions_last_7d,
        coalesce(s.sessions_last_30d, 0) as sessions_last_30d,
        coalesce(s.sessions_last_90d, 0) as sessions_last_90d,
        coalesce(s.purchases_last_7d, 0) as purchases_last_7d,
        coalesce(s.purchases_last_30d, 0) as purchases_last_30d,
        coalesce(s.purchases_last_90d, 0) as purchases_last_90d,
        coalesce(s.monetary_last_30d_cents, 0) / 100 as monetary_last_30d,
        coalesce(s.cltv_cents, 0) / 100 as cltv_proxy_365d,
        coalesce(s.sessions_prev_90d, 0) as sessions_prev_90d,
        coalesce(s.monetary_prev_90d_cents, 0) / 100 as monetary_prev_90d,
        -- trends: last 30 days / (previous 90 days / 3)
        rounded_ratio(3 * s.sessions_last_30d, s.sessions_prev_90d, 10000) as sessions_trend_30d,
        rounded_ratio(3 * s.monetary_last_30d_cents, s.monetary_prev_90d_cents, 10000)
            as monetary_trend_30d,
        -- engagement
        rounded_ratio(s.pages, s.pages_known, 10000) as avg_pages_per_session,
        rounded_ratio(e.view_events, s.sessions_count, 10000) as product_views_per_session,
        case
            when e.customer_id is not null
                then rounded_ratio(e.sessions_with_cart_event, s.sessions_count, 10000)
            else rounded_ratio(s.cart_flags, s.cart_flags_known, 10000)
        end as add_to_cart_rate,
        rounded_ratio(s.purchases_with_discount, s.purchases_discount_known, 10000)
            as discount_usage_share,
        -- categories
        case when tc.value is not null then s.categories_viewed end as categories_viewed,
        tc.value as top_category,
        fc.value as favourite_category,
        -- habits
        fh.value as favourite_hour,
        fw.value as favourite_weekday,
        rounded_ratio(s.weekend_sessions, s.sessions_count, 10000) as weekend_session_share,
        -- calendar of the as-of date
        month($as_of) as as_of_month,
        quarter($as_of) as as_of_quarter,
        month($as_of) in (11, 12) as is_holiday_season,
        case
            when month($as_of) in (12, 1, 2) then 'winter'
            when month($as_of) in (3, 4, 5) then 'spring'
            when month($as_of) in (6, 7, 8) then 'summer'
            else 'autumn'
        end as season
    from customers as c
    left join session_totals as s on s.customer_id = c.customer_id
    left join event_totals as e on e.customer_id = c.customer_id
    left join top_categories as tc on tc.customer_id = c.customer_id
    left join favourite_categories as fc on fc.customer_id = c.customer_id
    left join favourite_hours as fh on fh.customer_id = c.customer_id
    left join favourite_weekdays as fw on fw.customer_id = c.customer_id
)

select * from final order by customer_id
"""

# numerator / denominator rounded half away from zero to 1/scale, exactly (integers only);
# NULL when either is NULL or the denominator is 0
_DUCKDB_MACROS = """
create or replace temp macro rounded_ratio(numerator, denominator, scale) as
    case when denominator > 0 then
        cast(
            (2 * cast(numerator as hugeint) * scale + denominator) // (2 * denominator)
            as double
        ) / scale
    end
"""


def compute_features_duckdb(data_dir: Path, as_of: date) -> pd.DataFrame:
    """marts.customer_features at `as_of`, by DuckDB SQL over the CSV files in `data_dir`."""
    import duckdb

    data_dir = Path(data_dir)
    conn = duckdb.connect()
    try:
        conn.execute(_DUCKDB_MACROS)
        for file_name, types in _DUCKDB_TYPES.items():
            view = file_name.removesuffix(".csv") + "_file"
            conn.execute(
                f"create temp view {view} as {_duckdb_source(data_dir / file_name, types)}"
            )
        true_words = ", ".join(f"'{word}'" for word in TRUE_WORDS)
        query = _DUCKDB_QUERY.replace("{true_words}", true_words)
        frame = conn.execute(query, {"as_of": as_of}).df()
    finally:
        conn.close()
    return conform(frame)


def _duckdb_source(path: Path, types: dict[str, str]) -> str:
    """A select over the file with every wanted column: the file's own, or NULL when the
    column (or the whole file) is absent. Booleans are read as text (*_text), parsed later."""
    header = pd.read_csv(path, nrows=0).columns if path.exists() else []
    present = {name: kind for name, kind in types.items() if name in header}
    columns = []
    for name, kind in types.items():
        alias = f"{name}_text" if name in ("purchase_made", "added_to_cart") else name
        columns.append(f"{name} as {alias}" if name in present else f"null::{kind} as {alias}")
    if not present:
        return f"select {', '.join(columns)} where false"
    quoted = str(path).replace("'", "''")
    reader = f"read_csv('{quoted}', header = true, types = {present!r}, auto_detect = true)"
    return f"select {', '.join(columns)} from {reader}"
