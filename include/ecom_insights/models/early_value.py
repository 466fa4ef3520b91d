"""Early high-value buyers: from a customer's first 30 days only, the probability of being in the
top 5% by value over the following year (or the longest window the data allows).

The frame comes from include/sql/intermediate/int_customer_early_window.sql (one row per
customer whose early window is over at the as-of date D; label columns set only when the label
window is over too). Then, all pure:

- `train(frame, params) -> (model, metrics)`: a LightGBM classifier on the earlier signup
  cohorts (class imbalance weighted), Platt-calibrated on the next cohorts, evaluated on the
  latest cohorts (never a random split) against two named baselines: the first-window spend
  and a logistic regression on the same features;
- `score(model, frame) -> frame`: calibrated probability, percentile and top-share flag;
- the metrics: `precision_at_top`, `normalised_gini`.

Database steps (`load_early_window`, `write_early_high_value`, `refresh_early_high_value`)
take an open connection; the caller commits. No MLflow here: `model.params`,
`model.features`, `model.signals` and the metrics dict are what a registry logs.
docs/early-value.md has the definitions, the windows and the figures.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecom_insights.models.errors import NotEnoughData

SQL_PATH = (
    Path(__file__).resolve().parents[2] / "sql" / "intermediate" / "int_customer_early_window.sql"
)
MART = "early_high_value"
MART_COLUMNS = {
    "customer_id": "text not null",
    "as_of_date": "date not null",
    "signup_date": "date not null",
    "probability_high_value": "double precision not null",
    "percentile": "double precision not null",
    "is_top_5pct": "boolean not null",
    "model_version": "text not null",
}

# Columns of the early-window frame that the models read. Numbers are used as they are (NaN:
# nothing to measure, e.g. no purchase yet, or no browsing time in an order export).
NUMERIC_FEATURES = (
    "age",
    "sessions",
    "active_days",
    "sessions_first_7_days",
    "purchases",
    "purchase_rate",
    "spend",
    "average_order_value",
    "max_purchase_amount",
    "first_purchase_amount",
    "days_to_first_purchase",
    "discount_share",
    "discounted_purchase_share",
    "browsing_time_sec",
    "mean_browsing_time_sec",
    "pages_viewed",
    "mean_pages_viewed",
    "cart_sessions",
    "categories_viewed",
    "view_events",
    "cart_events",
    "items_purchased",
    "categories_purchased",
    "mobile_session_share",
    "campaign_session_share",
)
CATEGORICAL_FEATURES = ("gender", "location", "acquisition_channel")
SPEND_BASELINE = "spend"  # baseline (a): rank customers by their first-window spend


@dataclass(frozen=True)
class EarlyValueParams:
    """Every tunable of the early high-value model, in one reviewed place (days are calendar
    days; shares are of customers)."""

    # --- windows
    early_window_days: int = 30  # features: days [signup, signup + 30)
    horizon_days: int = 365  # label: value over the next 365 days, when the data allows
    # When the data is too short for horizon_days, the horizon shrinks so that customers who
    # signed up in the data's first min_labelled_signup_days still get a full label window,
    # rounded down to a multiple of horizon_step_days; below min_horizon_days, no model.
    min_labelled_signup_days: int = 150
    horizon_step_days: int = 30
    min_horizon_days: int = 90
    top_share: float = 0.05  # "high value": the top 5% of labelled customers by value
    # Signups in the data's first burn_in_days are left out (training, scoring, the top-share
    # threshold): where signup dates are first orders (Online Retail), they are mostly
    # customers older than the export. 0 when signups are real (the demo data).
    burn_in_days: int = 0

    # --- time-based validation: labelled customers in signup order
    validation_share: float = 0.25  # the latest signups: evaluation only
    calibration_share: float = 0.2  # of the rest, the latest: Platt scaling only

    # --- LightGBM (class imbalance: positives weighted by negatives / positives)
    # Small, regularised trees: the early signals are a few monotone counts and sums; on the
    # demo data (docs/early-value.md) 15 leaves x 300 trees fitted noise in age and location.
    n_estimators: int = 150
    learning_rate: float = 0.03
    num_leaves: int = 7
    min_child_samples: int = 100
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    reg_lambda: float = 1.0
    seed: int = 42

    # --- baseline (b): logistic regression on the same features (inverse regularisation)
    logistic_c: float = 1.0


DEFAULT_PARAMS = EarlyValueParams()


@dataclass
class EarlyValueModel:
    """A calibrated classifier and what a registry logs with it."""

    booster: Any  # lightgbm.LGBMClassifier
    calibrator: Any  # sklearn LogisticRegression on the booster's raw score (Platt scaling)
    features: list[str]
    categories: dict[str, list[str]]  # levels of each categorical feature, as trained
    params: dict[str, Any]  # EarlyValueParams plus the windows and split dates actually used
    signals: pd.DataFrame  # the early signals, strongest first (see `early_signals`)
    version: str = ""


# ---- windows


def choose_horizon(
    first_signup: date, data_end: date, params: EarlyValueParams = DEFAULT_PARAMS
) -> int:
    """The label window in days: params.horizon_days if the data allows it, else the longest
    multiple of horizon_step_days that leaves min_labelled_signup_days of signups labelled."""
    span = (data_end - first_signup).days + 1
    available = span - params.early_window_days - params.min_labelled_signup_days
    if available >= params.horizon_days:
        return params.horizon_days
    horizon = available // params.horizon_step_days * params.horizon_step_days
    if horizon < params.min_horizon_days:
        raise NotEnoughData(
            f"{span} days of data ({first_signup} .. {data_end}) leave a label window of "
            f"{max(available, 0)} days, less than min_horizon_days={params.min_horizon_days}"
        )
    return horizon


# ---- metrics


def precision_at_top(is_positive, score, share: float) -> float:
    """Share of positives among the ceil(share * n) highest scores (ties broken by order)."""
    is_positive = np.asarray(is_positive, dtype=bool)
    score = np.asarray(score, dtype=float)
    count = max(1, math.ceil(share * len(score)))
    top = np.argsort(-score, kind="stable")[:count]
    return float(is_positive[top].mean())


def normalised_gini(value, score) -> float:
    """Gini of the ordering by `score` on the realised `value`, over the Gini of the perfect
    ordering (by value itself): 1 for the perfect order, -1 for the reversed one, about 0 at
    random. Tied scores count as ordered at random (average ranks), so a score that is 0 for
    most customers is not credited for an arbitrary order among them."""
    from scipy.stats import rankdata

    value = np.asarray(value, dtype=float)
    score = np.asarray(score, dtype=float)
    centred = value - value.mean()
    perfect = float(np.dot(centred, rankdata(value)))
    if perfect == 0:
        raise ValueError("normalised Gini is undefined when every value is the same")
    return float(np.dot(centred, rankdata(score)) / perfect)


def ranking_metrics(is_positive, value, score, share: float) -> dict[str, float]:
    """precision_at_top, normalised_gini and roc_auc of one score."""
    from sklearn.metrics import roc_auc_score

    return {
        "precision_at_top": precision_at_top(is_positive, score, share),
        "normalised_gini": normalised_gini(value, score),
        "roc_auc": float(roc_auc_score(np.asarray(is_positive, dtype=bool), score)),
    }


# ---- design matrices


def _categories(frame: pd.DataFrame) -> dict[str, list[str]]:
    return {
        column: sorted(frame[column].dropna().astype(str).unique())
        for column in CATEGORICAL_FEATURES
        if column in frame
    }


def _design(frame: pd.DataFrame, categories: dict[str, list[str]]) -> pd.DataFrame:
    """Features in a fixed order; categoricals with the trained levels (others: missing)."""
    columns = {}
    for column in NUMERIC_FEATURES:
        columns[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    for column, levels in categories.items():
        columns[column] = pd.Categorical(frame[column].astype("string"), categories=levels)
    return pd.DataFrame(columns, index=frame.index)


def _logistic_design(design: pd.DataFrame, categories: dict[str, list[str]]) -> pd.DataFrame:
    """Numbers with a missing indicator and 0 for missing, categoricals one-hot."""
    numeric = design[list(NUMERIC_FEATURES)]
    missing = numeric.isna().astype(float).add_suffix("_missing")
    parts = [numeric.fillna(0.0), missing.loc[:, missing.any()]]
    parts += [pd.get_dummies(design[c], prefix=c, dtype=float) for c in categories]
    return pd.concat(parts, axis=1)


def time_split(signup_dates: pd.Series, share: float) -> pd.Series:
    """True for the latest `share` of rows by signup date; a signup day is never split."""
    dates = pd.to_datetime(signup_dates)
    cutoff = dates.sort_values().iloc[min(len(dates) - 1, int(len(dates) * (1 - share)))]
    return dates >= cutoff


def split_cohorts(
    frame: pd.DataFrame, params: EarlyValueParams = DEFAULT_PARAMS
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The labelled rows in signup order, cut in three by signup date: training (earliest),
    calibration (the latest calibration_share before validation), validation (the latest
    validation_share). Never a random split: the model is judged on later cohorts."""
    labelled = frame[frame["is_labelled"].fillna(False).astype(bool)].copy()
    labelled = labelled.sort_values(["signup_date", "customer_id"]).reset_index(drop=True)
    labelled["is_top_value"] = labelled["is_top_value"].astype(bool)
    is_validation = time_split(labelled["signup_date"], params.validation_share)
    fitting = labelled[~is_validation].reset_index(drop=True)
    is_calibration = time_split(fitting["signup_date"], params.calibration_share)
    return (
        fitting[~is_calibration].reset_index(drop=True),
        fitting[is_calibration].reset_index(drop=True),
        labelled[is_validation].reset_index(drop=True),
    )


