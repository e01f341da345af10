"""The SCIM token check (``directory.authenticate_account_token``) is one prebuilt Core read:
the same refusals and permission rule as ``authenticate_token``, the token's own account,
the "last used" stamp, and no ORM object loaded into the request's session."""

from __future__ import annotations

from typing import Any

import pytest
from scim_support import make_tenants
from sqlalchemy import select

from transom import directory
from transom.errors import Forbidden, Unauthorized
from transom.models import Account, ApiToken


def test_token_check_answers_the_token_and_its_own_account_without_orm_objects(make_runtime: Any) -> None:
    tenants = make_tenants(make_runtime)
    with tenants.runtime.db.transaction() as db:
        name, account = directory.authenticate_account_token(db, token=f" {tenants.token}\n",
                                                             permission="manage-users")
        assert len(db.identity_map) == 0  # no Account, no ApiToken: Core rows only
        acme = db.scalar(select(Account).where(Account.name == "acme"))
        assert acme is not None and (name, account.id, account.name) == ("entra-app", acme.id, "acme")
        other_name, other = directory.authenticate_account_token(db, token=tenants.other_token,
                                                                 permission="manage-users")
        assert (other_name, other.name) == ("globex-app", "globex") and other.id != acme.id
        # the same token read the ORM way names the same account
        token = directory.authenticate_token(db, token=tenants.token, permission="manage-users")
        assert token.account_id == account.id and token.last_used_at is not None  # stamped by the check


def test_token_check_refusals(make_runtime: Any) -> None:
    tenants = make_tenants(make_runtime)
    with tenants.runtime.db.transaction() as db:
        acme = db.scalar(select(Account).where(Account.name == "acme"))
        assert acme is not None
        admin = directory.create_token(db, account=acme, permissions=["admin"], name="ops")
    for bad in ("", "garbage", tenants.token + "x", tenants.token[:-1]):
        with tenants.runtime.db.transaction() as db, pytest.raises(Unauthorized, match="invalid API token"):
            directory.authenticate_account_token(db, token=bad, permission="manage-users")
    with tenants.runtime.db.transaction() as db, pytest.raises(Forbidden, match="'admin'"):
        directory.authenticate_account_token(db, token=tenants.token, permission="admin")
    with tenants.runtime.db.transaction() as db:  # "admin" grants every permission, as before
        assert directory.authenticate_account_token(db, token=admin, permission="manage-users")[0] == "ops"
    with tenants.runtime.db.transaction() as db:  # a refused token was never stamped as used
        used = dict(db.execute(select(ApiToken.name, ApiToken.last_used_at)).all())
        assert used["entra-app"] is None and used["ops"] is not None
