"""Transaction lines (one row per order line, as shops and ERPs export them) to the contract.

Columns in: whatever the mapping names, for the roles customer, timestamp, and optionally
order, product, quantity, unit_price or line_amount (one of the two is required),
product_name, category, country, signup_date.

Files out:
    customers.csv   one row per customer with a kept order: location = country of the latest
                    order, signup_date = the mapped signup date, else the first kept order's day
    sessions.csv    one purchase session per order: session_id = order id, session_date = the
                    order's first line time, purchase_amount = sum of quantity x unit price
                    (or of line amounts), product_viewed = the product of the order's largest line
    products.csv    one row per product of a kept line (only with a product column): latest
                    name and category, price = latest unit price
    events.csv      one purchase event per order and product (only with a product column):
                    event_id = '<order id>-<product id>', price = the order's average unit price

Rules, in this order (a skipped row counts under the first reason it meets):
    no customer id     skipped: anonymous lines cannot be tied to a customer
    cancelled order    the order id starts with `cancelled_order_prefix`: skipped (returns are
                       excluded, not netted: a cancellation names no order it cancels)
    no order id, no product id, non-product code (postage, fees, manual adjustments)
    quantity <= 0      skipped: a return or stock adjustment that is not marked as cancelled
    negative price     skipped
A value that cannot be read (a timestamp, a number) stops the conversion with its file, row,
column and rule: it means the mapping or the format is wrong, and guessing would be worse.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from ecom_insights.adapters import COLUMN_ROLES, ConvertError
from ecom_insights.adapters.base import (
    CHUNK_BYTES,
    MEMORY_LIMIT,
    MONEY_SQL_TYPE,
    WHITESPACE,
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


@dataclass(frozen=True)
class TransactionMapping:
    """Which column of the export holds what (`COLUMN_ROLES`), and the export's rules."""

    customer: str | None = None
    timestamp: str | None = None
    order: str | None = None  # none: every line is an order of its own
    product: str | None = None  # none: no products.csv and no events.csv
    quantity: str | None = None  # none: 1 per line
    unit_price: str | None = None
    line_amount: str | None = None
    product_name: str | None = None
    category: str | None = None
    country: str | None = None
    signup_date: str | None = None
    timestamp_format: str | None = None  # a strptime format; none: ISO 8601
    cancelled_order_prefix: str | None = None
    non_product_codes: tuple[str, ...] = ()
    dialect: Dialect = field(default_factory=Dialect)

    @property
    def columns(self) -> dict[str, str]:
        """role -> column, for the roles that are mapped."""
        return {role: getattr(self, role) for role in COLUMN_ROLES if getattr(self, role)}

    def check(self, where: str = "mapping") -> None:
        missing = [role for role in ("customer", "timestamp") if not getattr(self, role)]
        if missing:
            raise ConvertError(where, f"no column mapped as {COLUMN_ROLES[missing[0]]}")
        if bool(self.unit_price) == bool(self.line_amount):
            raise ConvertError(where, "map exactly one of unit_price and line_amount")


# The UCI Online Retail set (transactions of a UK gift shop, 2010-12-01 to 2011-12-09).
# Stock codes that are no product: postage (POST, DOT for dotcom postage, C2 carriage),
# Manual adjustments (M, m), Discount (D), SAMPLES (S), BANK CHARGES, AMAZONFEE, CRUK
# commission and "Adjust bad debt" (B). Their lines are fees, refunds or corrections, and
# as products they would top every basket rule (POST is on most foreign orders).
ONLINE_RETAIL = TransactionMapping(
    customer="CustomerID",
    order="InvoiceNo",
    timestamp="InvoiceDate",
    product="StockCode",
    quantity="Quantity",
    unit_price="UnitPrice",
    product_name="Description",
    country="Country",
    cancelled_order_prefix="C",
    non_product_codes=(
        "POST",
        "DOT",
        "C2",
        "M",
        "m",
        "D",
        "S",
        "BANK CHARGES",
        "AMAZONFEE",
        "CRUK",
        "B",
    ),
)

# CDNOW_master.txt as shipped in the `lifetimes` wheel: customer_id, date (YYYYMMDD),
# number_of_cds and dollar_value (of the whole purchase), separated by runs of spaces. A line
# is a purchase: there is no order id and no product.
CDNOW = TransactionMapping(
    customer="customer_id",
    timestamp="date",
    quantity="number_of_cds",
    line_amount="dollar_value",
    timestamp_format="%Y%m%d",
    dialect=Dialect(delimiter=WHITESPACE),
)

