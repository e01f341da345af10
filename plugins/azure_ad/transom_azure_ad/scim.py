"""Microsoft Entra ID's SCIM dialect, rewritten into plain RFC 7644 (reference:
scim-dialects.md §1.3-1.4). Pure functions over JSON-like data; the input is never mutated.

What Entra sends and what this module makes of it:
* PATCH ``op`` capitalised (``Replace``) -> lower case; extra operation keys
  (``"name": "addMember"``) dropped.
* ``"True"``/``"False"`` strings for ``active`` and ``primary`` -> JSON booleans.
* path-less ``replace`` whose value keys are paths (``name.givenName``, URN-qualified
  enterprise keys) -> one operation per key, with that key as ``path``.
* ``manager`` as a string, a one-element array or an object, at the top level or under the
  enterprise URN -> ``{"value": id}`` under the enterprise URN; ``""``/``null``/
  ``{"value": ""}`` -> remove.
* roles whose ``value`` is a JSON-encoded object string (SingleAppRoleAssignment) -> decoded.
* the mistyped enterprise URN ``…enterprise:2.0User`` of an older doc example -> fixed;
  enterprise attributes sent at the top level -> moved under the URN.
Plain RFC bodies pass through unchanged, so the rewrite is safe for any client.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
_MISTYPED = "urn:ietf:params:scim:schemas:extension:enterprise:2.0user"
_ENTERPRISE_ATTRS = {"employeenumber": "employeeNumber", "costcenter": "costCenter",
                     "organization": "organization", "division": "division",
                     "department": "department", "manager": "manager"}
_BOOLEAN_LEAVES = ("active", "primary")


def normalize(*, resource_type: str, operation: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
    if resource_type != "User":
        return None
    data = copy.deepcopy(dict(body))
    if operation == "patch":
        return _patch(data)
    return _resource(data)


def _bool(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return value


def _manager(value: Any) -> dict[str, Any] | None:
    """Every manager shape Entra sends -> ``{"value": id}`` (plus the ``$ref`` the client
    sent, kept as given); ``None`` means "no manager"."""
    ref: Any = None
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        ref = next((v for k, v in value.items() if k.lower() == "$ref"), None)
        value = next((v for k, v in value.items() if k.lower() == "value"), None)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    manager = {"value": str(value)}
    if isinstance(ref, str) and ref.strip():
        manager["$ref"] = ref
    return manager


def _role(entry: Any) -> Any:
    if isinstance(entry, dict) and isinstance(entry.get("value"), str) and entry["value"].lstrip().startswith("{"):
        try:
            decoded = json.loads(entry["value"])
        except ValueError:
            return entry
        if isinstance(decoded, dict):
            return {**{k: v for k, v in entry.items() if k != "value"}, **decoded}
    if isinstance(entry, str) and entry.lstrip().startswith("{"):
        try:
            decoded = json.loads(entry)
        except ValueError:
            return entry
        return decoded
    return entry


def _fix_multi_valued(data: dict[str, Any]) -> None:
    for key, value in data.items():
        if isinstance(value, list):
            for entry in value:
                if isinstance(entry, dict):
                    for sub in list(entry):
                        if sub.lower() == "primary":
                            entry[sub] = _bool(entry[sub])
            if key.lower() == "roles":
                data[key] = [_role(e) for e in value]


def _resource(data: dict[str, Any]) -> dict[str, Any]:
    enterprise: dict[str, Any] = {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        lowered = key.lower()
        if lowered == ENTERPRISE.lower() or lowered == _MISTYPED:
            if isinstance(value, dict):
                enterprise.update(value)
            continue
        if lowered.startswith((ENTERPRISE.lower() + ":", _MISTYPED + ":")):
            enterprise[key.rsplit(":", 1)[1]] = value
            continue
        if lowered in _ENTERPRISE_ATTRS:
            if value is not None:
                enterprise.setdefault(_ENTERPRISE_ATTRS[lowered], value)
            continue
        out[key] = _bool(value) if lowered == "active" else value
    manager_key = next((k for k in enterprise if k.lower() == "manager"), None)
    if manager_key is not None:
        manager = _manager(enterprise.pop(manager_key))
        if manager is not None:
            enterprise["manager"] = manager
    if enterprise:
        out[ENTERPRISE] = enterprise
    _fix_multi_valued(out)
    return out


def _is_manager_path(path: str) -> bool:
    lowered = path.strip().lower()
    return lowered in ("manager", f"{ENTERPRISE.lower()}:manager", f"{_MISTYPED}:manager")


def _patch(data: dict[str, Any]) -> dict[str, Any]:
    ops_key = next((k for k in data if k.lower() == "operations"), None)
    if ops_key is None or not isinstance(data[ops_key], list):
        return data
    rewritten: list[Any] = []
    for raw in data[ops_key]:
        if not isinstance(raw, dict):
            rewritten.append(raw)
            continue
        op = {k.lower(): v for k, v in raw.items() if k.lower() in ("op", "path", "value")}
        if isinstance(op.get("op"), str):
            op["op"] = op["op"].lower()
        path = op.get("path")
        if not path and isinstance(op.get("value"), dict) and op.get("op") in ("add", "replace"):
            # keys of a path-less value are paths: one operation each
            for key, value in op["value"].items():
                if key.lower() in ("schemas", "meta"):
                    continue
                if key.lower() == ENTERPRISE.lower() and isinstance(value, dict):
                    rewritten += [_pathless_one(op["op"], f"{ENTERPRISE}:{k}", v) for k, v in value.items()]
                    continue
                rewritten.append(_pathless_one(op["op"], key, value))
            continue
        rewritten.append(_one(op))
    data[ops_key] = rewritten
    return data


def _pathless_one(kind: str, key: str, value: Any) -> dict[str, Any]:
    """One key of a path-less value, rewritten like a path but sent on path-less, so that the
    host ignores a key it does not know (docs/scim.md) instead of refusing an unknown path.
    A manager key becomes a real path: its rewrite may turn into a ``remove``."""
    op = _one({"op": kind, "path": key, "value": value})
    if op.get("path") != key or "value" not in op:
        return op
    return {"op": op["op"], "value": {key: op["value"]}}


def _one(op: dict[str, Any]) -> dict[str, Any]:
    path = op.get("path")
    if not isinstance(path, str):
        return op
    leaf = path.rsplit(".", 1)[-1].rsplit(":", 1)[-1].lower()
    if leaf in _BOOLEAN_LEAVES and "value" in op:
        op["value"] = _bool(op["value"])
    if _is_manager_path(path) and op.get("op") in ("add", "replace"):
        manager = _manager(op.get("value"))
        if manager is None:
            return {"op": "remove", "path": f"{ENTERPRISE}:manager"}
        return {"op": op["op"], "path": f"{ENTERPRISE}:manager", "value": manager}
    if path.strip().lower().startswith("roles") and "value" in op:
        value = op["value"]
        op["value"] = [_role(v) for v in value] if isinstance(value, list) else _role(value)
    return op
