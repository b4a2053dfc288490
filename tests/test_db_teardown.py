"""The flush after a transactional test survives a deadlock with work going on in the background."""

import threading
import time

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.color import no_style
from django.db import connection
from django.test import TransactionTestCase

from tests import db_teardown

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the flush is a TRUNCATE that locks table by table on PostgreSQL only"
)


def truncated_tables():
    """The tables of the flush's TRUNCATE, in the order it locks them."""
    names = connection.introspection.django_table_names(only_existing=True, include_views=False)
    (statement,) = [sql for sql in connection.ops.sql_flush(no_style(), names) if sql.startswith("TRUNCATE")]
    listed = statement.removeprefix("TRUNCATE").split(";")[0]
    return [name.strip().strip('"') for name in listed.split(",")]


def flush_against_a_reversed_lock_order(flush):
    """Run `flush` while a second connection holds a write lock on the TRUNCATE's last table
    and, once the TRUNCATE has its first table and waits, asks for that first table."""
    tables = truncated_tables()
    holding, done = threading.Event(), threading.Event()

    def other_order():
        with psycopg.connect(**connection.get_connection_params()) as other:
            other.execute(f'LOCK TABLE "{tables[-1]}" IN ROW EXCLUSIVE MODE')
            holding.set()
            time.sleep(0.4)  # the flush locks the first table meanwhile and waits for the last
            try:
                other.execute(f'LOCK TABLE "{tables[0]}" IN ROW EXCLUSIVE MODE')
            finally:
                other.rollback()
                done.set()

    thread = threading.Thread(target=other_order)
    thread.start()
    assert holding.wait(10)
    try:
        flush()
    finally:
        thread.join(30)
    assert done.is_set()


def plain_flush():
    call_command("flush", verbosity=0, interactive=False, reset_sequences=False, inhibit_post_migrate=True)


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_without_a_retry_the_flush_is_the_deadlocks_victim():
    """The scenario is real: PostgreSQL aborts the TRUNCATE, which waited first."""
    with pytest.raises(Exception) as raised:
        flush_against_a_reversed_lock_order(plain_flush)
    assert db_teardown.is_deadlock(raised.value)


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_the_flush_after_a_transactional_test_goes_through_a_deadlock():
    class Flush(TransactionTestCase):
        def runTest(self):
            pass

    assert TransactionTestCase._fixture_teardown.retries_on_deadlock
    flush_against_a_reversed_lock_order(Flush()._fixture_teardown)


def test_only_a_deadlock_is_tried_again():
    calls = []

    def fails():
        calls.append(1)
        raise RuntimeError("the SQL was invalid")

    with pytest.raises(RuntimeError):
        db_teardown.retrying_on_deadlock(fails, pause=0)
    assert len(calls) == 1
