"""marts.customer_features against two independent computations from the same files: the
pandas reference and DuckDB (ecom_insights.features_reference).

Every value must be equal: integers, dates, text and NULLs exactly, and the mart's numerics
as the double nearest to the decimal (the features' decimals have at most 15 significant
digits, and a double tells all such decimals apart: no tolerance is needed or allowed).
A definition changed on one side only shows up here, as long as the data exercises it: the
generated data is checked to move every column, and the hand-made files plant the edges
(window bounds, rounding ties, ties in modes, events after midnight, absent optional values).
"""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from ecom_insights import features, ingest
from ecom_insights.features_reference import (
    FEATURE_COLUMNS,
    compute_features,
    compute_features_duckdb,
    conform,
)
from ecom_insights.generate import generate_dataset
from ecom_insights.warehouse import connect

START = date(2023, 1, 1)
DAYS = 400
LAST_DAY = START + timedelta(days=DAYS - 1)  # 2024-02-04
AS_OF_DATES = (
    date(2023, 1, 20),  # early: few customers, short histories
    date(2023, 7, 15),  # middle
    date(2023, 11, 28),  # Q4: holiday season
    LAST_DAY,
)
CALENDAR_COLUMNS = ("as_of_date", "as_of_month", "as_of_quarter", "is_holiday_season", "season")
# features that need products.csv or events.csv
CATALOGUE_AND_EVENT_FEATURES = (
    "categories_viewed",
    "top_category",
    "favourite_category",
    "product_views_per_session",
)
# features that need an optional column of sessions.csv
OPTIONAL_COLUMN_FEATURES = ("avg_pages_per_session", "add_to_cart_rate", "discount_usage_share")
SEED_COLUMNS = {
    "customers.csv": ["customer_id", "age", "gender", "location", "signup_date"],
    "sessions.csv": [
        "session_id",
        "customer_id",
        "session_date",
        "product_viewed",
        "browsing_time_sec",
        "purchase_made",
        "purchase_amount",
    ],
}


def load(url: str, directory: Path) -> None:
    with connect(url) as conn:
        ingest.land_files(conn, directory, reprocess=True)
        ingest.apply_row_rules(conn, datetime(2024, 6, 1, tzinfo=UTC))
        ingest.merge_into_core(conn)
        with conn.cursor() as cur:
            cur.execute("select count(*) from raw.quarantine")
            # the references read every row: the mart must have every row too
            assert cur.fetchone()[0] == 0


def mart_snapshot(url: str, as_of: date) -> pd.DataFrame:
    with connect(url) as conn:
        features.build_features(conn, as_of)
    return read_mart(url, as_of)


def read_mart(url: str, as_of: date) -> pd.DataFrame:
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute("select * from marts.customer_features where as_of_date = %s", (as_of,))
        columns = [d[0] for d in cur.description]
        frame = pd.DataFrame(cur.fetchall(), columns=columns)
    # the same columns in the same order, before conform() picks them
    assert columns == list(FEATURE_COLUMNS)
    return conform(frame)


def assert_same_features(expected: pd.DataFrame, actual: pd.DataFrame, label: str) -> None:
    """Equal frames; on failure, the columns that differ with a few customers each."""
    assert list(actual.columns) == list(expected.columns), label
    assert actual["customer_id"].tolist() == expected["customer_id"].tolist(), label
    problems = []
    for column in expected.columns:
        left, right = expected[column], actual[column]
        differ = pd.Series(
            [x != y for x, y in zip(_python_values(left), _python_values(right), strict=True)],
            index=left.index,
        )
        if differ.any() or left.dtype != right.dtype:
            sample = pd.DataFrame(
                {"customer_id": expected["customer_id"], "expected": left, "actual": right}
            )[differ].head(5)
            problems.append(
                f"{column} ({int(differ.sum())} rows; dtypes {left.dtype} / {right.dtype}):\n"
                f"{sample.to_string(index=False)}"
            )
    assert not problems, f"{label}: features differ\n" + "\n".join(problems)
    pd.testing.assert_frame_equal(expected, actual, check_exact=True)


