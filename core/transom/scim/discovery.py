"""Discovery documents (RFC 7644 §4): ServiceProviderConfig, ResourceTypes, Schemas."""

from __future__ import annotations

import copy
from typing import Any

from transom.errors import NotFound
from transom.scim.schema import ENTERPRISE_SCHEMA, LIST_RESPONSE, USER_SCHEMA, schema_documents

MAX_RESULTS = 200
DOCS = "https://github.com/transom-sso/transom/blob/main/docs/scim.md"


def service_provider_config(base: str) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": DOCS,
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": False},
        "sort": {"supported": True},
        "etag": {"supported": True},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "API token",
            "description": "A Transom API token with the manage-users permission, sent as "
                           "'Authorization: Bearer <token>' (the bare token is accepted too).",
            "specUri": "https://www.rfc-editor.org/rfc/rfc6750",
            "documentationUri": DOCS,
            "primary": True,
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": f"{base}/ServiceProviderConfig"},
    }


def _user_type(base: str) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "User",
        "name": "User",
        "description": "User account",
        "endpoint": "/Users",
        "schema": USER_SCHEMA,
        "schemaExtensions": [{"schema": ENTERPRISE_SCHEMA, "required": False}],
        "meta": {"resourceType": "ResourceType", "location": f"{base}/ResourceTypes/User"},
    }


def _list(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schemas": [LIST_RESPONSE], "totalResults": len(resources), "startIndex": 1,
            "itemsPerPage": len(resources), "Resources": resources}


def resource_types(base: str) -> dict[str, Any]:
    return _list([_user_type(base)])


def resource_type(base: str, type_id: str) -> dict[str, Any]:
    if type_id.lower() != "user":
        raise NotFound(f"ResourceType {type_id[:64]} not found")
    return _user_type(base)


def _schema(base: str, urn: str) -> dict[str, Any]:
    doc = copy.deepcopy(schema_documents()[urn])
    doc["meta"] = {"resourceType": "Schema", "location": f"{base}/Schemas/{urn}"}
    return doc


def schemas(base: str) -> dict[str, Any]:
    return _list([_schema(base, urn) for urn in schema_documents()])


def schema(base: str, schema_id: str) -> dict[str, Any]:
    for urn in schema_documents():
        if urn.lower() == schema_id.lower():
            return _schema(base, urn)
    raise NotFound(f"Schema {schema_id[:200]} not found")
