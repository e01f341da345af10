"""Benchmark of SAML response validation (``transom.saml.verify_saml_response``): strict
base64, the pre-parse allow-lists, python3-saml strict validation (schema, signature with the
configured certificate) and the exact URL/audience/time checks. No database.

Responses: a small one (a few attributes) and an Entra-like one with 200 group GUIDs, both
with a signed assertion. Runs once with python3-saml's stock ``validate_xml`` (re-reads the
XSD set per call) and once with Transom's schema cache (performance-notes §2). Prints median
and p95 per validation and validations per second on one core.

With ``--peer`` it also measures the stock python3-saml peer's validation of the same two
documents (``bench/saml_peer_validate.py``, in a process that never imports Transom) next to
Transom's whole ``verify_saml_response``, both as CPU time per call: the protocol work alone,
without HTTP or database, on both sides.

With ``--logins N`` it also runs N whole SP-initiated logins through the real app
(``TestClient``: start route, ACS, replay cache, login state, user upsert, session) on a
SQLite file and prints their median/p95.

    python bench/saml_verify_bench.py
    python bench/saml_verify_bench.py --runs 3000 --logins 300
    python bench/saml_verify_bench.py --peer
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from onelogin.saml2.xml_utils import OneLogin_Saml2_XML
from timing import measure, p95

from transom import saml
from transom.config import parse_config
from transom.connector import Connector
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
    parser.add_argument("--peer", action="store_true",
                        help="also the stock python3-saml peer's validation, CPU per call, in its own process")
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
    if args.peer:
        compare_with_peer(runtime, connector, idp, {"small": small, "200 groups": large}, args.runs)
    if args.logins:
        bench_logins(runtime, idp, attributes, args.logins)
    runtime.close()


def cpu_median(fn: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.process_time()
        fn()
        samples.append(time.process_time() - started)
    return statistics.median(samples)


def compare_with_peer(runtime: Runtime, connector: Connector, idp: FakeSamlIdp, documents: dict[str, str],
                      runs: int) -> None:
    """CPU per validation: Transom's ``verify_saml_response`` here, the peer's in a clean process."""
    sp = saml.sp_endpoints(runtime, connector.id)
    spec = {"runs": runs, "cert": idp.key.certificate_pem, "idp_entity_id": idp.entity_id,
            "sp_entity_id": sp.entity_id, "acs_url": sp.acs_url, "documents": documents}
    answer = subprocess.run([sys.executable, str(Path(__file__).with_name("saml_peer_validate.py"))],
                            input=json.dumps(spec), capture_output=True, text=True, check=True)
    peer = json.loads(answer.stdout)
    assert peer.pop("transom_imported") is False, "the peer's process imported Transom"
    for name, document in documents.items():
        ours = cpu_median(lambda document=document: saml.verify_saml_response(runtime, connector, document), runs)
        print(f"cpu per validation, {name:<10}  Transom {ours * 1e3:6.3f} ms   stock python3-saml peer "
              f"{peer[name] * 1e3:6.3f} ms   Transom / peer {ours / peer[name]:5.2f}")


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
