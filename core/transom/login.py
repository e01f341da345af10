"""Completing an SSO login once the protocol layer (``oidc.py`` / ``saml.py``) has verified
the IdP's payload: claims, group lookup, then one database transaction that finds, links or
creates the user, applies the provisioning rules, syncs groups and writes the audit trail.

Network calls (the overage group lookup) happen before the transaction opens, never while
it holds the SQLite write lock.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from transom import audit, directory
from transom.attributes import with_provisioning_values
from transom.connector import Claims, Connector, GroupsState
from transom.errors import Conflict, ConnectorError, LoginRefused, TransomError
from transom.models import (
    USER_ACTIVE,
    USER_DEPROVISIONED,
    USER_PENDING,
    Account,
    ExternalIdentity,
    User,
    utcnow,
)
from transom.runtime import Runtime

log = logging.getLogger("transom.login")

#: how the log line names each connector type (the seed's "Valid login through AzureAD Idp")
IDP_LABELS = {"azure_ad": "AzureAD", "okta": "Okta", "generic_saml": "SAML"}


@dataclass
class LoginTrace:
    """What a login did and why, in words an operator can act on. Never holds token contents;
    group ids and attribute names are fine."""

    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def note(self, message: str) -> None:
        self.notes.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        log.warning("login trace: %s", message)


@dataclass
class LoginResult:
    user_id: str
    account_id: str
    created: bool
    trace: LoginTrace


@dataclass(frozen=True)
class ResolvedGroups:
    """Group ids to apply, or ``None`` when memberships must stay as they are."""

    ids: tuple[str, ...] | None


def standard_oidc_claims(payload: Mapping[str, Any]) -> Claims:
    """The core fallback when no plugin maps the payload: standard OIDC claims."""
    sub = payload.get("sub")
    if not isinstance(sub, str) or not sub:
        raise LoginRefused("the IdP sent no subject", hint="the id_token must carry a 'sub' claim")
    email = payload.get("email") if isinstance(payload.get("email"), str) else None
    return Claims(
        subject=sub,
        email=email,
        email_verified=payload.get("email_verified") is True,
        # an unverified email is no user name: user names link accounts (nOAuth)
        user_name=payload.get("preferred_username") or (email if payload.get("email_verified") is True else None),
        display_name=payload.get("name"),
        given_name=payload.get("given_name"),
        family_name=payload.get("family_name"),
    )


def extract_claims(runtime: Runtime, connector: Connector, payload: Mapping[str, Any]) -> Claims:
    claims = runtime.plugins.extract_claims(connector, payload)
    if claims is None:
        if connector.protocol != "oidc":
            raise ConnectorError(f"connector '{connector.id}' extracted no claims from the SAML response")
        claims = standard_oidc_claims(payload)
    if not claims.subject:
        raise LoginRefused("the IdP sent no stable user identifier",
                           hint=f"check the subject/NameID settings of connector '{connector.id}'")
    claims = with_provisioning_values(connector, payload, claims)
    return claims


def resolve_groups(
    runtime: Runtime, connector: Connector, claims: Claims, payload: Mapping[str, Any], trace: LoginTrace
) -> ResolvedGroups:
    """Turn the groups claim's three states into "apply these ids" or "change nothing"."""
    if not connector.syncs_groups:
        return ResolvedGroups(None)
    state = claims.groups.state
    if state is GroupsState.PRESENT:
        return ResolvedGroups(claims.groups.ids)
    if state is GroupsState.ABSENT:
        trace.warn(
            f"connector '{connector.id}': the IdP sent no groups claim, so group memberships were "
            "left unchanged; configure the IdP application to send groups (Entra: Token "
            "configuration > Add groups claim; Okta: a groups claim or group attribute statement)"
        )
        return ResolvedGroups(None)
    try:
        ids = runtime.plugins.lookup_group_ids(connector, claims, payload, runtime.http)
    except TransomError as exc:  # UpstreamError, ConnectorError, or a plugin's own refusal
        trace.warn(
            f"connector '{connector.id}': the IdP reported more groups than fit in the token "
            f"(overage) and looking them up failed ({exc.message}); group memberships were left unchanged"
        )
        return ResolvedGroups(None)
    if ids is None:
        trace.warn(f"connector '{connector.id}': groups overage but no plugin resolves it; memberships unchanged")
        return ResolvedGroups(None)
    trace.note(f"groups overage resolved through the IdP API: {len(ids)} group ids")
    return ResolvedGroups(tuple(ids))


def complete_sso_login(
    runtime: Runtime, *, connector: Connector, payload: Mapping[str, Any], claims: Claims | None = None
) -> LoginResult:
    """Everything after protocol verification. Raises ``LoginRefused`` with a hint.
    ``claims`` saves a second extraction when the caller already ran it."""
    trace = LoginTrace()
    if claims is None:
        claims = extract_claims(runtime, connector, payload)
    groups = resolve_groups(runtime, connector, claims, payload, trace)
    attempts = 2  # a concurrent first login of the same person loses the unique key once
    kept_notes, kept_warnings = len(trace.notes), len(trace.warnings)
    for attempt in range(attempts):
        # a retried transaction reports only what it did itself (no doubled notes/warnings)
        del trace.notes[kept_notes:], trace.warnings[kept_warnings:]
        try:
            with runtime.db.transaction() as db:
                result = _login_transaction(db, connector=connector, claims=claims, groups=groups, trace=trace)
        except IntegrityError:
            if attempt + 1 == attempts:
                raise LoginRefused("the login collided with a concurrent change; try again") from None
            continue
        break
    label = IDP_LABELS.get(connector.type, connector.type)
    log.info(
        "Valid login through %s Idp detected connector=%s account=%s user=%s groups=%s",
        label, connector.id, connector.account, result.user_id,
        list(claims.groups.ids) if groups.ids is None else list(groups.ids),
    )
    return result


