"""The analytics DAG on generated data: it recovers what the generator planted, agrees with
mlxtend on the same baskets, re-runs without duplicating, and is point-in-time correct.

One dataset is generated and ingested per module (with the ingest functions: the ingestion
DAG has its own tests), then `ecom_analytics` runs for real with dag.test().
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import numpy as np
import pandas as pd
import psycopg2
import pytest

from ecom_insights import ingest, runtime, warehouse
from ecom_insights.analytics import refresh
from ecom_insights.analytics.params import DEFAULT_PARAMS
from ecom_insights.generate import generate_dataset

CUSTOMERS = 3000
DAYS = 730
SEED = 42
START = date(2023, 1, 1)
AS_OF = START + timedelta(days=DAYS - 1)  # the last generated day
MARTS = (
    "product_funnel",
    "funnel_leakage",
    "cross_sell_rules",
    "cross_sell_recommendations",
    "demand_trends",
    "seasonality_profile",
    "seasonality_shift",
    "campaign_lift",
    "cohort_aov",
    "cohort_retention",
)
REFRESHES = (
    refresh.refresh_product_marts,
    refresh.refresh_demand_marts,
    refresh.refresh_campaign_lift,
    refresh.refresh_cohort_marts,
)


def frame(url: str, query: str, params=()) -> pd.DataFrame:
    with warehouse.connect(url) as conn, conn.cursor() as cur:
        cur.execute(query, params)
        return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])


def fingerprints(cur, as_of: date) -> dict[str, tuple[int, str]]:
    """Row count and md5 of every mart's rows for one as-of date."""
    result = {}
    for mart in MARTS:
        cur.execute(
            f"select count(*), md5(coalesce(string_agg(t::text, '|' order by t::text), '')) "
            f"from marts.{mart} t where as_of_date = %s",  # names from the constant above
            (as_of,),
        )
        result[mart] = cur.fetchone()
    return result


@pytest.fixture(scope="module")
def shop(pg_server_url, tmp_path_factory, airflow_db):
    """Generated data in a warehouse of its own, and the analytics DAG run once as of its
    last day."""
    data = tmp_path_factory.mktemp("analytics") / "data"
    truth = generate_dataset(data, customers=CUSTOMERS, days=DAYS, seed=SEED, start=START)
    name = f"ecom_analytics_{uuid.uuid4().hex[:12]}"
    with warehouse.connect(pg_server_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f'create database "{name}"')
    url = warehouse.with_database(pg_server_url, name)
    with warehouse.connect(url) as conn:
        ingest.ensure_schema(conn)
        ingest.land_files(conn, data)
        ingest.apply_row_rules(conn, datetime(AS_OF.year, AS_OF.month, AS_OF.day, tzinfo=UTC))
        ingest.merge_into_core(conn)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ECOM_HOME", str(tmp_path_factory.mktemp("home")))
        patch.setenv("ECOM_DATABASE_URL", url)
        patch.setenv("AIRFLOW_CONN_ECOM_WAREHOUSE", warehouse.airflow_connection_json(url))
        outcome = runtime.run_dag("ecom_analytics", AS_OF)
        yield SimpleNamespace(url=url, truth=truth, outcome=outcome)
    with warehouse.connect(pg_server_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f'drop database if exists "{name}" with (force)')


@pytest.mark.integration
def test_the_dag_fills_every_mart_for_the_as_of_date(shop):
    assert shop.outcome.state == "success", shop.outcome.failed_tasks
    with warehouse.connect(shop.url) as conn, conn.cursor() as cur:
        counts = fingerprints(cur, AS_OF)
    assert all(rows > 0 for rows, _ in counts.values()), counts


# ---- planted truth: funnel leak


@pytest.mark.integration
def test_the_planted_leak_category_ranks_first(shop):
    leakage = frame(
        shop.url,
        "select * from marts.funnel_leakage where as_of_date = %s order by level, leakage_rank",
        (AS_OF,),
    )
    categories = leakage[leakage.level == "category"]
    leak = shop.truth["funnel_leak"]["category"]
    assert categories.iloc[0].category == leak
    assert categories.iloc[0].leakage_score > 0
    # the leak shows as a rate well below the peers', with an interval that excludes them
    top = categories.iloc[0]
    assert top.view_to_purchase_upper < top.peer_view_to_purchase_rate
    assert (categories.iloc[1:].leakage_score < top.leakage_score / 10).all()
    products = leakage[leakage.level == "product"]
    assert (products.head(5).category == leak).all()
    assert set(leakage.funnel_source) == {"events"}


