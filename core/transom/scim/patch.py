"""The PATCH engine (RFC 7644 §3.5.2) on a user's resource dict.

Operations apply in order to a copy; the request succeeds only if all of them do (atomic).
Paths: ``attr``, ``attr.sub``, URN-qualified (``urn:…:enterprise:2.0:User:manager``),
value filters (``emails[type eq "work"].value``). Without a path, every key of the value
object is a path (RFC: attribute names; tolerated: dotted and URN-qualified keys).

Deliberate choices (docs/scim.md):
* ``add`` on a single-valued attribute replaces it; re-adding an existing entry of a
  multi-valued attribute is a no-op.
* ``replace`` (or ``add``) on a value filter that matches nothing *creates* the entry from
  the filter's ``eq`` terms when they are plain equalities (Entra's
  ``emails[type eq "work"].value``); otherwise 400 ``noTarget``.
* ``replace`` with ``null`` or ``""`` removes (RFC 7643 §2.5; Microsoft's validator).
* ``remove`` on a multi-valued attribute with a ``value`` list removes only the listed
  entries (the legacy Entra/JumpCloud member-removal shape).
* ``id``, ``meta``, ``schemas`` and ``groups`` are read-only: 400 ``mutability`` (a path-less
  ``id`` equal to the resource's own id is ignored: Okta re-sends it). ``password`` is
  ignored: Transom never takes passwords over SCIM.
"""

from __future__ import annotations

import copy
from typing import Any

from transom.scim.errors import InvalidFilter, InvalidPath, InvalidSyntax, InvalidValue, Mutability, NoTarget, TooMany
from transom.scim.filter import And, Compare, Expr, Not, Or, Present, ValuePath, parse_value_path
from transom.scim.resource import clean_single, clean_value, coerce_bool, normalise
from transom.scim.schema import USER_SCHEMA, Attr, extension_urn, lookup, split_urn

MAX_OPERATIONS = 100
EXTERNAL_ID = Attr(name="externalId", type="string", multi_valued=False, case_exact=True,
                   mutability="readWrite", returned="default", schema=USER_SCHEMA)
_OPS = ("add", "replace", "remove")


def operations_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    ops = next((v for k, v in body.items() if k.lower() == "operations"), None)
    if not isinstance(ops, list) or not ops:
        raise InvalidSyntax("a PatchOp needs a non-empty 'Operations' list")
    if len(ops) > MAX_OPERATIONS:
        raise TooMany(f"more than {MAX_OPERATIONS} PATCH operations in one request")
    result = []
    for op in ops:
        if not isinstance(op, dict):
            raise InvalidSyntax("each PATCH operation must be an object")
        # unknown keys (Microsoft's "name": "addMember") are dropped; names are case-insensitive
        result.append({k.lower(): v for k, v in op.items() if k.lower() in ("op", "path", "value")})
    return result


def apply_patch(resource: dict[str, Any], body: dict[str, Any], *, resource_id: str) -> dict[str, Any]:
    work = copy.deepcopy(resource)
    for op in operations_of(body):
        kind = op.get("op")
        if not isinstance(kind, str) or kind.lower() not in _OPS:
            raise InvalidSyntax("PATCH 'op' must be add, replace or remove")
        kind = kind.lower()
        path = op.get("path")
        value = op.get("value")
        if path is None or (isinstance(path, str) and not path.strip()):
            if kind == "remove":
                raise NoTarget("remove needs a path")
            _apply_pathless(work, kind, value, resource_id)
            continue
        if not isinstance(path, str):
            raise InvalidPath("PATCH 'path' must be a string")
        _apply(work, kind, path, value, pathless=False)
    return work


def _apply_pathless(work: dict[str, Any], kind: str, value: Any, resource_id: str) -> None:
    if not isinstance(value, dict):
        raise InvalidValue(f"{kind} without a path needs an object value")
    for key, item in value.items():
        lowered = key.lower()
        if lowered in ("schemas", "meta"):
            continue
        if lowered == "id":
            if item != resource_id:
                raise Mutability("id is read-only")
            continue
        urn = extension_urn(key)
        if urn is not None and isinstance(item, dict):
            for sub_key, sub_item in item.items():
                _apply(work, kind, f"{urn}:{sub_key}", sub_item, pathless=True)
            continue
        _apply(work, kind, key, item, pathless=True)


