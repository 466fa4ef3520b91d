"""The churn model's figures on any data in the contract's format, for the model card.

    python -m ecom_insights.models.churn_report --data DIR [--as-of YYYY-MM-DD]

Loads DIR into a throwaway database (an embedded server unless --server-url names one),
trains the churn model on the time windows the data allows up to --as-of (default: the last
day of data), and prints JSON: the windows, the model's and the baselines' metrics on the
validation window (ROC-AUC, PR-AUC, Brier, ECE), the drivers ranked by mean |TreeSHAP|, and
seconds per step. Nothing is registered.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path

from ecom_insights import warehouse
from ecom_insights.models import churn, pipeline
from ecom_insights.models.clv_report import load_files


def measure(url: str, as_of: date | None) -> dict:
    """Train and evaluate on the data already in core at `url`."""
    seconds = {}
    with warehouse.connect(url) as conn:
        start, end = pipeline.activity_range(conn, as_of)
        windows = churn.training_windows(start, end)
        began = time.perf_counter()
        snapshots = pipeline.churn_snapshots(conn, windows)
        conn.commit()
        seconds["feature_snapshots"] = time.perf_counter() - began
        began = time.perf_counter()
        model = churn.train(snapshots, windows)
        seconds["train"] = time.perf_counter() - began
        metrics = pipeline.evaluate_churn(conn, model, snapshots[windows.validation])
    validation = churn.eligible(snapshots[windows.validation])
    importance = churn.driver_importance(model, validation)
    return {
        "data_range": [start.isoformat(), end.isoformat()],
        "windows": model.windows.as_dict(),
        "training_rows": int(sum(len(churn.eligible(snapshots[d])) for d in windows.train)),
        "metrics": {k: round(v, 4) for k, v in metrics.items()},
        "ships": pipeline.beats_baselines(metrics),
        "drivers_mean_abs_shap": importance.head(12).round(4).to_dict(),
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--as-of", type=date.fromisoformat, default=None)
    parser.add_argument("--server-url", default=None, help="a PostgreSQL server (any database)")
    args = parser.parse_args(argv)
    with warehouse.scratch_database(args.server_url, prefix="churn_report") as url:
        began = time.perf_counter()
        load_files(url, args.data)
        loaded = time.perf_counter() - began
        report = {"data": str(args.data), **measure(url, args.as_of)}
        report["seconds"]["load_files"] = round(loaded, 1)
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
