"""The peers bench/login_bench.py measures Transom against, in one Starlette app served by its
own uvicorn worker (same core, same settings as Transom's):

* ``/authlib/login`` + ``/authlib/callback``: an OIDC relying party written the way Authlib's
  Starlette integration documents it: state, nonce and PKCE in a signed-cookie session
  (Starlette's SessionMiddleware), code exchange and id_token verification by Authlib, the
  user (sub, email, groups) kept in the session cookie. No database.
* ``/saml/acs``: stock python3-saml in strict mode (signed assertions required, schema
  validation on, no schema cache), the NameID kept in the session cookie. No database, so
  no replay cache and no InResponseTo check.

Configured through the environment (``PEER_*``, set by login_bench.py).
"""

from __future__ import annotations

import os
import ssl
from typing import Any

from authlib.integrations.starlette_client import OAuth
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route


def create() -> Starlette:
    base = os.environ["PEER_BASE_URL"]
    port = base.rsplit(":", 1)[1]
    oauth = OAuth()
    oauth.register(
        "idp", client_id=os.environ["PEER_CLIENT_ID"], client_secret=os.environ["PEER_CLIENT_SECRET"],
        server_metadata_url=f"{os.environ['PEER_IDP_URL']}/.well-known/openid-configuration",
        # Authlib opens a new httpx.AsyncClient per call; a shared SSL context keeps that from
        # loading the CA bundle every time (~100 ms of CPU on this machine), as a tuned app would.
        client_kwargs={"scope": "openid email profile groups", "code_challenge_method": "S256",
                       "verify": ssl.create_default_context()},
    )
    saml_settings = OneLogin_Saml2_Settings({
        "strict": True,
        "sp": {"entityId": f"{base}/saml/metadata",
               "assertionConsumerService": {"url": f"{base}/saml/acs",
                                            "binding": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"},
               "NameIDFormat": "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"},
        "idp": {"entityId": os.environ["PEER_SAML_IDP_ENTITY_ID"],
                "singleSignOnService": {"url": os.environ["PEER_SAML_IDP_SSO_URL"],
                                        "binding": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"},
                "x509cert": os.environ["PEER_SAML_IDP_CERT"]},
        "security": {"wantAssertionsSigned": True, "wantMessagesSigned": False, "requestedAuthnContext": False},
    }, sp_validation_only=True)

    async def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok")

    async def oidc_login(request: Request) -> Response:
        answer: Response = await oauth.idp.authorize_redirect(request, f"{base}/authlib/callback")
        return answer

    async def oidc_callback(request: Request) -> Response:
        token = await oauth.idp.authorize_access_token(request)
        user = token["userinfo"]
        request.session["user"] = {"sub": user["sub"], "email": user.get("email"), "groups": user.get("groups", [])}
        return RedirectResponse("/", status_code=303)

    def validate(form: dict[str, Any]) -> str | None:
        request_data = {"https": "off", "http_host": "127.0.0.1", "server_port": port,
                        "script_name": "/saml/acs", "get_data": {}, "post_data": form}
        auth = OneLogin_Saml2_Auth(request_data, old_settings=saml_settings)
        auth.process_response()
        if auth.get_errors() or not auth.is_authenticated():
            return None
        nameid: str | None = auth.get_nameid()
        return nameid

    async def saml_acs(request: Request) -> Response:
        form = dict(await request.form())
        nameid = await run_in_threadpool(validate, form)
        if nameid is None:
            return PlainTextResponse("refused", status_code=403)
        request.session["saml"] = {"nameid": nameid}
        return RedirectResponse("/", status_code=303)

    return Starlette(
        routes=[Route("/healthz", healthz), Route("/authlib/login", oidc_login),
                Route("/authlib/callback", oidc_callback), Route("/saml/acs", saml_acs, methods=["POST"])],
        middleware=[Middleware(SessionMiddleware, secret_key=os.environ["PEER_SESSION_SECRET"], https_only=False)],
    )
