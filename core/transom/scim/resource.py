"""The SCIM User resource: cleaning what a client sends into Transom's canonical form,
building what Transom answers, the leaf index behind filters, and attribute projection.

Canonical form (stored in ``users.scim_attributes``): attribute names spelled as in the
schema, core attributes at the top level, the enterprise extension under its URN, no nulls,
no empty lists, booleans as JSON booleans. ``id``, ``userName``, ``externalId``, ``active``
and ``meta`` live in columns and are added when the resource is rendered.

Explicit attribute map, never ``Model(**payload)``: read-only, server-owned and unknown
attributes are dropped (RFC 7644 §3.3: ignored), so no request can set an id, an account,
a role or a password hash.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from transom.models import USER_DEPROVISIONED, User
from transom.scim.errors import InvalidValue
from transom.scim.schema import (
    ENTERPRISE_SCHEMA,
    USER_SCHEMA,
    Attr,
    attributes,
    core_attr,
    extension_urn,
    split_urn,
)

log = logging.getLogger("transom.scim")

MAX_STRING = 1024
MAX_USER_NAME = 320
MAX_ENTRIES = 100
#: attributes kept in ``users`` columns rather than in ``scim_attributes``
COLUMN_ATTRIBUTES = frozenset({"username", "externalid", "active", "id", "meta", "schemas"})
_TRUE = frozenset({"true"})
#: marker in ``scim_attributes``: a PATCH removed ``active`` (see service.patch_user)
ACTIVE_UNASSIGNED = "_activeUnassigned"
_FALSE = frozenset({"false"})


def coerce_bool(value: Any, where: str) -> bool:
    """JSON booleans, and the strings "True"/"False" (any case) Entra and OneLogin send."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise InvalidValue(f"{where}: expected a boolean")


def clean_value(attr: Attr, value: Any, where: str) -> Any:
    """One attribute's value in canonical form; ``None`` means unassigned."""
    if value is None:
        return None
    if attr.multi_valued:
        items = value if isinstance(value, list) else [value]
        if len(items) > MAX_ENTRIES:
            raise InvalidValue(f"{where}: more than {MAX_ENTRIES} values")
        cleaned = [clean_single(attr, item, where) for item in items]
        kept = [c for c in cleaned if c not in (None, {})]
        _one_primary(kept)
        return kept or None
    return clean_single(attr, value, where)


def clean_single(attr: Attr, value: Any, where: str) -> Any:
    if value is None:
        return None
    if attr.type == "complex":
        if not isinstance(value, dict):
            if "value" in attr.sub and isinstance(value, str | int | float) and not isinstance(value, bool):
                value = {"value": value}  # a bare value for a complex attribute with a "value"
            else:
                raise InvalidValue(f"{where}: expected an object")
        out: dict[str, Any] = {}
        for key, sub_value in value.items():
            sub = attr.sub_attr(key)
            if sub is None or not sub.writable:
                continue
            cleaned = clean_single(sub, sub_value, f"{where}.{sub.name}")
            if cleaned is not None:
                out[sub.name] = cleaned
        return out
    if attr.type == "boolean":
        return coerce_bool(value, where)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidValue(f"{where}: expected a string")
    text = str(value)
    if len(text) > MAX_STRING:
        raise InvalidValue(f"{where}: longer than {MAX_STRING} characters")
    return text


def _one_primary(entries: list[Any]) -> None:
    seen = False
    for entry in entries:
        if isinstance(entry, dict) and entry.get("primary") is True:
            if seen:
                entry["primary"] = False
            seen = True


@dataclass
class CleanUser:
    """A cleaned User body: the columns and the rest of the representation."""

    user_name: str | None
    external_id: str | None
    active: bool | None
    attributes: dict[str, Any]
    ignored: list[str]


