"""The login pipeline after protocol verification, the same for OIDC and SAML:

    route -> verify_oidc / verify_saml -> VerifiedLogin -> complete_login -> session

:func:`complete_login` takes a :class:`~transom.verified.VerifiedLogin` (claims already
mapped by the verify step), resolves the groups (an overage is looked up through the IdP's
API, before any transaction opens, so a network call never holds the SQLite write lock),
then runs ONE transaction that spends the callback's single-use marks (its first
statements: the login state, SAML's replay row, for SAML after the check of both), finds,
links or creates the user, applies the provisioning rules, syncs groups, writes the audit
trail and starts the browser session. A callback thus writes once; when anything fails, the
marks are spent in a transaction of their own, and before an overage lookup they are spent
first (transom.singleuse).

:func:`preview_login` and :func:`preview_unverified` run the very same steps in a
transaction that is always rolled back (``transom explain``). Only a ``VerifiedLogin`` can
reach an IdP API: the unverified preview resolves groups from the payload alone.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, bindparam, event, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from transom import audit, directory, login_activity
from transom.connector import Claims, Connector, GroupsState
from transom.db import core
from transom.errors import ConfigError, Conflict, LoginRefused, TransomError
from transom.groups import sync_user_groups
from transom.models import (
    USER_ACTIVE,
    USER_DEPROVISIONED,
    USER_PENDING,
    Account,
    ExternalIdentity,
    User,
    utcnow,
)
from transom.provisioning import LoginPreview as ProvisioningPreview
from transom.provisioning import apply_login_provisioning, preview_provisioning
from transom.runtime import Runtime
from transom.sessions import start_session
from transom.singleuse import SingleUse
from transom.trace import LoginTrace
from transom.verified import VerifiedLogin, map_claims

log = logging.getLogger("transom.login")

#: how the log line names each connector type (the seed's "Valid login through AzureAD Idp")
IDP_LABELS = {"azure_ad": "AzureAD", "okta": "Okta", "generic_saml": "SAML", "generic_oidc": "OIDC"}

__all__ = ["LoginPreview", "LoginResult", "LoginTrace", "complete_login", "preview_login", "preview_unverified"]


#: a login transaction that loses a race (unique key, serialization failure, deadlock) runs again
LOGIN_ATTEMPTS = 4
#: PostgreSQL SQLSTATEs of a transaction that lost to a concurrent one and may simply be re-run
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})


def lost_race(exc: IntegrityError | OperationalError) -> bool:
    """A unique key taken by a concurrent transaction, or PostgreSQL's serialization failure
    or deadlock; not a lost connection or a locked SQLite file (those are outages)."""
    if isinstance(exc, IntegrityError):
        return True
    return getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES


@dataclass
class LoginResult:
    user_id: str
    account_id: str
    created: bool
    trace: LoginTrace
    #: where to send the browser (``VerifiedLogin.next_path``)
    next_path: str | None = None
    #: the signed session cookie value; ``None`` until the session is started
    session_cookie: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ResolvedGroups:
    """Group ids to apply, or ``None`` when memberships must stay as they are."""

    ids: tuple[str, ...] | None


# -- the pipeline ---------------------------------------------------------------------------


def complete_login(runtime: Runtime, verified: VerifiedLogin) -> LoginResult:
    """Everything after protocol verification, for both protocols: group resolution, then
    one transaction (the callback's single-use marks, for SAML checked there first, user,
    provisioning, groups, audit, session). Raises ``LoginRefused`` with a hint; on any
    refusal nothing of the transaction is kept, and the marks are spent in a transaction of
    their own unless the check refused them (transom.singleuse)."""
    single_use = verified.single_use
    if single_use is None:
        return _complete_login(runtime, verified, None)
    with single_use.spent_on_failure(runtime.db):
        return _complete_login(runtime, verified, single_use)


def _complete_login(runtime: Runtime, verified: VerifiedLogin, single_use: SingleUse | None) -> LoginResult:
    connector, claims = verified.connector, verified.claims
    trace = LoginTrace()
    if single_use is not None and _needs_idp_lookup(connector, claims):
        # a replayed state or assertion must never reach the IdP's API: spend them first
        single_use.spend_now(runtime.db)
    groups = resolve_groups(runtime, connector, claims, verified.payload, trace, idp_lookups=True)
    session = _SessionStart(secret=_session_secret(runtime),
                            max_age_seconds=runtime.config.server.session_max_age_seconds)
    kept_notes, kept_warnings = len(trace.notes), len(trace.warnings)
    for attempt in range(1, LOGIN_ATTEMPTS + 1):
        # a retried transaction reports only what it did itself (no doubled notes/warnings)
        del trace.notes[kept_notes:], trace.warnings[kept_warnings:]
        try:
            with runtime.db.transaction() as db:
                # First: refused when a replay or a concurrent callback spent them (SAML: also
                # when the check the spend runs first refuses, before anything is written). The
                # account the spent marks are scoped by saves the transaction a read; marks
                # spent already (before an overage lookup) prove nothing here: None.
                known_account = single_use.spend(db) if single_use is not None else None
                changes = login_activity.watch_changes(db)
                result = _login_transaction(db, connector=connector, claims=claims, groups=groups, trace=trace,
                                            session=session, account_id=known_account)
                login_activity.record_success(db, runtime, connector=connector, payload=verified.payload,
                                              result=result, changes=changes)
        except (IntegrityError, OperationalError) as exc:
            if not lost_race(exc):
                raise
            if attempt == LOGIN_ATTEMPTS:
                raise LoginRefused("the sign-in collided with another one; try again",
                                   reason="login.concurrent", log_detail=f"lost_races={attempt}") from None
            # A concurrent login of the same person (double-click, two tabs, a second worker)
            # committed first: run again, it now finds what the other one wrote.
            log.info("login of connector=%s lost a race (attempt %d); retrying", connector.id, attempt)
            time.sleep(random.uniform(0, 0.02 * attempt))  # noqa: S311 - jitter, not a secret
            continue
        break
    if single_use is not None:
        single_use.committed()
    # SAML's next path is what the check its spend ran found; OIDC's came with the login
    found = single_use.next_path if single_use is not None else None
    result.next_path = found if found is not None else verified.next_path
    label = IDP_LABELS.get(connector.type, connector.type)
    log.info(
        "Valid login through %s Idp detected connector=%s account=%s user=%s groups=%s",
        label, connector.id, connector.account, result.user_id,
        list(claims.groups.ids) if groups.ids is None else list(groups.ids),
    )
    return result


@dataclass(frozen=True)
class _SessionStart:
    """What the login transaction needs to start the browser session (none in a dry run)."""

    secret: str
    max_age_seconds: int


def _session_secret(runtime: Runtime) -> str:
    secret = runtime.config.server.session_secret
    if secret is None:  # create_app generates one; a bare runtime must be given one
        raise ConfigError("server.session_secret is not set")
    return secret.get_secret_value()


def _needs_idp_lookup(connector: Connector, claims: Claims) -> bool:
    """Whether :func:`resolve_groups` will call the IdP's API (a groups overage)."""
    return connector.syncs_groups and claims.groups.state is GroupsState.OVERAGE


