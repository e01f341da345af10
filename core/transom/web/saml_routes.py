"""SAML endpoints: the assertion consumer service (HTTP-POST binding) and SP metadata.

The login *start* lives in the shared ``GET /api/accounts/login/{connector_id}`` route,
which calls :func:`transom.saml.start_saml_login` for SAML connectors.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from transom import saml
from transom.errors import LoginRefused, PayloadTooLarge
from transom.login import complete_sso_login, extract_claims
from transom.loginstate import BINDING_COOKIE
from transom.models import User
from transom.runtime import Runtime
from transom.web.account_routes import login_redirect
from transom.web.deps import RuntimeDep

log = logging.getLogger("transom.saml")
router = APIRouter()


async def _read_capped_body(request: Request) -> bytes:
    """Read at most ``MAX_ACS_BODY_BYTES``; anything bigger is refused before decoding."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            too_big = int(declared) > saml.MAX_ACS_BODY_BYTES
        except ValueError:
            too_big = True
        if too_big:
            raise PayloadTooLarge(f"SAML response over {saml.MAX_ACS_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > saml.MAX_ACS_BODY_BYTES:
            raise PayloadTooLarge(f"SAML response over {saml.MAX_ACS_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/api/accounts/saml/{connector_id}/acs")
async def assertion_consumer_service(connector_id: str, request: Request, runtime: RuntimeDep) -> Response:
    saml.saml_connector(runtime, connector_id)  # 404 before reading the body
    body = await _read_capped_body(request)
    form = saml.parse_acs_form(body, request.headers.get("content-type", ""))
    binding = request.cookies.get(BINDING_COOKIE)
    return await run_in_threadpool(_consume, runtime, connector_id, form, binding)


def _consume(runtime: Runtime, connector_id: str, form: saml.AcsForm, binding: str | None) -> Response:
    connector = saml.saml_connector(runtime, connector_id)
    # CPU-only validation first: no transaction is open while xmlsec runs.
    verified = saml.verify_saml_response(runtime, connector, form.saml_response)
    # The plugin's refusals (transient NameID, foreign tenant, no subject) come before the
    # replay cache and the login state are touched, so such a refusal writes nothing.
    claims = extract_claims(runtime, connector, verified.payload)
    with runtime.db.transaction() as db:
        next_path = saml.accept_response(
            db, runtime, connector=connector, verified=verified, binding=binding, relay_state=form.relay_state
        )
    result = complete_sso_login(runtime, connector=connector, payload=verified.payload, claims=claims)
    with runtime.db.transaction() as db:
        user = db.scalar(select(User).where(User.account_id == result.account_id, User.id == result.user_id))
        if user is None:  # deleted between the two transactions
            raise LoginRefused("your user could not be found; sign in again")
        return login_redirect(runtime, db, user=user, connector_id=connector.id, next_path=next_path)


@router.get("/api/accounts/saml/{connector_id}/metadata")
def sp_metadata(connector_id: str, runtime: RuntimeDep) -> Response:
    connector = saml.saml_connector(runtime, connector_id)
    return Response(
        content=saml.sp_metadata_xml(runtime, connector),
        media_type="application/samlmetadata+xml",
        headers={"content-disposition": f'inline; filename="transom-{connector.id}-metadata.xml"'},
    )
