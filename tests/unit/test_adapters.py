"""`ecom convert` on small exports written here, with every expected figure worked out by hand:
orders split across chunks and shuffled still become one session each, every skipped row is
counted under its reason, and bad input stops with file, row, column and rule."""

from __future__ import annotations

import csv
import gzip
import json
import random
from pathlib import Path

import pytest

from ecom_insights import cli
from ecom_insights.adapters import ConvertError, convert

# Order 1001 has lines at rows 1, 3 and 9: read 100 bytes (one to three lines) at a time, they
# fall in three chunks.
ORDER_LINES = """\
Invoice,SKU,Name,Qty,When,Price,Customer,Country
1001,A,Apple mug,2,2024-01-05 10:00:00,3.50,7.0,UK
2001,B,Bowl,1,2024-02-01 09:00:00,10.00,8,France
1001,B,Bowl,1,2024-01-05 10:00:00,10.00,7.0,UK
C1001,A,Apple mug,-1,2024-01-06 10:00:00,3.50,7,UK
1002,POST,Postage,1,2024-01-20 12:00:00,5.00,7,UK
1002,A,Apple mug v2,3,2024-01-20 12:00:00,4.00,7,Germany
1002,A,Apple mug v2,1,2024-01-20 12:01:00,4.00,7,Germany
3001,B,Bowl,1,2024-03-01 08:00:00,10.00,,UK
1001,C,Cup,4,2024-01-05 10:00:00,1.25,7,UK
9001,A,Apple mug,-2,2024-03-02 08:00:00,3.50,9,UK
"""

MAPPING = {
    "customer": "Customer",
    "order": "Invoice",
    "timestamp": "When",
    "product": "SKU",
    "quantity": "Qty",
    "unit_price": "Price",
    "product_name": "Name",
    "country": "Country",
    "cancelled_order_prefix": "C",
    "non_product_codes": ["POST"],
}


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def by(key: str, path: Path) -> dict[str, dict[str, str]]:
    return {row[key]: row for row in rows(path)}


@pytest.fixture
def orders_csv(tmp_path) -> Path:
    path = tmp_path / "orders.csv"
    path.write_text(ORDER_LINES)
    return path


def test_order_lines_become_customers_sessions_products_and_events(orders_csv, tmp_path):
    out = tmp_path / "out"
    summary = convert("transactions", [orders_csv], out, options=MAPPING, chunk_bytes=100)

    sessions = by("session_id", out / "sessions.csv")
    assert set(sessions) == {"1001", "1002", "2001"}
    # 2 x 3.50 + 10.00 + 4 x 1.25, although its lines came in three chunks
    assert sessions["1001"] == {
        "session_id": "1001",
        "customer_id": "7",
        "session_date": "2024-01-05 10:00:00",
        "product_viewed": "B",  # the largest line
        "browsing_time_sec": "",
        "purchase_made": "true",
        "purchase_amount": "22.00",
    }
    assert sessions["1002"]["purchase_amount"] == "16.00"  # postage left out
    assert sessions["2001"]["customer_id"] == "8"

    customers = by("customer_id", out / "customers.csv")
    assert set(customers) == {"7", "8"}  # '7.0' is customer 7; 9 has no kept line
    assert customers["7"]["signup_date"] == "2024-01-05"  # first kept order, not the return
    assert customers["7"]["location"] == "Germany"  # country of the latest order
    assert customers["8"] == {
        "customer_id": "8",
        "age": "",
        "gender": "",
        "location": "France",
        "signup_date": "2024-02-01",
    }

    products = by("product_id", out / "products.csv")
    assert set(products) == {"A", "B", "C"}
    assert products["A"]["product_name"] == "Apple mug v2"  # the latest name
    assert products["A"]["price"] == "4.00"
    assert products["C"]["price"] == "1.25"

    events = by("event_id", out / "events.csv")
    assert set(events) == {"1001-A", "1001-B", "1001-C", "1002-A", "2001-B"}
    # the two lines of A in order 1002 are one purchase event, at its first line's time
    assert events["1002-A"] == {
        "event_id": "1002-A",
        "session_id": "1002",
        "customer_id": "7",
        "event_time": "2024-01-20 12:00:00",
        "event_type": "purchase",
        "product_id": "A",
        "price": "4.00",
    }

    assert summary.rows_read == 10
    assert summary.rows_kept == 6
    assert dict(summary.skipped) == {
        "no customer id": 1,
        "cancelled order (order id starts with 'C')": 1,
        "not a product (a fee, postage or adjustment code)": 1,
        "quantity zero or negative (a return or adjustment)": 1,
    }
    assert summary.figures["customers"] == 2
    assert summary.figures["customers with no kept line"] == 1
    assert summary.figures["orders"] == 3
    assert summary.figures["revenue"] == 48.00
    assert summary.figures["cancelled value (with id)"] == 3.50
    assert summary.written == {
        "customers.csv": 2,
        "sessions.csv": 3,
        "products.csv": 3,
        "events.csv": 5,
    }
    assert json.loads((out / "convert_summary.json").read_text())["rows_skipped"] == dict(
        summary.skipped
    )
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no scratch left behind


