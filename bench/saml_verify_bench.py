"""Benchmark of SAML response validation (``transom.saml.verify_saml_response``): strict
base64, the pre-parse allow-lists, python3-saml strict validation (schema, signature with the
configured certificate) and the exact URL/audience/time checks. No database.

Responses: a small one (a few attributes) and an Entra-like one with 200 group GUIDs, both
with a signed assertion. Runs once with python3-saml's stock ``validate_xml`` (re-reads the
XSD set per call) and once with Transom's schema cache (performance-notes §2). Prints median
and p95 per validation and validations per second on one core.

With ``--logins N`` it also runs N whole SP-initiated logins through the real app
(``TestClient``: start route, ACS, replay cache, login state, user upsert, session) on a
SQLite file and prints their median/p95.

    python bench/saml_verify_bench.py
    python bench/saml_verify_bench.py --runs 3000 --logins 300
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from onelogin.saml2.xml_utils import OneLogin_Saml2_XML
from timing import measure, p95

from transom import saml
from transom.config import parse_config
from transom.runtime import Runtime
from transom.testing.saml import FakeSamlIdp, encode

STOCK_VALIDATE_XML = saml.STOCK_VALIDATE_XML



def report(name: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    median = statistics.median(ordered)
    print(f"{name:<40} median {median * 1e6:8.1f} us   p95 {p95(ordered) * 1e6:8.1f} us   ~{1 / median:7.0f}/s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1500)
    parser.add_argument("--logins", type=int, default=0)
    args = parser.parse_args()

    idp = FakeSamlIdp()
    tmp = Path(tempfile.mkdtemp())
    config = parse_config({
        "server": {"base_url": "https://transom.bench", "database_url": f"sqlite:///{tmp / 'bench.db'}",
                   "session_secret": "b" * 40},
        "connectors": [{"id": "bench", "type": "generic_saml", "account": "acme",
                        "settings": idp.connector_settings(attributes={"email": "mail"},
                                                           groups_attribute="groups")}],
    })
    runtime = Runtime.build(config)
    connector = runtime.connector("bench")
    sp = saml.sp_endpoints(runtime, "bench")
    attributes = {"mail": ["ada@acme.example"], "displayName": ["Ada Lovelace"], "givenName": ["Ada"],
                  "sn": ["Lovelace"]}
    groups = {**attributes, "groups": [str(uuid.uuid4()) for _ in range(200)]}
    small = encode(idp.signed_response(acs_url=sp.acs_url, audience=sp.entity_id, name_id="u-1",
                                       in_response_to="ONELOGIN_bench", attributes=attributes))
    large = encode(idp.signed_response(acs_url=sp.acs_url, audience=sp.entity_id, name_id="u-1",
                                       in_response_to="ONELOGIN_bench", attributes=groups))
    print(f"response sizes (base64): small {len(small)} chars, 200 groups {len(large)} chars; runs {args.runs}")

    cached_validate_xml = OneLogin_Saml2_XML.validate_xml
    for label, validate_xml in (("stock python3-saml", STOCK_VALIDATE_XML), ("schema cache", cached_validate_xml)):
        OneLogin_Saml2_XML.validate_xml = validate_xml  # type: ignore[method-assign]
        for name, body in (("small", small), ("200 groups", large)):
            verified = saml.verify_saml_response(runtime, connector, body)  # warm-up and sanity check
            assert verified.payload["name_id"] == "u-1"
            report(f"verify {name} ({label})", measure(
                lambda body=body: saml.verify_saml_response(runtime, connector, body), args.runs))
    OneLogin_Saml2_XML.validate_xml = cached_validate_xml  # type: ignore[method-assign]
    if args.logins:
        bench_logins(runtime, idp, attributes, args.logins)
    runtime.close()


def bench_logins(runtime: Runtime, idp: FakeSamlIdp, attributes: dict[str, list[str]], count: int) -> None:
    from starlette.testclient import TestClient

    from transom import directory
    from transom.migrate import upgrade
    from transom.testing.saml import saml_login
    from transom.web.app import create_app

    upgrade(runtime.db.engine)
    with runtime.db.transaction() as db:
        directory.create_account(db, name="acme")
    samples: list[float] = []
    with TestClient(create_app(runtime), base_url="https://transom.bench", follow_redirects=False) as client:
        for i in range(count):
            client.cookies.clear()
            started = time.perf_counter()
            user = f"u{i % 64}"
            response = saml_login(client, idp, connector_id="bench", name_id=user,
                                  attributes={**attributes, "mail": [f"{user}@acme.example"]})
            samples.append(time.perf_counter() - started)
            assert response.status_code == 303, response.text
    report("whole login incl. fake-IdP signing", samples)


if __name__ == "__main__":
    main()
