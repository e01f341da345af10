"""The development IdP's HTTP endpoints, mounted under ``/dev-idp`` by ``transom demo`` only.

One page (the "picker") serves both protocols: it lists the demo people with the claims each
would send, editable, and posts the choice to ``/dev-idp/sign-in``, which answers the SP the
way the request asked (OIDC: a code on the redirect URI; SAML: a signed Response POSTed to
the ACS).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from transom.devidp import oidc
from transom.devidp.idp import (
    ENTRA_AUTHORITY_PATH,
    OIDC_ISSUER_PATH,
    PREFIX,
    SAML_METADATA_PATH,
    SAML_SSO_PATH,
    SIGN_IN_PATH,
    DevIdp,
    OidcFlavor,
    PendingOidc,
    PendingSaml,
)
from transom.devidp.people import DEMO_PEOPLE, MAX_FIELD_CHARS, find_person
from transom.devidp.saml_request import SamlRequestError, pending_from_redirect
from transom.errors import BadRequest
from transom.testing.oauth import TokenError
from transom.web.templates import templates

log = logging.getLogger("transom.devidp")

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _picker(request: Request, idp: DevIdp, key: str, pending: PendingOidc | PendingSaml) -> Response:
    if isinstance(pending, PendingOidc):
        protocol, who = "OpenID Connect", pending.client.label
    else:
        protocol, who = "SAML 2.0", pending.sp.label
    return templates.TemplateResponse(
        request,
        "devidp_pick.html",
        {"people": pending.people, "request_key": key, "protocol": protocol, "who": who,
         "action": SIGN_IN_PATH, "max_chars": MAX_FIELD_CHARS},
        headers=_NO_STORE,
    )


def _auto_post(request: Request, *, action: str, fields: dict[str, str], what: str) -> Response:
    return templates.TemplateResponse(
        request, "devidp_post.html", {"action": action, "fields": fields, "what": what}, headers=_NO_STORE
    )


def build_router(idp: DevIdp) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get(PREFIX)
    def overview(request: Request) -> Response:
        return templates.TemplateResponse(request, "devidp_overview.html", {"idp": idp, "people": DEMO_PEOPLE})

    # -- OIDC: an Okta custom authorization server, and (when a tenant is set) Entra v2 --

    okta_paths = {
        "discovery": f"{OIDC_ISSUER_PATH}/.well-known/openid-configuration",
        "keys": f"{OIDC_ISSUER_PATH}/v1/keys",
        "authorize": f"{OIDC_ISSUER_PATH}/v1/authorize",
        "token": f"{OIDC_ISSUER_PATH}/v1/token",
    }
    _add_oidc_routes(router, idp, "okta", okta_paths)
    if idp.entra_tenant_id is not None:
        tenant = f"{ENTRA_AUTHORITY_PATH}/{idp.entra_tenant_id}"
        entra_paths = {
            "discovery": f"{tenant}/v2.0/.well-known/openid-configuration",
            "keys": f"{tenant}/discovery/v2.0/keys",
            "authorize": f"{tenant}/oauth2/v2.0/authorize",
            "token": f"{tenant}/oauth2/v2.0/token",
        }
        _add_oidc_routes(router, idp, "entra", entra_paths)

    # -- SAML 2.0 --------------------------------------------------------------------------

    @router.get(SAML_METADATA_PATH)
    def saml_metadata() -> Response:
        from transom.devidp.saml_response import idp_metadata

        return Response(idp_metadata(idp), media_type="application/samlmetadata+xml")

    @router.get(SAML_SSO_PATH)
    def saml_sso(request: Request) -> Response:
        saml_request = request.query_params.get("SAMLRequest")
        if not saml_request:
            raise BadRequest("the development IdP needs a SAMLRequest (HTTP-Redirect binding)")
        try:
            pending = pending_from_redirect(
                idp, saml_request=saml_request, relay_state=request.query_params.get("RelayState")
            )
        except SamlRequestError as exc:
            log.info("dev idp: AuthnRequest refused: %s", exc)
            raise BadRequest(
                f"the development IdP refused the AuthnRequest: {exc}",
                hint="the SAML connector must be the demo's generic_saml connector",
            ) from None
        return _picker(request, idp, idp.pending.put(pending), pending)

    # -- the person picked ------------------------------------------------------------------

    @router.post(SIGN_IN_PATH)
    def sign_in(
        request: Request,
        request_key: Annotated[str, Form(max_length=100)],
        subject: Annotated[str, Form(max_length=100)] = "",
        space_name: Annotated[str, Form(max_length=MAX_FIELD_CHARS)] = "",
        space_role: Annotated[str, Form(max_length=MAX_FIELD_CHARS)] = "",
        timezone: Annotated[str, Form(max_length=MAX_FIELD_CHARS)] = "",
        groups: Annotated[str, Form(max_length=MAX_FIELD_CHARS)] = "",
        cancel: Annotated[str | None, Form(max_length=10)] = None,
    ) -> Response:
        pending = idp.pending.take(request_key)
        if pending is None:
            raise BadRequest(
                "this development IdP sign-in page has expired or was already used",
                hint="start again from the Transom sign-in page",
            )
        if cancel is not None:
            return _cancelled(request, pending)
        person = find_person(subject, pending.people)
        if person is None:
            raise BadRequest("unknown demo person")
        try:
            person = person.with_choices(
                space_name=space_name, space_role=space_role, timezone=timezone, groups=groups
            )
        except ValueError as exc:
            raise BadRequest(f"the claims are not valid: {exc}") from None
        if isinstance(pending, PendingOidc):
            code = oidc.issue_code(idp, pending, person)
            log.info("dev idp: OIDC code issued for client=%s", pending.client.client_id)
            return _oidc_answer(request, pending, {"code": code})
        from transom.devidp.saml_response import signed_response

        log.info("dev idp: SAML response issued for sp=%s", pending.sp.entity_id)
        fields = {"SAMLResponse": signed_response(idp, pending, person)}
        if pending.relay_state is not None:
            fields["RelayState"] = pending.relay_state
        return _auto_post(request, action=pending.sp.acs_url, fields=fields, what="SAML response")

    return router


def _add_oidc_routes(router: APIRouter, idp: DevIdp, flavor: OidcFlavor, paths: dict[str, str]) -> None:
    @router.get(paths["discovery"])
    def openid_configuration() -> dict[str, Any]:
        return oidc.discovery_document(idp, flavor)

    @router.get(paths["keys"])
    def keys() -> dict[str, Any]:
        return oidc.jwks(idp)

    @router.get(paths["authorize"])
    def authorize(request: Request) -> Response:
        params = dict(request.query_params)
        try:
            pending = oidc.parse_authorize_request(idp, params, flavor=flavor)
        except oidc.AuthorizeError as exc:
            log.info("dev idp: authorization request refused: %s", exc.error)
            if not exc.redirectable:
                raise BadRequest(
                    f"the development IdP refused the sign-in request: {exc.description}",
                    hint="the connector's client_id and the callback URL must be the demo's",
                ) from None
            query = {"error": exc.error, "error_description": exc.description}
            if params.get("state"):
                query["state"] = params["state"]
            return RedirectResponse(f"{params['redirect_uri']}?{urlencode(query)}", status_code=303)
        return _picker(request, idp, idp.pending.put(pending), pending)

    @router.post(paths["token"])
    async def token(request: Request) -> Response:
        try:
            raw_form = await request.form()
            form = {k: v for k, v in raw_form.items() if isinstance(v, str)}
            body = oidc.exchange_code(
                idp, authorization=request.headers.get("authorization"), form=form, flavor=flavor
            )
        except TokenError as exc:
            log.info("dev idp: token request refused: %s", exc.error)
            headers = dict(_NO_STORE)
            if exc.status == 401:
                headers["WWW-Authenticate"] = 'Basic realm="dev-idp"'
            return JSONResponse(
                {"error": exc.error, "error_description": exc.description}, status_code=exc.status,
                headers=headers,
            )
        return JSONResponse(body, headers=_NO_STORE)


def _cancelled(request: Request, pending: PendingOidc | PendingSaml) -> Response:
    if isinstance(pending, PendingOidc):
        return _oidc_answer(
            request, pending,
            {"error": "access_denied", "error_description": "the user cancelled at the development IdP"},
        )
    return RedirectResponse("/login", status_code=303)


def _oidc_answer(request: Request, pending: PendingOidc, fields: dict[str, str]) -> Response:
    if pending.state is not None:
        fields = {**fields, "state": pending.state}
    if pending.response_mode == "form_post":
        return _auto_post(request, action=pending.redirect_uri, fields=fields, what="sign-in result")
    separator = "&" if "?" in pending.redirect_uri else "?"
    return RedirectResponse(f"{pending.redirect_uri}{separator}{urlencode(fields)}", status_code=303)
