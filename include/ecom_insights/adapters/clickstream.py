"""Clickstream events, in the format of the public "eCommerce behavior data from multi category
store" set, to the contract.

Columns in (header names): event_time ('2019-10-01 00:00:00 UTC'), event_type (view, cart,
remove_from_cart, purchase), product_id, price, user_id, user_session; optionally
category_id, category_code ('electronics.smartphone'), brand.

Files out:
    events.csv      one row per kept event: event_id = '<user_session>-<n>' (n-th event of the
                    session by time), customer_id = the session's customer, price as given
    sessions.csv    one row per user_session: customer_id = user of its first event,
                    session_date = first event, browsing_time_sec = last - first event,
                    product_viewed = product of its first view, pages_viewed = views,
                    added_to_cart = any cart event, purchase_made = any purchase,
                    purchase_amount = sum of the purchase events' prices (one unit each)
    products.csv    one row per product: category = category_code, else category_id; price =
                    the latest price seen; no name (the set has none; brand is not in the contract)
    customers.csv   one row per session customer: signup_date = day of their first session
Rules (a skipped row counts under the first reason it meets): no session id, no user id,
no product id, an event type other than the four, a negative price. An unreadable
event_time or price stops the conversion with its file, row, column and rule.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from ecom_insights.adapters.base import (
    CHUNK_BYTES,
    MEMORY_LIMIT,
    MONEY_SQL_TYPE,
    ConvertSummary,
    Dialect,
    Stopwatch,
    check_out_dir,
    normalise_ids,
    parse_numbers,
    parse_timestamps,
    publish,
    read_chunks,
    read_header,
    require_columns,
    scratch_space,
    sequence,
    write_csv,
)
from ecom_insights.contract import EVENT_TYPES

REQUIRED_COLUMNS = ("event_time", "event_type", "product_id", "price", "user_id", "user_session")
OPTIONAL_COLUMNS = ("category_id", "category_code")  # brand is not in the contract
# The set's times are UTC, written with a ' UTC' suffix; they are written without it.
TIME_ZONE_SUFFIX = " UTC"

NO_SESSION = "no user_session"
NO_USER = "no user_id"
NO_PRODUCT = "no product_id"
UNKNOWN_EVENT_TYPE = f"event_type not one of {', '.join(EVENT_TYPES)}"
NEGATIVE_PRICE = "negative price"

CLICKS_SCHEMA = pa.schema(
    [
        ("seq", pa.int64()),
        ("event_time", pa.timestamp("ns")),
        ("event_type", pa.string()),
        ("product_id", pa.string()),
        ("category_id", pa.string()),
        ("category_code", pa.string()),
        ("price", pa.float64()),
        ("user_id", pa.string()),
        ("user_session", pa.string()),
    ]
)

# the order of a session's events, the same on every run: by time, then as in the export
EVENT_ORDER = "moment(event_time, seq)"


def convert_clickstream(
    sources: list[Path],
    out_dir: Path,
    *,
    force: bool = False,
    chunk_bytes: int = CHUNK_BYTES,
    memory_limit: str = MEMORY_LIMIT,
) -> ConvertSummary:
    """Convert clickstream exports into customers, sessions, products and events files in
    `out_dir`; returns what was read, skipped and written."""
    clock = Stopwatch()
    dialect = Dialect()
    check_out_dir(out_dir, force)
    headers = {}
    for path in sources:
        headers[path] = read_header(path, dialect)
        require_columns(path, headers[path], {f"the {c}": c for c in REQUIRED_COLUMNS})
    summary = ConvertSummary("clickstream", [str(p) for p in sources], str(out_dir))
    with scratch_space(out_dir, memory_limit) as scratch:
        clicks = scratch.stage("clicks", CLICKS_SCHEMA)
        for file_index, path in enumerate(sources):
            columns = [*REQUIRED_COLUMNS, *(c for c in OPTIONAL_COLUMNS if c in headers[path])]
            for chunk in read_chunks(path, dialect, columns, chunk_bytes):
                kept, reasons = _check_chunk(path, chunk)
                summary.rows_read += len(chunk)
                summary.rows_kept += len(kept)
                summary.skipped.update(reasons)
                kept["seq"] = sequence(file_index, kept.pop("row_number"))
                clicks.append(kept)
        con = scratch.con
        _group_sessions(con)
        summary.written = _write_files(con, scratch.staged)
        summary.figures = _figures(con)
        summary.notes = _notes(con)
        summary.seconds = clock.seconds
        publish(scratch.staged, out_dir, summary)
    return summary


def _check_chunk(path: Path, chunk: pd.DataFrame) -> tuple[pd.DataFrame, Counter]:
    """(kept events, skip reasons counted); an unreadable time or price raises."""
    chunk["event_time"] = chunk["event_time"].str.removesuffix(TIME_ZONE_SUFFIX)
    event_time = parse_timestamps(path, chunk, "event_time", None)
    price = parse_numbers(path, chunk, "price", allow_empty=True)
    user = normalise_ids(chunk["user_id"])
    product = normalise_ids(chunk["product_id"])
    rules = [
        (chunk["user_session"] == "", NO_SESSION),
        (user == "", NO_USER),
        (product == "", NO_PRODUCT),
        (~chunk["event_type"].isin(EVENT_TYPES), UNKNOWN_EVENT_TYPE),
        (price < 0, NEGATIVE_PRICE),
    ]
    reason = np.select(
        [np.asarray(c, dtype=bool) for c, _ in rules], [r for _, r in rules], default=""
    )
    skipped = reason != ""
    reasons = Counter(pd.Series(reason[skipped]).value_counts().to_dict())
    kept = ~skipped
    clicks = pd.DataFrame(
        {
            "row_number": chunk["_row"][kept],
            "event_time": event_time[kept],
            "event_type": chunk["event_type"][kept],
            "product_id": product[kept],
            "price": price[kept],
            "user_id": user[kept],
            "user_session": chunk["user_session"][kept],
        }
    )
    for column in ("category_id", "category_code"):
        if column in chunk:
            clicks[column] = chunk[column][kept].replace("", None)
    return clicks.reset_index(drop=True), reasons


def _group_sessions(con) -> None:
    """`sessions`: one row per user_session; `event_numbers`: each event's rank in its session.

    The rank is numbered apart, on the two columns it needs, then joined back by seq: a window
    over whole rows is the one step that DuckDB could not keep within its memory limit (10
    million events failed at 256 MB; grouped this way they pass)."""
    con.execute(
        f"""
        create table event_numbers as
        select seq, row_number() over (partition by user_session order by {EVENT_ORDER})
               as event_number
        from clicks
        """
    )
    con.execute(
        f"""
        create table sessions as
        select user_session as session_id,
               arg_min(user_id, {EVENT_ORDER}) as customer_id,
               min(user_id) <> max(user_id) as shared,
               min(event_time) as started_at,
               coalesce(arg_min(product_id, {EVENT_ORDER}) filter (where event_type = 'view'),
                        arg_min(product_id, {EVENT_ORDER})) as product_viewed,
               date_diff('second', min(event_time), max(event_time)) as browsing_time_sec,
               bool_or(event_type = 'purchase') as purchase_made,
               round(coalesce(sum(cast(price as {MONEY_SQL_TYPE}))
                              filter (where event_type = 'purchase'), 0), 2) as purchase_amount,
               count(*) filter (where event_type = 'view') as pages_viewed,
               bool_or(event_type = 'cart') as added_to_cart
        from clicks
        group by user_session
        """
    )


def _write_files(con, staged: Path) -> dict[str, int]:
    written = {}
    written["customers.csv"] = write_csv(
        con,
        """
        select customer_id, null::integer as age, null::varchar as gender,
               null::varchar as location, min(started_at)::date as signup_date
        from sessions
        group by customer_id
        order by customer_id
        """,
        staged / "customers.csv",
    )
    written["sessions.csv"] = write_csv(
        con,
        """
        select session_id, customer_id, started_at as session_date, product_viewed,
               browsing_time_sec, purchase_made, purchase_amount, pages_viewed, added_to_cart
        from sessions
        order by started_at, session_id
        """,
        staged / "sessions.csv",
    )
    written["products.csv"] = write_csv(
        con,
        f"""
        select product_id,
               null::varchar as product_name,
               coalesce(arg_max(category_code, {EVENT_ORDER}),
                        arg_max(category_id, {EVENT_ORDER})) as category,
               round(arg_max(price, {EVENT_ORDER})::{MONEY_SQL_TYPE}, 2) as price
        from clicks
        group by product_id
        order by product_id
        """,
        staged / "products.csv",
    )
    written["events.csv"] = write_csv(
        con,
        f"""
        select c.user_session || '-' || r.event_number as event_id,
               c.user_session as session_id,
               s.customer_id,
               c.event_time,
               c.event_type,
               c.product_id,
               c.price  -- as read; the ingestion rounds money to 2 places
        from clicks c
        join event_numbers r using (seq)
        join sessions s on s.session_id = c.user_session
        order by {EVENT_ORDER}
        """,
        staged / "events.csv",
    )
    return written


def _figures(con) -> dict[str, int | float | str]:
    customers, sessions, purchases, revenue, first, last = con.execute(
        """
        select count(distinct customer_id), count(*), count(*) filter (where purchase_made),
               sum(purchase_amount), min(started_at)::date::varchar, max(started_at)::date::varchar
        from sessions
        """
    ).fetchone()
    by_type = dict(con.execute("select event_type, count(*) from clicks group by 1").fetchall())
    (products,) = con.execute("select count(distinct product_id) from clicks").fetchone()
    figures: dict[str, int | float | str] = {
        "customers": customers,
        "sessions": sessions,
        "sessions with a purchase": purchases,
        "revenue": float(revenue or 0),
        "products": products,
    }
    figures.update({f"{t} events": by_type.get(t, 0) for t in EVENT_TYPES})
    figures["first event"] = first or ""
    figures["last event"] = last or ""
    return figures


def _notes(con) -> list[str]:
    (shared,) = con.execute("select count(*) from sessions where shared").fetchone()
    if not shared:
        return []
    return [
        f"{shared:,} sessions have events of more than one user_id; each session and its "
        "events went to the user of its first event"
    ]
