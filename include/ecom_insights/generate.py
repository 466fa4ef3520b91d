"""Demo data with planted ground truth: an online shop's customers, sessions, products, events
and campaigns, simulated so that every analysis in the pipeline has a known right answer.

`generate_dataset(out_dir, ...)` writes into `out_dir` (header row, comma-separated, UTF-8):

    customers.csv       customer_id, age, gender, location, signup_date, acquisition_channel
    sessions.csv        session_id, customer_id, session_date, product_viewed, browsing_time_sec,
                        purchase_made, purchase_amount, pages_viewed, added_to_cart,
                        discount_amount, device, campaign_id
    products.csv        product_id, product_name, category, price
    events.csv          event_id, session_id, customer_id, event_time, event_type, product_id, price
    campaigns.csv       campaign_id, name, channel, start_date, end_date
    customer_truth.csv  each customer's latent values and dropout date (for tests, not for models)
    ground_truth.json   the planted effects and the row count of every file

`minimal=True` writes customers.csv and sessions.csv only (the same bytes as a full run).

What is planted (docs/demo-data.md describes each key of ground_truth.json): a buy-till-you-die
process (Poisson sessions at a gamma-distributed rate until a beta-distributed monthly dropout),
churn drivers (short browsing, rare sessions and heavy discount use raise the dropout
probability), weekly and yearly seasonality, campaigns with known conversion lifts, a funnel
"leak" category, a cross-sell pair, a high-value trait visible in the first 30 days and,
optionally, a behaviour and seasonality shift from a given date.

Randomness: customers are simulated in blocks of RANDOM_BLOCK_CUSTOMERS, each block with its own
random stream derived from the seed, and written in chunks of whole blocks. The output therefore
depends only on the arguments and `GeneratorParams`, never on the chunk size, which only bounds
memory. Everything is vectorised over a block: no Python loop runs per customer or per session.

Benchmark entry point: `python -m ecom_insights.generate --out DIR --customers N`.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

# Customers per random stream. Part of the data's definition: changing it changes every byte.
RANDOM_BLOCK_CUSTOMERS = 1_000
DEFAULT_START = date(2023, 1, 1)

FILE_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers.csv": (
        "customer_id",
        "age",
        "gender",
        "location",
        "signup_date",
        "acquisition_channel",
    ),
    "sessions.csv": (
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
        "device",
        "campaign_id",
    ),
    "products.csv": ("product_id", "product_name", "category", "price"),
    "events.csv": (
        "event_id",
        "session_id",
        "customer_id",
        "event_time",
        "event_type",
        "product_id",
        "price",
    ),
    "campaigns.csv": ("campaign_id", "name", "channel", "start_date", "end_date"),
    "customer_truth.csv": (
        "customer_id",
        "high_value",
        "session_rate_per_day",
        "dropout_probability_per_period",
        "median_browsing_time_sec",
        "discount_propensity",
        "purchase_propensity",
        "favourite_category",
        "dropped_out_on",
    ),
}
MINIMAL_FILES = ("customers.csv", "sessions.csv")

# Word lists read best in rows; the formatter would put one word per line.
# fmt: off
DEVICES = ("mobile", "desktop", "tablet")
EVENT_TYPES = ("view", "cart", "remove_from_cart", "purchase")
WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
               "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Campaign names follow the month they start in.
CAMPAIGN_THEMES = ("New Year Sale", "Valentine's Picks", "Spring Refresh", "Easter Offers",
                   "May Days", "Summer Kick-off", "Summer Sale", "Back to School",
                   "Autumn Edit", "Halloween Specials", "Black Friday", "Holiday Gifts")
PRODUCT_ADJECTIVES = ("Classic", "Premium", "Everyday", "Compact", "Deluxe", "Eco", "Smart",
                      "Vintage", "Urban", "Essential")
PRODUCT_NOUNS = {
    "Apparel": ("T-Shirt", "Hoodie", "Jeans", "Jacket", "Dress", "Sweater", "Shorts", "Shirt"),
    "Shoes": ("Sneakers", "Boots", "Sandals", "Loafers", "Running Shoes", "Slippers", "Heels",
              "Trainers"),
    "Beauty": ("Face Cream", "Lipstick", "Shampoo", "Perfume", "Serum", "Mascara", "Body Lotion",
               "Sunscreen"),
    "Home & Kitchen": ("Frying Pan", "Knife Set", "Blender", "Towel Set", "Lamp", "Coffee Maker",
                       "Cushion", "Storage Box"),
    "Electronics": ("Headphones", "Smartwatch", "Speaker", "Tablet", "Camera", "Charger",
                    "Keyboard", "Monitor"),
    "Sports & Outdoors": ("Yoga Mat", "Tent", "Water Bottle", "Dumbbells", "Backpack",
                          "Bike Helmet", "Sleeping Bag", "Tennis Racket"),
    "Toys & Games": ("Board Game", "Puzzle", "Building Set", "Doll", "Race Car", "Plush Bear",
                     "Card Game", "Kite"),
    "Books": ("Novel", "Cookbook", "Biography", "Travel Guide", "Comic", "Poetry Book",
              "Atlas", "Notebook"),
    "Grocery": ("Coffee Beans", "Olive Oil", "Green Tea", "Chocolate", "Pasta", "Granola",
                "Honey", "Spice Mix"),
    "Jewelry": ("Necklace", "Bracelet", "Ring", "Earrings", "Watch", "Pendant", "Brooch",
                "Anklet"),
}
# fmt: on


@dataclass(frozen=True)
class GeneratorParams:
    """Every tunable rate, lift and planted effect of the demo data, in one reviewed place.

    Probabilities are in [0, 1]; "multiplier" means a factor on the quantity named; tuples of
    weights need not sum to 1 (they are normalised). Changing any value changes the data and,
    where it is a planted effect, the matching key of ground_truth.json.
    """

    # Tables of values read best in rows; the formatter would put one value per line.
    # fmt: off
    # --- signups
    signup_early_boost: float = 2.0  # extra signup intensity on day 0, x the later level
    signup_early_decay_days: float = 120.0  # e-folding time of that early boost, days
    incomplete_profile_share: float = 0.03  # customers whose age, gender and location are empty
    age_mean_years: float = 38.0
    age_sd_years: float = 12.0
    age_min_years: int = 18
    age_max_years: int = 80
    genders: tuple[str, ...] = ("female", "male", "non_binary")
    gender_weights: tuple[float, ...] = (0.52, 0.46, 0.02)
    locations: tuple[str, ...] = (
        "London", "Manchester", "Birmingham", "Leeds", "Glasgow", "Dublin", "Paris", "Lyon",
        "Berlin", "Munich", "Hamburg", "Madrid", "Barcelona", "Milan", "Amsterdam",
    )
    location_weights: tuple[float, ...] = (
        0.16, 0.07, 0.06, 0.04, 0.04, 0.05, 0.10, 0.04, 0.09, 0.05, 0.04, 0.07, 0.05, 0.06, 0.08,
    )
    acquisition_channels: tuple[str, ...] = (
        "organic", "paid_search", "social", "email", "referral", "affiliate",
    )
    acquisition_channel_weights: tuple[float, ...] = (0.35, 0.22, 0.18, 0.10, 0.10, 0.05)

    # --- buy-till-you-die: Poisson sessions while alive, then silence
    # Sessions per day while alive, at seasonal multiplier 1: Gamma(shape r, rate alpha), mean
    # r / alpha. Calibrated so that days=730 gives about 20 sessions per customer.
    session_rate_shape: float = 1.2
    session_rate_rate: float = 21.0  # per day
    # Base probability of dropping out in any dropout_period_days while alive: Beta(a, b), then
    # shifted on the logit scale by the churn drivers below.
    dropout_beta_a: float = 1.5
    dropout_beta_b: float = 25.0
    dropout_period_days: int = 30
    # Churn drivers: coefficients on logit(dropout probability) per population standard
    # deviation of the customer's latent log median browsing time, log session rate and
    # discount propensity. Negative: less of it, more churn.
    churn_coefficient_browsing_time: float = -0.6
    churn_coefficient_session_frequency: float = -0.6
    churn_coefficient_discount_use: float = 0.6

    # --- time of day: a population profile (hours 0..23) plus each customer's habitual hour
    hour_weights: tuple[float, ...] = (
        0.3, 0.2, 0.15, 0.1, 0.1, 0.15, 0.3, 0.6, 0.9, 1.0, 1.0, 1.1,
        1.3, 1.2, 1.0, 1.0, 1.1, 1.3, 1.6, 1.9, 2.0, 1.8, 1.2, 0.6,
    )
    hour_habit_share: float = 0.6  # sessions started near the customer's habitual hour
    hour_habit_sd_hours: float = 1.5

    # --- browsing
    browsing_median_sec: float = 180.0  # population median of customers' median browsing time
    browsing_customer_log_sd: float = 0.5  # between customers, natural-log scale
    browsing_session_log_sd: float = 0.6  # between one customer's sessions, natural-log scale
    browsing_min_sec: int = 5
    browsing_max_sec: int = 7200
    browse_views_per_minute: float = 0.25  # other products viewed (Poisson rate per minute)
    seconds_per_other_page: float = 60.0  # non-product pages (Poisson rate: 1 per this many s)

    # --- devices
    mobile_share_beta_a: float = 6.0  # customer's share of mobile sessions ~ Beta(a, b)
    mobile_share_beta_b: float = 5.0
    tablet_share_of_non_mobile: float = 0.15
    max_mobile_share: float = 0.98

    # --- catalogue and funnel
    categories: tuple[str, ...] = (
        "Apparel", "Shoes", "Beauty", "Home & Kitchen", "Electronics", "Sports & Outdoors",
        "Toys & Games", "Books", "Grocery", "Jewelry",
    )
    category_view_weights: tuple[float, ...] = (
        0.14, 0.09, 0.09, 0.11, 0.17, 0.08, 0.07, 0.08, 0.10, 0.07,
    )
    category_median_prices: tuple[float, ...] = (  # currency units
        35.0, 70.0, 22.0, 45.0, 180.0, 55.0, 28.0, 15.0, 9.0, 120.0,
    )
    products_per_category: int = 20
    product_price_log_sd: float = 0.45
    product_popularity_exponent: float = 0.8  # Zipf exponent of popularity within a category
    favourite_category_share: float = 0.35  # sessions that open a product of the favourite category
    purchase_probability: float = 0.09  # median customer's purchase probability per session
    purchase_customer_logit_sd: float = 0.5
    max_purchase_probability: float = 0.95
    abandoned_cart_probability: float = 0.2  # P(added_to_cart | no purchase)
    cart_removal_probability: float = 0.3  # P(remove_from_cart event | abandoned cart)
    extra_basket_items_mean: float = 0.3  # products bought besides the one viewed (Poisson mean)
    max_extra_basket_items: int = 5
    discount_use_beta_a: float = 2.0  # customer's share of purchases with a discount ~ Beta(a, b)
    discount_use_beta_b: float = 8.0
    discount_rates: tuple[float, ...] = (0.05, 0.10, 0.15, 0.20, 0.25)  # of the gross basket

    # --- planted funnel leak: a much-viewed category that rarely sells
    leak_category: str = "Electronics"
    leak_purchase_multiplier: float = 0.3  # on the purchase probability of its sessions

    # --- planted cross-sell pair (chosen from the catalogue, ids in ground_truth.json)
    cross_sell_probability: float = 0.6  # P(consequent added | antecedent in the basket)

    # --- seasonality: multipliers on the session rate and the signup intensity
    weekday_multipliers: tuple[float, ...] = (0.92, 0.90, 0.92, 0.95, 1.02, 1.17, 1.12)  # Mon..Sun
    month_multipliers: tuple[float, ...] = (  # Jan..Dec: Q4 peak in December
        0.90, 0.85, 0.92, 0.92, 0.95, 0.92, 0.90, 0.92, 0.95, 1.02, 1.35, 1.50,
    )

    # --- campaigns: windows in which a share of sessions carries the campaign id
    campaign_count: int = 8
    campaign_min_days: int = 7
    campaign_max_days: int = 21
    campaign_channels: tuple[str, ...] = (
        "email", "paid_search", "social", "display", "affiliate", "push",
    )
    # Relative lift of the purchase probability of a session carrying the campaign id, in the
    # order the campaigns run (needs at least campaign_count values).
    campaign_conversion_lifts: tuple[float, ...] = (
        0.10, 0.35, 0.20, 0.50, 0.15, 0.25, 0.40, 0.05, 0.30, 0.20,
    )
    campaign_session_share: float = 0.3  # of the sessions inside a campaign window

    # --- planted high-value trait, visible in the first early_window_days after signup
    high_value_share: float = 0.05
    high_value_session_rate_multiplier: float = 2.5
    high_value_browsing_multiplier: float = 1.4
    high_value_purchase_multiplier: float = 1.5
    high_value_basket_items_multiplier: float = 3.0  # on extra_basket_items_mean
    early_window_days: int = 30
    value_horizon_days: int = 365  # the "following year" whose value the trait drives

    # --- behaviour shift from shift_date on (only when a shift_date is given)
    shift_browsing_multiplier: float = 0.7
    shift_mobile_share_increase: float = 0.2  # added to each customer's mobile share
    shift_purchase_multiplier: float = 0.8
    shift_category_view_weights: tuple[float, ...] = (
        0.12, 0.08, 0.14, 0.09, 0.10, 0.15, 0.06, 0.05, 0.15, 0.06,
    )
    shift_month_multipliers: tuple[float, ...] = (  # Jan..Dec: the peak moves to July
        0.95, 0.90, 0.95, 1.00, 1.05, 1.20, 1.40, 1.15, 0.95, 0.90, 0.80, 0.75,
    )
    # fmt: on


DEFAULT_PARAMS = GeneratorParams()


@dataclass(frozen=True)
class _Catalogue:
    """Products as arrays, plus the samplers' lookup tables."""

    product_ids: tuple[str, ...]
    product_names: tuple[str, ...]
    product_category: np.ndarray  # category index per product
    price_cents: np.ndarray
    category_first_product: np.ndarray  # products of category c are first[c] .. last[c]
    category_last_product: np.ndarray
    within_category_cdf: np.ndarray  # category c occupies the values (c, c + 1]
    category_purchase_multiplier: np.ndarray  # the leak category's multiplier, 1 elsewhere
    cross_sell_antecedent: int
    cross_sell_consequent: int