def _resolve(path: str) -> tuple[Attr, Attr | None, Expr | None]:
    try:
        attr_path, flt, sub_after = parse_value_path(path)
    except InvalidFilter as exc:
        raise InvalidPath(f"invalid path '{path[:100]}': {exc.message}", reason=exc.reason) from None
    schema, rest = split_urn(attr_path)
    if not schema or not rest:
        raise InvalidPath(f"unknown attribute in path '{path[:100]}'")
    name, _, sub_name = rest.partition(".")
    if sub_name and (flt is not None or sub_after):
        raise InvalidPath(f"invalid path '{path[:100]}'")
    sub_name = sub_name or sub_after or ""
    lowered = name.lower()
    if schema == USER_SCHEMA and lowered in ("id", "meta", "schemas", "groups"):
        raise Mutability(f"{name} is read-only")
    attr = EXTERNAL_ID if schema == USER_SCHEMA and lowered == "externalid" else lookup(schema, lowered)
    if attr is None:
        raise InvalidPath(f"unknown attribute '{name[:100]}'")
    sub = None
    if sub_name:
        sub = attr.sub_attr(sub_name)
        if sub is None:
            raise InvalidPath(f"'{sub_name[:100]}' is not a sub-attribute of {attr.name}")
    return attr, sub, flt


def _apply(work: dict[str, Any], kind: str, path: str, value: Any, *, pathless: bool) -> None:
    if path.lower() in ("password", USER_SCHEMA.lower() + ":password"):
        return
    urn = extension_urn(path.strip())
    if urn is not None:  # the whole extension: its attributes are the value's keys
        if kind == "remove":
            work.pop(urn, None)
        elif isinstance(value, dict):
            for key, item in value.items():
                if key.lower() != "schemas":
                    _apply(work, kind, f"{urn}:{key}", item, pathless=True)
        elif value is not None:
            raise InvalidValue(f"{urn} takes an object")
        return
    try:
        attr, sub, flt = _resolve(path)
    except InvalidPath:
        if pathless:
            return  # unknown keys of a path-less value are ignored, like in POST/PUT
        raise
    if not attr.writable or (sub is not None and not sub.writable):
        raise Mutability(f"{attr.name} is read-only")
    container = work if attr.schema == USER_SCHEMA else _extension(work, attr.schema)
    if flt is not None:
        _apply_filtered(container, kind, attr, sub, flt, value)
    elif kind == "remove":
        _remove(container, attr, sub, value)
    elif sub is not None:
        _set_sub(container, attr, sub, value)
    else:
        _set(container, kind, attr, value)
    _tidy(work)


def _extension(work: dict[str, Any], urn: str) -> dict[str, Any]:
    current = work.get(urn)
    if not isinstance(current, dict):
        current = work[urn] = {}
    return current


def _entries(container: dict[str, Any], attr: Attr) -> list[dict[str, Any]]:
    current = container.get(attr.name)
    if attr.multi_valued:
        return current if isinstance(current, list) else []
    return [current] if isinstance(current, dict) else []


