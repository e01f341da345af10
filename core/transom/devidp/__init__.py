"""A development identity provider that speaks OIDC and SAML 2.0, for ``transom demo``.

It is mounted into the host app only by the demo (``create_app(..., extra_routers=...)``),
lets a person pick a demo user and edit the claims it sends, and signs real id_tokens and
SAML responses with a key generated at start-up. It exists so a newcomer can watch the
whole SSO flow on localhost; it authenticates nobody and must never face a network.

Keys, id_tokens and SAML responses come from the same fake-IdP kernel as the plugin kit
(``transom.testing.keys``, ``.jwt``, ``.saml``): the demo signs with the code the tests trust.
"""

from transom.devidp.idp import DevIdp, OidcClient, SamlServiceProvider
from transom.devidp.routes import build_router
from transom.testing.keys import SigningKey

__all__ = ["DevIdp", "OidcClient", "SamlServiceProvider", "SigningKey", "build_router"]
