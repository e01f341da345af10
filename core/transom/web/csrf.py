"""CSRF tokens and one-shot messages for the server-rendered admin console.

The CSRF token is an HMAC of the session cookie under the server's session secret: bound to
one browser session, unguessable without the secret, and nothing to store. Every console form
carries it in a hidden ``csrf`` field; a POST without the right value is refused with 403
before anything changes (the session cookie's SameSite=Lax is a second layer, not the only
one).

A *flash* is the message shown once after a POST/redirect ("group renamed", or why a change
was refused): kept in a short-lived cookie signed with the same secret, so a crafted link
cannot put words on an admin page.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from transom.errors import Forbidden
from transom.security import sign, unsign
from transom.sessions import COOKIE_NAME

FLASH_COOKIE = "transom_flash"
FLASH_PATH = "/admin"
_FLASH_SECONDS = 120


def csrf_token(secret: str, request: Request) -> str:
    cookie = request.cookies.get(COOKIE_NAME, "")
    return hmac.new(secret.encode("utf-8"), b"csrf:" + cookie.encode("utf-8"), hashlib.sha256).hexdigest()


def check_csrf(secret: str, request: Request, submitted: str | None) -> None:
    expected = csrf_token(secret, request)
    if not submitted or not request.cookies.get(COOKIE_NAME) or not hmac.compare_digest(expected, submitted):
        raise Forbidden("this form has expired or was not sent from this console; reload the page and try again")


def set_flash(response: Response, secret: str, *, kind: str, message: str) -> None:
    value = sign(secret, json.dumps({"kind": kind, "message": message[:500]}, separators=(",", ":")).encode().hex())
    response.set_cookie(FLASH_COOKIE, value, max_age=_FLASH_SECONDS, httponly=True, samesite="lax", path=FLASH_PATH)


def pop_flash(request: Request, secret: str) -> dict[str, Any] | None:
    """The pending message, if any; the caller deletes the cookie (:func:`clear_flash`)."""
    raw = request.cookies.get(FLASH_COOKIE)
    value = unsign(secret, raw) if raw else None
    if value is None:
        return None
    try:
        data = json.loads(bytes.fromhex(value).decode("utf-8"))
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("kind") not in ("ok", "error"):
        return None
    return {"kind": data["kind"], "message": str(data.get("message", ""))}


def clear_flash(response: Response) -> None:
    response.delete_cookie(FLASH_COOKIE, path=FLASH_PATH)
