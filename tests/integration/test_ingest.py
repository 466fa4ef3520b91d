"""Ingestion on a real PostgreSQL: the bad-input corpus, and idempotent re-runs.

Every case starts from the same good files and adds one kind of defect. A row-level defect
must be quarantined with its file, row number and reason while every good row loads; a
file-level defect must reject the whole file with a message naming file, column and rule,
and load nothing of it.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg2.errors
import pytest

from ecom_insights import ingest
from ecom_insights.warehouse import connect

LOGICAL_DATE = datetime(2024, 3, 1, tzinfo=UTC)

CUSTOMERS_HEADER = "customer_id,age,gender,location,signup_date\n"
GOOD_CUSTOMERS = [
    "C1,34,F,UK,2024-01-01",
    "C2,,M,,2024-01-05",
    "C3,51,,DE,2024-01-06",
]
SESSIONS_HEADER = (
    "session_id,customer_id,session_date,product_viewed,browsing_time_sec,"
    "purchase_made,purchase_amount\n"
)
GOOD_SESSIONS = [
    "S1,C1,2024-02-01 10:00:00,P1,120,true,25.50",
    "S2,C2,2024-02-02,P2,30,no,",
    "S3,C3,2024-02-03T08:15:00,P3,45.5,1,12",
    "S4,C1,2024-02-04,P1,0,false,0",
    "S5,C2,2024-02-05,P2,300,YES,99.99",
]
EVENTS_HEADER = "event_id,session_id,customer_id,event_time,event_type,product_id,price\n"
GOOD_EVENTS = [
    "E1,S1,C1,2024-02-01 10:00:05,view,P1,25.50",
    "E2,S1,C1,2024-02-01 10:02:00,purchase,P1,25.50",
]
PRODUCTS_HEADER = "product_id,product_name,category,price\n"
GOOD_PRODUCTS = ["P1,Mug,kitchen,25.50", "P2,Lamp,home,99.99"]
CAMPAIGNS_HEADER = "campaign_id,name,channel,start_date,end_date\n"
GOOD_CAMPAIGNS = ["CMP1,Spring,email,2024-03-01,2024-03-14"]

GOOD_COUNTS = {"customers": 3, "sessions": 5, "events": 2, "products": 2, "campaigns": 1}


@dataclass
class Case:
    name: str
    # extra rows appended to a file (the row number of the first extra row is len(good) + 1)
    extra: dict[str, list[str]] = field(default_factory=dict)
    # a file replaced whole by these bytes
    replace: dict[str, bytes] = field(default_factory=dict)
    # expected: (source, reason fragment) for quarantine, or (file name, message fragment)
    quarantined: tuple[str, str] | None = None
    rejected: tuple[str, str] | None = None


ROW_CASES = [
    Case(
        "orphan session",
        {"sessions": ["S9,C404,2024-02-06,P1,10,false,0"]},
        quarantined=("sessions", "customer_id: no customers row has this customer_id"),
    ),
    Case(
        "negative amount",
        {"sessions": ["S9,C1,2024-02-06,P1,10,true,-5"]},
        quarantined=("sessions", "purchase_amount: must be >= 0"),
    ),
    Case(
        "unparseable date",
        {"sessions": ["S9,C1,2024-13-45,P1,10,false,0"]},
        quarantined=("sessions", "session_date: not a valid timestamp: '2024-13-45'"),
    ),
    Case(
        "special word as date",
        {"sessions": ["S9,C1,now,P1,10,false,0"]},
        quarantined=("sessions", "session_date: not a valid timestamp: 'now'"),
    ),
    Case(
        "duplicate session id",
        {"sessions": ["S1,C2,2024-02-06,P1,10,false,0"]},
        quarantined=("sessions", "session_id: duplicate of sessions.csv row 1"),
    ),
    Case(
        "flag false with amount",
        {"sessions": ["S9,C1,2024-02-06,P1,10,false,12.00"]},
        quarantined=("sessions", "purchase_amount: positive while purchase_made is false"),
    ),
    Case(
        "flag true without amount",
        {"sessions": ["S9,C1,2024-02-06,P1,10,true,"]},
        quarantined=("sessions", "purchase_amount: empty while purchase_made is true"),
    ),
    Case(
        "unparseable flag",
        {"sessions": ["S9,C1,2024-02-06,P1,10,maybe,0"]},
        quarantined=("sessions", "purchase_made: not a valid boolean: 'maybe'"),
    ),
    Case(
        "NaN amount",
        {"sessions": ["S9,C1,2024-02-06,P1,10,true,NaN"]},
        quarantined=("sessions", "purchase_amount: not a valid money: 'NaN'"),
    ),
    Case(
        "text browsing time in one row",
        {"sessions": ["S9,C1,2024-02-06,P1,ten,false,0"]},
        quarantined=("sessions", "browsing_time_sec: not a valid number: 'ten'"),
    ),
    Case(
        "negative browsing time",
        {"sessions": ["S9,C1,2024-02-06,P1,-3,false,0"]},
        quarantined=("sessions", "browsing_time_sec: must be >= 0"),
    ),
    Case(
        "empty session id",
        {"sessions": [",C1,2024-02-06,P1,3,false,0"]},
        quarantined=("sessions", "session_id: is empty"),
    ),
    Case(
        "empty customer id",
        {"customers": [",30,F,UK,2024-01-01"]},
        quarantined=("customers", "customer_id: is empty"),
    ),
    Case(
        "age out of range",
        {"customers": ["C9,250,F,UK,2024-01-01"]},
        quarantined=("customers", "age: must be between 0 and 120"),
    ),
    Case(
        "fractional age",
        {"customers": ["C9,33.5,F,UK,2024-01-01"]},
        quarantined=("customers", "age: not a valid integer: '33.5'"),
    ),
    Case(
        "duplicate customer id",
        {"customers": ["C1,40,F,UK,2024-01-01"]},
        quarantined=("customers", "customer_id: duplicate of customers.csv row 1"),
    ),
    Case(
        "unparseable signup date",
        {"customers": ["C9,40,F,UK,01/13/2024x"]},
        quarantined=("customers", "signup_date: not a valid date"),
    ),
    Case(
        "unknown event type",
        {"events": ["E9,S1,C1,2024-02-01 10:03:00,wishlist,P1,25.50"]},
        quarantined=("events", "event_type: must be one of view, cart, remove_from_cart, purchase"),
    ),
    Case(
        "orphan event",
        {"events": ["E9,S404,C1,2024-02-01 10:03:00,view,P1,25.50"]},
        quarantined=("events", "session_id: no sessions row has this session_id"),
    ),
    Case(
        "negative product price",
        {"products": ["P9,Broken,home,-1"]},
        quarantined=("products", "price: must be >= 0"),
    ),
    Case(
        "campaign ends before it starts",
        {"campaigns": ["CMP9,Odd,email,2024-03-10,2024-03-01"]},
        quarantined=("campaigns", "end_date: before start_date"),
    ),
]

FILE_CASES = [
    Case(
        "missing required column",
        replace={
            "sessions": b"session_id,customer_id,session_date,product_viewed,"
            b"browsing_time_sec,purchase_made\nS1,C1,2024-02-01,P1,1,false\n"
        },
        rejected=("sessions.csv", "column 'purchase_amount': required column is missing"),
    ),
    Case(
        "empty file",
        replace={"sessions": b""},
        rejected=("sessions.csv", "empty file: no header row"),
    ),
    Case(
        "binary file",
        replace={"sessions": bytes(range(256)) * 4},
        rejected=("sessions.csv", "unreadable file: binary content"),
    ),
    Case(
        "duplicate header column",
        replace={
            "customers": b"customer_id,age,age,gender,location,signup_date\n"
            b"C1,1,1,F,UK,2024-01-01\n"
        },
        rejected=("customers.csv", "column 'age': column appears more than once"),
    ),
    Case(
        "ragged row",
        extra={"sessions": ["S9,C1,2024-02-06,P1,10,false,0,surplus"]},
        rejected=("sessions.csv", "unreadable CSV: extra data after last expected column (line 7)"),
    ),
    Case(
        "invalid UTF-8 in a row",
        replace={
            "customers": (CUSTOMERS_HEADER + "\n".join(GOOD_CUSTOMERS) + "\n").encode()
            + "C9,30,F,K\xf6ln,2024-01-01\n".encode("latin-1")
        },
        rejected=("customers.csv", "unreadable CSV: invalid byte sequence"),
    ),
    Case(
        "unterminated quote",
        extra={"sessions": ['S9,C1,2024-02-06,"P1,10,false,0']},
        rejected=("sessions.csv", "unreadable CSV: unterminated CSV quoted field"),
    ),
    Case(
        "wrong type throughout",
        replace={
            "sessions": (
                SESSIONS_HEADER + "S1,C1,2024-02-01,P1,long,true,1\n"
                "S2,C1,2024-02-01,P1,short,true,1\nS3,C1,2024-02-01,P1,,true,1\n"
            ).encode()
        },
        rejected=("sessions.csv", "column 'browsing_time_sec': wrong type throughout"),
    ),
]

HEADERS = {
    "customers": CUSTOMERS_HEADER,
    "sessions": SESSIONS_HEADER,
    "events": EVENTS_HEADER,
    "products": PRODUCTS_HEADER,
    "campaigns": CAMPAIGNS_HEADER,
}
GOOD_ROWS = {
    "customers": GOOD_CUSTOMERS,
    "sessions": GOOD_SESSIONS,
    "events": GOOD_EVENTS,
    "products": GOOD_PRODUCTS,
    "campaigns": GOOD_CAMPAIGNS,
}


def write_files(directory: Path, case: Case | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for source, header in HEADERS.items():
        path = directory / f"{source}.csv"
        if case and source in case.replace:
            path.write_bytes(case.replace[source])
            continue
        rows = GOOD_ROWS[source] + (case.extra.get(source, []) if case else [])
        path.write_text(header + "\n".join(rows) + "\n")
    return directory


def ingest_directory(
    url: str, directory: Path, *, reprocess: bool = False
) -> list[ingest.FileResult]:
    with connect(url) as conn:
        files = ingest.land_files(conn, directory, reprocess=reprocess)
        ingest.apply_row_rules(conn, LOGICAL_DATE)
        # as the DAG does: the log counts staging's rows, which a first load's merge adopts
        ingest.record_load_log(conn, files, run_id="test", logical_date=LOGICAL_DATE)
        ingest.merge_into_core(conn)
    return files


def core_counts(url: str) -> dict[str, int]:
    with connect(url) as conn, conn.cursor() as cur:
        counts = {}
        for source in GOOD_COUNTS:
            cur.execute(f"select count(*) from core.{source}")
            counts[source] = cur.fetchone()[0]
        return counts


@pytest.mark.integration
def test_the_corpus_has_at_least_fifteen_kinds_of_bad_input():
    assert len(ROW_CASES) + len(FILE_CASES) >= 15
    assert len({c.name for c in ROW_CASES + FILE_CASES}) == len(ROW_CASES) + len(FILE_CASES)


@pytest.mark.integration
def test_good_files_load_completely(database_url, tmp_path):
    files = ingest_directory(database_url, write_files(tmp_path / "good"))
    assert [f.status for f in files] == ["landed"] * 5
    assert core_counts(database_url) == GOOD_COUNTS
    with connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from raw.quarantine")
        assert cur.fetchone()[0] == 0
        cur.execute(
            "select session_started_at, session_date, purchase_made, purchase_amount "
            "from core.sessions where session_id = 'S3'"
        )
        started, day, made, amount = cur.fetchone()
        assert (started, str(day), made, float(amount)) == (
            datetime(2024, 2, 3, 8, 15),
            "2024-02-03",
            True,
            12.0,
        )
        cur.execute("select purchase_amount from core.sessions where session_id = 'S2'")
        assert float(cur.fetchone()[0]) == 0.0


@pytest.mark.integration
@pytest.mark.parametrize("case", ROW_CASES, ids=lambda c: c.name)
def test_a_bad_row_is_quarantined_and_every_good_row_loads(case, database_url, tmp_path):
    ingest_directory(database_url, write_files(tmp_path / "in", case))

    source, reason = case.quarantined
    with connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("select source, file_name, row_number, reasons, record from raw.quarantine")
        rows = cur.fetchall()
    assert len(rows) == 1, rows
    q_source, q_file, q_row, q_reasons, record = rows[0]
    assert q_source == source
    assert q_file == f"{source}.csv"
    assert q_row == len(GOOD_ROWS[source]) + 1  # the appended row, 1 = first data row
    assert any(reason in r for r in q_reasons), q_reasons
    assert record  # the original text is kept: nothing is lost
    assert core_counts(database_url) == GOOD_COUNTS


@pytest.mark.integration
@pytest.mark.parametrize("case", FILE_CASES, ids=lambda c: c.name)
def test_a_bad_file_is_rejected_whole_and_the_others_load(case, database_url, tmp_path):
    files = ingest_directory(database_url, write_files(tmp_path / "in", case))

    file_name, message = case.rejected
    rejected = [f for f in files if f.status == "rejected"]
    assert [Path(f.path).name for f in rejected] == [file_name]
    assert message in rejected[0].message
    assert rejected[0].message.startswith(file_name)
    source = file_name.removesuffix(".csv")
    expected = dict(GOOD_COUNTS)
    expected[source] = 0
    if source == "customers":  # no customers: every session and event is an orphan
        expected["sessions"] = expected["events"] = 0
    if source == "sessions":
        expected["events"] = 0
    assert core_counts(database_url) == expected
    with connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("select status, message from raw.load_log where source = %s", (source,))
        assert cur.fetchall() == [("rejected", rejected[0].message)]
        cur.execute("select count(*) from raw.quarantine where source = %s", (source,))
        assert cur.fetchone()[0] == 0  # nothing of a rejected file anywhere
    assert rejected[0].message in ingest.rejection_report([f.to_dict() for f in files])


@pytest.mark.integration
def test_rerunning_the_same_files_changes_nothing(database_url, tmp_path, fingerprints):
    case = Case(
        "mixed",
        {"sessions": ["S9,C404,2024-02-06,P1,10,false,0", "S1,C2,2024-02-06,P1,1,false,0"]},
    )
    directory = write_files(tmp_path / "in", case)
    ingest_directory(database_url, directory)
    first = fingerprints(database_url)

    # by default, files loaded before are skipped: nothing new, nothing written
    with pytest.raises(ingest.NoNewFiles, match="nothing new"):
        ingest_directory(database_url, directory)
    assert fingerprints(database_url) == first

    # reprocessed, they give the same tables
    ingest_directory(database_url, directory, reprocess=True)
    assert fingerprints(database_url) == first


@pytest.mark.integration
def test_the_same_content_twice_in_one_batch_is_loaded_once(database_url, tmp_path):
    case = Case("copy", {"sessions": ["S9,C404,2024-02-06,P1,10,false,0"]})
    directory = write_files(tmp_path / "in", case)
    (directory / "sessions_copy.csv").write_bytes((directory / "sessions.csv").read_bytes())
    files = ingest_directory(database_url, directory)
    copy = next(f for f in files if f.path.endswith("sessions_copy.csv"))
    assert (copy.status, copy.message) == ("skipped", "same content as sessions.csv in this batch")
    assert core_counts(database_url) == GOOD_COUNTS
    with connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("select file_name, row_number from raw.quarantine")
        assert cur.fetchall() == [("sessions.csv", 6)]


@pytest.mark.integration
def test_core_without_customers_is_reported(database_url, tmp_path):
    directory = write_files(tmp_path / "in", Case("no customers", replace={"customers": b""}))
    files = ingest_directory(database_url, directory)
    with connect(database_url) as conn:
        empty = ingest.empty_required_sources(conn)
    assert empty == ["customers", "sessions"]
    report = ingest.rejection_report([f.to_dict() for f in files], empty)
    assert "customers.csv: empty file: no header row" in report
    assert "- customers: provide customers.csv" in report


@pytest.mark.integration
def test_a_later_file_updates_rows_and_adds_new_ones(database_url, tmp_path):
    ingest_directory(database_url, write_files(tmp_path / "day1"))
    day2 = tmp_path / "day2"
    day2.mkdir()
    # no customers file: sessions are checked against the customers already in core
    (day2 / "sessions_2024-02-06.csv.gz").write_bytes(
        gzip.compress(
            (
                SESSIONS_HEADER + "S1,C1,2024-02-01 10:00:00,P1,130,true,25.50\n"
                "S6,C3,2024-02-06,P3,60,true,5\nS7,C404,2024-02-06,P3,60,true,5\n"
            ).encode()
        )
    )
    ingest_directory(database_url, day2)
    with connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("select browsing_time_sec from core.sessions where session_id = 'S1'")
        assert cur.fetchone()[0] == 130
        cur.execute("select count(*) from core.sessions")
        assert cur.fetchone()[0] == GOOD_COUNTS["sessions"] + 1
        cur.execute("select file_name, row_number from raw.quarantine")
        assert cur.fetchall() == [("sessions_2024-02-06.csv.gz", 3)]


@pytest.mark.integration
def test_no_input_files_is_a_clear_error(database_url, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ingest.NoInputFiles, match="no input files in .*expected any of"):
        ingest_directory(database_url, tmp_path / "empty")


@pytest.mark.integration
def test_a_wrong_type_file_is_rejected_beside_a_good_file_of_the_same_source(
    database_url, tmp_path
):
    # the second file's rows follow the first's in raw.sessions: the check must look at the
    # second file's rows only, and find that none of its browsing times parses
    directory = write_files(tmp_path / "in")
    (directory / "sessions_late.csv").write_text(
        SESSIONS_HEADER + "S7,C1,2024-02-07,P1,long,true,1\nS8,C1,2024-02-08,P1,short,true,1\n"
    )
    files = ingest_directory(database_url, directory)
    late = next(f for f in files if f.path.endswith("sessions_late.csv"))
    assert late.status == "rejected"
    assert "column 'browsing_time_sec': wrong type throughout" in late.message
    assert core_counts(database_url) == GOOD_COUNTS


@pytest.mark.integration
def test_a_column_whose_last_value_alone_parses_is_no_wrong_type_file(database_url, tmp_path):
    case = Case(
        "mostly text browsing times",
        replace={
            "sessions": (
                SESSIONS_HEADER + "S1,C1,2024-02-01,P1,long,true,1\n"
                "S2,C1,2024-02-02,P1,short,true,1\nS3,C1,2024-02-03,P1,12,true,1\n"
            ).encode()
        },
    )
    files = ingest_directory(database_url, write_files(tmp_path / "in", case))
    assert {f.status for f in files} == {"landed"}
    with connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "select row_number, reasons from raw.quarantine where source = 'sessions' "
            "order by row_number"
        )
        assert cur.fetchall() == [
            (1, ["browsing_time_sec: not a valid number: 'long'"]),
            (2, ["browsing_time_sec: not a valid number: 'short'"]),
        ]
        cur.execute("select session_id from core.sessions")
        assert cur.fetchall() == [("S3",)]


@pytest.mark.integration
def test_duplicates_across_files_keep_the_first_by_file_name_then_row(database_url, tmp_path):
    directory = write_files(tmp_path / "in")
    # written b first: the order of names decides, not the order of writing or of rows
    (directory / "sessions_b.csv").write_text(
        SESSIONS_HEADER + "S7,C2,2024-02-09,P1,1,false,0\n"
        "S1,C3,2024-02-10,P1,2,false,0\n"
        "S6,C1,2024-02-12,P1,-1,false,0\n"  # S6 with a bad value: its own rule, no duplicate
    )
    (directory / "sessions_a.csv").write_text(
        SESSIONS_HEADER + "S6,C1,2024-02-08,P1,1,false,0\n"
        "S7,C3,2024-02-11,P1,3,false,0\n"
        "S7,C1,2024-02-11,P1,4,false,0\n"
    )
    ingest_directory(database_url, directory)
    with connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "select file_name, row_number, reasons from raw.quarantine "
            "order by file_name, row_number"
        )
        assert cur.fetchall() == [
            ("sessions_a.csv", 3, ["session_id: duplicate of sessions_a.csv row 2"]),
            ("sessions_b.csv", 1, ["session_id: duplicate of sessions_a.csv row 2"]),
            ("sessions_b.csv", 2, ["session_id: duplicate of sessions.csv row 1"]),
            ("sessions_b.csv", 3, ["browsing_time_sec: must be >= 0"]),
        ]
        cur.execute(
            "select session_id, customer_id, browsing_time_sec from core.sessions "
            "where session_id in ('S1', 'S6', 'S7') order by session_id"
        )
        assert cur.fetchall() == [("S1", "C1", 120), ("S6", "C1", 1), ("S7", "C3", 3)]


@pytest.mark.integration
def test_an_older_warehouse_gets_its_ids_in_c_and_keeps_its_rows_and_keys(database_url):
    with connect(database_url) as conn, conn.cursor() as cur:
        # core as created before the ids were declared collate "C", with a view over it
        cur.execute(
            "create schema core; "
            "create table core.sessions (session_id text primary key, "
            "customer_id text not null, session_date date not null); "
            "create index sessions_customer_date_idx on core.sessions (customer_id, session_date); "
            "insert into core.sessions values "
            "('S2', 'C1', '2024-01-02'), ('S1', 'C2', '2024-01-01'); "
            "create view core.sessions_per_customer as "
            "select customer_id, count(*) from core.sessions group by customer_id"
        )
    for _ in range(2):  # the conversion happens once; the second run finds nothing to do
        with connect(database_url) as conn:
            ingest.ensure_schema(conn)
    with connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "select a.attname, a.attcollation::regcollation::text from pg_attribute a "
            "where a.attrelid = 'core.sessions'::regclass and a.attname like '%\\_id' "
            "order by a.attname"
        )
        assert cur.fetchall() == [("customer_id", '"C"'), ("session_id", '"C"')]
        cur.execute("select session_id from core.sessions order by session_id")
        assert cur.fetchall() == [("S1",), ("S2",)]
        # analyzed again: the conversion drops the columns' statistics, which the planner needs
        cur.execute(
            "select count(*) from pg_stats "
            "where schemaname = 'core' and tablename = 'sessions' and attname = 'customer_id'"
        )
        assert cur.fetchone()[0] == 1
        cur.execute("select to_regclass('core.sessions_per_customer')")
        assert cur.fetchone()[0] is None  # dropped for its owner to create again
        cur.execute(
            "select indexrelid::regclass::text from pg_index "
            "where indrelid = 'core.sessions'::regclass"
        )
        indexes = {row[0] for row in cur.fetchall()}
        assert {"core.sessions_pkey", "core.sessions_customer_date_idx"} <= indexes
        with pytest.raises(psycopg2.errors.UniqueViolation):
            cur.execute("insert into core.sessions values ('S1', 'C3', '2024-01-03')")


def quarantine_rows(url: str) -> list[tuple]:
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "select file_name, row_number, reasons, record from raw.quarantine "
            "order by file_name, row_number"
        )
        return cur.fetchall()


def staging_rows(url: str, source: str) -> list[tuple]:
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(f"select * from staging.{source} order by _file, _row_number")
        return cur.fetchall()


@pytest.mark.integration
def test_rows_quarantined_after_going_straight_to_staging_keep_their_original_text(
    database_url, tmp_path
):
    # canonical rows that break no rule of their own: land sends them straight to staging,
    # and the row rules find the missing parent or the repeated key there
    case = Case(
        "straight to staging, then quarantined",
        {
            "sessions": ["S9,C404,2024-02-06,P1,10,FALSE,", "S1,C2,2024-02-07,P2,3,No,"],
            "events": ["E9,S404,C404,2024-02-01 10:03:00,view,P1,"],
        },
    )
    ingest_directory(database_url, write_files(tmp_path / "in", case))
    assert quarantine_rows(database_url) == [
        (
            "events.csv",
            3,
            [
                "session_id: no sessions row has this session_id",
                "customer_id: no customers row has this customer_id",
            ],
            {
                "event_id": "E9",
                "session_id": "S404",
                "customer_id": "C404",
                "event_time": "2024-02-01 10:03:00",
                "event_type": "view",
                "product_id": "P1",
            },
        ),
        (
            "sessions.csv",
            6,
            ["customer_id: no customers row has this customer_id"],
            {
                "session_id": "S9",
                "customer_id": "C404",
                "session_date": "2024-02-06",
                "product_viewed": "P1",
                "browsing_time_sec": "10",
                "purchase_made": "FALSE",
            },
        ),
        (
            "sessions.csv",
            7,
            ["session_id: duplicate of sessions.csv row 1"],
            {
                "session_id": "S1",
                "customer_id": "C2",
                "session_date": "2024-02-07",
                "product_viewed": "P2",
                "browsing_time_sec": "3",
                "purchase_made": "No",
            },
        ),
    ]
    assert core_counts(database_url) == GOOD_COUNTS


@pytest.mark.integration
def test_running_the_row_rules_again_on_a_landed_batch_gives_the_same_batch(database_url, tmp_path):
    # an Airflow retry or clear of apply_row_rules: land's staging rows are not landed again
    case = Case(
        "mixed",
        {
            "sessions": [
                "S9,C404,2024-02-06,P1,10,false,0",  # straight to staging, orphan
                "S1,C2,2024-02-06,P1,1,false,0",  # straight to staging, duplicate
                "S8,C2, 2024-02-06 ,P1,1,false,0",  # to raw (spaces), good
                "S8,C3,2024-02-07,P1,1,false,0",  # straight to staging, duplicate of raw's
                "S7,C1,2024-02-06,P1,-1,false,0",  # to raw, bad
                "S6,C1,2024-02-06,P1,1,false,0",  # straight to staging, good
                "S6,C2, 2024-02-06 ,P1,1,false,0",  # to raw, duplicate of staging's
            ]
        },
    )
    directory = write_files(tmp_path / "in", case)
    with connect(database_url) as conn:
        ingest.land_files(conn, directory)
    runs = []
    for _ in range(2):
        with connect(database_url) as conn:
            counts = ingest.apply_row_rules(conn, LOGICAL_DATE)
        runs.append((counts, staging_rows(database_url, "sessions"), quarantine_rows(database_url)))
    assert runs[0] == runs[1]
    counts, staged, quarantined = runs[0]
    assert counts["sessions"] == {"loaded": 7, "quarantined": 5}
    assert [row[0] for row in staged] == ["S1", "S2", "S3", "S4", "S5", "S8", "S6"]
    assert [(row[1], row[2]) for row in quarantined] == [
        (6, ["customer_id: no customers row has this customer_id"]),
        (7, ["session_id: duplicate of sessions.csv row 1"]),
        (9, ["session_id: duplicate of sessions.csv row 8"]),
        (10, ["browsing_time_sec: must be >= 0"]),
        (12, ["session_id: duplicate of sessions.csv row 11"]),
    ]


@pytest.mark.integration
def test_a_file_changed_after_landing_stops_the_row_rules_that_need_its_text(
    database_url, tmp_path
):
    case = Case("orphan", {"sessions": ["S9,C404,2024-02-06,P1,10,false,0"]})
    directory = write_files(tmp_path / "in", case)
    with connect(database_url) as conn:
        ingest.land_files(conn, directory)
    sessions = directory / "sessions.csv"
    sessions.write_text(sessions.read_text().replace("S9,C404", "S9,C405"))
    changed = "sessions.csv changed or went away since it was landed"
    with pytest.raises(RuntimeError, match=changed), connect(database_url) as conn:
        ingest.apply_row_rules(conn, LOGICAL_DATE)


@pytest.mark.integration
def test_a_gzip_file_is_screened_like_the_plain_one(database_url, tmp_path):
    case = Case("orphan", {"sessions": ["S9,C404,2024-02-06,P1,10,false,0"]})
    directory = write_files(tmp_path / "in", case)
    sessions = directory / "sessions.csv"
    (directory / "sessions.csv.gz").write_bytes(gzip.compress(sessions.read_bytes()))
    sessions.unlink()
    ingest_directory(database_url, directory)
    assert core_counts(database_url) == GOOD_COUNTS
    assert [row[:3] for row in quarantine_rows(database_url)] == [
        ("sessions.csv.gz", 6, ["customer_id: no customers row has this customer_id"])
    ]


@pytest.mark.integration
def test_landed_rows_are_frozen_so_the_audit_reads_keys_without_visiting_the_table(
    database_url, tmp_path
):
    # COPY FREEZE marks the pages all-visible: an index-only scan (as GX's uniqueness
    # window over staging's key index) then needs no heap fetch, and no later scan rewrites
    # the pages to set hint bits
    directory = write_files(tmp_path / "in")
    (directory / "sessions_late.csv").write_text(SESSIONS_HEADER + "S7,C1,2024-02-07,P1,1,true,1\n")
    with connect(database_url) as conn:
        ingest.land_files(conn, directory)
    with connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("create index on staging.events (event_id)")
        cur.execute("set local enable_seqscan = off")
        cur.execute("set local enable_bitmapscan = off")
        cur.execute(
            "explain (analyze, format json) select count(*) from staging.events "
            "where event_id >= ''"
        )
        plan = cur.fetchone()[0][0]["Plan"]["Plans"][0]
        cur.execute("select count(*) from staging.sessions")
        staged_sessions = cur.fetchone()[0]
    assert plan["Node Type"] == "Index Only Scan"
    assert plan["Actual Rows"] == GOOD_COUNTS["events"]
    assert plan["Heap Fetches"] == 0
    # the second file of a source lands after the first, which froze the table's rows
    assert staged_sessions == GOOD_COUNTS["sessions"] + 1


@pytest.mark.integration
def test_screened_rows_keep_nulls_commas_and_quotes_whether_sent_quoted_or_not(
    database_url, tmp_path
):
    # land sends a block of screened rows unquoted (an empty field is then a null), and
    # quoted when a value holds a comma, quote or line break: core must hold the file's
    # values both ways, and each row's file name (from staging's column default)
    directory = write_files(tmp_path / "in")
    (directory / "products.csv").write_text(
        PRODUCTS_HEADER + 'P1,"Mug, large",kitchen,25.50\nP2,"Lamp ""Arc""",,99.99\nP3,,home,\n'
    )
    with connect(database_url) as conn, conn.cursor() as cur:
        ingest.land_files(conn, directory)
        ingest.apply_row_rules(conn, LOGICAL_DATE)
        cur.execute("select distinct _file from staging.customers")
        staged_files = cur.fetchall()
        cur.execute("select count(*) from raw.products")  # the screening pass took every row
        products_through_raw = cur.fetchone()[0]
        ingest.merge_into_core(conn)
        cur.execute("select customer_id, age, gender, location from core.customers order by 1")
        customers = cur.fetchall()
        cur.execute(
            "select product_id, product_name, category, price from core.products order by 1"
        )
        products = [(p, n, c, None if price is None else str(price)) for p, n, c, price in cur]
    assert products_through_raw == 0
    assert customers == [("C1", 34, "F", "UK"), ("C2", None, "M", None), ("C3", 51, None, "DE")]
    assert products == [
        ("P1", "Mug, large", "kitchen", "25.50"),
        ("P2", 'Lamp "Arc"', None, "99.99"),
        ("P3", None, "home", None),
    ]
    assert staged_files == [("customers.csv",)]