PRESETS = {"online-retail": ONLINE_RETAIL, "cdnow": CDNOW}

# The skip reasons, in the order they are tested.
NO_CUSTOMER = "no customer id"
CANCELLED = "cancelled order (order id starts with {prefix!r})"
NO_ORDER = "no order id"
NO_PRODUCT = "no product id"
NON_PRODUCT = "not a product (a fee, postage or adjustment code)"
NOT_POSITIVE_QUANTITY = "quantity zero or negative (a return or adjustment)"
NEGATIVE_PRICE = "negative price"


def load_mapping(path: Path, base: TransactionMapping | None = None) -> TransactionMapping:
    """A mapping from a YAML file (see docs/bring-your-own-data.md), over `base` if given:

    columns: {customer: CustomerID, order: InvoiceNo, timestamp: InvoiceDate, ...}
    timestamp_format: "%d/%m/%Y %H:%M"
    cancelled_order_prefix: C
    non_product_codes: [POST, M]
    delimiter: ","   encoding: utf-8   header: true   names: [a, b, c]
    """
    import yaml

    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConvertError(path, f"unreadable mapping ({error})") from error
    if not isinstance(document, dict):
        raise ConvertError(path, "a mapping file is a YAML mapping of keys to values")
    options = dict(document)
    columns = options.pop("columns", {}) or {}
    if not isinstance(columns, dict):
        raise ConvertError(path, "'columns' maps roles to column names")
    unknown = [role for role in columns if role not in COLUMN_ROLES]
    if unknown:
        raise ConvertError(
            path, f"unknown column role {unknown[0]!r} (known: {', '.join(COLUMN_ROLES)})"
        )
    return with_options(base or TransactionMapping(), {**columns, **options}, where=str(path))


def with_options(
    mapping: TransactionMapping, options: dict, where: str = "mapping"
) -> TransactionMapping:
    """The mapping with `options` (roles, rules and dialect keys; None values ignored)."""
    options = {k: v for k, v in options.items() if v is not None}
    dialect_keys = {f.name for f in fields(Dialect)}
    known = {f.name for f in fields(TransactionMapping)} - {"dialect"}
    unknown = [key for key in options if key not in known | dialect_keys]
    if unknown:
        raise ConvertError(where, f"unknown mapping key {unknown[0]!r}")
    dialect_options = {k: options.pop(k) for k in list(options) if k in dialect_keys}
    if "names" in dialect_options:
        dialect_options["names"] = tuple(str(n) for n in dialect_options["names"])
    if "non_product_codes" in options:
        options["non_product_codes"] = tuple(str(c) for c in options["non_product_codes"])
    for role in COLUMN_ROLES:
        if role in options:
            options[role] = str(options[role])
    return replace(mapping, dialect=replace(mapping.dialect, **dialect_options), **options)


# ---------------------------------------------------------------------------------------------


# The kept lines, as staged for grouping; seq is where a line is in the export (`sequence`).
LINES_SCHEMA = pa.schema(
    [
        ("seq", pa.int64()),
        ("customer_id", pa.string()),
        ("order_id", pa.string()),
        ("ordered_at", pa.timestamp("ns")),
        ("product_id", pa.string()),
        ("product_name", pa.string()),
        ("category", pa.string()),
        ("country", pa.string()),
        ("signup_date", pa.timestamp("ns")),
        ("quantity", pa.float64()),
        ("unit_price", pa.float64()),
        ("line_amount", pa.float64()),
    ]
)
# every customer id of the export, kept or not: to report those with no kept line
SEEN_SCHEMA = pa.schema([("customer_id", pa.string())])


