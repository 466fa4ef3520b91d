"""Customer lifetime value: BG/NBD for how many purchase days a customer will have, and
Gamma-Gamma for what a purchase day is worth (docs/clv.md).

The data: `purchase_summary` computes, in SQL, every purchasing customer's frequency (repeat
purchase days), recency, age T and mean repeat-day spend at an as-of date D, in whole days, with
the definitions of `lifetimes.utils.summary_data_from_transaction_data` (a test holds them to
it). A purchase day is a day with at least one purchase; several orders on one day are one.

Time unit: the models work in weeks (days / 7), the unit of Fader, Hardie and Lee's CDNOW
study, so that the fitted parameters read like the published ones. r, a and b do not depend on
the unit; alpha is in weeks (alpha in days = 7 x alpha in weeks). Horizons are given in days
and converted once, in `_weeks`.

Value: expected value over a horizon = expected purchase days x the Gamma-Gamma conditional
expected spend of a purchase day. It is not discounted: over 90 or 365 days a discount changes
little (about 5% at 10% a year over a year), an undiscounted figure is what the holdout check
compares with actual spend, and the rate is a finance choice the reader can apply.
(lifetimes' `customer_lifetime_value` discounts month by month; it is not used.) The value is
revenue, not profit: the data has no margins.

Customers without a purchase by D have no BG/NBD history (its clock starts at the first
purchase): their rows in marts.customer_value carry NULL model columns.

Pure functions take frames and parameters (`fit_clv`, `score_customers`,
`probability_alive`, `holdout_figures`); those taking a connection (`purchase_summary`,
`refresh_customer_value`, `churn_baseline`, `holdout_check`) read the warehouse and call them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
DAYS_PER_WEEK = 7.0  # the models' time unit is the week
# The mart's horizons; its column names carry them (expected_purchases_90d, ...).
HORIZON_DAYS = {"90d": 90, "365d": 365}
SUMMARY_COLUMNS = (
    "customer_id",
    "first_purchase_date",
    "last_purchase_date",
    "frequency",
    "recency_days",
    "t_days",
    "monetary_value",
)
SCORE_COLUMNS = (
    "probability_alive",
    "expected_purchases_90d",
    "expected_purchases_365d",
    "expected_purchase_value",
    "expected_value_90d",
    "expected_value_365d",
)
MART_COLUMNS = (
    "customer_id",
    "as_of_date",
    "frequency",
    "recency_days",
    "t_days",
    "monetary_value",
    *SCORE_COLUMNS,
    "model_version",
)


@dataclass(frozen=True)
class CLVParams:
    """Every tunable of the CLV models, in one reviewed place."""

    # The purchase model: "bgnbd" (Fader, Hardie and Lee's BG/NBD) or "mbgnbd" (Batislam et
    # al.'s modified BG/NBD, same parameters r, alpha, a, b). BG/NBD lets a customer drop out
    # only right after a repeat purchase, so a customer with no repeat purchase is alive for
    # sure (P(alive) = 1); MBG/NBD adds a chance to drop out right after the first purchase,
    # so one-time buyers long silent are scored as probably gone (docs/clv.md compares them).
    purchase_model: str = "bgnbd"
    # Convergence tolerance of both fits (scipy's gradient tolerance). lifetimes' default,
    # 1e-7, makes scipy stop with "precision loss" when the maximum lies on the boundary (no
    # dropout in the data: a -> 0, as on Online Retail to 2011-09-10), which lifetimes then
    # reports as a failure; at 1e-6 that fit converges, and CDNOW's estimates do not move.
    fit_tolerance: float = 1e-6
    # L2 penalty on the (M)BG/NBD parameters (r, alpha, a, b, alpha on lifetimes' internal
    # time scale). 0 gives the maximum-likelihood estimates (and the published CDNOW ones).
    # Beware: the penalty pulls a and b towards 0 (at 0.001, CDNOW's a = 0.50 and b = 1.32
    # instead of 0.79 and 2.43), so it is no cure for a fit that fails; fit_tolerance is.
    bgnbd_penalizer: float = 0.0
    # L2 penalty on the Gamma-Gamma parameters (p, q, v); 0 as above.
    gamma_gamma_penalizer: float = 0.0
    # Constrain Gamma-Gamma's q > 1, so that the population's mean spend p v / (q - 1) is
    # finite. Off by default: on a well-behaved set the estimate is far above 1 anyway.
    gamma_gamma_q_above_one: bool = False
    # The window after D over which `holdout_check` compares predictions with actuals.
    holdout_days: int = 90
    # The window of `churn_baseline`'s probability_no_purchase: the churn model's label is
    # "no purchase in (D, D + 90]" (features.CHURN_HORIZON_DAYS).
    churn_horizon_days: int = 90
    # Below this many customers (buyers for BG/NBD, repeat buyers for Gamma-Gamma) a model is
    # not fitted and its columns are NULL: a handful of customers cannot identify four (or
    # three) parameters, and the optimiser fails to converge on them.
    min_customers_to_fit: int = 20


DEFAULT_PARAMS = CLVParams()


@dataclass(frozen=True)
class FittedCLV:
    """The two fitted models (None where there was nothing to fit) and what they were fitted
    on: `customers` with a purchase, `repeat_customers` with a repeat day of positive spend.
    `purchases` is the BG/NBD (or MBG/NBD, as params.purchase_model says) fit."""

    purchases: object | None  # lifetimes.BetaGeoFitter or ModifiedBetaGeoFitter
    gamma_gamma: object | None  # lifetimes.GammaGammaFitter
    customers: int
    repeat_customers: int
    params: CLVParams = DEFAULT_PARAMS

    def parameters(self) -> dict[str, float | int | str | None]:
        """Flat name -> value, for MLflow: the fitted parameters (alpha per week), the counts
        the fits used, the log-likelihoods and the settings."""
        out: dict[str, float | int | str | None] = {
            "time_unit": "week",
            "purchase_model": self.params.purchase_model,
            "customers": self.customers,
            "repeat_customers": self.repeat_customers,
            "bgnbd_penalizer": self.params.bgnbd_penalizer,
            "gamma_gamma_penalizer": self.params.gamma_gamma_penalizer,
            "gamma_gamma_q_above_one": str(self.params.gamma_gamma_q_above_one),
            "fit_tolerance": self.params.fit_tolerance,
        }
        model = self.params.purchase_model
        for name in ("r", "alpha", "a", "b"):
            out[f"{model}_{name}"] = (
                float(self.purchases.params_[name]) if self.purchases is not None else None
            )
        out[f"{model}_log_likelihood"] = self.purchases_log_likelihood
        for name in ("p", "q", "v"):
            out[f"gamma_gamma_{name}"] = (
                float(self.gamma_gamma.params_[name]) if self.gamma_gamma is not None else None
            )
        return out

    @property
    def purchases_log_likelihood(self) -> float | None:
        """The purchase model's log-likelihood of its data at the fitted parameters, in weeks
        and without the penalty (lifetimes keeps a penalised mean on its own time scale)."""
        if self.purchases is None:
            return None
        data = self.purchases.data
        mean = self.purchases._negative_log_likelihood(
            np.log(self.purchases.params_[["r", "alpha", "a", "b"]].to_numpy(dtype=float)),
            data["frequency"].to_numpy(),
            data["recency"].to_numpy(),
            data["T"].to_numpy(),
            data["weights"].to_numpy(),
            0.0,
        )
        return -float(mean) * float(data["weights"].sum())

    def version(self) -> str:
        """A short id of the fitted parameters: equal fits give equal versions, so a re-run
        for the same date writes the same model_version."""
        rounded = {
            k: round(v, 10) if isinstance(v, float) else v for k, v in self.parameters().items()
        }
        digest = hashlib.sha256(json.dumps(rounded, sort_keys=True).encode()).hexdigest()
        return f"{self.params.purchase_model}-gg-{digest[:12]}"


def _weeks(days) -> np.ndarray | float:
    return np.asarray(days, dtype=float) / DAYS_PER_WEEK


def _sql(relative: str) -> str:
    return (SQL_DIR / relative).read_text()


def _fetch_frame(conn, query: str, params: dict) -> pd.DataFrame:
    with conn.cursor() as cur:
        cur.execute(query, params)
        names = [column.name for column in cur.description]
        return pd.DataFrame(cur.fetchall(), columns=names)


def purchase_summary(conn, as_of_date: date) -> pd.DataFrame:
    """Every customer with a purchase on or before `as_of_date`: SUMMARY_COLUMNS
    (int_customer_purchase_summary.sql; days as integers, monetary_value as float)."""
    frame = _fetch_frame(
        conn,
        _sql("intermediate/int_customer_purchase_summary.sql"),
        {"as_of_date": as_of_date},
    )
    if frame.empty:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    frame = frame.astype(
        {"frequency": int, "recency_days": int, "t_days": int, "monetary_value": float}
    )
    return frame.sort_values("customer_id", ignore_index=True)


def fit_clv(summary: pd.DataFrame, params: CLVParams = DEFAULT_PARAMS) -> FittedCLV:
    """Fit BG/NBD (or MBG/NBD: params.purchase_model) on every row of `summary` and
    Gamma-Gamma on the rows with frequency > 0 and monetary_value > 0 (it needs a positive mean
    spend; a fully discounted repeat day can give 0). Columns in: frequency, recency_days,
    t_days, monetary_value. A model with fewer than params.min_customers_to_fit rows to fit
    is None. Raises lifetimes.utils.ConvergenceError if a fit does not converge."""
    from lifetimes import BetaGeoFitter, GammaGammaFitter, ModifiedBetaGeoFitter

    fitters = {"bgnbd": BetaGeoFitter, "mbgnbd": ModifiedBetaGeoFitter}
    if params.purchase_model not in fitters:
        raise ValueError(
            f"purchase_model must be one of {sorted(fitters)}, not {params.purchase_model!r}"
        )
    purchases = gamma_gamma = None
    if len(summary) >= params.min_customers_to_fit:
        purchases = fitters[params.purchase_model](penalizer_coef=params.bgnbd_penalizer).fit(
            summary["frequency"].to_numpy(),
            _weeks(summary["recency_days"]),
            _weeks(summary["t_days"]),
            tol=params.fit_tolerance,
        )
    repeat = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
    if len(repeat) >= params.min_customers_to_fit:
        gamma_gamma = GammaGammaFitter(penalizer_coef=params.gamma_gamma_penalizer).fit(
            repeat["frequency"].to_numpy(),
            repeat["monetary_value"].to_numpy(dtype=float),
            q_constraint=params.gamma_gamma_q_above_one,
            tol=params.fit_tolerance,
        )
    return FittedCLV(purchases, gamma_gamma, len(summary), len(repeat), params)


def probability_alive(fitted: FittedCLV, summary: pd.DataFrame) -> pd.Series:
    """(M)BG/NBD P(alive at D | history) per row of `summary` (frequency, recency_days, t_days),
    indexed like it. The churn model's baseline score is 1 - this."""
    if fitted.purchases is None:
        return pd.Series(np.nan, index=summary.index, dtype=float)
    return pd.Series(
        fitted.purchases.conditional_probability_alive(
            summary["frequency"].to_numpy(),
            _weeks(summary["recency_days"]),
            _weeks(summary["t_days"]),
        ),
        index=summary.index,
        dtype=float,
    )