@dataclass(frozen=True)
class _Campaigns:
    """Campaign windows as arrays, in calendar order."""

    campaign_ids: tuple[str, ...]
    names: tuple[str, ...]
    channels: tuple[str, ...]
    first_day: np.ndarray  # day index, inclusive
    last_day: np.ndarray  # day index, inclusive
    lifts: np.ndarray


@dataclass(frozen=True)
class _Scenario:
    """Everything shared by all customer blocks: calendar, catalogue, campaigns, parameters."""

    seed: int
    start: date
    days: int
    shift_day: int  # == days when there is no shift
    params: GeneratorParams
    epoch_day_of_start: int
    cumulative_demand: np.ndarray  # length days + 1: demand summed over the days before
    signup_cdf: np.ndarray
    campaign_by_day: np.ndarray  # campaign index per day, -1 outside every window
    # Category of a session's first product, and of extra basket products (views weighted by
    # the purchase multiplier), before and after the shift.
    view_category_cdf: np.ndarray
    shift_view_category_cdf: np.ndarray
    purchase_category_cdf: np.ndarray
    shift_purchase_category_cdf: np.ndarray
    catalogue: _Catalogue
    campaigns: _Campaigns
    customer_id_width: int
    session_id_width: int
    event_id_width: int


def _normalised_cdf(weights) -> np.ndarray:
    cumulative = np.cumsum(np.asarray(weights, dtype=float))
    return cumulative / cumulative[-1]


