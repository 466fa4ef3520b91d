"""Land's screening pass: which rows may skip the row rules and go straight to staging.

The pass may send a good row to the rules in SQL (they then load it), never a bad row to
staging: every row that breaks a rule must come out "not good" here, whatever rule it breaks.
"""

import pyarrow as pa
import pytest

from ecom_insights.contract import SOURCES_BY_NAME
from ecom_insights.ingest import screen_rows

GOOD_SESSION = {
    "session_id": "S1",
    "customer_id": "C1",
    "session_date": "2024-02-01 10:00:00",
    "product_viewed": "P1",
    "browsing_time_sec": "120.5",
    "purchase_made": "TRUE",
    "purchase_amount": "25.50",
    "pages_viewed": "7",
    "added_to_cart": "no",
    "discount_amount": "0",
    "device": "mobile",
    "campaign_id": None,
}


def screen(source_name: str, rows: list[dict]) -> tuple[list[bool], set[str]]:
    source = SOURCES_BY_NAME[source_name]
    values = {
        c.name: pa.array([row.get(c.name) for row in rows], pa.string()) for c in source.columns
    }
    good, parsed = screen_rows(source, values)
    return good.to_pylist(), parsed


def session(**changes) -> dict:
    return {**GOOD_SESSION, **changes}


def test_canonical_rows_that_break_no_rule_are_good():
    rows = [
        session(),
        session(session_date="2024-02-28", purchase_made="false", purchase_amount=None),
        session(session_date="2024-02-01T08:15:00.123456", purchase_made="0", purchase_amount="0"),
        session(browsing_time_sec=None, pages_viewed=None, discount_amount=None, device=None),
    ]
    assert screen("sessions", rows)[0] == [True, True, True, True]


@pytest.mark.parametrize(
    "changes",
    [
        # the rules' cases of the integration corpus
        {"customer_id": None},
        {"session_id": None},
        {"purchase_amount": "-5"},
        {"session_date": "2024-13-45"},
        {"session_date": "now"},
        {"purchase_made": "false", "purchase_amount": "12.00"},
        {"purchase_made": "true", "purchase_amount": None},
        {"purchase_made": "maybe"},
        {"purchase_amount": "NaN"},
        {"browsing_time_sec": "ten"},
        {"browsing_time_sec": "-3"},
        {"pages_viewed": "-1"},
        {"discount_amount": "-0.5"},
        # days that not every year has (29 February: the rules decide), or none
        {"session_date": "2023-02-29"},
        {"session_date": "2024-02-29 10:00:00"},
        {"session_date": "2024-04-31 10:00:00"},
        {"session_date": "2024-02-30"},
        {"session_date": "2024-06-31"},
        {"session_date": "2024-11-31 00:00:00"},
        # values PostgreSQL may accept, in a form the screening does not decide: left to SQL
        {"session_id": " S1"},
        {"device": "mobile "},
        {"product_viewed": ""},
        {"browsing_time_sec": "1e3"},
        {"purchase_amount": "25.555"},
        {"purchase_amount": "+25"},
        {"pages_viewed": "1234567890"},
        {"pages_viewed": "7.0"},
        {"session_date": "02/01/2024"},
        {"session_date": "2024-02-01 24:00:00"},
        {"purchase_made": " true"},
        {"added_to_cart": "on"},
    ],
)
def test_a_row_in_any_other_form_goes_to_the_rules(changes):
    assert screen("sessions", [session(**changes)])[0] == [False]


def test_the_other_sources_rules_keep_rows_from_staging():
    customer = {"customer_id": "C1", "age": "40", "signup_date": "2024-01-01"}
    assert screen("customers", [customer, {**customer, "age": "120"}])[0] == [True, True]
    assert screen("customers", [{**customer, "age": "121"}])[0] == [False]
    assert screen("customers", [{**customer, "signup_date": None}])[0] == [False]
    event = {
        "event_id": "E1",
        "session_id": "S1",
        "customer_id": "C1",
        "event_time": "2024-02-01 10:00:05",
        "event_type": "view",
        "product_id": "P1",
        "price": "5.99",
    }
    assert screen("events", [event])[0] == [True]
    assert screen("events", [{**event, "event_type": "wishlist"}])[0] == [False]
    assert screen("events", [{**event, "event_type": "View"}])[0] == [False]
    assert screen("events", [{**event, "product_id": None}])[0] == [False]
    campaign = {"campaign_id": "K1", "start_date": "2024-03-01", "end_date": "2024-03-01"}
    assert screen("campaigns", [campaign])[0] == [True]
    assert screen("campaigns", [{**campaign, "end_date": "2024-02-29"}])[0] == [False]
    assert screen("products", [{"product_id": "P1", "price": "-1"}])[0] == [False]


def test_parsed_names_the_typed_columns_with_a_canonical_value():
    rows = [session(browsing_time_sec="long"), session(browsing_time_sec=None)]
    good, parsed = screen("sessions", rows)
    assert good == [False, True]
    assert "browsing_time_sec" not in parsed
    assert {"session_date", "purchase_made", "purchase_amount"} <= parsed
    assert not {"session_id", "device"} & parsed  # text columns always parse
