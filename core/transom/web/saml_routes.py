"""SAML endpoints: the assertion consumer service (HTTP-POST binding) and SP metadata.

The login *start* lives in the shared ``GET /api/accounts/login/{connector_id}`` route. The
ACS is HTTP -> verify -> complete -> response: the checks live in ``transom.saml``,
everything after them in :func:`transom.login.complete_login`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from transom import login_activity, saml
from transom.errors import PayloadTooLarge
from transom.login import complete_login
from transom.loginstate import BINDING_COOKIE
from transom.runtime import Runtime
from transom.web.account_routes import session_redirect
from transom.web.deps import RuntimeDep, runtime_of
from transom.web.fastlane import Direct

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
    with login_activity.attempt(runtime):  # the console's login activity records a refusal
        verified = saml.verify_saml(runtime, saml.saml_connector(runtime, connector_id), form, binding=binding)
        return session_redirect(runtime, complete_login(runtime, verified))


async def _acs_direct(request: Request) -> Response:
    """The ACS through the fast lane (web/fastlane.py)."""
    return await assertion_consumer_service(request.path_params["connector_id"], request, runtime_of(request))


DIRECT: dict[Callable[..., Any], Direct] = {assertion_consumer_service: _acs_direct}


@router.get("/api/accounts/saml/{connector_id}/metadata")
def sp_metadata(connector_id: str, runtime: RuntimeDep) -> Response:
    connector = saml.saml_connector(runtime, connector_id)
    return Response(
        content=saml.sp_metadata_xml(runtime, connector),
        media_type="application/samlmetadata+xml",
        headers={"content-disposition": f'inline; filename="transom-{connector.id}-metadata.xml"'},
    )
