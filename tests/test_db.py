"""SQLite engine set-up: WAL checkpoints happen in the background, not inside commits."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import text

from transom.db import AUTO_CHECKPOINT_PAGES, Database
from transom.migrate import upgrade


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
