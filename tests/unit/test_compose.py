"""The production-shaped deployment holds together: docker-compose.yaml, Dockerfile, docs.

No Docker engine is needed: the files are parsed and cross-checked, so that a worker that cannot
reach the Execution API, a component with its own JWT secret, a DAG folder mounted where Airflow
does not look, an image of another Airflow than the lock, or a variable nobody documented is
caught before anyone runs `docker compose up`.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
LOCK_FILE = ROOT / "requirements.lock"
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"

# The long-running Airflow components and the Airflow command each one runs.
AIRFLOW_COMMANDS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery worker",
}
INIT_SERVICE = "airflow-init"
# Services built from the Airflow image that run no Airflow component.
NON_AIRFLOW_SERVICES_ON_AIRFLOW_IMAGE = {"ecom-files"}

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ... as Compose interpolates them;
# `$$` is Compose's escape for a literal `$` (used for the container's own ${HOSTNAME}).
INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
)


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """The value Compose would pass to the container, given the variables in `env`."""
    env = env or {}

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name", "op", "arg")
        value = env.get(name)
        if op in (":-", "-"):
            unset = value is None or (op == ":-" and value == "")
            return arg if unset else value
        if op in (":?", "?"):
            if value is None or (op == ":?" and value == ""):
                raise ValueError(f"{name}: {arg}")
            return value
        if op in (":+", "+"):
            return arg if value else ""
        return value or ""

    return INTERPOLATION.sub(replace, value)


def variables_used(text: str) -> set[str]:
    return {m.group("name") for m in INTERPOLATION.finditer(text) if m.group("name")}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def environment(service: dict) -> dict[str, str]:
    """A service's environment as the container sees it, with every variable at its default."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: interpolate(str(value)) for key, value in env.items()}


def command_line(service: dict) -> str:
    command = service.get("command") or ""
    return " ".join(command) if isinstance(command, list) else command


def mounts(service: dict) -> dict[str, str]:
    """Container path -> source (a host path or a named volume), from the short syntax."""
    result = {}
    for volume in service.get("volumes") or []:
        source, target = interpolate(volume).split(":")[:2]
        result[target] = source
    return result


def container_port(service: dict) -> int:
    (mapping,) = service["ports"]
    return int(str(mapping).split(":")[-1].split("/")[0])


def service_on_image(services: dict, image_prefix: str) -> str:
    (name,) = [
        name
        for name, service in services.items()
        if str(service.get("image", "")).split(":")[0].endswith(image_prefix)
    ]
    return name


def airflow_image(compose: dict) -> str:
    return compose["x-airflow-common"]["image"]


def airflow_services(compose: dict) -> dict[str, dict]:
    """Every service built from the Airflow image, except those that run no Airflow."""
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("image") == airflow_image(compose)
        and name not in NON_AIRFLOW_SERVICES_ON_AIRFLOW_IMAGE
    }