def test_the_output_does_not_depend_on_row_order_or_chunk_size(orders_csv, tmp_path):
    header, *lines = ORDER_LINES.splitlines(keepends=True)
    random.Random(3).shuffle(lines)
    shuffled = tmp_path / "shuffled.csv.gz"
    with gzip.open(shuffled, "wt") as handle:
        handle.write(header + "".join(lines))

    convert("transactions", [orders_csv], tmp_path / "a", options=MAPPING, chunk_bytes=1 << 20)
    convert("transactions", [shuffled], tmp_path / "b", options=MAPPING, chunk_bytes=120)
    for name in ("customers.csv", "sessions.csv", "products.csv", "events.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_an_order_split_over_two_files_is_one_session(tmp_path):
    header, *lines = ORDER_LINES.splitlines(keepends=True)
    first, second = tmp_path / "part1.csv", tmp_path / "part2.csv"
    first.write_text(header + "".join(lines[:5]))
    second.write_text(header + "".join(lines[5:]))
    convert("transactions", [first, second], tmp_path / "out", options=MAPPING)
    assert by("session_id", tmp_path / "out" / "sessions.csv")["1001"]["purchase_amount"] == (
        "22.00"
    )


def test_a_yaml_mapping_gives_the_same_files_as_options(orders_csv, tmp_path):
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        """
columns:
  customer: Customer
  order: Invoice
  timestamp: When
  product: SKU
  quantity: Qty
  unit_price: Price
  product_name: Name
  country: Country
cancelled_order_prefix: C
non_product_codes: [POST]
"""
    )
    convert("transactions", [orders_csv], tmp_path / "yaml", mapping_file=mapping)
    convert("transactions", [orders_csv], tmp_path / "options", options=MAPPING)
    for name in ("customers.csv", "sessions.csv", "products.csv", "events.csv"):
        assert (tmp_path / "yaml" / name).read_bytes() == (tmp_path / "options" / name).read_bytes()


def test_cdnow_lines_are_purchases_numbered_per_customer_and_day(tmp_path):
    log = tmp_path / "CDNOW_master.txt"
    log.write_text(
        " customer_id  date number_of_cds  dollar_value\r\n"
        " 00001 19970101  1   11.77\r\n"
        " 00002 19970112  1   12.00\r\n"
        " 00002 19970112  5   77.00\r\n"
        " 00002 19970301  2    0.00\r\n"
    )
    summary = convert("cdnow", [log], tmp_path / "out")

    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "convert_summary.json",
        "customers.csv",
        "sessions.csv",
    ]
    sessions = by("session_id", out / "sessions.csv")
    assert {
        k: (v["customer_id"], v["session_date"], v["purchase_amount"]) for k, v in sessions.items()
    } == {
        "00001-19970101-1": ("00001", "1997-01-01", "11.77"),
        "00002-19970112-1": ("00002", "1997-01-12", "12.00"),
        "00002-19970112-2": ("00002", "1997-01-12", "77.00"),
        "00002-19970301-1": ("00002", "1997-03-01", "0.00"),  # a free purchase is kept
    }
    assert by("customer_id", out / "customers.csv")["00002"]["signup_date"] == "1997-01-12"
    assert summary.figures["revenue"] == 100.77
    assert not summary.skipped