def table_shape(url: str, table: str) -> dict:
    """Persistence, live columns, indexes (name: definition without the schema) and whether
    the table has dropped columns."""
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute("select relpersistence from pg_class where oid = %s::regclass", (table,))
        persistence = cur.fetchone()[0]
        cur.execute(
            "select attname, attisdropped from pg_attribute "
            "where attrelid = %s::regclass and attnum > 0 order by attnum",
            (table,),
        )
        attributes = cur.fetchall()
        cur.execute(
            "select indexrelid::regclass::text, "
            "replace(pg_get_indexdef(indexrelid), split_part(%s, '.', 1) || '.', '') "
            "from pg_index where indrelid = %s::regclass order by 1",
            (table, table),
        )
        indexes = dict(cur.fetchall())
        cur.execute(
            "select conname, contype from pg_constraint where conrelid = %s::regclass", (table,)
        )
        constraints = cur.fetchall()
    return {
        "logged": persistence == "p",
        "columns": [name for name, dropped in attributes if not dropped],
        "has_dropped_columns": any(dropped for _, dropped in attributes),
        "indexes": indexes,
        "constraints": constraints,
    }


@pytest.mark.integration
def test_a_first_load_adopts_staging_as_core_and_later_loads_upsert(database_url, tmp_path):
    # a first load makes staging's table core's (no second write of every row): core must
    # come out as its DDL makes it (logged, same columns, key and indexes), staging empty and
    # unlogged again, and the next batch must upsert into the adopted table as into any other
    with connect(database_url) as conn:
        ingest.ensure_schema(conn)
    made = {name: table_shape(database_url, f"core.{name}") for name in GOOD_COUNTS}
    ingest_directory(database_url, write_files(tmp_path / "first"))
    assert core_counts(database_url) == GOOD_COUNTS
    for name in GOOD_COUNTS:
        adopted = table_shape(database_url, f"core.{name}")
        assert adopted["has_dropped_columns"], name  # staging's provenance columns
        assert {**adopted, "has_dropped_columns": False} == made[name], name
        staging = table_shape(database_url, f"staging.{name}")
        assert not staging["logged"] and staging["columns"][-2:] == ["_file", "_row_number"]
    with connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from staging.events")
        assert cur.fetchone()[0] == 0
        cur.execute("select session_id, purchase_amount::text from core.sessions order by 1")
        assert cur.fetchall() == [
            ("S1", "25.50"),
            ("S2", "0.00"),
            ("S3", "12.00"),
            ("S4", "0.00"),
            ("S5", "99.99"),
        ]

    later = write_files(tmp_path / "later")
    (later / "sessions.csv").write_text(
        SESSIONS_HEADER + "S1,C1,2024-02-01 10:00:00,P1,120,true,30\nS6,C3,2024-02-07,P2,5,no,\n"
    )
    ingest_directory(database_url, later)
    with connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("select session_id, purchase_amount::text from core.sessions order by 1")
        assert cur.fetchall() == [
            ("S1", "30.00"),
            ("S2", "0.00"),
            ("S3", "12.00"),
            ("S4", "0.00"),
            ("S5", "99.99"),
            ("S6", "0.00"),
        ]
    assert not table_shape(database_url, "staging.sessions")["logged"]  # core held rows


