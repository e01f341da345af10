"""Helpers for the operations tests: TOML config files from dicts, the CLI as a subprocess,
and the fake IdPs of transom.testing served over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from transom.testing.server import free_port


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(type(value))


def write_config(path: Path, server: Mapping[str, Any], connectors: list[Mapping[str, Any]] = ()) -> Path:  # type: ignore[assignment]
    lines = ["[server]", *(f"{k} = {toml_value(v)}" for k, v in server.items())]
    for connector in connectors:
        lines.append("\n[[connectors]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in connector.items() if k not in ("settings", "provisioning")]
        for table in ("settings", "provisioning"):
            if table in connector:
                lines.append(f"[connectors.{table}]")
                lines += [f"{k} = {toml_value(v)}" for k, v in connector[table].items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRANSOM_", "PROMETHEUS_"))}
    env.update(extra)
    return env


def run_cli(*args: str, env: Mapping[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "transom.cli", *args], capture_output=True, text=True,
                          env=dict(env) if env is not None else clean_env(), timeout=timeout)


class HandlerApp:
    """An ASGI app around an ``httpx`` handler (what the fake IdPs expose for MockTransport),
    so the same fake answers real HTTP. Adds a ``Date`` header like any web server."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response], base_url: str,
                 date: str | None = None) -> None:
        self.handler = handler
        self.base_url = base_url
        self.date = date

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        body = await request.body()
        url = self.base_url + scope["path"] + (f"?{scope['query_string'].decode()}" if scope["query_string"] else "")
        answer = self.handler(httpx.Request(request.method, url, headers=request.headers.raw, content=body))
        headers = {k: v for k, v in answer.headers.items() if k.lower() not in ("content-length", "date")}
        if self.date:
            headers["date"] = self.date
        await Response(answer.content, status_code=answer.status_code, headers=headers)(scope, receive, send)


@contextmanager
def serve_handler(make: Callable[[str], Callable[[httpx.Request], httpx.Response]],
                  date: str | None = None) -> Iterator[str]:
    """``make(base_url)`` builds the handler once the port is known; yields the base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = HandlerApp(make(base), base, date=date)
    # uvicorn's own Date header is off so that the fake's (possibly skewed) one is the only one
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                          lifespan="off", date_header=date is None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("fake IdP server did not start")
        time.sleep(0.02)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)