def test_a_file_without_header_is_read_with_the_names_the_mapping_gives(tmp_path):
    # the layout of CDNOW_sample.txt: master id, sample id, date, CDs, dollars; no header
    log = tmp_path / "CDNOW_sample.txt"
    log.write_text(" 00004 0001 19970101  2   29.33\n 00004 0001 19970118  2   29.73\n")
    mapping = tmp_path / "sample.yaml"
    mapping.write_text(
        """
columns: {customer: sample_id, timestamp: date, quantity: cds, line_amount: dollars}
timestamp_format: "%Y%m%d"
delimiter: whitespace
header: false
names: [master_id, sample_id, date, cds, dollars]
"""
    )
    convert("transactions", [log], tmp_path / "out", mapping_file=mapping)
    sessions = rows(tmp_path / "out" / "sessions.csv")
    assert [(s["session_id"], s["purchase_amount"]) for s in sessions] == [
        ("0001-19970101-1", "29.33"),
        ("0001-19970118-1", "29.73"),
    ]


CLICKS = """\
event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session
2019-10-01 10:00:00 UTC,view,100,7,electronics.phone,acme,50.00,1,s1
2019-10-01 10:00:30 UTC,view,200,8,,acme,20.00,1,s1
2019-10-01 10:01:00 UTC,cart,100,7,electronics.phone,acme,50.00,1,s1
2019-10-01 10:02:00 UTC,purchase,100,7,electronics.phone,acme,49.50,1,s1
2019-10-01 11:00:00 UTC,view,200,8,,acme,20.00,2,s2
2019-10-01 11:00:10 UTC,view,200,8,,acme,20.00,3,s2
2019-10-01 11:00:20 UTC,scroll,200,8,,acme,20.00,2,s2
2019-10-01 12:00:00 UTC,view,200,8,,acme,20.00,2,
"""


def test_clickstream_events_become_sessions_with_their_funnel(tmp_path):
    source = tmp_path / "2019-Oct.csv"
    source.write_text(CLICKS)
    summary = convert("clickstream", [source], tmp_path / "out", chunk_bytes=120)

    out = tmp_path / "out"
    sessions = by("session_id", out / "sessions.csv")
    assert sessions["s1"] == {
        "session_id": "s1",
        "customer_id": "1",
        "session_date": "2019-10-01 10:00:00",
        "product_viewed": "100",
        "browsing_time_sec": "120",
        "purchase_made": "true",
        "purchase_amount": "49.50",
        "pages_viewed": "2",
        "added_to_cart": "true",
    }
    # two users in one session: the session, and its events, go to the first one
    assert sessions["s2"]["customer_id"] == "2"
    assert sessions["s2"]["purchase_made"] == "false"
    assert sessions["s2"]["purchase_amount"] == "0.00"
    events = rows(out / "events.csv")
    assert [(e["event_id"], e["event_type"], e["product_id"]) for e in events] == [
        ("s1-1", "view", "100"),
        ("s1-2", "view", "200"),
        ("s1-3", "cart", "100"),
        ("s1-4", "purchase", "100"),
        ("s2-1", "view", "200"),
        ("s2-2", "view", "200"),
    ]
    assert {e["customer_id"] for e in events if e["session_id"] == "s2"} == {"2"}
    products = by("product_id", out / "products.csv")
    assert products["100"]["category"] == "electronics.phone"
    assert products["100"]["price"] == "49.50"  # the latest price seen
    assert products["200"]["category"] == "8"  # no category_code: the category_id
    assert set(by("customer_id", out / "customers.csv")) == {"1", "2"}
    assert dict(summary.skipped) == {
        "event_type not one of view, cart, remove_from_cart, purchase": 1,
        "no user_session": 1,
    }
    assert summary.figures["view events"] == 4
    assert summary.notes == [
        "1 sessions have events of more than one user_id; each session and its events went "
        "to the user of its first event"
    ]


