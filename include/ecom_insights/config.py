"""Settings read from the environment.

Nothing here touches the disk or the network: `load_settings()` only reads variables and
derives paths, so that importing it from a DAG file costs nothing.

Variables (all optional):
    ECOM_HOME           where the embedded database, Airflow home, landing files and data docs
                        live (default: `.ecom/` in the project directory)
    ECOM_DATABASE_URL   the warehouse; unset, an embedded PostgreSQL is started under ECOM_HOME
    AIRFLOW_HOME        Airflow's home (default: ECOM_HOME/airflow)
    ECOM_LANDING_DIR    where ingestion looks for files (default: ECOM_HOME/landing)
    ECOM_GX_ROOT        the Great Expectations project (default: the repository's
                        great_expectations/ folder)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# The Airflow connection id under which DAGs find the warehouse.
WAREHOUSE_CONN_ID = "ecom_warehouse"


@dataclass(frozen=True)
class Settings:
    home: Path
    airflow_home: Path
    database_url: str | None
    landing_dir: Path
    gx_root: Path

    @property
    def embedded_pgdata(self) -> Path:
        return self.home / "pgdata"

    @property
    def data_docs_dir(self) -> Path:
        return self.home / "data_docs"

    @property
    def demo_data_dir(self) -> Path:
        return self.home / "demo_data"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    home = Path(env.get("ECOM_HOME") or PROJECT_ROOT / ".ecom").resolve()
    return Settings(
        home=home,
        airflow_home=Path(env.get("AIRFLOW_HOME") or home / "airflow").resolve(),
        database_url=env.get("ECOM_DATABASE_URL") or None,
        landing_dir=Path(env.get("ECOM_LANDING_DIR") or home / "landing").resolve(),
        gx_root=Path(env.get("ECOM_GX_ROOT") or PROJECT_ROOT / "great_expectations").resolve(),
    )