def _sample_index(cdf: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling of indices 0 .. len(cdf) - 1."""
    return np.minimum(np.searchsorted(cdf, uniforms, side="right"), len(cdf) - 1)


def _logit(probability: np.ndarray) -> np.ndarray:
    return np.log(probability) - np.log1p(-probability)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _within_group_index(counts: np.ndarray) -> np.ndarray:
    """0, 1, ..., counts[g] - 1 for each group g, concatenated."""
    starts = np.cumsum(counts) - counts
    return np.arange(int(counts.sum())) - np.repeat(starts, counts)


def _log_gamma_moments(shape: float, rate: float) -> tuple[float, float]:
    """Mean and standard deviation of log(X), X ~ Gamma(shape, rate).

    Digamma and trigamma by central differences of math.lgamma (accurate to ~1e-8).
    """
    step = 1e-4
    lgamma = math.lgamma
    digamma = (lgamma(shape + step) - lgamma(shape - step)) / (2 * step)
    trigamma = (lgamma(shape + step) - 2 * lgamma(shape) + lgamma(shape - step)) / step**2
    return digamma - math.log(rate), math.sqrt(trigamma)


def _beta_moments(a: float, b: float) -> tuple[float, float]:
    return a / (a + b), math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))


def _build_catalogue(rng: np.random.Generator, params: GeneratorParams) -> _Catalogue:
    """~200 products in the parameter's categories, with the cross-sell pair picked among them."""
    n_categories = len(params.categories)
    per_category = params.products_per_category
    product_category = np.repeat(np.arange(n_categories), per_category)
    medians = np.asarray(params.category_median_prices)[product_category]
    raw_price = medians * np.exp(params.product_price_log_sd * rng.standard_normal(len(medians)))
    price_cents = np.maximum(np.rint(raw_price), 2).astype(np.int64) * 100 - 1  # x.99 prices
    popularity = np.concatenate(
        [
            rng.permutation(
                1.0 / np.arange(1, per_category + 1) ** params.product_popularity_exponent
            )
            for _ in range(n_categories)
        ]
    )
    within_cdf = np.concatenate(
        [
            category + _normalised_cdf(popularity[product_category == category])
            for category in range(n_categories)
        ]
    )
    names = []
    for category_name in params.categories:
        nouns = PRODUCT_NOUNS.get(category_name, ("Item",))
        combos = [(adjective, noun) for noun in nouns for adjective in PRODUCT_ADJECTIVES]
        picks = rng.choice(len(combos), size=per_category, replace=len(combos) < per_category)
        names += [f"{combos[k][0]} {combos[k][1]} {n + 1:02d}" for n, k in enumerate(picks)]
    width = max(4, len(str(len(product_category))))
    leak = params.categories.index(params.leak_category)
    purchase_multiplier = np.where(
        np.arange(n_categories) == leak, params.leak_purchase_multiplier, 1.0
    )
    # Cross-sell: the most popular product of one category leads to a mid-popularity product of
    # another, neither in the leak category, so the pair has support and a low baseline.
    antecedent_category, consequent_category = rng.choice(
        [c for c in range(n_categories) if c != leak], size=2, replace=False
    )
    first = np.arange(n_categories) * per_category
    antecedent = first[antecedent_category] + int(
        np.argmax(popularity[product_category == antecedent_category])
    )
    consequent = first[consequent_category] + int(
        np.argsort(popularity[product_category == consequent_category])[per_category // 2]
    )
    return _Catalogue(
        product_ids=tuple(f"P{k + 1:0{width}d}" for k in range(len(product_category))),
        product_names=tuple(names),
        product_category=product_category,
        price_cents=price_cents,
        category_first_product=first,
        category_last_product=first + per_category - 1,
        within_category_cdf=within_cdf,
        category_purchase_multiplier=purchase_multiplier,
        cross_sell_antecedent=int(antecedent),
        cross_sell_consequent=int(consequent),
    )


def _plan_campaigns(
    rng: np.random.Generator, start: date, days: int, params: GeneratorParams
) -> _Campaigns:
    """Non-overlapping campaign windows, one per equal slot of the calendar, rotating channels."""
    count = min(params.campaign_count, days // (params.campaign_max_days + 7))
    slot = days // max(count, 1)
    durations = rng.integers(params.campaign_min_days, params.campaign_max_days + 1, count)
    first_day = np.arange(count) * slot + rng.integers(0, slot - durations + 1)
    last_day = first_day + durations - 1
    channel_order = rng.permutation(len(params.campaign_channels))
    channels = tuple(
        params.campaign_channels[channel_order[k % len(channel_order)]] for k in range(count)
    )
    names = []
    for k in range(count):
        opens = start + timedelta(days=int(first_day[k]))
        names.append(f"{CAMPAIGN_THEMES[opens.month - 1]} {opens.year} ({channels[k]})")
    return _Campaigns(
        campaign_ids=tuple(f"CMP{k + 1:02d}" for k in range(count)),
        names=tuple(names),
        channels=channels,
        first_day=first_day,
        last_day=last_day,
        lifts=np.asarray(params.campaign_conversion_lifts[:count], dtype=float),
    )


def _build_scenario(
    seed: int,
    customers: int,
    start: date,
    days: int,
    shift_date: date | None,
    params: GeneratorParams,
) -> _Scenario:
    """Validates the arguments and lays out the calendar, catalogue and campaigns."""
    if customers < 1:
        raise ValueError(f"customers must be at least 1, got {customers}")
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    if len(params.campaign_conversion_lifts) < params.campaign_count:
        raise ValueError("campaign_conversion_lifts needs a value for each of campaign_count")
    if params.leak_category not in params.categories:
        raise ValueError(f"leak_category {params.leak_category!r} is not one of the categories")
    shift_day = days
    if shift_date is not None:
        shift_day = (shift_date - start).days
        if not 0 < shift_day < days:
            raise ValueError(
                f"shift_date {shift_date} must fall strictly inside the window "
                f"{start} .. {start + timedelta(days=days - 1)}"
            )
    day_index = np.arange(days)
    calendar = np.datetime64(start, "D") + day_index
    weekday = (calendar.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
    month = calendar.astype("datetime64[M]").astype(np.int64) % 12  # January is 0
    monthly = np.where(
        day_index < shift_day,
        np.asarray(params.month_multipliers)[month],
        np.asarray(params.shift_month_multipliers)[month],
    )
    day_demand = np.asarray(params.weekday_multipliers)[weekday] * monthly
    early_boost = 1 + params.signup_early_boost * np.exp(
        -day_index / params.signup_early_decay_days
    )

    catalogue_rng, campaign_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed, spawn_key=(0,)).spawn(2)
    )
    catalogue = _build_catalogue(catalogue_rng, params)
    campaigns = _plan_campaigns(campaign_rng, start, days, params)
    campaign_by_day = np.full(days, -1)
    for k in range(len(campaigns.campaign_ids)):
        campaign_by_day[campaigns.first_day[k] : campaigns.last_day[k] + 1] = k
    customer_digits = len(str(customers))
    view_weights = np.asarray(params.category_view_weights)
    shift_view_weights = np.asarray(params.shift_category_view_weights)
    return _Scenario(
        seed=seed,
        start=start,
        days=days,
        shift_day=shift_day,
        params=params,
        epoch_day_of_start=(start - date(1970, 1, 1)).days,
        cumulative_demand=np.concatenate([[0.0], np.cumsum(day_demand)]),
        signup_cdf=_normalised_cdf(day_demand * early_boost),
        campaign_by_day=campaign_by_day,
        view_category_cdf=_normalised_cdf(view_weights),
        shift_view_category_cdf=_normalised_cdf(shift_view_weights),
        purchase_category_cdf=_normalised_cdf(
            view_weights * catalogue.category_purchase_multiplier
        ),
        shift_purchase_category_cdf=_normalised_cdf(
            shift_view_weights * catalogue.category_purchase_multiplier
        ),
        catalogue=catalogue,
        campaigns=campaigns,
        customer_id_width=max(7, customer_digits),
        # Room for 100 sessions and 1,000 events per customer on average (about 20 and 55 by
        # default); a longer number would still print in full, only unpadded.
        session_id_width=max(9, customer_digits + 2),
        event_id_width=max(10, customer_digits + 3),
    )


def _sample_products_within(
    catalogue: _Catalogue, category: np.ndarray, uniforms: np.ndarray
) -> np.ndarray:
    """A product of each given category, by popularity within the category."""
    product = np.searchsorted(catalogue.within_category_cdf, category + uniforms, side="right")
    return np.clip(
        product,
        catalogue.category_first_product[category],
        catalogue.category_last_product[category],
    )


def _simulate_block(
    scenario: _Scenario,
    block_index: int,
    first_customer: int,
    n_customers: int,
    first_session: int,
    first_event: int,
    include_events: bool,
) -> dict[str, dict[str, np.ndarray]]:
    """Simulates one block of customers with the block's own random stream.

    Returns raw columns per file (numbers, codes and day or second counts, not yet strings), with
    customers, sessions and events numbered from first_customer, first_session and first_event.
    The sessions use one stream and the events another, so that minimal runs (no events) write
    the same sessions as full runs.
    """
    p = scenario.params
    catalogue = scenario.catalogue
    days = scenario.days
    rng, event_rng = (
        np.random.default_rng(s)
        for s in np.random.SeedSequence(scenario.seed, spawn_key=(1, block_index)).spawn(2)
    )
    n = n_customers

    # ---- customers: signup, latent traits, profile
    signup_day = np.minimum(
        np.searchsorted(scenario.signup_cdf, rng.random(n), side="right"), days - 1
    )
    high_value = rng.random(n) < p.high_value_share
    session_rate = rng.gamma(p.session_rate_shape, 1 / p.session_rate_rate, n) * np.where(
        high_value, p.high_value_session_rate_multiplier, 1.0
    )
    log_median_browsing = (
        np.log(p.browsing_median_sec)
        + p.browsing_customer_log_sd * rng.standard_normal(n)
        + high_value * np.log(p.high_value_browsing_multiplier)
    )
    discount_propensity = rng.beta(p.discount_use_beta_a, p.discount_use_beta_b, n)
    purchase_propensity = _sigmoid(
        _logit(p.purchase_probability) + p.purchase_customer_logit_sd * rng.standard_normal(n)
    ) * np.where(high_value, p.high_value_purchase_multiplier, 1.0)
    extra_items_mean = p.extra_basket_items_mean * np.where(
        high_value, p.high_value_basket_items_multiplier, 1.0
    )

    # Churn drivers, each standardised with its population moments (not the block's, which
    # would make a customer's fate depend on its neighbours).
    log_rate_mean, log_rate_sd = _log_gamma_moments(p.session_rate_shape, p.session_rate_rate)
    discount_mean, discount_sd = _beta_moments(p.discount_use_beta_a, p.discount_use_beta_b)
    driver_shift = (
        p.churn_coefficient_browsing_time
        * (log_median_browsing - np.log(p.browsing_median_sec))
        / p.browsing_customer_log_sd
        + p.churn_coefficient_session_frequency
        * (np.log(session_rate) - log_rate_mean)
        / log_rate_sd
        + p.churn_coefficient_discount_use * (discount_propensity - discount_mean) / discount_sd
    )
    base_dropout = np.clip(rng.beta(p.dropout_beta_a, p.dropout_beta_b, n), 1e-9, 1 - 1e-9)
    period_dropout = _sigmoid(_logit(base_dropout) + driver_shift)
    daily_dropout = -np.expm1(np.log1p(-period_dropout) / p.dropout_period_days)
    dropout_day = signup_day + rng.geometric(daily_dropout)  # first day no longer alive

    mobile_share = rng.beta(p.mobile_share_beta_a, p.mobile_share_beta_b, n)
    hour_cdf = _normalised_cdf(p.hour_weights)
    habitual_hour = _sample_index(hour_cdf, rng.random(n))
    favourite_category = _sample_index(scenario.view_category_cdf, rng.random(n))
    incomplete_profile = rng.random(n) < p.incomplete_profile_share
    age = np.clip(
        np.rint(rng.normal(p.age_mean_years, p.age_sd_years, n)), p.age_min_years, p.age_max_years
    ).astype(np.int64)
    gender = _sample_index(_normalised_cdf(p.gender_weights), rng.random(n))
    location = _sample_index(_normalised_cdf(p.location_weights), rng.random(n))
    channel = _sample_index(_normalised_cdf(p.acquisition_channel_weights), rng.random(n))

    # ---- sessions: the first on the signup day, then Poisson while alive. Seasonality by time
    # rescaling: uniform points in cumulative demand land on days in proportion to their demand.
    cumulative = scenario.cumulative_demand
    alive_until = np.minimum(dropout_day, days)
    repeat_from = signup_day + 1
    exposure = np.maximum(cumulative[alive_until] - cumulative[repeat_from], 0.0)
    sessions_per_customer = 1 + rng.poisson(session_rate * exposure)
    owner = np.repeat(np.arange(n), sessions_per_customer)
    total = len(owner)
    is_first = _within_group_index(sessions_per_customer) == 0
    demand_time = cumulative[repeat_from][owner] + rng.random(total) * exposure[owner]
    repeat_day = np.clip(
        np.searchsorted(cumulative, demand_time, side="right") - 1,
        repeat_from[owner],
        alive_until[owner] - 1,
    )
    day = np.where(is_first, signup_day[owner], repeat_day)
    habit_hour = (
        habitual_hour[owner] + np.rint(rng.normal(0, p.hour_habit_sd_hours, total)).astype(np.int64)
    ) % 24
    hour = np.where(
        rng.random(total) < p.hour_habit_share,
        habit_hour,
        _sample_index(hour_cdf, rng.random(total)),
    )
    started_at = (
        (scenario.epoch_day_of_start + day) * 86_400 + hour * 3_600 + rng.integers(0, 3_600, total)
    )
    chronological = np.lexsort((started_at, owner))
    owner, day, started_at = owner[chronological], day[chronological], started_at[chronological]

    after_shift = day >= scenario.shift_day
    window_campaign = scenario.campaign_by_day[day]
    campaign = np.where(
        (window_campaign >= 0) & (rng.random(total) < p.campaign_session_share), window_campaign, -1
    )
    category_draw = rng.random(total)
    population_category = np.where(
        after_shift,
        _sample_index(scenario.shift_view_category_cdf, category_draw),
        _sample_index(scenario.view_category_cdf, category_draw),
    )
    category = np.where(
        rng.random(total) < p.favourite_category_share,
        favourite_category[owner],
        population_category,
    )
    product_viewed = _sample_products_within(catalogue, category, rng.random(total))
    browsing = np.exp(
        log_median_browsing[owner] + p.browsing_session_log_sd * rng.standard_normal(total)
    ) * np.where(after_shift, p.shift_browsing_multiplier, 1.0)
    browsing_time_sec = np.clip(np.rint(browsing), p.browsing_min_sec, p.browsing_max_sec).astype(
        np.int64
    )
    session_mobile_share = np.minimum(
        mobile_share[owner] + after_shift * p.shift_mobile_share_increase, p.max_mobile_share
    )
    device_draw = rng.random(total)
    device = np.where(
        device_draw < session_mobile_share,
        0,
        np.where(
            device_draw
            < session_mobile_share + (1 - session_mobile_share) * p.tablet_share_of_non_mobile,
            2,
            1,
        ),
    )

    # The lift table has a trailing 0 so that campaign == -1 (none) indexes "no lift".
    campaign_lift = np.append(scenario.campaigns.lifts, 0.0)[campaign]
    purchase_probability = np.minimum(
        purchase_propensity[owner]
        * catalogue.category_purchase_multiplier[category]
        * (1 + campaign_lift)
        * np.where(after_shift, p.shift_purchase_multiplier, 1.0),
        p.max_purchase_probability,
    )
    purchase_made = rng.random(total) < purchase_probability
    added_to_cart = purchase_made | (rng.random(total) < p.abandoned_cart_probability)

    # ---- baskets: the viewed product, extra products by purchase popularity, and the
    # cross-sell consequent when the antecedent is in the basket; each product once.
    buying = np.flatnonzero(purchase_made)
    extra_count = np.minimum(rng.poisson(extra_items_mean[owner[buying]]), p.max_extra_basket_items)
    extra_session = np.repeat(buying, extra_count)
    extra_category_draw = rng.random(len(extra_session))
    extra_category = np.where(
        after_shift[extra_session],
        _sample_index(scenario.shift_purchase_category_cdf, extra_category_draw),
        _sample_index(scenario.purchase_category_cdf, extra_category_draw),
    )
    extra_product = _sample_products_within(
        catalogue, extra_category, rng.random(len(extra_session))
    )
    item_session = np.concatenate([buying, extra_session])
    item_product = np.concatenate([product_viewed[buying], extra_product])
    holds_antecedent = np.zeros(total, dtype=bool)
    holds_antecedent[item_session[item_product == catalogue.cross_sell_antecedent]] = True
    cross_sold = np.flatnonzero(holds_antecedent & (rng.random(total) < p.cross_sell_probability))
    item_session = np.concatenate([item_session, cross_sold])
    item_product = np.concatenate(
        [item_product, np.full(len(cross_sold), catalogue.cross_sell_consequent)]
    )
    item_rank = np.concatenate(
        [
            np.zeros(len(buying), dtype=np.int64),
            np.ones(len(extra_session), dtype=np.int64),
            np.full(len(cross_sold), 2),
        ]
    )
    by_product = np.lexsort((item_rank, item_product, item_session))
    repeated = np.zeros(len(by_product), dtype=bool)
    repeated[1:] = (item_session[by_product][1:] == item_session[by_product][:-1]) & (
        item_product[by_product][1:] == item_product[by_product][:-1]
    )
    kept = by_product[~repeated]
    kept = kept[np.lexsort((kept, item_rank[kept], item_session[kept]))]
    item_session, item_product = item_session[kept], item_product[kept]
    basket_size = np.bincount(item_session, minlength=total)
    gross_cents = np.bincount(
        item_session, weights=catalogue.price_cents[item_product], minlength=total
    ).astype(np.int64)
    uses_discount = purchase_made & (rng.random(total) < discount_propensity[owner])
    discount_rate = np.asarray(p.discount_rates)[rng.integers(0, len(p.discount_rates), total)]
    discount_cents = np.where(uses_discount, np.rint(gross_cents * discount_rate), 0).astype(
        np.int64
    )
    purchase_cents = gross_cents - discount_cents
    browse_views = rng.poisson(p.browse_views_per_minute * browsing_time_sec / 60)
    product_views = 1 + np.maximum(basket_size - 1, 0) + browse_views
    pages_viewed = product_views + rng.poisson(browsing_time_sec / p.seconds_per_other_page)

    session_number = first_session + np.arange(total)
    customer_number = first_customer + np.arange(n)
    dropped_out = dropout_day < days
    block = {
        "customers.csv": {
            "customer_number": customer_number,
            "age": age,
            "gender": gender,
            "location": location,
            "incomplete_profile": incomplete_profile,
            "signup_day": signup_day,
            "acquisition_channel": channel,
        },
        "sessions.csv": {
            "session_number": session_number,
            "customer_number": first_customer + owner,
            "started_at": started_at,
            "product_viewed": product_viewed,
            "browsing_time_sec": browsing_time_sec,
            "purchase_made": purchase_made,
            "purchase_cents": purchase_cents,
            "pages_viewed": pages_viewed,
            "added_to_cart": added_to_cart,
            "discount_cents": discount_cents,
            "device": device,
            "campaign": campaign,
        },
        "customer_truth.csv": {
            "customer_number": customer_number,
            "high_value": high_value,
            "session_rate_per_day": session_rate,
            "dropout_probability_per_period": period_dropout,
            "median_browsing_time_sec": np.exp(log_median_browsing),
            "discount_propensity": discount_propensity,
            "purchase_propensity": purchase_propensity,
            "favourite_category": favourite_category,
            "dropped_out_day": np.where(dropped_out, dropout_day, -1),
        },
    }
    if include_events:
        block["events.csv"] = _simulate_events(
            event_rng,
            catalogue,
            first_event,
            session_number,
            first_customer + owner,
            started_at,
            browsing_time_sec,
            category,
            product_viewed,
            purchase_made,
            added_to_cart,
            basket_size,
            browse_views,
            item_session,
            item_product,
            p.cart_removal_probability,
        )
    return block


def _simulate_events(
    rng: np.random.Generator,
    catalogue: _Catalogue,
    first_event: int,
    session_number: np.ndarray,
    customer_number: np.ndarray,
    started_at: np.ndarray,
    browsing_time_sec: np.ndarray,
    category: np.ndarray,
    product_viewed: np.ndarray,
    purchase_made: np.ndarray,
    added_to_cart: np.ndarray,
    basket_size: np.ndarray,
    browse_views: np.ndarray,
    item_session: np.ndarray,
    item_product: np.ndarray,
    cart_removal_probability: float,
) -> dict[str, np.ndarray]:
    """The click stream behind the sessions, in this order within each session:

    view of product_viewed (at the session's start), views of the other basket products, views
    of other products of the same category, cart events (every basket product, or
    product_viewed alone for an abandoned cart), an optional remove_from_cart of an abandoned
    cart, then one purchase event per basket product. Times are sorted random points inside
    [session start, session start + browsing_time_sec].
    """
    total = len(session_number)
    abandoned = added_to_cart & ~purchase_made
    removed = abandoned & (rng.random(total) < cart_removal_probability)
    other_basket_views = np.maximum(basket_size - 1, 0)
    carts = np.where(purchase_made, basket_size, abandoned.astype(np.int64))
    offset_browse = 1 + other_basket_views
    offset_cart = offset_browse + browse_views
    offset_remove = offset_cart + carts
    offset_purchase = offset_remove + removed
    events_per_session = offset_purchase + basket_size
    session_start = np.cumsum(events_per_session) - events_per_session
    n_events = int(events_per_session.sum())
    event_type = np.zeros(n_events, dtype=np.int8)  # view unless set below
    event_product = np.empty(n_events, dtype=np.int64)

    event_product[session_start] = product_viewed
    item_index = _within_group_index(basket_size)  # basket products in order, viewed one first
    is_other = item_index > 0
    event_product[session_start[item_session[is_other]] + item_index[is_other]] = item_product[
        is_other
    ]
    browse_session = np.repeat(np.arange(total), browse_views)
    browse_position = (session_start + offset_browse)[browse_session] + _within_group_index(
        browse_views
    )
    event_product[browse_position] = _sample_products_within(
        catalogue, category[browse_session], rng.random(len(browse_session))
    )
    for offset, type_code in ((offset_cart, 1), (offset_purchase, 3)):
        positions = (session_start + offset)[item_session] + item_index
        event_type[positions] = type_code
        event_product[positions] = item_product
    abandoned_start = session_start[abandoned] + offset_cart[abandoned]
    event_type[abandoned_start] = 1
    event_product[abandoned_start] = product_viewed[abandoned]
    removal_position = session_start[removed] + offset_remove[removed]
    event_type[removal_position] = 2
    event_product[removal_position] = product_viewed[removed]

    event_session = np.repeat(np.arange(total), events_per_session)
    gaps = rng.exponential(size=n_events)
    before = np.cumsum(gaps) - gaps  # exclusive running sum, across sessions
    session_gaps = np.bincount(event_session, weights=gaps, minlength=total)
    fraction = (before - before[session_start][event_session]) / session_gaps[event_session]
    return {
        "event_number": first_event + np.arange(n_events),
        "session_number": session_number[event_session],
        "customer_number": customer_number[event_session],
        "event_time": started_at[event_session]
        + np.floor(fraction * browsing_time_sec[event_session]).astype(np.int64),
        "event_type": event_type,
        "product": event_product,
        "price_cents": catalogue.price_cents[event_product],
    }


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """IDs like C0000001 from 1-based numbers (zero-padded; wider numbers keep their digits)."""
    digits = pc.utf8_lpad(pa.array(numbers).cast(pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _labels(codes: np.ndarray, labels, missing: np.ndarray | None = None) -> pa.Array:
    """Codes as a dictionary array of labels (the CSV writer prints the labels)."""
    indices = pa.array(codes.astype(np.int32), mask=missing)
    return pa.DictionaryArray.from_arrays(indices, pa.array(list(labels), type=pa.string()))


def _money(cents: np.ndarray) -> pa.Array:
    """Cents as a decimal with exactly two places (12.30, 0.00)."""
    return pa.array(cents / 100).cast(pa.decimal128(14, 2))


def _dates(epoch_days: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    return pa.array(epoch_days.astype(np.int32), mask=missing).cast(pa.date32())


def _timestamps(epoch_seconds: np.ndarray) -> pa.Array:
    return pa.array(epoch_seconds).cast(pa.timestamp("s"))


def _chunk_ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """IDs of a chunk's sorted, contiguous numbers, formatted once per distinct number."""
    first = int(numbers[0]) if len(numbers) else 0
    distinct = np.arange(first, int(numbers[-1]) + 1) if len(numbers) else numbers
    return pa.DictionaryArray.from_arrays(
        pa.array((numbers - first).astype(np.int32)), _ids(prefix, distinct + 1, width)
    )


def _to_table(file_name: str, raw: dict[str, np.ndarray], scenario: _Scenario) -> pa.Table:
    """Formats one file's raw columns (numbers and codes) into the CSV contract's columns."""
    p = scenario.params
    catalogue = scenario.catalogue
    start = scenario.epoch_day_of_start
    customer_ids = _chunk_ids("C", raw["customer_number"], scenario.customer_id_width)
    if file_name == "customers.csv":
        missing = raw["incomplete_profile"]
        columns = [
            customer_ids,
            pa.array(raw["age"], mask=missing),
            _labels(raw["gender"], p.genders, missing),
            _labels(raw["location"], p.locations, missing),
            _dates(start + raw["signup_day"]),
            _labels(raw["acquisition_channel"], p.acquisition_channels),
        ]
    elif file_name == "sessions.csv":
        campaign = raw["campaign"]
        columns = [
            _ids("S", raw["session_number"] + 1, scenario.session_id_width),
            customer_ids,
            _timestamps(raw["started_at"]),
            _labels(raw["product_viewed"], catalogue.product_ids),
            pa.array(raw["browsing_time_sec"]),
            pa.array(raw["purchase_made"]),
            _money(raw["purchase_cents"]),
            pa.array(raw["pages_viewed"]),
            pa.array(raw["added_to_cart"]),
            _money(raw["discount_cents"]),
            _labels(raw["device"], DEVICES),
            _labels(
                np.maximum(campaign, 0), scenario.campaigns.campaign_ids or ("",), campaign < 0
            ),
        ]
    elif file_name == "events.csv":
        columns = [
            _ids("E", raw["event_number"] + 1, scenario.event_id_width),
            _chunk_ids("S", raw["session_number"], scenario.session_id_width),
            customer_ids,
            _timestamps(raw["event_time"]),
            _labels(raw["event_type"], EVENT_TYPES),
            _labels(raw["product"], catalogue.product_ids),
            _money(raw["price_cents"]),
        ]
    else:  # customer_truth.csv
        dropped_day = raw["dropped_out_day"]
        columns = [
            customer_ids,
            pa.array(raw["high_value"]),
            pa.array(np.round(raw["session_rate_per_day"], 6)),
            pa.array(np.round(raw["dropout_probability_per_period"], 6)),
            pa.array(np.round(raw["median_browsing_time_sec"], 1)),
            pa.array(np.round(raw["discount_propensity"], 4)),
            pa.array(np.round(raw["purchase_propensity"], 4)),
            _labels(raw["favourite_category"], p.categories),
            _dates(start + dropped_day, dropped_day < 0),
        ]
    return pa.table(columns, names=list(FILE_COLUMNS[file_name]))


def _catalogue_tables(scenario: _Scenario) -> dict[str, pa.Table]:
    """products.csv and campaigns.csv, which do not depend on the customers."""
    catalogue, campaigns = scenario.catalogue, scenario.campaigns
    start = scenario.epoch_day_of_start
    return {
        "products.csv": pa.table(
            [
                pa.array(catalogue.product_ids),
                pa.array(catalogue.product_names),
                pa.array([scenario.params.categories[c] for c in catalogue.product_category]),
                _money(catalogue.price_cents),
            ],
            names=list(FILE_COLUMNS["products.csv"]),
        ),
        "campaigns.csv": pa.table(
            [
                pa.array(campaigns.campaign_ids, type=pa.string()),
                pa.array(campaigns.names, type=pa.string()),
                pa.array(campaigns.channels, type=pa.string()),
                _dates(start + campaigns.first_day),
                _dates(start + campaigns.last_day),
            ],
            names=list(FILE_COLUMNS["campaigns.csv"]),
        ),
    }


class _CsvFile:
    """A CSV file written chunk by chunk: a plain header line, then unquoted rows."""

    def __init__(self, path: Path, columns: tuple[str, ...]):
        self._sink = pa.OSFile(str(path), "wb")
        self._sink.write((",".join(columns) + "\n").encode())
        self._writer: pa_csv.CSVWriter | None = None
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            # No generated value holds a comma, quote or newline, so nothing needs quoting;
            # pyarrow raises rather than write a broken row if a parameter ever adds one.
            options = pa_csv.WriteOptions(include_header=False, quoting_style="none")
            self._writer = pa_csv.CSVWriter(self._sink, table.schema, write_options=options)
        self._writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._sink.close()


def _ground_truth(
    scenario: _Scenario,
    customers: int,
    minimal: bool,
    totals: dict[str, float],
    row_counts: dict[str, int],
) -> dict:
    """The planted effects, the arguments that produced them and a few realised figures."""
    p = scenario.params
    catalogue, campaigns = scenario.catalogue, scenario.campaigns
    start = scenario.start

    def day_to_date(day: int) -> str:
        return (start + timedelta(days=int(day))).isoformat()

    def peak(multipliers) -> int:
        return int(np.argmax(multipliers)) + 1

    def top_two(multipliers) -> list[int]:
        return sorted(int(k) for k in np.argsort(multipliers)[-2:])

    def product(index: int) -> dict:
        return {
            "product_id": catalogue.product_ids[index],
            "product_name": catalogue.product_names[index],
            "category": p.categories[catalogue.product_category[index]],
        }

    shifted = scenario.shift_day < scenario.days
    return {
        "generator": {
            "customers": customers,
            "days": scenario.days,
            "seed": scenario.seed,
            "start": start.isoformat(),
            "last_day": day_to_date(scenario.days - 1),
            "shift_date": day_to_date(scenario.shift_day) if shifted else None,
            "minimal": minimal,
            # Lists, not tuples, so that the dict equals its JSON file read back.
            "params": {
                name: list(value) if isinstance(value, tuple) else value
                for name, value in asdict(p).items()
            },
        },
        "row_counts": row_counts,
        "buy_till_you_die": {
            "session_rate_per_day_gamma": {
                "shape": p.session_rate_shape,
                "rate": p.session_rate_rate,
            },
            "dropout_probability_beta": {
                "a": p.dropout_beta_a,
                "b": p.dropout_beta_b,
                "per_days": p.dropout_period_days,
            },
            "description": "first session on the signup day; then sessions at the customer's "
            "rate times the day's seasonal multiplier until dropout; the base "
            "dropout probability is shifted on the logit scale by the churn "
            "drivers",
            "realised": {
                "sessions_per_customer": round(totals["sessions"] / customers, 3),
                "purchase_rate_per_session": round(totals["purchases"] / totals["sessions"], 4),
                "share_dropped_out_by_end": round(totals["dropped_out"] / customers, 4),
            },
        },
        "churn_drivers": [
            {
                "driver": "browsing_time",
                "direction": "lower_increases_churn",
                "coefficient": p.churn_coefficient_browsing_time,
                "latent": "log median browsing time, standardised",
            },
            {
                "driver": "session_frequency",
                "direction": "lower_increases_churn",
                "coefficient": p.churn_coefficient_session_frequency,
                "latent": "log session rate, standardised",
            },
            {
                "driver": "discount_use",
                "direction": "higher_increases_churn",
                "coefficient": p.churn_coefficient_discount_use,
                "latent": "share of purchases with a discount, standardised",
            },
        ],
        "seasonality": {
            "weekday_multipliers": dict(zip(WEEKDAY_NAMES, p.weekday_multipliers, strict=True)),
            "busiest_weekdays": [WEEKDAY_NAMES[k] for k in top_two(p.weekday_multipliers)],
            "month_multipliers": dict(zip(MONTH_NAMES, p.month_multipliers, strict=True)),
            "peak_month": peak(p.month_multipliers),
            "peak_months": [k + 1 for k in top_two(p.month_multipliers)],
        },
        "campaigns": {
            "session_share_in_window": p.campaign_session_share,
            "lift_applies_to": "purchase probability of sessions carrying the campaign_id",
            "campaigns": [
                {
                    "campaign_id": campaigns.campaign_ids[k],
                    "name": campaigns.names[k],
                    "channel": campaigns.channels[k],
                    "start_date": day_to_date(campaigns.first_day[k]),
                    "end_date": day_to_date(campaigns.last_day[k]),
                    "conversion_lift": float(campaigns.lifts[k]),
                }
                for k in range(len(campaigns.campaign_ids))
            ],
        },
        "funnel_leak": {
            "category": p.leak_category,
            "purchase_multiplier": p.leak_purchase_multiplier,
            "category_view_weights": dict(zip(p.categories, p.category_view_weights, strict=True)),
        },
        "cross_sell": {
            "antecedent": product(catalogue.cross_sell_antecedent),
            "consequent": product(catalogue.cross_sell_consequent),
            "conditional_probability": p.cross_sell_probability,
        },
        "high_value": {
            "share": p.high_value_share,
            "early_window_days": p.early_window_days,
            "value_horizon_days": p.value_horizon_days,
            "early_signals": [
                "sessions_in_early_window",
                "mean_browsing_time_sec",
                "purchase_rate",
                "first_basket_amount",
            ],
            "multipliers": {
                "session_rate": p.high_value_session_rate_multiplier,
                "browsing_time": p.high_value_browsing_multiplier,
                "purchase_probability": p.high_value_purchase_multiplier,
                "basket_extra_items": p.high_value_basket_items_multiplier,
            },
            "realised_customers": int(totals["high_value"]),
        },
        "shift": None
        if not shifted
        else {
            "date": day_to_date(scenario.shift_day),
            "browsing_time_multiplier": p.shift_browsing_multiplier,
            "mobile_share_increase": p.shift_mobile_share_increase,
            "purchase_probability_multiplier": p.shift_purchase_multiplier,
            "category_view_weights": dict(
                zip(p.categories, p.shift_category_view_weights, strict=True)
            ),
            "month_multipliers": dict(zip(MONTH_NAMES, p.shift_month_multipliers, strict=True)),
            "peak_month": peak(p.shift_month_multipliers),
        },
    }


def generate_dataset(
    out_dir: Path,
    *,
    customers: int = 5000,
    days: int = 730,
    seed: int = 42,
    start: date = DEFAULT_START,
    shift_date: date | None = None,
    minimal: bool = False,
    params: GeneratorParams = DEFAULT_PARAMS,
    customers_per_chunk: int = 50_000,
) -> dict:
    """Writes the demo files and ground_truth.json into out_dir; returns the ground-truth dict.

    Sessions fall within [start, start + days), never before the customer's signup date.
    `minimal` writes customers.csv and sessions.csv only (identical to a full run's) and no
    ground_truth.json. `customers_per_chunk` bounds memory (rounded to whole random blocks)
    and never changes the data. The returned dict holds the row count of every written file
    under "row_counts". ground_truth.json is written last: its presence marks a finished run.
    """
    out_dir = Path(out_dir)
    scenario = _build_scenario(seed, customers, start, days, shift_date, params)
    out_dir.mkdir(parents=True, exist_ok=True)
    # A previous run's files would sit beside this run's and disagree with them.
    for name in (*FILE_COLUMNS, "ground_truth.json"):
        (out_dir / name).unlink(missing_ok=True)
    blocks_per_chunk = max(1, customers_per_chunk // RANDOM_BLOCK_CUSTOMERS)
    streamed = [
        name
        for name in ("customers.csv", "sessions.csv", "events.csv", "customer_truth.csv")
        if not minimal or name in MINIMAL_FILES
    ]
    files = {name: _CsvFile(out_dir / name, FILE_COLUMNS[name]) for name in streamed}
    totals = {"sessions": 0, "purchases": 0, "dropped_out": 0, "high_value": 0}
    next_session = next_event = 0
    n_blocks = math.ceil(customers / RANDOM_BLOCK_CUSTOMERS)
    try:
        for chunk_start in range(0, n_blocks, blocks_per_chunk):
            chunk: dict[str, list[dict[str, np.ndarray]]] = {name: [] for name in files}
            for block_index in range(chunk_start, min(chunk_start + blocks_per_chunk, n_blocks)):
                first_customer = block_index * RANDOM_BLOCK_CUSTOMERS
                block = _simulate_block(
                    scenario,
                    block_index,
                    first_customer,
                    min(RANDOM_BLOCK_CUSTOMERS, customers - first_customer),
                    next_session,
                    next_event,
                    include_events=not minimal,
                )
                sessions = block["sessions.csv"]
                next_session += len(sessions["session_number"])
                next_event += len(block.get("events.csv", {}).get("event_number", ()))
                totals["sessions"] += len(sessions["session_number"])
                totals["purchases"] += int(sessions["purchase_made"].sum())
                truth = block["customer_truth.csv"]
                totals["dropped_out"] += int((truth["dropped_out_day"] >= 0).sum())
                totals["high_value"] += int(truth["high_value"].sum())
                for name in files:
                    chunk[name].append(block[name])
            for name, csv_file in files.items():
                raw = {
                    column: np.concatenate([block[column] for block in chunk[name]])
                    for column in chunk[name][0]
                }
                csv_file.write(_to_table(name, raw, scenario))
    finally:
        for csv_file in files.values():
            csv_file.close()
    row_counts = {name: csv_file.rows for name, csv_file in files.items()}
    if not minimal:
        for name, table in _catalogue_tables(scenario).items():
            csv_file = _CsvFile(out_dir / name, FILE_COLUMNS[name])
            csv_file.write(table)
            csv_file.close()
            row_counts[name] = csv_file.rows
    truth = _ground_truth(scenario, customers, minimal, totals, row_counts)
    if not minimal:
        (out_dir / "ground_truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return truth


def main(argv: list[str] | None = None) -> None:
    """Benchmark entry point: generate, then print the row counts and the wall time."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--start", type=date.fromisoformat, default=DEFAULT_START)
    parser.add_argument("--shift-date", type=date.fromisoformat, default=None)
    parser.add_argument(
        "--minimal", action="store_true", help="customers.csv and sessions.csv only"
    )
    parser.add_argument("--customers-per-chunk", type=int, default=50_000)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    truth = generate_dataset(
        args.out,
        customers=args.customers,
        days=args.days,
        seed=args.seed,
        start=args.start,
        shift_date=args.shift_date,
        minimal=args.minimal,
        customers_per_chunk=args.customers_per_chunk,
    )
    elapsed = time.perf_counter() - began
    for name, rows in truth["row_counts"].items():
        print(f"{name:20s} {rows:>12,d} rows")
    print(f"wall time: {elapsed:.1f} s")


if __name__ == "__main__":
    main()
