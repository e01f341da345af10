"""What the development IdP knows: its base URL and key, the relying parties it serves and
the sign-ins in flight."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from transom.devidp.people import DEMO_PEOPLE, DemoPerson
from transom.devidp.state import TtlStore
from transom.testing.keys import SigningKey

PREFIX = "/dev-idp"
#: laid out like an Okta custom authorization server, so the ``okta`` connector type works
#: against it unchanged with ``issuer = "<base_url>/dev-idp/oauth2/default"``
OIDC_ISSUER_PATH = f"{PREFIX}/oauth2/default"
#: laid out like Microsoft Entra ID's login host, so the ``azure_ad`` connector type works
#: against it unchanged with ``authority = "<base_url>/dev-idp/entra"`` (v2 endpoints)
ENTRA_AUTHORITY_PATH = f"{PREFIX}/entra"
SAML_METADATA_PATH = f"{PREFIX}/saml/metadata"
SAML_SSO_PATH = f"{PREFIX}/saml/sso"
SIGN_IN_PATH = f"{PREFIX}/sign-in"

PENDING_TTL_SECONDS = 600
CODE_TTL_SECONDS = 60
ID_TOKEN_TTL_SECONDS = 3600


#: which real IdP's OIDC layout and claims a client gets
OidcFlavor = Literal["okta", "entra"]


@dataclass(frozen=True)
class OidcClient:
    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]
    #: who the picker page says is asking (e.g. the connector id)
    label: str
    flavor: OidcFlavor = "okta"


@dataclass(frozen=True)
class SamlServiceProvider:
    entity_id: str
    acs_url: str
    label: str


@dataclass(frozen=True)
class PendingOidc:
    client: OidcClient
    redirect_uri: str
    state: str | None
    nonce: str | None
    code_challenge: str
    scope: str
    response_mode: str
    #: the people the picker offers (Entra: the same people with GUIDs and the tenant's domain)
    people: tuple[DemoPerson, ...] = DEMO_PEOPLE


@dataclass(frozen=True)
class PendingSaml:
    sp: SamlServiceProvider
    request_id: str
    relay_state: str | None
    people: tuple[DemoPerson, ...] = DEMO_PEOPLE


@dataclass(frozen=True)
class IssuedCode:
    client_id: str
    redirect_uri: str
    code_challenge: str
    #: the id_token claims, decided when the person clicked "Sign in"
    claims: dict[str, object]
    scope: str


class DevIdp:
    def __init__(
        self,
        *,
        base_url: str,
        key: SigningKey,
        oidc_clients: tuple[OidcClient, ...] = (),
        saml_service_providers: tuple[SamlServiceProvider, ...] = (),
        entra_tenant_id: str | None = None,
        entra_email_domain: str = "contoso.example",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        #: the one tenant GUID the Entra layout serves (None: no Entra endpoints)
        self.entra_tenant_id = entra_tenant_id
        self.entra_email_domain = entra_email_domain
        self.key = key
        self.oidc_clients = {c.client_id: c for c in oidc_clients}
        self.saml_service_providers = {sp.entity_id: sp for sp in saml_service_providers}
        self.pending: TtlStore[PendingOidc | PendingSaml] = TtlStore(ttl_seconds=PENDING_TTL_SECONDS)
        self.codes: TtlStore[IssuedCode] = TtlStore(ttl_seconds=CODE_TTL_SECONDS)

    @property
    def issuer(self) -> str:
        return self.base_url + OIDC_ISSUER_PATH

    @property
    def entra_authority(self) -> str:
        return self.base_url + ENTRA_AUTHORITY_PATH

    @property
    def entra_issuer(self) -> str:
        """The v2 issuer of the tenant: ``{authority}/{tid}/v2.0``."""
        return f"{self.entra_authority}/{self.entra_tenant_id}/v2.0"

    def issuer_for(self, flavor: OidcFlavor) -> str:
        return self.entra_issuer if flavor == "entra" else self.issuer

    @property
    def saml_entity_id(self) -> str:
        return self.base_url + SAML_METADATA_PATH

    @property
    def saml_sso_url(self) -> str:
        return self.base_url + SAML_SSO_PATH