# ---- training and scoring


def _lightgbm(params: EarlyValueParams, positive_weight: float):
    from lightgbm import LGBMClassifier

    return LGBMClassifier(
        n_estimators=params.n_estimators,
        learning_rate=params.learning_rate,
        num_leaves=params.num_leaves,
        min_child_samples=params.min_child_samples,
        colsample_bytree=params.feature_fraction,
        subsample=params.bagging_fraction,
        subsample_freq=1,
        reg_lambda=params.reg_lambda,
        scale_pos_weight=positive_weight,
        random_state=params.seed,
        n_jobs=1,  # one thread: deterministic, and OpenMP spin-waits on a busy 2-core machine
        verbose=-1,
    )


def _probability(model: EarlyValueModel, design: pd.DataFrame) -> np.ndarray:
    raw = model.booster.predict(design, raw_score=True)
    return model.calibrator.predict_proba(raw.reshape(-1, 1))[:, 1]


def train(
    frame: pd.DataFrame, params: EarlyValueParams = DEFAULT_PARAMS
) -> tuple[EarlyValueModel, dict[str, float]]:
    """Fit, calibrate and evaluate on the labelled rows of an early-window frame.

    Columns in: customer_id, signup_date, the features (NUMERIC_FEATURES,
    CATEGORICAL_FEATURES), is_labelled, future_value, is_top_value.
    Labelled rows in signup order: the latest validation_share are held out for evaluation;
    of the rest, the latest calibration_share calibrate (Platt) and the earlier ones fit the
    booster and the logistic baseline. Metrics (validation cohorts): for `model`,
    `baseline_spend` and `baseline_logistic`: precision_at_top, normalised_gini, roc_auc;
    plus the model's Brier score, mean probability and observed positive rate, and counts.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import brier_score_loss
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    training, calibration, validation = split_cohorts(frame, params)
    for name, part in (("training", training), ("calibration", calibration)):
        if part["is_top_value"].nunique() < 2:
            raise NotEnoughData(f"the {name} cohorts need both high-value and other customers")

    categories = _categories(training)
    x_train = _design(training, categories)
    y_train = training["is_top_value"].to_numpy()
    positives = int(y_train.sum())
    booster = _lightgbm(params, (len(y_train) - positives) / positives)
    booster.fit(x_train, y_train)

    raw_calibration = booster.predict(_design(calibration, categories), raw_score=True)
    calibrator = LogisticRegression(C=1e6)
    calibrator.fit(raw_calibration.reshape(-1, 1), calibration["is_top_value"].to_numpy())

    x_validation = _design(validation, categories)
    features = list(x_train.columns)
    run_params = {
        **asdict(params),
        "horizon_days_used": frame.attrs.get("horizon_days", params.horizon_days),
        "signups_from": str(frame.attrs.get("signups_from", "")),
        "training_customers": len(training),
        "calibration_customers": len(calibration),
        "validation_customers": len(validation),
        "training_signups": f"{training.signup_date.min()} .. {training.signup_date.max()}",
        "calibration_signups": f"{calibration.signup_date.min()} .. "
        f"{calibration.signup_date.max()}",
        "validation_signups": f"{validation.signup_date.min()} .. {validation.signup_date.max()}",
    }
    model = EarlyValueModel(
        booster=booster,
        calibrator=calibrator,
        features=features,
        categories=categories,
        params=run_params,
        signals=early_signals(booster, x_validation),
    )
    model.version = _version(model)

    logistic = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=params.logistic_c, class_weight="balanced", max_iter=2000),
    )
    logistic_train = _logistic_design(x_train, categories)
    logistic.fit(logistic_train, y_train)
    logistic_validation = _logistic_design(x_validation, categories).reindex(
        columns=logistic_train.columns, fill_value=0.0
    )

    y_validation = validation["is_top_value"].to_numpy()
    value = validation["future_value"].to_numpy(dtype=float)
    probability = _probability(model, x_validation)
    scores = {
        "model": probability,
        "baseline_spend": validation[SPEND_BASELINE].to_numpy(dtype=float),
        "baseline_logistic": logistic.predict_proba(logistic_validation)[:, 1],
    }
    metrics: dict[str, float] = {}
    for name, score in scores.items():
        for metric, number in ranking_metrics(y_validation, value, score, params.top_share).items():
            metrics[f"{name}_{metric}"] = number
    metrics.update(
        {
            "model_brier": float(brier_score_loss(y_validation, probability)),
            "model_mean_probability": float(probability.mean()),
            "validation_positive_rate": float(y_validation.mean()),
            "training_positive_rate": float(y_train.mean()),
            "validation_customers": float(len(validation)),
            "validation_positives": float(y_validation.sum()),
        }
    )
    return model, metrics


def early_signals(booster, design: pd.DataFrame) -> pd.DataFrame:
    """Per feature: share of the total split gain, mean |SHAP| (LightGBM's pred_contrib, on
    the raw-score scale) and `direction`: the Spearman correlation of a numeric feature with
    its SHAP value (> 0: more of it, more likely high value). Sorted by mean |SHAP|."""
    gain = booster.booster_.feature_importance(importance_type="gain")
    contributions = booster.predict(design, pred_contrib=True)[:, :-1]  # last: the bias
    signals = pd.DataFrame(
        {
            "feature": list(design.columns),
            "gain_share": gain / gain.sum() if gain.sum() > 0 else gain,
            "mean_abs_shap": np.abs(contributions).mean(axis=0),
        }
    )
    directions = []
    for position, column in enumerate(design.columns):
        values = design[column]
        shap = contributions[:, position]
        if (
            isinstance(values.dtype, pd.CategoricalDtype)
            or values.nunique() < 2
            or np.ptp(shap) == 0
        ):
            directions.append(np.nan)
            continue
        directions.append(pd.Series(values.to_numpy()).corr(pd.Series(shap), method="spearman"))
    signals["direction"] = directions
    return signals.sort_values("mean_abs_shap", ascending=False).reset_index(drop=True)


def _version(model: EarlyValueModel) -> str:
    """A content hash: the same parameters, features and trees give the same version."""
    digest = hashlib.sha256()
    digest.update(json.dumps(model.params, sort_keys=True, default=str).encode())
    digest.update(model.booster.booster_.model_to_string().encode())
    return f"early-value-{digest.hexdigest()[:12]}"


def score(model: EarlyValueModel, frame: pd.DataFrame) -> pd.DataFrame:
    """Calibrated probability of being a top-value customer, for every row of `frame`.

    Columns in: customer_id, signup_date and the features. Columns out: customer_id,
    signup_date, probability_high_value, percentile (0 = lowest, 100 = highest among the
    rows scored together), is_top_5pct (among the ceil(top_share * n) highest).
    """
    columns = ["customer_id", "signup_date", "probability_high_value", "percentile", "is_top_5pct"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    probability = pd.Series(_probability(model, _design(frame, model.categories)))
    count = len(probability)
    low_rank = probability.rank(method="min")
    order = np.lexsort((frame["customer_id"].to_numpy(), -probability.to_numpy()))
    is_top = np.zeros(count, dtype=bool)
    is_top[order[: math.ceil(model.params["top_share"] * count)]] = True
    return pd.DataFrame(
        {
            "customer_id": frame["customer_id"].to_numpy(),
            "signup_date": frame["signup_date"].to_numpy(),
            "probability_high_value": probability.to_numpy(),
            "percentile": (100 * (low_rank - 1) / max(count - 1, 1)).to_numpy(),
            "is_top_5pct": is_top,
        }
    )


def scoring_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The customers to score at the as-of date: early window over, label window not yet
    (still inside their first early_window_days + horizon_days)."""
    return frame[~frame["is_labelled"].fillna(False).astype(bool)]


