"""Okta's SCIM dialect, rewritten into plain RFC 7644 (reference: scim-dialects.md §2).
Pure functions; the input is never mutated.

* create and PUT bodies carry ``password`` (random or synced) and ``groups: []``: dropped
  (Transom takes no passwords over SCIM and does not provision groups); ``id`` and ``meta``
  echoed back in a PUT are dropped too.
* path-less PATCH values (``{"op": "replace", "value": {"active": false}}``, renames that
  re-send ``id`` and ``schemas``): ``id``/``schemas``/``meta``/``password`` keys dropped.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

_DROP_FROM_RESOURCE = frozenset({"password", "groups", "id", "meta"})
_DROP_FROM_PATCH_VALUE = frozenset({"id", "schemas", "meta", "password"})


def normalize(*, resource_type: str, operation: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
    if resource_type != "User":
        return None
    data = copy.deepcopy(dict(body))
    if operation in ("create", "replace"):
        return {k: v for k, v in data.items() if k.lower() not in _DROP_FROM_RESOURCE}
    ops_key = next((k for k in data if k.lower() == "operations"), None)
    if ops_key is None or not isinstance(data[ops_key], list):
        return data
    for op in data[ops_key]:
        if isinstance(op, dict) and not op.get("path") and isinstance(op.get("value"), dict):
            op["value"] = {k: v for k, v in op["value"].items() if k.lower() not in _DROP_FROM_PATCH_VALUE}
    return data