@pytest.mark.integration
def test_product_funnel_counts_are_nested_and_categories_add_up(shop):
    funnel = frame(shop.url, "select * from marts.product_funnel where as_of_date = %s", (AS_OF,))
    assert (funnel.views >= funnel.carts).all() and (funnel.carts >= funnel.purchases).all()
    by_level = funnel.groupby("level")[["views", "carts", "purchases"]].sum()
    assert by_level.loc["product"].tolist() == by_level.loc["category"].tolist()
    weeks = funnel.week_start.nunique()
    assert weeks == DEFAULT_PARAMS.funnel_weeks
    assert funnel[funnel.week_start == funnel.week_start.max()].is_partial_week.all()


# ---- planted truth: cross-sell pair


@pytest.mark.integration
def test_the_planted_pair_is_the_top_co_purchase_rule_by_lift(shop):
    rules = frame(
        shop.url,
        "select * from marts.cross_sell_rules where as_of_date = %s and rule_kind = "
        "'co_purchase' order by lift_rank",
        (AS_OF,),
    )
    antecedent = shop.truth["cross_sell"]["antecedent"]["product_id"]
    consequent = shop.truth["cross_sell"]["consequent"]["product_id"]
    top = rules.iloc[0]
    assert {top.antecedent_product_id, top.consequent_product_id} == {antecedent, consequent}
    planted = rules[
        (rules.antecedent_product_id == antecedent) & (rules.consequent_product_id == consequent)
    ].iloc[0]
    assert planted.confidence == pytest.approx(
        shop.truth["cross_sell"]["conditional_probability"], abs=0.1
    )
    # every rule kept is above the floor
    assert (rules.pair_count >= DEFAULT_PARAMS.min_pair_count).all()
    assert (rules.support >= DEFAULT_PARAMS.min_support).all()
    recommended = frame(
        shop.url,
        "select recommended_product_id from marts.cross_sell_recommendations "
        "where as_of_date = %s and product_id = %s order by recommendation_rank",
        (AS_OF, antecedent),
    )
    assert recommended.recommended_product_id.iloc[0] == consequent


# A lower floor than the default, so that the sequence rules of a small shop are not empty.
MLXTEND_PARAMS = replace(DEFAULT_PARAMS, min_pair_count=3)


def _baskets(url: str, as_of: date) -> dict[str, list[set[str]]]:
    """The baskets of every rule kind, rebuilt with pandas from core.events alone."""
    params = MLXTEND_PARAMS
    start = as_of - timedelta(days=params.cross_sell_window_days - 1)
    events = frame(
        url,
        "select session_id, customer_id, product_id, event_type, event_time::date as day "
        "from core.events where event_time >= %s and event_time < %s",
        (start, as_of + timedelta(days=1)),
    )
    touched = events.groupby(["session_id", "customer_id", "product_id"]).agg(
        day=("day", "min"),
        bought=("event_type", lambda types: (types == "purchase").any()),
        viewed=("event_type", lambda types: (types == "view").any()),
    )
    touched = touched.reset_index()
    items = touched[touched.bought]
    orders = items.groupby(["session_id", "customer_id"]).day.min().reset_index()
    followed = orders[orders.day <= as_of - timedelta(days=params.sequence_window_days)]
    later = followed.merge(orders, on="customer_id", suffixes=("", "_later"))
    later = later[
        (later.day_later > later.day)
        & (later.day_later <= later.day + timedelta(days=params.sequence_window_days))
    ]
    later_items = later.merge(
        items[["session_id", "product_id"]].rename(columns={"session_id": "session_id_later"}),
        on="session_id_later",
    )
    followed_items = items[items.session_id.isin(followed.session_id)]
    sequence = {
        order: set(group.product_id) for order, group in followed_items.groupby("session_id")
    }
    for order, group in later_items.groupby("session_id"):
        sequence[order] |= {f"then:{product}" for product in group.product_id}
    return {
        "co_purchase": [set(g.product_id) for _, g in items.groupby("session_id")],
        "co_view": [set(g.product_id) for _, g in touched[touched.viewed].groupby("session_id")],
        "sequence": list(sequence.values()),
    }


