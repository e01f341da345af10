"""Okta over OpenID Connect: org or custom authorization server, and the mapping of a
verified id_token to :class:`~transom.connector.Claims`. No I/O, no crypto.

* Org authorization server (``domain`` only): issuer ``https://{domain}``, endpoints
  ``https://{domain}/oauth2/v1/authorize|token|keys``.
* Custom authorization server (``issuer`` set, e.g. ``https://{domain}/oauth2/default``):
  endpoints ``{issuer}/v1/authorize|token|keys``. ``issuer`` wins when both are set.
* ``authorization_endpoint`` / ``token_endpoint`` / ``jwks_uri`` override single URLs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from transom.connector import Claims, Connector, GroupsClaim, OidcProvider, as_str_list
from transom.errors import LoginRefused

if TYPE_CHECKING:
    from transom_okta import OktaSettings

DEFAULT_SCOPES = ("openid", "profile", "email")


def org_url(domain: str) -> str:
    """``acme.okta.com`` or an explicit ``http(s)://host[:port]`` (local fakes), no slash."""
    domain = domain.strip().rstrip("/")
    return domain if domain.startswith(("https://", "http://")) else f"https://{domain}"


def issuer(settings: OktaSettings) -> str:
    if settings.issuer:
        return settings.issuer.rstrip("/")
    assert settings.domain is not None  # the settings validator requires domain or issuer
    return org_url(settings.domain)


def endpoint_base(settings: OktaSettings) -> str:
    """Custom AS endpoints hang off the issuer; the org AS's off ``/oauth2``."""
    return f"{issuer(settings)}/v1" if settings.issuer else f"{issuer(settings)}/oauth2/v1"


def scopes(connector: Connector, settings: OktaSettings) -> tuple[str, ...]:
    if settings.scopes:
        return tuple(settings.scopes)
    if connector.syncs_groups:
        # Okta puts the groups claim in the id_token only when the 'groups' scope is asked for.
        return (*DEFAULT_SCOPES, "groups")
    return DEFAULT_SCOPES


def oidc_provider(connector: Connector, settings: OktaSettings) -> OidcProvider:
    base = endpoint_base(settings)
    assert settings.client_id is not None  # the settings validator requires it for OIDC
    return OidcProvider(
        issuers=(issuer(settings),),
        authorization_endpoint=settings.authorization_endpoint or f"{base}/authorize",
        token_endpoint=settings.token_endpoint or f"{base}/token",
        jwks_uri=settings.jwks_uri or f"{base}/keys",
        client_id=settings.client_id,
        client_secret=settings.client_secret.get_secret_value() if settings.client_secret else None,
        scopes=scopes(connector, settings),
        token_endpoint_auth_method=settings.token_endpoint_auth_method,
    )


def _text(payload: Mapping[str, Any], name: str) -> str | None:
    value = payload.get(name)
    return value if isinstance(value, str) and value else None


def claims(connector: Connector, settings: OktaSettings, payload: Mapping[str, Any]) -> Claims:
    sub = _text(payload, "sub")
    if sub is None:
        raise LoginRefused("your identity provider did not say who you are",
                           hint="the Okta id_token has no sub claim", reason="oidc.subject_claim_missing")
    groups_value = payload.get(settings.groups_claim)
    groups = GroupsClaim.absent() if groups_value is None else GroupsClaim.present(as_str_list(groups_value))
    return Claims(
        subject=sub,
        email=_text(payload, "email"),
        # Okta sets email_verified from the user's verified primary e-mail inside the org.
        email_verified=payload.get("email_verified") is True,
        user_name=_text(payload, "preferred_username"),
        display_name=_text(payload, "name"),
        given_name=_text(payload, "given_name"),
        family_name=_text(payload, "family_name"),
        groups=groups,
    )