def convert_transactions(
    sources: list[Path],
    out_dir: Path,
    mapping: TransactionMapping,
    *,
    format_name: str = "transactions",
    force: bool = False,
    chunk_bytes: int = CHUNK_BYTES,
    memory_limit: str = MEMORY_LIMIT,
) -> ConvertSummary:
    """Convert transaction-line exports into customers, sessions, products and events files
    in `out_dir`; returns what was read, skipped and written."""
    clock = Stopwatch()
    mapping.check()
    check_out_dir(out_dir, force)
    for path in sources:
        require_columns(
            path,
            read_header(path, mapping.dialect),
            {COLUMN_ROLES[r]: c for r, c in mapping.columns.items()},
        )
    summary = ConvertSummary(format_name, [str(p) for p in sources], str(out_dir))
    with scratch_space(out_dir, memory_limit) as scratch:
        lines = scratch.stage("lines", LINES_SCHEMA)
        seen_customers = scratch.stage("seen_customers", SEEN_SCHEMA)
        cancelled_value = 0.0
        columns = list(dict.fromkeys(mapping.columns.values()))
        for file_index, path in enumerate(sources):
            for chunk in read_chunks(path, mapping.dialect, columns, chunk_bytes):
                kept, reasons, cancelled = _check_chunk(path, chunk, mapping)
                summary.rows_read += len(chunk)
                summary.rows_kept += len(kept)
                summary.skipped.update(reasons)
                cancelled_value += cancelled
                kept["seq"] = sequence(file_index, kept.pop("row_number"))
                lines.append(kept)
                seen = chunk[mapping.customer]
                seen = seen[seen != ""].drop_duplicates()
                seen_customers.append(normalise_ids(seen).to_frame("customer_id"))
        con = scratch.con
        _group_orders(con, has_order=mapping.order is not None)
        has_product = mapping.product is not None
        summary.written = _write_files(con, scratch.staged, has_product=has_product)
        summary.figures = _figures(con, has_product=has_product)
        if mapping.cancelled_order_prefix:
            summary.figures["cancelled value (with id)"] = round(cancelled_value, 2)
        summary.notes = _notes(con)
        summary.seconds = clock.seconds
        publish(scratch.staged, out_dir, summary)
    return summary


def _check_chunk(
    path: Path, chunk: pd.DataFrame, m: TransactionMapping
) -> tuple[pd.DataFrame, Counter, float]:
    """(kept lines, skip reasons counted, value of the cancelled lines that have a customer)."""
    customer = normalise_ids(chunk[m.customer])
    ordered_at = parse_timestamps(path, chunk, m.timestamp, m.timestamp_format)
    quantity = parse_numbers(path, chunk, m.quantity) if m.quantity else pd.Series(1.0, chunk.index)
    price_column = m.unit_price or m.line_amount
    price = parse_numbers(path, chunk, price_column)
    signup = (
        parse_timestamps(path, chunk, m.signup_date, m.timestamp_format, allow_empty=True)
        if m.signup_date
        else None
    )
    order = chunk[m.order] if m.order else None
    product = chunk[m.product] if m.product else None

    no = pd.Series(False, chunk.index)
    cancelled = (
        order.str.startswith(m.cancelled_order_prefix)
        if order is not None and m.cancelled_order_prefix
        else no
    )
    rules = [
        (customer == "", NO_CUSTOMER),
        (cancelled, CANCELLED.format(prefix=m.cancelled_order_prefix)),
        (order == "" if order is not None else no, NO_ORDER),
        (product == "" if product is not None else no, NO_PRODUCT),
        (product.isin(m.non_product_codes) if product is not None else no, NON_PRODUCT),
        (quantity <= 0, NOT_POSITIVE_QUANTITY),
        (price < 0, NEGATIVE_PRICE),
    ]
    reason = np.select(
        [np.asarray(c, dtype=bool) for c, _ in rules], [r for _, r in rules], default=""
    )
    skipped = reason != ""
    reasons = Counter(pd.Series(reason[skipped]).value_counts().to_dict())
    line_value = price * (1.0 if m.line_amount else quantity)
    cancelled_value = float(-line_value[cancelled & (customer != "")].sum())

    kept = ~skipped
    lines = pd.DataFrame(
        {
            "row_number": chunk["_row"][kept],
            "customer_id": customer[kept],
            "ordered_at": ordered_at[kept],
            "quantity": quantity[kept],
        }
    )
    lines["unit_price" if m.unit_price else "line_amount"] = price[kept]
    optional = {
        "order_id": m.order,
        "product_id": m.product,
        "product_name": m.product_name,
        "category": m.category,
        "country": m.country,
    }
    for target, column in optional.items():
        if column:
            lines[target] = chunk[column][kept].replace("", None)
    if signup is not None:
        lines["signup_date"] = signup[kept]
    return lines.reset_index(drop=True), reasons, cancelled_value


