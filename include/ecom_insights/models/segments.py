"""Customer segments with recommended actions, and their CSV exports for campaign tools.

`marts.customer_segments` (include/sql/marts/customer_segments.sql) combines the feature
snapshot with the churn scores, the customer values and the early high-value scores of the
same as-of date; the thresholds and the actions come from models/params.py.
"""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

from ecom_insights.marts import refresh_mart
from ecom_insights.models import params as P

SEGMENTS = tuple(P.SEGMENT_ACTIONS)
EXPORT_COLUMNS = (
    "customer_id",
    "segment",
    "recommended_action",
    "rank_in_segment",
    "segment_score",
    "score_percentile",
    "churn_probability",
    "expected_value_365d",
    "recency_days",
    "frequency",
    "monetary",
)


def segment_parameters() -> dict[str, object]:
    return {
        "segments": list(P.SEGMENT_ACTIONS),
        "actions": list(P.SEGMENT_ACTIONS.values()),
        "new_days": P.SEGMENT_NEW_DAYS,
        "lost_days": P.SEGMENT_LOST_DAYS,
        "hibernating_days": P.SEGMENT_HIBERNATING_DAYS,
        "high_ltv_percentile": P.SEGMENT_HIGH_LTV_PERCENTILE,
        "loyal_min_purchases": P.SEGMENT_LOYAL_MIN_PURCHASES,
    }


def refresh_segments(conn, as_of: date) -> int:
    """Rebuild marts.customer_segments for `as_of` (one row per customer signed up by then)."""
    return refresh_mart(conn, "customer_segments", as_of, segment_parameters())


def export_segments(conn, as_of: date, out_dir: Path) -> dict[str, Path]:
    """One CSV per segment under out_dir/<as_of>/<segment>.csv, best first (rank 1 on top),
    every segment written (header only when empty) so that a re-run replaces them all."""
    target = out_dir / as_of.isoformat()
    target.mkdir(parents=True, exist_ok=True)
    columns = ", ".join(EXPORT_COLUMNS)
    paths = {}
    with conn.cursor() as cur:
        for segment in SEGMENTS:
            cur.execute(
                f"select {columns} from marts.customer_segments "
                "where as_of_date = %s and segment = %s order by rank_in_segment",
                (as_of, segment),
            )
            path = target / f"{segment}.csv"
            partial = path.with_suffix(".csv.partial")
            with partial.open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(EXPORT_COLUMNS)
                writer.writerows(cur)
            partial.replace(path)
            paths[segment] = path
    return paths
