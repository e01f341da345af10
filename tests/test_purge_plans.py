"""The statements a login runs against the tables anyone can grow (pending login states, the
SAML replay cache) use an index, so their cost stays flat as the tables grow (issue 13).
Checked on the query plan, not on time: EXPLAIN QUERY PLAN on SQLite, EXPLAIN on PostgreSQL,
both after ANALYZE of tables holding a few thousand rows of two accounts."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Executable, func, insert, select
from sqlalchemy.engine import Connection

from transom.db import make_engine
from transom.loginstate import drop_browser_overflow_statement
from transom.models import Account, LoginState, SamlAssertionSeen
from transom.purges import expired_assertions, expired_login_states

NOW = datetime.now(UTC)
ROWS = 3000
ACCOUNTS = ("a" * 32, "b" * 32)
BINDING = hashlib.sha256(b"browser-7").hexdigest()


def seed(conn: Connection) -> None:
    conn.execute(insert(Account), [{"id": a, "name": f"acct-{a[0]}", "created_at": NOW} for a in ACCOUNTS])
    conn.execute(insert(LoginState), [
        {"key": uuid.uuid4().hex, "account_id": ACCOUNTS[i % 2], "connector_id": "acme-okta", "protocol": "oidc",
         "browser_binding": hashlib.sha256(f"browser-{i % 700}".encode()).hexdigest(), "created_at": NOW,
         "expires_at": NOW + timedelta(seconds=i % 600)} for i in range(ROWS)])
    conn.execute(insert(SamlAssertionSeen), [
        {"connector_id": f"saml-{i % 2}", "assertion_id": f"_{uuid.uuid4().hex}", "account_id": ACCOUNTS[i % 2],
         "expires_at": NOW + timedelta(seconds=i % 300)} for i in range(ROWS)])
    conn.exec_driver_sql("ANALYZE")


def plan(conn: Connection, statement: Executable) -> str:
    compiled = statement.compile(dialect=conn.dialect)
    params: Any = compiled.params
    if conn.dialect.name == "sqlite":
        positions = compiled.positiontup or []
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", tuple(params[k] for k in positions))
        return "\n".join(str(row[-1]) for row in rows)
    rows = conn.exec_driver_sql(f"EXPLAIN {compiled}", params)
    return "\n".join(str(row[0]) for row in rows)


#: statement, the index it must use, a column the index range must constrain besides the
#: scoping one (None: the statement counts the account's rows by design, from an index alone)
STATEMENTS: dict[str, tuple[Callable[[], Executable], str | None, str | None]] = {
    "login-state expiry sweep": (lambda: expired_login_states(ACCOUNTS[0], NOW),
                                 "ix_login_states_account_id_expires_at", "expires_at"),
    "replay-cache expiry sweep": (lambda: expired_assertions("saml-0", NOW),
                                  "ix_saml_assertions_seen_connector_id_expires_at", "expires_at"),
    "per-browser cap": (lambda: drop_browser_overflow_statement(ACCOUNTS[0], BINDING, keep=19),
                        "ix_login_states_account_id_browser_binding_expires_at", "browser_binding"),
    "per-account cap count": (
        lambda: select(func.count()).select_from(LoginState).where(LoginState.account_id == ACCOUNTS[0]),
        None, None),
}


def check(text: str, index: str | None, column: str | None, *, sqlite: bool) -> None:
    lines = text.splitlines()
    assert not any("Seq Scan" in line for line in lines), text
    # SQLite: "SCAN t" without an index is a full-table scan
    assert not any(line.startswith("SCAN ") and "INDEX" not in line for line in lines), text
    if index is None:
        assert "Index" in text or "INDEX" in text, text
        return
    assert index in text, text
    ranges = []
    for at, line in enumerate(lines):
        if index in line:
            if sqlite:  # the range follows the index name: "(account_id=? AND expires_at<?)"
                ranges.append(line.split(index, 1)[1])
            else:  # the next "Index Cond:" line
                ranges.append("".join([x for x in lines[at + 1:] if "Index Cond" in x][:1]))
    assert ranges and all(column in line for line in ranges), text


@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_statement_uses_an_index(database_url: str, name: str) -> None:
    build, index, column = STATEMENTS[name]
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            seed(conn)
            if conn.dialect.name == "postgresql" and index is None:
                # counting half of a small table: the planner would rightly scan it; what is
                # checked is that an index can answer the count alone
                conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            text = plan(conn, build())
            sqlite = conn.dialect.name == "sqlite"
            conn.rollback()
    finally:
        engine.dispose()
    check(text, index, column, sqlite=sqlite)