def _group_orders(con, *, has_order: bool) -> None:
    """`priced`: every kept line with its session (order) id and exact amount; `orders`: one
    row per order, owned by the customer of its first line (in the export's order)."""
    amount = (
        f"coalesce(cast(line_amount as {MONEY_SQL_TYPE}), "
        f"cast(quantity as {MONEY_SQL_TYPE}) * cast(unit_price as {MONEY_SQL_TYPE}))"
    )
    unit_price = (
        f"coalesce(cast(unit_price as {MONEY_SQL_TYPE}), "
        f"cast(line_amount / quantity as {MONEY_SQL_TYPE}))"
    )
    if has_order:
        con.execute(
            f"""
            create view priced as
            select *, order_id as session_id, {amount} as amount, {unit_price} as line_price
            from lines
            """
        )
    else:
        # each line is an order: '<customer>-<YYYYMMDD>-<n-th that day>', which stays the same
        # when later lines are appended to the export (numbered on the columns it needs only,
        # then joined back: a window over whole rows may not keep within the memory limit)
        con.execute(
            """
            create table line_orders as
            select seq,
                   customer_id || '-' || strftime(ordered_at, '%Y%m%d') || '-' ||
                   row_number() over (partition by customer_id, ordered_at::date order by seq)
                   as session_id
            from lines
            """
        )
        con.execute(
            f"""
            create view priced as
            select l.*, o.session_id, {amount} as amount, {unit_price} as line_price
            from lines l join line_orders o using (seq)
            """
        )
    con.execute(
        """
        create table orders as
        select session_id,
               arg_min(customer_id, seq) as customer_id,
               min(customer_id) <> max(customer_id) as shared,
               min(ordered_at) as ordered_at,
               round(sum(amount), 2) as amount,
               arg_max(product_id, (amount, product_id)) as product_viewed
        from priced
        group by session_id
        """
    )


def _write_files(con, staged: Path, *, has_product: bool) -> dict[str, int]:
    # an export of days without times (CDNOW) is written as days, not as midnights
    (days_only,) = con.execute(
        "select coalesce(bool_and(ordered_at = date_trunc('day', ordered_at)), false) from orders"
    ).fetchone()
    moment = "::date" if days_only else ""
    written = {}
    written["customers.csv"] = write_csv(
        con,
        """
        select o.customer_id,
               null::integer as age,
               null::varchar as gender,
               arg_max(p.country, moment(p.ordered_at, p.seq)) as location,
               coalesce(min(p.signup_date), min(p.ordered_at))::date as signup_date
        from priced p join orders o using (session_id)
        group by o.customer_id
        order by o.customer_id
        """,
        staged / "customers.csv",
    )
    written["sessions.csv"] = write_csv(
        con,
        f"""
        select session_id, customer_id, ordered_at{moment} as session_date, product_viewed,
               null::double as browsing_time_sec, true as purchase_made,
               amount as purchase_amount
        from orders
        order by ordered_at, session_id
        """,
        staged / "sessions.csv",
    )
    if not has_product:
        return written
    written["products.csv"] = write_csv(
        con,
        """
        select product_id,
               arg_max(product_name, moment(ordered_at, seq)) as product_name,
               arg_max(category, moment(ordered_at, seq)) as category,
               round(arg_max(line_price, moment(ordered_at, seq)), 2) as price
        from priced
        group by product_id
        order by product_id
        """,
        staged / "products.csv",
    )
    # grouped by order and product first, the customer joined after: a smaller group key,
    # which keeps 4 million lines within a 256 MB memory limit
    written["events.csv"] = write_csv(
        con,
        f"""
        with bought as (
            select session_id, product_id, min(ordered_at) as event_time,
                   sum(amount) as amount, sum(quantity) as quantity
            from priced
            group by session_id, product_id
        )
        select b.session_id || '-' || b.product_id as event_id,
               b.session_id,
               o.customer_id,
               b.event_time{moment} as event_time,
               'purchase' as event_type,
               b.product_id,
               round(cast(b.amount / b.quantity as {MONEY_SQL_TYPE}), 2) as price
        from bought b join orders o using (session_id)
        order by b.event_time, event_id
        """,
        staged / "events.csv",
    )
    return written


def _figures(con, *, has_product: bool) -> dict[str, int | float]:
    customers, orders, revenue, first, last = con.execute(
        """
        select count(distinct customer_id), count(*), coalesce(sum(amount), 0),
               min(ordered_at)::date::varchar, max(ordered_at)::date::varchar
        from orders
        """
    ).fetchone()
    (seen,) = con.execute("select count(distinct customer_id) from seen_customers").fetchone()
    figures: dict[str, int | float] = {
        "customers": customers,
        "customers with no kept line": seen - customers,
        "orders": orders,
        "revenue": float(revenue),
    }
    if has_product:
        (products,) = con.execute("select count(distinct product_id) from priced").fetchone()
        figures["products"] = products
    figures["first order"] = first or ""
    figures["last order"] = last or ""
    return figures


def _notes(con) -> list[str]:
    (mixed,) = con.execute("select count(*) from orders where shared").fetchone()
    if not mixed:
        return []
    return [
        f"{mixed:,} orders have lines of more than one customer id; each order and its "
        "events went to the customer of its first line"
    ]
