"""90-day churn risk: a calibrated gradient-boosted model with per-customer drivers.

The label (features.training_set): a customer churns at D when they make no purchase in
(D, D + 90]. Only customers with at least one purchase up to D are trained on and scored.

Time, never a random split: of the labelled as-of dates (each at least 90 days before the
data's end), the newest is the validation window; the one 90 days before it calibrates the
probabilities (Platt scaling of the trees' log-odds); the older ones, whose labels all end by
the calibration date, train the trees. So nothing the model or the calibration sees overlaps
the validation window's outcomes.

Drivers are LightGBM's exact TreeSHAP contributions (`pred_contrib`): per customer, the
features' contributions plus the base value add up exactly to the trees' log-odds; the
calibration is monotone in it, so a positive contribution raises the probability.

Functions take frames and return frames or models; the warehouse I/O lives in
`models.pipeline`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd

from ecom_insights.models import params as P
from ecom_insights.models.errors import NotEnoughData

LABEL = "churned_90d"
# Customer behaviour up to D. Calendar columns of D itself (month, season, ...) are left out:
# within a snapshot they are constant, and across snapshots they would teach the model the
# months of the training windows rather than anything about customers.
NUMERIC_FEATURES = (
    "days_since_signup",
    "recency_days",
    "days_since_last_session",
    "frequency",
    "monetary",
    "avg_order_value",
    "sessions_count",
    "avg_session_duration_sec",
    "purchase_rate",
    "sessions_last_7d",
    "sessions_last_30d",
    "sessions_last_90d",
    "purchases_last_7d",
    "purchases_last_30d",
    "purchases_last_90d",
    "monetary_last_30d",
    "cltv_proxy_365d",
    "sessions_prev_90d",
    "monetary_prev_90d",
    "sessions_trend_30d",
    "monetary_trend_30d",
    "avg_pages_per_session",
    "product_views_per_session",
    "add_to_cart_rate",
    "discount_usage_share",
    "categories_viewed",
    "favourite_hour",
    "favourite_weekday",
    "weekend_session_share",
)
CATEGORICAL_FEATURES = ("top_category", "favourite_category")
FEATURES = NUMERIC_FEATURES + CATEGORICAL_FEATURES


@dataclass(frozen=True)
class Windows:
    """The as-of dates of one training: trees, calibration, validation."""

    train: tuple[date, ...]
    calibration: date
    validation: date

    def as_dict(self) -> dict[str, str]:
        return {
            "train_dates": ",".join(d.isoformat() for d in self.train),
            "calibration_date": self.calibration.isoformat(),
            "validation_date": self.validation.isoformat(),
        }


def training_windows(
    data_start: date,
    data_end: date,
    horizon_days: int = P.CHURN_HORIZON_DAYS,
    step_days: int = P.TRAINING_STEP_DAYS,
    snapshots: int = P.TRAINING_SNAPSHOTS,
    min_history_days: int = 60,
) -> Windows:
    """The newest labelled date validates; the date `horizon_days` before it calibrates; up to
    `snapshots` dates, `step_days` apart and `horizon_days` before the calibration date, train.

    A training date needs `min_history_days` of data before it. Raises ValueError when the
    data is too short for one training date (about 2 x horizon + min_history days).
    """
    validation = data_end - timedelta(days=horizon_days)
    calibration = validation - timedelta(days=horizon_days)
    first = calibration - timedelta(days=horizon_days)
    earliest = data_start + timedelta(days=min_history_days)
    train = tuple(
        d
        for d in (first - timedelta(days=step_days * k) for k in range(snapshots))
        if d >= earliest
    )
    if not train:
        needed = 3 * horizon_days + min_history_days
        raise NotEnoughData(
            f"the data spans {(data_end - data_start).days} days ({data_start} to {data_end}); "
            f"a churn model needs at least {needed}: {min_history_days} of history, then "
            f"{horizon_days} each for training labels, calibration and validation"
        )
    return Windows(train=tuple(sorted(train)), calibration=calibration, validation=validation)


def eligible(frame: pd.DataFrame) -> pd.DataFrame:
    """The customers churn is about: at least CHURN_MIN_PURCHASES purchases up to D."""
    return frame[frame["frequency"] >= P.CHURN_MIN_PURCHASES]


def _matrix(frame: pd.DataFrame, categories: dict[str, list[str]]) -> pd.DataFrame:
    matrix = frame[list(NUMERIC_FEATURES)].astype("float64")
    for column in CATEGORICAL_FEATURES:
        matrix[column] = pd.Categorical(frame[column], categories=categories[column])
    return matrix


@dataclass
class ChurnModel:
    """Trees on the log-odds scale, Platt calibration on top; pickled into the registry."""

    booster: object  # lightgbm.LGBMClassifier
    platt_slope: float
    platt_intercept: float
    categories: dict[str, list[str]]
    windows: Windows
    features: tuple[str, ...] = FEATURES
    metrics: dict[str, float] = field(default_factory=dict)

    def log_odds(self, frame: pd.DataFrame) -> np.ndarray:
        return self.booster.predict(_matrix(frame, self.categories), raw_score=True)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of churning in the next 90 days, one per row."""
        z = self.platt_slope * self.log_odds(frame) + self.platt_intercept
        return 1.0 / (1.0 + np.exp(-z))

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Exact TreeSHAP contributions on the log-odds scale: one column per feature plus
        `base_value`; each row sums to the trees' log-odds for that customer."""
        values = self.booster.predict(_matrix(frame, self.categories), pred_contrib=True)
        return pd.DataFrame(values, columns=[*self.features, "base_value"], index=frame.index)

    def drivers(self, frame: pd.DataFrame, top: int = P.TOP_DRIVERS) -> list[list[dict]]:
        """Per row, the `top` features that raise the risk most (positive contributions
        only, largest first), each with the customer's value and its contribution."""
        names = list(self.features)
        contributions = self.contributions(frame)[names].to_numpy()
        values = frame[names].to_numpy(dtype=object)
        # per row, the columns in decreasing contribution; keep the positive ones
        order = np.argsort(-contributions, axis=1, kind="stable")[:, :top]
        result = []
        for row, columns in enumerate(order):
            result.append(
                [
                    {
                        "feature": names[column],
                        "value": _json_value(values[row, column]),
                        "contribution": round(float(contributions[row, column]), 6),
                    }
                    for column in columns
                    if contributions[row, column] > 0
                ]
            )
        return result


