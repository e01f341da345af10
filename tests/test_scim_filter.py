"""The SCIM filter grammar (unit) and its SQL compilation (through HTTP on real databases),
including injection and wildcard attempts (security checklist SCIM-13..16)."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import client_for
from scim_support import SCIM, auth, create, make_tenants, new_user

from transom.scim.errors import InvalidFilter
from transom.scim.filter import And, Compare, Not, Or, Present, ValuePath, parse_filter, parse_value_path

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def test_grammar_precedence_grouping_and_value_paths() -> None:
    a, b, c = Compare("a", "eq", 1), Compare("b", "eq", 2), Compare("c", "eq", 3)
    assert parse_filter("a eq 1 or b eq 2 and c eq 3") == Or(a, And(b, c))
    assert parse_filter("(a eq 1 or b eq 2) and c eq 3") == And(Or(a, b), c)
    assert parse_filter("not (a eq 1) AND b Eq 2") == And(Not(a), b)
    assert parse_filter('emails[type eq "work" and value co "@x"]') == \
        ValuePath("emails", And(Compare("type", "eq", "work"), Compare("value", "co", "@x")))
    assert parse_filter('emails[type eq "work"].value eq "x"') == \
        ValuePath("emails", And(Compare("type", "eq", "work"), Compare("value", "eq", "x")))
    assert parse_filter(f'{ENTERPRISE}:manager.value pr') == Present(f"{ENTERPRISE}:manager.value")
    assert parse_filter("title pr and active eq true and x eq null and n gt -1.5e2") == And(And(And(
        Present("title"), Compare("active", "eq", True)), Compare("x", "eq", None)), Compare("n", "gt", -150.0))
    assert parse_filter('userName eq "a\\" or \\"1\\" eq \\"1"') == Compare("userName", "eq", 'a" or "1" eq "1')
    assert parse_filter('displayName eq "\\u00e9t\\u00e9"') == Compare("displayName", "eq", "été")
    # Microsoft's examples leave values unquoted; read as strings (docs/scim.md)
    assert parse_filter("userName sw O") == Compare("userName", "sw", "O")
    assert parse_filter("meta.created gt 2015-10-10T14:38:21.8617979-07:00") == \
        Compare("meta.created", "gt", "2015-10-10T14:38:21.8617979-07:00")
    assert parse_filter("notes eq 1") == Compare("notes", "eq", 1)
    assert parse_value_path('emails[type eq "work"].value') == ("emails", Compare("type", "eq", "work"), "value")
    assert parse_value_path("name.givenName") == ("name.givenName", None, None)


def test_parsed_filters_are_immutable_values() -> None:
    """The caps are checked while parsing; the tree handed on cannot be changed afterwards, and
    equal filters are equal (hashable) values."""
    import dataclasses

    tree: Any = parse_filter('not (a eq 1) and (b pr or c[d eq "x"])')
    assert hash(tree) == hash(parse_filter('not (a eq 1) and (b pr or c[d eq "x"])'))
    nodes = [tree, tree.left, tree.left.expr, tree.right, tree.right.left, tree.right.right]
    assert [type(n) for n in nodes] == [And, Not, Compare, Or, Present, ValuePath]
    for node in nodes:
        with pytest.raises(dataclasses.FrozenInstanceError):
            node.path = "other"


@pytest.mark.parametrize("text", [
    "", "userName", "userName eq", 'userName xx "a"', 'userName eq "a', 'userName eq "a" extra',
    "(userName eq 1", 'emails[type eq "work"', 'userName eq "\\q"', "userName eq 1 or",
    "(" * 10_000 + "a eq 1" + ")" * 10_000, " or ".join(["a eq 1"] * 1000), "a eq " + "x" * 5000,
])
def test_bad_filters_are_invalid_filter(text: str) -> None:
    # an InvalidFilter, never a RecursionError (speed belongs in bench/, not in a timed test)
    with pytest.raises(InvalidFilter):
        parse_filter(text)


# -- each cap and rule on its own (issue 12: the length cap used to hide the others) --------


def _reason(text: str) -> str:
    with pytest.raises(InvalidFilter) as caught:
        parse_filter(text)
    return caught.value.message


def test_nesting_depth_cap_is_reached_below_the_length_cap() -> None:
    from transom.scim.filter import MAX_DEPTH, MAX_FILTER_LENGTH

    deepest_allowed = "(" * MAX_DEPTH + "a eq 1" + ")" * MAX_DEPTH
    assert parse_filter(deepest_allowed) == Compare("a", "eq", 1)
    one_more = "(" * (MAX_DEPTH + 1) + "a eq 1" + ")" * (MAX_DEPTH + 1)
    assert len(one_more) < 100 < MAX_FILTER_LENGTH
    assert "nested too deeply" in _reason(one_more)
    negated: Any = Compare("a", "eq", 1)
    for _ in range(MAX_DEPTH):
        negated = Not(negated)
    assert parse_filter("not (" * MAX_DEPTH + "a eq 1" + ")" * MAX_DEPTH) == negated
    nots = "not (" * (MAX_DEPTH + 1) + "a eq 1" + ")" * (MAX_DEPTH + 1)
    assert "nested too deeply" in _reason(nots)
    brackets = "a[" * (MAX_DEPTH + 1) + "b eq 1" + "]" * (MAX_DEPTH + 1)
    assert "nested too deeply" in _reason(brackets)


def test_comparison_count_cap_is_reached_below_the_length_cap() -> None:
    from transom.scim.filter import MAX_COMPARISONS, MAX_FILTER_LENGTH

    allowed = " or ".join(["a pr"] * MAX_COMPARISONS)
    parse_filter(allowed)
    over = " or ".join(["a pr"] * (MAX_COMPARISONS + 1))
    assert len(over) < MAX_FILTER_LENGTH
    assert f"more than {MAX_COMPARISONS} comparisons" in _reason(over)


def test_length_cap_on_its_own() -> None:
    from transom.scim.filter import MAX_FILTER_LENGTH

    assert "longer than" in _reason("a eq " + "1" * (MAX_FILTER_LENGTH - 4))
    parse_filter("a eq " + "1" * (MAX_FILTER_LENGTH - 5))


def test_the_caps_are_the_documented_values() -> None:
    """docs/scim.md promises 4,096 characters, nesting depth 16 and 50 comparisons; the tests
    above read the module's constants, so a changed constant would move them along."""
    parse_filter("a eq " + "1" * 4091)  # 4,096 characters
    assert "longer than 4096" in _reason("a eq " + "1" * 4092)
    parse_filter("(" * 16 + "a eq 1" + ")" * 16)
    assert "nested too deeply" in _reason("(" * 17 + "a eq 1" + ")" * 17)
    parse_filter(" or ".join(["a pr"] * 50))
    assert "more than 50 comparisons" in _reason(" or ".join(["a pr"] * 51))


