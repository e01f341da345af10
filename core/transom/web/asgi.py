"""ASGI entry for ``uvicorn transom.web.asgi:create --factory`` (used by ``transom serve``)."""

from __future__ import annotations

from fastapi import FastAPI

from transom import logs
from transom.config import load_config
from transom.runtime import Runtime
from transom.web.app import create_app


def create() -> FastAPI:
    config = load_config()
    # serve configured logging already; an external ``uvicorn ... --factory`` gets the same format
    logs.configure(config.server.log_level, config.server.log_format)
    return create_app(Runtime.build(config))