def expected_purchases(fitted: FittedCLV, summary: pd.DataFrame, horizon_days: float) -> pd.Series:
    """(M)BG/NBD expected purchase days in (D, D + horizon_days] per row of `summary`."""
    if fitted.purchases is None:
        return pd.Series(np.nan, index=summary.index, dtype=float)
    return pd.Series(
        fitted.purchases.conditional_expected_number_of_purchases_up_to_time(
            _weeks(horizon_days),
            summary["frequency"].to_numpy(),
            _weeks(summary["recency_days"]),
            _weeks(summary["t_days"]),
        ),
        index=summary.index,
        dtype=float,
    )


def probability_no_purchase(
    fitted: FittedCLV, summary: pd.DataFrame, horizon_days: float
) -> pd.Series:
    """(M)BG/NBD P(no purchase in (D, D + horizon_days] | history) per row of `summary`:
    dead, or alive with no purchase. Under either model a customer alive at D stays alive until
    their next purchase, and their rate given the history is Gamma(r + x, alpha + T), so
    P(none | alive) = ((alpha + T) / (alpha + T + t)) ** (r + x). This is the model's own
    forecast of the churn label "no purchase in the next 90 days"."""
    if fitted.purchases is None:
        return pd.Series(np.nan, index=summary.index, dtype=float)
    r, alpha = fitted.purchases.params_["r"], fitted.purchases.params_["alpha"]
    x = summary["frequency"].to_numpy()
    age = _weeks(summary["t_days"])
    none_if_alive = ((alpha + age) / (alpha + age + _weeks(horizon_days))) ** (r + x)
    alive = probability_alive(fitted, summary).to_numpy()
    return pd.Series(1 - alive + alive * none_if_alive, index=summary.index, dtype=float)