def test_boolean_and_null_literals_are_parsed_as_json_literals() -> None:
    assert parse_filter("active eq false") == Compare("active", "eq", False)
    assert parse_filter("active eq FALSE") == Compare("active", "eq", False)
    assert parse_filter("active eq true") == Compare("active", "eq", True)
    assert parse_filter("manager eq null") == Compare("manager", "eq", None)
    # a number without a fraction or exponent stays an int: `externalId eq 12` matches "12", not "12.0"
    for text, number in (("12", 12), ("-7", -7), ("1.5", 1.5), ("1e3", 1000.0), ("2E-1", 0.2)):
        parsed = parse_filter(f"n eq {text}")
        assert isinstance(parsed, Compare)
        assert (parsed.value, type(parsed.value)) == (number, type(number))
    # a word that only starts with a literal stays a bare string, whatever name character follows
    assert parse_filter("title eq falsehood") == Compare("title", "eq", "falsehood")
    for word in ("null2", "true_x", "false-y", "true.z", "null:u", "true$"):
        assert parse_filter(f"title eq {word}") == Compare("title", "eq", word)


def test_strings_are_read_from_their_first_character() -> None:
    # an empty string, and a string that opens with an escape: the scan starts right after the quote
    assert parse_filter('a eq ""') == Compare("a", "eq", "")
    assert parse_filter('a eq "\\"" and b pr') == And(Compare("a", "eq", '"'), Present("b"))


def test_patch_path_filter_depth_counts_its_brackets() -> None:
    """The brackets of a PATCH path are one level, as in a filter: 15 parentheses inside them
    reach the depth cap of 16, 16 go over it."""
    inner = "(" * 15 + "b eq 1" + ")" * 15
    assert parse_value_path(f"a[{inner}].c") == ("a", Compare("b", "eq", 1), "c")
    assert parse_filter(f"a[{inner}]") == ValuePath("a", Compare("b", "eq", 1))
    for deeper in (parse_value_path, parse_filter):
        with pytest.raises(InvalidFilter) as caught:
            deeper(f"a[({inner})]")
        assert "nested too deeply" in caught.value.message


def test_patch_path_length_cap() -> None:
    """The same 4,096 characters as a filter, on its own: a longer path is refused before parsing."""
    assert parse_value_path("a" * 4096) == ("a" * 4096, None, None)
    with pytest.raises(InvalidFilter) as caught:
        parse_value_path("a" * 4097)
    assert caught.value.message == "path too long"


@pytest.mark.parametrize("path", ["name.givenName junk", 'emails[type eq "work"] x', 'emails[type eq "work"].value x',
                                  "userName)"])
def test_patch_path_with_trailing_text_is_refused(path: str) -> None:
    with pytest.raises(InvalidFilter) as caught:
        parse_value_path(path)
    assert "unexpected text in path" in caught.value.message or "expected" in caught.value.message


@pytest.mark.parametrize(("literal", "reason"), [
    ("\\ud800", "lone_surrogate"), ("\\udfff", "lone_surrogate"), ("a\\u0000", "nul_character"),
    ("\\u0007", "control_character"),
])
def test_escaped_unsafe_characters_in_filter_strings_are_refused(literal: str, reason: str) -> None:
    with pytest.raises(InvalidFilter) as caught:
        parse_filter(f'userName eq "{literal}"')
    assert caught.value.reason == reason
    # a valid surrogate pair is one character, and welcome
    assert parse_filter('displayName eq "\\ud83d\\ude00"') == Compare("displayName", "eq", "\U0001f600")


