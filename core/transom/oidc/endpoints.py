"""Where OIDC lives on this host: the redirect URI, built from ``server.base_url`` only."""

from __future__ import annotations

from transom.runtime import Runtime

CALLBACK_PATH = "/api/accounts/idp-callback"


def callback_url(runtime: Runtime) -> str:
    return runtime.config.server.base_url + CALLBACK_PATH
