"""The feature store on a real PostgreSQL: the roll-forward equals a full rebuild, features at
D do not move when data after D arrives, and training labels are observed ones only."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from ecom_insights import features, ingest
from ecom_insights.generate import generate_dataset
from ecom_insights.warehouse import connect

START = date(2023, 1, 1)
DAYS = 400
LAST_DAY = START + timedelta(days=DAYS - 1)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("features-data")
    generate_dataset(directory, customers=800, days=DAYS, seed=11, start=START)
    return directory


def load(url: str, directory: Path) -> None:
    with connect(url) as conn:
        ingest.land_files(conn, directory, reprocess=True)
        ingest.apply_row_rules(conn, datetime(2024, 1, 1, tzinfo=UTC))
        ingest.merge_into_core(conn)


def snapshot(url: str, as_of: date) -> pd.DataFrame:
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "select * from marts.customer_features where as_of_date = %s order by customer_id",
            (as_of,),
        )
        columns = [d[0] for d in cur.description]
        return pd.DataFrame(cur.fetchall(), columns=columns)


def assert_same(left: pd.DataFrame, right: pd.DataFrame) -> None:
    assert list(left.columns) == list(right.columns)
    assert len(left) == len(right) > 0
    pd.testing.assert_frame_equal(left.reset_index(drop=True), right.reset_index(drop=True))


@pytest.mark.integration
def test_rolling_forward_equals_rebuilding(generated, database_url):
    load(database_url, generated)
    start = date(2023, 10, 30)
    with connect(database_url) as conn:
        features.build_features(conn, start)
    # one day, a week (the 7-day window turns over), and a gap across the 30/90/120-day edges
    for as_of in (date(2023, 10, 31), date(2023, 11, 7), date(2024, 1, 20)):
        with connect(database_url) as conn:
            rolled = features.roll_forward_features(conn, as_of)
        assert rolled.mode == "incremental"
        assert 0 < rolled.recomputed_customers < rolled.rows
        incremental = snapshot(database_url, as_of)
        with connect(database_url) as conn:
            features.build_features(conn, as_of)
        assert_same(incremental, snapshot(database_url, as_of))
    with connect(database_url) as conn:
        assert features.snapshot_dates(conn) == [
            start,
            date(2023, 10, 31),
            date(2023, 11, 7),
            date(2024, 1, 20),
        ]


@pytest.mark.integration
def test_a_new_day_recomputes_only_the_customers_it_touches(generated, database_url):
    load(database_url, generated)
    day = date(2023, 12, 14)
    with connect(database_url) as conn:
        features.build_features(conn, day - timedelta(days=1))
        active = features.changed_customers(conn, day - timedelta(days=1), day)
        rolled = features.refresh_features(conn, day, "auto", earliest_new_activity=day)
    assert rolled.mode == "incremental"
    assert rolled.recomputed_customers == len(active)
    assert rolled.recomputed_customers < rolled.rows / 5


@pytest.mark.integration
def test_auto_rebuilds_when_late_data_reaches_an_earlier_snapshot(generated, database_url):
    load(database_url, generated)
    with connect(database_url) as conn:
        features.build_features(conn, date(2023, 6, 1))
        late = features.refresh_features(conn, date(2023, 6, 2), "auto", date(2023, 5, 20))
        unknown = features.refresh_features(conn, date(2023, 6, 3), "auto", None)
        new = features.refresh_features(conn, date(2023, 6, 4), "auto", date(2023, 6, 4))
    assert (late.mode, unknown.mode, new.mode) == ("full", "full", "incremental")
    assert new.previous_date == date(2023, 6, 3)


@pytest.mark.integration
def test_auto_builds_in_full_once_the_chain_is_as_long_as_allowed(
    generated, database_url, monkeypatch
):
    monkeypatch.setattr(features, "MAX_CHAIN_VERSIONS", 3)
    load(database_url, generated)
    first = date(2023, 9, 1)
    with connect(database_url) as conn:
        features.build_features(conn, first)
        modes = [
            features.refresh_features(conn, day, "auto", day).mode
            for day in (first + timedelta(days=n) for n in range(1, 5))
        ]
    # the full build and two roll-forwards make a chain of 3; the next day starts a new one
    assert modes == ["incremental", "incremental", "full", "incremental"]
    with connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("select as_of_date, base_date from marts.feature_snapshots order by 1")
        bases = dict(cur.fetchall())
    assert bases[first + timedelta(days=4)] == first + timedelta(days=3)


@pytest.mark.integration
def test_auto_builds_in_full_once_the_chain_spans_too_many_days(generated, database_url):
    load(database_url, generated)
    first = date(2023, 9, 1)
    limit = timedelta(days=features.MAX_CHAIN_DAYS)
    with connect(database_url) as conn:
        features.build_features(conn, first)
        # weekly batches: each read moves the windows over every day since the full build
        modes = [
            features.refresh_features(conn, day, "auto", day).mode
            for day in (first + limit / 2, first + limit, first + limit * 3 // 2)
        ]
    assert modes == ["incremental", "incremental", "full"]


@pytest.mark.integration
def test_data_after_the_as_of_date_changes_no_feature(
    generated, database_url, tmp_path, split_files
):
    as_of = date(2023, 11, 15)
    load(database_url, split_files(generated, tmp_path / "until", None, as_of))
    with connect(database_url) as conn:
        features.build_features(conn, as_of)
    before = snapshot(database_url, as_of)

    load(database_url, generated)  # the rest of the year arrives
    with connect(database_url) as conn:
        assert features.data_end(conn) == LAST_DAY
        features.build_features(conn, as_of)
    assert_same(before, snapshot(database_url, as_of))


@pytest.mark.integration
def test_training_labels_are_observed_purchases_in_the_next_90_days(generated, database_url):
    load(database_url, generated)
    as_of = LAST_DAY - timedelta(days=90)
    with connect(database_url) as conn:
        frame = features.training_set(conn, as_of)
        with pytest.raises(ValueError, match="not observed yet"):
            features.training_set(conn, as_of + timedelta(days=1))

    sessions = pd.read_csv(
        generated / "sessions.csv", usecols=["customer_id", "session_date", "purchase_made"]
    )
    day = pd.to_datetime(sessions.session_date).dt.date
    window = (day > as_of) & (day <= as_of + timedelta(days=90)) & sessions.purchase_made
    buyers = set(sessions.loc[window, "customer_id"])
    customers = pd.read_csv(generated / "customers.csv", usecols=["customer_id", "signup_date"])
    eligible = customers[pd.to_datetime(customers.signup_date).dt.date <= as_of]
    expected = {cid: cid not in buyers for cid in eligible.customer_id}

    assert dict(zip(frame.customer_id, frame.churned_90d, strict=True)) == expected
    assert 0.2 < frame.churned_90d.mean() < 0.98  # both classes are present
    assert (frame.as_of_date == as_of).all()


# the state's trailing windows are those at its version's date, not at a later one
WINDOW_COLUMNS = [
    "sessions_last_7d",
    "sessions_last_30d",
    "sessions_last_90d",
    "purchases_last_7d",
    "purchases_last_30d",
    "purchases_last_90d",
    "monetary_last_30d",
    "monetary_last_365d",
    "sessions_prev_90d",
    "monetary_prev_90d",
]
ARRAY_GROUPS = {"categories": ("category_sessions", "category_purchases")}


def state_at(url: str, as_of: date) -> pd.DataFrame:
    """Every customer's state at `as_of` (their latest version on or before it) with the
    counts per value as sorted tuples (the arrays are in any order)."""
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            """
            select distinct on (customer_id) *
            from intermediate.int_customer_feature_state
            where as_of_date <= %s
            order by customer_id, as_of_date desc
            """,
            (as_of,),
        )
        columns = [d[0] for d in cur.description]
        frame = pd.DataFrame(cur.fetchall(), columns=columns)
    for values, counts in ARRAY_GROUPS.items():
        frame[values] = [
            None if row[0] is None else tuple(sorted(zip(*row, strict=True)))
            for row in zip(frame[values], *(frame[c] for c in counts), strict=True)
        ]
        frame = frame.drop(columns=list(counts))
    for column in ("hour_sessions", "weekday_sessions"):
        frame[column] = [None if v is None else tuple(v) for v in frame[column]]
    return frame


def assert_same_state(rolled: pd.DataFrame, fresh: pd.DataFrame, as_of: date) -> None:
    """The rolled state equals the fresh one at `as_of` in every column but the version's
    date, and in the trailing windows too where the version is at `as_of`: a customer's
    latest version holds their exact all-time state at the later date, and the windows at
    its own date (the mart's view moves them, which the snapshots' equality tests)."""
    assert_same(
        rolled.drop(columns=["as_of_date", *WINDOW_COLUMNS]),
        fresh.drop(columns=["as_of_date", *WINDOW_COLUMNS]),
    )
    current = (rolled.as_of_date == as_of).to_numpy()
    assert 0 < current.sum() < len(rolled)
    assert_same(rolled.loc[current, WINDOW_COLUMNS], fresh.loc[current, WINDOW_COLUMNS])
    # and an older version's windows are not those at `as_of` for every customer
    assert not rolled.loc[~current, WINDOW_COLUMNS].equals(fresh.loc[~current, WINDOW_COLUMNS])


@pytest.mark.integration
def test_the_rolled_state_equals_a_fresh_one_and_a_rerun_changes_nothing(generated, database_url):
    load(database_url, generated)
    previous, as_of = date(2023, 12, 13), date(2023, 12, 20)
    with connect(database_url) as conn:
        features.build_features(conn, previous)
        rolled = features.roll_forward_features(conn, as_of)
    assert rolled.mode == "incremental"
    with connect(database_url) as conn:
        # a version for the customers with new data, and for no one else (a customer whose
        # only change is a session leaving a window, or a signup, keeps the version at P)
        assert features.state_dates(conn) == [previous, as_of]
        changed = features.changed_customers(conn, previous, as_of)
        with conn.cursor() as cur:
            cur.execute(
                "select customer_id from intermediate.int_customer_feature_state "
                "where as_of_date = %s",
                (as_of,),
            )
            versioned = {row[0] for row in cur.fetchall()}
            assert versioned == set(changed)
    state, rows = state_at(database_url, as_of), snapshot(database_url, as_of)

    with connect(database_url) as conn:  # the same roll again: the same state and rows
        features.roll_forward_features(conn, as_of, previous)
    assert_same(state, state_at(database_url, as_of))
    assert_same(rows, snapshot(database_url, as_of))

    with connect(database_url) as conn:  # a full build: every customer's version at D
        features.build_features(conn, as_of)
        # the state at P stays: the snapshot at P reads it
        assert features.state_dates(conn) == [previous, as_of]
    assert_same_state(state, state_at(database_url, as_of), as_of)
    assert_same(rows, snapshot(database_url, as_of))


@pytest.mark.integration
def test_state_versions_are_kept_while_a_snapshot_reads_them(generated, database_url):
    load(database_url, generated)
    first, second, third = date(2023, 9, 1), date(2023, 9, 2), date(2023, 9, 3)
    with connect(database_url) as conn:
        features.build_features(conn, first)
        features.roll_forward_features(conn, second)
        features.roll_forward_features(conn, third)
        assert features.state_dates(conn) == [first, second, third]
    rolled = snapshot(database_url, third)
    with connect(database_url) as conn:
        # the snapshot at 09-03 now chains from the full state at 09-02, with the same rows;
        # the snapshot at 09-01 keeps its state
        features.build_features(conn, second)
        assert features.state_dates(conn) == [first, second, third]
        features.build_features(conn, third)
        assert features.state_dates(conn) == [first, second, third]
        features.build_features(conn, date(2023, 9, 10))
        assert features.snapshot_dates(conn) == [first, second, third, date(2023, 9, 10)]
    assert_same(rolled, snapshot(database_url, third))


@pytest.mark.integration
def test_rolling_forward_builds_in_full_where_it_cannot_roll(generated, database_url):
    load(database_url, generated)
    with connect(database_url) as conn:
        features.build_features(conn, date(2023, 9, 1))
        features.roll_forward_features(conn, date(2023, 9, 10))
        # no snapshot at 09-03 to roll forward from (the full build at 09-05 is the start of
        # the chain of the snapshot at 09-10 from now on)
        from_nothing = features.roll_forward_features(conn, date(2023, 9, 5), date(2023, 9, 3))
        # the snapshot at 09-10 reads the state at 09-07
        through_later = features.roll_forward_features(conn, date(2023, 9, 7), date(2023, 9, 5))
        # ... but not the state at 09-06: its chain now starts at 09-07
        before_later = features.roll_forward_features(conn, date(2023, 9, 6), date(2023, 9, 5))
    assert (from_nothing.mode, through_later.mode) == ("full", "full")
    assert before_later.mode == "incremental"
    rebuilt = {d: snapshot(database_url, d) for d in (date(2023, 9, 6), date(2023, 9, 10))}
    with connect(database_url) as conn:
        for as_of in rebuilt:
            features.build_features(conn, as_of)
    for as_of, frame in rebuilt.items():
        assert_same(frame, snapshot(database_url, as_of))


@pytest.mark.integration
def test_a_warehouse_with_snapshot_tables_is_migrated(generated, database_url):
    """An earlier version kept each snapshot as a partition of a marts.customer_features
    table: ensure_feature_models replaces it by the view, with the same dates rebuilt."""
    load(database_url, generated)
    days = [date(2023, 8, 1), date(2023, 8, 20)]
    with connect(database_url) as conn:
        for as_of in days:
            features.build_features(conn, as_of)
    expected = {as_of: snapshot(database_url, as_of) for as_of in days}
    with connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("drop view marts.customer_features")
        cur.execute("drop table marts.feature_snapshots")
        cur.execute(
            "create table marts.customer_features (customer_id text, as_of_date date) "
            "partition by list (as_of_date)"
        )
        for as_of in days:
            cur.execute(
                f"create table marts.customer_features_{as_of:%Y%m%d} partition of "
                "marts.customer_features for values in (%s)",
                (as_of,),
            )
    with connect(database_url) as conn:
        features.ensure_feature_models(conn)
        features.ensure_feature_models(conn)  # idempotent
        assert features.snapshot_dates(conn) == days
    for as_of in days:
        assert_same(expected[as_of], snapshot(database_url, as_of))


@pytest.mark.integration
def test_current_models_are_left_alone_and_missing_ones_recreated(generated, database_url):
    """ensure_feature_models runs before every build: when the models are as this code makes
    them it changes nothing (no DDL, so no locks on the views), and a view that a cascade
    elsewhere dropped is created again."""
    load(database_url, generated)
    with connect(database_url) as conn:
        features.ensure_feature_models(conn)
    with connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("select 'marts.customer_features'::regclass::oid")
        view_oid = cur.fetchone()[0]
        features.ensure_feature_models(conn)
        cur.execute("select 'marts.customer_features'::regclass::oid")
        assert cur.fetchone()[0] == view_oid
        # the one statement that ran took no lock beyond the catalogue's
        cur.execute(
            "select count(*) from pg_locks where pid = pg_backend_pid() and mode like '%Exclusive%'"
            " and locktype = 'relation'"
        )
        assert cur.fetchone()[0] == 0
        cur.execute("drop view intermediate.int_sessions_enriched cascade")
    with connect(database_url) as conn:
        features.ensure_feature_models(conn)
        built = features.build_features(conn, date(2023, 8, 1))
    assert built.rows > 0
    with connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("select to_regclass('intermediate.int_sessions_enriched') is not null")
        assert cur.fetchone()[0]