def _login_transaction(
    db: Session, *, connector: Connector, claims: Claims, groups: ResolvedGroups, trace: LoginTrace
) -> LoginResult:
    from transom.groups import sync_user_groups
    from transom.provisioning import apply_login_provisioning

    account = directory.connector_account(db, connector=connector)
    user, created = find_or_create_user(db, account=account, connector=connector, claims=claims, trace=trace)
    if user.status == USER_DEPROVISIONED:
        raise LoginRefused(
            "your access to this account has been removed",
            hint="the user is deprovisioned (SCIM active=false); re-activate the user in the IdP app",
        )
    first_login = user.first_login_at is None
    apply_login_provisioning(
        db, account=account, user=user, connector=connector, claims=claims, first_login=first_login, trace=trace
    )
    if groups.ids is not None and user.password_hash is None:
        sync_user_groups(db, account_id=account.id, user_id=user.id, idp_group_ids=groups.ids,
                         connector_id=connector.id, trace=trace)
    elif groups.ids is not None:
        trace.note("group sync skipped: the user has a password, so group memberships are managed manually")
    if user.status == USER_PENDING:
        trace.note("pending user (created by SCIM) linked on first SSO login and now active")
        audit.record(db, account_id=account.id, actor=f"connector:{connector.id}", action="user.activated",
                     user_id=user.id, connector_id=connector.id)
    user.status = USER_ACTIVE
    now = utcnow()
    user.first_login_at = user.first_login_at or now
    user.last_login_at = now
    audit.record(db, account_id=account.id, actor=f"connector:{connector.id}", action="login.sso",
                 user_id=user.id, connector_id=connector.id,
                 details={"created": created, "warnings": trace.warnings} if trace.warnings else {"created": created})
    return LoginResult(user_id=user.id, account_id=account.id, created=created, trace=trace)


def find_or_create_user(
    db: Session, *, account: Account, connector: Connector, claims: Claims, trace: LoginTrace
) -> tuple[User, bool]:
    """By external identity; else link one user of the account with the same user name
    (case-insensitively), else with the same *verified* email; else create. Two candidates:
    refuse, never guess (docs/provisioning.md)."""
    identity = db.scalar(
        select(ExternalIdentity).where(
            ExternalIdentity.account_id == account.id,
            ExternalIdentity.connector_id == connector.id,
            ExternalIdentity.subject == claims.subject,
        )
    )
    if identity is not None:
        user = db.scalar(select(User).where(User.account_id == account.id, User.id == identity.user_id))
        if user is not None:
            return user, False
    user = _link_candidate(db, account=account, connector=connector, claims=claims)
    created = False
    if user is None:
        user_name = claims.user_name or claims.email or claims.subject
        if claims.user_name is None and db.scalar(select(User.id).where(
                User.account_id == account.id, User.user_name_key == directory.user_name_key(user_name))):
            # The fallback name (an email nobody verified, or the subject) belongs to someone
            # else: never link on it, and say so instead of answering with a bare conflict.
            raise LoginRefused(
                "another user of this account already has your user name",
                hint=f"connector '{connector.id}' sent no user name claim and the fallback "
                     f"'{user_name}' is taken; send the user name (Entra UPN, Okta login) or a verified email",
            )
        try:
            user = directory.create_user(
                db, account=account, user_name=user_name, email=claims.email,
                display_name=claims.display_name, given_name=claims.given_name, family_name=claims.family_name,
                actor=f"connector:{connector.id}", connector_id=connector.id,
            )
        except Conflict as exc:
            # A concurrent first login of the same person took the unique user name first
            # (PostgreSQL): hand complete_sso_login the IntegrityError so it retries once and
            # then finds that user by its external identity.
            if isinstance(exc.__cause__, IntegrityError):
                raise exc.__cause__ from None
            raise
        created = True
        trace.note(f"new user created just in time as '{user_name}'")
    else:
        trace.note(f"linked existing user '{user.user_name}' to connector '{connector.id}'")
        audit.record(db, account_id=account.id, actor=f"connector:{connector.id}", action="user.linked",
                     user_id=user.id, connector_id=connector.id)
    db.add(ExternalIdentity(account_id=account.id, user_id=user.id, connector_id=connector.id, subject=claims.subject))
    db.flush()
    return user, created


def _link_candidate(db: Session, *, account: Account, connector: Connector, claims: Claims) -> User | None:
    if claims.user_name:
        by_name = db.scalar(select(User).where(
            User.account_id == account.id, User.user_name_key == directory.user_name_key(claims.user_name)))
        if by_name is not None:
            return _linkable(db, by_name, connector)
    if claims.email and claims.email_verified:
        by_email = list(db.scalars(select(User).where(
            User.account_id == account.id, User.email_key == claims.email.casefold()).limit(2)))
        if len(by_email) > 1:
            raise LoginRefused(
                "more than one user in this account matches your email address",
                hint="two users share this email; give the IdP user a user name that matches one of them",
            )
        if by_email:
            return _linkable(db, by_email[0], connector)
    return None


def _linkable(db: Session, user: User, connector: Connector) -> User:
    """A user already bound to another subject of the same connector is someone else."""
    other = db.scalar(select(ExternalIdentity.id).where(
        ExternalIdentity.account_id == user.account_id, ExternalIdentity.user_id == user.id,
        ExternalIdentity.connector_id == connector.id))
    if other is not None:
        raise LoginRefused(
            "your user name belongs to a different identity in this account",
            hint=f"user '{user.user_name}' is already linked to another subject of connector '{connector.id}'",
        )
    return user