def _mlxtend_rules(baskets: list[set[str]], rule_kind: str) -> pd.DataFrame:
    from mlxtend.frequent_patterns import association_rules, fpgrowth
    from mlxtend.preprocessing import TransactionEncoder

    encoder = TransactionEncoder()
    onehot = pd.DataFrame(
        encoder.fit([sorted(b) for b in baskets]).transform([sorted(b) for b in baskets]),
        columns=encoder.columns_,
    )
    itemsets = fpgrowth(
        onehot, min_support=MLXTEND_PARAMS.min_support, use_colnames=True, max_len=2
    )
    rules = association_rules(
        itemsets, num_itemsets=len(baskets), metric="support", min_threshold=0
    )
    rules["antecedent"] = rules.antecedents.map(lambda s: next(iter(s)))
    rules["consequent"] = rules.consequents.map(lambda s: next(iter(s)))
    if rule_kind == "sequence":
        rules = rules[
            ~rules.antecedent.str.startswith("then:") & rules.consequent.str.startswith("then:")
        ].copy()
        rules["consequent"] = rules.consequent.str.removeprefix("then:")
    rules = rules[rules.antecedent != rules.consequent]
    pair_count = np.rint(rules.support * len(baskets)).astype(int)
    return rules[pair_count >= MLXTEND_PARAMS.min_pair_count].set_index(
        ["antecedent", "consequent"]
    )


@pytest.fixture(scope="module")
def low_floor_rules(shop) -> pd.DataFrame:
    """cross_sell_rules as of AS_OF mined with MLXTEND_PARAMS, in a transaction rolled back."""
    conn = psycopg2.connect(shop.url)
    try:
        refresh.refresh_product_marts(conn, AS_OF, MLXTEND_PARAMS)
        with conn.cursor() as cur:
            cur.execute("select * from marts.cross_sell_rules where as_of_date = %s", (AS_OF,))
            return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])
    finally:
        conn.rollback()
        conn.close()


@pytest.fixture(scope="module")
def baskets(shop) -> dict[str, list[set[str]]]:
    return _baskets(shop.url, AS_OF)


@pytest.mark.integration
@pytest.mark.parametrize("rule_kind", ["co_purchase", "co_view", "sequence"])
def test_rules_match_mlxtend_on_the_same_baskets(low_floor_rules, baskets, rule_kind):
    expected = _mlxtend_rules(baskets[rule_kind], rule_kind)
    mined = low_floor_rules[low_floor_rules.rule_kind == rule_kind].set_index(
        ["antecedent_product_id", "consequent_product_id"]
    )
    assert len(mined) >= 5
    assert set(mined.index) == set(expected.index)
    assert (mined.baskets == len(baskets[rule_kind])).all()
    mined = mined.loc[expected.index]
    for metric in (
        "antecedent support",
        "consequent support",
        "support",
        "confidence",
        "lift",
        "leverage",
        "conviction",
    ):
        np.testing.assert_allclose(
            mined[metric.replace(" ", "_")].to_numpy(dtype=float),
            expected[metric].to_numpy(dtype=float),
            rtol=1e-12,
            atol=1e-15,
            err_msg=f"{rule_kind} {metric}",
        )


# ---- planted truth: seasonality and campaigns


@pytest.mark.integration
def test_the_q4_peak_and_the_weekend_pattern_are_found(shop):
    profile = frame(
        shop.url,
        "select * from marts.seasonality_profile where as_of_date = %s and peak_rank <= 2",
        (AS_OF,),
    )
    for metric in ("sessions", "orders"):
        peaks = profile[profile.metric == metric]
        yearly = peaks[peaks.period == "yearly"].sort_values("peak_rank")
        weekly = peaks[peaks.period == "weekly"]
        assert yearly.label.iloc[0] == "Dec", metric
        assert set(yearly.position) == set(shop.truth["seasonality"]["peak_months"]), metric
        assert set(weekly.label) == set(shop.truth["seasonality"]["busiest_weekdays"]), metric
        assert yearly.seasonal_factor.min() > 1.15
    shift = frame(shop.url, "select * from marts.seasonality_shift where as_of_date = %s", (AS_OF,))
    # two years are too few to compare a year with the model's previous year: said, not guessed
    assert set(shift[shift.period == "yearly"].status) == {"insufficient_history"}
    assert set(shift[shift.period == "weekly"].status) == {"stable"}


