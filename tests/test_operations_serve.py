"""A real `transom serve` subprocess: /metrics merged across two workers and parsed with
prometheus_client's parser, every log line JSON under log_format = "json", request ids, the
start-up summary, and SIGTERM draining a request in flight."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from ops_support import clean_env, write_config
from prometheus_client.parser import text_string_to_metric_families

from transom import directory
from transom.db import Database
from transom.testing.saml import FakeSamlIdp, SigningKey, encode, parse_authn_request
from transom.testing.server import free_port

PASSWORD = "correct horse battery"
SECRET_ENV = {"OPS_SECRET": "z" * 40}


@dataclass
class Served:
    proc: subprocess.Popen[str]
    base: str
    stderr: Path
    stdout: Path
    metrics_dir: Path

    def log_lines(self) -> list[str]:
        return [ln for ln in self.stderr.read_text().splitlines() if ln.strip()]


def prepare_db(database_url: str) -> None:
    db = Database(database_url)
    try:
        with db.transaction() as session:
            account = directory.create_account(session, name="acme")
            directory.create_user(session, account=account, user_name="ada@acme.example", email="ada@acme.example",
                                  password=PASSWORD)
    finally:
        db.dispose()


def start_serve(tmp_path: Path, database_url: str, *, workers: int, idp: FakeSamlIdp | None = None,
                server: dict[str, Any] | None = None) -> Served:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    connectors = []
    if idp is not None:
        connectors.append({"id": "acme-saml", "type": "generic_saml", "account": "acme",
                           "settings": idp.connector_settings(attributes={"email": "mail"})})
    config = write_config(tmp_path / "transom.toml", {
        "base_url": base, "session_secret": {"env": "OPS_SECRET"}, "log_format": "json", **(server or {})},
        connectors)
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"stale")  # a previous run's file: serve must remove it
    env = clean_env(TRANSOM_DATABASE_URL=database_url, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), **SECRET_ENV)
    stdout, stderr = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with stdout.open("w") as out, stderr.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "transom.cli", "serve", "--port", str(port), "--workers", str(workers),
             "--config", str(config)], env=env, stdout=out, stderr=err, text=True)
    served = Served(proc, base, stderr, stdout, metrics_dir)
    deadline = time.monotonic() + 240  # generous: the suite shares a loaded machine
    while True:
        assert proc.poll() is None, stderr.read_text()
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return served
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "serve did not answer /healthz"
        time.sleep(0.2)


def stop(served: Served) -> int:
    if served.proc.poll() is None:
        served.proc.send_signal(signal.SIGTERM)
    return served.proc.wait(timeout=60)


@pytest.fixture
def two_workers(tmp_path: Path, database_url: str) -> Iterator[tuple[Served, FakeSamlIdp]]:
    prepare_db(database_url)
    idp = FakeSamlIdp()
    served = start_serve(tmp_path, database_url, workers=2, idp=idp)
    try:
        yield served, idp
    finally:
        stop(served)


def password_login(base: str, password: str, request_id: str | None = None) -> httpx.Response:
    headers = {"accept": "application/json"}
    if request_id:
        headers["x-request-id"] = request_id
    # a fresh client per login: a new connection, so the two workers share the work
    with httpx.Client(base_url=base, timeout=30) as client:
        return client.post("/api/accounts/login", headers=headers,
                           data={"email": "ada@acme.example", "password": password, "account": "acme"})


def saml_login(base: str, idp: FakeSamlIdp, *, signing_key: SigningKey | None = None) -> httpx.Response:
    with httpx.Client(base_url=base, timeout=30) as client:
        started = client.get("/api/accounts/login/acme-saml")
        request = parse_authn_request(started.headers["location"])
        root = idp.signed_response(acs_url=request.acs_url or "", audience=request.issuer,
                                   in_response_to=request.id, name_id="ada-1",
                                   attributes={"mail": ["ada@acme.example"]}, signing_key=signing_key)
        return client.post("/api/accounts/saml/acme-saml/acs", data={"SAMLResponse": encode(root)},
                           headers={"accept": "application/json"})


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_from_two_workers_after_good_and_refused_logins(two_workers: tuple[Served, FakeSamlIdp]) -> None:
    served, idp = two_workers
    assert not (served.metrics_dir / "counter_1.db").exists()  # stale values of a previous run removed
    for _ in range(4):
        assert password_login(served.base, PASSWORD).status_code == 303
    for _ in range(5):
        assert password_login(served.base, "wrong password!").status_code == 400
    for _ in range(3):
        assert saml_login(served.base, idp).status_code == 303
    assert saml_login(served.base, idp, signing_key=SigningKey.generate("Intruder")).status_code == 400
    scim = httpx.get(f"{served.base}/api/scim/v2/Users", timeout=10)
    assert scim.status_code == 401

    # Every scrape, whichever worker answers it, reports the sum over both workers.
    scrapes = [httpx.get(f"{served.base}/metrics", timeout=10) for _ in range(6)]
    assert {s.status_code for s in scrapes} == {200}
    assert scrapes[0].headers["content-type"].startswith("text/plain")
    parsed = [samples(s.text) for s in scrapes]
    for found in parsed:
        assert value(found, "transom_logins_total", connector="password", protocol="password", outcome="success",
                     reason="ok") == 4
        assert value(found, "transom_logins_total", connector="password", protocol="password", outcome="refused",
                     reason="login_refused") == 5
        assert value(found, "transom_logins_total", connector="acme-saml", protocol="saml", outcome="success",
                     reason="ok") == 3
        # the refusal's reason code (transom.errors reason, docs/security.md) when it has one
        assert value(found, "transom_logins_total", connector="acme-saml", protocol="saml", outcome="refused",
                     reason="saml.library.invalid_signature") == 1
        assert value(found, "transom_login_duration_seconds_count", protocol="password", outcome="refused") == 5
        assert value(found, "transom_login_duration_seconds_bucket", protocol="saml", outcome="success",
                     le="+Inf") == 3
        assert value(found, "transom_scim_requests_total", method="GET", status="401") == 1
        assert value(found, "transom_hook_duration_seconds_count", hook="transom_extract_claims",
                     connector_type="generic_saml") == 3
    # the work really was spread over processes (each writes its own file); the serve
    # process itself counts the hook calls made while loading the plugins
    pids = {p.stem.rsplit("_", 1)[1] for p in served.metrics_dir.glob("*.db")}
    assert len(pids) >= 2, pids


def test_every_log_line_is_json_with_a_request_id(two_workers: tuple[Served, FakeSamlIdp]) -> None:
    served, idp = two_workers
    refused = password_login(served.base, "wrong password!", request_id="req-from-proxy-1")
    assert refused.headers["x-request-id"] == "req-from-proxy-1"
    ok = password_login(served.base, PASSWORD)
    own_id = ok.headers["x-request-id"]
    assert len(own_id) == 16
    page = httpx.post(f"{served.base}/api/accounts/login", timeout=10, headers={"accept": "text/html"},
                      data={"email": "ada@acme.example", "password": "nope nope nope", "account": "acme"})
    assert page.status_code == 400
    assert f'<code id="request-id">{page.headers["x-request-id"]}</code>' in page.text
    assert saml_login(served.base, idp, signing_key=SigningKey.generate("Intruder")).status_code == 400
    httpx.get(f"{served.base}/api/accounts/idp-callback?code=SECRETCODE123&state=abc", timeout=10)
    assert stop(served) == 0

    lines = served.log_lines()
    entries = [json.loads(line) for line in lines]  # raises on any line that is not JSON
    assert len(entries) > 10
    for entry in entries:
        assert set(entry) >= {"ts", "level", "logger", "request_id", "message"}
        assert entry["ts"].endswith("Z")
    loggers = {e["logger"] for e in entries}
    assert {"uvicorn.error", "uvicorn.access", "transom.refusal"} <= loggers
    by_request = [e for e in entries if e["request_id"] == "req-from-proxy-1"]
    assert [e["logger"] for e in by_request] == ["transom.refusal", "uvicorn.access"]
    assert "code=login_refused" in by_request[0]["message"]
    assert "wrong email, password or account" in by_request[0]["message"]
    assert any(e["request_id"] == own_id and e["logger"] == "uvicorn.access" for e in entries)
    saml_refusal = [e for e in entries if e["logger"] == "transom.refusal" and "/saml/" in e["message"]]
    assert len(saml_refusal) == 1
    assert "connector=acme-saml" in saml_refusal[0]["message"]
    assert "hint:" in saml_refusal[0]["message"]  # the library's refusal, in words
    # every access line belongs to a request; no secret reaches the log
    assert all(e["request_id"] != "-" for e in entries if e["logger"] == "uvicorn.access")
    text = "\n".join(lines)
    assert "SECRETCODE123" not in text and "code=[redacted]" in text
    assert "wrong password!" not in text and PASSWORD not in text
    summary = served.stdout.read_text()
    assert f"serving {served.base} on 127.0.0.1:" in summary and "with 2 worker(s)" in summary
    assert "connectors: acme-saml (generic_saml/saml, account acme)" in summary


def test_sigterm_drains_a_request_in_flight(tmp_path: Path, database_url: str) -> None:
    prepare_db(database_url)
    served = start_serve(tmp_path, database_url, workers=1)
    try:
        host, port = served.base.removeprefix("http://").split(":")
        body = f"email=ada%40acme.example&password={PASSWORD.replace(' ', '+')}&account=acme".encode()
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(
                b"POST /api/accounts/login HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode())
            # uvicorn answers 100 Continue when the app asks for the body: the request is in flight
            assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue")
            served.proc.send_signal(signal.SIGTERM)
            # the server stops accepting new connections while it drains this one
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection((host, int(port)), timeout=1).close()
                except OSError:
                    break
                assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
                time.sleep(0.05)
            answer = _finish_request(sock, body)
        assert answer.startswith(b"HTTP/1.1 303"), answer[:200]
        assert b"set-cookie: transom_session=" in answer.lower()
        assert served.proc.wait(timeout=60) == 0
    finally:
        stop(served)
    assert os.path.exists(served.stderr)


def _finish_request(sock: socket.socket, body: bytes) -> bytes:
    """Send the rest of a request held open in flight; the answer's head (status, headers)."""
    sock.sendall(body)
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            break
        answer += chunk
    return answer


