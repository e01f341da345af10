"""Where a login may send the browser afterwards: same-origin relative paths only."""

from __future__ import annotations

from urllib.parse import urlsplit


def safe_next(value: str | None) -> str:
    if not value or len(value) > 2000:
        return "/"
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if any(ord(ch) < 0x20 for ch in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value
