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
from typing import TYPE_CHECKING

from sqlalchemy import delete, insert, select, union, update
from sqlalchemy.orm import Session
from transom import audit
from transom.connector import Connector
from transom.models import SOURCE_IDP, SOURCE_MANUAL, ExternalIdentity, Group, GroupMembership, User

if TYPE_CHECKING:
    from transom.login import LoginTrace

#: canonical text form of a GUID (Entra object ids); hex digits in either case
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
#: more ids than this in one IN list are read in slices, to stay far below the bound-parameter
#: limits of SQLite (32,766) and PostgreSQL (65,535); Entra tokens carry at most 200
IN_LIST_SLICE = 5000
#: how many unmatched ids the login trace quotes (the log line carries them all)
TRACE_SAMPLE = 5


def canonical_group_id(value: str) -> str:
    """How a group id is compared: exactly as sent, except that a GUID is lower-cased.

    A GUID is a number written in hex, so its letter case carries no meaning (RFC 9562
    reads either case and writes lower case, and Entra and Graph send lower case); an
    admin who pastes an upper-case object id must still match. Every other id (Okta group
    names, Okta ``00g...`` ids, SAML values) is case-sensitive and compared byte for byte."""
    return value.lower() if _GUID.match(value) else value


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


@dataclass(frozen=True)
class MappedGroup:
    """A mapped group as the sync sees it, with the user's current membership (if any)."""

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


def plan_group_sync(
    *, idp_group_ids: Iterable[str], mapped_groups: Iterable[MappedGroup]
) -> GroupSyncPlan:
    """Compute the changes that make the user's mapped-group memberships equal the IdP's list.

    ``mapped_groups`` must hold every mapped group the claim names and every mapped group the
    user currently belongs to (what :func:`read_mapped_groups` returns); other mapped groups
    may be present and are left alone. Pure: no I/O, reusable by ``transom explain``."""
    wanted = {canonical_group_id(i) for i in idp_group_ids}
    groups = sorted(
        {g.group_id: g for g in mapped_groups}.values(), key=lambda g: (g.name, g.group_id)
    )
    matched = {g.idp_identifier for g in groups if g.idp_identifier in wanted}
    return GroupSyncPlan(
        to_add=tuple(g for g in groups if g.idp_identifier in wanted and g.membership is None),
        to_remove=tuple(
            g for g in groups if g.idp_identifier not in wanted and g.membership is not None
        ),
        to_adopt=tuple(
            g for g in groups if g.idp_identifier in wanted and g.membership == SOURCE_MANUAL
        ),
        unmatched_ids=tuple(sorted(wanted - matched)),
    )


# -- reading and applying ----------------------------------------------------------------


def read_mapped_groups(
    db: Session, *, account_id: str, user_id: str, idp_group_ids: Iterable[str]
) -> list[MappedGroup]:
    """One statement (per slice of 5,000 ids): the mapped groups whose identifier the claim
    names, with the user's membership if any, UNION the mapped groups the user is in now.
    Both halves use an index: (account_id, idp_identifier) and (account_id, user_id)."""
    ids = sorted({canonical_group_id(i) for i in idp_group_ids})
    current = (
        select(Group.id, Group.name, Group.idp_identifier, GroupMembership.source)
        .join(GroupMembership, GroupMembership.group_id == Group.id)
        .where(
            GroupMembership.account_id == account_id,
            GroupMembership.user_id == user_id,
            Group.account_id == account_id,
            Group.idp_identifier.is_not(None),
        )
    )
    slices = [ids[i : i + IN_LIST_SLICE] for i in range(0, len(ids), IN_LIST_SLICE)] or [[]]
    found: dict[str, MappedGroup] = {}
    for part in slices:
        statement = current
        if part:
            named = (
                select(Group.id, Group.name, Group.idp_identifier, GroupMembership.source)
                .outerjoin(
                    GroupMembership,
                    (GroupMembership.group_id == Group.id)
                    & (GroupMembership.user_id == user_id)
                    & (GroupMembership.account_id == account_id),
                )
                .where(Group.account_id == account_id, Group.idp_identifier.in_(part))
            )
            statement = union(named, current)  # type: ignore[assignment]
        for group_id, name, identifier, source in db.execute(statement):
            if identifier is None:  # excluded by the WHERE clauses; keeps the type exact
                continue
            found[group_id] = MappedGroup(
                group_id=group_id,
                name=name,
                idp_identifier=identifier,
                membership=None
                if source is None
                else (SOURCE_IDP if source == SOURCE_IDP else SOURCE_MANUAL),
            )
    return list(found.values())


def plan_user_groups(
    db: Session, *, account_id: str, user_id: str, idp_group_ids: Sequence[str]
) -> GroupSyncPlan:
    """Read-only: what a sync with these ids would change for this user."""
    mapped = read_mapped_groups(
        db, account_id=account_id, user_id=user_id, idp_group_ids=idp_group_ids
    )
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
        more = (
            f" and {len(plan.unmatched_ids) - TRACE_SAMPLE} more"
            if len(plan.unmatched_ids) > TRACE_SAMPLE
            else ""
        )
        trace.note(
            f"{len(plan.unmatched_ids)} group id(s) received match no mapped group: {sample}{more}"
        )
    if not plan.changed:
        trace.note(
            f"groups: {len(idp_group_ids)} id(s) received, mapped-group memberships already match"
        )
        return plan
    if plan.to_add:
        db.execute(
            insert(GroupMembership.__table__),  # type: ignore[arg-type]
            [
                {
                    "account_id": account_id,
                    "group_id": g.group_id,
                    "user_id": user_id,
                    "source": SOURCE_IDP,
                }
                for g in plan.to_add
            ],
        )
    if plan.to_remove:
        db.execute(
            delete(GroupMembership.__table__).where(  # type: ignore[arg-type]
                GroupMembership.account_id == account_id,
                GroupMembership.user_id == user_id,
                GroupMembership.group_id.in_([g.group_id for g in plan.to_remove]),
            )
        )
    if plan.to_adopt:
        db.execute(
            update(GroupMembership.__table__)  # type: ignore[arg-type]
            .where(
                GroupMembership.account_id == account_id,
                GroupMembership.user_id == user_id,
                GroupMembership.group_id.in_([g.group_id for g in plan.to_adopt]),
            )
            .values(source=SOURCE_IDP)
        )
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
            "removed": [
                {"group": g.name, "idp_identifier": g.idp_identifier} for g in plan.to_remove
            ],
            "adopted": [
                {"group": g.name, "idp_identifier": g.idp_identifier} for g in plan.to_adopt
            ],
        },
    )
    parts = [f"added to {', '.join(added)}"] if added else []
    parts += [f"removed from {', '.join(removed)}"] if removed else []
    parts += [f"manual membership of {', '.join(adopted)} now owned by the IdP"] if adopted else []
    trace.note("groups: " + "; ".join(parts))
    return plan
