"""Value types shared by the host and connector plugins.

Plugins import only from this module, ``transom.errors`` and ``transom.hookspecs``.
``Claims`` is the one canonical identity every protocol is translated into.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from typing_extensions import TypeVar

Protocol = Literal["oidc", "saml"]

#: capability a connector type declares when the host may sync group memberships from it
GROUP_SYNC = "group_sync"


@dataclass(frozen=True)
class ConnectorType:
    """What a plugin provides: returned by ``transom_connector_type``."""

    name: str
    #: protocols the type can speak; when several, the settings model has a ``protocol`` field
    protocols: tuple[Protocol, ...]
    settings_model: type[BaseModel]
    capabilities: frozenset[str] = frozenset()
    #: label of the login button when the operator sets no ``name``
    default_button_label: str = "Sign in"
    version: str = "0"
    #: capabilities of one connector, from its validated settings, when they depend on them
    #: (``generic_oidc`` syncs groups only when ``groups_claim`` is set); None: ``capabilities``
    settings_capabilities: Callable[[Any], frozenset[str]] | None = None

    def capabilities_of(self, settings: BaseModel) -> frozenset[str]:
        if self.settings_capabilities is None:
            return self.capabilities
        return frozenset(self.settings_capabilities(settings))


class ProvisioningSettings(BaseModel):
    """``[connectors.provisioning]``: host-owned, the same keys for every connector type."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    space_attribute: str = "space_name"
    role_attribute: str = "space_role"
    timezone_attribute: str = "timezone"
    account_role_attribute: str | None = None
    default_space: str | None = None
    default_space_role: str = "Space Member"
    update_profile_on_login: bool = True
    group_sync: bool = True


SettingsT = TypeVar("SettingsT", bound=BaseModel, covariant=True, default=BaseModel)


@dataclass(frozen=True)
class Connector(Generic[SettingsT]):
    """One configured ``[[connectors]]`` instance, settings already validated.

    Generic in its settings model so that a plugin can annotate its hooks with
    ``connector: Connector[MySettings]``: the host routes every hook by ``connector.type``,
    so the settings a plugin receives are always an instance of the model its
    ``ConnectorType`` declared (no ``isinstance`` check needed).
    """

    id: str
    type: str
    account: str
    name: str
    email_domains: tuple[str, ...]
    settings: SettingsT
    provisioning: ProvisioningSettings
    protocol: Protocol
    capabilities: frozenset[str] = frozenset()

    @property
    def syncs_groups(self) -> bool:
        return GROUP_SYNC in self.capabilities and self.provisioning.group_sync


class GroupsState(enum.Enum):
    PRESENT = "present"  # a list, possibly empty: apply it
    ABSENT = "absent"  # no groups claim at all: change nothing
    OVERAGE = "overage"  # too many for the token: resolve via transom_lookup_group_ids


@dataclass(frozen=True)
class GroupsClaim:
    state: GroupsState
    ids: tuple[str, ...] = ()
    #: for OVERAGE: where the IdP says the full list lives (informational; plugins rebuild the URL)
    source: str | None = None

    @classmethod
    def present(cls, ids: Sequence[str]) -> GroupsClaim:
        # a list comprehension, then a tuple: the same str() per id, in order, at half the
        # cost of a generator for 200 ids (map(str, ...) is slower still on CPython 3.11)
        return cls(GroupsState.PRESENT, tuple([str(i) for i in ids]))

    @classmethod
    def absent(cls) -> GroupsClaim:
        return cls(GroupsState.ABSENT)

    @classmethod
    def overage(cls, source: str | None = None) -> GroupsClaim:
        return cls(GroupsState.OVERAGE, (), source)


@dataclass(frozen=True)
class Claims:
    """The canonical identity a plugin extracts from a verified IdP payload."""

    #: immutable subject: Entra ``tid:oid``, Okta ``sub``, SAML persistent NameID
    subject: str
    email: str | None = None
    email_verified: bool = False
    #: what SCIM calls ``userName``: Entra UPN, Okta login
    user_name: str | None = None
    display_name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    #: The provisioning values below are read by the host from the verified payload, using
    #: the connector's ``[connectors.provisioning]`` attribute names; a plugin leaves them
    #: empty. A plugin whose IdP cannot send them under a configurable name may set them
    #: (an override): the host keeps every value a plugin set and fills only empty ones.
    timezone: str | None = None
    #: raw values of the space/role/account-role attributes (each may hold commas)
    space_names: tuple[str, ...] = ()
    space_roles: tuple[str, ...] = ()
    account_roles: tuple[str, ...] = ()
    groups: GroupsClaim = field(default_factory=GroupsClaim.absent)


