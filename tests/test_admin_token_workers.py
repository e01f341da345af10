"""Token revocation across processes: ``transom serve --workers 2`` as a real subprocess on the
test database (SQLite, or PostgreSQL when TRANSOM_TEST_DATABASE_URL is set). A SCIM token is
used through both workers, revoked through the admin API, and every following request, each on
a fresh connection so the kernel spreads them over both workers, is refused with 401."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from test_serve import free_port

REQUESTS = 24


def test_revoked_scim_token_is_refused_at_once_by_two_workers(tmp_path: Path, database_url: str) -> None:
    port = free_port()
    config = tmp_path / "transom.toml"
    config.write_text(f'[server]\nbase_url = "http://127.0.0.1:{port}"\nsession_secret = {{ env = "SS" }}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSOM_")}
    env.update({"SS": "w" * 40, "TRANSOM_DATABASE_URL": database_url})

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "transom.cli", "--config", str(config), *args],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    cli("db", "upgrade")
    cli("accounts", "create", "acme")
    scim = cli("tokens", "create", "--account", "acme", "--permission", "manage-users", "--name", "scim")
    scim_token, scim_id = scim.strip().splitlines()[-1], scim.split("(id ")[1].split(",")[0]
    admin = cli("tokens", "create", "--account", "acme", "--permission", "admin", "--name", "ops")
    admin_token = admin.strip().splitlines()[-1]

    proc = subprocess.Popen(
        [sys.executable, "-m", "transom.cli", "--config", str(config), "serve", "--port", str(port), "--workers", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")) if proc.stdout else None,
                              daemon=True)
    reader.start()
    try:
        # both workers up: each logs its start-up (a busy machine can take a while to import)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if sum("Application startup complete" in line for line in lines) >= 2:
                break
            time.sleep(0.2)
        assert sum("Application startup complete" in line for line in lines) >= 2, "".join(lines)

        def statuses(token: str) -> list[int]:
            # a new client per request: a new connection, accepted by whichever worker is free
            out = []
            for _ in range(REQUESTS):
                with httpx.Client(timeout=10) as fresh:
                    out.append(fresh.get(f"{base}/api/scim/v2/Users",
                                         headers={"authorization": f"Bearer {token}"}).status_code)
            return out

        assert statuses(scim_token) == [200] * REQUESTS
        revoked = httpx.delete(f"{base}/api/admin/tokens/{scim_id}",
                               headers={"authorization": f"Bearer {admin_token}"}, timeout=10)
        assert revoked.status_code == 204
        assert statuses(scim_token) == [401] * REQUESTS
        listed = httpx.get(f"{base}/api/admin/tokens", headers={"authorization": f"Bearer {admin_token}"}, timeout=10)
        assert [t["name"] for t in listed.json()] == ["ops"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    reader.join(timeout=10)
    log = "".join(lines)
    # two worker processes served, and none was killed and replaced meanwhile
    assert len(set(re.findall(r"Started server process \[(\d+)\]", log))) == 2, log
    assert "died" not in log, log
