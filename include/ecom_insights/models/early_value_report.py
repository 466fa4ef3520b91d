"""The early high-value model measured on a data directory, for docs/early-value.md.

    python -m ecom_insights.models.early_value_report --data DIR [--home DIR] [--as-of DATE]
        [--burn-in-days N] [--horizon-days H] [--database-url URL]

Loads DIR (the contract's files: the demo data or `ecom convert` output) into a fresh database
on the embedded PostgreSQL under --home (left running), or on a throwaway one (stopped at the
end), or uses --database-url as it is (already loaded);
builds the early-window frame at the as-of date (default: the data's last day), trains and
evaluates as `early_value.train` does, and prints the windows, the metrics of the model and
its baselines on the validation cohorts, and the early signals. When DIR holds the demo's
customer_truth.csv, it also prints the share of planted high-value customers among each
scorer's top 5% of the validation cohorts. This is a report, not a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd

from ecom_insights.models import early_value

SCORERS = ("model", "baseline_logistic", "baseline_spend")


def load_directory(server_url: str, data_dir: Path) -> str:
    """A new database on the server with DIR ingested into core; return its URL."""
    from ecom_insights import ingest, warehouse

    name = f"early_value_{uuid.uuid4().hex[:8]}"
    with warehouse.connect(server_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f'create database "{name}"')
    url = warehouse.with_database(server_url, name)
    with warehouse.connect(url) as conn:
        ingest.ensure_schema(conn)
        ingest.land_files(conn, data_dir, reprocess=True)
        ingest.apply_row_rules(conn, datetime.now(UTC))
        ingest.merge_into_core(conn)
    return url


def planted_precision(
    model: early_value.EarlyValueModel,
    frame: pd.DataFrame,
    truth: pd.DataFrame,
    params: early_value.EarlyValueParams,
) -> dict[str, float]:
    """Share of planted high-value customers (truth: customer_id, high_value) among each
    scorer's top share of the validation cohorts (the logistic baseline is left out: `train`
    keeps it internal)."""
    share = params.top_share
    _, _, validation = early_value.split_cohorts(frame, params)
    planted = validation["customer_id"].map(truth.set_index("customer_id")["high_value"])
    scored = early_value.score(model, validation)
    return {
        "model": early_value.precision_at_top(planted, scored["probability_high_value"], share),
        "baseline_spend": early_value.precision_at_top(
            planted, validation[early_value.SPEND_BASELINE], share
        ),
        "planted_share": float(planted.mean()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--home", type=Path, help="embedded PostgreSQL's home (default: temp)")
    parser.add_argument("--database-url", help="a warehouse already holding DIR in core")
    parser.add_argument("--as-of", type=date.fromisoformat)
    parser.add_argument("--burn-in-days", type=int, default=0)
    parser.add_argument("--horizon-days", type=int, help="default: choose_horizon's rule")
    args = parser.parse_args(argv)

    from ecom_insights import warehouse

    params = dataclasses.replace(early_value.DEFAULT_PARAMS, burn_in_days=args.burn_in_days)
    started = time.perf_counter()
    url, server = args.database_url, None
    if url is None and args.home is None:
        import warnings

        import pgserver

        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

        # a throwaway server, stopped at the end (with --home it is left running for reuse)
        server = pgserver.get_server(Path(tempfile.mkdtemp(prefix="early-value-")), "delete")
        url = load_directory(server.get_uri(), args.data)
    elif url is None:
        url = load_directory(warehouse.start_embedded_server(args.home / "pgdata"), args.data)
    loaded = time.perf_counter()
    with warehouse.connect(url) as conn:
        first_signup, data_end = early_value.data_range(conn)
        as_of = args.as_of or data_end
        frame = early_value.load_early_window(conn, as_of, params, args.horizon_days)
    model, metrics = early_value.train(frame, params)
    finished = time.perf_counter()

    p = model.params
    print(f"data: {args.data}  ({first_signup} .. {data_end}), as of {as_of}")
    print(
        f"windows: features days [0, {params.early_window_days}) after signup, label days "
        f"[{params.early_window_days}, {params.early_window_days + p['horizon_days_used']}); "
        f"signups from {p['signups_from']}; top share {params.top_share}"
    )
    top_value = int(frame["is_top_value"].eq(True).sum())  # NULL: not labelled yet
    print(
        f"customers: {len(frame)} with an early window, {int(frame.is_labelled.sum())} "
        f"labelled, {top_value} top-value"
    )
    for part in ("training", "calibration", "validation"):
        print(f"  {part:12s} {p[f'{part}_customers']:6d} customers, signups {p[f'{part}_signups']}")
    print(
        f"validation: {int(metrics['validation_positives'])} positives "
        f"({metrics['validation_positive_rate']:.3f}); model mean probability "
        f"{metrics['model_mean_probability']:.3f}, Brier {metrics['model_brier']:.4f}"
    )
    print()
    print("| scorer | precision@top | normalised Gini | ROC-AUC |")
    print("|---|---:|---:|---:|")
    for name in SCORERS:
        print(
            f"| {name} | {metrics[f'{name}_precision_at_top']:.3f} "
            f"| {metrics[f'{name}_normalised_gini']:.3f} | {metrics[f'{name}_roc_auc']:.3f} |"
        )
    truth_path = args.data / "customer_truth.csv"
    if truth_path.exists():
        truth = pd.read_csv(truth_path, usecols=["customer_id", "high_value"])
        planted = planted_precision(model, frame, truth, params)
        print(
            f"\nplanted high-value customers among the top {params.top_share:.0%} of the "
            f"validation cohorts: model {planted['model']:.3f}, first-window spend "
            f"{planted['baseline_spend']:.3f} (their share of the cohorts: "
            f"{planted['planted_share']:.3f})"
        )
    print("\nearly signals (validation cohorts), strongest first:")
    print("| feature | mean abs SHAP | gain share | direction |")
    print("|---|---:|---:|---:|")
    for row in model.signals.head(10).itertuples():
        direction = "" if pd.isna(row.direction) else f"{row.direction:+.2f}"
        print(f"| {row.feature} | {row.mean_abs_shap:.3f} | {row.gain_share:.3f} | {direction} |")
    if server is not None:
        server.cleanup()
    print(
        f"\nmodel {model.version}; load {loaded - started:.0f} s, frame and training "
        f"{finished - loaded:.0f} s"
    )


if __name__ == "__main__":
    main()
