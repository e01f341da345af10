"""The input policy (transom.textpolicy) for every route: path and query parameters, form
fields and JSON bodies, checked before the endpoint runs. SCIM bodies are checked by the
SCIM router after its own strict parse (scim/body.py), and the SAML ACS form by its own
strict parse (saml/form.py, ``parse_form``), so neither is parsed twice."""

from __future__ import annotations

import contextlib
import json

from fastapi import Request

from transom.textpolicy import IDENTIFIER_FIELDS, check, check_json

#: the SAML ACS path up to the connector id
ACS_PREFIX = "/api/accounts/saml/"


def _is_acs(path: str) -> bool:
    """``/api/accounts/saml/{connector_id}/acs``: its body is parsed and checked by saml.parse_acs_form."""
    return path.startswith(ACS_PREFIX) and path.endswith("/acs") and path.count("/") == 5


async def check_request_text(request: Request) -> None:
    for name, value in request.path_params.items():
        check(str(value), f"path parameter '{name}'", identifier=True)
    for name, value in request.query_params.multi_items():
        label = check(name, "a query parameter name", identifier=True)
        check(value, f"query parameter '{label[:60]}'", identifier=label.lower() in IDENTIFIER_FIELDS)
    ctype = request.headers.get("content-type", "").lower()
    is_form = ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data"))
    if not is_form and "json" not in ctype:
        return  # no body this policy reads (the URL is not even built: a GET's hot path)
    path = request.url.path
    if path.startswith("/api/scim") or _is_acs(path):
        return
    if is_form:
        # cache the raw body, so an endpoint that reads the stream still can (SAML ACS); when
        # FastAPI already parsed the form for Form() parameters, form() returns that instead
        with contextlib.suppress(RuntimeError):
            await request.body()
        try:
            form = await request.form()
        except Exception:
            return
        for name, value in form.multi_items():
            label = check(name, "a form field name", identifier=True)
            if isinstance(value, str):
                check(value, f"form field '{label[:60]}'", identifier=label.lower() in IDENTIFIER_FIELDS)
    else:
        raw = await request.body()
        try:
            data = json.loads(raw)
        except ValueError:
            return  # not JSON: the endpoint's own parser answers
        check_json(data, "body", identifier_keys=IDENTIFIER_FIELDS, all_identifiers=path.startswith("/api/admin"))
