"""SCIM errors (RFC 7644 §3.12). They are ``TransomError`` subclasses, so the one error
hierarchy holds; the SCIM router turns every TransomError into the SCIM Error schema with
``status`` as a string and ``scimType`` where the RFC defines one."""

from __future__ import annotations

from transom.errors import TransomError

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
#: the scimType values RFC 7644 §3.12 defines; other codes are not sent as scimType
SCIM_TYPES = frozenset({
    "invalidFilter", "tooMany", "uniqueness", "mutability", "invalidSyntax", "invalidPath",
    "noTarget", "invalidValue", "invalidVers", "sensitive",
})


class ScimError(TransomError):
    status = 400
    code = "invalidValue"


class InvalidFilter(ScimError):
    code = "invalidFilter"


class InvalidSyntax(ScimError):
    code = "invalidSyntax"


class InvalidPath(ScimError):
    code = "invalidPath"


class InvalidValue(ScimError):
    code = "invalidValue"


class NoTarget(ScimError):
    code = "noTarget"


class Mutability(ScimError):
    code = "mutability"


class TooMany(ScimError):
    code = "tooMany"


class Uniqueness(ScimError):
    status = 409
    code = "uniqueness"


def error_body(*, status: int, detail: str, code: str | None, reason: str | None = None) -> dict[str, object]:
    body: dict[str, object] = {"schemas": [ERROR_SCHEMA], "status": str(status), "detail": detail}
    if code == "bad_request":  # the host's generic 400 (e.g. the input policy) in SCIM's words
        code = "invalidValue"
    if code in SCIM_TYPES:
        body["scimType"] = code
    if reason:
        # not an RFC 7644 attribute; SCIM clients ignore attributes they do not know
        body["reason"] = reason
    return body