def resolve_groups(
    runtime: Runtime, connector: Connector, claims: Claims, payload: Mapping[str, Any], trace: LoginTrace,
    *, idp_lookups: bool,
) -> ResolvedGroups:
    """Turn the groups claim's three states into "apply these ids" or "change nothing".
    ``idp_lookups`` allows the overage lookup through the IdP's API (Graph); it is only
    ever true for a verified payload."""
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
    if not idp_lookups:
        trace.warn(
            f"connector '{connector.id}': groups overage not looked up: the payload is not verified, and "
            "the IdP's API is only ever called for a verified one; group memberships left unchanged"
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


def _login_transaction(
    db: Session, *, connector: Connector, claims: Claims, groups: ResolvedGroups, trace: LoginTrace,
    session: _SessionStart | None = None, account_id: str | None = None,
) -> LoginResult:
    # Steady state (a returning user, nothing changed): five reads (four when the spent marks
    # named the account), one UPDATE of the user and three INSERTs (login audit event,
    # session, login activity), every statement built once at import and executed through
    # Core, with no ORM unit of work.
    if account_id is None:
        account_id = directory.connector_account_id(db, connector=connector)
    user, created = find_or_create_user(db, account_id=account_id, connector=connector, claims=claims, trace=trace)
    if user.status == USER_DEPROVISIONED:
        raise LoginRefused(
            "your access to this account has been removed",
            hint="the user is deprovisioned (SCIM active=false); re-activate the user in the IdP app",
            reason="login.deprovisioned",
        )
    first_login = user.first_login_at is None
    columns = apply_login_provisioning(
        db, account_id=account_id, user=user, connector=connector, claims=claims, first_login=first_login, trace=trace
    )
    if groups.ids is not None and user.password_hash is None:
        sync_user_groups(db, account_id=account_id, user_id=user.id, idp_group_ids=groups.ids,
                         connector_id=connector.id, trace=trace)
    elif groups.ids is not None:
        trace.note("group sync skipped: the user has a password, so group memberships are managed manually")
    actor = f"connector:{connector.id}"
    if user.status == USER_PENDING:
        trace.note("pending user (created by SCIM) linked on first SSO login and now active")
        audit.record_login(db, account_id=account_id, actor=actor, action="user.activated",
                           user_id=user.id, connector_id=connector.id)
    now = utcnow()
    if user.status != USER_ACTIVE:
        columns["status"] = USER_ACTIVE
    if first_login:
        columns["first_login_at"] = now
    columns["last_login_at"] = now
    directory.update_login_user(db, user, columns)
    details: dict[str, Any] = {"created": created}
    if trace.warnings:
        details["warnings"] = trace.warnings
    audit.record_login(db, account_id=account_id, actor=actor, action="login.sso", user_id=user.id,
                       connector_id=connector.id, details=details)
    result = LoginResult(user_id=user.id, account_id=account_id, created=created, trace=trace)
    if session is not None:
        result.session_cookie = start_session(db, user=user, secret=session.secret,
                                              max_age_seconds=session.max_age_seconds, connector_id=connector.id)
    return result


# -- the dry run ----------------------------------------------------------------------------


class CommitRefused(RuntimeError):
    """A dry run tried to commit."""


@contextmanager
def rolled_back(runtime: Runtime) -> Iterator[Session]:
    """A session whose transaction is always rolled back; a commit raises."""

    def refuse(session: Session) -> None:
        # Savepoints (create_user's begin_nested) release into the outer transaction: fine.
        if session.get_nested_transaction() is None:
            raise CommitRefused("transom explain never commits")

    with runtime.db.sessions() as db:
        event.listen(db, "before_commit", refuse)
        db.begin()
        try:
            yield db
        finally:
            db.rollback()


@dataclass
class LoginPreview:
    """What :func:`complete_login` would do, from a transaction that was rolled back."""

    claims: Claims
    trace: LoginTrace
    #: the provisioning rules' plan for this user, or why it could not be computed
    provisioning: ProvisioningPreview | None = None
    provisioning_error: TransomError | None = None
    #: the login's outcome: ``result`` or ``refused``
    result: LoginResult | None = None
    refused: LoginRefused | None = None
    #: the user as the login would leave it (``directory.user_json``)
    user_after: dict[str, Any] | None = None
    #: (action, details) of the audit events the login would write, except ``login.sso`` itself
    changes: list[tuple[str, dict[str, Any] | None]] = field(default_factory=list)


def preview_login(runtime: Runtime, verified: VerifiedLogin) -> LoginPreview:
    """:func:`complete_login`'s steps for a verified login, rolled back: writes nothing.
    The groups overage may be looked up through the IdP's API, as in a real login."""
    return _preview(runtime, verified.connector, verified.claims, verified.payload, idp_lookups=True)


def preview_unverified(runtime: Runtime, connector: Connector, payload: Mapping[str, Any]) -> LoginPreview:
    """The same dry run for a payload whose signature was NOT verified (an expired or foreign
    token pasted into ``transom explain``). Never calls an IdP API with it: a forged payload
    must not make the host query Graph on its behalf."""
    return _preview(runtime, connector, map_claims(runtime, connector, payload), payload, idp_lookups=False)


def _preview(
    runtime: Runtime, connector: Connector, claims: Claims, payload: Mapping[str, Any], *, idp_lookups: bool
) -> LoginPreview:
    trace = LoginTrace()
    groups = resolve_groups(runtime, connector, claims, payload, trace, idp_lookups=idp_lookups)
    preview = LoginPreview(claims=claims, trace=trace)
    with rolled_back(runtime) as db:
        try:
            account = directory.get_account(db, name=connector.account)
            preview.provisioning = preview_provisioning(db, account=account, connector=connector, claims=claims)
        except TransomError as exc:
            preview.provisioning_error = exc
        recorded = audit.watch(db)
        try:
            result = _login_transaction(db, connector=connector, claims=claims, groups=groups, trace=trace)
        except LoginRefused as exc:
            preview.refused = exc
        else:
            db.flush()
            # populate_existing: the row as the login's Core UPDATE left it, even when the
            # session already holds the user (created or linked by this very login)
            user = db.scalars(select(User).where(User.account_id == result.account_id, User.id == result.user_id)
                              .execution_options(populate_existing=True)).one()
            preview.result = result
            preview.user_after = directory.user_json(db, user=user)
        # read while the session is open: the rollback discards these objects
        preview.changes = [(e.action, e.details) for e in recorded if e.action != "login.sso"]
    return preview


# -- users ----------------------------------------------------------------------------------


def find_or_create_user(
    db: Session, *, account_id: str, connector: Connector, claims: Claims, trace: LoginTrace
) -> tuple[directory.LoginUser, bool]:
    """By external identity; else link one user of the account with the same user name
    (case-insensitively), else with the same *verified* email; else create. Two candidates:
    refuse, never guess (docs/provisioning.md)."""
    found = _identified_user(db, account_id=account_id, connector=connector, subject=claims.subject)
    if found is not None:
        return found, False
    user = _link_candidate(db, account_id=account_id, connector=connector, claims=claims)
    if user is not None and _linked_subject(db, user, connector) == claims.subject:
        # The same person's concurrent first login committed between our two queries (each
        # statement sees the latest commit under READ COMMITTED): already linked, not a conflict.
        return directory.LoginUser.of(user), False
    created = False
    if user is None:
        refuse_profileless_user(connector, claims)
        user_name = claims.user_name or claims.email or claims.subject
        taken = db.scalar(select(User).where(
            User.account_id == account_id, User.user_name_key == directory.user_name_key(user_name)))
        if claims.user_name is None and taken is not None:
            if _linked_subject(db, taken, connector) == claims.subject:
                return directory.LoginUser.of(taken), False  # a concurrent first login of the same person, as above
            # The fallback name (an email nobody verified, or the subject) belongs to someone
            # else: never link on it, and say so instead of answering with a bare conflict.
            raise LoginRefused(
                "another user of this account already has your user name",
                hint=f"connector '{connector.id}' sent no user name claim and the fallback "
                     f"'{user_name}' is taken; send the user name (Entra UPN, Okta login) or a verified email",
                reason="login.user_name_taken",
            )
        try:
            user = directory.create_user(
                db, account=db.get_one(Account, account_id), user_name=user_name, email=claims.email,
                display_name=claims.display_name, given_name=claims.given_name, family_name=claims.family_name,
                actor=f"connector:{connector.id}", connector_id=connector.id,
            )
        except Conflict as exc:
            # A concurrent first login of the same person took the unique user name first
            # (PostgreSQL): hand complete_login the IntegrityError so it runs again and
            # then finds that user by its external identity.
            if isinstance(exc.__cause__, IntegrityError):
                raise exc.__cause__ from None
            raise
        created = True
        trace.note(f"new user created just in time as '{user_name}'")
    else:
        trace.note(f"linked existing user '{user.user_name}' to connector '{connector.id}'")
        audit.record(db, account_id=account_id, actor=f"connector:{connector.id}", action="user.linked",
                     user_id=user.id, connector_id=connector.id)
    db.add(ExternalIdentity(account_id=account_id, user_id=user.id, connector_id=connector.id, subject=claims.subject))
    db.flush()
    return directory.LoginUser.of(user), created


def refuse_profileless_user(connector: Connector, claims: Claims) -> None:
    """An OIDC login that would create a user with neither email nor user name is refused:
    such a user (named after an opaque ``sub``) is a silent duplicate of the person's real
    user, with no way to link the two (issue 9). SAML keeps the NameID fallback: a NameID
    is the IdP's chosen user identifier."""
    if connector.protocol == "oidc" and not claims.email and not claims.user_name:
        raise LoginRefused(
            "your identity provider did not send your email address or user name",
            hint=f"connector '{connector.id}': neither the id_token nor UserInfo carries an email or a user "
            "name claim, so no user was created; request the 'email' and 'profile' scopes, add the claims "
            "to the IdP application (or let it serve UserInfo), or set the connector's claim names",
        )


def _link_candidate(db: Session, *, account_id: str, connector: Connector, claims: Claims) -> User | None:
    if claims.user_name:
        by_name = db.scalar(select(User).where(
            User.account_id == account_id, User.user_name_key == directory.user_name_key(claims.user_name)))
        if by_name is not None:
            return _linkable(db, by_name, connector, claims.subject)
    if claims.email and claims.email_verified:
        by_email = list(db.scalars(select(User).where(
            User.account_id == account_id, User.email_key == claims.email.casefold()).limit(2)))
        if len(by_email) > 1:
            raise LoginRefused(
                "more than one user in this account matches your email address",
                hint="two users share this email; give the IdP user a user name that matches one of them",
                reason="login.email_ambiguous",
            )
        if by_email:
            return _linkable(db, by_email[0], connector, claims.subject)
    return None


_USERS = cast(Table, User.__table__)
_IDENTITIES = cast(Table, ExternalIdentity.__table__)
#: built once: the user linked to a subject of a connector (index: external_identities'
#: unique key (account_id, connector_id, subject), then the users' primary key)
_USER_BY_SUBJECT = (
    select(*directory.LOGIN_USER_COLUMNS)
    .select_from(_IDENTITIES.join(_USERS, _USERS.c.id == _IDENTITIES.c.user_id))
    .where(
        _IDENTITIES.c.account_id == bindparam("account_id"),
        _IDENTITIES.c.connector_id == bindparam("connector_id"),
        _IDENTITIES.c.subject == bindparam("subject"),
        _USERS.c.account_id == bindparam("account_id"),
    )
)


def _identified_user(
    db: Session, *, account_id: str, connector: Connector, subject: str
) -> directory.LoginUser | None:
    """The user linked to this subject of this connector, if any (a Core row, no ORM object)."""
    row = core(db).execute(
        _USER_BY_SUBJECT, {"account_id": account_id, "connector_id": connector.id, "subject": subject}
    ).first()
    return None if row is None else directory.LoginUser(*row)


def _linked_subject(db: Session, user: User, connector: Connector) -> str | None:
    """The subject of ``connector`` this user is linked to (None: not linked to it)."""
    return db.scalar(select(ExternalIdentity.subject).where(
        ExternalIdentity.account_id == user.account_id, ExternalIdentity.user_id == user.id,
        ExternalIdentity.connector_id == connector.id))


def _linkable(db: Session, user: User, connector: Connector, subject: str) -> User:
    """A user bound to ANOTHER subject of the same connector is someone else; bound to this
    very subject, it is the same person (find_or_create_user then links nothing)."""
    linked = _linked_subject(db, user, connector)
    if linked is not None and linked != subject:
        raise LoginRefused(
            "your user name belongs to a different identity in this account",
            hint=f"user '{user.user_name}' is already linked to another subject of connector '{connector.id}'",
            reason="login.identity_conflict",
        )
    return user
