"""Login throughput of Transom next to peers, interleaved in one run (issue 13's table).

Transom runs as ``transom serve`` would: one uvicorn worker (``--workers``) pinned with taskset
to core 0, SQLite (or ``--database-url``). The peers (bench/login_peers.py: an Authlib OIDC
relying party with a signed-cookie session, stock python3-saml strict ACS without a database)
run in a second uvicorn worker pinned to the same core. The OIDC provider (bench/login_idp.py)
and the clients run on the other core(s). Each round measures every scenario once, in turn,
so Transom and its peer see the same machine load; the ratios are the point, the machine is
shared and noisy, and its load average is printed.

Scenarios (``--only`` picks some):

* ``oidc``: a whole OIDC login of a returning user with 10 mapped groups: start (login state
  written) -> the IdP's authorization endpoint -> the callback (code exchange with the IdP over
  HTTP, id_token verified, user + group sync + audit, session). Peer: ``authlib``.
* ``saml``: the ACS of an SP-initiated login, small assertion (one mapped group), and
  ``saml200`` with 200 mapped groups. The login starts and the signing happen before the timed
  phase. Peers: ``peer-saml``, ``peer-saml200``.
* ``scim``: ``POST /Users``.
* ``sync``: bench/group_sync_bench.py at 200 groups (first login / no change / churn p95).

Per scenario: median rate over the rounds and its spread (min/max around the median), median
server CPU per login (utime+stime of the server process from /proc) and what that makes per
core-second (``core/s`` = 1000 / cpu ms: the rate the server would reach with a core of its
own, which on a loaded machine is the steadier figure), how busy the server was (1.0 = one
whole core), client latency p50/p95, and the server's memory before and after. ``busy`` well
below 1 means the server waited for the client side (or for the machine): trust ``core/s``.

    python bench/login_bench.py                            # ~3 minutes
    python bench/login_bench.py --rounds 5 --logins 600
    python bench/login_bench.py --only oidc authlib
    python bench/login_bench.py --json before.json         # also write the numbers
    python bench/login_bench.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench --workers 2
    python bench/login_bench.py --baseline ../transom-main --only oidc saml scim   # before/after in one run

``--baseline DIR`` runs a second Transom from another checkout (its ``core/`` and ``plugins/*``
first on ``PYTHONPATH``, same database, same schema expected) and measures its scenarios as
``oidc@base`` etc. right after this tree's: a change's effect, measured side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from login_harness import (
    BENCH_DIR,
    Browser,
    Result,
    Server,
    free_port,
    load_average,
    median,
    pin_client,
    run_closed_loop,
    spread,
)
from sqlalchemy import insert

from transom import directory
from transom.db import Database
from transom.migrate import upgrade
from transom.models import Group
from transom.testing.saml import FakeSamlIdp, encode, new_id, parse_authn_request

CLIENT_ID = "0oabench"
USERS = 64
OIDC_GROUPS = 10
SAML_GROUPS = 200
SCENARIOS = ("oidc", "authlib", "saml", "peer-saml", "saml200", "peer-saml200", "scim", "sync")
PEER_OF = {"oidc": "authlib", "saml": "peer-saml", "saml200": "peer-saml200"}
#: scenarios that a --baseline checkout runs too, as "<name>@base"
TRANSOM_SCENARIOS = ("oidc", "saml", "saml200", "scim")
BASE = "@base"


@dataclass
class Site:
    """Everything the scenarios need: the servers, the IdPs, the account's data."""

    workdir: Path
    database_url: str
    account: str
    group_ids: list[str]
    scim_token: str
    saml_idp: FakeSamlIdp
    idp_url: str = ""
    transom_url: str = ""
    peer_url: str = ""
    base_url: str = ""
    servers: dict[str, Server] = field(default_factory=dict)
    profiler: str = "py-spy"
    idp_process: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        if self.idp_process is not None:
            self.idp_process.terminate()
            self.idp_process.wait(timeout=10)


