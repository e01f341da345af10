"""Group sync at the service level: ``sync_user_groups`` and ``complete_login`` on a real
database, with a minimal third-party plugin that declares group sync (the end-to-end tests
through HTTP with the Okta and Azure plugins are in test_group_sync_http.py)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import select

from transom import directory
from transom.connector import GROUP_SYNC, Claims, Connector, ConnectorType, GroupsClaim
from transom.errors import Forbidden, UpstreamError
from transom.groups import (
    MappedGroup,
    canonical_group_id,
    plan_group_sync,
    sync_user_groups,
    user_is_group_synced,
)
from transom.hookspecs import hookimpl
from transom.login import complete_login
from transom.models import AuditEvent, Group, GroupMembership, User
from transom.runtime import Runtime
from transom.trace import LoginTrace
from transom.verified import ProtocolFacts, verified_login

GUID_A = "0b1c2d3e-0000-4000-8000-00000000000a"
GUID_B = "0b1c2d3e-0000-4000-8000-00000000000b"
GUID_C = "0b1c2d3e-0000-4000-8000-00000000000c"

#: the protocol facts do not matter to the steps after verification
FACTS = ProtocolFacts(protocol="oidc", issuer=None, subject=None)


class _Settings(BaseModel):
    pass


class SyncingPlugin:
    """A third-party connector type with group sync: groups come from the payload's
    ``groups`` key (list = present, missing = absent, ``"overage"`` = overage)."""

    def __init__(self, type_name: str = "fakesync", *, group_sync: bool = True) -> None:
        self.type_name = type_name
        self.group_sync = group_sync
        self.lookups: list[str] = []
        self.lookup_result: list[str] | Exception = []

    @hookimpl
    def transom_connector_type(self) -> ConnectorType:
        return ConnectorType(
            name=self.type_name,
            protocols=("oidc",),
            settings_model=_Settings,
            capabilities=frozenset({GROUP_SYNC}) if self.group_sync else frozenset(),
        )

    @hookimpl
    def transom_extract_claims(
        self, connector: Connector, payload: Mapping[str, Any]
    ) -> Claims | None:
        if connector.type != self.type_name:
            return None
        raw = payload.get("groups")
        if raw is None:
            groups = GroupsClaim.absent()
        elif raw == "overage":
            groups = GroupsClaim.overage("https://graph.example/overage")
        else:
            groups = GroupsClaim.present(raw)
        return Claims(
            subject=str(payload["sub"]),
            email=payload.get("email"),
            email_verified=True,
            user_name=payload.get("email"),
            groups=groups,
        )

    @hookimpl
    def transom_lookup_group_ids(self, connector: Connector, claims: Claims) -> list[str] | None:
        if connector.type != self.type_name:
            return None
        self.lookups.append(claims.subject)
        if isinstance(self.lookup_result, Exception):
            raise self.lookup_result
        return list(self.lookup_result)


def _connector(cid: str, type_name: str, **provisioning: Any) -> dict[str, Any]:
    return {"id": cid, "type": type_name, "account": "acme", "provisioning": provisioning}


@pytest.fixture
def plugin() -> SyncingPlugin:
    return SyncingPlugin()


@pytest.fixture
def rt(make_runtime: Any, plugin: SyncingPlugin) -> Runtime:
    nosync = SyncingPlugin("fakenosync", group_sync=False)
    runtime: Runtime = make_runtime(
        [
            _connector("idp", "fakesync"),
            _connector("idp-off", "fakesync", group_sync=False),
            _connector("plain", "fakenosync"),
        ],
        extra_plugins={"fakesync": plugin, "fakenosync": nosync},
    )
    with runtime.db.transaction() as db:
        account = directory.create_account(db, name="acme")
        directory.create_group(db, account=account, name="Alpha", idp_identifier=GUID_A)
        directory.create_group(db, account=account, name="Beta", idp_identifier=GUID_B)
        directory.create_group(db, account=account, name="Gamma", idp_identifier=GUID_C)
        directory.create_group(db, account=account, name="Local")  # unmapped
    return runtime


def login(
    rt: Runtime,
    groups: Any = None,
    *,
    connector: str = "idp",
    sub: str = "u1",
    email: str = "ada@acme.example",
) -> Any:
    payload: dict[str, Any] = {"sub": sub, "email": email}
    if groups is not None:
        payload["groups"] = groups
    return complete_login(rt, verified_login(rt, rt.connector(connector), payload, facts=FACTS))


def memberships(rt: Runtime, email: str = "ada@acme.example") -> dict[str, str]:
    with rt.db.transaction() as db:
        account = directory.get_account(db, name="acme")
        user = directory.get_user(db, account=account, email_or_user_name=email)
        return {g["name"]: g["source"] for g in directory.user_json(db, user=user)["groups"]}


def manual(rt: Runtime, group: str, email: str = "ada@acme.example", *, add: bool = True) -> None:
    with rt.db.transaction() as db:
        account = directory.get_account(db, name="acme")
        grp = directory.get_group(db, account=account, name=group)
        user = directory.get_user(db, account=account, email_or_user_name=email)
        owned = user_is_group_synced(db, user=user, connectors=rt.config.connectors.values())
        if add:
            directory.add_group_member(
                db, account=account, group=grp, user=user, actor="test", idp_owned=owned
            )
        else:
            directory.remove_group_member(
                db, account=account, group=grp, user=user, actor="test", idp_owned=owned
            )


def sync_events(rt: Runtime) -> list[dict[str, Any]]:
    with rt.db.transaction() as db:
        return [
            e.details or {}
            for e in db.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == "group.synced")
                .order_by(AuditEvent.id)
            )
        ]


# -- pure plan ---------------------------------------------------------------------------


def _mg(gid: str, ident: str, membership: str | None) -> MappedGroup:
    return MappedGroup(group_id=gid, name=gid.upper(), idp_identifier=ident, membership=membership)


def test_plan_adds_removes_adopts_and_reports_unmatched() -> None:
    plan = plan_group_sync(
        idp_group_ids=["a", "b", "zzz", "b"],
        mapped_groups=[
            _mg("g1", "a", None),
            _mg("g2", "b", "manual"),
            _mg("g3", "c", "idp"),
            _mg("g4", "d", "manual"),
            _mg("g5", "e", None),
        ],
    )
    assert [g.group_id for g in plan.to_add] == ["g1"]
    assert [g.group_id for g in plan.to_adopt] == ["g2"]
    assert [g.group_id for g in plan.to_remove] == ["g3", "g4"]
    assert plan.unmatched_ids == ("zzz",)
    assert plan.changed


def test_plan_without_changes() -> None:
    plan = plan_group_sync(idp_group_ids=["a"], mapped_groups=[_mg("g1", "a", "idp")])
    assert not plan.changed and plan.unmatched_ids == ()


def test_guids_compare_case_insensitively_everything_else_exactly() -> None:
    assert canonical_group_id(GUID_A.upper()) == GUID_A
    assert canonical_group_id("Engineering") == "Engineering"
    assert canonical_group_id("00gAbC123") == "00gAbC123"
    plan = plan_group_sync(
        idp_group_ids=[GUID_A.upper(), "engineering"],
        mapped_groups=[_mg("g1", GUID_A, None), _mg("g2", "Engineering", None)],
    )
    assert [g.group_id for g in plan.to_add] == ["g1"]


# -- through complete_login -----------------------------------------------------------------


def test_add_remove_sequence_over_several_logins(rt: Runtime) -> None:
    login(rt, [GUID_A, GUID_B])
    assert memberships(rt) == {"Alpha": "idp", "Beta": "idp"}
    login(rt, [GUID_B, GUID_C])
    assert memberships(rt) == {"Beta": "idp", "Gamma": "idp"}
    login(rt, [GUID_B, GUID_C])
    assert memberships(rt) == {"Beta": "idp", "Gamma": "idp"}
    login(rt, [])  # present but empty: the IdP says "no groups"
    assert memberships(rt) == {}
    events = sync_events(rt)
    assert len(events) == 3  # the no-change login wrote no event
    assert [a["group"] for a in events[0]["added"]] == ["Alpha", "Beta"]
    assert [r["group"] for r in events[1]["removed"]] == ["Alpha"]
    assert [a["group"] for a in events[1]["added"]] == ["Gamma"]
    assert [r["group"] for r in events[2]["removed"]] == ["Beta", "Gamma"]


def test_absent_claim_changes_nothing_and_hints(rt: Runtime) -> None:
    login(rt, [GUID_A])
    result = login(rt, None)
    assert memberships(rt) == {"Alpha": "idp"}
    assert any("no groups claim" in w and "configure the IdP" in w for w in result.trace.warnings)


def test_overage_is_resolved_through_the_plugin(rt: Runtime, plugin: SyncingPlugin) -> None:
    login(rt, [GUID_A])
    plugin.lookup_result = [GUID_B.upper(), GUID_C, "not-mapped"]
    result = login(rt, "overage")
    assert plugin.lookups == ["u1"]
    assert memberships(rt) == {"Beta": "idp", "Gamma": "idp"}
    assert any("overage resolved" in n for n in result.trace.notes)


@pytest.mark.parametrize("failure", [UpstreamError("graph down"), RuntimeError("plugin bug")])
def test_overage_failure_leaves_memberships_and_login_succeeds(
    rt: Runtime, plugin: SyncingPlugin, failure: Exception
) -> None:
    login(rt, [GUID_A, GUID_B])
    plugin.lookup_result = failure
    result = login(rt, "overage")
    assert result.user_id
    assert memberships(rt) == {"Alpha": "idp", "Beta": "idp"}
    assert any("overage" in w and "left unchanged" in w for w in result.trace.warnings)


def test_unmapped_groups_are_never_touched(rt: Runtime) -> None:
    login(rt, [GUID_A])
    manual(rt, "Local")  # allowed: the group is not mapped
    login(rt, [GUID_B])
    login(rt, [])
    assert memberships(rt) == {"Local": "manual"}


def test_password_user_manual_memberships_survive(rt: Runtime) -> None:
    with rt.db.transaction() as db:
        account = directory.get_account(db, name="acme")
        directory.create_user(
            db,
            account=account,
            user_name="bob@acme.example",
            email="bob@acme.example",
            password="correct horse battery",
        )
    manual(rt, "Alpha", "bob@acme.example")
    manual(rt, "Local", "bob@acme.example")
    # bob links to the IdP by user name, but he has a password: sync never touches him
    result = login(rt, [GUID_B], sub="bob-sub", email="bob@acme.example")
    assert memberships(rt, "bob@acme.example") == {"Alpha": "manual", "Local": "manual"}
    assert any("has a password" in n for n in result.trace.notes)
    manual(rt, "Gamma", "bob@acme.example")  # still manageable by hand
    manual(rt, "Alpha", "bob@acme.example", add=False)
    assert memberships(rt, "bob@acme.example") == {"Gamma": "manual", "Local": "manual"}


@pytest.mark.parametrize("connector", ["idp-off", "plain"])
def test_connector_without_group_sync_never_touches(rt: Runtime, connector: str) -> None:
    login(rt, [GUID_A], connector=connector)
    assert memberships(rt) == {}
    manual(rt, "Beta")  # the user is not group-synced: manual changes allowed
    login(rt, [GUID_A], connector=connector)
    assert memberships(rt) == {"Beta": "manual"}


def test_manual_change_of_synced_user_in_mapped_group_is_refused(rt: Runtime) -> None:
    login(rt, [GUID_A])
    with pytest.raises(Forbidden, match="IdP owns this membership"):
        manual(rt, "Beta")
    with pytest.raises(Forbidden, match="IdP owns this membership"):
        manual(rt, "Alpha", add=False)
    assert memberships(rt) == {"Alpha": "idp"}


def test_existing_manual_row_is_adopted_or_removed(rt: Runtime) -> None:
    # Ada was added by hand before she ever signed in through the IdP (e.g. SCIM-pending).
    with rt.db.transaction() as db:
        account = directory.get_account(db, name="acme")
        directory.create_user(
            db,
            account=account,
            user_name="ada@acme.example",
            email="ada@acme.example",
            status="pending",
        )
    manual(rt, "Alpha")
    manual(rt, "Beta")
    login(rt, [GUID_A])
    assert memberships(rt) == {"Alpha": "idp"}
    event = sync_events(rt)[-1]
    assert [a["group"] for a in event["adopted"]] == ["Alpha"]
    assert [r["group"] for r in event["removed"]] == ["Beta"]


def test_unmapping_a_group_turns_idp_rows_manual_and_sync_leaves_them(rt: Runtime) -> None:
    login(rt, [GUID_A, GUID_B])
    with rt.db.transaction() as db:
        account = directory.get_account(db, name="acme")
        grp = directory.get_group(db, account=account, name="Alpha")
        directory.set_group_idp_identifier(
            db, account=account, group=grp, idp_identifier="", actor="test"
        )
    assert memberships(rt) == {"Alpha": "manual", "Beta": "idp"}
    login(rt, [])
    assert memberships(rt) == {"Alpha": "manual"}


def test_sync_is_scoped_by_account(rt: Runtime) -> None:
    with rt.db.transaction() as db:
        other = directory.create_account(db, name="other")
        directory.create_group(db, account=other, name="Alpha", idp_identifier=GUID_A)
    login(rt, [GUID_A])
    with rt.db.transaction() as db:
        rows = list(db.scalars(select(GroupMembership)))
        acme = directory.get_account(db, name="acme")
    assert len(rows) == 1 and rows[0].account_id == acme.id


def test_sync_user_groups_returns_plan_and_writes_nothing_when_unchanged(rt: Runtime) -> None:
    login(rt, [GUID_A])
    with rt.db.transaction() as db:
        user = db.scalars(select(User)).one()
        trace = LoginTrace()
        plan = sync_user_groups(
            db,
            account_id=user.account_id,
            user_id=user.id,
            idp_group_ids=[GUID_A, "x"],
            connector_id="idp",
            trace=trace,
        )
        assert not plan.changed and plan.unmatched_ids == ("x",)
        assert not db.new and not db.dirty and not db.deleted
    assert len(sync_events(rt)) == 1


def test_long_claims_are_read_in_slices(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    import transom.groups

    monkeypatch.setattr(transom.groups, "IN_LIST_SLICE", 2)  # SQLite path; PostgreSQL sends one array
    login(rt, ["x1", GUID_A, "x2", GUID_B, "x3", GUID_C, "x4"])
    assert memberships(rt) == {"Alpha": "idp", "Beta": "idp", "Gamma": "idp"}
    login(rt, ["x1", "x2", GUID_C, "x3"])
    assert memberships(rt) == {"Gamma": "idp"}


def test_concurrent_logins_of_one_user_converge(rt: Runtime) -> None:
    """Two browsers finishing the same user's login at once: both logins succeed (the loser
    of a duplicate membership insert retries the whole transaction) and the rows are right."""
    from concurrent.futures import ThreadPoolExecutor

    login(rt, [])  # the user exists; the race is about memberships only
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda _: login(rt, [GUID_A, GUID_B]), range(6)))
    assert all(r.user_id == results[0].user_id for r in results)
    assert memberships(rt) == {"Alpha": "idp", "Beta": "idp"}
    with rt.db.transaction() as db:
        assert len(list(db.scalars(select(GroupMembership)))) == 2


def _all_mapped_groups(db: Any, *, account_id: str, user_id: str) -> list[MappedGroup]:
    """Every mapped group of the account with the user's membership: the widest input
    plan_group_sync accepts, read without any of sync_user_groups' shortcuts."""
    members = {
        m.group_id: m.source
        for m in db.scalars(
            select(GroupMembership).where(GroupMembership.account_id == account_id, GroupMembership.user_id == user_id)
        )
    }
    return [
        MappedGroup(g.id, g.name, g.idp_identifier, members.get(g.id))
        for g in db.scalars(select(Group).where(Group.account_id == account_id, Group.idp_identifier.is_not(None)))
    ]