def _python_values(series: pd.Series) -> list:
    """The values with every kind of NULL (None, NaN, NA, NaT) as None."""
    return [None if pd.isna(value) else value for value in series.astype(object)]


def assert_mart_equals_references(url: str, data_dir: Path, as_of: date) -> pd.DataFrame:
    mart = mart_snapshot(url, as_of)
    assert len(mart) > 0
    reference = compute_features(data_dir, as_of)
    assert_same_features(reference, mart, f"pandas reference vs mart at {as_of}")
    assert_same_features(
        reference, compute_features_duckdb(data_dir, as_of), f"pandas vs DuckDB at {as_of}"
    )
    return mart


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("reference-full")
    generate_dataset(directory, customers=1000, days=DAYS, seed=23, start=START)
    return directory


@pytest.mark.integration
@pytest.mark.slow
def test_the_mart_equals_pandas_and_duckdb_on_generated_data(generated, database_url):
    load(database_url, generated)
    for as_of in AS_OF_DATES:
        mart = assert_mart_equals_references(database_url, generated, as_of)

    # the comparison can fail only where the data moves: at the last day every feature
    # takes at least two values (NULL counts as one) and is non-NULL somewhere
    constant = [
        column
        for column in FEATURE_COLUMNS
        if column not in CALENDAR_COLUMNS and mart[column].nunique(dropna=False) < 2
    ]
    assert constant == []
    assert [column for column in FEATURE_COLUMNS if mart[column].isna().all()] == []


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("seed_columns_only", [False, True], ids=["minimal", "seed-columns"])
def test_without_optional_inputs_their_features_are_null(seed_columns_only, database_url, tmp_path):
    directory = tmp_path / "minimal"
    generate_dataset(directory, customers=400, days=DAYS, seed=24, start=START, minimal=True)
    if seed_columns_only:
        for name, columns in SEED_COLUMNS.items():
            frame = pd.read_csv(directory / name, dtype=str, keep_default_na=False)
            frame[columns].to_csv(directory / name, index=False)
    assert sorted(p.name for p in directory.iterdir()) == ["customers.csv", "sessions.csv"]
    load(database_url, directory)

    null_features = CATALOGUE_AND_EVENT_FEATURES
    if seed_columns_only:
        null_features += OPTIONAL_COLUMN_FEATURES
    for as_of in (date(2023, 6, 30), LAST_DAY):
        mart = assert_mart_equals_references(database_url, directory, as_of)
        assert [c for c in FEATURE_COLUMNS if mart[c].isna().all()] == list(
            c for c in FEATURE_COLUMNS if c in null_features
        )


# --- hand-made files: every edge in a few rows ---------------------------------------------

EDGE_DAY = date(2024, 3, 31)  # a Sunday

CUSTOMERS_HEADER = ["customer_id", "age", "gender", "location", "signup_date"]
SESSIONS_HEADER = [
    "session_id",
    "customer_id",
    "session_date",
    "product_viewed",
    "browsing_time_sec",
    "purchase_made",
    "purchase_amount",
    "pages_viewed",
    "added_to_cart",
    "discount_amount",
]
EVENTS_HEADER = [
    "event_id",
    "session_id",
    "customer_id",
    "event_time",
    "event_type",
    "product_id",
    "price",
]
PRODUCTS = [
    ["product_id", "product_name", "category", "price"],
    ["P1", "Novel", "Books", "9.99"],
    ["P2", "Tee", "apparel", "19.99"],  # lowercase sorts after every capital in byte order
    ["P3", "Jacket", "Apparel", "59.99"],
    ["P4", "Mystery box", "", "5.00"],  # a product without a category
]


def _at(days_before: int, clock: str = "12:00:00") -> str:
    return f"{EDGE_DAY - timedelta(days=days_before)} {clock}"


