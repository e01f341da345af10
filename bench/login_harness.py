"""Shared by bench/login_bench.py and bench/login_scale_bench.py: server processes pinned to a
core, their CPU time and memory from /proc, a light keep-alive "browser" (``http.client``,
much cheaper than httpx, so the client core is not the bottleneck) and a closed-loop runner.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

BENCH_DIR = Path(__file__).resolve().parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: the server core; the client, the fake IdP and everything else get the others
SERVER_CORE = 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pin_client() -> None:
    """Keep this process (and what it forks later) off the server core."""
    cores = os.cpu_count() or 1
    if cores > 1 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(range(cores)) - {SERVER_CORE})


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found.extend(int(child) for child in handle.read().split())
    except OSError:
        pass
    return found


def process_tree(pid: int) -> list[int]:
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(_children(current))
    return tree


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its live descendants (uvicorn workers), in seconds."""
    user, system = cpu_split(pid)
    return user + system


def cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of a process and its live descendants, in seconds: stime is the kernel's
    share (syscalls, page faults, file I/O), which grows when SQLite reads and writes more pages."""
    user = system = 0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])  # utime, stime: fields 14 and 15 of stat
        system += int(fields[12])
    return user / CLOCK_TICKS, system / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    total = 0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


class Server:
    """A uvicorn process pinned to the server core(s), like ``transom serve``."""

    def __init__(self, *, app: str, port: int, env: Mapping[str, str], workers: int = 1,
                 app_dir: Path | None = None, health: str = "/healthz", runner: Path | None = None) -> None:
        # runner: a script that stands in for ``-m uvicorn`` (bench/yappi_server.py)
        launch = [str(runner)] if runner is not None else ["-m", "uvicorn"]
        command = [sys.executable, *launch, app, "--factory", "--workers", str(workers),
                   "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]
        if app_dir is not None:
            command += ["--app-dir", str(app_dir)]
        cores = os.cpu_count() or 1
        if shutil.which("taskset") and cores > 1:
            pinned = ",".join(str(SERVER_CORE + i) for i in range(min(workers, cores)))
            command = ["taskset", "-c", pinned, *command]
        self.port = port
        self.process = subprocess.Popen(command, env={**os.environ, **env})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{app} exited with {self.process.returncode}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                connection.request("GET", health)
                if connection.getresponse().status < 500:
                    connection.close()
                    # workers > 1: give the others a moment to bind too
                    time.sleep(1.0 if workers > 1 else 0.1)
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{app} did not start")

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid)

    def rss(self) -> float:
        return rss_mb(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def location(self) -> str:
        return self.headers.get("location", "")


class Browser:
    """One keep-alive connection per origin and a cookie jar (name -> value; paths and
    expiry ignored: every cookie the bench meets is for the login paths)."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}
        self._connections: dict[str, http.client.HTTPConnection] = {}

    def request(self, method: str, url: str, *, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> Reply:
        parts = urlsplit(url)
        origin = parts.netloc
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for attempt in (1, 2):
            connection = self._connections.get(origin)
            if connection is None:
                connection = self._connections[origin] = http.client.HTTPConnection(origin, timeout=60)
            try:
                connection.request(method, path, body=body, headers=sent)
                response = connection.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                connection.close()
                del self._connections[origin]
                if attempt == 2:
                    raise
        for cookie in response.headers.get_all("set-cookie") or []:
            name, _, rest = cookie.partition("=")
            value = rest.split(";", 1)[0]
            if "max-age=0" in cookie.lower() or not value.strip('"'):
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return Reply(response.status, response.headers, data)

    def get(self, url: str) -> Reply:
        return self.request("GET", url)

    def post_form(self, url: str, body: bytes) -> Reply:
        return self.request("POST", url, body=body,
                            headers={"Content-Type": "application/x-www-form-urlencoded"})

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()


@dataclass
class Result:
    """One timed phase: what the client saw and what the server spent."""

    count: int
    seconds: float
    server_cpu: float
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    @property
    def cpu_ms(self) -> float:
        return self.server_cpu / max(self.count, 1) * 1000

    @property
    def busy(self) -> float:
        """Share of the wall time the server processes were on a CPU (1.0 = one full core)."""
        return self.server_cpu / self.seconds


def run_closed_loop(servers: Sequence[Server], items: Sequence[object], clients: int,
                    step: Callable[[Browser, object], str | None]) -> Result:
    """``clients`` threads, each with its own Browser, take the next item until none is left;
    ``step`` returns None on success or an error text. Server CPU is read around the phase."""
    lock = threading.Lock()
    feed: Iterator[object] = iter(items)
    latencies: list[float] = []
    errors: list[str] = []
    barrier = threading.Barrier(clients + 1)

    def worker() -> None:
        browser = Browser()
        mine: list[float] = []
        barrier.wait()
        while True:
            with lock:
                item = next(feed, None)
            if item is None:
                break
            started = time.perf_counter()
            try:
                problem = step(browser, item)
            except Exception as exc:  # a failed login is reported, not fatal
                problem = f"{type(exc).__name__}: {exc}"
            mine.append(time.perf_counter() - started)
            if problem is not None:
                with lock:
                    errors.append(problem)
        browser.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    cpu_before = sum(s.cpu() for s in servers)
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    cpu_after = sum(s.cpu() for s in servers)
    return Result(count=len(items), seconds=elapsed, server_cpu=cpu_after - cpu_before,
                  latencies=latencies, errors=errors)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float]) -> str:
    """min to max around the median, in percent of the median."""
    if len(values) < 2:
        return "n/a"
    mid = statistics.median(values)
    return f"{(min(values) - mid) / mid * 100:+.0f}/{(max(values) - mid) / mid * 100:+.0f} %"


@contextmanager
def stopping(*servers: Server) -> Iterator[None]:
    try:
        yield
    finally:
        for server in servers:
            server.stop()