def expected_purchase_value(fitted: FittedCLV, summary: pd.DataFrame) -> pd.Series:
    """Gamma-Gamma conditional expected spend of one purchase day per row of `summary`
    (frequency, monetary_value): the customer's repeat-day mean shrunk towards the population
    mean, which is what a customer without repeat days gets."""
    if fitted.gamma_gamma is None:
        return pd.Series(np.nan, index=summary.index, dtype=float)
    frequency = summary["frequency"].to_numpy()
    # a customer whose repeat days all cost 0 was left out of the fit: treat as no repeats
    spend = summary["monetary_value"].to_numpy(dtype=float)
    frequency = np.where(spend > 0, frequency, 0)
    return pd.Series(
        fitted.gamma_gamma.conditional_expected_average_profit(frequency, spend),
        index=summary.index,
        dtype=float,
    )


def score_customers(fitted: FittedCLV, summary: pd.DataFrame) -> pd.DataFrame:
    """Per customer of `summary` (SUMMARY_COLUMNS): customer_id and SCORE_COLUMNS.
    expected_value_* = expected_purchases_* x expected_purchase_value, undiscounted."""
    scores = pd.DataFrame({"customer_id": summary["customer_id"]}, index=summary.index)
    scores["probability_alive"] = probability_alive(fitted, summary)
    value = expected_purchase_value(fitted, summary)
    for label, days in HORIZON_DAYS.items():
        scores[f"expected_purchases_{label}"] = expected_purchases(fitted, summary, days)
    scores["expected_purchase_value"] = value
    for label in HORIZON_DAYS:
        scores[f"expected_value_{label}"] = scores[f"expected_purchases_{label}"] * value
    return scores


