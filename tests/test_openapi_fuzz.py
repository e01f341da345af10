"""A bounded schemathesis run over the OpenAPI schema the app serves (admin API, login and
account routes, SCIM): generated requests, valid and invalid, with an admin token. Zero 5xx
(issue 12), except a 501 that the operation itself documents: RFC 7644 §3.12's answer for an
operation the service provider does not support (SCIM group writes: groups come from group
sync). The SCIM string fields have their own fuzzing in test_fuzz_text.py."""

from __future__ import annotations

from collections import Counter
from typing import Any

import schemathesis
from conftest import client_for
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from scim_support import make_tenants

from transom import directory
from transom.web.app import create_app

#: per operation and mode: 19 operations x 2 modes x 6, about 10 s of CPU on one core
EXAMPLES = 6


def test_no_5xx_anywhere_in_the_served_openapi(make_runtime: Any) -> None:
    tenants = make_tenants(make_runtime, server={"api_rate_limit": 0, "password_attempts_per_address": 0})
    with tenants.runtime.db.transaction() as db:
        acme = directory.get_account(db, name="acme")
        token = directory.create_token(db, account=acme, permissions=["admin"], name="fuzz")
        directory.create_group(db, account=acme, name="engineering")
    app = create_app(tenants.runtime)
    with client_for(tenants.runtime) as client:
        document = client.get("/openapi.json").json()
    #: (path, method) -> the statuses that operation documents
    documented = {(path, method.upper()): set(op.get("responses", {}))
                  for path, item in document["paths"].items() for method, op in item.items() if isinstance(op, dict)}
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15  # the admin API and the account routes are in the schema
    statuses: Counter[int] = Counter()
    server_errors: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                response = case.call(headers={"Authorization": f"Bearer {token}"})
                statuses[response.status_code] += 1
                declared_not_implemented = (response.status_code == 501 and "501" in documented.get(
                    (operation.path, operation.method.upper()), set()))
                if response.status_code >= 500 and not declared_not_implemented:
                    server_errors.append(f"{operation.label}: {response.status_code} {response.text[:200]}")

            try:
                run()
            except Unsatisfiable:  # nothing to generate (e.g. no invalid variant of an empty request)
                continue
    assert not server_errors, "\n".join(server_errors[:10])
    assert sum(statuses.values()) > len(operations) * 2  # requests were really made
    assert statuses[200] + statuses[201] > 0 and statuses[400] > 0  # accepted and refused ones
