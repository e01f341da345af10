"""Table-driven tests over the pure provisioning rules (docs/provisioning.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from transom.connector import ProvisioningSettings
from transom.provisioning import (
    canonical_timezone,
    pick_account_role,
    plan_space_roles,
    split_values,
)

SPACES = ["Trial", "DevOps", "Prod Europe"]
ROLES = ["Space Admin", "Space Developer", "Space Member"]
ADMIN, DEV, MEMBER = ROLES
NO_DEFAULT = ProvisioningSettings()
WITH_DEFAULT = ProvisioningSettings(default_space="Trial", default_space_role="Space Developer")


@dataclass(frozen=True)
class Case:
    name: str
    spaces: list[str]
    roles: list[str]
    expected: list[tuple[str, str]]
    warnings: int = 0
    settings: ProvisioningSettings = NO_DEFAULT
    origin: str = "idp"


CASES = [
    # the seed's example and the basic pairing
    Case("one space one role", ["Trial"], ["Space Developer"], [("Trial", DEV)]),
    Case(
        "comma pairs by position",
        ["Trial,DevOps"],
        ["Space Member,Space Developer"],
        [("Trial", MEMBER), ("DevOps", DEV)],
    ),
    Case(
        "several values pair like commas",
        ["Trial", "DevOps"],
        ["Space Member", "Space Developer"],
        [("Trial", MEMBER), ("DevOps", DEV)],
    ),
    Case(
        "mixed commas and values",
        ["Trial,DevOps", "Prod Europe"],
        ["Space Admin", "Space Developer, Space Member"],
        [("Trial", ADMIN), ("DevOps", DEV), ("Prod Europe", MEMBER)],
    ),
    # several spaces and one role
    Case(
        "one role reused in every space",
        ["Trial,DevOps,Prod Europe"],
        ["Space Developer"],
        [("Trial", DEV), ("DevOps", DEV), ("Prod Europe", DEV)],
    ),
    Case(
        "one unknown role reused: member everywhere",
        ["Trial,DevOps"],
        ["Boss"],
        [("Trial", MEMBER), ("DevOps", MEMBER)],
        warnings=2,
    ),
    # several roles for the same space
    Case("same space twice: first valid role", ["Trial,Trial"], ["Boss,Space Admin"], [("Trial", ADMIN)], warnings=1),
    Case(
        "same space twice: first role wins when valid",
        ["Trial,DevOps,trial"],
        ["Space Developer,Space Member,Space Admin"],
        [("Trial", DEV), ("DevOps", MEMBER)],
    ),
    Case("same space twice, no valid role at all", ["Trial,Trial"], ["Boss,Chief"], [("Trial", MEMBER)], warnings=2),
    Case(
        "duplicate space after roles run out",
        ["Trial,DevOps,Trial"],
        ["Space Member,Space Admin"],
        [("Trial", MEMBER), ("DevOps", ADMIN)],
    ),
    # unknown role
    Case(
        "unknown role: Space Member",
        ["Trial,DevOps"],
        ["Boss,Space Admin"],
        [("Trial", MEMBER), ("DevOps", ADMIN)],
        warnings=1,
    ),
    # more spaces than roles
    Case(
        "extra spaces get Space Member",
        ["Trial,DevOps,Prod Europe"],
        ["Space Admin,Space Developer"],
        [("Trial", ADMIN), ("DevOps", DEV), ("Prod Europe", MEMBER)],
    ),
    Case("no role attribute at all", ["Trial,DevOps"], [], [("Trial", MEMBER), ("DevOps", MEMBER)]),
    # more roles than spaces
    Case("extra roles ignored", ["Trial"], ["Space Developer,Space Admin,Space Admin"], [("Trial", DEV)]),
    Case(
        "one space, unknown first role, extras still ignored",
        ["Trial"],
        ["Boss,Space Admin"],
        [("Trial", MEMBER)],
        warnings=1,
    ),
    # unknown space
    Case(
        "unknown space dropped with its role",
        ["Trial,Sandbox,DevOps"],
        ["Space Member,Space Admin,Space Developer"],
        [("Trial", MEMBER), ("DevOps", DEV)],
        warnings=1,
    ),
    Case(
        "unknown space and unknown role in the same list",
        ["Sandbox,Trial,DevOps"],
        ["Space Admin,Boss,Space Admin"],
        [("Trial", MEMBER), ("DevOps", ADMIN)],
        warnings=2,
    ),
    Case(
        "unknown role of an unknown space is not reported",
        ["Sandbox,Trial"],
        ["Boss,Space Admin"],
        [("Trial", ADMIN)],
        warnings=1,
    ),
    # names: case and whitespace
    Case(
        "case-insensitive names", ["trial,DEVOPS"], ["space admin,SPACE developer"], [("Trial", ADMIN), ("DevOps", DEV)]
    ),
    Case(
        "blanks trimmed and inner runs collapsed",
        ["  Prod   Europe  ,\tTrial "],
        [" Space  Admin ,Space Member\n"],
        [("Prod Europe", ADMIN), ("Trial", MEMBER)],
    ),
    # empty items keep their position
    Case(
        "empty space entry skipped with its role",
        ["Trial,,DevOps"],
        ["Space Member,Space Admin,Space Developer"],
        [("Trial", MEMBER), ("DevOps", DEV)],
    ),
    Case(
        "empty role entry means Space Member, no shift",
        ["Trial,DevOps"],
        [",Space Admin"],
        [("Trial", MEMBER), ("DevOps", ADMIN)],
    ),
    Case(
        "trailing empty role is a position, not 'one role'",
        ["Trial,DevOps"],
        ["Space Admin,"],
        [("Trial", ADMIN), ("DevOps", MEMBER)],
    ),
    Case(
        "trailing comma on spaces is harmless",
        ["Trial,DevOps,"],
        ["Space Admin"],
        [("Trial", ADMIN), ("DevOps", ADMIN)],
    ),
    Case(
        "empty multi-value entry keeps position",
        ["Trial", "", "DevOps"],
        ["Space Admin", "Space Admin", "Space Developer"],
        [("Trial", ADMIN), ("DevOps", DEV)],
    ),
    Case(
        "single empty role value: Space Member everywhere",
        ["Trial,DevOps"],
        [""],
        [("Trial", MEMBER), ("DevOps", MEMBER)],
    ),
    # nothing valid left
    Case("only commas, no default", [",,,"], [",,"], [], origin="none"),
    Case("nothing sent, no default", [], [], [], origin="none"),
    Case(
        "only commas, default space",
        [" , ,"],
        ["Space Admin"],
        [("Trial", DEV)],
        settings=WITH_DEFAULT,
        origin="default",
    ),
    Case(
        "all unknown, default space",
        ["Sandbox"],
        ["Space Admin"],
        [("Trial", DEV)],
        warnings=1,
        settings=WITH_DEFAULT,
        origin="default",
    ),
    Case("valid space beats the default", ["DevOps"], ["Space Admin"], [("DevOps", ADMIN)], settings=WITH_DEFAULT),
    Case(
        "default space missing from the account",
        [],
        [],
        [],
        warnings=1,
        settings=ProvisioningSettings(default_space="Nowhere"),
        origin="none",
    ),
    Case(
        "default role unknown: Space Member",
        [],
        [],
        [("Trial", MEMBER)],
        warnings=1,
        settings=ProvisioningSettings(default_space="trial", default_space_role="Boss"),
        origin="default",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_space_role_rules(case: Case) -> None:
    plan = plan_space_roles(
        space_values=case.spaces,
        role_values=case.roles,
        known_spaces=SPACES,
        known_space_roles=ROLES,
        settings=case.settings,
    )
    assert [(a.space, a.role) for a in plan.assignments] == case.expected
    assert len(plan.warnings) == case.warnings, plan.warnings
    assert plan.origin == case.origin


def test_space_member_missing_from_account_skips_the_space() -> None:
    plan = plan_space_roles(
        space_values=["Trial,DevOps"],
        role_values=["Boss,Space Admin"],
        known_spaces=SPACES,
        known_space_roles=["Space Admin"],
        settings=NO_DEFAULT,
    )
    assert [(a.space, a.role) for a in plan.assignments] == [("DevOps", "Space Admin")]
    assert any("no 'Space Member' role" in w for w in plan.warnings)



@pytest.mark.parametrize(("default_role", "expected", "warnings"), [
    # the configured default role exists: no need for Space Member
    ("Space Admin", [("Trial", "Space Admin")], 1),
    # the configured default role is unknown and there is no Space Member to fall back to
    ("Boss", [], 3),
])
def test_default_space_when_the_account_has_no_space_member_role(
    default_role: str, expected: list[tuple[str, str]], warnings: int
) -> None:
    plan = plan_space_roles(
        space_values=["Nowhere"],
        role_values=[],
        known_spaces=SPACES,
        known_space_roles=["Space Admin"],
        settings=ProvisioningSettings(default_space="Trial", default_space_role=default_role),
    )
    assert [(a.space, a.role) for a in plan.assignments] == expected
    assert len(plan.warnings) == warnings, plan.warnings
    assert plan.origin == ("default" if expected else "none")
    if not expected:
        assert any("no 'Space Member' role; default space skipped" in w for w in plan.warnings)

def test_warnings_name_the_bad_values() -> None:
    plan = plan_space_roles(
        space_values=["Sandbox,Trial"],
        role_values=["Space Admin,Boss"],
        known_spaces=SPACES,
        known_space_roles=ROLES,
        settings=NO_DEFAULT,
    )
    assert any("'Sandbox'" in w for w in plan.warnings)
    assert any("'Boss'" in w and "'Trial'" in w for w in plan.warnings)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["a,b"], ["a", "b"]),
        (["a", "b"], ["a", "b"]),
        ([" a , b ", "c"], ["a", "b", "c"]),
        (["a,,b"], ["a", "", "b"]),
        ([",,,"], []),
        (["", " "], []),
        ([], []),
    ],
)
def test_split_values(values: list[str], expected: list[str]) -> None:
    assert split_values(values) == expected


@pytest.mark.parametrize(
    ("values", "role", "warnings"),
    [
        ([], None, 0),
        (["Account Admin"], "Account Admin", 0),
        (["account  admin"], "Account Admin", 0),
        (["Boss,Account Member"], "Account Member", 1),
        (["Boss"], None, 2),
        ([",,"], None, 0),
    ],
)
def test_account_role(values: list[str], role: str | None, warnings: int) -> None:
    decision = pick_account_role(values=values, known_account_roles=["Account Admin", "Account Member"])
    assert decision.role == role
    assert len(decision.warnings) == warnings


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Europe/London", "Europe/London"),
        (" america/new_york ", "America/New_York"),
        ("UTC", "UTC"),
        ("Mars/Olympus", None),
        ("../../etc/passwd", None),
        ("", None),
        (None, None),
        ("GMT+2", None),
    ],
)
def test_timezone(value: str | None, expected: str | None) -> None:
    assert canonical_timezone(value) == expected


# -- the operator page's table of examples is checked against the code -----------------


def _doc_examples() -> list[tuple[list[str], list[str], list[tuple[str, str]], bool, str]]:
    text = (Path(__file__).resolve().parents[1] / "docs" / "provisioning.md").read_text(encoding="utf-8")
    section = text.split("## Examples", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith(("| `", "| *")) or line.startswith("| `space_name`"):
            continue
        spaces, roles, result, why = (cell.strip() for cell in line.strip().strip("|").split(" | "))
        rows.append((_doc_value(spaces), _doc_value(roles), _doc_result(result), "with default" in why, line))
    return rows


def _doc_value(cell: str) -> list[str]:
    if cell == "*(absent)*":
        return []
    raw = cell.strip("`")
    parsed = json.loads(raw) if raw.startswith("[") else [raw]
    return [str(v) for v in parsed]


def _doc_result(cell: str) -> list[tuple[str, str]]:
    if cell == "*(no space)*":
        return []
    pairs = []
    for part in cell.split("; "):
        spaces, role = part.split(": ")
        pairs += [(space, role) for space in spaces.split(", ")]
    return pairs


DOC_EXAMPLES = _doc_examples()


def test_doc_has_the_examples_table() -> None:
    assert len(DOC_EXAMPLES) >= 20


@pytest.mark.parametrize(
    ("spaces", "roles", "expected", "with_default", "line"), DOC_EXAMPLES, ids=[row[4][:60] for row in DOC_EXAMPLES]
)
def test_doc_examples_match_the_rules(
    spaces: list[str], roles: list[str], expected: list[tuple[str, str]], with_default: bool, line: str
) -> None:
    plan = plan_space_roles(
        space_values=spaces,
        role_values=roles,
        known_spaces=["Trial", "DevOps", "Prod"],
        known_space_roles=ROLES,
        settings=WITH_DEFAULT if with_default else NO_DEFAULT,
    )
    assert sorted((a.space, a.role) for a in plan.assignments) == sorted(expected), line


@pytest.mark.parametrize(("spaces", "roles", "notes"), [
    (["Trial,DevOps"], ["Space Admin"], ["one role for 2 space entries: 'Space Admin' applies to each"]),
    (["Trial"], ["Space Admin"], []),
    (["Trial"], ["Space Admin,Space Developer,Space Member"], ["2 extra role(s) without a space ignored"]),
    (["Trial,DevOps"], ["Space Admin,Space Developer"], []),
    ([], ["Space Admin"], ["no valid space and no default_space configured: no space assignment"]),
    ([",Trial"], ["Space Admin,Space Developer"], ["empty space entry at position 1 ignored with its role"]),
    (["Trial,trial"], ["Boss,Space Admin"], ["space 'Trial' named again at position 2: the first valid role is kept"]),
    (["Trial,DevOps"], ["Space Admin,"], []),
    (["Trial,DevOps"], [], ["no role for space 'Trial': Space Member", "no role for space 'DevOps': Space Member"]),
], ids=["one role, two spaces", "one role, one space", "extra roles", "pairs", "roles without spaces",
        "empty space entry", "space named twice", "empty role", "no roles"])
def test_notes_say_which_rule_applied(spaces: list[str], roles: list[str], notes: list[str]) -> None:
    """The notes are what `transom explain` and the login trace show an operator."""
    plan = plan_space_roles(space_values=spaces, role_values=roles, known_spaces=SPACES, known_space_roles=ROLES,
                            settings=NO_DEFAULT)
    assert list(plan.notes) == notes