def customer_value_rows(
    customers: pd.Series,
    summary: pd.DataFrame,
    scores: pd.DataFrame,
    as_of_date: date,
    model_version: str,
) -> pd.DataFrame:
    """The mart's rows (MART_COLUMNS): one per customer of `customers` (ids) or `summary`, the
    summary and scores joined where the customer has purchased, NULL (NaN) otherwise."""
    ids = pd.Index(customers).union(pd.Index(summary["customer_id"])).unique()
    rows = pd.DataFrame({"customer_id": ids.sort_values()})
    rows = rows.merge(
        summary[["customer_id", "frequency", "recency_days", "t_days", "monetary_value"]],
        on="customer_id",
        how="left",
    ).merge(scores, on="customer_id", how="left")
    rows["as_of_date"] = as_of_date
    rows["model_version"] = model_version
    return rows[list(MART_COLUMNS)]


@dataclass(frozen=True)
class CustomerValueRefresh:
    as_of_date: date
    rows: int
    customers_with_purchases: int
    model_version: str
    parameters: dict  # FittedCLV.parameters(): log them to MLflow


def refresh_customer_value(
    conn,
    as_of_date: date,
    params: CLVParams = DEFAULT_PARAMS,
    model_version: str | None = None,
) -> CustomerValueRefresh:
    """Fit both models on data up to the end of `as_of_date` and replace marts.customer_value's
    rows for that date (delete-then-insert in the caller's transaction): one row per customer
    signed up or purchasing on or before it. `model_version` defaults to FittedCLV.version()
    (a registry's version may be passed instead)."""
    from psycopg2.extras import execute_values

    from ecom_insights.analytics.demand import as_rows

    summary = purchase_summary(conn, as_of_date)
    fitted = fit_clv(summary, params)
    version = model_version or fitted.version()
    customers = _fetch_frame(
        conn,
        "select customer_id from core.customers where signup_date <= %(as_of_date)s",
        {"as_of_date": as_of_date},
    )["customer_id"]
    rows = customer_value_rows(
        customers, summary, score_customers(fitted, summary), as_of_date, version
    )
    columns = [c for c in MART_COLUMNS if c != "as_of_date"]
    records = as_rows(rows, columns, as_of_date)
    with conn.cursor() as cur:
        cur.execute(_sql("ddl/customer_value.sql"))
        cur.execute("delete from marts.customer_value where as_of_date = %s", (as_of_date,))
        if records:
            execute_values(
                cur,
                f"insert into marts.customer_value (as_of_date, {', '.join(columns)}) values %s",
                records,
                page_size=1000,
            )
    return CustomerValueRefresh(
        as_of_date, len(records), len(summary), version, fitted.parameters()
    )


def churn_baseline(
    conn, as_of_date: date, params: CLVParams = DEFAULT_PARAMS
) -> tuple[pd.DataFrame, FittedCLV]:
    """The BG/NBD baseline of the churn model at D, fitted on data up to the end of D only.

    Returns (frame, fitted). The frame has one row per customer with a purchase by D:
    customer_id, probability_alive, churn_score (= 1 - probability_alive) and
    probability_no_purchase (P(no purchase in (D, D + churn_horizon_days]), the model's
    forecast of the churn label itself). Customers without a purchase by D are not in it:
    BG/NBD has nothing to say about them (join with a left join and handle the NULLs)."""
    summary = purchase_summary(conn, as_of_date)
    fitted = fit_clv(summary, params)
    alive = probability_alive(fitted, summary)
    frame = pd.DataFrame(
        {
            "customer_id": summary["customer_id"],
            "probability_alive": alive,
            "churn_score": 1 - alive,
            "probability_no_purchase": probability_no_purchase(
                fitted, summary, params.churn_horizon_days
            ),
        }
    )
    return frame, fitted


