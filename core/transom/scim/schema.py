"""The SCIM schemas Transom serves: core User (RFC 7643 §4.1) and the enterprise extension
(§4.3). The attribute definitions come from ``scim2-models`` (``User.to_schema()``), so the
``/Schemas`` document and the rules Transom applies cannot drift apart; everything else
(lookup, canonical names, coercion) is plain data here."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from scim2_models import Context, EnterpriseUser, User

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH_REQUEST = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"

#: common attributes (RFC 7643 §3.1) the server owns; never written from a request body
SERVER_OWNED = frozenset({"id", "meta", "schemas", "groups", "password"})


@dataclass(frozen=True)
class Attr:
    name: str
    type: str
    multi_valued: bool
    case_exact: bool
    mutability: str
    returned: str
    schema: str
    sub: dict[str, Attr] = field(default_factory=dict)

    @property
    def writable(self) -> bool:
        return self.mutability in ("readWrite", "immutable", "writeOnly")

    def sub_attr(self, name: str) -> Attr | None:
        return self.sub.get(name.lower())

    @property
    def key(self) -> str:
        """The lower-case, URN-qualified name used in ``scim_values.attribute``."""
        base = self.name.lower()
        return base if self.schema == USER_SCHEMA else f"{self.schema.lower()}:{base}"


def _build(raw: dict[str, Any], schema: str) -> Attr:
    return Attr(
        name=raw["name"],
        type=raw.get("type", "string"),
        multi_valued=bool(raw.get("multiValued", False)),
        case_exact=bool(raw.get("caseExact", False)),
        mutability=raw.get("mutability", "readWrite"),
        returned=raw.get("returned", "default"),
        schema=schema,
        sub={s["name"].lower(): _build(s, schema) for s in raw.get("subAttributes", [])},
    )


@cache
def schema_documents() -> dict[str, dict[str, Any]]:
    """The ``/Schemas`` resources, keyed by schema URN."""
    docs = {}
    for model in (User, EnterpriseUser):
        doc = model.to_schema().model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
        doc.pop("meta", None)
        # groups are not provisioned here: the attribute is never returned, so it is not advertised
        doc["attributes"] = [a for a in doc["attributes"] if a["name"] != "groups"]
        docs[doc["id"]] = doc
    return docs


@cache
def attributes() -> dict[str, dict[str, Attr]]:
    """Schema URN -> lower-case attribute name -> definition."""
    return {
        urn: {a["name"].lower(): _build(a, urn) for a in doc["attributes"]}
        for urn, doc in schema_documents().items()
    }


def core_attr(name: str) -> Attr | None:
    return attributes()[USER_SCHEMA].get(name.lower())


def extension_urn(name: str) -> str | None:
    """The canonical spelling of a known extension URN, compared case-insensitively."""
    lowered = name.lower()
    for urn in attributes():
        if urn != USER_SCHEMA and urn.lower() == lowered:
            return urn
    return None


def split_urn(path: str) -> tuple[str, str]:
    """``urn:…:enterprise:2.0:User:manager.value`` -> (schema URN, ``manager.value``).

    A path that names a known schema URN as a prefix is split there; anything else is a
    core attribute path. Returns ("", path) for an unknown URN-looking path."""
    lowered = path.lower()
    for urn in attributes():
        prefix = urn.lower() + ":"
        if lowered.startswith(prefix):
            return urn, path[len(prefix):]
        if lowered == urn.lower():
            return urn, ""
    if lowered.startswith("urn:"):
        return "", path
    return USER_SCHEMA, path


META_ATTRIBUTES = {"resourcetype", "created", "lastmodified", "location", "version"}


def lookup(schema: str, name: str) -> Attr | None:
    """The attribute ``name`` of ``schema``; an unqualified name that only an extension
    defines (Entra's bare ``manager``, ``department``) resolves to that extension."""
    found = attributes().get(schema, {}).get(name.lower())
    if found is not None or schema != USER_SCHEMA:
        return found
    for urn, defs in attributes().items():
        if urn != USER_SCHEMA and name.lower() in defs:
            return defs[name.lower()]
    return None
