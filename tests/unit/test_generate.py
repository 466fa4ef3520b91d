"""The demo-data generator: file contract, internal consistency, and that every planted effect
is recoverable from the files with plain pandas statistics."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecom_insights.generate import FILE_COLUMNS, GeneratorParams, generate_dataset

START = date(2023, 1, 1)
DAYS = 730
SHIFT = date(2024, 1, 1)


def _read(out_dir: Path) -> dict[str, pd.DataFrame]:
    dates = {
        "customers.csv": ["signup_date"],
        "sessions.csv": ["session_date"],
        "events.csv": ["event_time"],
        "campaigns.csv": ["start_date", "end_date"],
        "customer_truth.csv": ["dropped_out_on"],
    }
    return {
        name: pd.read_csv(out_dir / name, parse_dates=dates.get(name, False))
        for name in FILE_COLUMNS
        if (out_dir / name).exists()
    }


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("demo")
    truth = generate_dataset(out_dir, customers=4000, days=DAYS, seed=11, start=START)
    return truth, _read(out_dir), out_dir


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("shifted")
    truth = generate_dataset(
        out_dir, customers=4000, days=DAYS, seed=11, start=START, shift_date=SHIFT
    )
    return truth, _read(out_dir)


def _with_category(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    products = frames["products.csv"][["product_id", "category"]]
    return frames["sessions.csv"].merge(products, left_on="product_viewed", right_on="product_id")


# ---- the file contract


def test_every_file_has_exactly_the_contract_columns(demo):
    _, _, out_dir = demo
    for name, columns in FILE_COLUMNS.items():
        header = (out_dir / name).read_text().split("\n", 1)[0]
        assert header == ",".join(columns), name


def test_row_counts_in_ground_truth_match_the_files(demo):
    truth, frames, out_dir = demo
    assert set(truth["row_counts"]) == set(FILE_COLUMNS)
    for name, frame in frames.items():
        assert truth["row_counts"][name] == len(frame), name
    assert json.loads((out_dir / "ground_truth.json").read_text()) == truth


def test_ids_are_unique_and_formatted(demo):
    _, frames, _ = demo
    for name, column, pattern in [
        ("customers.csv", "customer_id", r"C\d{7}"),
        ("sessions.csv", "session_id", r"S\d{9}"),
        ("products.csv", "product_id", r"P\d{4}"),
        ("events.csv", "event_id", r"E\d{10}"),
        ("campaigns.csv", "campaign_id", r"CMP\d{2}"),
    ]:
        ids = frames[name][column]
        assert ids.is_unique, name
        assert ids.str.fullmatch(pattern).all(), name
    assert len(frames["products.csv"]) == 200
    assert frames["products.csv"].category.nunique() == 10
    assert 6 <= len(frames["campaigns.csv"]) <= 10


def test_referential_integrity(demo):
    _, frames, _ = demo
    customers, sessions, events = (
        frames[n] for n in ("customers.csv", "sessions.csv", "events.csv")
    )
    products, campaigns = frames["products.csv"], frames["campaigns.csv"]
    assert sessions.customer_id.isin(customers.customer_id).all()
    assert sessions.product_viewed.isin(products.product_id).all()
    assert sessions.campaign_id.dropna().isin(campaigns.campaign_id).all()
    assert events.session_id.isin(sessions.session_id).all()
    assert events.product_id.isin(products.product_id).all()
    owner = events.session_id.map(sessions.set_index("session_id").customer_id)
    assert (owner == events.customer_id).all()
    price = events.product_id.map(products.set_index("product_id").price)
    assert np.allclose(events.price, price)


def test_some_profiles_are_incomplete_and_the_rest_are_filled(demo):
    _, frames, _ = demo
    customers = frames["customers.csv"]
    missing = customers[["age", "gender", "location"]].isna()
    assert 0.015 < missing.all(axis=1).mean() < 0.05
    assert (missing.any(axis=1) == missing.all(axis=1)).all()
    assert customers[["customer_id", "signup_date", "acquisition_channel"]].notna().all().all()


def test_purchase_amounts_and_discounts_are_consistent(demo, tmp_path):
    _, frames, out_dir = demo
    sessions = frames["sessions.csv"]
    bought = sessions.purchase_made
    assert sessions.purchase_made.dtype == bool and sessions.added_to_cart.dtype == bool
    assert (sessions.loc[~bought, ["purchase_amount", "discount_amount"]] == 0).all().all()
    assert (sessions.loc[bought, "purchase_amount"] > 0).all()
    assert (sessions.discount_amount >= 0).all()
    assert sessions.loc[bought, "added_to_cart"].all()
    cents = sessions.purchase_amount * 100
    assert np.allclose(cents, cents.round())
    raw_amounts = pd.read_csv(
        out_dir / "sessions.csv", usecols=["purchase_amount"], dtype=str
    ).purchase_amount
    assert raw_amounts.str.fullmatch(r"\d+\.\d\d").all()
    assert (sessions.pages_viewed >= 1).all() and (sessions.browsing_time_sec > 0).all()


def test_events_tell_the_same_story_as_sessions(demo):
    _, frames, _ = demo
    sessions = frames["sessions.csv"].set_index("session_id")
    events = frames["events.csv"]
    by_type = events.groupby(["session_id", "event_type"]).size().unstack(fill_value=0)
    by_type = by_type.reindex(sessions.index, fill_value=0)
    assert ((by_type["cart"] > 0) == sessions.added_to_cart).all()
    assert ((by_type["purchase"] > 0) == sessions.purchase_made).all()
    assert (by_type["remove_from_cart"] <= (sessions.added_to_cart & ~sessions.purchase_made)).all()
    first = events.groupby("session_id").first()
    assert (first.event_type == "view").all()
    assert (first.product_id == sessions.product_viewed.reindex(first.index)).all()
    assert (first.event_time == sessions.session_date.reindex(first.index)).all()
    started = events.session_id.map(sessions.session_date)
    seconds = events.session_id.map(sessions.browsing_time_sec)
    assert (events.event_time >= started).all()
    assert (events.event_time <= started + pd.to_timedelta(seconds, unit="s")).all()
    purchases = events[events.event_type == "purchase"]
    gross = purchases.groupby("session_id").price.sum()
    bought = sessions[sessions.purchase_made]
    paid = gross.reindex(bought.index) - bought.discount_amount
    assert np.allclose(paid, bought.purchase_amount)
    assert not purchases.duplicated(["session_id", "product_id"]).any()
    assert (by_type["view"] <= sessions.pages_viewed).all()


def test_sessions_fall_in_the_window_and_after_signup(demo):
    _, frames, _ = demo
    customers, sessions = frames["customers.csv"], frames["sessions.csv"]
    end = pd.Timestamp(START) + pd.Timedelta(days=DAYS)
    assert sessions.session_date.min() >= pd.Timestamp(START)
    assert sessions.session_date.max() < end
    signup = sessions.customer_id.map(customers.set_index("customer_id").signup_date)
    assert (sessions.session_date.dt.normalize() >= signup).all()
    assert set(customers.customer_id) == set(sessions.customer_id)
    quarters = customers.signup_date.dt.to_period("Q").value_counts()
    assert len(quarters) == 8 and quarters.min() > 0.03 * len(customers)
    assert sessions.session_date.dt.hour.nunique() == 24


# ---- determinism


def test_same_seed_same_bytes_whatever_the_chunk_size(tmp_path):
    kwargs = dict(customers=2500, days=200, start=START, seed=3)
    generate_dataset(tmp_path / "a", customers_per_chunk=1000, **kwargs)
    generate_dataset(tmp_path / "b", customers_per_chunk=50_000, **kwargs)
    generate_dataset(tmp_path / "c", **{**kwargs, "seed": 4})
    for name in FILE_COLUMNS:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "sessions.csv").read_bytes() != (
        tmp_path / "c" / "sessions.csv"
    ).read_bytes()


def test_minimal_writes_only_customers_and_sessions_identical_to_a_full_run(tmp_path):
    kwargs = dict(customers=1500, days=200, start=START, seed=5)
    generate_dataset(tmp_path / "full", **kwargs)
    truth = generate_dataset(tmp_path / "minimal", minimal=True, **kwargs)
    assert sorted(p.name for p in (tmp_path / "minimal").iterdir()) == [
        "customers.csv",
        "sessions.csv",
    ]
    assert set(truth["row_counts"]) == {"customers.csv", "sessions.csv"}
    for name in ("customers.csv", "sessions.csv"):
        assert (tmp_path / "full" / name).read_bytes() == (tmp_path / "minimal" / name).read_bytes()
    generate_dataset(tmp_path / "full", minimal=True, **kwargs)
    assert not (tmp_path / "full" / "events.csv").exists()  # no stale files from the full run
    assert not (tmp_path / "full" / "ground_truth.json").exists()


@pytest.mark.parametrize(
    "arguments",
    [
        {"customers": 0},
        {"days": 0},
        {"shift_date": date(2022, 12, 31)},
        {"shift_date": START},
        {"params": GeneratorParams(leak_category="Garden")},
    ],
)
def test_rejects_arguments_it_cannot_honour(tmp_path, arguments):
    with pytest.raises(ValueError):
        generate_dataset(tmp_path, **{"customers": 100, "days": 100, "start": START, **arguments})


# ---- planted truth 1 and 2: buy-till-you-die and churn drivers


def test_sessions_follow_the_latent_rate_and_stop_at_dropout(demo):
    truth, frames, _ = demo
    sessions, latent = frames["sessions.csv"], frames["customer_truth.csv"]
    assert 17 <= len(sessions) / len(latent) <= 23  # ~20 per customer at 730 days
    last = sessions.groupby("customer_id").session_date.max().dt.normalize()
    dropped = latent.dropna(subset=["dropped_out_on"]).set_index("customer_id")
    assert (last.reindex(dropped.index) < dropped.dropped_out_on).all()
    assert 0.2 < len(dropped) / len(latent) < 0.7
    customers = frames["customers.csv"].set_index("customer_id")
    alive_days = (
        (
            dropped.dropped_out_on.reindex(customers.index).fillna(
                pd.Timestamp(START) + pd.Timedelta(days=DAYS)
            )
        )
        - customers.signup_date
    ).dt.days
    observed_rate = sessions.groupby("customer_id").size() / alive_days
    latent_rate = latent.set_index("customer_id").session_rate_per_day
    assert observed_rate.corr(latent_rate, method="spearman") > 0.5
    gamma = truth["buy_till_you_die"]["session_rate_per_day_gamma"]
    ordinary = latent[~latent.high_value].session_rate_per_day
    assert ordinary.mean() == pytest.approx(gamma["shape"] / gamma["rate"], rel=0.08)


def _dropped_versus_retained(latent: pd.DataFrame) -> pd.DataFrame:
    return latent.groupby(latent.dropped_out_on.notna())[
        ["median_browsing_time_sec", "session_rate_per_day", "discount_propensity"]
    ].mean()


def test_dropouts_browse_less_visit_less_and_use_more_discounts(demo):
    truth, frames, _ = demo
    means = _dropped_versus_retained(frames["customer_truth.csv"])
    assert (
        means.loc[True, "median_browsing_time_sec"]
        < 0.85 * means.loc[False, "median_browsing_time_sec"]
    )
    assert means.loc[True, "session_rate_per_day"] < 0.8 * means.loc[False, "session_rate_per_day"]
    assert means.loc[True, "discount_propensity"] > 1.15 * means.loc[False, "discount_propensity"]
    directions = {d["driver"]: d["direction"] for d in truth["churn_drivers"]}
    assert directions == {
        "browsing_time": "lower_increases_churn",
        "session_frequency": "lower_increases_churn",
        "discount_use": "higher_increases_churn",
    }


def test_churn_drivers_are_visible_in_the_sessions(demo):
    """What a churn model sees: customers silent in the last 90 days had shorter browsing and
    more discounted purchases before then."""
    _, frames, _ = demo
    sessions = frames["sessions.csv"]
    cutoff = pd.Timestamp(START) + pd.Timedelta(days=DAYS - 90)
    before = sessions[sessions.session_date < cutoff]
    regulars = before.groupby("customer_id").filter(lambda s: len(s) >= 3)
    silent = ~regulars.customer_id.isin(sessions[sessions.session_date >= cutoff].customer_id)
    browsing = regulars.groupby(silent.values).browsing_time_sec.mean()
    assert browsing[True] < 0.9 * browsing[False]
    purchases = regulars[regulars.purchase_made]
    discounted = (purchases.discount_amount > 0).groupby(silent[regulars.purchase_made]).mean()
    assert discounted[True] > 1.1 * discounted[False]


def test_without_churn_drivers_dropout_ignores_browsing(tmp_path):
    params = replace(
        GeneratorParams(),
        churn_coefficient_browsing_time=0.0,
        churn_coefficient_session_frequency=0.0,
        churn_coefficient_discount_use=0.0,
    )
    generate_dataset(tmp_path, customers=4000, days=DAYS, seed=11, start=START, params=params)
    means = _dropped_versus_retained(pd.read_csv(tmp_path / "customer_truth.csv"))
    assert means.loc[True, "median_browsing_time_sec"] == pytest.approx(
        means.loc[False, "median_browsing_time_sec"], rel=0.07
    )
    assert means.loc[True, "discount_propensity"] == pytest.approx(
        means.loc[False, "discount_propensity"], rel=0.07
    )


# ---- planted truth 3: seasonality


def test_weekends_are_busier_and_november_december_peak(demo):
    truth, frames, _ = demo
    started = frames["sessions.csv"].session_date
    per_day = started.dt.normalize().value_counts()
    weekend = per_day.index.dayofweek >= 5
    assert per_day[weekend].mean() > 1.1 * per_day[~weekend].mean()
    # The customer base grows, so raw counts rise towards the end: compare each month with
    # its centred 2x12 moving average (ratio-to-moving-average seasonal index).
    monthly = started.dt.to_period("M").value_counts().sort_index()
    trend = monthly.rolling(12, center=True).mean().rolling(2).mean().shift(-1)
    seasonal_index = (monthly / trend).dropna()
    top_two = seasonal_index.sort_values().index[-2:]
    assert {period.month for period in top_two} == {11, 12}
    assert seasonal_index[top_two].min() > 1.2
    assert truth["seasonality"]["peak_month"] == 12
    assert set(truth["seasonality"]["busiest_weekdays"]) == {"Sat", "Sun"}


# ---- planted truth 4: campaign lifts


def test_campaign_sessions_convert_higher_by_the_planted_lift(tmp_path):
    # Campaign purchases are few in the shared demo; a larger minimal run measures lifts to
    # about +-0.03 pooled.
    truth = generate_dataset(
        tmp_path, customers=30_000, days=365, seed=11, start=START, minimal=True
    )
    sessions = pd.read_csv(
        tmp_path / "sessions.csv",
        parse_dates=["session_date"],
        usecols=["session_date", "purchase_made", "campaign_id"],
    )
    campaigns = truth["campaigns"]["campaigns"]
    assert 6 <= len(campaigns) <= 10
    planted, measured, weights = [], [], []
    for campaign in campaigns:
        window = sessions[
            sessions.session_date.between(
                pd.Timestamp(campaign["start_date"]),
                pd.Timestamp(campaign["end_date"]) + pd.Timedelta(days=1),
                inclusive="left",
            )
        ]
        carrying = window.campaign_id == campaign["campaign_id"]
        assert window.campaign_id[~carrying].isna().all()
        planted.append(campaign["conversion_lift"])
        measured.append(
            window[carrying].purchase_made.mean() / window[~carrying].purchase_made.mean() - 1
        )
        weights.append(carrying.sum())
    planted, measured = np.array(planted), np.array(measured)
    assert np.average(measured, weights=weights) == pytest.approx(
        np.average(planted, weights=weights), abs=0.05
    )
    assert pd.Series(planted).corr(pd.Series(measured), method="spearman") > 0.8
    campaign_days = pd.concat(
        [pd.Series(pd.date_range(c["start_date"], c["end_date"])) for c in campaigns]
    )
    outside = sessions[~sessions.session_date.dt.normalize().isin(campaign_days)]
    assert outside.campaign_id.isna().all()


# ---- planted truth 5 and 6: funnel leak and cross-sell pair


def test_leak_category_has_the_lowest_view_to_purchase_rate(demo):
    truth, frames, _ = demo
    leak = truth["funnel_leak"]["category"]
    sessions = _with_category(frames)
    views = sessions.category.value_counts()
    assert views.index[0] == leak  # much viewed ...
    conversion = sessions.groupby("category").purchase_made.mean()
    assert conversion.idxmin() == leak  # ... rarely bought
    assert conversion[leak] < 0.5 * conversion.drop(leak).min()
    events = frames["events.csv"].merge(
        frames["products.csv"][["product_id", "category"]], on="product_id"
    )
    funnel = events.groupby(["category", "event_type"]).size().unstack()
    event_rate = funnel["purchase"] / funnel["view"]
    assert event_rate.idxmin() == leak


def test_cross_sell_pair_has_the_top_lift(demo):
    truth, frames, _ = demo
    purchases = frames["events.csv"].query("event_type == 'purchase'")[["session_id", "product_id"]]
    baskets = purchases.session_id.nunique()
    pairs = purchases.merge(purchases, on="session_id").query("product_id_x < product_id_y")
    support = pairs.groupby(["product_id_x", "product_id_y"]).size()
    support = support[support >= 10]
    share = purchases.product_id.value_counts() / baskets
    lift = (
        support
        / baskets
        / (
            share.reindex(support.index.get_level_values(0)).values
            * share.reindex(support.index.get_level_values(1)).values
        )
    )
    planted = tuple(
        sorted(
            [
                truth["cross_sell"]["antecedent"]["product_id"],
                truth["cross_sell"]["consequent"]["product_id"],
            ]
        )
    )
    assert lift.idxmax() == planted
    assert (lift.drop(planted) < lift[planted] / 5).all()
    antecedent = truth["cross_sell"]["antecedent"]["product_id"]
    consequent = truth["cross_sell"]["consequent"]["product_id"]
    with_antecedent = purchases[purchases.product_id == antecedent].session_id
    rate = purchases[purchases.session_id.isin(with_antecedent)].product_id.eq(consequent).sum()
    assert rate / len(with_antecedent) == pytest.approx(
        truth["cross_sell"]["conditional_probability"], abs=0.1
    )


# ---- planted truth 7: the early high-value trait


def test_high_value_trait_shows_early_and_drives_next_year_value(demo):
    truth, frames, _ = demo
    trait = truth["high_value"]
    customers = frames["customers.csv"].set_index("customer_id")
    latent = frames["customer_truth.csv"].set_index("customer_id").high_value
    sessions = frames["sessions.csv"]
    age = (sessions.session_date - sessions.customer_id.map(customers.signup_date)).dt.days
    end = pd.Timestamp(START) + pd.Timedelta(days=DAYS)
    horizon = trait["early_window_days"] + trait["value_horizon_days"]
    eligible = customers.index[customers.signup_date <= end - pd.Timedelta(days=horizon)]
    later = sessions[(age >= trait["early_window_days"]) & (age < horizon)]
    value = later.groupby("customer_id").purchase_amount.sum().reindex(eligible, fill_value=0)
    top = value[value >= value.quantile(0.95)].index
    assert latent[top].mean() > 4 * latent[eligible].mean()
    assert latent.mean() == pytest.approx(trait["share"], abs=0.015)

    early = sessions[age < trait["early_window_days"]]
    signals = early.groupby("customer_id").agg(
        sessions=("session_id", "size"), browsing=("browsing_time_sec", "mean")
    )
    signals = signals.join(latent).groupby("high_value").mean()
    assert signals.loc[True, "sessions"] > 1.5 * signals.loc[False, "sessions"]
    assert signals.loc[True, "browsing"] > 1.2 * signals.loc[False, "browsing"]
    first_basket = (
        sessions[sessions.purchase_made]
        .groupby("customer_id")
        .purchase_amount.first()
        .to_frame()
        .join(latent)
        .groupby("high_value")
        .purchase_amount.mean()
    )
    assert first_basket[True] > 1.2 * first_basket[False]


# ---- planted truth 8: the behaviour shift


def _before_after(sessions: pd.DataFrame, frames, when: date) -> tuple[pd.DataFrame, ...]:
    after = sessions.session_date >= pd.Timestamp(when)
    return sessions[~after], sessions[after]


def test_behaviour_shifts_from_the_shift_date(shifted):
    truth, frames = shifted
    assert truth["shift"]["date"] == SHIFT.isoformat()
    sessions = _with_category(frames)
    before, after = _before_after(sessions, frames, SHIFT)
    browsing_ratio = after.browsing_time_sec.median() / before.browsing_time_sec.median()
    assert browsing_ratio == pytest.approx(truth["shift"]["browsing_time_multiplier"], abs=0.07)
    mobile_gain = (after.device == "mobile").mean() - (before.device == "mobile").mean()
    assert mobile_gain > 0.1
    assert after.purchase_made.mean() < 0.9 * before.purchase_made.mean()
    mix_before = before.category.value_counts(normalize=True)
    mix_after = after.category.value_counts(normalize=True)
    assert (mix_after - mix_before).abs().sum() / 2 > 0.05
    month = sessions.session_date.dt.to_period("M")
    per_month = sessions.groupby(month).size()
    assert per_month[pd.Period("2023-12")] > per_month[pd.Period("2023-07")]
    assert per_month[pd.Period("2024-07")] > 1.3 * per_month[pd.Period("2024-12")]
    assert truth["shift"]["peak_month"] == 7


def test_without_a_shift_date_behaviour_is_stable(demo):
    truth, frames, _ = demo
    assert truth["shift"] is None
    before, after = _before_after(frames["sessions.csv"], frames, SHIFT)
    ratio = after.browsing_time_sec.median() / before.browsing_time_sec.median()
    # Short browsers drop out sooner, so survivors drift a few percent longer; the planted
    # shift is a factor 0.7.
    assert ratio == pytest.approx(1.0, abs=0.1)
    assert abs((after.device == "mobile").mean() - (before.device == "mobile").mean()) < 0.03