def test_sync_matches_the_pure_plan_over_random_histories(rt: Runtime) -> None:
    """sync_user_groups reads only the current memberships and the claimed ids that are not
    among them: over random claims, manual rows, groups mapped and unmapped between logins,
    upper-case GUIDs, duplicates and unknown ids, its plan, writes, audit event and trace
    equal the pure plan over *every* mapped group of the account."""
    rng = random.Random(13)
    guids = [f"6f1e0000-0000-4000-8000-{i:012x}" for i in range(10)]
    names = ["Okta-Eng", "okta-eng", "00gAbC1", "00gabc1"]  # case-sensitive: four distinct ids
    pool = guids + names + ["never-mapped-1", "never-mapped-2"]
    with rt.db.transaction() as db:
        account = directory.create_account(db, name="random")
        other = directory.create_account(db, name="other")
        for i, ident in enumerate(pool[:12]):
            directory.create_group(db, account=account, name=f"M{i:02d}", idp_identifier=ident)
            directory.create_group(db, account=other, name=f"M{i:02d}", idp_identifier=ident)
        for i in range(4):
            directory.create_group(db, account=account, name=f"U{i}")  # unmapped for now
        user = User(account_id=account.id, user_name="r@random.example", user_name_key="r@random.example")
        db.add(user)
        db.flush()
        account_id, user_id = account.id, user.id
        groups = {g.name: g.id for g in db.scalars(select(Group).where(Group.account_id == account_id))}
    for round_ in range(30):
        with rt.db.transaction() as db:
            account = directory.get_account(db, name="random")
            if round_ % 5 == 4:  # map an unmapped group to an id the claims already carry
                spare = [g for g in db.scalars(select(Group).where(Group.account_id == account_id))
                         if g.idp_identifier is None and g.name.startswith("U")]
                free = [i for i in pool[12:] + guids if not db.scalar(
                    select(Group.id).where(Group.account_id == account_id, Group.idp_identifier == i))]
                if spare and free:
                    directory.set_group_idp_identifier(db, account=account, group=spare[0],
                                                       idp_identifier=rng.choice(free), actor="test")
            for gid in [groups[name] for name in rng.sample(sorted(groups), 3)]:  # manual rows, mostly mapped
                row = db.get(GroupMembership, (gid, user_id))
                if row is None:
                    db.add(GroupMembership(account_id=account_id, group_id=gid, user_id=user_id, source="manual"))
                elif rng.random() < 0.3:
                    row.source = "manual"
            db.flush()
            claim = rng.sample(pool, rng.randint(0, len(pool)))
            claim = [i.upper() if i in guids and rng.random() < 0.3 else i for i in claim]
            claim += [*rng.sample(claim, min(2, len(claim))), f"unknown-{round_}"]
            expected = plan_group_sync(
                idp_group_ids=claim, mapped_groups=_all_mapped_groups(db, account_id=account_id, user_id=user_id)
            )
            before_unmapped = {
                m.group_id: m.source
                for m in db.scalars(select(GroupMembership).where(GroupMembership.user_id == user_id))
                if db.get(Group, m.group_id).idp_identifier is None  # type: ignore[union-attr]
            }
            events_before = len(list(db.scalars(select(AuditEvent).where(AuditEvent.action == "group.synced"))))
            trace = LoginTrace()
            plan = sync_user_groups(db, account_id=account_id, user_id=user_id, idp_group_ids=claim,
                                    connector_id="idp", trace=trace)
            assert plan == expected
            db.expire_all()  # the sync writes with Core statements: read what the database holds
            after = _all_mapped_groups(db, account_id=account_id, user_id=user_id)
            wanted = {canonical_group_id(i) for i in claim}
            assert {g.group_id: g.membership for g in after if g.membership is not None} == {
                g.group_id: "idp" for g in after if g.idp_identifier in wanted
            }
            assert {
                m.group_id: m.source
                for m in db.scalars(select(GroupMembership).where(GroupMembership.user_id == user_id))
                if db.get(Group, m.group_id).idp_identifier is None  # type: ignore[union-attr]
            } == before_unmapped
            events = list(db.scalars(
                select(AuditEvent).where(AuditEvent.action == "group.synced").order_by(AuditEvent.id)))
            if expected.changed:
                assert len(events) == events_before + 1
                assert events[-1].details == {
                    key: [{"group": g.name, "idp_identifier": g.idp_identifier} for g in part]
                    for key, part in (("added", expected.to_add), ("removed", expected.to_remove),
                                      ("adopted", expected.to_adopt))
                }
                assert events[-1].actor == "connector:idp" and events[-1].user_id == user_id
                assert trace.notes[-1].startswith("groups: ")
            else:
                assert len(events) == events_before
                assert trace.notes[-1] == f"groups: {len(claim)} id(s) received, mapped-group memberships already match"
            if expected.unmatched_ids:
                assert trace.notes[0].startswith(f"{len(expected.unmatched_ids)} group id(s) received match no")
    with rt.db.transaction() as db:
        assert not list(db.scalars(select(GroupMembership).where(GroupMembership.account_id == other.id)))
