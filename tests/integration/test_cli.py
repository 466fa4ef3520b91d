"""The `ecom` command as a user runs it: separate processes, each home with its own embedded
PostgreSQL and Airflow metadata, side by side."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecom_insights import warehouse

ECOM = str(Path(sys.executable).with_name("ecom"))


@pytest.fixture
def homes() -> Iterator[list[Path]]:
    """Two fresh ECOM_HOMEs; their embedded servers are stopped and the homes deleted
    afterwards."""
    made = [Path(tempfile.mkdtemp(prefix="ecom-home-")) for _ in range(2)]
    yield made
    for home in made:
        stop_postmaster(home / "pgdata")
        shutil.rmtree(home, ignore_errors=True)


def stop_postmaster(pgdata: Path, timeout: float = 30) -> None:
    """Stop the server of `pgdata`, if one runs, by a fast shutdown (SIGINT to the postmaster).

    Not pgserver's cleanup(): `ecom` leaves the server running on purpose and pgserver stops
    it only when its list of client processes holds no other pid, while processes that
    ended without running their exit handlers (Airflow's task processes) stay on that list.
    """
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().split()[0])
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def ecom(home: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ECOM_"))}
    env["ECOM_HOME"] = str(home)
    return subprocess.run([ECOM, *args], env=env, capture_output=True, text=True, timeout=timeout)


def start(home: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ECOM_"))}
    env["ECOM_HOME"] = str(home)
    return subprocess.Popen(
        [ECOM, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def count(url: str, table: str) -> int:
    with warehouse.connect(url) as conn, conn.cursor() as cur:
        cur.execute(f"select count(*) from {table}")  # table names from the tests below
        return cur.fetchone()[0]


@pytest.mark.integration
@pytest.mark.slow
def test_two_homes_run_side_by_side_without_touching_each_other(homes, tmp_path):
    small, large = tmp_path / "small", tmp_path / "large"
    for directory, customers in ((small, "150"), (large, "400")):
        generated = ecom(
            homes[0],
            "generate",
            "--out",
            str(directory),
            "--customers",
            customers,
            "--days",
            "200",
            "--seed",
            "5",
        )
        assert generated.returncode == 0, generated.stderr
        assert "sessions" in generated.stdout

    runs = [
        start(homes[0], "run", "--data", str(small)),
        start(homes[1], "run", "--data", str(large)),
    ]
    outputs = [run.communicate(timeout=600) for run in runs]
    for run, (stdout, stderr) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, stdout + stderr
        assert "ecom_ingestion               success" in stdout
        assert "ecom_warehouse_health        success" in stdout

    urls = [ecom(home, "db-url").stdout.strip() for home in homes]
    assert urls[0] != urls[1]
    assert all(str(home) in url for home, url in zip(homes, urls, strict=True))
    with (small / "customers.csv").open() as f:
        assert count(urls[0], "core.customers") == sum(1 for _ in f) - 1
    with (large / "customers.csv").open() as f:
        assert count(urls[1], "core.customers") == sum(1 for _ in f) - 1
    assert (homes[0] / "data_docs" / "index.html").exists()
    assert (homes[1] / "airflow" / "airflow.db").exists()

    # the Airflow CLI on a home sees the runs `ecom run` made there
    listed = ecom(homes[0], "airflow", "dags", "list-runs", "ecom_ingestion", "-o", "plain")
    assert listed.returncode == 0, listed.stderr
    assert "success" in listed.stdout


@pytest.mark.integration
def test_run_failures_are_clear_and_non_zero(homes, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = ecom(homes[0], "run", "--data", str(empty))
    assert result.returncode == 1
    assert f"no input files in {empty}" in result.stderr
    assert "Traceback" not in result.stderr

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "customers.csv").write_text("customer_id,age,gender,location\nC1,30,F,UK\n")
    (bad / "sessions.csv").write_text(
        "session_id,customer_id,session_date,product_viewed,browsing_time_sec,purchase_made,"
        "purchase_amount\nS1,C1,2024-01-02,P1,10,false,0\n"
    )
    result = ecom(homes[0], "run", "--data", str(bad))
    assert result.returncode == 1
    assert "ecom_ingestion ended failed; failed tasks: report" in result.stderr
    assert "customers.csv: column 'signup_date': required column is missing" in result.stderr
    assert "sessions: customer_id: no customers row has this customer_id" in result.stdout
