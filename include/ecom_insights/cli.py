"""`ecom`: the command line beside the Airflow UI.

ecom generate --out DIR [--customers N] [--days D] [--seed S] [--start DATE] [--shift-date DATE]
ecom run [--data DIR] [--as-of DATE]      run the pipeline's DAGs once and print a summary
ecom convert FORMAT SRC... --out DIR       write the contract's files from a real export
ecom db-url                               print the warehouse URL (starts the embedded one)
ecom airflow ARGS...                      the airflow CLI on this project's home
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path

from ecom_insights.adapters import COLUMN_ROLES as CONVERT_COLUMN_ROLES
from ecom_insights.adapters import FORMATS as CONVERT_FORMATS
from ecom_insights.config import load_settings

# The demo data that `ecom run` generates when no --data is given: big enough for every
# model and mart to have signal, small enough for a run of a few minutes on 2 cores.
DEMO_CUSTOMERS = 5_000
DEMO_DAYS = 730
DEMO_START = date(2023, 1, 1)
DEMO_SEED = 42


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        return 130
    except PipelineError as error:
        print(f"ecom: {error}", file=sys.stderr)
        return 1


class PipelineError(Exception):
    """A failure the user can act on; printed without a traceback."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecom", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    generate = commands.add_parser("generate", help="write seeded demo data with ground truth")
    generate.add_argument("--out", type=Path, required=True)
    generate.add_argument("--customers", type=int, default=DEMO_CUSTOMERS)
    generate.add_argument("--days", type=int, default=DEMO_DAYS)
    generate.add_argument("--seed", type=int, default=DEMO_SEED)
    generate.add_argument("--start", type=date.fromisoformat, default=DEMO_START)
    generate.add_argument("--shift-date", type=date.fromisoformat, default=None)
    generate.add_argument(
        "--minimal", action="store_true", help="only customers.csv and sessions.csv"
    )
    generate.set_defaults(handler=_generate)

    run = commands.add_parser("run", help="run the pipeline's DAGs once and print a summary")
    run.add_argument("--data", type=Path, help="directory of input files (default: demo data)")
    run.add_argument(
        "--as-of",
        type=date.fromisoformat,
        help="logical date of the run (default: the last session date in the data)",
    )
    run.set_defaults(handler=_run)

    convert = commands.add_parser(
        "convert",
        help="write the data contract's files from a real export (docs/bring-your-own-data.md)",
    )
    convert.add_argument(
        "format", choices=CONVERT_FORMATS, help="transactions (mapped), a preset, or clickstream"
    )
    convert.add_argument("src", type=Path, nargs="+", help="export file(s), .csv or .csv.gz")
    convert.add_argument("--out", type=Path, required=True, help="directory for the files")
    convert.add_argument("--mapping", type=Path, help="YAML file: column roles and rules")
    convert.add_argument(
        "--force", action="store_true", help="replace input files already in --out"
    )
    convert.add_argument("--memory-limit", help="the scratch store's memory, e.g. 4GB (1GB)")
    mapped = convert.add_argument_group("column mapping (transactions; override a preset)")
    for role in CONVERT_COLUMN_ROLES:
        mapped.add_argument(f"--{role.replace('_', '-')}", dest=role, metavar="COLUMN")
    mapped.add_argument(
        "--timestamp-format", metavar="FORMAT", help="strptime format (default: ISO 8601)"
    )
    mapped.add_argument(
        "--cancelled-prefix",
        dest="cancelled_order_prefix",
        metavar="PREFIX",
        help="the start of a cancelled order's id (online-retail: C)",
    )
    mapped.add_argument(
        "--non-product",
        dest="non_product_codes",
        action="append",
        metavar="CODE",
        help="a product code that is a fee or adjustment, not a product (repeatable)",
    )
    mapped.add_argument("--delimiter", help="one character, or 'whitespace'")
    mapped.add_argument("--encoding")
    convert.set_defaults(handler=_convert)

    db_url = commands.add_parser("db-url", help="print the warehouse URL in use")
    db_url.set_defaults(handler=_db_url)

    airflow = commands.add_parser(
        "airflow",
        help="the airflow CLI on this project's home, e.g. `ecom airflow standalone`",
        add_help=False,
    )
    airflow.add_argument("airflow_args", nargs=argparse.REMAINDER)
    airflow.set_defaults(handler=_airflow)
    return parser