def test_compose_file_parses_with_a_shared_airflow_block(compose):
    assert isinstance(compose.get("services"), dict)
    common = compose["x-airflow-common"]
    assert common["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    # The anchor is really shared: the components got the same block, not copies of it.
    assert compose["services"]["airflow-scheduler"]["volumes"] == common["volumes"]


def test_every_part_of_the_deployment_is_a_service(compose, services):
    for name, command in AIRFLOW_COMMANDS.items():
        assert name in services, f"no {name} service"
        script = command_line(services[name])
        if name == "airflow-apiserver" and script.startswith("bash "):
            # Started through a script that must end by exec-ing the real command.
            script_path = ROOT / "docker" / "start-api-server.sh"
            assert script.split()[-1].endswith("ecom-start-api-server")
            assert f"exec airflow {command}" in script_path.read_text()
        else:
            assert script == command, f"{name} runs {script!r}, not {command!r}"
    assert INIT_SERVICE in services
    init_script = (ROOT / "docker" / "airflow-init.sh").read_text()
    assert "airflow db migrate" in init_script
    assert command_line(services[INIT_SERVICE]).endswith("ecom-airflow-init")
    for image in ("postgres", "redis", "mailpit"):
        service_on_image(services, image)
    assert set(AIRFLOW_COMMANDS) | {INIT_SERVICE} <= set(airflow_services(compose))


def test_every_airflow_service_uses_celery_postgres_and_redis(compose, services):
    postgres = service_on_image(services, "postgres")
    redis = service_on_image(services, "redis")
    for name, service in airflow_services(compose).items():
        env = environment(service)
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        metadata = urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
        assert metadata.scheme.startswith("postgresql"), name
        assert metadata.hostname == postgres, name
        broker = urlsplit(env["AIRFLOW__CELERY__BROKER_URL"])
        assert (broker.scheme, broker.hostname) == ("redis", redis), name
        backend = urlsplit(env["AIRFLOW__CELERY__RESULT_BACKEND"])
        assert backend.scheme.startswith("db+postgresql"), name
        assert backend.hostname == postgres, name


def test_metadata_database_credentials_match_the_postgres_server(compose, services):
    server = environment(services[service_on_image(services, "postgres")])
    for name, service in airflow_services(compose).items():
        url = urlsplit(environment(service)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
        assert (url.username, url.password, url.path.lstrip("/")) == (
            server["POSTGRES_USER"],
            server["POSTGRES_PASSWORD"],
            server["POSTGRES_DB"],
        ), name


def test_execution_api_url_points_at_the_api_server(compose, services):
    api_server = services["airflow-apiserver"]
    api_port = int(environment(api_server).get("AIRFLOW__API__PORT", container_port(api_server)))
    for name, service in airflow_services(compose).items():
        url = urlsplit(environment(service)["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
        assert url.hostname == "airflow-apiserver", name
        assert (url.port or 80) == api_port, name
        assert url.path.rstrip("/") == "/execution", name


def test_all_components_share_the_signing_secrets(compose):
    # A component without them generates its own at start, and then the api-server rejects
    # the workers' task tokens (JWT), logs cannot be fetched (secret key) or stored connection
    # passwords cannot be read (Fernet key).
    shared = (
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__API__SECRET_KEY",
        "AIRFLOW__CORE__FERNET_KEY",
    )
    envs = {name: environment(service) for name, service in airflow_services(compose).items()}
    for key in shared:
        values = {name: env.get(key) for name, env in envs.items()}
        assert None not in values.values(), f"{key} missing in {values}"
        assert len(set(values.values())) == 1, f"{key} differs between services: {values}"
    assert envs["airflow-apiserver"]["AIRFLOW__API_AUTH__JWT_SECRET"]


def dockerfile_copy_target(source: str) -> str:
    for line in DOCKERFILE.read_text().splitlines():
        parts = [part for part in line.split() if not part.startswith("--")]
        if parts[:1] == ["COPY"] and source in parts[1:-1]:
            return parts[-1].rstrip("/")
    raise AssertionError(f"the Dockerfile copies no {source}")


def test_project_dirs_are_mounted_where_airflow_and_the_package_look(compose):
    for name, service in airflow_services(compose).items():
        env = environment(service)
        mounted = mounts(service)
        expected = {
            env["AIRFLOW__CORE__DAGS_FOLDER"]: "./dags",
            env["AIRFLOW__CORE__PLUGINS_FOLDER"]: "./plugins",
            env["ECOM_GX_ROOT"]: "./great_expectations",
            # The image installs the package editable from here, so the mount is what runs.
            dockerfile_copy_target("include/"): "./include",
        }
        for target, source in expected.items():
            assert mounted.get(target) == source, f"{name}: {source} not mounted at {target}"
            assert dockerfile_copy_target(source.removeprefix("./") + "/") == target
        # ECOM_HOME is a named volume, shared by all, so reports outlive the containers.
        home_source = mounted.get(env["ECOM_HOME"])
        assert home_source in (compose.get("volumes") or {}), f"{name}: ECOM_HOME not a volume"
        assert Path(env["ECOM_LANDING_DIR"]).is_relative_to(env["ECOM_HOME"])


def test_the_editable_install_keeps_the_sql_next_to_the_package():
    # ingest.py finds include/sql/ddl relative to the package: only an install that imports
    # the package from /opt/airflow/include (editable) sees the same tree as the work copy.
    dockerfile = DOCKERFILE.read_text()
    assert re.search(r"pip install [^\n]*-r /opt/airflow/requirements\.lock", dockerfile)
    assert re.search(r"pip install [^\n]*--no-deps --editable /opt/airflow\n", dockerfile)
    assert dockerfile_copy_target("pyproject.toml") == "/opt/airflow"


def test_warehouse_connection_names_the_same_database_as_the_url(compose, services):
    for name, service in airflow_services(compose).items():
        env = environment(service)
        connection = json.loads(env["AIRFLOW_CONN_ECOM_WAREHOUSE"])
        url = urlsplit(env["ECOM_DATABASE_URL"])
        assert connection["conn_type"] == "postgres", name
        assert (
            connection["host"],
            connection["port"],
            connection["schema"],
            connection["login"],
            connection["password"],
        ) == (
            url.hostname,
            url.port,
            unquote(url.path.lstrip("/")),
            unquote(url.username),
            unquote(url.password),
        ), name


def test_the_default_warehouse_is_created_on_the_postgres_server(compose, services):
    env = environment(services["airflow-worker"])
    connection = json.loads(env["AIRFLOW_CONN_ECOM_WAREHOUSE"])
    postgres = services[connection["host"]]
    server = environment(postgres)
    assert (server["ECOM_WAREHOUSE_DB"], server["ECOM_WAREHOUSE_USER"]) == (
        connection["schema"],
        connection["login"],
    )
    assert server["ECOM_WAREHOUSE_PASSWORD"] == connection["password"]
    # A separate role and database: the warehouse is not Airflow's metadata database.
    assert connection["login"] != server["POSTGRES_USER"]
    assert connection["schema"] != server["POSTGRES_DB"]
    init_dir = mounts(postgres)["/docker-entrypoint-initdb.d"]
    assert (ROOT / init_dir / "10-create-warehouse.sh").is_file()


def test_mail_goes_to_the_smtp_catcher(compose, services):
    catcher = service_on_image(services, "mailpit")
    catcher_env = environment(services[catcher])
    smtp_port = int(catcher_env["MP_SMTP_BIND_ADDR"].rsplit(":", 1)[1])
    ui_port = int(catcher_env["MP_UI_BIND_ADDR"].rsplit(":", 1)[1])
    assert container_port(services[catcher]) == ui_port  # the web UI is published
    for name, service in airflow_services(compose).items():
        env = environment(service)
        connection = json.loads(env["AIRFLOW_CONN_SMTP_DEFAULT"])
        assert connection["conn_type"] == "smtp", name
        assert (connection["host"], connection["port"]) == (catcher, smtp_port), name
        # Mailpit speaks plain SMTP; the hook's defaults (SMTP_SSL, STARTTLS) would fail.
        assert connection["extra"]["disable_ssl"] is True
        assert connection["extra"]["disable_tls"] is True
        assert connection["extra"]["from_email"]
        assert env["AIRFLOW__SMTP__SMTP_HOST"] == catcher
        assert int(env["AIRFLOW__SMTP__SMTP_PORT"]) == smtp_port
        assert "@" in env["ECOM_ALERT_EMAIL"]


def test_stateful_services_and_components_have_healthchecks(services):
    needing = {"postgres", "redis", "mailpit", *AIRFLOW_COMMANDS}
    for name in needing:
        test = (services[name].get("healthcheck") or {}).get("test")
        assert test, f"{name} has no healthcheck"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "ping" in services["redis"]["healthcheck"]["test"]


def test_depends_on_conditions_are_sane(compose, services):
    conditions = {}
    for name, service in services.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            condition = rule["condition"]
            conditions[name, dependency] = condition
            if condition == "service_healthy":
                assert services[dependency].get("healthcheck"), (name, dependency)
            elif condition == "service_completed_successfully":
                # Only a one-shot service can complete; one that restarts never does.
                assert "restart" not in services[dependency], (name, dependency)
            else:
                assert condition == "service_started", (name, dependency)

    for name in airflow_services(compose):
        if name == INIT_SERVICE:
            continue
        if "profiles" not in services[name]:
            assert conditions[name, INIT_SERVICE] == "service_completed_successfully", name
    assert conditions[INIT_SERVICE, "postgres"] == "service_healthy"
    assert conditions["airflow-worker", "airflow-apiserver"] == "service_healthy"
    assert conditions["airflow-worker", "redis"] == "service_healthy"

    # No cycles: every service can be started after the ones it depends on.
    started: set[str] = set()
    pending = set(services)
    while pending:
        ready = {n for n in pending if set(services[n].get("depends_on") or {}) <= started}
        assert ready, f"dependency cycle among {sorted(pending)}"
        started |= ready
        pending -= ready


def test_airflow_runs_unprivileged_except_the_init(compose):
    for name, service in airflow_services(compose).items():
        user = interpolate(service["user"])
        if name == INIT_SERVICE:
            assert user == "0:0"
        else:
            uid, gid = user.split(":")
            # Any UID, but GID 0: the official image refuses another group.
            assert uid != "0" and gid == "0", name


def test_every_variable_is_documented():
    documented = set(re.findall(r"^\|\s*`([A-Z_][A-Z0-9_]*)`", DEPLOYMENT_DOC.read_text(), re.M))
    used = variables_used(COMPOSE_FILE.read_text())
    assert used, "the compose file takes no variables at all?"
    assert used <= documented, (
        f"not in the table of docs/deployment.md: {sorted(used - documented)}"
    )


def dockerfile_base_image() -> str:
    """The FROM image with the ARG defaults substituted."""
    args: dict[str, str] = {}
    for line in DOCKERFILE.read_text().splitlines():
        if match := re.match(r"ARG\s+(\w+)=(\S+)", line):
            args.setdefault(match.group(1), match.group(2))
        if line.startswith("FROM "):
            return interpolate(line.split()[1], args)
    raise AssertionError("the Dockerfile has no FROM")


def test_image_is_the_airflow_and_python_of_the_lock():
    lock = LOCK_FILE.read_text()
    airflow_pin = re.search(r"^apache-airflow==(\S+)$", lock, re.M).group(1)
    python_pin = re.search(r"--python-version (\d+\.\d+)", lock).group(1)
    image = dockerfile_base_image()
    match = re.fullmatch(r"apache/airflow:(?:slim-)?(\d+\.\d+\.\d+)-python(\d+\.\d+)", image)
    assert match, f"unexpected base image {image}"
    assert match.group(1).split(".")[0] == airflow_pin.split(".")[0]  # Airflow 3 needs 3
    assert match.group(1) == airflow_pin
    assert match.group(2) == python_pin


def ignored_by_docker(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins; `!` re-includes."""
    ignored = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatch(part, pattern[3:]) for part in parts)
        else:
            hit = any(
                fnmatch.fnmatch(prefix, pattern) and prefix.count("/") == pattern.count("/")
                for prefix in prefixes
            )
        if hit:
            ignored = not negated
    return ignored


def test_everything_the_dockerfile_copies_is_in_the_repository():
    """A fresh clone has only what git tracks: an empty or untracked folder that the Dockerfile
    copies exists in a work copy and breaks the image build everywhere else."""
    for line in DOCKERFILE.read_text().splitlines():
        parts = [part for part in line.split() if not part.startswith("--")]
        if parts[:1] == ["COPY"]:
            for source in parts[1:-1]:
                tracked = subprocess.run(
                    ["git", "ls-files", "--", source],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                assert tracked.strip(), f"the Dockerfile copies {source}, which git does not track"


def test_secrets_and_local_state_stay_out_of_the_image():
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in (".env", ".venv/bin/python", ".ecom/pgdata/PG_VERSION", ".git/config"):
        assert ignored_by_docker(path, patterns), f"{path} would be sent to the builder"
    for path in ("include/__pycache__/x.pyc", "great_expectations/uncommitted/data_docs/x"):
        assert ignored_by_docker(path, patterns), path
    for path in ("requirements.lock", "pyproject.toml", "include/ecom_insights/config.py"):
        assert not ignored_by_docker(path, patterns), f"{path} is needed by the Dockerfile"
    for line in DOCKERFILE.read_text().splitlines():
        parts = [part for part in line.split() if not part.startswith("--")]
        if parts[:1] == ["COPY"]:
            for source in parts[1:-1]:
                assert not ignored_by_docker(source.rstrip("/"), patterns), source
