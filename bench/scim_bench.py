"""SCIM throughput through HTTP: ``POST /Users`` creates and filtered ``GET /Users`` lookups
against a real ``uvicorn`` server (one worker, pinned to one core with ``taskset`` when
available) on SQLite, reported next to ``GET /healthz`` measured in the same run.

The load generator runs in this process (threads with keep-alive ``httpx`` clients, pinned
to the other cores), so the numbers include real HTTP parsing on both sides.

    python bench/scim_bench.py
    python bench/scim_bench.py --requests 4000 --clients 8
    python bench/scim_bench.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench
    python bench/scim_bench.py --api-rate-limit 0      # without the per-token rate limit

The per-token rate limit (docs/security.md) stays on, set high enough never to refuse, so
the numbers include its cost (one upsert transaction per request); ``--api-rate-limit 0``
measures without it.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from transom import directory
from transom.db import Database
from transom.migrate import upgrade

SCIM = "/api/scim/v2"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def prepare(database_url: str) -> str:
    db = Database(database_url)
    upgrade(db.engine)
    with db.transaction() as session:
        account = directory.create_account(session, name=f"bench-{secrets.token_hex(3)}")
        token = directory.create_token(session, account=account, permissions=["manage-users"], name="bench")
    db.dispose()
    return token


def start_server(workdir: Path, database_url: str, port: int, api_rate_limit: int) -> subprocess.Popen[bytes]:
    config = workdir / "transom.toml"
    config.write_text(
        "[server]\n"
        f'base_url = "http://127.0.0.1:{port}"\n'
        f'database_url = "{database_url}"\n'
        'session_secret = { env = "TRANSOM_SESSION_SECRET" }\n'
        'log_level = "WARNING"\n'
        f"api_rate_limit = {api_rate_limit}\n"
    )
    env = {**os.environ, "TRANSOM_CONFIG": str(config), "TRANSOM_SESSION_SECRET": secrets.token_urlsafe(32)}
    command = [sys.executable, "-m", "uvicorn", "transom.web.asgi:create", "--factory", "--workers", "1",
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        command = ["taskset", "-c", "0", *command]
        os.sched_setaffinity(0, set(range(1, os.cpu_count() or 2)))
    process = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.terminate()
    raise RuntimeError("the server did not start")


def run(name: str, base: str, clients: int, total: int, request: Callable[[httpx.Client, int], int],
        expect: int) -> float:
    latencies: list[float] = []
    errors: list[int] = []
    lock = threading.Lock()
    counter = iter(range(total))
    barrier = threading.Barrier(clients + 1)

    def worker() -> None:
        mine: list[float] = []
        with httpx.Client(base_url=base, timeout=60) as http:
            barrier.wait()
            while True:
                with lock:
                    index = next(counter, None)
                if index is None:
                    break
                started = time.perf_counter()
                status = request(http, index)
                mine.append(time.perf_counter() - started)
                if status != expect:
                    errors.append(status)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    rate = len(ordered) / elapsed
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    print(f"{name:<34} {rate:8.0f} req/s   median {statistics.median(ordered) * 1e3:6.2f} ms   "
          f"p95 {p95 * 1e3:6.2f} ms   errors {len(errors)}")
    if errors:
        print(f"  unexpected statuses: {sorted(set(errors))}")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--api-rate-limit", type=int, default=10**9, help="0 turns the per-token limit off")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="scim-bench-"))
    database_url = args.database_url or f"sqlite:///{workdir / 'bench.db'}"
    token = prepare(database_url)
    port = free_port()
    server = start_server(workdir, database_url, port, args.api_rate_limit)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    run_id = secrets.token_hex(4)
    print(f"server: uvicorn, 1 worker, {database_url.split(':', 1)[0]}; {args.requests} requests per "
          f"phase, {args.clients} client threads; api_rate_limit {args.api_rate_limit}")
    try:
        health = run("GET /healthz", base, args.clients, args.requests, lambda h, i: h.get("/healthz").status_code, 200)

        def create(http: httpx.Client, index: int) -> int:
            name = f"user{index}-{run_id}@acme.example"
            body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name,
                    "externalId": f"ext-{index}-{run_id}", "active": True,
                    "name": {"givenName": "Bench", "familyName": f"User {index}"},
                    "emails": [{"value": name, "type": "work", "primary": True}]}
            return http.post(f"{SCIM}/Users", json=body, headers=headers).status_code

        creates = run("POST /Users (create)", base, args.clients, args.requests, create, 201)

        def by_user_name(http: httpx.Client, _index: int) -> int:
            name = f"USER{random.randrange(args.requests)}-{run_id}@acme.example"
            return http.get(f"{SCIM}/Users", params={"filter": f'userName eq "{name}"'}, headers=headers).status_code

        lookups = run("GET /Users?filter=userName eq", base, args.clients, args.requests, by_user_name, 200)

        def by_email(http: httpx.Client, _index: int) -> int:
            name = f"user{random.randrange(args.requests)}-{run_id}@acme.example"
            flt = f'emails[type eq "work"].value eq "{name}"'
            return http.get(f"{SCIM}/Users", params={"filter": flt}, headers=headers).status_code

        email_lookups = run("GET /Users?filter=emails[...]", base, args.clients, args.requests, by_email, 200)
        print(f"relative to /healthz: creates {creates / health:.2f}, userName lookups {lookups / health:.2f}, "
              f"emails[type eq work] lookups {email_lookups / health:.2f}")
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
