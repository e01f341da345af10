"""The engine and its units: WAL checkpoints happen in the background, not inside commits; the
statement checks (read-only guard, text-policy backstop) on every execution path."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy import Table, event, insert, select, text
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

import transom.db as db_module
from transom.db import AUTO_CHECKPOINT_PAGES, Database, ReadOnlyViolation
from transom.migrate import upgrade
from transom.models import Account
from transom.textpolicy import UnsafeText


def test_background_checkpointer_empties_the_wal(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        upgrade(database.engine)
        for i in range(20):
            with database.transaction() as db:
                db.execute(text("INSERT INTO accounts (id, name, created_at) VALUES (:id, :name, CURRENT_TIMESTAMP)"),
                           {"id": f"a{i}", "name": f"acct{i}"})
        assert database.checkpointer is not None
        deadline = time.monotonic() + 10
        while database.checkpointer.completed == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert database.checkpointer.completed >= 1
        with database.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == AUTO_CHECKPOINT_PAGES
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        raw = database.engine.raw_connection()
        try:
            busy, log_frames, checkpointed = raw.driver_connection.execute(  # type: ignore[union-attr]
                "PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            raw.close()
        # Every frame written so far has been copied into the database file.
        assert busy == 0 and log_frames == checkpointed
    finally:
        database.dispose()


def test_rolled_back_transaction_leaves_nothing(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        upgrade(database.engine)
        try:
            with database.transaction() as db:
                db.execute(text("INSERT INTO accounts (id, name, created_at) VALUES ('x', 'x', CURRENT_TIMESTAMP)"))
                raise RuntimeError("refused half-way")
        except RuntimeError:
            pass
        with database.transaction() as db:
            assert db.execute(text("SELECT count(*) FROM accounts")).scalar() == 0
    finally:
        database.dispose()


# -- the statement checks, built into the engine's dialect (transom.db._Guarded) -------------


def _accounts(n: int, name: str = "acct") -> list[dict[str, object]]:
    return [{"id": f"{name}{i}", "name": f"{name}{i}", "created_at": datetime.now(UTC)} for i in range(n)]


def test_every_execution_path_meets_the_text_backstop(database_url: str) -> None:
    """Single statements, executemany, insertmanyvalues batches and plain driver SQL all go
    through the dialect's checks: a NUL or a lone surrogate never reaches the driver."""
    database = Database(database_url)
    table = cast(Table, Account.__table__)
    try:
        for bad in ("nul\x00", "lone\ud800"):
            attempts = [
                lambda db: db.execute(insert(table), _accounts(1, bad)),
                lambda db: db.execute(insert(table), _accounts(3, bad)),
                lambda db: db.execute(insert(table).returning(table.c.id), _accounts(3, bad)),
                lambda db: db.execute(text("SELECT 1 FROM accounts WHERE name = :n"), {"n": bad}),
                lambda db: db.connection().exec_driver_sql(
                    "SELECT 1 FROM accounts WHERE name = " + ("?" if database_url.startswith("sqlite") else "%s"),
                    (bad,)),
            ]
            for attempt in attempts:
                with pytest.raises(UnsafeText), database.transaction() as db:
                    attempt(db)
        with database.transaction() as db:
            assert db.scalar(text("SELECT count(*) FROM accounts")) == 0
            db.execute(insert(table), _accounts(3))  # and good values pass
    finally:
        database.dispose()


def test_read_only_guard_sees_statements_without_parameters(database_url: str) -> None:
    database = Database(database_url)
    try:
        with pytest.raises(ReadOnlyViolation), database.read() as conn:
            conn.exec_driver_sql("DELETE FROM accounts")
        with pytest.raises(ReadOnlyViolation), database.read() as conn:
            conn.execute(text("UPDATE accounts SET name = :n"), {"n": "x"})
        with database.read() as conn:  # the connection goes back to the pool unmarked
            assert conn.scalar(text("SELECT count(*) FROM accounts")) == 0
        with database.transaction() as db:
            db.execute(insert(cast(Table, Account.__table__)), _accounts(1))
    finally:
        database.dispose()


def test_the_guarded_dialect_keeps_the_statement_cache(database_url: str) -> None:
    """SQLAlchemy caches compiled statements only for a dialect class that says it may; the
    engine's dialect subclass must say so itself (a missing flag costs a compile per statement)."""
    database = Database(database_url)
    statement = select(Account.id).where(Account.name == "x")
    try:
        with database.read() as conn:
            conn.execute(statement).all()
            stats = conn.execute(statement).context._get_cache_stats()
        assert stats.startswith("cached"), stats
    finally:
        database.dispose()


def test_another_driver_gets_the_same_checks_as_engine_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dialect Transom has no subclass for keeps the guard, the backstop and SQLite's
    BEGIN IMMEDIATE, as engine event listeners."""
    monkeypatch.setattr(db_module, "_GUARDED_DIALECTS", {})
    database = Database(f"sqlite:///{tmp_path / 'o.db'}")
    ran: list[str] = []
    try:
        assert type(database.engine.dialect) is SQLiteDialect_pysqlite
        upgrade(database.engine)
        with pytest.raises(UnsafeText), database.transaction() as db:
            db.execute(insert(cast(Table, Account.__table__)), _accounts(1, "nul\x00"))
        with pytest.raises(ReadOnlyViolation), database.read() as conn:
            conn.exec_driver_sql("DELETE FROM accounts")
        event.listen(database.engine, "before_cursor_execute", lambda *args: ran.append(args[2]))
        with database.transaction() as db:
            db.execute(text("SELECT 1"))
        with database.read() as conn:
            conn.execute(text("SELECT 1"))
        assert [s for s in ran if s.startswith("BEGIN")] == ["BEGIN IMMEDIATE", "BEGIN"]
    finally:
        database.dispose()
