"""Group sync: which users' mapped-group memberships the IdP owns, and the set-based sync
applied on every login (docs/group-sync.md).

A group is *mapped* when it carries an IdP identifier. For a *group-synced* user (no
password, signs in through a connector with group sync) membership of every mapped group
equals "the IdP lists its identifier"; unmapped groups are never touched.

The sync step costs a fixed number of statements, whatever the number of groups: at most
two reads (the user's current memberships of mapped groups; then the mapped groups named by
claimed ids that are not among them, skipped when there are none), then at most one bulk
INSERT, one bulk DELETE and one UPDATE (adopting manual rows), and no write at all when the
memberships already match.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, NamedTuple

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from transom import audit
from transom.connector import Connector
from transom.models import SOURCE_IDP, SOURCE_MANUAL, ExternalIdentity, User
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


def canonical_group_ids(values: Iterable[str]) -> list[str]:
    """``list(dict.fromkeys(canonical_group_id(v) for v in values))``: each canonical id once,
    in the order first received, without a call per id in the usual case.

    :func:`canonical_group_id` returns its argument whenever lower-casing changes nothing, and
    lower-casing a string changes nothing exactly when no character of it changes: so when
    the ids joined by a newline are their own lower case, every id is, and only the
    duplicates go (the only context-dependent mapping, the capital sigma, always changes). A
    claim with an upper-case id (an admin's pasted GUID, an Okta group name) takes the call
    per id. tests/test_acs_python_shortcuts.py compares the two on generated ids."""
    ids = values if isinstance(values, list | tuple) else list(values)
    joined = "\n".join(ids)
    if joined.lower() == joined:
        return list(dict.fromkeys(ids))
    return list(dict.fromkeys(canonical_group_id(i) for i in ids))


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
    return _plan(wanted, {g.group_id: g for g in mapped_groups}.values())


#: (name, group id) of a MappedGroup
_BY_NAME = itemgetter(1, 0)
#: the IdP identifier and the membership source of a (group id, name, identifier, source) row
_IDENTIFIER = itemgetter(2)
_SOURCE = itemgetter(3)
_IDP_ONLY = frozenset({SOURCE_IDP})


def _plan(wanted: set[str], groups: Iterable[tuple[str, str, str, str | None]]) -> GroupSyncPlan:
    """:func:`plan_group_sync` on canonical ids and (group id, name, identifier, source) rows,
    each group once. A :class:`MappedGroup` is built only for a group that changes: the
    steady state of a login builds none."""
    rows = groups if isinstance(groups, list) else list(groups)
    # The steady state in two C passes instead of the loop below: every row a membership the
    # IdP owns and names. The loop would then change nothing and match exactly those
    # identifiers (a row whose identifier is not wanted would have been removed).
    if set(map(_SOURCE, rows)) <= _IDP_ONLY:
        identifiers = set(map(_IDENTIFIER, rows))
        if identifiers <= wanted:
            return GroupSyncPlan(to_add=(), to_remove=(), to_adopt=(), unmatched_ids=(
                tuple(sorted(wanted - identifiers)) if len(identifiers) < len(wanted) else ()))
    return _plan_rows(wanted, rows)


def _plan_rows(wanted: set[str], rows: Iterable[tuple[str, str, str, str | None]]) -> GroupSyncPlan:
    """:func:`_plan` row by row, every case (the tests and the bench compare the steady-state
    path with it)."""
    to_add: list[MappedGroup] = []
    to_remove: list[MappedGroup] = []
    to_adopt: list[MappedGroup] = []
    matched: set[str] = set()
    for group_id, name, identifier, source in rows:
        if identifier in wanted:
            matched.add(identifier)
            if source is None:
                to_add.append(MappedGroup(group_id, name, identifier, None))
            elif source != SOURCE_IDP:
                to_adopt.append(MappedGroup(group_id, name, identifier, SOURCE_MANUAL))
        elif source is not None:
            to_remove.append(MappedGroup(group_id, name, identifier, _membership(source)))

    def by_name(changed: list[MappedGroup]) -> tuple[MappedGroup, ...]:
        return tuple(sorted(changed, key=_BY_NAME)) if changed else ()

    return GroupSyncPlan(
        to_add=by_name(to_add),
        to_remove=by_name(to_remove),
        to_adopt=by_name(to_adopt),
        unmatched_ids=tuple(sorted(wanted - matched)) if len(matched) < len(wanted) else (),
    )


# -- reading and applying ----------------------------------------------------------------
#
# The statements are plain SQL run with ``Connection.exec_driver_sql``: they go through the
# engine's events (the parameter backstop in transom.db, statement counters) like any other,
# but skip SQLAlchemy's compile step, which for an expanding IN list of 200 ids re-rendered
# the statement on every login and cost more than SQLite took to run it (docs/performance.md,
# "Group sync: where the 200-group time went"). Every statement is scoped by account.

#: a row as read: (group id, name, IdP identifier, membership source or None)
_Row = tuple[str, str, str, str | None]


@dataclass(frozen=True)
class _Statements:
    """One dialect's statements. ``{ids}`` stands for the id list: SQLite's placeholders
    (see :func:`_id_list`); PostgreSQL's statements take the list as one array parameter."""

    #: the mapped groups the user is in now (index: group_memberships (account_id, user_id))
    current: str
    #: the mapped groups named by ``{ids}``, with the user's membership if any (index:
    #: groups (account_id, idp_identifier)); only asked for ids that are not the identifier
    #: of a current membership (see :func:`_read`)
    named: str
    #: one row per group id
    insert: str
    delete: str
    adopt: str
    #: True when ``insert`` takes all rows at once (an array), False for an executemany
    insert_takes_array: bool


#: SQLite: ``IN (?, ?, ...)``, one bound parameter per id, so that the parameter backstop
#: sees each one. Both reads run in one transaction, which in SQLite reads one snapshot: a
#: group whose identifier is not among the current memberships' has no membership row of this
#: user, so ``named`` needs no join to group_memberships (that join cost 200 index probes).
_SQLITE = _Statements(
    current="SELECT g.id, g.name, g.idp_identifier, m.source FROM group_memberships m JOIN groups g"
    " ON g.id = m.group_id WHERE m.account_id = ? AND m.user_id = ? AND g.account_id = ?"
    " AND g.idp_identifier IS NOT NULL",
    named="SELECT g.id, g.name, g.idp_identifier, NULL FROM groups g"
    " WHERE g.account_id = ? AND g.idp_identifier IN ({ids})",
    # executemany: measured faster than one multi-row VALUES or INSERT ... SELECT FROM json_each
    insert="INSERT INTO group_memberships (account_id, group_id, user_id, source) VALUES (?, ?, ?, ?)",
    delete="DELETE FROM group_memberships WHERE account_id = ? AND user_id = ? AND group_id IN ({ids})",
    adopt="UPDATE group_memberships SET source = ? WHERE account_id = ? AND user_id = ? AND group_id IN ({ids})",
    insert_takes_array=False,
)
#: PostgreSQL: ``= ANY(%s)``, the whole list as one array parameter; with 2,000 ids this
#: plans and runs ~5x faster than an IN list of 2,000 parameters, and has no size limit.
#: Each statement under READ COMMITTED sees its own snapshot, so ``named`` keeps the join
#: and reads a membership committed between the two reads, as the one-statement read did.
_POSTGRESQL = _Statements(
    current="SELECT g.id, g.name, g.idp_identifier, m.source FROM group_memberships m JOIN groups g"
    " ON g.id = m.group_id WHERE m.account_id = %s AND m.user_id = %s AND g.account_id = %s"
    " AND g.idp_identifier IS NOT NULL",
    named="SELECT g.id, g.name, g.idp_identifier, m.source FROM groups g LEFT OUTER JOIN group_memberships m"
    " ON m.group_id = g.id AND m.account_id = %s AND m.user_id = %s"
    " WHERE g.account_id = %s AND g.idp_identifier = ANY(%s::varchar[])",
    # one statement and one array: psycopg's executemany spent ~3 ms of client CPU on 200 rows
    insert="INSERT INTO group_memberships (account_id, group_id, user_id, source)"
    " SELECT %s, ids.id, %s, %s FROM unnest(%s::varchar[]) AS ids (id)",
    delete="DELETE FROM group_memberships WHERE account_id = %s AND user_id = %s AND group_id = ANY(%s::varchar[])",
    adopt="UPDATE group_memberships SET source = %s WHERE account_id = %s AND user_id = %s"
    " AND group_id = ANY(%s::varchar[])",
    insert_takes_array=True,
)


def _padded(ids: Sequence[str]) -> tuple[str | None, ...]:
    """``ids`` padded with NULLs (which match nothing in ``IN``) to the next power of two."""
    width = 1 << max(len(ids) - 1, 0).bit_length()
    return (*ids, *(None,) * (width - len(ids)))


def _id_list(statements: _Statements, ids: Sequence[str]) -> tuple[str, tuple[Any, ...]]:
    """What replaces ``{ids}`` in a statement's text (SQLite's placeholders; nothing on
    PostgreSQL, whose statements take the array as one parameter), and the parameters."""
    if statements is _POSTGRESQL:
        return "", (list(ids),)
    padded = _padded(ids)
    return ", ".join("?" * len(padded)), padded


def _dialect(db: Session) -> tuple[Connection, _Statements]:
    conn = db.connection()
    return conn, _POSTGRESQL if conn.dialect.name == "postgresql" else _SQLITE


def _membership(source: str | None) -> str | None:
    return None if source is None else (SOURCE_IDP if source == SOURCE_IDP else SOURCE_MANUAL)


def _read(conn: Connection, sql: _Statements, *, account_id: str, user_id: str, ids: list[str]) -> list[_Row]:
    """The rows :func:`read_mapped_groups` describes, in at most two reads (plus one per extra
    slice of 5,000 ids on SQLite): the user's current mapped memberships first; then the
    mapped groups named by the claimed ids that are *not* the identifier of a current
    membership, if there are any. A claimed id that is nobody's identifier yet may be mapped
    by now, so only the ids found among the current memberships are spared the second read;
    the steady state of a login (every claimed id already a membership) reads once."""
    rows: list[_Row] = conn.exec_driver_sql(sql.current, (account_id, user_id, account_id)).all()  # type: ignore[assignment]
    known = set(map(_IDENTIFIER, rows))
    # the steady state: every claimed id is a current membership's (one C pass, no list)
    if known.issuperset(ids):
        return rows
    rest = [i for i in ids if i not in known]
    seen = {row[0] for row in rows}
    size = len(rest) if sql is _POSTGRESQL else IN_LIST_SLICE
    scope = (account_id,) if sql is _SQLITE else (account_id, user_id, account_id)
    for start in range(0, len(rest), size):
        text, params = _id_list(sql, rest[start : start + size])
        named = conn.exec_driver_sql(sql.named.format(ids=text), (*scope, *params)).all()
        # a group both current and named (only if its identifier changed between the two
        # reads, under READ COMMITTED) keeps its current row, as the one-statement UNION did
        rows += [row for row in named if row[0] not in seen]
    return rows


def read_mapped_groups(
    db: Session, *, account_id: str, user_id: str, idp_group_ids: Iterable[str]
) -> list[MappedGroup]:
    """Every mapped group the claim names (with the user's membership if any) and every
    mapped group the user is in now, each once."""
    conn, sql = _dialect(db)
    ids = canonical_group_ids(idp_group_ids)
    rows = _read(conn, sql, account_id=account_id, user_id=user_id, ids=ids)
    found = {gid: MappedGroup(gid, name, ident, _membership(source)) for gid, name, ident, source in rows}
    return list(found.values())


def plan_user_groups(db: Session, *, account_id: str, user_id: str, idp_group_ids: Sequence[str]) -> GroupSyncPlan:
    """Read-only: what a sync with these ids would change for this user."""
    conn, sql = _dialect(db)
    ids = canonical_group_ids(idp_group_ids)
    rows = _read(conn, sql, account_id=account_id, user_id=user_id, ids=ids)
    return _plan(set(ids), rows)


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
    conn, sql = _dialect(db)
    ids = canonical_group_ids(idp_group_ids)
    plan = _plan(set(ids), _read(conn, sql, account_id=account_id, user_id=user_id, ids=ids))
    if plan.unmatched_ids:
        sample = ", ".join(plan.unmatched_ids[:TRACE_SAMPLE])
        more = f" and {len(plan.unmatched_ids) - TRACE_SAMPLE} more" if len(plan.unmatched_ids) > TRACE_SAMPLE else ""
        trace.note(f"{len(plan.unmatched_ids)} group id(s) received match no mapped group: {sample}{more}")
    if not plan.changed:
        trace.note(f"groups: {len(idp_group_ids)} id(s) received, mapped-group memberships already match")
        return plan
    if plan.to_add:
        # in key order: the primary-key B-tree takes sorted inserts a little faster
        added_ids = sorted(g.group_id for g in plan.to_add)
        if sql.insert_takes_array:
            conn.exec_driver_sql(sql.insert, (account_id, user_id, SOURCE_IDP, added_ids))
        else:
            conn.exec_driver_sql(sql.insert, [(account_id, gid, user_id, SOURCE_IDP) for gid in added_ids])
    if plan.to_remove:
        text, params = _id_list(sql, [g.group_id for g in plan.to_remove])
        conn.exec_driver_sql(sql.delete.format(ids=text), (account_id, user_id, *params))
    if plan.to_adopt:
        text, params = _id_list(sql, [g.group_id for g in plan.to_adopt])
        conn.exec_driver_sql(sql.adopt.format(ids=text), (SOURCE_IDP, account_id, user_id, *params))
    # a Core INSERT (what the ORM unit of work cost was ~9 % of a 200-group first login); the
    # login activity row and `transom explain` still see it through audit.watch
    audit.record_login(
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
    parts = [f"added to {', '.join(g.name for g in plan.to_add)}"] if plan.to_add else []
    parts += [f"removed from {', '.join(g.name for g in plan.to_remove)}"] if plan.to_remove else []
    if plan.to_adopt:
        parts.append(f"manual membership of {', '.join(g.name for g in plan.to_adopt)} now owned by the IdP")
    trace.note("groups: " + "; ".join(parts))
    return plan