def seed(database_url: str) -> tuple[str, list[str], str]:
    """A fresh account with 220 mapped groups and a SCIM token (returns name, ids, token)."""
    db = Database(database_url)
    upgrade(db.engine)
    name = f"bench-{secrets.token_hex(3)}"
    group_ids = [str(uuid.uuid4()) for _ in range(SAML_GROUPS + 20)]
    with db.transaction() as session:
        account = directory.create_account(session, name=name)
        session.execute(insert(Group), [
            {"id": uuid.uuid4().hex, "account_id": account.id, "name": f"group {i}", "name_key": f"group {i}",
             "idp_identifier": ident} for i, ident in enumerate(group_ids)])
        token = directory.create_token(session, account=account, permissions=["manage-users"], name="bench")
    db.dispose()
    return name, group_ids, token


def transom_config(site: Site, port: int, server_settings: dict[str, Any], name: str = "transom.toml") -> Path:
    pem = site.saml_idp.key.certificate_pem
    extra = "".join(f"{key} = {json.dumps(value)}\n" for key, value in server_settings.items())
    text = f"""
[server]
base_url = "http://127.0.0.1:{port}"
database_url = {json.dumps(site.database_url)}
session_secret = {{ env = "TRANSOM_SESSION_SECRET" }}
log_level = "WARNING"
api_rate_limit = 1000000  # the limiter still runs on every SCIM request; the bench must not hit it
{extra}
[[connectors]]
id = "bench-oidc"
type = "okta"
account = "{site.account}"
[connectors.settings]
domain = "{site.idp_url}"
client_id = "{CLIENT_ID}"
client_secret = {{ env = "BENCH_CLIENT_SECRET" }}

[[connectors]]
id = "bench-saml"
type = "okta"
account = "{site.account}"
[connectors.settings]
protocol = "saml"
idp_entity_id = {json.dumps(site.saml_idp.entity_id)}
idp_sso_url = {json.dumps(site.saml_idp.sso_url)}
idp_certificates = [{json.dumps(pem)}]
"""
    path = site.workdir / name
    path.write_text(text)
    return path


def start(args: argparse.Namespace) -> Site:
    workdir = Path(tempfile.mkdtemp(prefix="login-bench-"))
    database_url = args.database_url or f"sqlite:///{workdir / 'bench.db'}"
    account, group_ids, token = seed(database_url)
    site = Site(workdir=workdir, database_url=database_url, account=account, group_ids=group_ids,
                scim_token=token, saml_idp=FakeSamlIdp(entity_id="https://idp.bench.test/saml",
                                                       sso_url="https://idp.bench.test/saml/sso"))
    client_secret = secrets.token_urlsafe(24)
    idp_port, transom_port, peer_port = free_port(), free_port(), free_port()
    site.idp_url = f"http://127.0.0.1:{idp_port}"
    site.transom_url = f"http://127.0.0.1:{transom_port}"
    site.peer_url = f"http://127.0.0.1:{peer_port}"
    site.idp_process = subprocess.Popen([sys.executable, str(BENCH_DIR / "login_idp.py"), str(idp_port), CLIENT_ID,
                                         client_secret, ",".join(group_ids[:OIDC_GROUPS])])
    try:
        config = transom_config(site, transom_port, getattr(args, "server_settings", {}))
        site.profiler = getattr(args, "profiler", "py-spy")
        profiled = site.profiler == "cprofile" and getattr(args, "profile", None)
        site.servers["transom"] = Server(
            app="transom.web.asgi:create", port=transom_port, workers=args.workers,
            runner=BENCH_DIR / "profiled_server.py" if profiled else None,
            env={"TRANSOM_CONFIG": str(config), "TRANSOM_SESSION_SECRET": secrets.token_urlsafe(32),
                 "BENCH_CLIENT_SECRET": client_secret,
                 **({"PROFILE_OUT": str(Path(args.profile).resolve() / "cprofile")} if profiled else {})})
        if getattr(args, "baseline", None):
            base = Path(args.baseline).resolve()
            base_port = free_port()
            site.base_url = f"http://127.0.0.1:{base_port}"
            paths = [str(base / "core"), *(str(p.parent) for p in sorted(base.glob("plugins/*/pyproject.toml")))]
            site.servers["base"] = Server(
                app="transom.web.asgi:create", port=base_port, workers=args.workers,
                env={"TRANSOM_CONFIG": str(transom_config(site, base_port, getattr(args, "server_settings", {}),
                                                          "transom-base.toml")),
                     "TRANSOM_SESSION_SECRET": secrets.token_urlsafe(32), "BENCH_CLIENT_SECRET": client_secret,
                     "PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")])})
        site.servers["peer"] = Server(
            app="login_peers:create", port=peer_port, workers=args.workers, app_dir=BENCH_DIR,
            env={"PEER_BASE_URL": site.peer_url, "PEER_IDP_URL": site.idp_url, "PEER_CLIENT_ID": CLIENT_ID,
                 "PEER_CLIENT_SECRET": client_secret, "PEER_SESSION_SECRET": secrets.token_urlsafe(32),
                 "PEER_SAML_IDP_ENTITY_ID": site.saml_idp.entity_id,
                 "PEER_SAML_IDP_SSO_URL": site.saml_idp.sso_url,
                 "PEER_SAML_IDP_CERT": site.saml_idp.key.certificate_base64})
    except Exception:
        site.stop()
        raise
    return site


