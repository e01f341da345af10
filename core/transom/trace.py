"""The login trace: what a login did and why, in words an operator can act on."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger("transom.login")


@dataclass
class LoginTrace:
    """Notes and warnings of one login. Never holds token contents; group ids and attribute
    names are fine. Its own module so that the services a login calls (provisioning,
    groups) can write to it without importing the login pipeline that calls them."""

    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def note(self, message: str) -> None:
        self.notes.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        log.warning("login trace: %s", message)