def edge_files(directory: Path) -> Path:
    """Customers planted on the edges of the definitions; comments say what each checks."""
    customers = [
        ["WINDOWS", "40", "female", "Leeds", "2022-06-01"],
        ["HALVES", "", "", "", "2024-01-01"],
        ["MONEY", "30", "male", "Paris", "2024-01-01"],
        ["TIES", "50", "female", "Lyon", "2024-01-01"],
        ["MIDNIGHT", "22", "male", "Milan", "2024-03-01"],
        ["FLAGS", "60", "female", "Berlin", "2024-02-01"],
        ["EVENT_ONLY", "35", "male", "Dublin", "2024-02-01"],
        ["SIGNUP_ON_D", "28", "female", "Madrid", str(EDGE_DAY)],
        ["SIGNUP_AFTER_D", "28", "female", "Madrid", str(EDGE_DAY + timedelta(days=1))],
        ["ROLLING", "45", "male", "Porto", "2024-01-01"],
        ["CARTS", "33", "female", "Ghent", "2024-01-01"],
    ]
    sessions: list[list[str]] = []

    def session(customer, started, product="P1", seconds="60", bought="false", amount="0",
                pages="3", cart="false", discount="0.00"):  # fmt: skip
        sessions.append(
            [
                f"S{len(sessions) + 1:03d}",
                customer,
                started,
                product,
                seconds,
                bought,
                amount,
                pages,
                cart,
                discount,
            ]  # fmt: skip
        )
        return sessions[-1][0]

    # WINDOWS: a purchase on each side of every window bound: (D-n, D] holds n days
    for days_before in (0, 6, 7, 29, 30, 89, 90, 119, 120, 364, 365, 500):
        session("WINDOWS", _at(days_before), bought="true", amount=f"{days_before + 1}.25")
        session("WINDOWS", _at(days_before, "23:59:59"))
    # HALVES: 32 sessions in the last 30 days, one of each kind: every rate is 1/32 = 0.03125,
    # a tie at the 5th decimal, rounded up (banker's rounding would give 0.0312)
    for k in range(32):
        first = k == 0
        session(
            "HALVES",
            _at(1 if first else 2 + k % 5),  # D-1 is a Saturday, D-2 ... D-6 Friday to Monday
            seconds="1" if first else "0",
            bought="true" if first else "false",
            amount="10.00" if first else "0",
            pages="1" if first else "0",
            cart="true" if first else "false",
        )
    # MONEY: an average order of 2.675 rounds to 2.68 (a float rounds it to 2.67), and a
    # purchase without a known discount does not count towards the discount share
    for amount, discount in (("2.67", ""), ("2.68", "0.00"), ("2.67", "1.50"), ("2.68", "0.00")):
        session("MONEY", _at(2), bought="true", amount=amount, discount=discount)
    session("MONEY", _at(1), seconds="45.5", amount="")  # no purchase: amount may be empty
    # TIES: hours 9 and 10 tie (9 wins), Monday and Tuesday tie (Monday), categories Books
    # and apparel tie (Books: "B" < "a"); uncategorised views are the most frequent yet ignored
    for started, product in (
        ("2024-03-25 10:00:00", "P1"),  # Monday
        ("2024-03-25 09:00:00", "P2"),
        ("2024-03-26 10:30:00", "P1"),  # Tuesday
        ("2024-03-26 09:45:00", "P2"),
        ("2024-03-27 13:00:00", "P4"),
        ("2024-03-28 14:00:00", "P404"),  # not in products.csv
        ("2024-03-29 15:00:00", "P4"),
    ):
        session("TIES", started, product=product, bought="true", amount="5.00")
    # MIDNIGHT: a session on D whose cart event falls after midnight counts on D + 1
    late = session("MIDNIGHT", _at(0, "23:59:00"), product="P3", cart="true")
    dated = session("MIDNIGHT", str(EDGE_DAY - timedelta(days=1)), product="P3")  # date only
    # FLAGS: the contract's spellings, empty optional values; no events at all, so its cart
    # rate comes from the sessions' flags
    for bought, cart, pages, seconds in (
        ("YES", "t", "", ""),
        ("No", "F", "4", "30"),
        ("1", "", "5", "31"),
        ("n", "TRUE", "", "32"),
    ):
        session("FLAGS", _at(40), bought=bought, amount="12.50" if bought in ("YES", "1") else "",
                cart=cart, pages=pages, seconds=seconds, discount="")  # fmt: skip
    session("SIGNUP_AFTER_D", _at(-1))
    # ROLLING, read day by day by the roll-forward test: one new category a day, so that its
    # counts are added in place: apparel; Books ties it and wins ("B" < "a"); apparel leads
    # and is bought; then two categories in one day (Books and Apparel, both bought), which
    # ties the top (Books wins) and the favourite three ways ("Apparel" wins)
    session("ROLLING", _at(3), product="P2")
    session("ROLLING", _at(2), product="P1")
    session("ROLLING", _at(1), product="P2", bought="true", amount="3.00")
    session("ROLLING", _at(0), product="P1", bought="true", amount="4.00")
    session("ROLLING", _at(0, "18:00:00"), product="P3", bought="true", amount="5.00")
    # CARTS: a session across midnight with a cart event on each side (counted once, on the
    # first day), and one of the next day with a cart event
    across = session("CARTS", _at(1, "23:59:00"), product="P2")
    next_day = session("CARTS", _at(0, "08:00:00"), product="P2")

    first_windows_session = sessions[0][0]
    events = [
        # an event counts for the customer it names, here one without sessions
        ["E01", first_windows_session, "EVENT_ONLY", _at(0), "view", "P1", "9.99"],
        ["E02", first_windows_session, "WINDOWS", _at(0), "view", "P1", "9.99"],
        ["E03", first_windows_session, "WINDOWS", _at(0), "cart", "P1", "9.99"],
        ["E04", first_windows_session, "WINDOWS", _at(0, "12:01:00"), "cart", "P2", "19.99"],
        ["E05", sessions[2][0], "WINDOWS", _at(6), "view", "P1", "9.99"],
        ["E06", late, "MIDNIGHT", _at(0, "23:59:10"), "view", "P3", "59.99"],
        ["E07", late, "MIDNIGHT", _at(-1, "00:00:30"), "cart", "P3", "59.99"],
        ["E08", dated, "MIDNIGHT", _at(1, "00:00:05"), "view", "P3", "59.99"],
        ["E09", dated, "MIDNIGHT", _at(1, "00:00:09"), "remove_from_cart", "P3", "59.99"],
        ["E10", across, "CARTS", _at(1, "23:59:30"), "cart", "P2", "19.99"],
        ["E11", across, "CARTS", _at(0, "00:00:10"), "cart", "P2", "19.99"],
        ["E12", next_day, "CARTS", _at(0, "08:01:00"), "cart", "P2", "19.99"],
    ]
    directory.mkdir(parents=True, exist_ok=True)
    for name, header, rows in (
        ("customers.csv", CUSTOMERS_HEADER, customers),
        ("sessions.csv", SESSIONS_HEADER, sessions),
        ("events.csv", EVENTS_HEADER, events),
        ("products.csv", PRODUCTS[0], PRODUCTS[1:]),
    ):
        with open(directory / name, "w", newline="") as handle:
            csv.writer(handle).writerows([header, *rows])
    return directory