# -- through HTTP on the real databases (after the unit tests: a mutation run stops at the first
#    failure, and the unit tests fail fastest) ------------------------------------------------


@pytest.fixture
def seeded(make_runtime: Any) -> Any:
    tenants = make_tenants(make_runtime)
    with client_for(tenants.runtime) as client:
        ids = {}
        for name, extra in (
            ("ada@acme.example", {"externalId": "jyoung", "title": "Engineer", ENTERPRISE: {"manager": {"value": "m1"}},
                                  "roles": [{"value": "Admin", "primary": True}]}),
            ("bob_smith@acme.example", {"emails": [{"value": "bob@home.example", "type": "home"},
                                                   {"value": "bob@acme.example", "type": "work"}]}),
            ("100%real@acme.example", {"name": {"givenName": "O'Brien", "familyName": "Quote"}}),
            ("Zoe@Acme.Example", {"active": False}),
        ):
            ids[name] = create(client, tenants.token, new_user(name, **extra))["id"]
        yield client, tenants, ids


def _names(client: Any, token: str, flt: str) -> set[str]:
    response = client.get(f"{SCIM}/Users", params={"filter": flt}, headers=auth(token))
    assert response.status_code == 200, (flt, response.text)
    return {r["userName"] for r in response.json()["Resources"]}


@pytest.mark.parametrize(("flt", "expected"), [
    ('userName eq "ADA@acme.example"', {"ada@acme.example"}),
    ('USERNAME EQ "zoe@acme.example"', {"Zoe@Acme.Example"}),
    ('userName co "%"', {"100%real@acme.example"}),
    ('userName sw "_"', set()),
    ('userName co "_"', {"bob_smith@acme.example"}),
    ('userName ew "ACME.EXAMPLE"', {"ada@acme.example", "bob_smith@acme.example", "100%real@acme.example",
                                     "Zoe@Acme.Example"}),
    ('userName eq "a\\" or \\"1\\" eq \\"1"', set()),
    ('name.givenName co "\'"', {"100%real@acme.example"}),
    ('emails[value co "\'"]', set()),
    ('emails[type eq "work"].value eq "bob@acme.example"', {"bob_smith@acme.example"}),
    ('emails[type eq "home" and value sw "BOB@"]', {"bob_smith@acme.example"}),
    ('emails[type eq "home" and value eq "ada@acme.example"]', set()),
    ('emails.value eq "bob@home.example"', {"bob_smith@acme.example"}),
    ("externalId eq jyoung", {"ada@acme.example"}),
    ('externalId eq "JYOUNG"', set()),  # externalId is caseExact
    ('manager eq "m1"', {"ada@acme.example"}),
    (f'{ENTERPRISE}:manager.value eq "m1"', {"ada@acme.example"}),
    ('roles[primary eq "True"].value eq "Admin"', {"ada@acme.example"}),
    ("active eq false", {"Zoe@Acme.Example"}),
    ('not (userName sw "a" or userName sw "b") and active eq true', {"100%real@acme.example"}),
    ("title pr", {"ada@acme.example"}),
    ('title ne "Engineer"', {"bob_smith@acme.example", "100%real@acme.example", "Zoe@Acme.Example"}),
    ('meta.created gt "2000-01-01T00:00:00Z" and userName sw "ada"', {"ada@acme.example"}),
    ('meta.resourceType eq "Group"', set()),
    ('userName gt "b" and userName lt "c"', {"bob_smith@acme.example"}),
])
def test_filters_compile_to_sql(seeded: Any, flt: str, expected: set[str]) -> None:
    client, tenants, _ = seeded
    assert _names(client, tenants.token, flt) == expected


@pytest.mark.parametrize("flt", [
    'password sw "a"', 'unknownAttr eq "x"', "active gt true", 'emails[nope eq "x"]', 'name eq "x"',
    'meta.created gt "yesterday"', 'meta.location eq "x"', 'urn:example:unknown:attr eq "x"',
    'emails[type eq "a"][x eq "b"]', 'title eq true', "userName eq x' OR '1'='1", "and eq 1",
])
def test_unusable_filters_answer_400_invalid_filter(seeded: Any, flt: str) -> None:
    client, tenants, _ = seeded
    response = client.get(f"{SCIM}/Users", params={"filter": flt}, headers=auth(tenants.token))
    assert response.status_code == 400, flt
    body = response.json()
    assert body["scimType"] == "invalidFilter" and body["status"] == "400"
    assert "SELECT" not in body["detail"].upper()


def test_filters_never_cross_accounts(seeded: Any) -> None:
    client, tenants, ids = seeded
    assert _names(client, tenants.other_token, 'userName co "@"') == set()
    assert _names(client, tenants.other_token, f'id eq "{ids["ada@acme.example"]}"') == set()
    assert _names(client, tenants.other_token, 'manager eq "m1"') == set()
