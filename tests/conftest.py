"""Shared fixtures: a migrated database per test (SQLite by default, PostgreSQL when
``TRANSOM_TEST_DATABASE_URL`` is set), and a builder for the real app around it."""

from __future__ import annotations

import os
import secrets
import shutil
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

with warnings.catch_warnings():
    # Starlette deprecates its httpx-based client in favour of a package not yet needed here.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from transom.config import parse_config
from transom.db import make_engine
from transom.migrate import upgrade
from transom.models import Base
from transom.runtime import Runtime
from transom.web.app import create_app

PG_URL = os.environ.get("TRANSOM_TEST_DATABASE_URL")
SESSION_SECRET = secrets.token_urlsafe(32)
BASE_URL = "http://testserver"


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def _pg_database() -> Iterator[str]:
    assert PG_URL is not None
    name = f"transom_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database for one test."""
    if PG_URL:
        url: str = request.getfixturevalue("_pg_database")
        yield url
        engine = create_engine(url)
        with engine.begin() as conn:
            tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {tables} CASCADE"))
        engine.dispose()
    else:
        template: Path = request.getfixturevalue("_sqlite_template")
        path = tmp_path / "transom.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"


@pytest.fixture
def is_postgres() -> bool:
    return bool(PG_URL)


def server_table(database_url: str, **extra: Any) -> dict[str, Any]:
    return {"base_url": BASE_URL, "database_url": database_url, "session_secret": SESSION_SECRET, **extra}


RuntimeFactory = Callable[..., Runtime]


@pytest.fixture
def make_runtime(database_url: str) -> Iterator[RuntimeFactory]:
    """Build a Runtime from ``connectors`` (list of [[connectors]] tables) on the test
    database. Extra keyword arguments go to :meth:`Runtime.build`."""
    built: list[Runtime] = []

    def factory(connectors: list[dict[str, Any]] | None = None, server: dict[str, Any] | None = None,
                **kwargs: Any) -> Runtime:
        raw = {"server": server_table(database_url, **(server or {})), "connectors": connectors or []}
        runtime = Runtime.build(parse_config(raw), **kwargs)
        built.append(runtime)
        return runtime

    yield factory
    for runtime in built:
        runtime.close()


@pytest.fixture
def runtime(make_runtime: RuntimeFactory) -> Runtime:
    return make_runtime()


def client_for(runtime: Runtime) -> TestClient:
    return TestClient(create_app(runtime), base_url=BASE_URL, raise_server_exceptions=False,
                      follow_redirects=False)


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with client_for(runtime) as c:
        yield c