# ---------------------------------------------------------------------------------------------
# bad input: an error naming file, row, column and rule, and nothing written


def convert_error(*args, **kwargs) -> str:
    with pytest.raises(ConvertError) as caught:
        convert(*args, **kwargs)
    return str(caught.value)


def test_a_mapped_column_missing_from_the_header_is_named(orders_csv, tmp_path):
    message = convert_error(
        "transactions", [orders_csv], tmp_path / "out", options={**MAPPING, "customer": "CustID"}
    )
    assert message == (
        "orders.csv: column 'CustID': mapped as the customer id, but not in the header "
        "(the columns are: Invoice, SKU, Name, Qty, When, Price, Customer, Country)"
    )
    assert not (tmp_path / "out").exists()


def test_an_unparseable_timestamp_names_its_row_across_chunks(tmp_path):
    lines = ORDER_LINES.splitlines()
    lines[5] = lines[5].replace("2024-01-20 12:00:00", "20/01/2024 12:00")
    source = tmp_path / "orders.csv"
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    message = convert_error("transactions", [source], out, options=MAPPING, chunk_bytes=100)
    assert (
        message
        == "orders.csv: row 5: column 'When': not a timestamp in ISO 8601: '20/01/2024 12:00'"
    )
    assert not out.exists()  # neither files nor scratch left, nor the directory it made

    # with the right format for that file, the same row reads
    message = convert_error(
        "transactions", [source], out, options={**MAPPING, "timestamp_format": "%d/%m/%Y %H:%M"}
    )
    assert message.startswith("orders.csv: row 1: column 'When': not a timestamp in format")


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("Qty", "two", "not a number: 'two'"),
        ("Price", "£3.50", "not a number: '£3.50'"),
        ("Price", "1,234.50", "not a number: '1,234.50'"),
        ("Price", "NaN", "not a number: 'NaN'"),
        ("Qty", "", "empty value"),
        ("When", "", "empty timestamp"),
        ("When", "2024-02-30 10:00:00", "not a timestamp in ISO 8601: '2024-02-30 10:00:00'"),
    ],
)
def test_an_unreadable_value_names_file_row_column_and_rule(tmp_path, column, value, rule):
    header, *lines = list(csv.reader(ORDER_LINES.splitlines()))
    lines[2][header.index(column)] = value
    source = tmp_path / "orders.csv"
    with source.open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *lines])
    message = convert_error("transactions", [source], tmp_path / "out", options=MAPPING)
    assert message == f"orders.csv: row 3: column {column!r}: {rule}"


def test_an_unreadable_file_is_named(tmp_path):
    ragged = tmp_path / "ragged.csv"
    ragged.write_text(ORDER_LINES.replace("1001,C,Cup,4", "1001,C,Cup,4,extra", 1))
    message = convert_error("transactions", [ragged], tmp_path / "a", options=MAPPING)
    assert message == "ragged.csv: row 9: unreadable CSV: 9 fields where the header has 8"

    short = tmp_path / "short.csv"
    short.write_text(ORDER_LINES.replace(",UK\n", "\n", 3))
    message = convert_error("transactions", [short], tmp_path / "a2", options=MAPPING)
    assert message == "short.csv: row 1: unreadable CSV: 7 fields where the header has 8"

    fake_gzip = tmp_path / "orders.csv.gz"
    fake_gzip.write_text(ORDER_LINES)
    message = convert_error("transactions", [fake_gzip], tmp_path / "b", options=MAPPING)
    assert message.startswith("orders.csv.gz: unreadable file (")

    message = convert_error(
        "transactions", [tmp_path / "nope.csv"], tmp_path / "c", options=MAPPING
    )
    assert message == "nope.csv: no such file"

    latin = tmp_path / "latin.csv"
    latin.write_bytes(ORDER_LINES.replace("Apple mug v2", "Caf\u00e9 mug").encode("latin-1"))
    message = convert_error("transactions", [latin], tmp_path / "e", options=MAPPING)
    assert message == "latin.csv: unreadable file: not utf-8 text"
    convert("transactions", [latin], tmp_path / "f", options={**MAPPING, "encoding": "latin-1"})
    assert by("product_id", tmp_path / "f" / "products.csv")["A"]["product_name"] == "Caf\u00e9 mug"

    empty = tmp_path / "empty.csv"
    empty.write_text("")
    message = convert_error("transactions", [empty], tmp_path / "d", options=MAPPING)
    assert message == "empty.csv: empty file: no header row"


