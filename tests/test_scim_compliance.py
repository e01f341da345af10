"""Third-party conformance (scim2-tester against a real uvicorn server) and real
concurrency: parallel creates of one userName race on the database's unique key."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import httpx
from scim2_client.client import BaseSyncSCIMClient
from scim2_tester import Status, check_server
from scim_support import SCIM, auth, make_tenants, new_user
from sqlalchemy import func, select

from transom.models import User
from transom.testing.server import free_port, serve_in_thread
from transom.web.app import create_app


class HttpxScimClient(BaseSyncSCIMClient):
    """scim2-client's engine contract over a plain ``httpx.Client`` (its own httpx engine
    needs the ``httpx2`` package)."""

    def __init__(self, client: httpx.Client, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client = client

    def _stays_under_base_url(self, endpoint: str) -> bool:
        url = self.client.build_request("GET", endpoint).url
        base = self.client.base_url
        return (url.host, url.port) == (base.host, base.port) and \
            (url.path.rstrip("/") + "/").startswith(base.path.rstrip("/") + "/")

    def _parse_json(self, response: Any) -> Any:
        return response.json()

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        return self.client.request(method, url, **kwargs)


def test_scim2_tester_passes_every_check(make_runtime: Any) -> None:
    tenants = make_tenants(make_runtime)
    with serve_in_thread(create_app(tenants.runtime), port=free_port()) as base, \
            httpx.Client(base_url=base + SCIM, headers={"Authorization": f"Bearer {tenants.token}"}) as http:
        results = check_server(HttpxScimClient(http))
    failures = [f"{r.status.name} {r.title}: {r.reason}" for r in results if r.status is not Status.SUCCESS]
    titles = {r.title for r in results}
    assert not failures, "\n".join(failures)
    # discovery, CRUD, PATCH and misc checks all ran (not skipped for lack of a feature)
    assert len(results) >= 100
    assert {"check_add_attribute", "check_replace_attribute", "check_remove_attribute", "random_url",
            "search_with_attributes"} <= titles


def test_twenty_parallel_creates_of_one_user_name(make_runtime: Any) -> None:
    tenants = make_tenants(make_runtime)
    statuses: list[int] = []
    bodies: list[dict[str, Any]] = []
    lock = threading.Lock()
    start = threading.Barrier(20)
    with serve_in_thread(create_app(tenants.runtime), port=free_port()) as base:

        def create(index: int) -> None:
            with httpx.Client(base_url=base, timeout=60) as http:
                start.wait()
                # the same user name in different letter cases: one key after casefolding
                name = "race@acme.example" if index % 2 else "RACE@acme.example"
                response = http.post(f"{SCIM}/Users", json=new_user(name), headers=auth(tenants.token))
            with lock:
                statuses.append(response.status_code)
                bodies.append(response.json())

        threads = [threading.Thread(target=create, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert Counter(statuses) == {201: 1, 409: 19}, Counter(statuses)
    conflicts = [b for b in bodies if b.get("status") == "409"]
    assert all(b["scimType"] == "uniqueness" for b in conflicts)
    with tenants.runtime.db.transaction() as db:
        assert db.scalar(select(func.count()).select_from(User).where(User.user_name_key == "race@acme.example")) == 1
