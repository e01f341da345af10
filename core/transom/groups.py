"""Group sync: which users' mapped-group memberships the IdP owns, and the set-based sync
applied on every login (docs/group-sync.md).

A group is *mapped* when it carries an IdP identifier. For a *group-synced* user (no
password, signs in through a connector with group sync) membership of every mapped group
equals "the IdP lists its identifier"; unmapped groups are never touched.

The sync step costs a fixed number of statements, whatever the number of groups: one read
(mapped groups named by the claim, plus the user's current memberships of mapped groups),
then at most one bulk INSERT, one bulk DELETE and one UPDATE (adopting manual rows), and
nothing at all when the memberships already match.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    String,
    Table,
    and_,
    any_,
    bindparam,
    delete,
    insert,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from transom import audit
from transom.connector import Connector
from transom.models import SOURCE_IDP, SOURCE_MANUAL, ExternalIdentity, Group, GroupMembership, User
from transom.trace import LoginTrace

#: canonical text form of a GUID (Entra object ids); hex digits in either case
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
#: SQLite: more ids than this are read in slices, to stay far below its bound-parameter limit
#: (32,766); Entra tokens carry at most 200. PostgreSQL takes the list as one array.
IN_LIST_SLICE = 5000
#: how many unmatched ids the login trace quotes (the log line carries them all)
TRACE_SAMPLE = 5


def canonical_group_id(value: str) -> str:
    """How a group id is compared: exactly as sent, except that a GUID is lower-cased.

    A GUID is a number written in hex, so its letter case carries no meaning (RFC 9562
    reads either case and writes lower case, and Entra and Graph send lower case); an
    admin who pastes an upper-case object id must still match. Every other id (Okta group
    names, Okta ``00g...`` ids, SAML values) is case-sensitive and compared byte for byte."""
    lowered = value.lower()
    if lowered == value:  # the usual case (Entra sends lower case): nothing to decide
        return value
    return lowered if _GUID.match(value) else value


# -- who is synced -----------------------------------------------------------------------


def user_is_group_synced(session: Session, *, user: User, connectors: Iterable[Connector]) -> bool:
    """True when the IdP owns this user's mapped-group memberships: no password, and an
    external identity from a configured connector that syncs groups."""
    if user.password_hash is not None:
        return False
    synced_ids = {c.id for c in connectors if c.syncs_groups and c.account}
    if not synced_ids:
        return False
    found = session.scalar(
        select(ExternalIdentity.id)
        .where(
            ExternalIdentity.account_id == user.account_id,
            ExternalIdentity.user_id == user.id,
            ExternalIdentity.connector_id.in_(synced_ids),
        )
        .limit(1)
    )
    return found is not None


# -- the plan: pure ----------------------------------------------------------------------


class MappedGroup(NamedTuple):
    """A mapped group as the sync sees it, with the user's current membership (if any).
    A NamedTuple: one is built per claimed group on every login, and it is cheap."""

    group_id: str
    name: str
    idp_identifier: str
    #: ``"idp"``, ``"manual"`` or ``None`` when the user is not a member
    membership: str | None


@dataclass(frozen=True)
class GroupSyncPlan:
    """What one sync changes. Tuples are sorted by group name, so output is stable."""

    to_add: tuple[MappedGroup, ...]
    to_remove: tuple[MappedGroup, ...]
    #: manual rows of mapped groups the IdP lists: kept, and from now on owned by the IdP
    to_adopt: tuple[MappedGroup, ...]
    #: received ids that match no mapped group (expected: not every IdP group is mapped)
    unmatched_ids: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.to_add or self.to_remove or self.to_adopt)


def plan_group_sync(*, idp_group_ids: Iterable[str], mapped_groups: Iterable[MappedGroup]) -> GroupSyncPlan:
    """Compute the changes that make the user's mapped-group memberships equal the IdP's list.

    ``mapped_groups`` must hold every mapped group the claim names and every mapped group the
    user currently belongs to (what :func:`read_mapped_groups` returns); other mapped groups
    may be present and are left alone. Pure: no I/O, reusable by ``transom explain``."""
    wanted = {canonical_group_id(i) for i in idp_group_ids}
    to_add: list[MappedGroup] = []
    to_remove: list[MappedGroup] = []
    to_adopt: list[MappedGroup] = []
    matched: set[str] = set()
    for group in {g.group_id: g for g in mapped_groups}.values():
        if group.idp_identifier in wanted:
            matched.add(group.idp_identifier)
            if group.membership is None:
                to_add.append(group)
            elif group.membership == SOURCE_MANUAL:
                to_adopt.append(group)
        elif group.membership is not None:
            to_remove.append(group)

    def by_name(groups: list[MappedGroup]) -> tuple[MappedGroup, ...]:
        return tuple(sorted(groups, key=lambda g: (g.name, g.group_id)))

    return GroupSyncPlan(
        to_add=by_name(to_add),
        to_remove=by_name(to_remove),
        to_adopt=by_name(to_adopt),
        unmatched_ids=tuple(sorted(wanted - matched)),
    )


# -- reading and applying ----------------------------------------------------------------


_GROUPS = cast(Table, Group.__table__)
_MEMBERS = cast(Table, GroupMembership.__table__)
_COLUMNS = (_GROUPS.c.id, _GROUPS.c.name, _GROUPS.c.idp_identifier, _MEMBERS.c.source)
#: the mapped groups the user is in now (index: group_memberships (account_id, user_id))
_CURRENT = (
    select(*_COLUMNS)
    .select_from(_MEMBERS.join(_GROUPS, _GROUPS.c.id == _MEMBERS.c.group_id))
    .where(
        _MEMBERS.c.account_id == bindparam("account_id"),
        _MEMBERS.c.user_id == bindparam("user_id"),
        _GROUPS.c.account_id == bindparam("account_id"),
        _GROUPS.c.idp_identifier.is_not(None),
    )
)
#: ... UNION the mapped groups the claim names, with the user's membership if any
#: (index: groups (account_id, idp_identifier), then the membership primary key)


def _named_or_current(ids_match: ColumnElement[bool]) -> CompoundSelect[Any]:
    # UNION ALL: a group both named and current comes back twice with the same row and
    # read_mapped_groups keys by id anyway, which is cheaper than making SQLite sort to dedupe.
    return union_all(
        select(*_COLUMNS)
        .select_from(
            _GROUPS.outerjoin(
                _MEMBERS,
                and_(
                    _MEMBERS.c.group_id == _GROUPS.c.id,
                    _MEMBERS.c.user_id == bindparam("user_id"),
                    _MEMBERS.c.account_id == bindparam("account_id"),
                ),
            )
        )
        .where(_GROUPS.c.account_id == bindparam("account_id"), ids_match),
        _CURRENT,
    )


#: SQLite: ``IN (?, ?, ...)``, one bound parameter per id
_NAMED_OR_CURRENT_IN = _named_or_current(_GROUPS.c.idp_identifier.in_(bindparam("ids", expanding=True)))
#: PostgreSQL: ``= ANY(%(ids)s)``, the whole list as one array parameter; with 2,000 ids
#: this plans and runs ~5x faster than an IN list of 2,000 parameters, and has no size limit
_NAMED_OR_CURRENT_ANY = _named_or_current(
    _GROUPS.c.idp_identifier == any_(bindparam("ids", type_=postgresql.ARRAY(String)))
)
# Built once: constructing the statements costs more than SQLite takes to run them.
_INSERT = insert(_MEMBERS)
_DELETE = delete(_MEMBERS).where(
    _MEMBERS.c.account_id == bindparam("account_id"),
    _MEMBERS.c.user_id == bindparam("user_id"),
    _MEMBERS.c.group_id.in_(bindparam("group_ids", expanding=True)),
)
_ADOPT = (
    update(_MEMBERS)
    .where(
        _MEMBERS.c.account_id == bindparam("b_account_id"),
        _MEMBERS.c.user_id == bindparam("b_user_id"),
        _MEMBERS.c.group_id.in_(bindparam("b_group_ids", expanding=True)),
    )
    .values(source=SOURCE_IDP)
)


def read_mapped_groups(
    db: Session, *, account_id: str, user_id: str, idp_group_ids: Iterable[str]
) -> list[MappedGroup]:
    """One statement (per slice of 5,000 ids): the mapped groups whose identifier the claim
    names, with the user's membership if any, UNION ALL the mapped groups the user is in now."""
    ids = list(dict.fromkeys(canonical_group_id(i) for i in idp_group_ids))
    if db.get_bind().dialect.name == "postgresql":
        named, slice_size = _NAMED_OR_CURRENT_ANY, max(len(ids), 1)
    else:
        named, slice_size = _NAMED_OR_CURRENT_IN, IN_LIST_SLICE
    slices = [ids[i : i + slice_size] for i in range(0, len(ids), slice_size)]
    found: dict[str, MappedGroup] = {}
    params = {"account_id": account_id, "user_id": user_id}
    for part in slices or [[]]:
        rows = db.execute(named, {**params, "ids": part}) if part else db.execute(_CURRENT, params)
        for group_id, name, identifier, source in rows:
            if identifier is None:  # excluded by the WHERE clauses; keeps the type exact
                continue
            membership = None if source is None else (SOURCE_IDP if source == SOURCE_IDP else SOURCE_MANUAL)
            found[group_id] = MappedGroup(
                group_id=group_id, name=name, idp_identifier=identifier, membership=membership
            )
    return list(found.values())


