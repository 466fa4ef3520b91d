"""Analytics marts on small hand-made warehouses, where the right answer is known exactly."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from ecom_insights import ingest, warehouse
from ecom_insights.analytics import refresh

AS_OF = date(2024, 3, 31)


def _sessions(cur, product_id: str, views: int, purchases: int, first: int) -> int:
    """`views` sessions on product_id in March 2024, the first `purchases` of them bought."""
    cur.execute(
        """
        insert into core.sessions (session_id, customer_id, session_started_at, session_date,
            product_viewed, purchase_made, purchase_amount, added_to_cart)
        select 'S' || (%(first)s + n), 'C1', date '2024-03-01' + (n %% 31),
               date '2024-03-01' + (n %% 31), %(product)s, n < %(purchases)s,
               case when n < %(purchases)s then 10 else 0 end, n < %(purchases)s
        from generate_series(0, %(views)s - 1) as n
        """,
        {"first": first, "product": product_id, "views": views, "purchases": purchases},
    )
    return first + views


@pytest.mark.integration
def test_leakage_ranks_a_much_viewed_low_rate_product_above_one_with_three_views(database_url):
    with warehouse.connect(database_url) as conn:
        ingest.ensure_schema(conn)
        with conn.cursor() as cur:
            cur.execute(
                "insert into core.products values ('G1', 'Gadget', 'Gadgets', 99), "
                "('B1', 'Novel', 'Books', 9), ('B2', 'Atlas', 'Books', 19), "
                "('T1', 'Kite', 'Toys', 15)"
            )
            first = _sessions(cur, "G1", views=2000, purchases=40, first=0)  # 2%
            first = _sessions(cur, "B1", views=2000, purchases=200, first=first)  # 10%
            first = _sessions(cur, "B2", views=3, purchases=0, first=first)  # 0 of 3
            # named by its product name, as the contract allows
            _sessions(cur, "Kite", views=1000, purchases=100, first=first)  # 10%
        refresh.refresh_product_marts(conn, AS_OF)
        with conn.cursor() as cur:
            cur.execute(
                "select level, coalesce(product_id, category), leakage_score, funnel_source, "
                "views, purchases from marts.funnel_leakage order by level, leakage_rank"
            )
            rows = pd.DataFrame(
                cur.fetchall(),
                columns=["level", "entity", "score", "source", "views", "purchases"],
            )
    products = rows[rows.level == "product"]
    assert products.entity.tolist()[0] == "G1"
    assert products.set_index("entity").loc["B2", "score"] == 0  # 0 of 3 is no evidence
    assert products.set_index("entity").loc["T1", "views"] == 1000
    assert rows[rows.level == "category"].entity.tolist()[0] == "Gadgets"
    assert set(rows.source) == {"sessions"}  # no events: the sessions' own flags
