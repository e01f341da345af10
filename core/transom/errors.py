"""The one error hierarchy. Every error the host or a plugin raises on purpose is a
``TransomError``; its ``status`` is the HTTP status the edge answers with and its message
is safe to show to the person who caused it (no token contents, no secrets)."""

from __future__ import annotations


class TransomError(Exception):
    status: int = 400
    #: short machine-readable code, also used as SCIM ``scimType`` where one applies
    code: str = "bad_request"
    #: which rule refused, where a refusal has layers (``lone_surrogate``, ``throttled_address``);
    #: sent as ``reason`` on the error body so tests and operators can tell the layers apart
    reason: str | None = None
    #: seconds for a ``Retry-After`` header (429, 503)
    retry_after: int | None = None
    #: extra words for the refusal's one log line only (transom.observe.refused), never shown
    #: to the client: an exception class, attribute or hook names, counts. Never token
    #: contents, secrets or values from the request.
    log_detail: str | None = None

    def __init__(self, message: str, *, hint: str | None = None, code: str | None = None,
                 reason: str | None = None, retry_after: int | None = None,
                 log_detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code is not None:
            self.code = code
        if reason is not None:
            self.reason = reason
        if retry_after is not None:
            self.retry_after = retry_after
        if log_detail is not None:
            self.log_detail = log_detail

    def add_log_detail(self, words: str) -> None:
        """Append to :attr:`log_detail` (a layer the error passes through adds what it knows)."""
        self.log_detail = f"{self.log_detail} {words}" if self.log_detail else words


class ConfigError(TransomError):
    """The configuration or the installed plugins cannot work. Always one line."""

    status = 500
    code = "config"


class BadRequest(TransomError):
    status = 400
    code = "bad_request"


class LoginRefused(TransomError):
    """An SSO or password login was refused. ``hint`` tells an IdP admin what to fix."""

    status = 400
    code = "login_refused"


class Unauthorized(TransomError):
    status = 401
    code = "unauthorized"


class Forbidden(TransomError):
    status = 403
    code = "forbidden"


class NotFound(TransomError):
    status = 404
    code = "not_found"


class Conflict(TransomError):
    status = 409
    code = "conflict"


class PreconditionFailed(TransomError):
    status = 412
    code = "precondition_failed"


class PayloadTooLarge(TransomError):
    status = 413
    code = "too_large"
    #: the same reason as the server-wide cap (web/limits.py), whichever cap refused first
    reason = "body_too_large"


class TooManyRequests(TransomError):
    """A throttle refused the request (docs/security.md); ``retry_after`` is always set."""

    status = 429
    code = "too_many_requests"


class NotImplementedByHost(TransomError):
    status = 501
    code = "not_implemented"


class ConnectorError(TransomError):
    """A plugin failed (raised something that is not a TransomError, or returned nonsense).
    The host fails closed: the login or request is refused."""

    status = 502
    code = "connector_error"


class UpstreamError(TransomError):
    """An IdP endpoint (token, JWKS, Graph, metadata) could not be reached or answered badly."""

    status = 502
    code = "upstream_error"


class ServiceUnavailable(TransomError):
    """The database cannot be reached (or is locked past its wait). The request changed
    nothing; the client may retry after ``retry_after`` seconds."""

    status = 503
    code = "unavailable"
    reason = "database_unavailable"
    retry_after = 5
