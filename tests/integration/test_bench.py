"""The benchmark's set-up on a real PostgreSQL: the new day's rows are put where a daily
batch's merge puts them, once, and a rerun of the feature steps leaves them there."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from ecom_insights import bench, ingest
from ecom_insights.generate import generate_dataset
from ecom_insights.warehouse import connect

START = date(2024, 1, 1)
DAYS = 60
# a day amid the history: the bulk load puts its rows among the other days'
DAY = START + timedelta(days=40)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("bench-data")
    generate_dataset(directory, customers=400, days=DAYS, seed=5, start=START)
    return directory


def day_rows(url: str) -> dict[str, list[tuple[str, str]]]:
    """The physical place (ctid) of each of the day's sessions and events."""
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "select ctid::text, session_id from core.sessions where session_date = %s "
            "order by session_id",
            (DAY,),
        )
        sessions = cur.fetchall()
        cur.execute(
            "select ctid::text, event_id from core.events "
            "where event_time >= %s and event_time < %s::date + 1 order by event_id",
            (DAY, DAY),
        )
        return {"sessions": sessions, "events": cur.fetchall()}


def in_place(url: str) -> dict[str, bool]:
    with connect(url) as conn, conn.cursor() as cur:
        return {table: bench._day_in_place(cur, table, DAY) for table in bench.DAY_ROWS}


@pytest.mark.integration
def test_the_new_day_is_moved_to_the_tables_end_once(generated, database_url):
    with connect(database_url) as conn:
        ingest.land_files(conn, generated, reprocess=True)
        ingest.apply_row_rules(conn, datetime(2024, 6, 1, tzinfo=UTC))
        ingest.merge_into_core(conn)
    loaded = day_rows(database_url)
    assert loaded["sessions"] and loaded["events"]
    # the bulk load spreads the day over the table
    assert in_place(database_url) == {"sessions": False, "events": False}

    bench.append_new_day(database_url, DAY)
    moved = day_rows(database_url)
    assert in_place(database_url) == {"sessions": True, "events": True}
    # the same rows, all of them moved
    assert [key for _, key in moved["sessions"]] == [key for _, key in loaded["sessions"]]
    assert [key for _, key in moved["events"]] == [key for _, key in loaded["events"]]
    assert not {place for place, _ in moved["sessions"]} & {p for p, _ in loaded["sessions"]}

    # a rerun of the feature steps leaves the day where the first run put it
    bench.append_new_day(database_url, DAY)
    assert day_rows(database_url) == moved