def clean_user(body: dict[str, Any]) -> CleanUser:
    """Clean a POST/PUT body. Unknown and read-only attributes are ignored (their names are
    logged, never their values)."""
    attrs: dict[str, Any] = {}
    ignored: list[str] = []
    user_name: str | None = None
    external_id: str | None = None
    active: bool | None = None
    for key, value in body.items():
        lowered = key.lower()
        if lowered in ("id", "meta", "schemas", "groups", "password"):
            continue
        if lowered == "externalid":
            external_id = _clean_external_id(value)
            continue
        urn = extension_urn(key)
        if urn is not None:
            if value is None:
                continue
            if not isinstance(value, dict):
                raise InvalidValue(f"{urn}: expected an object")
            for sub_key, sub_value in value.items():
                _put(attrs, urn, sub_key, sub_value, ignored)
            continue
        schema, rest = split_urn(key) if lowered.startswith("urn:") else (USER_SCHEMA, key)
        if not schema or not rest:
            ignored.append(key[:100])
            continue
        if schema == USER_SCHEMA and rest.lower() == "username":
            user_name = _clean_user_name(value)
            continue
        if schema == USER_SCHEMA and rest.lower() == "active":
            active = None if value is None else coerce_bool(value, "active")
            continue
        if schema == USER_SCHEMA and rest.lower() == "externalid":
            external_id = _clean_external_id(value)
            continue
        _put(attrs, schema, rest, value, ignored)
    if ignored:
        log.info("SCIM body: ignored unknown attributes %s", ", ".join(sorted(set(ignored))[:20]))
    return CleanUser(user_name=user_name, external_id=external_id, active=active, attributes=attrs, ignored=ignored)


def _put(attrs: dict[str, Any], schema: str, name: str, value: Any, ignored: list[str]) -> None:
    attr = attributes()[schema].get(name.lower())
    if attr is None:
        ignored.append(name[:100])
        return
    if not attr.writable:
        return
    cleaned = clean_value(attr, value, attr.name)
    if cleaned is None:
        return
    if schema == USER_SCHEMA:
        attrs[attr.name] = cleaned
    else:
        attrs.setdefault(schema, {})[attr.name] = cleaned


def _clean_user_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue("userName: required, a non-empty string")
    if len(value.strip()) > MAX_USER_NAME:
        raise InvalidValue(f"userName: longer than {MAX_USER_NAME} characters")
    return value.strip()


