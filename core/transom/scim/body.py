"""Reading a SCIM request body: size and nesting-depth caps *before* ``json.loads`` (a
100,000-deep array would otherwise end in a RecursionError), duplicate keys refused (the
second ``userName`` must not silently win), NaN/Infinity refused."""

from __future__ import annotations

import json
import re
from typing import Any

from transom.errors import PayloadTooLarge
from transom.scim.errors import InvalidSyntax
from transom.textpolicy import check, check_json

#: SCIM user bodies from Entra and Okta are well under 10 KB
MAX_BODY_BYTES = 64 * 1024
MAX_DEPTH = 16
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")
#: attributes that name or identify (the identifier rule of transom.textpolicy); other
#: strings follow the text rule (a postal address may span lines)
IDENTIFIER_ATTRIBUTES = frozenset({
    "username", "externalid", "id", "displayname", "givenname", "familyname", "middlename", "nickname",
    "honorificprefix", "honorificsuffix", "title", "usertype", "preferredlanguage", "locale", "timezone",
    "employeenumber", "costcenter", "organization", "division", "department", "value", "$ref", "type",
    "op", "path", "filter", "sortby", "sortorder", "attributes", "excludedattributes",
})
_PATH_LEAF = re.compile(r"[^.:\]\[]+$")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidSyntax(f"duplicate key '{key[:100]}' in the JSON body")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise InvalidSyntax(f"'{name}' is not valid JSON")


def nesting_depth(text: str) -> int:
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def parse_json_object(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body over {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        raise InvalidSyntax("the request body is empty; send a JSON object")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidSyntax("the request body is not UTF-8") from None
    if nesting_depth(text) > MAX_DEPTH:
        raise InvalidSyntax(f"the JSON body is nested deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except InvalidSyntax:
        raise
    except (ValueError, RecursionError) as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise InvalidSyntax(f"the request body is not valid JSON{where}") from None
    if not isinstance(value, dict):
        raise InvalidSyntax("the request body must be a JSON object")
    return value


def check_scim_text(body: dict[str, Any]) -> None:
    """The input policy over a parsed SCIM body. A PATCH operation's ``value`` follows the
    rule of the attribute its ``path`` names (``addresses[type eq "work"].formatted`` may
    span lines, ``userName`` may not)."""
    operations = next((v for k, v in body.items() if k.lower() == "operations"), None)
    if not isinstance(operations, list):
        check_json(body, "body", identifier_keys=IDENTIFIER_ATTRIBUTES)
        return
    check_json({k: v for k, v in body.items() if k.lower() != "operations"}, "body",
               identifier_keys=IDENTIFIER_ATTRIBUTES)
    for index, op in enumerate(operations):
        where = f"Operations[{index}]"
        if not isinstance(op, dict):
            continue
        rest = {k: v for k, v in op.items() if k.lower() != "value"}
        check_json(rest, where, identifier_keys=IDENTIFIER_ATTRIBUTES)
        value = next((v for k, v in op.items() if k.lower() == "value"), None)
        path = next((v for k, v in op.items() if k.lower() == "path"), None)
        if isinstance(value, str):
            leaf = _PATH_LEAF.search(path.strip()) if isinstance(path, str) else None
            named = leaf.group().lower() if leaf is not None else ""
            check(value, f"{where}.value", identifier=named in IDENTIFIER_ATTRIBUTES)
        elif value is not None:
            check_json(value, f"{where}.value", identifier_keys=IDENTIFIER_ATTRIBUTES)
