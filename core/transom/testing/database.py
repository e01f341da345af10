"""Real, migrated, throwaway databases for tests: a SQLite file copied from a migrated
template (one migration run per test session, a fresh file per test), or a PostgreSQL
database created for the session and emptied after each test.

``TRANSOM_TEST_DATABASE_URL`` (a PostgreSQL server URL) switches the kit's fixtures to
PostgreSQL, so a plugin's tests run on both databases exactly as Transom's own do.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from transom.db import make_engine
from transom.migrate import upgrade
from transom.models import Base

#: set to a PostgreSQL URL to run the kit's databases on PostgreSQL instead of SQLite
DATABASE_URL_ENV = "TRANSOM_TEST_DATABASE_URL"


def postgres_server_url() -> str | None:
    return os.environ.get(DATABASE_URL_ENV) or None


def migrated_sqlite_template(directory: Path) -> Path:
    """A SQLite file at the head revision, to copy per test (migrating once is the slow part)."""
    path = directory / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return path


def sqlite_copy(template: Path, directory: Path) -> str:
    """A fresh database for one test: a copy of the migrated template."""
    path = directory / "transom.db"
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


@contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """A new, migrated PostgreSQL database on ``server_url`` (dropped afterwards), so parallel
    test sessions never share one."""
    name = f"transom_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def truncate_all(url: str) -> None:
    """Empty every table of a PostgreSQL test database (one statement, CASCADE)."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {tables} CASCADE"))
    finally:
        engine.dispose()
