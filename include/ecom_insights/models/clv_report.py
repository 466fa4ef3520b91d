"""The CLV model card's figures: a holdout check (and, on demo data, the planted truth) on a
set of contract files, in a scratch database. A measurement, not a test.

    python -m ecom_insights.models.clv_report --data DIR --as-of YYYY-MM-DD
        [--holdout-days 90] [--server-url URL]

Loads DIR's files (the demo generator's or `ecom convert`'s) into a new database on the
server named by --server-url (default: a throwaway embedded PostgreSQL), then prints as JSON:
for BG/NBD and for MBG/NBD, the fitted parameters and `clv.holdout_check` at the as-of date
and, with DIR/customer_truth.csv (demo data), the AUC of P(alive) for the customers truly
alive at that date; and the seconds
taken by the summary, the fits, the scoring and the mart's write (`refresh_customer_value`).
The database is dropped at the end. docs/clv.md quotes the figures.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd

from ecom_insights import ingest, warehouse
from ecom_insights.models import clv

PURCHASE_MODELS = ("bgnbd", "mbgnbd")  # both are reported; the timings are params' model's


def alive_auc(baseline: pd.DataFrame, truth: pd.DataFrame, as_of_date: date) -> dict:
    """How well P(alive) ranks customers truly alive at D above those who dropped out by D.

    Columns in: baseline: customer_id, probability_alive (clv.churn_baseline); truth:
    customer_id, dropped_out_on (the generator's customer_truth.csv: the first day no longer
    alive, empty if never). Out: customers, share truly alive, mean P(alive) among them and
    the ROC AUC of P(alive) for "alive at D"."""
    from sklearn.metrics import roc_auc_score

    dropped = pd.to_datetime(truth["dropped_out_on"], errors="coerce").dt.date
    alive_at = pd.DataFrame(
        {
            "customer_id": truth["customer_id"],
            "truly_alive": ~(dropped.notna() & (dropped <= as_of_date)),
        }
    )
    both = baseline.merge(alive_at, on="customer_id", how="inner")
    return {
        "customers": len(both),
        "truly_alive_share": float(both["truly_alive"].mean()),
        "mean_probability_alive": float(both["probability_alive"].mean()),
        "auc_probability_alive": float(
            roc_auc_score(both["truly_alive"], both["probability_alive"])
        ),
    }


def load_files(url: str, data_dir: Path) -> None:
    """Land, check and merge DIR's contract files into core, as an ingestion run does."""
    with warehouse.connect(url) as conn:
        ingest.ensure_schema(conn)
        ingest.land_files(conn, data_dir, reprocess=True)
        ingest.apply_row_rules(conn, datetime(2000, 1, 1, tzinfo=UTC))
        ingest.merge_into_core(conn)


def measure(url: str, data_dir: Path, as_of_date: date, params: clv.CLVParams) -> dict:
    """Every figure of the report on data already in core at `url` (DIR for the truth)."""
    report: dict = {"data": str(data_dir), "as_of_date": as_of_date.isoformat()}
    truth_file = data_dir / "customer_truth.csv"
    for model in PURCHASE_MODELS:
        model_params = replace(params, purchase_model=model)
        with warehouse.connect(url) as conn:
            report[model] = {"holdout": clv.holdout_check(conn, as_of_date, model_params)}
            if truth_file.exists():
                baseline, _ = clv.churn_baseline(conn, as_of_date, model_params)
                truth = pd.read_csv(truth_file, dtype=str, keep_default_na=False)
                report[model]["truth"] = alive_auc(baseline, truth, as_of_date)
    seconds = {}
    with warehouse.connect(url) as conn:
        began = time.perf_counter()
        summary = clv.purchase_summary(conn, as_of_date)
        seconds["summary_sql"] = time.perf_counter() - began
        began = time.perf_counter()
        fitted = clv.fit_clv(summary, params)
        seconds["fit_bgnbd_and_gamma_gamma"] = time.perf_counter() - began
        began = time.perf_counter()
        clv.score_customers(fitted, summary)
        seconds["score"] = time.perf_counter() - began
        began = time.perf_counter()
        refreshed = clv.refresh_customer_value(conn, as_of_date, params)
        seconds["refresh_customer_value_total"] = time.perf_counter() - began
    report["mart_rows"] = refreshed.rows
    report["seconds"] = {name: round(value, 2) for name, value in seconds.items()}
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--as-of", type=date.fromisoformat, required=True)
    parser.add_argument("--holdout-days", type=int, default=clv.DEFAULT_PARAMS.holdout_days)
    parser.add_argument("--server-url", default=None, help="a PostgreSQL server (any database)")
    args = parser.parse_args(argv)
    params = clv.CLVParams(holdout_days=args.holdout_days)
    with warehouse.scratch_database(args.server_url, prefix="clv_report") as url:
        began = time.perf_counter()
        load_files(url, args.data)
        loaded = time.perf_counter() - began
        report = measure(url, args.data, args.as_of, params)
        report["seconds"]["load_files"] = round(loaded, 2)
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
