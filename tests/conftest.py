"""Shared fixtures of Transom's own suite, on top of the plugin kit (``transom.testing``,
loaded as a pytest plugin): a migrated database per test (SQLite by default, PostgreSQL when
``TRANSOM_TEST_DATABASE_URL`` is set) and a builder for the real app around it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from transom.runtime import Runtime
from transom.testing.database import postgres_server_url
from transom.testing.host import BASE_URL, SESSION_SECRET, build_runtime, client_for, server_table

if TYPE_CHECKING:
    from starlette.testclient import TestClient

__all__ = ["BASE_URL", "SESSION_SECRET", "RuntimeFactory", "client_for", "server_table"]

PG_URL = postgres_server_url()


@pytest.fixture
def database_url(transom_database_url: str) -> str:
    """A migrated, empty database for one test (the kit's)."""
    return transom_database_url


@pytest.fixture
def is_postgres() -> bool:
    return bool(PG_URL)


RuntimeFactory = Callable[..., Runtime]


@pytest.fixture
def make_runtime(database_url: str) -> Iterator[RuntimeFactory]:
    """Build a Runtime from ``connectors`` (list of [[connectors]] tables) on the test
    database. Extra keyword arguments go to :meth:`Runtime.build`."""
    built: list[Runtime] = []

    def factory(connectors: list[dict[str, Any]] | None = None, server: dict[str, Any] | None = None,
                **kwargs: Any) -> Runtime:
        runtime = build_runtime(database_url, connectors or [], server=server, **kwargs)
        built.append(runtime)
        return runtime

    yield factory
    for runtime in built:
        runtime.close()


@pytest.fixture
def runtime(make_runtime: RuntimeFactory) -> Runtime:
    return make_runtime()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with client_for(runtime) as c:
        yield c