@pytest.mark.integration
@pytest.mark.parametrize(
    ("reference", "still_there"),
    [
        # (a view on the table, a grant to public, the column's comment)
        ("create view public.event_types as select event_type from core.events", (1, False, None)),
        ("grant select on core.events to public", (0, True, None)),
        (
            "comment on column core.events.price is 'the price at the event'",
            (0, False, "the price at the event"),
        ),
    ],
    ids=["view", "grant", "comment"],
)
def test_a_first_load_inserts_when_something_refers_to_the_empty_core_table(
    database_url, tmp_path, reference, still_there
):
    # a view, grant or comment on core's table would be lost with the table: then the rows
    # are inserted into it, and what refers to it stays
    with connect(database_url) as conn, conn.cursor() as cur:
        ingest.ensure_schema(conn)
        cur.execute(reference)
    ingest_directory(database_url, write_files(tmp_path / "in"))
    assert core_counts(database_url) == GOOD_COUNTS
    assert not table_shape(database_url, "core.events")["has_dropped_columns"]
    assert table_shape(database_url, "core.sessions")["has_dropped_columns"]  # adopted
    with connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "select (select count(*) from pg_views where viewname = 'event_types'), "
            "has_table_privilege('public', 'core.events', 'select'), "
            "col_description('core.events'::regclass, 7)"
        )
        assert cur.fetchone() == still_there