def test_a_wrong_mapping_is_refused_before_reading(orders_csv, tmp_path):
    both = {**MAPPING, "line_amount": "Price"}
    assert convert_error("transactions", [orders_csv], tmp_path / "o", options=both) == (
        "options: map exactly one of unit_price and line_amount"
    )
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("columns:\n  client: Customer\n")
    assert convert_error("transactions", [orders_csv], tmp_path / "o", mapping_file=mapping) == (
        "mapping.yaml: unknown column role 'client' (known: customer, order, timestamp, "
        "product, quantity, unit_price, line_amount, product_name, category, country, "
        "signup_date)"
    )
    mapping.write_text("columns: {customer: Customer}\n")
    assert convert_error("transactions", [orders_csv], tmp_path / "o", mapping_file=mapping) == (
        "mapping.yaml: no column mapped as the order time"
    )
    source = tmp_path / "clicks.csv"
    source.write_text(CLICKS.replace("user_session", "session"))
    assert convert_error("clickstream", [source], tmp_path / "o") == (
        "clicks.csv: column 'user_session': mapped as the user_session, but not in the header "
        "(the columns are: event_time, event_type, product_id, category_id, category_code, "
        "brand, price, user_id, session)"
    )


def test_files_already_in_the_output_directory_are_replaced_only_when_forced(orders_csv, tmp_path):
    out = tmp_path / "out"
    convert("transactions", [orders_csv], out, options=MAPPING)
    log = tmp_path / "cdnow.txt"
    log.write_text("customer_id date number_of_cds dollar_value\n1 19970101 1 11.77\n")
    message = convert_error("cdnow", [log], out)
    assert message == (
        "out: already holds input files (convert_summary.json, customers.csv, events.csv, "
        "products.csv, sessions.csv): choose an empty directory, or pass --force to replace them"
    )
    convert("cdnow", [log], out, force=True)
    # no events or products of the earlier export are left to be loaded with the new one
    assert sorted(p.name for p in out.iterdir()) == [
        "convert_summary.json",
        "customers.csv",
        "sessions.csv",
    ]


def test_the_command_prints_the_summary_or_the_error(orders_csv, tmp_path, capsys):
    options = [
        "--customer", "Customer", "--order", "Invoice", "--timestamp", "When",
        "--product", "SKU", "--quantity", "Qty", "--unit-price", "Price",
        "--cancelled-prefix", "C", "--non-product", "POST",
    ]  # fmt: skip
    out = tmp_path / "out"
    assert cli.main(["convert", "transactions", str(orders_csv), "--out", str(out), *options]) == 0
    printed = capsys.readouterr().out
    assert "rows read                10" in printed
    assert "1  cancelled order (order id starts with 'C')" in printed
    assert f"next: ecom run --data {out}" in printed

    code = cli.main(["convert", "transactions", str(orders_csv), "--out", str(out), *options])
    assert code == 1
    error = capsys.readouterr().err
    assert error.startswith("ecom: out: already holds input files")
    assert "Traceback" not in error