@pytest.mark.integration
def test_each_planted_campaign_lift_lies_inside_its_interval(shop):
    lifts = frame(
        shop.url, "select * from marts.campaign_lift where as_of_date = %s", (AS_OF,)
    ).set_index("campaign_id")
    planted = {c["campaign_id"]: c["conversion_lift"] for c in shop.truth["campaigns"]["campaigns"]}
    assert set(lifts.index) == set(planted)
    for campaign_id, lift in planted.items():
        row = lifts.loc[campaign_id]
        assert row.conversion_lift_lower <= lift <= row.conversion_lift_upper, campaign_id
    # pooled over the campaigns, both estimates are close to the planted lifts (the intervals'
    # calibration itself is checked on simulated shops in tests/unit/test_analytics.py)
    weights = lifts.orders
    truth = np.average(np.log1p(pd.Series(planted)[lifts.index]), weights=weights)
    for estimate in ("conversion_lift", "concurrent_conversion_lift"):
        pooled = np.average(np.log1p(lifts[estimate]), weights=weights)
        assert pooled == pytest.approx(truth, abs=0.1), estimate


# ---- cohorts


@pytest.mark.integration
def test_cohorts_add_up_and_name_the_top_cohorts(shop):
    aov = frame(shop.url, "select * from marts.cohort_aov where as_of_date = %s", (AS_OF,))
    totals = frame(
        shop.url,
        "select (select count(*) from core.customers) as customers, count(*) "
        "filter (where purchase_made) as orders, sum(purchase_amount) as revenue "
        "from core.sessions",
    ).iloc[0]
    for kind, cohorts in aov.groupby("cohort_kind"):
        assert cohorts.customers.sum() == totals.customers, kind
        assert cohorts.orders.sum() == totals.orders, kind
        assert cohorts.revenue.sum() == totals.revenue, kind
        assert cohorts.is_top_revenue_cohort.sum() == DEFAULT_PARAMS.top_cohorts, kind
    assert set(aov.cohort_kind) == {"signup_month", "acquisition_channel", "favourite_category"}
    retention = frame(
        shop.url,
        "select * from marts.cohort_retention where as_of_date = %s and cohort_kind = "
        "'signup_month'",
        (AS_OF,),
    )
    # every generated customer's first session is on the signup day
    first_month = retention[retention.months_since_signup == 0]
    assert (first_month.retention_rate == 1).all()
    assert (retention.retention_rate <= 1).all()
    later = retention[retention.months_since_signup == 6]
    assert (later.retention_rate < 1).all()


# ---- re-runs and point-in-time correctness


@pytest.mark.integration
def test_a_re_run_replaces_the_as_of_date_rows_without_duplicating(shop):
    with warehouse.connect(shop.url) as conn, conn.cursor() as cur:
        before = fingerprints(cur, AS_OF)
    again = runtime.run_dag("ecom_analytics", AS_OF)
    assert again.state == "success"
    with warehouse.connect(shop.url) as conn, conn.cursor() as cur:
        assert fingerprints(cur, AS_OF) == before


@pytest.mark.integration
def test_data_after_the_as_of_date_changes_nothing_for_it(shop):
    as_of = date(2024, 6, 30)
    conn = psycopg2.connect(shop.url)
    try:
        with conn.cursor() as cur:
            for refresh_marts in REFRESHES:
                refresh_marts(conn, as_of)
            with_future = fingerprints(cur, as_of)
            cur.execute("delete from core.events where event_time >= %s", (as_of + timedelta(1),))
            cur.execute("delete from core.sessions where session_date > %s", (as_of,))
            cur.execute("delete from core.customers where signup_date > %s", (as_of,))
            cur.execute("delete from core.campaigns where start_date > %s", (as_of,))
            assert cur.rowcount > 0
            for refresh_marts in REFRESHES:
                refresh_marts(conn, as_of)
            assert fingerprints(cur, as_of) == with_future
            # the snapshot for the earlier date is a different one, not a copy of the last
            assert with_future != fingerprints(cur, AS_OF)
    finally:
        conn.rollback()
        conn.close()
