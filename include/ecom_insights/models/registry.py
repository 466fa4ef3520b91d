"""The model registry: MLflow tracking and registered models with champion/challenger aliases.

Backend: `ECOM_MLFLOW_TRACKING_URI` when set (any MLflow server or database); otherwise the
warehouse's own PostgreSQL, in a schema `mlflow` of the warehouse database, so that runs,
metrics and model versions live beside the data they were trained on. Model files go to
`ECOM_MLFLOW_ARTIFACTS` (default ECOM_HOME/mlartifacts); a deployment with several machines
points it at shared storage.

Aliases: `champion` is the version the scoring uses; `challenger` the newest version that
did not replace it. The rule that moves `champion` lives in `models.pipeline`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ecom_insights.warehouse import sqlalchemy_url

CHAMPION = "champion"
CHALLENGER = "challenger"
MLFLOW_SCHEMA = "mlflow"
# What a registered model needs to load: the package that defines it (installed with the
# project), the libraries its pickle references.
PIP_REQUIREMENTS = ["ecom-insights", "lightgbm", "scikit-learn", "pandas", "numpy"]


# Not MLflow's own MLFLOW_TRACKING_URI: mlflow.set_tracking_uri() writes that variable into
# the process's environment, so a long-lived process (a test session, a worker) would carry
# one warehouse's registry over to the next.
TRACKING_URI_VARIABLE = "ECOM_MLFLOW_TRACKING_URI"


def tracking_uri(warehouse_url: str, env: Mapping[str, str] | None = None) -> str:
    """ECOM_MLFLOW_TRACKING_URI, or the warehouse database with the `mlflow` schema first on
    the search path (MLflow creates its tables there)."""
    env = os.environ if env is None else env
    explicit = env.get(TRACKING_URI_VARIABLE)
    if explicit:
        return explicit
    url = sqlalchemy_url(warehouse_url)
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{MLFLOW_SCHEMA}"


def artifact_root(home: Path, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get("ECOM_MLFLOW_ARTIFACTS") or (home / "mlartifacts").resolve().as_uri()


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    run_id: str

    @property
    def label(self) -> str:
        """How scores name the model that made them: `<name>/v<version>`."""
        return f"{self.name}/v{self.version}"


class Registry:
    """A thin face on MLflow for what the pipeline does: log a trained candidate, register
    it, read and move the champion/challenger aliases, load a version."""

    def __init__(self, uri: str, artifacts: str):
        import mlflow
        from mlflow import MlflowClient

        self.uri = uri
        self.artifacts = artifacts
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    @classmethod
    def for_warehouse(cls, conn, warehouse_url: str, home: Path) -> Registry:
        """The registry of this warehouse (creating the `mlflow` schema when MLflow is to
        live in the warehouse)."""
        uri = tracking_uri(warehouse_url)
        if not os.environ.get(TRACKING_URI_VARIABLE):
            with conn.cursor() as cur:
                cur.execute(f"create schema if not exists {MLFLOW_SCHEMA}")
            conn.commit()
        return cls(uri, artifact_root(home))

    def experiment_id(self, name: str) -> str:
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        return self.client.create_experiment(name, artifact_location=f"{self.artifacts}/{name}")

    def log_run(
        self,
        experiment: str,
        params: Mapping[str, object],
        metrics: Mapping[str, float],
        tags: Mapping[str, str],
        model: object | None = None,
        register_as: str | None = None,
    ) -> tuple[str, ModelVersion | None]:
        """One MLflow run with its params, metrics and tags; with `model`, the pickled model
        as the run's artifact, registered as a new version of `register_as` when given."""
        import mlflow
        import mlflow.sklearn

        with mlflow.start_run(experiment_id=self.experiment_id(experiment)) as run:
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            mlflow.log_metrics(dict(metrics))
            mlflow.set_tags(dict(tags))
            if model is None:
                return run.info.run_id, None
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                registered_model_name=register_as,
                pip_requirements=PIP_REQUIREMENTS,
                serialization_format="cloudpickle",
            )
        if register_as is None:
            return run.info.run_id, None
        version = ModelVersion(register_as, str(info.registered_model_version), run.info.run_id)
        return run.info.run_id, version

    def alias(self, name: str, alias: str) -> ModelVersion | None:
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.get_model_version_by_alias(name, alias)
        except MlflowException:
            return None
        return ModelVersion(name, str(found.version), found.run_id)

    def set_alias(self, version: ModelVersion, alias: str) -> None:
        self.client.set_registered_model_alias(version.name, alias, version.version)

    def load(self, version: ModelVersion):
        import mlflow.sklearn

        return mlflow.sklearn.load_model(f"models:/{version.name}/{version.version}")
