"""Provisioning on login: profile, spaces and roles from IdP attributes.

The full space/role rules arrive with the provisioning issue; this first version sets the
profile fields only.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from transom.connector import Claims, Connector
from transom.login import LoginTrace
from transom.models import Account, User


def apply_login_provisioning(
    db: Session, *, account: Account, user: User, connector: Connector, claims: Claims,
    first_login: bool, trace: LoginTrace,
) -> None:
    if not (first_login or connector.provisioning.update_profile_on_login):
        return
    if claims.email:
        user.email = claims.email
        user.email_key = claims.email.casefold()
    for attr in ("display_name", "given_name", "family_name"):
        value = getattr(claims, attr)
        if value:
            setattr(user, attr, value)
