"""`transom serve` from a config file: migrations applied, /healthz answers over real HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_applies_migrations_and_answers_healthz(tmp_path: Path, database_url: str) -> None:
    port = free_port()
    config = tmp_path / "transom.toml"
    config.write_text(f'[server]\nbase_url = "http://127.0.0.1:{port}"\nsession_secret = {{ env = "SS" }}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSOM_")}
    env.update({"SS": "q" * 40, "TRANSOM_DATABASE_URL": database_url})
    proc = subprocess.Popen(
        [sys.executable, "-m", "transom.cli", "--config", str(config), "serve", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        body = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                body = response.json()
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert body == {"status": "ok", "database": "ok"}, proc.stdout.read() if proc.poll() is not None else body
        login = httpx.get(f"http://127.0.0.1:{port}/login", timeout=5)
        assert login.status_code == 200
        assert "<form" in login.text
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_serve_refuses_missing_session_secret(tmp_path: Path, database_url: str) -> None:
    config = tmp_path / "transom.toml"
    config.write_text("[server]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSOM_")}
    env["TRANSOM_DATABASE_URL"] = database_url
    result = subprocess.run([sys.executable, "-m", "transom.cli", "--config", str(config), "serve", "--port", "1"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "server.session_secret" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
