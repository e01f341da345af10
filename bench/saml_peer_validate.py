"""The stock python3-saml peer's validation alone, in a process that never imports Transom.

``bench/saml_verify_bench.py --peer`` runs this script with the documents it signed (JSON on
standard input) and prints what one validation costs the peer: the same
``OneLogin_Saml2_Auth(...).process_response()`` + ``get_nameid()`` that the peer ACS in
``bench/login_peers.py`` runs, with the same strict settings. A separate process because
importing ``transom.saml`` installs Transom's caches into python3-saml's modules (schema,
XPath, keys, time parsing): measured in the bench's own process, the "stock" library would not
be stock.

Input: ``{"runs": N, "cert": PEM, "idp_entity_id": ..., "sp_entity_id": ..., "acs_url": ...,
"documents": {"small": base64, ...}}``. Output: one JSON object, name -> CPU seconds per call
(``time.process_time``, median), plus ``"transom_imported": false`` as a guard.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import urllib.parse
from typing import Any

from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.settings import OneLogin_Saml2_Settings


def main() -> None:
    spec = json.load(sys.stdin)
    acs = urllib.parse.urlsplit(spec["acs_url"])
    settings = OneLogin_Saml2_Settings({
        "strict": True,
        "sp": {"entityId": spec["sp_entity_id"],
               "assertionConsumerService": {"url": spec["acs_url"],
                                            "binding": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"},
               "NameIDFormat": "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"},
        "idp": {"entityId": spec["idp_entity_id"],
                "singleSignOnService": {"url": spec["idp_entity_id"],
                                        "binding": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"},
                "x509cert": spec["cert"]},
        "security": {"wantAssertionsSigned": True, "wantMessagesSigned": False, "requestedAuthnContext": False},
    }, sp_validation_only=True)

    def validate(document: str) -> str | None:
        request_data: dict[str, Any] = {
            "https": "on" if acs.scheme == "https" else "off", "http_host": acs.hostname,
            "server_port": acs.port or (443 if acs.scheme == "https" else 80), "script_name": acs.path,
            "get_data": {}, "post_data": {"SAMLResponse": document},
        }
        auth = OneLogin_Saml2_Auth(request_data, old_settings=settings)
        auth.process_response()
        if auth.get_errors() or not auth.is_authenticated():
            raise SystemExit(f"the peer refused a bench document: {auth.get_last_error_reason()}")
        nameid: str | None = auth.get_nameid()
        return nameid

    result: dict[str, Any] = {}
    for name, document in spec["documents"].items():
        for _ in range(20):
            validate(document)
        samples = []
        for _ in range(spec["runs"]):
            started = time.process_time()
            validate(document)
            samples.append(time.process_time() - started)
        result[name] = statistics.median(samples)
    result["transom_imported"] = any(module == "transom" or module.startswith("transom.") for module in sys.modules)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