@pytest.mark.integration
def test_the_mart_equals_the_references_on_the_edges(database_url, tmp_path):
    directory = edge_files(tmp_path / "edges")
    load(database_url, directory)
    for as_of in (EDGE_DAY, EDGE_DAY + timedelta(days=1)):
        mart = assert_mart_equals_references(database_url, directory, as_of)
        assert ("SIGNUP_AFTER_D" in set(mart["customer_id"])) == (as_of > EDGE_DAY)

    # and the planted values themselves, at D
    mart = mart_snapshot(database_url, EDGE_DAY).set_index("customer_id")
    windows = mart.loc["WINDOWS"]
    assert (windows.sessions_last_7d, windows.sessions_last_30d, windows.sessions_last_90d) == (
        4,
        8,
        12,
    )
    assert (windows.purchases_last_7d, windows.sessions_prev_90d) == (2, 8)
    assert windows.monetary_last_30d == 1.25 + 7.25 + 8.25 + 30.25
    assert windows.cltv_proxy_365d == sum(
        n + 1.25 for n in (0, 6, 7, 29, 30, 89, 90, 119, 120, 364)
    )
    halves = mart.loc["HALVES"]
    for column in (
        "purchase_rate",
        "avg_session_duration_sec",
        "avg_pages_per_session",
        "add_to_cart_rate",
        "weekend_session_share",
    ):
        assert halves[column] == 0.0313, column
    assert mart.loc["MONEY", "avg_order_value"] == 2.68
    assert mart.loc["MONEY", "discount_usage_share"] == 0.3333
    ties = mart.loc["TIES"]
    assert (ties.favourite_hour, ties.favourite_weekday) == (9, 1)
    assert (ties.top_category, ties.favourite_category, ties.categories_viewed) == (
        "Books",
        "Books",
        2,
    )
    midnight = mart.loc["MIDNIGHT"]
    # events decide, not the flags: the cart event of D's session happened on D + 1
    assert (midnight.add_to_cart_rate, midnight.product_views_per_session) == (0.0, 1.0)
    assert midnight.favourite_hour == 0  # the date-only session starts at midnight
    assert mart.loc["FLAGS", "add_to_cart_rate"] == round(2 / 3, 4)
    assert pd.isna(mart.loc["EVENT_ONLY", "product_views_per_session"])
    signup = mart.loc["SIGNUP_ON_D"]
    assert (signup.days_since_signup, signup.sessions_count, signup.recency_bucket) == (
        0,
        0,
        "never",
    )


