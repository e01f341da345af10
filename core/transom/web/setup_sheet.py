"""The setup sheet of a connector: the exact values an IdP admin pastes into Okta, Entra or
any SAML/OIDC IdP, and the IdP-specific steps, computed from the configuration alone (the
console shows each value with a copy button). Values come from ``server.base_url`` and the
connector's id and ``[connectors.provisioning]``, as the login routes use them, so the sheet
cannot drift from what Transom checks."""

from __future__ import annotations

from dataclasses import dataclass, field

from transom.connector import Connector
from transom.oidc.endpoints import CALLBACK_PATH
from transom.saml import ACS_PATH, METADATA_PATH
from transom.scim.router import PREFIXES

LOGIN_PATH = "/api/accounts/login/{connector_id}"
SCIM_PATH = PREFIXES[0]

IDP_NAMES = {"okta": "Okta", "azure_ad": "Microsoft Entra ID", "generic_saml": "your SAML IdP"}


@dataclass(frozen=True)
class Value:
    label: str
    value: str
    #: a link the admin can open (the SP metadata download)
    download: bool = False


@dataclass
class SetupSheet:
    idp: str
    values: list[Value] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    attributes: list[Value] = field(default_factory=list)
    scim_values: list[Value] = field(default_factory=list)
    scim_steps: list[str] = field(default_factory=list)


def build_sheet(connector: Connector, *, base_url: str) -> SetupSheet:
    base = base_url.rstrip("/")
    cid = connector.id
    idp = IDP_NAMES.get(connector.type, connector.type)
    sheet = SetupSheet(idp=idp)
    login_url = base + LOGIN_PATH.format(connector_id=cid)
    if connector.protocol == "saml":
        metadata = base + METADATA_PATH.format(connector_id=cid)
        sheet.values += [
            Value("ACS URL (Reply URL, Single sign-on URL; also Recipient and Destination)",
                  base + ACS_PATH.format(connector_id=cid)),
            Value("SP entity ID (Audience URI, Identifier)", metadata),
            Value("SP metadata (download, or give the IdP this URL)", metadata, download=True),
            Value("Sign-on URL (starts an SP-initiated login from the IdP's dashboard)", login_url),
        ]
        sheet.steps += _saml_steps(connector)
    else:
        sheet.values += [
            Value("Redirect URI (sign-in redirect URI, platform Web)", base + CALLBACK_PATH),
            Value("Initiate login URI (optional)", login_url),
            Value("Scopes", "openid profile email"),
        ]
        sheet.steps += _oidc_steps(connector)
    prov = connector.provisioning
    sheet.attributes += [
        Value("Space names attribute", prov.space_attribute),
        Value("Space roles attribute", prov.role_attribute),
        Value("Time zone attribute (IANA name, e.g. Europe/London)", prov.timezone_attribute),
    ]
    if prov.account_role_attribute:
        sheet.attributes.append(Value("Account role attribute", prov.account_role_attribute))
    if connector.syncs_groups:
        sheet.attributes.append(Value("Groups claim / attribute", "groups"))
    sheet.scim_values += [
        Value("SCIM base URL (Okta: SCIM connector base URL; Entra: Tenant URL)", base + SCIM_PATH),
        Value("Unique identifier field for users", "userName"),
    ]
    sheet.scim_steps += _scim_steps(connector)
    return sheet


def _oidc_steps(connector: Connector) -> list[str]:
    if connector.type == "azure_ad":
        return [
            "Entra admin center → App registrations → New registration; supported account types: this "
            "organizational directory only.",
            "Redirect URI (platform Web): paste the Redirect URI above, exactly.",
            "Certificates & secrets → New client secret; give its value to the Transom operator "
            "(it goes into an environment variable, never into this page).",
            "Token configuration → add the optional claim email; Add groups claim → Security groups "
            "(or Groups assigned to the application for large tenants), so group sync gets object ids.",
            "Claims for spaces, roles and time zone must appear in the id_token under the attribute "
            "names below (claims-mapping policy or directory extensions).",
        ]
    if connector.type == "okta":
        return [
            "Okta admin console → Applications → Create App Integration → OIDC → Web Application.",
            "Grant type Authorization Code; Sign-in redirect URI: paste the Redirect URI above, exactly.",
            "Assignments: assign the people or groups who may sign in (others see access_denied).",
            "Sign On → OpenID Connect ID Token → Groups claim type Filter, name groups, Matches regex .* "
            "(on a custom authorization server: a Groups claim included in the ID token).",
            "Add claims named as the attributes below for spaces, roles and time zone (custom "
            "authorization server).",
        ]
    return ["Register a web application with the Redirect URI above and the authorization code flow."]


def _saml_steps(connector: Connector) -> list[str]:
    if connector.type == "azure_ad":
        return [
            "Entra admin center → Enterprise applications → New application → Create your own "
            "application → Single sign-on → SAML (or upload the SP metadata above).",
            "Basic SAML Configuration: Identifier = SP entity ID, Reply URL = ACS URL, Sign on URL = Sign-on URL.",
            "Attributes & Claims: keep the defaults (Transom keys users on tenant id + object id); add the "
            "attributes below for spaces, roles and time zone.",
            "Add a group claim: Security groups, source attribute Group ID (object-id GUIDs).",
            "SAML Certificates: Sign SAML assertion, SHA-256; give the Transom operator the App Federation "
            "Metadata Url or the Base64 certificate.",
            "Users and groups: assign who may sign in.",
        ]
    if connector.type == "okta":
        return [
            "Okta admin console → Applications → Create App Integration → SAML 2.0.",
            "Single sign-on URL = ACS URL (tick \"Use this for Recipient URL and Destination URL\"); "
            "Audience URI = SP entity ID.",
            "Name ID format Persistent (never Transient); Response and Assertion signed, RSA-SHA256.",
            "Attribute statements: email, firstName, lastName, login, plus the attributes below.",
            "Group attribute statement: name groups, filter Matches regex .* (group names).",
        ]
    return [
        "Create a SAML 2.0 application: ACS URL (HTTP-POST) and SP entity ID as above, or import the SP metadata.",
        "Sign the assertion with RSA-SHA256; no assertion encryption; NameID persistent (transient is refused).",
        "Send the attributes below for spaces, roles and time zone.",
    ]


def _scim_steps(connector: Connector) -> list[str]:
    token = ("Create the token on the API tokens page: permission manage-users, a name such as "
             f"{connector.id}-scim. Paste it without the word Bearer; it is shown once.")
    if connector.type == "azure_ad":
        return [
            "Enterprise application → Provisioning → Provisioning Mode Automatic.",
            "Tenant URL = SCIM base URL; Secret Token = the token. " + token,
            "Mappings → Provision Microsoft Entra ID Groups → Enabled: No (Transom does not provision "
            "groups; group sync at login maps them).",
            "Test Connection, Save, Start provisioning.",
        ]
    if connector.type == "okta":
        return [
            "Application → General → Enable SCIM provisioning; Provisioning → Integration: SCIM connector "
            "base URL = SCIM base URL, unique identifier userName.",
            "Provisioning actions Push New Users and Push Profile Updates; leave Push Groups and Import "
            "Groups off (Transom does not provision groups).",
            "Authentication Mode HTTP Header; Authorization = the token. " + token,
            "To App: enable Create Users, Update User Attributes, Deactivate Users.",
        ]
    return ["SCIM 2.0 client: base URL as above, bearer token authentication. " + token,
            "Do not provision groups (Transom answers group writes with 501)."]
