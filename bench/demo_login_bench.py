"""Benchmark of a whole browser login through ``transom demo`` over real HTTP: login page,
home-realm discovery, SSO start, the development IdP's picker and sign-in, the callback
(which calls the dev IdP's token endpoint over HTTP and verifies the id_token, or verifies
the signed SAML Response), the session and ``/api/me``. One uvicorn server in a thread,
one client; every login is a new browser (fresh cookies) and, after the first, a returning
user (found by external identity).

Prints median and p95 per protocol, in milliseconds. The dev IdP's own work (signing) is
included, so this is an upper bound for the host's share.

It migrates and seeds the database it is given: point it at a scratch database.

    python bench/demo_login_bench.py                  # temporary SQLite file, 50 logins per protocol
    python bench/demo_login_bench.py --runs 200
    python bench/demo_login_bench.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import html
import re
import statistics
import tempfile
import time

import httpx
from timing import p95

from transom.demo import build_demo
from transom.devidp.people import DEMO_PEOPLE
from transom.testing.server import free_port, serve_in_thread

ADA = DEMO_PEOPLE[0]


def one_login(base_url: str, email: str) -> float:
    started = time.perf_counter()
    with httpx.Client(base_url=base_url, follow_redirects=False, timeout=30) as browser:
        routed = browser.get("/login", params={"email": email})
        start = browser.get(routed.headers["location"])
        picker = browser.get(start.headers["location"])
        key = re.search(r'name="request_key" value="([^"]+)"', picker.text)
        assert key, "picker page"
        answered = browser.post("/dev-idp/sign-in", data={
            "request_key": key.group(1), "subject": ADA.subject, "space_name": ADA.space_name,
            "space_role": ADA.space_role, "timezone": ADA.timezone, "groups": ",".join(ADA.groups),
        })
        if answered.status_code == 303:
            landed = browser.get(answered.headers["location"])
        else:
            action = re.search(r'action="([^"]+)" id="auto-post"', answered.text)
            assert action, "auto-post form"
            fields = {k: html.unescape(v) for k, v in
                      re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', answered.text)}
            landed = browser.post(html.unescape(action.group(1)), data=fields)
        assert landed.status_code == 303, landed.text[:300]
        assert browser.get("/api/me").status_code == 200
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    database_url = args.database_url or f"sqlite:///{tempfile.mkdtemp()}/demo-bench.db"
    port = free_port()
    site = build_demo(base_url=f"http://127.0.0.1:{port}", database_url=database_url)
    try:
        with serve_in_thread(site.app, port=port) as base_url:
            for protocol, email in (("oidc (okta layout)", "ada@demo.example"), ("saml", "ada@saml.demo.example")):
                one_login(base_url, email)  # warm-up: first login creates the user
                times = sorted(one_login(base_url, email) for _ in range(args.runs))
                print(f"{protocol:<22} runs={args.runs:<4} median={statistics.median(times):7.1f} ms  "
                      f"p95={p95(times):7.1f} ms")
    finally:
        site.runtime.close()


if __name__ == "__main__":
    main()