@pytest.mark.integration
def test_rolled_snapshots_equal_the_reference_day_by_day(database_url, tmp_path):
    """Each day's roll-forward, from a full build four days before the edge day to the day
    after it, equals the pandas reference: the windows of the customers without new data are
    moved when the snapshot is read (WINDOWS has sessions on every window's edge), the new
    days' counts per category are added in place or, for several categories in a day, summed
    (ROLLING), and a session's cart events on both sides of midnight count once (CARTS)."""
    directory = edge_files(tmp_path / "edges")
    load(database_url, directory)
    first = EDGE_DAY - timedelta(days=4)
    with connect(database_url) as conn:
        features.build_features(conn, first)
    tops, carts = [], []
    for days in range(1, 6):
        as_of = first + timedelta(days=days)
        with connect(database_url) as conn:
            assert features.roll_forward_features(conn, as_of).mode == "incremental"
        mart = read_mart(database_url, as_of)
        assert_same_features(compute_features(directory, as_of), mart, f"rolled to {as_of}")
        rolling = mart.set_index("customer_id").loc["ROLLING"]
        tops.append((rolling.top_category, rolling.favourite_category))
        carts.append(mart.set_index("customer_id").loc["CARTS"].add_to_cart_rate)
    assert tops == [
        ("apparel", None),
        ("Books", None),
        ("apparel", "apparel"),
        ("Books", "Apparel"),
        ("Books", "Apparel"),
    ]
    assert carts[2:] == [1.0, 1.0, 1.0]  # 1 of 1 session, then 2 of 2


@pytest.mark.integration
def test_a_trend_on_a_rounding_tie_rounds_half_away_from_zero(database_url, tmp_path):
    directory = tmp_path / "trend"
    directory.mkdir()
    # 32 sessions and 32.00 spent in (D - 120, D - 30], 1 session and 1.00 in the last 30
    # days: both trends are 1 / (32 / 3) = 0.09375, which rounds to 0.0938
    sessions = [
        [
            f"S{k:02d}",
            "TREND",
            _at(31 + k),
            "P1",
            "60",
            "true" if k == 0 else "false",
            "32.00" if k == 0 else "0",
        ]  # fmt: skip
        for k in range(32)
    ]
    sessions.append(["S99", "TREND", _at(0), "P1", "60", "true", "1.00"])
    for name, rows in (
        ("customers.csv", [CUSTOMERS_HEADER, ["TREND", "", "", "", "2023-01-01"]]),
        ("sessions.csv", [SEED_COLUMNS["sessions.csv"], *sessions]),
    ):
        with open(directory / name, "w", newline="") as handle:
            csv.writer(handle).writerows(rows)
    load(database_url, directory)

    reference = compute_features(directory, EDGE_DAY)
    assert (reference.sessions_trend_30d[0], reference.monetary_trend_30d[0]) == (0.0938, 0.0938)
    assert_same_features(reference, mart_snapshot(database_url, EDGE_DAY), "trend on a tie")
