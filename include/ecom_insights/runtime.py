"""The local Airflow runtime: environment, metadata database, and running the pipeline's DAGs.

`ecom run` and the tests use it to run the real DAGs once, in dependency order, with
`dag.test()` against a SQLite metadata database under ECOM_HOME (every run is visible in the
Airflow UI started with `ecom airflow standalone`). Production runs the same DAGs under a
scheduler (docker-compose.yaml).

Airflow reads its configuration when first imported, so `airflow_environment()` must be
applied to os.environ before anything imports airflow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from ecom_insights.config import PROJECT_ROOT, Settings
from ecom_insights.warehouse import airflow_connection_json

# The pipeline's DAGs in dependency order (each consumes Assets of the ones before it).
PIPELINE_DAGS = (
    "ecom_ingestion",
    "ecom_warehouse_health",
    "ecom_analytics",
    "ecom_features",
    "ecom_training",
    "ecom_scoring",
)


def airflow_environment(
    settings: Settings, database_url: str, env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Variables that point Airflow at this project; any of them already set is kept."""
    env = os.environ if env is None else env
    airflow_home = settings.airflow_home
    defaults = {
        "ECOM_HOME": str(settings.home),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW_CONN_ECOM_WAREHOUSE": airflow_connection_json(database_url),
    }
    return {name: env.get(name) or value for name, value in defaults.items()}


def apply_environment(settings: Settings, database_url: str) -> dict[str, str]:
    variables = airflow_environment(settings, database_url)
    os.environ.update(variables)
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    settings.landing_dir.mkdir(parents=True, exist_ok=True)
    return variables


def airflow_executable() -> str:
    """The `airflow` script of this interpreter's environment."""
    return str(Path(sys.executable).with_name("airflow"))


def migrate_metadata_db(settings: Settings) -> None:
    """`airflow db migrate`, once per Airflow version and home (it takes some seconds)."""
    from importlib.metadata import version

    stamp = settings.airflow_home / f".migrated-{version('apache-airflow')}"
    if stamp.exists():
        return
    subprocess.run(
        [airflow_executable(), "db", "migrate"],
        check=True,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
    )
    stamp.touch()


@dataclass(frozen=True)
class DagOutcome:
    dag_id: str
    run_id: str
    state: str  # success only if every task ran and succeeded
    task_states: dict[str, str]

    @property
    def failed_tasks(self) -> list[str]:
        return [task for task, state in self.task_states.items() if state != "success"]


@contextmanager
def output_to(log_path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2) to `log_path`.

    Airflow's task logs go to the process's output in `dag.test()`; the CLI keeps them in a
    file and prints only its summary.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log_path.open("ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_dag(dag_id: str, as_of: date, conf: dict | None = None) -> DagOutcome:
    """Run one DAG of the dags folder once with `dag.test()`, as of the end of `as_of`."""
    from airflow.dag_processing.dagbag import DagBag

    dagbag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if dagbag.import_errors:
        errors = "\n".join(f"{path}: {error}" for path, error in dagbag.import_errors.items())
        raise RuntimeError(f"DAG files failed to import:\n{errors}")
    dag = dagbag.get_dag(dag_id)
    if dag is None:
        raise RuntimeError(f"no DAG {dag_id!r} in {os.environ['AIRFLOW__CORE__DAGS_FOLDER']}")
    logical_date = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC)
    dag_run = dag.test(logical_date=logical_date, run_conf=conf or {})
    task_states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    # a run whose tasks were skipped or never scheduled is no success for `ecom run`
    all_ran = all(state == "success" for state in task_states.values())
    state = str(dag_run.state) if all_ran or dag_run.state != "success" else "incomplete"
    return DagOutcome(dag_id, dag_run.run_id, state, task_states)