def _clean_external_id(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidValue("externalId: expected a string")
    if len(value) > 320:
        raise InvalidValue("externalId: longer than 320 characters")
    return value


# -- rendering --------------------------------------------------------------------------


def _iso(value: datetime) -> str:
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.isoformat().replace("+00:00", "Z")


def etag(user: User) -> str:
    return f'W/"{user.version}"'


def stored_attributes(user: User) -> dict[str, Any]:
    """The canonical attributes of ``user``; users that SSO or an admin created (never
    written by SCIM) get a representation built from their columns."""
    if user.scim_attributes is not None:
        return copy.deepcopy(user.scim_attributes)
    attrs: dict[str, Any] = {}
    name = {k: v for k, v in (("givenName", user.given_name), ("familyName", user.family_name)) if v}
    if name:
        attrs["name"] = name
    if user.display_name:
        attrs["displayName"] = user.display_name
    if user.email:
        attrs["emails"] = [{"value": user.email, "type": "work", "primary": True}]
    if user.timezone:
        attrs["timezone"] = user.timezone
    return attrs


def full_resource(user: User) -> dict[str, Any]:
    """The user as a SCIM resource (canonical attributes plus column-backed ones)."""
    attrs = stored_attributes(user)
    active_unassigned = attrs.pop(ACTIVE_UNASSIGNED, False) is True
    resource: dict[str, Any] = {"userName": user.user_name}
    if user.external_id is not None:
        resource["externalId"] = user.external_id
    resource.update(attrs)
    if not active_unassigned:
        resource["active"] = user.status != USER_DEPROVISIONED
    return resource


def render(user: User, *, location: str) -> dict[str, Any]:
    resource = full_resource(user)
    schemas = [USER_SCHEMA] + [urn for urn in attributes() if urn != USER_SCHEMA and urn in resource]
    return {
        "schemas": schemas,
        "id": user.id,
        **resource,
        "meta": {
            "resourceType": "User",
            "created": _iso(user.created_at),
            "lastModified": _iso(user.updated_at),
            "location": location,
            "version": etag(user),
        },
    }


# -- the leaf index behind filters ------------------------------------------------------


def index_rows(attrs: dict[str, Any]) -> list[tuple[str, int, str, str]]:
    """(attribute key, entry, sub-attribute, normalised value) for every leaf."""
    rows: list[tuple[str, int, str, str]] = []
    for schema, defs in attributes().items():
        source = attrs if schema == USER_SCHEMA else attrs.get(schema, {})
        for attr in defs.values():
            value = source.get(attr.name)
            if value is None:
                continue
            entries = value if attr.multi_valued else [value]
            for position, entry in enumerate(entries):
                if attr.type == "complex" and isinstance(entry, dict):
                    for sub_name, sub_value in entry.items():
                        sub = attr.sub_attr(sub_name)
                        if sub is not None:
                            rows.append((attr.key, position, sub.name.lower(), normalise(sub, sub_value)))
                elif attr.type != "complex":
                    rows.append((attr.key, position, "", normalise(attr, entry)))
    return rows


def normalise(attr: Attr, value: Any) -> str:
    """How a value is stored in, and compared against, ``scim_values.value``."""
    if attr.type == "boolean":
        return "true" if value is True else "false"
    text = str(value)[:MAX_STRING]
    return text if attr.case_exact else text.casefold()


# -- projection (attributes / excludedAttributes, RFC 7644 §3.4.2.5) ---------------------

ALWAYS_RETURNED = frozenset({"id", "schemas"})


def _path_parts(path: str) -> tuple[str, str, str | None]:
    """-> (schema, attribute, sub-attribute), names as sent."""
    schema, rest = split_urn(path.strip())
    attr, _, sub = rest.partition(".")
    return schema, attr, sub or None


def _find_key(container: dict[str, Any], name: str) -> str | None:
    lowered = name.lower()
    for key in container:
        if key.lower() == lowered:
            return key
    return None


def project(resource: dict[str, Any], *, include: list[str], exclude: list[str]) -> dict[str, Any]:
    if include:
        out = {k: v for k, v in resource.items() if k in ALWAYS_RETURNED}
        for path in include:
            _copy_path(resource, out, path)
        if any(k.startswith("urn:") for k in out):
            out["schemas"] = resource["schemas"]
        return out
    if exclude:
        out = copy.deepcopy(resource)
        for path in exclude:
            _drop_path(out, path)
        return out
    return resource


def _container(resource: dict[str, Any], schema: str) -> dict[str, Any] | None:
    if schema == USER_SCHEMA:
        return resource
    if not schema:
        return None
    value = resource.get(schema)
    return value if isinstance(value, dict) else None


def _copy_path(resource: dict[str, Any], out: dict[str, Any], path: str) -> None:
    schema, attr, sub = _path_parts(path)
    source = _container(resource, schema)
    if source is None:
        return
    if not attr:  # the whole extension
        out[schema] = copy.deepcopy(source)
        return
    key = _find_key(source, attr)
    if key is None:
        return
    target = out if schema == USER_SCHEMA else out.setdefault(schema, {})
    value = source[key]
    if sub is None:
        target[key] = copy.deepcopy(value)
        return
    if isinstance(value, dict):
        sub_key = _find_key(value, sub)
        if sub_key is not None:
            target.setdefault(key, {})[sub_key] = copy.deepcopy(value[sub_key])
    elif isinstance(value, list):
        picked = []
        for entry in value:
            sub_key = _find_key(entry, sub) if isinstance(entry, dict) else None
            picked.append({sub_key: entry[sub_key]} if sub_key else {})
        if any(picked):
            target[key] = [p for p in picked if p]


def _drop_path(out: dict[str, Any], path: str) -> None:
    schema, attr, sub = _path_parts(path)
    container = _container(out, schema)
    if container is None or not attr:
        if container is not None and schema != USER_SCHEMA:
            out.pop(schema, None)
        return
    key = _find_key(container, attr)
    if key is None or (schema == USER_SCHEMA and key in ALWAYS_RETURNED):
        return
    if sub is None:
        del container[key]
    else:
        value = container[key]
        for entry in value if isinstance(value, list) else [value]:
            if isinstance(entry, dict):
                sub_key = _find_key(entry, sub)
                if sub_key:
                    del entry[sub_key]
    if schema != USER_SCHEMA and not container:
        out.pop(schema, None)


def is_core_column(name: str) -> bool:
    return name.lower() in COLUMN_ATTRIBUTES


__all__ = ["ENTERPRISE_SCHEMA", "core_attr"]