def _blank(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {} or (
        isinstance(value, dict) and set(value) == {"value"} and value["value"] in ("", None))


def _set(container: dict[str, Any], kind: str, attr: Attr, value: Any) -> None:
    if _blank(value):
        container.pop(attr.name, None)
        return
    cleaned = clean_value(attr, value, attr.name)
    if cleaned is None:
        container.pop(attr.name, None)
    elif attr.multi_valued:
        if kind == "add":
            existing = _entries(container, attr)
            merged = existing + [c for c in cleaned if c not in existing]
            if cleaned and any(isinstance(c, dict) and c.get("primary") is True for c in cleaned):
                for entry in existing:
                    if isinstance(entry, dict) and entry not in cleaned and entry.get("primary") is True:
                        entry["primary"] = False
            container[attr.name] = merged
        else:
            container[attr.name] = cleaned
    elif attr.type == "complex":
        current = container.get(attr.name)
        combined: dict[str, Any] = dict(current) if isinstance(current, dict) else {}
        if "value" in cleaned and combined.get("value") != cleaned["value"]:
            # a new reference (the enterprise manager): the old one's $ref and displayName
            # describe someone else, so they go; the sub-attributes sent are kept as given
            combined = {}
        combined.update(cleaned)
        container[attr.name] = combined
    else:
        container[attr.name] = cleaned


def _set_sub(container: dict[str, Any], attr: Attr, sub: Attr, value: Any) -> None:
    entries = _entries(container, attr)
    if not entries:
        entries = [{}]
        container[attr.name] = entries if attr.multi_valued else entries[0]
    for entry in entries:
        _set_sub_value(entry, sub, value)


def _set_sub_value(entry: dict[str, Any], sub: Attr, value: Any) -> None:
    if _blank(value):
        entry.pop(sub.name, None)
        return
    entry[sub.name] = clean_single(sub, value, sub.name)


def _remove(container: dict[str, Any], attr: Attr, sub: Attr | None, value: Any) -> None:
    if sub is not None:
        for entry in _entries(container, attr):
            entry.pop(sub.name, None)
        return
    if attr.multi_valued and value not in (None, [], {}):
        listed = value if isinstance(value, list) else [value]
        wanted = {_value_key(attr, item) for item in listed}
        kept = [e for e in _entries(container, attr) if _value_key(attr, e) not in wanted]
        container[attr.name] = kept
        return
    container.pop(attr.name, None)


def _value_key(attr: Attr, item: Any) -> str:
    value_attr = attr.sub_attr("value")
    raw = item.get("value") if isinstance(item, dict) else item
    return normalise(value_attr, raw) if value_attr is not None else str(raw)


def _apply_filtered(container: dict[str, Any], kind: str, attr: Attr, sub: Attr | None, flt: Expr,
                    value: Any) -> None:
    if attr.type != "complex":
        raise InvalidPath(f"{attr.name} has no sub-attributes to filter on")
    entries = _entries(container, attr)
    matched = [e for e in entries if matches(e, flt, attr)]
    if kind == "remove":
        if sub is not None:
            for entry in matched:
                entry.pop(sub.name, None)
        elif attr.multi_valued:
            container[attr.name] = [e for e in entries if not any(e is m for m in matched)]
        elif matched:
            container.pop(attr.name, None)
        return
    if not matched:
        seed = _equality_seed(flt, attr)
        if seed is None:
            raise NoTarget(f"no value of {attr.name} matches the path filter")
        matched = [seed]
        if attr.multi_valued:
            container[attr.name] = [*entries, seed]
        else:
            container[attr.name] = seed
    for entry in matched:
        if sub is not None:
            _set_sub_value(entry, sub, value)
        else:
            cleaned = clean_single(attr, value, attr.name)
            if isinstance(cleaned, dict):
                entry.update(cleaned)


def _equality_seed(flt: Expr, attr: Attr) -> dict[str, Any] | None:
    if isinstance(flt, Compare) and flt.op == "eq" and flt.value is not None:
        sub = attr.sub_attr(flt.path)
        if sub is None:
            return None
        return {sub.name: clean_single(sub, flt.value, sub.name)}
    if isinstance(flt, And):
        left, right = _equality_seed(flt.left, attr), _equality_seed(flt.right, attr)
        if left is None or right is None:
            return None
        return {**left, **right}
    return None


def matches(entry: dict[str, Any], expr: Expr, attr: Attr) -> bool:
    """Evaluate a value filter against one entry of ``attr``."""
    if isinstance(expr, And):
        return matches(entry, expr.left, attr) and matches(entry, expr.right, attr)
    if isinstance(expr, Or):
        return matches(entry, expr.left, attr) or matches(entry, expr.right, attr)
    if isinstance(expr, Not):
        return not matches(entry, expr.expr, attr)
    if isinstance(expr, ValuePath):
        raise InvalidPath("value filters cannot be nested")
    sub = attr.sub_attr(expr.path)
    if sub is None:
        raise InvalidPath(f"'{expr.path}' is not a sub-attribute of {attr.name}")
    key = next((k for k in entry if k.lower() == sub.name.lower()), None)
    actual = entry.get(key) if key else None
    if isinstance(expr, Present):
        return actual not in (None, "")
    if expr.value is None:
        return (actual is None) == (expr.op == "eq")
    if actual is None:
        return expr.op == "ne"
    if sub.type == "boolean":
        try:
            wanted = coerce_bool(expr.value, sub.name)
        except InvalidValue:
            raise InvalidPath(f"{sub.name} is a boolean") from None
        same = actual is wanted
        return same if expr.op == "eq" else not same if expr.op == "ne" else False
    left, right = normalise(sub, actual), normalise(sub, expr.value)
    return {
        "eq": left == right, "ne": left != right, "co": right in left, "sw": left.startswith(right),
        "ew": left.endswith(right), "gt": left > right, "ge": left >= right, "lt": left < right,
        "le": left <= right,
    }[expr.op]


def _tidy(work: dict[str, Any]) -> None:
    for key in list(work):
        value = work[key]
        if isinstance(value, list):
            value = [v for v in value if v not in ({}, None)]
            work[key] = value
        if value in (None, [], {}, ""):
            del work[key]
        elif isinstance(value, dict) and key.startswith("urn:"):
            _tidy(value)
            if not value:
                del work[key]
        elif isinstance(value, dict):
            for sub_key in [k for k, v in value.items() if v in (None, "")]:
                del value[sub_key]
            if not value:
                del work[key]