def _children(parent: int) -> set[int]:
    """The processes whose parent is ``parent`` (the workers, and multiprocessing's helpers)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.add(int(stat.parent.name))
    return found


def _connection_owner(server_port: int, client_port: int, candidates: set[int]) -> int | None:
    """Which process holds the server side of our connection: its socket inode from
    /proc/net/tcp, then the process with that inode among its file descriptors."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if int(local.rsplit(":", 1)[1], 16) == server_port and int(remote.rsplit(":", 1)[1], 16) == client_port:
                inode = fields[9]
    if inode is None:
        return None
    for pid in candidates:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == f"socket:[{inode}]":
                        return pid
    return None


def _start_login_in_flight(host: str, port: int, body: bytes) -> socket.socket:
    """A password login whose headers are sent and whose body is not: once uvicorn answers
    100 Continue the app is waiting for the body, the request is in flight on a worker."""
    sock = socket.create_connection((host, port), timeout=60)
    sock.sendall(b"POST /api/accounts/login HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                 b"Content-Type: application/x-www-form-urlencoded\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode())
    assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue")
    return sock


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="finds each connection's worker through Linux /proc")
def test_sigterm_drains_a_request_in_flight_on_each_of_two_workers(tmp_path: Path, database_url: str) -> None:
    """``serve --workers 2``: a login in flight on each worker when SIGTERM arrives still
    completes, while new connections are refused (the supervisor closes its copy of the
    listening socket, transom.cli._run_workers). Which worker holds a connection is read from
    /proc, not guessed: connections are opened until both workers hold one."""
    prepare_db(database_url)
    # every connection is a login of the same person: the password throttle is not the subject
    served = start_serve(tmp_path, database_url, workers=2,
                         server={"password_attempts_per_user": 0, "password_attempts_per_address": 0})
    in_flight: list[socket.socket] = []
    try:
        host, port_text = served.base.removeprefix("http://").split(":")
        port = int(port_text)
        body = f"email=ada%40acme.example&password={PASSWORD.replace(' ', '+')}&account=acme".encode()
        workers = _children(served.proc.pid)
        in_flight.append(_start_login_in_flight(host, port, body))
        first = _connection_owner(port, in_flight[0].getsockname()[1], workers)
        assert first is not None, "no worker holds the connection"
        # The kernel may hand the next connection to the same worker again: stop that one
        # (SIGSTOP) so only the other can accept it, then let it go on (SIGCONT).
        os.kill(first, signal.SIGSTOP)
        try:
            in_flight.append(_start_login_in_flight(host, port, body))
        finally:
            os.kill(first, signal.SIGCONT)
        second = _connection_owner(port, in_flight[1].getsockname()[1], workers)
        assert second is not None and second != first, (first, second)
        owners = {first, second}

        served.proc.send_signal(signal.SIGTERM)
        # new connections are refused while the workers drain (a bound, not a timing assertion)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection((host, port), timeout=1).close()
            except OSError:
                break
            assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
            time.sleep(0.05)
        # refused while draining, not because everything has already stopped
        assert served.proc.poll() is None, "serve exited before the requests in flight were answered"
        assert all(Path(f"/proc/{pid}").exists() for pid in owners)

        answers = [_finish_request(sock, body) for sock in in_flight]
        statuses = [a.split(b"\r\n")[0].decode() for a in answers]
        assert statuses == ["HTTP/1.1 303 See Other"] * len(in_flight), statuses
        assert all(b"set-cookie: transom_session=" in a.lower() for a in answers)
        assert served.proc.wait(timeout=120) == 0
    finally:
        for sock in in_flight:
            sock.close()
        stop(served)