@dataclass(frozen=True)
class OidcProvider:
    """Where an OIDC IdP lives: returned by ``transom_oidc_provider``."""

    #: every issuer value accepted, compared exactly (Entra: v1 and v2 forms)
    issuers: tuple[str, ...]
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    client_id: str
    client_secret: str | None
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    #: claim that must hold one of ``allowed_tenants`` (Entra ``tid``); None: no tenant check
    tenant_claim: str | None = None
    allowed_tenants: tuple[str, ...] = ()
    #: extra query parameters for the authorization request
    extra_authorize_params: Mapping[str, str] = field(default_factory=dict)
    #: how the client authenticates at the token endpoint (RFC 6749 §2.3.1)
    token_endpoint_auth_method: Literal["client_secret_post", "client_secret_basic"] = (
        "client_secret_post"
    )
    #: the host fetches ``{issuers[0]}/.well-known/openid-configuration`` (or ``discovery_url``)
    #: and fills every endpoint left empty, the UserInfo endpoint and the signing algorithms;
    #: the document's ``issuer`` must equal ``issuers[0]`` exactly (docs/oidc.md, Discovery)
    discovery: bool = False
    #: where the discovery document lives when it is not under the issuer (implies discovery)
    discovery_url: str | None = None
    #: UserInfo endpoint; empty: none (or the discovery document's)
    userinfo_endpoint: str = ""
    #: id_token signing algorithms accepted, each inside the host's asymmetric allow-list
    #: (``transom.oidc.algorithms.ALLOWED_ALGORITHMS``); empty: ``RS256``, or with discovery the
    #: allowed ones the document advertises
    signing_algorithms: tuple[str, ...] = ()
    #: claims the connector maps the user's profile from: when the id_token lacks any of them
    #: and a UserInfo endpoint is known, the host fetches UserInfo with the access token and
    #: adds the claims the id_token does not carry (never the protocol claims or the subject)
    profile_claims: tuple[str, ...] = ("email", "preferred_username", "name")
    #: the claim users are keyed on: never taken from UserInfo
    subject_claim: str = "sub"

    @classmethod
    def discover(
        cls,
        issuer: str,
        *,
        client_id: str,
        client_secret: str | None,
        **options: Any,
    ) -> OidcProvider:
        """A provider the host completes from the issuer's discovery document: the plugin
        computes no URL. ``options`` are any other fields (``scopes``, ``profile_claims``,
        an endpoint override...)."""
        fields: dict[str, Any] = {"authorization_endpoint": "", "token_endpoint": "", "jwks_uri": "",
                                  "discovery": True, **options}
        return cls(issuers=(issuer,), client_id=client_id, client_secret=client_secret, **fields)


#: the statuses of a :class:`ProbeCheck`; only ``fail`` makes a connector's probe fail
PROBE_STATUSES = ("ok", "info", "warn", "fail")


@dataclass(frozen=True)
class ProbeCheck:
    """One line of a connector's self-check (``transom check-config --probe``, the admin API
    and console): the host's own (discovery, JWKS, metadata, certificates, clock) and what a
    plugin's ``transom_probe`` adds (Entra: a Microsoft Graph app token)."""

    #: what was checked: ``discovery``, ``jwks``, ``metadata``, ``certificate``, ``clock`` or
    #: the plugin's own word (``graph``)
    kind: str
    #: one of :data:`PROBE_STATUSES`
    status: str
    #: one line for an operator; never a secret or token contents
    detail: str
    url: str | None = None


@dataclass(frozen=True)
class SamlIdp:
    """Where a SAML IdP lives: returned by ``transom_saml_idp``. The host merges metadata."""

    entity_id: str | None
    sso_url: str | None
    certificates: tuple[str, ...] = ()
    metadata_file: str | None = None
    metadata_url: str | None = None
    allow_idp_initiated: bool = False
    want_messages_signed: bool = False
    #: NameID format to request; None sends no NameIDPolicy format (what Entra wants)
    name_id_format: str | None = None