def _json_value(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)) or hasattr(value, "as_integer_ratio"):
        return float(value)
    return str(value)


def train(snapshots: dict[date, pd.DataFrame], windows: Windows) -> ChurnModel:
    """Fit the trees on the training dates and Platt scaling on the calibration date.

    `snapshots` maps as-of dates to training sets (features plus churned_90d), at least the
    dates named in `windows`. The validation date's set is not read here.
    """
    import lightgbm as lgb
    from sklearn.linear_model import LogisticRegression

    train_frame = pd.concat([eligible(snapshots[d]) for d in windows.train], ignore_index=True)
    calibration_frame = eligible(snapshots[windows.calibration])
    if train_frame[LABEL].nunique() < 2 or calibration_frame[LABEL].nunique() < 2:
        raise NotEnoughData("a churn model needs churned and retained customers in every window")
    categories = {
        column: sorted(train_frame[column].dropna().astype(str).unique())
        for column in CATEGORICAL_FEATURES
    }
    booster = lgb.LGBMClassifier(**P.CHURN_LGBM_PARAMS)
    booster.fit(_matrix(train_frame, categories), train_frame[LABEL].astype(int))
    model = ChurnModel(booster, 1.0, 0.0, categories, windows)
    platt = LogisticRegression(C=1e6)
    platt.fit(
        model.log_odds(calibration_frame).reshape(-1, 1), calibration_frame[LABEL].astype(int)
    )
    model.platt_slope = float(platt.coef_[0][0])
    model.platt_intercept = float(platt.intercept_[0])
    return model


def risk_band(probability: float) -> str:
    if probability >= P.RISK_BAND_HIGH:
        return "high"
    if probability >= P.RISK_BAND_MEDIUM:
        return "medium"
    return "low"


def score(model: ChurnModel, features: pd.DataFrame, model_version: str) -> pd.DataFrame:
    """Scores for the eligible customers of one snapshot.

    In: a `marts.customer_features` snapshot. Out: customer_id, as_of_date,
    churn_probability, risk_band, top_drivers (list of {feature, value, contribution}),
    model_version.
    """
    frame = eligible(features).reset_index(drop=True)
    probability = model.predict_proba(frame) if len(frame) else np.array([])
    return pd.DataFrame(
        {
            "customer_id": frame["customer_id"],
            "as_of_date": frame["as_of_date"],
            "churn_probability": np.round(probability, 6),
            "risk_band": [risk_band(p) for p in probability],
            "top_drivers": model.drivers(frame) if len(frame) else [],
            "model_version": model_version,
        }
    )


# --- evaluation


def expected_calibration_error(y_true, probability, bins: int = P.ECE_BINS) -> float:
    """Mean |observed rate - mean predicted| over equal-width probability bins, weighted by
    the share of rows in each bin."""
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(probability, dtype=float)
    index = np.minimum((p * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            error += mask.mean() * abs(y[mask].mean() - p[mask].mean())
    return float(error)


def classification_metrics(y_true, score_values, *, probabilities: bool) -> dict[str, float]:
    """ROC-AUC and PR-AUC of any score; Brier and ECE too when the score is a probability."""
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    y = np.asarray(y_true, dtype=int)
    s = np.asarray(score_values, dtype=float)
    metrics = {
        "roc_auc": float(roc_auc_score(y, s)),
        "pr_auc": float(average_precision_score(y, s)),
    }
    if probabilities:
        metrics["brier"] = float(brier_score_loss(y, s))
        metrics["ece"] = expected_calibration_error(y, s)
    return metrics


def rfm_rule_score(frame: pd.DataFrame) -> np.ndarray:
    """The plain RFM rule: quintile scores 1-5 of recency (long ago = 5), frequency (few = 5)
    and monetary (little = 5), summed and scaled to 0..1; higher means more likely to churn."""

    def quintile(values: pd.Series, ascending: bool) -> np.ndarray:
        pct = values.rank(method="average", pct=True, ascending=ascending)
        return np.ceil(pct * 5).clip(1, 5).to_numpy()

    r = quintile(frame["recency_days"].astype(float), ascending=True)
    f = quintile(frame["frequency"].astype(float), ascending=False)
    m = quintile(frame["monetary"].astype(float), ascending=False)
    return (r + f + m - 3) / 12.0


def driver_importance(model: ChurnModel, frame: pd.DataFrame) -> pd.Series:
    """Mean |TreeSHAP contribution| per feature over `frame`, largest first."""
    contributions = model.contributions(frame)[list(model.features)]
    return contributions.abs().mean().sort_values(ascending=False)
