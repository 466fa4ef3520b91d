"""The audit gate: Great Expectations validates this batch's staging tables inside PostgreSQL.

Rows reach `staging.*` only after the row rules; the suites here state the same contract a
second time, table-wide (uniqueness, flag/amount agreement, date order), so that a bug in the
row rules stops the batch before it is merged into `core.*`.

The suites are JSON files reviewed in git: `<gx_root>/expectations/staging_<table>.json`.
Each run builds a throw-away (ephemeral) GX context: suites, validation definitions and
results live in memory, only the data docs are written, to the caller's `data_docs_dir`. So
nothing is written into the repository, the connection string is never stored, and several
pipelines side by side (each with its own data docs folder) cannot collide. Because results
are not kept between runs, the docs index lists the latest run; earlier runs' pages stay on
disk under validations/.

Great Expectations is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ecom_insights.warehouse import sqlalchemy_url

STAGING_SCHEMA = "staging"
SUITES_FOLDER = "expectations"
DATASOURCE_NAME = "warehouse"
DATA_DOCS_SITE_NAME = "local_site"
# How many offending values a failure message quotes.
EXAMPLES_IN_MESSAGE = 3
# The audit itself: counts only. Each quoted example costs GX one more query per
# expectation, and a query for a value that does not exist reads the whole table; so
# examples are fetched only for the suites that failed, in a second run (DETAILS).
AUDIT_RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 0}
# counts plus a few offending values, never whole rows of customer data
DETAILS_RESULT_FORMAT = {"result_format": "SUMMARY"}


@dataclass(frozen=True)
class FailedExpectation:
    table: str
    expectation: str  # the GX expectation type, e.g. expect_column_values_to_be_unique
    column: str | None  # None for table-wide rules (row count, unexpected-rows queries)
    unexpected_count: int | None  # rows breaking the rule, when GX counts them
    details: str  # the rule in plain words, then what was observed

    def describe(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        return f"{where}: {self.expectation}: {self.details}"


@dataclass(frozen=True)
class ValidationSummary:
    success: bool
    # per table: success, evaluated, successful, unsuccessful (expectation counts), row_count
    tables: dict[str, dict]
    failures: list[FailedExpectation]
    data_docs_index: Path

    def describe(self) -> str:
        """A short message for logs and alerts: which table, column and rule failed."""
        evaluated = sum(t["evaluated"] for t in self.tables.values())
        if self.success:
            return (
                f"Staging audit passed: {evaluated} expectations on "
                f"{', '.join(self.tables)}. Data docs: {self.data_docs_index}"
            )
        failed_tables = [name for name, t in self.tables.items() if not t["success"]]
        lines = [
            f"Staging audit failed: {len(self.failures)} of {evaluated} expectations broken "
            f"in {', '.join(failed_tables)}."
        ]
        lines += [f"- {failure.describe()}" for failure in self.failures]
        lines.append(f"Data docs: {self.data_docs_index}")
        return "\n".join(lines)


def suite_path(gx_root: Path, table: str) -> Path:
    return Path(gx_root) / SUITES_FOLDER / f"{suite_name(table)}.json"


def suite_name(table: str) -> str:
    return f"{STAGING_SCHEMA}_{table}"


def load_suite(gx_root: Path, table: str):
    """The reviewed suite of `staging.<table>`, as a GX ExpectationSuite.

    GX skips an expectation whose configuration is invalid with no more than a log line;
    an audit that silently lost a rule would pass for the wrong reason, so that is an error.
    """
    from great_expectations.core.expectation_suite import ExpectationSuite

    path = suite_path(gx_root, table)
    if not path.exists():
        raise FileNotFoundError(f"No expectation suite for staging.{table}: {path} is missing")
    suite_dict = json.loads(path.read_text())
    suite = ExpectationSuite(**suite_dict)
    if suite.name != suite_name(table):
        raise ValueError(f"{path} holds suite {suite.name!r}, expected {suite_name(table)!r}")
    if len(suite.expectations) != len(suite_dict.get("expectations", [])):
        raise ValueError(f"{path} has expectations that Great Expectations cannot read")
    return suite


def validate_staging(
    database_url: str,
    tables: Sequence[str],
    *,
    gx_root: Path,
    data_docs_dir: Path,
    run_name: str,
) -> ValidationSummary:
    """Validate `staging.<table>` for each of `tables` against its suite; build data docs.

    `database_url` is a libpq URL (a socket-only one such as the embedded server's works).
    Data docs are (re)built in `data_docs_dir`; `run_name` (e.g. the Airflow run id) names
    this run in them. Returns the summary whether or not the audit passed; raises only if
    a suite is missing or unreadable.

    Every suite runs with counts only (AUDIT_RESULT_FORMAT): GX then computes the counts of
    a table in one bundled query. The suites that fail run again, under the same run id,
    with DETAILS_RESULT_FORMAT, so that the failures (and their data docs pages) quote
    offending values.
    """
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.datasource.fluent.interfaces import GxDatasourceWarning

    if not tables:
        raise ValueError("validate_staging needs at least one staging table")
    suites = {table: load_suite(gx_root, table) for table in tables}

    context = gx.get_context(mode="ephemeral", project_config=_context_config(data_docs_dir))
    # add_sql, not add_postgres: the latter rejects a URL that names only a socket directory
    # (the embedded server's), so GX's advice to use it is silenced here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GxDatasourceWarning)
        datasource = context.data_sources.add_sql(
            name=DATASOURCE_NAME, connection_string=sqlalchemy_url(database_url)
        )
    validation_definitions = {}
    for table, suite in suites.items():
        asset = datasource.add_table_asset(name=table, table_name=table, schema_name=STAGING_SCHEMA)
        validation_definitions[table] = context.validation_definitions.add(
            gx.ValidationDefinition(
                name=suite.name,
                data=asset.add_batch_definition_whole_table("whole_table"),
                suite=context.suites.add(suite),
            )
        )
    # run_time is when the audit ran (wall clock), not the batch's logical date. The details
    # run reuses the run id: its results replace the counts-only ones in the data docs.
    run_id = RunIdentifier(run_name=run_name, run_time=dt.datetime.now(dt.UTC))
    table_of_suite = {suite.name: table for table, suite in suites.items()}
    suite_results = _run_checkpoint(
        context, "staging_audit", list(validation_definitions.values()), AUDIT_RESULT_FORMAT, run_id
    )
    failed = [table_of_suite[name] for name, result in suite_results.items() if not result.success]
    if failed:
        suite_results |= _run_checkpoint(
            context,
            "staging_audit_details",
            [validation_definitions[table] for table in failed],
            DETAILS_RESULT_FORMAT,
            run_id,
        )
    # One build after the runs rather than an UpdateDataDocsAction in the checkpoint: the
    # action rebuilds the whole site once per table, which doubles the time of a 5-table run.
    context.build_data_docs(site_names=[DATA_DOCS_SITE_NAME])

    summaries: dict[str, dict] = {}
    failures: list[FailedExpectation] = []
    for suite_name, suite_result in suite_results.items():
        table = table_of_suite[suite_name]
        summaries[table] = _table_summary(suite_result)
        failures += [
            _failure(table, expectation_result)
            for expectation_result in suite_result.results
            if not expectation_result.success
        ]

    data_docs_index = Path(data_docs_dir) / "index.html"
    if not data_docs_index.exists():
        raise RuntimeError(f"Great Expectations did not build data docs at {data_docs_index}")
    return ValidationSummary(
        success=all(summary["success"] for summary in summaries.values()),
        tables={table: summaries[table] for table in tables},
        failures=failures,
        data_docs_index=data_docs_index,
    )


def _run_checkpoint(context, name, validation_definitions, result_format, run_id) -> dict:
    """Run the validation definitions as one checkpoint; return suite name -> its result."""
    import great_expectations as gx

    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=name, validation_definitions=validation_definitions, result_format=result_format
        )
    )
    result = checkpoint.run(run_id=run_id)
    return {suite_result.suite_name: suite_result for suite_result in result.run_results.values()}


def _context_config(data_docs_dir: Path):
    """In-memory stores; one data docs site on disk in `data_docs_dir`."""
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    return DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        # tqdm bars would fill the Airflow task log with carriage returns
        progress_bars=ProgressBarsConfig(globally=False),
        data_docs_sites={
            DATA_DOCS_SITE_NAME: {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(Path(data_docs_dir).resolve()),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
    )


def _table_summary(suite_result) -> dict:
    statistics = suite_result.statistics
    # Column-map expectations report how many rows they looked at; every suite has one.
    row_counts = [
        r.result["element_count"] for r in suite_result.results if "element_count" in r.result
    ]
    return {
        "success": suite_result.success,
        "evaluated": statistics["evaluated_expectations"],
        "successful": statistics["successful_expectations"],
        "unsuccessful": statistics["unsuccessful_expectations"],
        "row_count": row_counts[0] if row_counts else None,
    }


def _failure(table: str, expectation_result) -> FailedExpectation:
    config = expectation_result.expectation_config
    observed = expectation_result.result or {}
    rule = _plain_words(config.notes) or config.type
    if expectation_result.exception_info.get("raised_exception"):
        message = expectation_result.exception_info.get("exception_message")
        return FailedExpectation(
            table=table,
            expectation=config.type,
            column=config.kwargs.get("column"),
            unexpected_count=None,
            details=f"{rule} Could not be checked: {message}",
        )

    unexpected_count = observed.get("unexpected_count")
    if unexpected_count is None and config.type == "unexpected_rows_expectation":
        # An unexpected-rows query reports the number of rows it returned as observed_value.
        unexpected_count = observed.get("observed_value")

    if unexpected_count is not None:
        seen = f"{unexpected_count} row(s) break it"
        examples = observed.get("partial_unexpected_list") or []
        if examples:
            quoted = ", ".join(_quote(v) for v in examples[:EXAMPLES_IN_MESSAGE])
            seen += f", e.g. {quoted}"
    else:
        seen = f"observed {observed.get('observed_value')!r}"
    return FailedExpectation(
        table=table,
        expectation=config.type,
        column=config.kwargs.get("column"),
        unexpected_count=unexpected_count,
        details=f"{rule} Broken: {seen}.",
    )


def _plain_words(notes: str | list[str] | None) -> str:
    if isinstance(notes, list):
        return " ".join(notes)
    return notes or ""


def _quote(value) -> str:
    """A value as a reader wants it in a message: text quoted, numbers and dates bare."""
    return repr(value) if isinstance(value, str) else str(value)