class SamlSettings(BaseModel):
    """The SAML keys every SAML-speaking connector type accepts (interfaces.md). Unknown
    keys are refused so that a typo in the config is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid")

    idp_entity_id: str | None = None
    idp_sso_url: str | None = None
    idp_certificates: list[str] = Field(default_factory=list)
    idp_certificate_file: str | None = None
    idp_metadata_file: str | None = None
    idp_metadata_url: str | None = None
    allow_idp_initiated: bool = False
    want_messages_signed: bool = False

    def saml_idp(self, *, name_id_format: str | None = None) -> SamlIdp:
        certs = list(self.idp_certificates)
        if self.idp_certificate_file:
            with open(self.idp_certificate_file, encoding="utf-8") as f:
                certs.append(f.read())
        return SamlIdp(
            entity_id=self.idp_entity_id,
            sso_url=self.idp_sso_url,
            certificates=tuple(certs),
            metadata_file=self.idp_metadata_file,
            metadata_url=self.idp_metadata_url,
            allow_idp_initiated=self.allow_idp_initiated,
            want_messages_signed=self.want_messages_signed,
            name_id_format=name_id_format,
        )

    def check_saml_sources(self) -> None:
        has_certs = bool(self.idp_certificates or self.idp_certificate_file)
        has_meta = bool(self.idp_metadata_file or self.idp_metadata_url)
        if not has_meta and not (self.idp_entity_id and self.idp_sso_url and has_certs):
            raise ValueError(
                "SAML needs idp_metadata_file / idp_metadata_url, or idp_entity_id, "
                "idp_sso_url and idp_certificates / idp_certificate_file"
            )


def saml_attribute_values(payload: Mapping[str, Any], name: str) -> list[str]:
    """Values of one SAML attribute from a ``saml`` payload, exact name first, then
    case-insensitively; blanks around names are ignored (Entra's sample ``groups.link``)."""
    attributes: Mapping[str, Sequence[str]] = payload.get("attributes", {})
    if name in attributes:
        return [str(v) for v in attributes[name]]
    wanted = name.strip().lower()
    for key, values in attributes.items():
        if key.strip().lower() == wanted:
            return [str(v) for v in values]
    return []


def saml_first_value(payload: Mapping[str, Any], name: str | None) -> str | None:
    """The first non-blank value of a SAML attribute, trimmed; None when absent or unnamed."""
    if not name:
        return None
    values = [v for v in saml_attribute_values(payload, name) if v.strip()]
    return values[0].strip() if values else None


def saml_has_attribute(payload: Mapping[str, Any], name: str) -> bool:
    """Whether the response carries the attribute at all (an empty one still counts: for
    groups, present-and-empty means "member of nothing", absent means "not sent")."""
    attributes: Mapping[str, Any] = payload.get("attributes", {})
    wanted = name.strip().lower()
    return any(key.strip().lower() == wanted for key in attributes)


def claim_values(payload: Mapping[str, Any], name: str | None) -> tuple[str, ...]:
    """Raw values of an OIDC claim that may be a string or a JSON array; () when unnamed."""
    return tuple(as_str_list(payload.get(name))) if name else ()


def as_str_list(value: Any) -> list[str]:
    """A claim that may be a string, a list or missing, as a list of strings."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value if v is not None]
    return [str(value)]


class OidcClientSettings(BaseModel):
    client_id: str
    client_secret: SecretStr | None = None

    @model_validator(mode="after")
    def _client_id_not_blank(self) -> OidcClientSettings:
        if not self.client_id.strip():
            raise ValueError("client_id must not be empty")
        return self


def check_issuer_url(value: str) -> str:
    """An issuer as OIDC Discovery needs it: an http(s) URL with a host and no query or
    fragment. Kept exactly as written (a trailing slash is part of some issuers, Auth0's)."""
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("issuer must be an https:// URL")
    if parts.query or parts.fragment:
        raise ValueError("issuer must not have a query or fragment")
    return value


class OidcSettings(BaseModel):
    """The keys every discovery-based OIDC connector type accepts: a plugin subclasses it,
    adds its claim names, and returns :meth:`oidc_provider` from ``transom_oidc_provider``;
    the host fetches ``{issuer}/.well-known/openid-configuration`` for the endpoints, the
    JWKS, UserInfo and the signing algorithms. Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")

    #: exactly the ``issuer`` of the provider's discovery document (and of its id_tokens)
    issuer: str
    client_id: str
    client_secret: SecretStr | None = None
    #: requested scopes; empty: ``openid profile email``
    scopes: list[str] = Field(default_factory=list)
    token_endpoint_auth_method: Literal["client_secret_post", "client_secret_basic"] = "client_secret_basic"

    @field_validator("issuer")
    @classmethod
    def _issuer_url(cls, value: str) -> str:
        return check_issuer_url(value)

    @model_validator(mode="after")
    def _client(self) -> OidcSettings:
        if not self.client_id.strip():
            raise ValueError("client_id must not be empty")
        if self.scopes and "openid" not in self.scopes:
            raise ValueError("scopes must include \"openid\"")
        return self

    def oidc_provider(self, **options: Any) -> OidcProvider:
        """The provider the host completes by discovery; ``options`` set any other field of
        :class:`OidcProvider` (``profile_claims``, ``subject_claim``...)."""
        if self.scopes:
            options.setdefault("scopes", tuple(self.scopes))
        return OidcProvider.discover(
            self.issuer, client_id=self.client_id,
            client_secret=self.client_secret.get_secret_value() if self.client_secret else None,
            token_endpoint_auth_method=self.token_endpoint_auth_method, **options)
