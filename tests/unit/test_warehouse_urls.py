"""Connection URLs: session settings travel in libpq's `options`, the rest of the URL intact."""

from psycopg2.extensions import parse_dsn

from ecom_insights.warehouse import with_settings


def test_settings_reach_libpq_and_the_socket_host_survives():
    url = with_settings("postgresql://postgres:@/bench?host=/tmp/pg data", {"work_mem": "256MB"})
    parsed = parse_dsn(url)  # libpq's own parser
    assert parsed["options"] == "-c work_mem=256MB"
    assert (parsed["host"], parsed["dbname"], parsed["user"]) == (
        "/tmp/pg data",
        "bench",
        "postgres",
    )


def test_settings_are_added_to_options_already_in_the_url():
    url = with_settings(
        "postgresql://u:p@db.example:5433/ecom?options=-c%20search_path%3Dcore",
        {"work_mem": "64MB", "statement_timeout": "0"},
    )
    parsed = parse_dsn(url)
    assert parsed["options"] == "-c search_path=core -c work_mem=64MB -c statement_timeout=0"
    assert (parsed["host"], parsed["port"], parsed["password"]) == ("db.example", "5433", "p")