def plan_user_groups(db: Session, *, account_id: str, user_id: str, idp_group_ids: Sequence[str]) -> GroupSyncPlan:
    """Read-only: what a sync with these ids would change for this user."""
    mapped = read_mapped_groups(db, account_id=account_id, user_id=user_id, idp_group_ids=idp_group_ids)
    return plan_group_sync(idp_group_ids=idp_group_ids, mapped_groups=mapped)


def sync_user_groups(
    db: Session,
    *,
    account_id: str,
    user_id: str,
    idp_group_ids: Sequence[str],
    connector_id: str,
    trace: LoginTrace,
) -> GroupSyncPlan:
    """Make the user's memberships of *mapped* groups equal ``idp_group_ids`` (set-based).

    Called inside the login transaction, only for a group-synced user and only when the
    groups claim was present (or an overage was resolved). Rows it creates have source
    ``idp``; a manual row of a mapped group the IdP lists is adopted (source becomes
    ``idp``); every membership of a mapped group the IdP does not list is removed."""
    plan = plan_user_groups(db, account_id=account_id, user_id=user_id, idp_group_ids=idp_group_ids)
    if plan.unmatched_ids:
        sample = ", ".join(plan.unmatched_ids[:TRACE_SAMPLE])
        more = f" and {len(plan.unmatched_ids) - TRACE_SAMPLE} more" if len(plan.unmatched_ids) > TRACE_SAMPLE else ""
        trace.note(f"{len(plan.unmatched_ids)} group id(s) received match no mapped group: {sample}{more}")
    if not plan.changed:
        trace.note(f"groups: {len(idp_group_ids)} id(s) received, mapped-group memberships already match")
        return plan
    who = {"account_id": account_id, "user_id": user_id}
    if plan.to_add:
        # in key order: the primary-key B-tree takes sorted inserts a little faster
        rows = [{**who, "group_id": gid, "source": SOURCE_IDP} for gid in sorted(g.group_id for g in plan.to_add)]
        db.execute(_INSERT, rows)
    if plan.to_remove:
        db.execute(_DELETE, {**who, "group_ids": [g.group_id for g in plan.to_remove]})
    if plan.to_adopt:
        adopted_ids = [g.group_id for g in plan.to_adopt]
        db.execute(_ADOPT, {"b_account_id": account_id, "b_user_id": user_id, "b_group_ids": adopted_ids})
    added = [g.name for g in plan.to_add]
    removed = [g.name for g in plan.to_remove]
    adopted = [g.name for g in plan.to_adopt]
    audit.record(
        db,
        account_id=account_id,
        actor=f"connector:{connector_id}",
        action="group.synced",
        user_id=user_id,
        connector_id=connector_id,
        details={
            "added": [{"group": g.name, "idp_identifier": g.idp_identifier} for g in plan.to_add],
            "removed": [{"group": g.name, "idp_identifier": g.idp_identifier} for g in plan.to_remove],
            "adopted": [{"group": g.name, "idp_identifier": g.idp_identifier} for g in plan.to_adopt],
        },
    )
    parts = [f"added to {', '.join(added)}"] if added else []
    parts += [f"removed from {', '.join(removed)}"] if removed else []
    parts += [f"manual membership of {', '.join(adopted)} now owned by the IdP"] if adopted else []
    trace.note("groups: " + "; ".join(parts))
    return plan
