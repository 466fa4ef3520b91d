"""The summary that `ecom run` prints: what ran, what landed, what was set aside, where to look."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

from psycopg2 import sql

from ecom_insights.config import Settings
from ecom_insights.contract import SOURCES
from ecom_insights.warehouse import connect

# Quarantine reasons shown in the summary; the rest are counted in one line.
TOP_REASONS = 8


def pipeline_summary(url: str, as_of: date, outcomes, settings: Settings) -> str:
    lines = [f"\nE-commerce Insights: pipeline as of {as_of}", ""]
    lines += [f"  {o.dag_id:<28} {o.state}  ({o.run_id})" for o in outcomes]
    with connect(url) as conn, conn.cursor() as cur:
        lines += ["", "  core tables"]
        for source in SOURCES:
            cur.execute("select to_regclass(%s) is not null", (f"core.{source.name}",))
            if not cur.fetchone()[0]:
                continue
            cur.execute(f"select count(*) from core.{source.name}")  # names from the contract
            lines.append(f"    core.{source.name:<12} {cur.fetchone()[0]:>12,} rows")
        lines += _mart_lines(cur, as_of)
        lines += _model_lines(cur, as_of)
        cur.execute("select to_regclass('raw.load_log') is not null")
        if cur.fetchone()[0]:
            lines += _load_lines(cur)
    docs = settings.data_docs_dir / "index.html"
    lines += ["", f"  data docs      {docs if docs.exists() else '(not built)'}"]
    ecom = Path(sys.executable).with_name("ecom")
    lines.append(f"  Airflow UI     ECOM_HOME={settings.home} {ecom} airflow standalone")
    return "\n".join(lines)


def _model_lines(cur, as_of: date) -> list[str]:
    """The latest training of each model, and how the scored customers fall into risk bands
    and segments at this as-of date."""
    lines = []
    cur.execute("select to_regclass('marts.model_training_log') is not null")
    if cur.fetchone()[0]:
        cur.execute(
            """
            select distinct on (model_name) model_name, as_of_date, model_version, promoted,
                   reason, metrics
            from marts.model_training_log
            order by model_name, as_of_date desc
            """
        )
        lines += ["", "  models (latest training)"]
        for name, trained_as_of, version, promoted, reason, metrics in cur.fetchall():
            figures = ", ".join(
                f"{label} {metrics[key]:.3f}"
                for label, key in (
                    ("ROC-AUC", "model_roc_auc"),
                    ("BG/NBD", "bgnbd_roc_auc"),
                    ("RFM", "rfm_roc_auc"),
                    ("Brier", "model_brier"),
                )
                if key in metrics
            )
            lines.append(f"    {name:<14} as of {trained_as_of}: {version or 'not shipped'}")
            lines.append(f"      {figures}")
            lines.append(f"      {'promoted' if promoted else 'not promoted'}: {reason}")
    for table, column in (("churn_scores", "risk_band"), ("customer_segments", "segment")):
        cur.execute("select to_regclass(%s) is not null", (f"marts.{table}",))
        if not cur.fetchone()[0]:
            continue
        cur.execute(
            sql.SQL(
                "select {column}, count(*) from {table} where as_of_date = %s "
                "group by 1 order by 2 desc"
            ).format(column=sql.Identifier(column), table=sql.Identifier("marts", table)),
            (as_of,),
        )
        counts = ", ".join(f"{value} {n:,}" for value, n in cur.fetchall())
        if counts:
            lines.append(f"    {table + ' by ' + column:<32} {counts}")
    return lines


def _mart_lines(cur, as_of: date) -> list[str]:
    """Rows of each mart for this as-of date (every mart row carries its as_of_date). A mart
    is a table or a view (marts.customer_features); the feature store's registry of
    snapshots (marts.feature_snapshots) is bookkeeping, not a mart."""
    cur.execute(
        """
        select c.relname
        from pg_class c
        join pg_namespace n on n.oid = c.relnamespace
        join pg_attribute a on a.attrelid = c.oid and a.attname = 'as_of_date'
        where n.nspname = 'marts' and c.relkind in ('r', 'p', 'v') and not c.relispartition
          and c.relname <> 'feature_snapshots'
        order by c.relname
        """
    )
    marts = [row[0] for row in cur.fetchall()]
    lines = ["", f"  marts (rows as of {as_of})"] if marts else []
    for name in marts:
        cur.execute(
            sql.SQL("select count(*) from {} where as_of_date = %s").format(
                sql.Identifier("marts", name)
            ),
            (as_of,),
        )
        lines.append(f"    marts.{name:<28} {cur.fetchone()[0]:>10,} rows")
    return lines


def _load_lines(cur) -> list[str]:
    cur.execute(
        """
        select status, count(*), coalesce(sum(rows_read), 0), coalesce(sum(rows_loaded), 0),
               coalesce(sum(rows_quarantined), 0)
        from raw.load_log group by status order by status
        """
    )
    lines = ["", "  files (all runs)"]
    for status, files, read, loaded, quarantined in cur.fetchall():
        lines.append(
            f"    {status:<9} {files:>4} files  {read:>12,} rows read  {loaded:>12,} loaded  "
            f"{quarantined:>9,} quarantined"
        )
    cur.execute("select file_path, message from raw.load_log where status = 'rejected'")
    lines += [f"    rejected: {path}: {message}" for path, message in cur.fetchall()]
    cur.execute(
        """
        select source, reason, count(*) from raw.quarantine, unnest(reasons) as reason
        group by source, reason order by count(*) desc, source, reason
        """
    )
    reasons = cur.fetchall()
    if reasons:
        lines += ["", "  quarantined rows by reason (raw.quarantine)"]
        lines += [f"    {n:>9,}  {s}: {r}" for s, r, n in reasons[:TOP_REASONS]]
        if len(reasons) > TOP_REASONS:
            rest = sum(n for _, _, n in reasons[TOP_REASONS:])
            lines.append(f"    {rest:>9,}  in {len(reasons) - TOP_REASONS} more reasons")
    return lines