def _generate(args) -> int:
    from ecom_insights.generate import generate_dataset

    truth = generate_dataset(
        args.out,
        customers=args.customers,
        days=args.days,
        seed=args.seed,
        start=args.start,
        shift_date=args.shift_date,
        minimal=args.minimal,
    )
    rows = truth.get("row_counts", {})
    print(f"wrote {args.out}: " + ", ".join(f"{name} {count:,}" for name, count in rows.items()))
    return 0


def _convert(args) -> int:
    from ecom_insights import adapters

    option_names = (
        *CONVERT_COLUMN_ROLES,
        "timestamp_format",
        "cancelled_order_prefix",
        "non_product_codes",
        "delimiter",
        "encoding",
    )
    try:
        summary = adapters.convert(
            args.format,
            args.src,
            args.out,
            mapping_file=args.mapping,
            options={name: getattr(args, name) for name in option_names},
            force=args.force,
            memory_limit=args.memory_limit,
        )
    except adapters.ConvertError as error:
        raise PipelineError(str(error)) from error
    print(summary.describe())
    print(f"next: ecom run --data {args.out}")
    return 0


def _db_url(args) -> int:
    from ecom_insights.warehouse import database_url

    print(database_url())
    return 0


def _airflow(args) -> int:
    from ecom_insights import runtime
    from ecom_insights.warehouse import database_url

    settings = load_settings()
    runtime.apply_environment(settings, database_url(settings))
    runtime.migrate_metadata_db(settings)
    executable = runtime.airflow_executable()
    # `airflow standalone` starts its components as `airflow ...` found on PATH
    os.environ["PATH"] = f"{Path(executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    os.execv(executable, [executable, *args.airflow_args])


def _run(args) -> int:
    from ecom_insights import ingest, runtime
    from ecom_insights.report import pipeline_summary
    from ecom_insights.warehouse import database_url

    settings = load_settings()
    data_dir = args.data or _demo_data(settings.demo_data_dir)
    data_dir = data_dir.resolve()
    try:
        as_of = args.as_of or ingest.latest_session_date(data_dir)
    except ingest.NoInputFiles as error:
        raise PipelineError(str(error)) from error
    url = database_url(settings)
    runtime.apply_environment(settings, url)
    print(f"ecom: warehouse {url}\necom: data {data_dir}, as of {as_of}", flush=True)
    runtime.migrate_metadata_db(settings)
    log_path = settings.home / "logs" / f"ecom-run-{as_of}.log"
    print(f"ecom: Airflow's output goes to {log_path}", flush=True)
    outcomes = []
    for dag_id in runtime.PIPELINE_DAGS:
        print(f"ecom: running {dag_id} ...", flush=True)
        with runtime.output_to(log_path):
            outcome = runtime.run_dag(
                dag_id, as_of, conf={"data_dir": str(data_dir), "reprocess": True}
            )
        outcomes.append(outcome)
        if outcome.state != "success":
            print(pipeline_summary(url, as_of, outcomes, settings))
            raise PipelineError(
                f"{dag_id} ended {outcome.state}; failed tasks: {', '.join(outcome.failed_tasks)}"
                f"\n{_failure_excerpt(log_path)}\nfull log: {log_path}"
            )
    print(pipeline_summary(url, as_of, outcomes, settings))
    return 0


def _failure_excerpt(log_path: Path, lines: int = 12) -> str:
    """The last error lines of the run log: what a user needs to see without opening it."""
    text = log_path.read_text(errors="replace").splitlines()
    errors = [line for line in text if "Error" in line or "rejected" in line or "- " in line]
    return "\n".join(errors[-lines:])


def _demo_data(directory: Path) -> Path:
    from ecom_insights.generate import generate_dataset

    if not (directory / "ground_truth.json").exists():
        print(f"ecom: generating demo data in {directory}", flush=True)
        generate_dataset(
            directory, customers=DEMO_CUSTOMERS, days=DEMO_DAYS, seed=DEMO_SEED, start=DEMO_START
        )
    return directory


if __name__ == "__main__":
    sys.exit(main())
