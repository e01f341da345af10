"""Prometheus metrics (``GET /metrics``, docs/operations.md).

With ``transom serve --workers N`` every worker is its own process with its own counters, so
``serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before the workers start;
prometheus_client then keeps each worker's values in a memory-mapped file there and
:func:`render` merges all of them, whichever worker answers the scrape. Without the variable
(tests, ``transom demo``, an app embedded elsewhere) the process's own registry is served.

The variable must be set before ``prometheus_client`` is first imported in a worker (it picks
its value class at import), which is why ``serve`` sets it in the parent's environment.

Label values are bounded: connector ids come from the config, reasons from the error
hierarchy's codes, SCIM statuses from a fixed set of HTTP codes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess as _multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
#: login outcomes
SUCCESS = "success"
REFUSED = "refused"

#: Transom's own registry, not prometheus_client's global one: a module imported twice (tests
#: that re-import the package) must not register the same names twice
REGISTRY = CollectorRegistry()

LOGINS = Counter(
    "transom_logins_total", "Login attempts that reached a verdict",
    ["connector", "protocol", "outcome", "reason"], registry=REGISTRY,
)
LOGIN_DURATION = Histogram(
    "transom_login_duration_seconds", "Time to answer a login callback (ACS, OIDC callback, password form)",
    ["protocol", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0), registry=REGISTRY,
)
SCIM_REQUESTS = Counter("transom_scim_requests_total", "SCIM requests answered", ["method", "status"],
                        registry=REGISTRY)
HOOK_DURATION = Histogram(
    "transom_hook_duration_seconds", "Time spent in connector plugin hooks", ["hook", "connector_type"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0), registry=REGISTRY,
)
IDP_REQUESTS = Counter(
    "transom_idp_requests_total", "HTTP requests Transom made to identity providers",
    ["connector", "kind", "outcome"], registry=REGISTRY,
)

_SCIM_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


def login(*, connector: str, protocol: str, outcome: str, reason: str, seconds: float) -> None:
    LOGINS.labels(connector=connector, protocol=protocol, outcome=outcome, reason=reason).inc()
    LOGIN_DURATION.labels(protocol=protocol, outcome=outcome).observe(seconds)


def scim_request(method: str, status: int) -> None:
    SCIM_REQUESTS.labels(method=method if method in _SCIM_METHODS else "OTHER", status=str(status)).inc()


def hook(hook_name: str, connector_type: str, seconds: float) -> None:
    HOOK_DURATION.labels(hook=hook_name, connector_type=connector_type or "-").observe(seconds)


def idp_request(*, connector: str, kind: str, outcome: str) -> None:
    IDP_REQUESTS.labels(connector=connector or "unknown", kind=kind, outcome=outcome).inc()


def render() -> bytes:
    """The exposition text: every worker's values in multiprocess mode, else this process's."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def prepare_multiprocess_dir() -> tuple[Path, bool]:
    """The directory the workers share, emptied; ``True`` when ``serve`` made it (and so
    removes it on exit). An operator-set ``PROMETHEUS_MULTIPROC_DIR`` is used as given, but
    its old ``*.db`` files are removed: values of a previous run must not be added again."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        _use_multiprocess_values()
        return path, False
    path = Path(tempfile.mkdtemp(prefix="transom-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    _use_multiprocess_values()
    return path, True


def _use_multiprocess_values() -> None:
    """prometheus_client chose its value class when first imported; with one worker uvicorn
    runs in this very process, so choose again now that the variable is set. Labelled
    metrics create their values at the first ``labels()`` call, which has not happened yet."""
    from prometheus_client import values

    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


def cleanup_multiprocess_dir(path: Path, created: bool) -> None:
    if created:
        shutil.rmtree(path, ignore_errors=True)
        os.environ.pop(MULTIPROC_ENV, None)
