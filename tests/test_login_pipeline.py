"""The login pipeline's shared half, on a real database: ``complete_login`` and its public
dry run ``preview_login`` run the same steps, and the session is part of the login's one
transaction; the SSO routes only call the pipeline's steps. (The verify steps are covered
through HTTP in test_oidc_*.py / test_saml_*.py.)"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

from transom import directory, login_activity
from transom.errors import LoginRefused
from transom.login import complete_login, preview_login
from transom.models import AuditEvent, User, WebSession
from transom.runtime import Runtime
from transom.verified import ProtocolFacts, VerifiedLogin, verified_login

FACTS = ProtocolFacts(protocol="oidc", issuer="https://acme.okta.example", subject="00u-ada")


def okta_connector() -> dict[str, Any]:
    return {
        "id": "okta", "type": "okta", "account": "acme",
        "settings": {"domain": "acme.okta.example", "client_id": "app-2", "client_secret": "s"},
        "provisioning": {"space_attribute": "spaceName", "role_attribute": "spaceRole"},
    }


@pytest.fixture
def rt(make_runtime: Any) -> Runtime:
    runtime: Runtime = make_runtime([okta_connector()])
    with runtime.db.transaction() as db:
        account = directory.create_account(db, name="acme")
        directory.create_space(db, account=account, name="Trial")
    return runtime


def verified(rt: Runtime, **extra: Any) -> VerifiedLogin:
    payload = {"sub": "00u-ada", "preferred_username": "ada@acme.example", "email": "ada@acme.example",
               "email_verified": True, "name": "Ada Lovelace", "spaceName": "Trial", "spaceRole": "Space Admin",
               **extra}
    return verified_login(rt, rt.connector("okta"), payload, facts=FACTS, next_path="/after")


def rows(rt: Runtime) -> dict[str, int]:
    with rt.db.transaction() as db:
        return {model.__name__: int(db.scalar(select(func.count()).select_from(model)) or 0)
                for model in (User, AuditEvent, WebSession)}


def audit_actions(rt: Runtime) -> list[str]:
    """Actions in the order written (setup first), without the login event itself."""
    with rt.db.transaction() as db:
        return list(db.scalars(select(AuditEvent.action).where(AuditEvent.action != "login.sso")
                               .order_by(AuditEvent.id)))


def test_the_dry_run_predicts_the_login_and_writes_nothing(rt: Runtime) -> None:
    before, setup_actions = rows(rt), audit_actions(rt)
    preview = preview_login(rt, verified(rt))
    assert rows(rt) == before
    assert preview.refused is None and preview.result is not None and preview.result.created
    assert preview.user_after is not None
    assert preview.user_after["spaces"] == [{"space": "Trial", "role": "Space Admin"}]
    result = complete_login(rt, verified(rt))
    assert result.created
    # the dry run's changes are exactly the audit events the real login wrote
    assert sorted(action for action, _details in preview.changes) == sorted(audit_actions(rt)[len(setup_actions):])
    with rt.db.transaction() as db:
        user = db.scalars(select(User)).one()
        assert directory.user_json(db, user=user)["spaces"] == preview.user_after["spaces"]


def test_the_session_is_started_in_the_login_transaction(rt: Runtime) -> None:
    result = complete_login(rt, verified(rt))
    assert result.session_cookie and result.next_path == "/after"
    with rt.db.transaction() as db:
        session = db.scalars(select(WebSession)).one()
        assert session.user_id == result.user_id and session.connector_id == "okta"


def test_a_refused_login_starts_no_session_and_keeps_nothing(rt: Runtime) -> None:
    complete_login(rt, verified(rt))
    with rt.db.transaction() as db:
        user = db.scalars(select(User)).one()
        user.status = "deprovisioned"
        db.execute(WebSession.__table__.delete())
    before = rows(rt)
    with pytest.raises(LoginRefused, match="removed"):
        complete_login(rt, verified(rt))
    assert rows(rt) == before
    preview = preview_login(rt, verified(rt))
    assert preview.refused is not None and "removed" in preview.refused.message


def statements_of(rt: Runtime, verified_login: VerifiedLogin) -> list[str]:
    """The SQL statements one ``complete_login`` sends (counted, never timed)."""
    sent: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    event.listen(rt.db.engine, "before_cursor_execute", count)
    try:
        complete_login(rt, verified_login)
    finally:
        event.remove(rt.db.engine, "before_cursor_execute", count)
    return sent


def test_a_returning_users_unchanged_login_costs_a_fixed_handful_of_statements(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The steady state: account, user (with its identity), the provisioning reads and the
    current memberships, one UPDATE of the user and three INSERTs (audit, session, login
    activity): exactly one UPDATE, of the users table, and nothing else written."""
    # the login activity's row cap runs on every 50th row of the process: not on this one
    monkeypatch.setattr(login_activity, "CAP_EVERY", 10**9)
    complete_login(rt, verified(rt))
    complete_login(rt, verified(rt))  # the login activity's first sweep of the account is done
    sent = [s.split(None, 3) for s in statements_of(rt, verified(rt)) if not s.startswith("BEGIN")]
    verbs = sorted(words[0].upper() for words in sent)
    assert verbs == ["INSERT"] * 3 + ["SELECT"] * 4 + ["UPDATE"], verbs
    written = sorted(words[2].strip('"') if words[0].upper() == "INSERT" else words[1].strip('"')
                     for words in sent if words[0].upper() != "SELECT")
    assert written == ["audit_events", "login_attempts", "users", "web_sessions"]
    with rt.db.transaction() as db:
        user = db.scalars(select(User)).one()
        assert user.last_login_at is not None and user.first_login_at is not None
        assert user.first_login_at < user.last_login_at


