"""Provisioning on login: profile, timezone, spaces and roles, and the account role, from
the attributes the IdP admin defines on the IdP application (docs/provisioning.md).

Two layers:

* pure functions (:func:`split_values`, :func:`plan_space_roles`, :func:`pick_account_role`,
  :func:`canonical_timezone`) that implement the rules with no database, so every rule is
  pinned by a table-driven test and ``transom explain`` shows exactly what a login would do;
* one service, :func:`apply_login_provisioning`, called inside the login transaction, that
  reads the account's names, applies the plan set-based and writes an audit event per kind
  of change.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, insert, literal_column, select, union_all, update
from sqlalchemy.orm import Session

from transom import audit
from transom.connector import Claims, Connector, ProvisioningSettings
from transom.db import core
from transom.directory import SPACE_MEMBER, LoginUser, name_key
from transom.models import (
    ROLE_SCOPE_ACCOUNT,
    ROLE_SCOPE_SPACE,
    SOURCE_IDP,
    Account,
    Role,
    Space,
    SpaceMembership,
)
from transom.trace import LoginTrace

# -- pure rules -------------------------------------------------------------------------


def split_values(values: Sequence[str]) -> list[str]:
    """Flatten attribute values into positional items.

    Every value may hold several comma-separated items, and an attribute may carry several
    values (SAML multi-value, JSON array); both forms are flattened in order. Blanks around
    items are trimmed. An empty item keeps its position, so that one missing entry never
    shifts a role onto another space (``"Space Admin,"`` built by an IdP expression whose
    second role is empty must not make the second space's role Space Admin). When no item
    has any text the attribute carries nothing and the result is ``[]``.
    """
    items = [item.strip() for value in values for item in str(value).split(",")]
    return items if any(items) else []


@dataclass(frozen=True)
class SpaceAssignment:
    """One space the user should be in, with the role, both as spelled in the account."""

    space: str
    role: str


@dataclass(frozen=True)
class SpacePlan:
    """What the space rules decided: the assignments in the order the IdP named the spaces,
    plus warnings (something an IdP admin should fix) and notes (which rule applied)."""

    assignments: tuple[SpaceAssignment, ...]
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    #: ``"idp"`` (from the attributes), ``"default"`` (default_space) or ``"none"``
    origin: str = "idp"


def _index(names: Iterable[str]) -> dict[str, str]:
    """name_key -> name as the account spells it."""
    return {name_key(n): n for n in names}


def plan_space_roles(
    *,
    space_values: Sequence[str],
    role_values: Sequence[str],
    known_spaces: Iterable[str],
    known_space_roles: Iterable[str],
    settings: ProvisioningSettings,
) -> SpacePlan:
    """Turn the raw space and role attribute values into (space, role) assignments.

    The rules (docs/provisioning.md has a table of examples):

    * spaces and roles pair up by position after :func:`split_values`;
    * exactly one role item and several spaces: that role in every space;
    * a space named several times: the first valid role among its positions wins;
    * an unknown or empty role: ``Space Member``;
    * more spaces than roles: ``Space Member`` for the extra spaces;
    * more roles than spaces: the extra roles are ignored;
    * an unknown (or empty) space: ignored together with its positional role;
    * names match by :func:`transom.directory.name_key` (case, surrounding and repeated
      blanks do not matter);
    * no valid space left: ``default_space`` with ``default_space_role`` when configured,
      else no assignment.
    """
    spaces_by_key = _index(known_spaces)
    roles_by_key = _index(known_space_roles)
    warnings: list[str] = []
    notes: list[str] = []
    fallback_role = roles_by_key.get(name_key(SPACE_MEMBER))

    space_items = split_values(space_values)
    role_items = split_values(role_values)
    single_role = len(role_items) == 1
    if single_role and len(space_items) > 1:
        notes.append(f"one role for {len(space_items)} space entries: '{role_items[0]}' applies to each")
    if len(role_items) > len(space_items) and not single_role:
        notes.append(f"{len(role_items) - len(space_items)} extra role(s) without a space ignored")

    # space name_key -> chosen role (None: no valid role seen yet); dicts keep first-seen order
    chosen: dict[str, str | None] = {}
    for position, raw_space in enumerate(space_items):
        if not raw_space:
            notes.append(f"empty space entry at position {position + 1} ignored with its role")
            continue
        space_key = name_key(raw_space)
        if space_key not in spaces_by_key:
            warnings.append(f"space '{raw_space}' does not exist in the account; ignored with its role")
            continue
        if single_role:
            raw_role: str | None = role_items[0]
        else:
            raw_role = role_items[position] if position < len(role_items) else None
        role = roles_by_key.get(name_key(raw_role)) if raw_role else None
        if raw_role and role is None:
            warnings.append(
                f"space role '{raw_role}' does not exist in the account (space "
                f"'{spaces_by_key[space_key]}'); {SPACE_MEMBER} used instead"
            )
        if space_key in chosen:
            if chosen[space_key] is None and role is not None:
                chosen[space_key] = role
            notes.append(
                f"space '{spaces_by_key[space_key]}' named again at position "
                f"{position + 1}: the first valid role is kept"
            )
            continue
        chosen[space_key] = role
        if raw_role is None:
            notes.append(f"no role for space '{spaces_by_key[space_key]}': {SPACE_MEMBER}")

    assignments: list[SpaceAssignment] = []
    for space_key, role in chosen.items():
        final = role or fallback_role
        if final is None:
            warnings.append(f"the account has no '{SPACE_MEMBER}' role; space '{spaces_by_key[space_key]}' skipped")
            continue
        assignments.append(SpaceAssignment(spaces_by_key[space_key], final))
    if assignments:
        return SpacePlan(tuple(assignments), tuple(warnings), tuple(notes), origin="idp")
    return _default_plan(settings, spaces_by_key, roles_by_key, fallback_role, warnings, notes)


def _default_plan(
    settings: ProvisioningSettings,
    spaces_by_key: dict[str, str],
    roles_by_key: dict[str, str],
    fallback_role: str | None,
    warnings: list[str],
    notes: list[str],
) -> SpacePlan:
    if not settings.default_space:
        notes.append("no valid space and no default_space configured: no space assignment")
        return SpacePlan((), tuple(warnings), tuple(notes), origin="none")
    space = spaces_by_key.get(name_key(settings.default_space))
    if space is None:
        warnings.append(f"default_space '{settings.default_space}' does not exist in the account; no space assignment")
        return SpacePlan((), tuple(warnings), tuple(notes), origin="none")
    role = roles_by_key.get(name_key(settings.default_space_role))
    if role is None:
        warnings.append(
            f"default_space_role '{settings.default_space_role}' does not exist in the "
            f"account; {SPACE_MEMBER} used instead"
        )
        role = fallback_role
    if role is None:
        warnings.append(f"the account has no '{SPACE_MEMBER}' role; default space skipped")
        return SpacePlan((), tuple(warnings), tuple(notes), origin="none")
    notes.append(f"no valid space from the IdP: default space '{space}' as '{role}'")
    return SpacePlan((SpaceAssignment(space, role),), tuple(warnings), tuple(notes), origin="default")


@dataclass(frozen=True)
class AccountRoleDecision:
    """``role`` is the account role to set, or None to keep the current one."""

    role: str | None
    warnings: tuple[str, ...] = ()


def pick_account_role(*, values: Sequence[str], known_account_roles: Iterable[str]) -> AccountRoleDecision:
    """The first item that names an account role wins (same matching as spaces). None valid:
    keep the current role (a new user keeps ``Account Member``) and warn: an unknown value
    must never demote or promote anyone."""
    items = [item for item in split_values(values) if item]
    if not items:
        return AccountRoleDecision(None)
    roles_by_key = _index(known_account_roles)
    warnings: list[str] = []
    for item in items:
        role = roles_by_key.get(name_key(item))
        if role is not None:
            return AccountRoleDecision(role, tuple(warnings))
        warnings.append(f"account role '{item}' does not exist in the account; ignored")
    warnings.append("no valid account role sent; the current account role is kept")
    return AccountRoleDecision(None, tuple(warnings))


@functools.cache
def _timezones_by_key() -> dict[str, str]:
    return {tz.casefold(): tz for tz in zoneinfo.available_timezones()}


def canonical_timezone(value: str | None) -> str | None:
    """The IANA name as the tz database spells it, or None when ``value`` is not one.
    Matching ignores case and surrounding blanks (``europe/london`` -> ``Europe/London``):
    the database answers the same on every platform, unlike a case-sensitive file lookup."""
    if not value:
        return None
    return _timezones_by_key().get(value.strip().casefold())


# -- the service ------------------------------------------------------------------------


@dataclass
class LoginPreview:
    """Everything the rules would set for one login, computed without writing
    (used by the login service and by ``transom explain``)."""

    spaces: SpacePlan
    account_role: AccountRoleDecision
    timezone: str | None
    warnings: list[str] = field(default_factory=list)
    #: ids of the names the rules saw, so applying the plan needs no second lookup
    space_ids: dict[str, str] = field(default_factory=dict)
    #: (scope, role name) -> role id, every role of the account
    role_ids: dict[tuple[str, str], str] = field(default_factory=dict)


_SPACES = cast(Table, Space.__table__)
_ROLES = cast(Table, Role.__table__)
_MEMBERS = cast(Table, SpaceMembership.__table__)
# Built once, like groups.py's: constructing a statement cost more than SQLite takes to run it.
#: every role of the account (a handful)
_ACCOUNT_ROLES = select(_ROLES.c.scope, _ROLES.c.name, _ROLES.c.id).where(
    _ROLES.c.account_id == bindparam("account_id")
)
#: the spaces the attributes name (index: the spaces' unique key (account_id, name_key)) and
#: the account's roles in ONE read (one statement fewer per login): a space row has the
#: scope '' (no role has it: the roles' CHECK allows 'account' and 'space' only)
_SPACES_AND_ROLES = union_all(
    select(literal_column("''").label("scope"), _SPACES.c.name, _SPACES.c.id).where(
        _SPACES.c.account_id == bindparam("account_id"), _SPACES.c.name_key.in_(bindparam("keys", expanding=True))
    ),
    _ACCOUNT_ROLES,
)
#: the user's space memberships with the space's name (role names come from the roles read above)
_CURRENT_SPACES = (
    select(_MEMBERS.c.space_id, _MEMBERS.c.role_id, _MEMBERS.c.source, _SPACES.c.name)
    .select_from(_MEMBERS.join(_SPACES, _SPACES.c.id == _MEMBERS.c.space_id))
    .where(_MEMBERS.c.account_id == bindparam("account_id"), _MEMBERS.c.user_id == bindparam("user_id"))
)
_IDP_ROWS = (
    _MEMBERS.c.account_id == bindparam("b_account_id"),
    _MEMBERS.c.user_id == bindparam("b_user_id"),
    _MEMBERS.c.source == SOURCE_IDP,
    _MEMBERS.c.space_id.in_(bindparam("b_space_ids", expanding=True)),
)
_DELETE_SPACES = delete(_MEMBERS).where(*_IDP_ROWS)
_REROLE_SPACES = update(_MEMBERS).where(*_IDP_ROWS).values(role_id=bindparam("b_role_id"))
_INSERT_SPACES = insert(_MEMBERS)


def preview_provisioning(db: Session, *, account: Account, connector: Connector, claims: Claims) -> LoginPreview:
    """Apply the pure rules to ``claims`` with the account's names; reads only."""
    return plan_login(db, account_id=account.id, connector=connector, claims=claims)


def plan_login(db: Session, *, account_id: str, connector: Connector, claims: Claims) -> LoginPreview:
    """:func:`preview_provisioning` by the account's id (the login transaction reads no
    Account object)."""
    settings = connector.provisioning
    wanted = {name_key(v) for v in split_values(claims.space_names) if v}
    if settings.default_space:
        wanted.add(name_key(settings.default_space))
    # Core statements on the session's Connection: nothing the session holds can change these
    # rows (a login creates users and identities, never spaces or roles), so no autoflush
    if wanted:
        rows = core(db).execute(_SPACES_AND_ROLES, {"account_id": account_id, "keys": list(wanted)}).all()
    else:
        rows = core(db).execute(_ACCOUNT_ROLES, {"account_id": account_id}).all()
    space_ids: dict[str, str] = {name: rid for scope, name, rid in rows if scope == ""}
    role_ids: dict[tuple[str, str], str] = {(scope, name): rid for scope, name, rid in rows if scope != ""}
    plan = plan_space_roles(
        space_values=claims.space_names,
        role_values=claims.space_roles,
        known_spaces=list(space_ids),
        known_space_roles=[n for s, n in role_ids if s == ROLE_SCOPE_SPACE],
        settings=settings,
    )
    account_role = AccountRoleDecision(None)
    if settings.account_role_attribute:
        account_role = pick_account_role(
            values=claims.account_roles,
            known_account_roles=[n for s, n in role_ids if s == ROLE_SCOPE_ACCOUNT],
        )
    warnings = [f"{settings.space_attribute}/{settings.role_attribute}: {w}" for w in plan.warnings]
    warnings += [f"{settings.account_role_attribute}: {w}" for w in account_role.warnings]
    timezone = canonical_timezone(claims.timezone)
    if claims.timezone and claims.timezone.strip() and timezone is None:
        warnings.append(
            f"{settings.timezone_attribute}: '{claims.timezone}' is not an IANA time zone "
            "name (e.g. Europe/London); the timezone was not changed"
        )
    return LoginPreview(
        spaces=plan,
        account_role=account_role,
        timezone=timezone,
        warnings=warnings,
        space_ids=space_ids,
        role_ids=role_ids,
    )


def apply_login_provisioning(
    db: Session,
    *,
    account_id: str,
    user: LoginUser,
    connector: Connector,
    claims: Claims,
    first_login: bool,
    trace: LoginTrace,
) -> dict[str, Any]:
    """Apply profile, timezone, space/role and account-role rules inside the login
    transaction. ``update_profile_on_login = false`` applies them on the first login only.

    Memberships and audit events are written here; the user's own columns that change are
    returned (column -> value) and NOT written: the caller writes them with
    :func:`transom.directory.update_login_user`, the login in the same UPDATE as its
    timestamps."""
    if not (first_login or connector.provisioning.update_profile_on_login):
        trace.note("profile, spaces and roles not refreshed: update_profile_on_login = false")
        return {}
    preview = plan_login(db, account_id=account_id, connector=connector, claims=claims)
    for warning in preview.warnings:
        trace.warn(f"connector '{connector.id}': {warning}")
    for note in preview.spaces.notes:
        trace.note(note)
    login = _Login(db, account_id=account_id, user=user, connector=connector, actor=f"connector:{connector.id}")
    columns = _apply_profile(login, claims=claims, timezone=preview.timezone)
    _apply_spaces(login, preview=preview, trace=trace)
    if preview.account_role.role is not None:
        columns.update(_apply_account_role(login, preview=preview))
    return columns


@dataclass(frozen=True)
class _Login:
    """The one user a login provisions and who is changing it: every step writes against the
    same rows and audits its change the same way (the user and the connector named)."""

    db: Session
    account_id: str
    user: LoginUser
    connector: Connector
    actor: str

    def audit(self, action: str, details: dict[str, Any]) -> None:
        audit.record_login(
            self.db,
            account_id=self.account_id,
            actor=self.actor,
            action=action,
            user_id=self.user.id,
            connector_id=self.connector.id,
            details=details,
        )


def _apply_profile(login: _Login, *, claims: Claims, timezone: str | None) -> dict[str, Any]:
    """The contact details the IdP sent that differ from the user's (column -> new value); a
    missing value never clears a stored one. Audited here, written by the caller."""
    wanted: dict[str, str | None] = {
        "email": claims.email.strip() if claims.email else None,
        "display_name": claims.display_name,
        "given_name": claims.given_name,
        "family_name": claims.family_name,
        "timezone": timezone,
    }
    user = login.user
    changes: dict[str, dict[str, Any]] = {}
    columns: dict[str, Any] = {}
    for attr, value in wanted.items():
        if value and getattr(user, attr) != value:
            changes[attr] = {"from": getattr(user, attr), "to": value}
            columns[attr] = value
    if "email" in columns:
        columns["email_key"] = columns["email"].casefold()
    if changes:
        login.audit("user.profile_updated", {"changes": changes})
    return columns


def _apply_spaces(login: _Login, *, preview: LoginPreview, trace: LoginTrace) -> None:
    """Make the user's IdP-managed memberships equal the plan (set-based).

    ``source = 'idp'`` rows are added, re-roled and removed to match; ``source = 'manual'``
    rows (granted by an admin) are never touched, even when the IdP names the same space
    with another role: the person who granted it by hand decides (docs/provisioning.md).
    """
    db, account_id, user = login.db, login.account_id, login.user
    plan = preview.spaces
    space_ids = preview.space_ids
    role_ids = {name: rid for (scope, name), rid in preview.role_ids.items() if scope == ROLE_SCOPE_SPACE}
    desired = {
        space_ids[a.space]: role_ids[a.role] for a in plan.assignments if a.space in space_ids and a.role in role_ids
    }
    # every role of the account was read by the preview: the roles' rows are not read again
    any_role_name = {rid: name for (_scope, name), rid in preview.role_ids.items()}
    current = {
        space_id: (role_id, source, space_name, any_role_name.get(role_id, role_id))
        for space_id, role_id, source, space_name in db.execute(
            _CURRENT_SPACES, {"account_id": account_id, "user_id": user.id}
        ).all()
    }
    role_names = {v: k for k, v in role_ids.items()}
    space_names = {v: k for k, v in space_ids.items()}

    removed = [sid for sid, (_, source, _, _) in current.items() if source == SOURCE_IDP and sid not in desired]
    added = [sid for sid in desired if sid not in current]
    rerole: dict[str, list[str]] = {}
    for sid, role_id in desired.items():
        if sid not in current:
            continue
        have_role, source, space_name, have_role_name = current[sid]
        if source != SOURCE_IDP:
            if have_role != role_id:
                trace.note(
                    f"space '{space_name}': kept the manually granted role '{have_role_name}' "
                    f"(the IdP asks for '{role_names[role_id]}')"
                )
            continue
        if have_role != role_id:
            rerole.setdefault(role_id, []).append(sid)

    scope = {"b_account_id": account_id, "b_user_id": user.id}
    if removed:
        db.execute(_DELETE_SPACES, {**scope, "b_space_ids": removed})
    for role_id, sids in rerole.items():
        db.execute(_REROLE_SPACES, {**scope, "b_space_ids": sids, "b_role_id": role_id})
    if added:
        db.execute(
            _INSERT_SPACES,
            [
                {
                    "account_id": account_id,
                    "user_id": user.id,
                    "space_id": sid,
                    "role_id": desired[sid],
                    "source": SOURCE_IDP,
                }
                for sid in added
            ],
        )
    if not (removed or added or rerole):
        return
    details = {
        "added": [{"space": space_names[s], "role": role_names[desired[s]]} for s in added],
        "removed": [{"space": current[s][2], "role": current[s][3]} for s in removed],
        "changed": [
            {"space": space_names[s], "from": current[s][3], "to": role_names[r]}
            for r, sids in rerole.items()
            for s in sids
        ],
        "origin": plan.origin,
    }
    trace.note(f"spaces: {len(added)} added, {len(details['changed'])} re-roled, {len(removed)} removed")
    login.audit("user.spaces_updated", details)


def _apply_account_role(login: _Login, *, preview: LoginPreview) -> dict[str, Any]:
    """The account role column to write, if it changes (audited here)."""
    user = login.user
    role_name = preview.account_role.role
    names = {rid: name for (scope, name), rid in preview.role_ids.items() if scope == ROLE_SCOPE_ACCOUNT}
    role_id = preview.role_ids.get((ROLE_SCOPE_ACCOUNT, role_name or ""))
    if role_id is None or user.account_role_id == role_id:
        return {}
    before = names.get(user.account_role_id or "")
    login.audit("user.account_role_changed", {"from": before, "to": role_name})
    return {"account_role_id": role_id}


__all__ = [
    "AccountRoleDecision",
    "LoginPreview",
    "SpaceAssignment",
    "SpacePlan",
    "apply_login_provisioning",
    "canonical_timezone",
    "pick_account_role",
    "plan_login",
    "plan_space_roles",
    "preview_provisioning",
    "split_values",
]