def holdout_figures(predicted: pd.DataFrame, actual: pd.DataFrame) -> dict[str, float]:
    """Predictions against what happened, over the customers of `predicted`.

    Columns in: predicted: customer_id, predicted_purchases, predicted_value,
    predicted_no_purchase (probability); actual: customer_id, actual_purchases, actual_value
    (customers without a purchase may be absent: they count as 0).
    Out: customers; purchase days: MAE, RMSE, Pearson correlation, totals and their ratio;
    spend: MAE, correlation, totals and ratio; share of customers with no purchase, predicted
    (mean probability) and actual, and the ROC AUC of the predicted probability for it (the
    churn label's discrimination; NaN when everyone or no one purchased)."""
    from sklearn.metrics import roc_auc_score

    both = predicted.merge(actual, on="customer_id", how="left")
    both[["actual_purchases", "actual_value"]] = (
        both[["actual_purchases", "actual_value"]].astype(float).fillna(0.0)
    )
    error = both["predicted_purchases"] - both["actual_purchases"]
    figures = {
        "customers": len(both),
        "purchases_mae": float(error.abs().mean()),
        "purchases_rmse": float(np.sqrt((error**2).mean())),
        "purchases_correlation": float(both["predicted_purchases"].corr(both["actual_purchases"])),
        "purchases_predicted_total": float(both["predicted_purchases"].sum()),
        "purchases_actual_total": float(both["actual_purchases"].sum()),
        "value_mae": float((both["predicted_value"] - both["actual_value"]).abs().mean()),
        "value_correlation": float(both["predicted_value"].corr(both["actual_value"])),
        "value_predicted_total": float(both["predicted_value"].sum()),
        "value_actual_total": float(both["actual_value"].sum()),
        "no_purchase_share_predicted": float(both["predicted_no_purchase"].mean()),
        "no_purchase_share_actual": float((both["actual_purchases"] == 0).mean()),
        "no_purchase_auc": float(
            roc_auc_score(both["actual_purchases"] == 0, both["predicted_no_purchase"])
            if both["actual_purchases"].eq(0).nunique() == 2
            else np.nan
        ),
    }
    figures["purchases_total_ratio"] = (
        figures["purchases_predicted_total"] / figures["purchases_actual_total"]
    )
    figures["value_total_ratio"] = figures["value_predicted_total"] / figures["value_actual_total"]
    return figures


def holdout_check(
    conn, as_of_date: date, params: CLVParams = DEFAULT_PARAMS
) -> dict[str, float | int | str | None]:
    """Fit on data up to the end of `as_of_date`, predict every purchasing customer's purchase
    days and spend in (D, D + params.holdout_days], and compare with what the warehouse holds
    for that window (which must be observed in full: D + holdout_days <= the last purchase
    day). Returns `holdout_figures`, the window and the fitted parameters, for the model card.
    """
    holdout_end = as_of_date + timedelta(days=params.holdout_days)
    (data_end,) = _fetch_frame(conn, "select max(session_date) as data_end from core.sessions", {})[
        "data_end"
    ]
    if data_end is None or holdout_end > data_end:
        raise ValueError(
            f"the holdout ({as_of_date}, {holdout_end}] is not observed in full: the data "
            f"ends on {data_end}"
        )
    summary = purchase_summary(conn, as_of_date)
    fitted = fit_clv(summary, params)
    purchases = expected_purchases(fitted, summary, params.holdout_days)
    predicted = pd.DataFrame(
        {
            "customer_id": summary["customer_id"],
            "predicted_purchases": purchases,
            "predicted_value": purchases * expected_purchase_value(fitted, summary),
            "predicted_no_purchase": probability_no_purchase(fitted, summary, params.holdout_days),
        }
    )
    actual = _fetch_frame(
        conn,
        _sql("intermediate/int_customer_holdout_purchases.sql"),
        {"as_of_date": as_of_date, "holdout_end": holdout_end},
    )
    if actual.empty:
        actual = pd.DataFrame(columns=["customer_id", "actual_purchases", "actual_value"])
    return {
        "as_of_date": as_of_date.isoformat(),
        "holdout_end": holdout_end.isoformat(),
        "holdout_days": params.holdout_days,
        **holdout_figures(predicted, actual),
        **fitted.parameters(),
    }
