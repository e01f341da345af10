"""ASGI entry for ``uvicorn transom.web.asgi:create --factory`` (used by ``transom serve``)."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from transom.config import load_config
from transom.runtime import Runtime
from transom.web.app import create_app


def create() -> FastAPI:
    config = load_config()
    logging.basicConfig(level=config.server.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return create_app(Runtime.build(config))
