"""Real HTTP servers in background threads, for tests that need a browser, an IdP that calls
back over real HTTP (the demo's host calls its own dev IdP's token endpoint), or a fake IdP
whose JWKS a host fetches with its ordinary HTTP client."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import uvicorn
from fastapi import FastAPI

#: an in-process HTTP handler, the shape ``httpx.MockTransport`` takes
Handler = Callable[[httpx.Request], httpx.Response]

#: a fake IdP's requests are small forms; refuse anything bigger rather than buffer it
_MAX_BODY = 1 << 20


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve_in_thread(app: FastAPI, *, port: int, host: str = "127.0.0.1",
                    start_timeout: float = 15.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn until the block ends; yields the base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"uvicorn did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def serve_handler(handler: Handler, *, port: int, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve an httpx-style ``handler`` over real HTTP until the block ends; yields the base
    URL. The same handler object can back an ``httpx.MockTransport``, so a fake answers the
    same bytes in process and over a socket."""

    class _Bridge(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length > _MAX_BODY:
                self.send_error(413)
                return
            body = self.rfile.read(length) if length else b""
            request = httpx.Request(self.command, f"http://{host}:{port}{self.path}",
                                    headers=list(self.headers.items()), content=body)
            response = handler(request)
            payload = response.read()
            self.send_response(response.status_code)
            for name, value in response.headers.items():
                if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: a test's output is for its assertions."""

    server = ThreadingHTTPServer((host, port), _Bridge)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name=f"fake-idp-{port}", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