# -- scenarios: (items for one phase, the step a client runs per item) ------------------------

Step = Callable[[Browser, Any], "str | None"]


def oidc_login(start_url: str, session_cookie: str, start_status: int) -> Step:
    def step(browser: Browser, sub: str) -> str | None:
        browser.cookies.clear()  # a new browser per login, a returning user
        started = browser.get(start_url)
        if started.status != start_status:
            return f"start {started.status}"
        at_idp = browser.get(f"{started.location}&{urlencode({'login_hint': sub})}")
        if at_idp.status != 302:
            return f"idp {at_idp.status}"
        landed = browser.get(at_idp.location)
        if landed.status != 303 or session_cookie not in browser.cookies:
            return f"callback {landed.status} {landed.body[:200]!r}"
        return None

    return step


def users(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i % USERS}" for i in range(count)]


def saml_attributes(sub: str, groups: Sequence[str]) -> dict[str, list[str]]:
    attributes = {"email": [f"{sub}@bench.example"], "firstName": ["Bench"], "lastName": [sub]}
    if groups:
        attributes["groups"] = list(groups)
    return attributes


def prepare_transom_saml(site: Site, subs: Sequence[str], groups: Sequence[str],
                         url: str) -> list[tuple[dict[str, str], bytes]]:
    """Start each login for real (a login state per item, its binding cookie kept) and sign
    the IdP's answer; the ACS posts are what gets timed."""
    browser = Browser()
    items = []
    for sub in subs:
        browser.cookies.clear()
        started = browser.get(f"{url}/api/accounts/login/bench-saml")
        request = parse_authn_request(started.location)
        response = site.saml_idp.response(request, name_id=sub, attributes=saml_attributes(sub, groups))
        items.append((dict(browser.cookies), urlencode({"SAMLResponse": response}).encode()))
    browser.close()
    return items


def prepare_peer_saml(site: Site, subs: Sequence[str], groups: Sequence[str]) -> list[tuple[dict[str, str], bytes]]:
    items = []
    for sub in subs:
        root = site.saml_idp.signed_response(
            acs_url=f"{site.peer_url}/saml/acs", audience=f"{site.peer_url}/saml/metadata", name_id=sub,
            in_response_to=new_id(), attributes=saml_attributes(sub, groups))
        items.append(({}, urlencode({"SAMLResponse": encode(root)}).encode()))
    return items


def post_acs(url: str) -> Step:
    def step(browser: Browser, item: tuple[dict[str, str], bytes]) -> str | None:
        cookies, body = item
        browser.cookies = dict(cookies)
        answer = browser.post_form(url, body)
        return None if answer.status == 303 else f"acs {answer.status} {answer.body[:200]!r}"

    return step


def scim_create(site: Site, run_id: str, url: str) -> Step:
    headers = {"Authorization": f"Bearer {site.scim_token}", "Content-Type": "application/scim+json"}

    def step(browser: Browser, index: int) -> str | None:
        name = f"scim{index}-{run_id}@bench.example"
        body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name,
                "externalId": f"ext-{index}-{run_id}", "active": True,
                "name": {"givenName": "Bench", "familyName": f"User {index}"},
                "emails": [{"value": name, "type": "work", "primary": True}]}
        answer = browser.request("POST", f"{url}/api/scim/v2/Users", body=json.dumps(body).encode(),
                                 headers=headers)
        return None if answer.status == 201 else f"scim {answer.status}"

    return step


