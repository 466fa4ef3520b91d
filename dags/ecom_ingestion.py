"""
# Ingestion: landed files -> raw -> row rules -> staging -> Great Expectations -> core

Reads the contract's files (`customers.csv`, `sessions.csv`, and optionally `products.csv`,
`events.csv`, `campaigns.csv`; `.csv.gz` and `<source>_*.csv` too) from the landing directory
(`ECOM_LANDING_DIR`, or the run's `data_dir` parameter); a day with no files skips the run
and publishes nothing. Then:

1. **land**: checks each file whole and reads it once: rows in canonical form that break no
   rule of their own go straight into the typed `staging.<source>`, the others into
   `raw.<source>`. A file with a missing column, unreadable content or a column of the wrong
   type throughout is rejected whole.
2. **apply_row_rules**: the rows in raw, and staging's rows whose parent is missing or whose
   key repeats, are checked: bad rows go to `raw.quarantine` with file, row number, reasons
   and original text; good rows to staging.
3. **audit_and_merge**: the Great Expectations suites in `great_expectations/expectations`
   audit staging inside PostgreSQL and build the data docs, while the upsert of staging into
   `core.<source>` runs beside them in one transaction, committed only if the audit passed:
   a failed audit leaves core untouched. Publishes the core Assets, which schedule the
   downstream DAGs.
4. **report**: fails the run, after the good data is merged, if any file was rejected or core
   still has no customers or no sessions.

Files stay in the landing directory; a file whose content was loaded before is skipped
unless the run's `reprocess` parameter is set.

Re-running with the same files changes nothing.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from ecom_insights.assets import CORE_TABLES
from ecom_insights.orchestration import PIPELINE_START

DEFAULT_ARGS = {
    "owner": "data-engineering",
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
}


@dag(
    dag_id="ecom_ingestion",
    schedule="@daily",
    start_date=PIPELINE_START,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params={
        "data_dir": Param(
            None,
            type=["null", "string"],
            description="Directory holding the files; empty: ECOM_LANDING_DIR.",
        ),
        "reprocess": Param(
            False,
            type="boolean",
            description="Also process files loaded before (after a rule change, or to load "
            "rows quarantined as orphans whose parents have arrived since).",
        ),
    },
    tags=["ecom", "ingestion"],
    doc_md=__doc__,
)
def ecom_ingestion():
    @task
    def land() -> list[dict]:
        from pathlib import Path

        from ecom_insights import ingest
        from ecom_insights.config import load_settings
        from ecom_insights.orchestration import warehouse_url
        from ecom_insights.warehouse import connect

        context = get_current_context()
        params = context["params"]
        data_dir = Path(params["data_dir"] or load_settings().landing_dir)
        try:
            with connect(warehouse_url()) as conn:
                files = ingest.land_files(conn, data_dir, reprocess=params["reprocess"])
        except ingest.NoInputFiles as error:
            # a day without (new) files: the run skips and publishes no Asset event
            raise AirflowSkipException(str(error)) from error
        except FileNotFoundError as error:
            raise AirflowFailException(str(error)) from error
        return [f.to_dict() for f in files]

    @task
    def apply_row_rules(files: list[dict]) -> dict:
        from ecom_insights import ingest
        from ecom_insights.orchestration import warehouse_url
        from ecom_insights.warehouse import connect

        context = get_current_context()
        with connect(warehouse_url()) as conn:
            counts = ingest.apply_row_rules(conn, context["logical_date"] or context["run_after"])
            ingest.record_load_log(
                conn,
                [ingest.FileResult(**f) for f in files],
                run_id=context["run_id"],
                logical_date=context["logical_date"] or context["run_after"],
            )
        return counts

    @task(outlets=list(CORE_TABLES))
    def audit_and_merge(counts: dict) -> dict:
        from ecom_insights import ingest
        from ecom_insights.config import load_settings
        from ecom_insights.orchestration import as_of_date, warehouse_url
        from ecom_insights.validation import validate_staging
        from ecom_insights.warehouse import connect

        context = get_current_context()
        settings = load_settings()

        def audit():
            return validate_staging(
                warehouse_url(),
                list(counts),
                gx_root=settings.gx_root,
                data_docs_dir=settings.data_docs_dir,
                run_name=context["run_id"],
            )

        try:
            with connect(warehouse_url()) as conn:
                first_day, last_day = ingest.batch_activity_range(conn)
                summary, merged = ingest.merge_into_core_once_audited(conn, audit)
        except ingest.AuditFailed as failure:
            # a broken contract is no transient error: retrying cannot help
            raise AirflowFailException(str(failure)) from failure
        if ingest.catalogue_changed(merged):
            first_day = None  # every customer's category features may move: no roll-forward
        batch = {
            "as_of_date": as_of_date(context).isoformat(),
            # downstream refreshes tell new days from late data by these
            "min_activity_date": first_day.isoformat() if first_day else None,
            "max_activity_date": last_day.isoformat() if last_day else None,
        }
        for asset in CORE_TABLES:
            context["outlet_events"][asset].extra = {**batch, **merged[asset.name.split(".")[1]]}
        return {"data_docs_index": str(summary.data_docs_index), "merged": merged}

    @task
    def report(files: list[dict], merged: dict) -> None:
        from ecom_insights import ingest
        from ecom_insights.orchestration import warehouse_url
        from ecom_insights.warehouse import connect

        with connect(warehouse_url()) as conn:
            message = ingest.rejection_report(files, ingest.empty_required_sources(conn))
        if message:
            raise AirflowFailException(message)

    files = land()
    report(files, audit_and_merge(apply_row_rules(files)))


ecom_ingestion()
