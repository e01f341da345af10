"""The OpenAPI schema as the API really answers: FastAPI's generated schema with its 422
"Validation Error" replaced by the 400 our handler sends, plus the SCIM 2.0 endpoints, which
are plain request handlers (they parse their own bodies) and so are invisible to FastAPI."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

SCIM = "/api/scim/v2"
_SCIM_JSON = "application/scim+json"
_ERROR = {"$ref": "#/components/schemas/ScimError"}
_RESOURCE = {"type": "object", "description": "a SCIM resource (RFC 7643)", "additionalProperties": True}
_STATUS_TEXT = {
    200: "OK", 201: "Created", 204: "No Content", 400: "Bad request (scimType says which rule)",
    401: "Missing or unknown API token (manage-users permission)", 404: "No such resource in the token's account",
    409: "uniqueness: userName or externalId taken", 412: "If-Match does not match the current ETag",
    413: "Body over the size limit", 501: "Not implemented by Transom (groups are managed by group sync)",
}
_USER_ID = [{"name": "user_id", "in": "path", "required": True, "schema": {"type": "string"}}]
_LIST_QUERY = [
    {"name": "filter", "in": "query", "schema": {"type": "string"}, "description": "RFC 7644 filter"},
    {"name": "startIndex", "in": "query", "schema": {"type": "integer", "minimum": 1}},
    {"name": "count", "in": "query", "schema": {"type": "integer", "minimum": 0}},
    {"name": "attributes", "in": "query", "schema": {"type": "string"}},
    {"name": "excludedAttributes", "in": "query", "schema": {"type": "string"}},
]


def _op(summary: str, codes: tuple[int, ...], *, body: bool = False, params: list[dict[str, Any]] | None = None,
        secured: bool = True) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for code in codes:
        entry: dict[str, Any] = {"description": _STATUS_TEXT[code]}
        if code == 204:
            pass
        elif code >= 400:
            entry["content"] = {_SCIM_JSON: {"schema": _ERROR}}
        else:
            entry["content"] = {_SCIM_JSON: {"schema": _RESOURCE}}
        responses[str(code)] = entry
    op: dict[str, Any] = {"tags": ["scim"], "summary": summary, "responses": responses}
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = {"required": True, "content": {_SCIM_JSON: {"schema": _RESOURCE},
                                                           "application/json": {"schema": _RESOURCE}}}
    if secured:
        op["security"] = [{"scimBearer": []}]
    return op


def scim_paths() -> dict[str, Any]:
    read = (200, 400, 401, 404)
    return {
        f"{SCIM}/ServiceProviderConfig": {"get": _op("Service provider configuration", (200, 401))},
        f"{SCIM}/ResourceTypes": {"get": _op("Resource types", (200, 401))},
        f"{SCIM}/Schemas": {"get": _op("Schemas", (200, 401))},
        f"{SCIM}/Users": {
            "get": _op("List or filter users", (200, 400, 401), params=_LIST_QUERY),
            "post": _op("Create a user", (201, 400, 401, 409, 413), body=True),
        },
        f"{SCIM}/Users/.search": {"post": _op("Search users (POST)", (200, 400, 401, 413), body=True)},
        f"{SCIM}/Users/{{user_id}}": {
            "get": _op("One user", read, params=_USER_ID),
            "put": _op("Replace a user", (200, 400, 401, 404, 409, 412, 413), body=True, params=_USER_ID),
            "patch": _op("Modify a user (PatchOp)", (200, 204, 400, 401, 404, 409, 412, 413), body=True,
                         params=_USER_ID),
            "delete": _op("Delete a user", (204, 401, 404, 412), params=_USER_ID),
        },
        f"{SCIM}/Groups": {
            "get": _op("List groups (always empty: groups come from group sync)", (200, 401)),
            "post": _op("Create a group: not supported", (401, 501), body=True),
        },
    }


_SCIM_ERROR_SCHEMA = {
    "type": "object",
    "required": ["schemas", "status"],
    "properties": {
        "schemas": {"type": "array", "items": {"type": "string"},
                    "example": ["urn:ietf:params:scim:api:messages:2.0:Error"]},
        "status": {"type": "string", "example": "400"},
        "scimType": {"type": "string", "example": "invalidFilter"},
        "detail": {"type": "string"},
    },
}
_BAD_REQUEST = {
    "description": "Invalid request (parameters or body)",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}, "hint": {"type": "string"}},
}


def _real_status_codes(schema: dict[str, Any]) -> None:
    """Our RequestValidationError handler answers 400 with ``{error, detail}``, never 422."""
    for operations in schema.get("paths", {}).values():
        for op in operations.values():
            responses = op.get("responses", {}) if isinstance(op, dict) else {}
            if "422" in responses:
                del responses["422"]
                responses.setdefault("400", _BAD_REQUEST)
    components = schema.get("components", {}).get("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)


def install_openapi(app: FastAPI) -> None:
    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes,
                             description="Transom's HTTP API. SCIM 2.0 (RFC 7644) under /api/scim/v2; the admin "
                             "API under /api/admin (docs/admin-api.md).")
        _real_status_codes(schema)
        schema.setdefault("paths", {}).update(scim_paths())
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {}).update({"ScimError": _SCIM_ERROR_SCHEMA, "Error": _ERROR_SCHEMA})
        components.setdefault("securitySchemes", {})["scimBearer"] = {
            "type": "http", "scheme": "bearer", "description": "API token with the manage-users permission"}
        app.openapi_schema = schema
        return schema

    app.openapi = build  # type: ignore[method-assign]  # FastAPI's documented way to customise the schema