def phase(site: Site, name: str, count: int, clients: int, serial: int, profile: Path | None = None) -> Result:
    """One timed phase; with ``profile``, py-spy samples the Transom server meanwhile."""
    if profile is None or name not in TRANSOM_SCENARIOS:
        return _phase(site, name, count, clients, serial)
    if site.profiler == "cprofile":  # bench/profiled_server.py: SIGUSR1 starts, SIGUSR2 writes the table
        server = site.servers["transom"].process
        (profile / "cprofile.label").write_text(f"{name}-{serial}")
        server.send_signal(signal.SIGUSR1)
        time.sleep(0.5)
        try:
            return _phase(site, name, count, clients, serial)
        finally:
            server.send_signal(signal.SIGUSR2)
            # Python runs pending handlers in signal-number order: the next phase's SIGUSR1
            # must not arrive before this SIGUSR2 has been handled
            time.sleep(1.0)
    out = profile / f"py-spy-{name}-{serial}.txt"
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"  # the venv's, if any
    spy = subprocess.Popen([py_spy, "record", "--pid", str(site.servers["transom"].process.pid), "--format", "raw",
                            "--rate", "250", "--gil", "--output", str(out), "--nonblocking"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attaches
    try:
        return _phase(site, name, count, clients, serial)
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=30)


def _phase(site: Site, name: str, count: int, clients: int, serial: int) -> Result:
    if name.endswith(BASE):  # the same scenario against the --baseline checkout
        return _transom_phase(site, name.removesuffix(BASE), count, clients, serial, site.servers["base"],
                              site.base_url, "base-")
    if name in TRANSOM_SCENARIOS:
        return _transom_phase(site, name, count, clients, serial, site.servers["transom"], site.transom_url, "")
    peer = site.servers["peer"]
    if name == "authlib":
        return run_closed_loop([peer], users("authlib-user", count), clients,
                               oidc_login(f"{site.peer_url}/authlib/login", "session", 302))
    if name in ("peer-saml", "peer-saml200"):
        groups = site.group_ids[:SAML_GROUPS] if name == "peer-saml200" else site.group_ids[:1]
        items = prepare_peer_saml(site, users(f"{name}-user", count), groups)
        return run_closed_loop([peer], items, clients, post_acs(f"{site.peer_url}/saml/acs"))
    raise ValueError(name)


def _transom_phase(site: Site, name: str, count: int, clients: int, serial: int, server: Server, url: str,
                   prefix: str) -> Result:
    if name == "oidc":
        return run_closed_loop([server], users(f"{prefix}oidc-user", count), clients,
                               oidc_login(f"{url}/api/accounts/login/bench-oidc", "transom_session", 303))
    if name in ("saml", "saml200"):
        groups = site.group_ids[:SAML_GROUPS] if name == "saml200" else site.group_ids[:1]
        items = prepare_transom_saml(site, users(f"{prefix}{name}-user", count), groups, url)
        return run_closed_loop([server], items, clients, post_acs(f"{url}/api/accounts/saml/bench-saml/acs"))
    if name == "scim":
        return run_closed_loop([server], list(range(count)), clients,
                               scim_create(site, f"{prefix}{serial}-{time.time_ns()}", url))
    raise ValueError(name)


# -- report ---------------------------------------------------------------------------------


def summary(results: list[Result]) -> dict[str, Any]:
    latencies = sorted(x for r in results for x in r.latencies)
    errors = [e for r in results for e in r.errors]
    return {
        "rate": median([r.rate for r in results]),
        "spread": spread([r.rate for r in results]),
        "rates": [round(r.rate, 1) for r in results],
        "cpu_ms": median([r.cpu_ms for r in results]),
        "busy": median([r.busy for r in results]),
        "p50_ms": latencies[len(latencies) // 2] * 1000 if latencies else float("nan"),
        "p95_ms": latencies[int(len(latencies) * 0.95) - 1] * 1000 if latencies else float("nan"),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def print_table(table: dict[str, dict[str, Any]]) -> None:
    print(f"\n{'scenario':<14}{'rate/s':>9}  {'spread':<13}{'cpu ms':>8}{'core/s':>8}{'busy':>6}{'p50 ms':>8}"
          f"{'p95 ms':>8}{'errors':>7}   ratio to peer (or to @base): rate, per core-second")
    for name, row in table.items():
        ratio = ""
        peer = PEER_OF.get(name.removesuffix(BASE))
        if name in TRANSOM_SCENARIOS and name + BASE in table:  # this tree next to the baseline
            peer = name + BASE
        if peer and peer in table:
            ratio = f"{row['rate'] / table[peer]['rate']:.2f}, {table[peer]['cpu_ms'] / row['cpu_ms']:.2f}"
        print(f"{name:<14}{row['rate']:9.0f}  {row['spread']:<13}{row['cpu_ms']:8.2f}{1000 / row['cpu_ms']:8.0f}"
              f"{row['busy']:6.2f}{row['p50_ms']:8.1f}{row['p95_ms']:8.1f}{row['errors']:7d}   {ratio}")
        if row["first_error"]:
            print(f"    first error: {row['first_error']}")


def group_sync(database_url: str | None) -> list[str]:
    command = [sys.executable, str(BENCH_DIR / "group_sync_bench.py"), "--sizes", "200", "--runs", "200", "--no-pin"]
    if database_url:
        command += ["--database-url", database_url]
    output = subprocess.run(command, capture_output=True, text=True, check=False)
    return (output.stdout + output.stderr).strip().splitlines()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--logins", type=int, default=400, help="logins (or creates) per scenario per round")
    parser.add_argument("--clients", type=int, default=8, help="concurrent keep-alive clients")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--baseline", default=None, help="another checkout (e.g. a worktree of main): its "
                        "Transom runs every Transom scenario too, as <name>@base, interleaved")
    parser.add_argument("--profile", default=None, help="directory: py-spy samples Transom during each phase "
                        "(collapsed stacks; summarise with bench/login_profile.py)")
    parser.add_argument("--profiler", choices=("py-spy", "cprofile"), default="py-spy",
                        help="cprofile where py-spy cannot attach (bench/profiled_server.py; read shares, not times)")
    args = parser.parse_args()
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    pin_client()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load average {load_average()}")
    site = start(args)
    try:
        http_scenarios = [s for s in args.only if s != "sync"]
        if args.baseline:
            http_scenarios = [x for s in http_scenarios for x in ((s, s + BASE) if s in TRANSOM_SCENARIOS else (s,))]
        # warm-up: every user exists (returning users from now on), caches are filled
        for name in http_scenarios:
            warm = phase(site, name, USERS * (2 if name != "scim" else 1), args.clients, -1)
            if warm.errors:
                print(f"warm-up {name}: {len(warm.errors)} errors, first: {warm.errors[0]}")
        rss_before = site.servers["transom"].rss()
        results: dict[str, list[Result]] = {name: [] for name in http_scenarios}
        total = 0
        for round_index in range(args.rounds):
            for name in http_scenarios:
                result = phase(site, name, args.logins, args.clients, round_index,
                               Path(args.profile) if args.profile else None)
                results[name].append(result)
                total += result.count if name in TRANSOM_SCENARIOS else 0
            print(f"round {round_index + 1}/{args.rounds} done, load average {load_average()}, "
                  f"Transom memory {site.servers['transom'].rss():.1f} MB", flush=True)
        rss_after = site.servers["transom"].rss()
        table = {name: summary(rs) for name, rs in results.items()}
        print(f"\nTransom: uvicorn --workers {args.workers}, {site.database_url.split(':', 1)[0]}; "
              f"{args.rounds} rounds x {args.logins} per scenario, {args.clients} clients; "
              f"load average at the end {load_average()}")
        print_table(table)
        print(f"Transom memory: {rss_before:.1f} MB -> {rss_after:.1f} MB over {total} requests "
              f"({rss_after - rss_before:+.1f} MB)")
        sync_lines = group_sync(args.database_url) if "sync" in args.only else []
        if sync_lines:
            print("\ngroup sync step, 200 groups (bench/group_sync_bench.py):")
            for line in sync_lines:
                print(f"  {line}")
        if args.json:
            Path(args.json).write_text(json.dumps({
                "load_average": load_average(), "workers": args.workers, "database": site.database_url.split(":")[0],
                "rounds": args.rounds, "logins": args.logins, "table": table,
                "memory_mb": [rss_before, rss_after, total], "group_sync": sync_lines}, indent=2))
    finally:
        site.stop()
        shutil.rmtree(site.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