# ---- the database


def data_range(conn) -> tuple[date | None, date | None]:
    """The first signup and the last session day in core."""
    with conn.cursor() as cur:
        cur.execute(
            "select (select min(signup_date) from core.customers), "
            "(select max(session_date) from core.sessions)"
        )
        return cur.fetchone()


def load_early_window(
    conn, as_of: date, params: EarlyValueParams = DEFAULT_PARAMS, horizon_days: int | None = None
) -> pd.DataFrame:
    """The early-window frame at `as_of` (see int_customer_early_window.sql) for signups
    from the data's first day + burn_in_days, with the horizon of `choose_horizon` unless
    given (both in frame.attrs). `as_of` must not be after the data's last day: labels of
    windows that end in a day with no data yet would read as zero spend."""
    first_signup, data_end = data_range(conn)
    if data_end is None or as_of > data_end:
        raise ValueError(f"as-of date {as_of} is after the data's last day ({data_end})")
    signups_from = first_signup + timedelta(days=params.burn_in_days)
    if horizon_days is None:
        horizon_days = choose_horizon(signups_from, as_of, params)
    with conn.cursor() as cur:
        cur.execute(
            SQL_PATH.read_text(),
            {
                "as_of_date": as_of,
                "early_window_days": params.early_window_days,
                "horizon_days": horizon_days,
                "top_share": params.top_share,
                "signups_from": signups_from,
            },
        )
        names = [column.name for column in cur.description]
        frame = pd.DataFrame(cur.fetchall(), columns=names)
    for column in frame.columns:
        if frame[column].dtype == object and column not in (
            "customer_id",
            "signup_date",
            "early_window_end",
            "label_window_end",
            "gender",
            "location",
            "acquisition_channel",
            "is_labelled",
            "is_top_value",
        ):
            frame[column] = pd.to_numeric(frame[column])
    frame.attrs["horizon_days"] = horizon_days
    frame.attrs["signups_from"] = signups_from
    return frame


def write_early_high_value(conn, scored: pd.DataFrame, as_of: date, model_version: str) -> int:
    """Replace marts.early_high_value's rows for `as_of` with `scored` (columns of `score`)."""
    from ecom_insights.analytics.models import write_mart

    rows = [
        (
            row.customer_id,
            as_of,
            row.signup_date,
            float(row.probability_high_value),
            float(row.percentile),
            bool(row.is_top_5pct),
            model_version,
        )
        for row in scored.itertuples(index=False)
    ]
    return write_mart(conn, MART, MART_COLUMNS, rows, as_of)


def refresh_early_high_value(
    conn, as_of: date, params: EarlyValueParams = DEFAULT_PARAMS
) -> tuple[EarlyValueModel, dict[str, float], int]:
    """Train on the customers labelled by `as_of`, score those still in their label window,
    and write the mart; return the model, its metrics and the rows written."""
    frame = load_early_window(conn, as_of, params)
    model, metrics = train(frame, params)
    rows = write_early_high_value(conn, score(model, scoring_rows(frame)), as_of, model.version)
    return model, metrics, rows