def test_a_returning_users_changed_profile_is_written_and_previewed(rt: Runtime) -> None:
    """The profile change travels in the login's one UPDATE of the user; the dry run shows the
    user as the login leaves it and lists the change (captured without ORM objects)."""
    complete_login(rt, verified(rt))
    changed = verified(rt, name="Ada King", email="ada.king@acme.example")
    preview = preview_login(rt, changed)
    assert preview.user_after is not None
    assert preview.user_after["display_name"] == "Ada King" and preview.user_after["email"] == "ada.king@acme.example"
    assert [action for action, _details in preview.changes] == ["user.profile_updated"]
    sent = statements_of(rt, changed)
    assert sum(s.startswith("UPDATE") for s in sent) == 1
    with rt.db.transaction() as db:
        user = db.scalars(select(User)).one()
        assert (user.display_name, user.email, user.email_key) == (
            "Ada King", "ada.king@acme.example", "ada.king@acme.example")
        details = db.scalars(select(AuditEvent.details).where(AuditEvent.action == "user.profile_updated")).one()
        assert details == {"changes": {"email": {"from": "ada@acme.example", "to": "ada.king@acme.example"},
                                       "display_name": {"from": "Ada Lovelace", "to": "Ada King"}}}


def _transom_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {f"{node.module}.{alias.name}" for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("transom")
            for alias in node.names}


def test_the_sso_routes_hold_no_protocol_logic() -> None:
    """Routes are HTTP -> verify -> complete -> response: from the protocol and login
    modules they import only the steps of the pipeline, never a check of their own."""
    web = Path(__file__).resolve().parents[1] / "core" / "transom" / "web"
    allowed = {
        "transom.login.complete_login",
        "transom.oidc.start.start_oidc_login", "transom.oidc.verify.verify_oidc",
        "transom.oidc.verify.read_callback_params", "transom.oidc.verify.CallbackParams",
        "transom.oidc.endpoints.CALLBACK_PATH", "transom.saml.request.start_saml_login",
        "transom.loginstate.BINDING_COOKIE", "transom.loginstate.browser_binding",
        "transom.saml",  # the package: which of its names the route uses is checked below
        "transom.login_activity",  # the admin console's attempt recorder: no protocol logic
    }
    protocol = ("transom.login", "transom.oidc", "transom.saml", "transom.loginstate", "transom.verified")
    for name in ("sso_routes.py", "saml_routes.py"):
        imported = {i for i in _transom_imports(web / name) if i.startswith(protocol)}
        assert imported <= allowed, (name, imported - allowed)
    # saml_routes reaches the package as a whole: only its HTTP-facing names
    source = (web / "saml_routes.py").read_text(encoding="utf-8")
    used = set(re.findall(r"\bsaml\.(\w+)", source))
    assert used <= {"MAX_ACS_BODY_BYTES", "saml_connector", "parse_acs_form", "AcsForm", "verify_saml",
                    "sp_metadata_xml"}, used
