"""warehouse.py on a real PostgreSQL: the sibling connection that the roll-forward's second
part runs on reaches the same database as the same user, its password carried over."""

from __future__ import annotations

import uuid

import psycopg2
import pytest

from ecom_insights import warehouse


@pytest.mark.integration
def test_a_sibling_connection_is_another_session_of_the_same_user_and_database(database_url):
    role, password = f"ecom_sibling_{uuid.uuid4().hex[:8]}", "s3cret-for-the-test"
    with warehouse.connect(database_url, autocommit=True) as admin, admin.cursor() as cur:
        cur.execute(f'create role "{role}" login password %s', (password,))
        cur.execute(f'grant create on schema public to "{role}"')
    parts = warehouse.url_parts(database_url)
    try:
        conn = psycopg2.connect(
            dbname=parts["database"],
            user=role,
            password=password,
            host=parts["host"],
            port=parts["port"],
        )
        try:
            with warehouse.sibling_connection(conn) as other:
                assert other.info.password == password
                with conn.cursor() as mine, other.cursor() as theirs:
                    query = "select current_database(), current_user, pg_backend_pid()"
                    mine.execute(query)
                    theirs.execute(query)
                    (database, user, pid), (other_database, other_user, other_pid) = (
                        mine.fetchone(),
                        theirs.fetchone(),
                    )
                assert (
                    (other_database, other_user)
                    == (database, user)
                    == (
                        parts["database"],
                        role,
                    )
                )
                assert other_pid != pid
                with other.cursor() as theirs:
                    theirs.execute("create table sibling_wrote (n integer)")
            # committed on leaving the block: the first connection sees the table
            with conn.cursor() as mine:
                mine.execute("select to_regclass('sibling_wrote') is not null")
                assert mine.fetchone()[0]
        finally:
            conn.close()
    finally:
        with warehouse.connect(database_url, autocommit=True) as admin, admin.cursor() as cur:
            cur.execute("drop table if exists sibling_wrote")
            cur.execute(f'drop owned by "{role}"')
            cur.execute(f'drop role "{role}"')
