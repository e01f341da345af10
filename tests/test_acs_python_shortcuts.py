"""The ACS's Python short cuts (branch acs-python, docs/performance.md) against the code they
replaced, over generated inputs: each must answer exactly what the old code answered.

* ``saml.form._unquote`` / ``_parse_qs``: ``urllib.parse.unquote`` / ``parse_qs`` (the form
  parser's own test, tests/test_saml_form.py, compares ``parse_form`` on short forms);
* ``textpolicy.violation`` on long ASCII strings: the two regex scans (and ``isprintable``);
* ``groups.canonical_group_ids``: ``list(dict.fromkeys(canonical_group_id(i) for i in ids))``;
* ``groups._plan``'s steady-state path: the loop it skips;
* ``GroupsClaim.present``: its generator.
"""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_textpolicy_rules import _by_scans

from transom import textpolicy
from transom.connector import GroupsClaim, GroupsState
from transom.groups import (
    MappedGroup,
    _plan,
    _plan_rows,
    canonical_group_id,
    canonical_group_ids,
)
from transom.models import SOURCE_IDP, SOURCE_MANUAL
from transom.saml.form import MAX_ACS_FIELDS, _parse_qs, _unquote

# -- the form: unquote and parse_qs ----------------------------------------------------------

#: base64 text, the escapes a form gives it (upper and lower case), and every way to be odd
_FORM_PIECES = st.sampled_from([
    "QUJD", "eHl6", "+", "/", "=", "%2B", "%2F", "%3D", "%2b", "%2f", "%3d", "%20", "%25", "%", "%2", "%3",
    "%zz", "%00", "%0A", "%C3%A9", "%ED%A0%80", "%FF", "é", "\ud800", "&", "2B", "SAMLResponse", "RelayState",
])


@settings(max_examples=2000, deadline=None)
@given(text=st.lists(_FORM_PIECES, max_size=60).map("".join))
def test_unquote_answers_as_the_stdlib(text: str) -> None:
    assert _unquote(text) == urllib.parse.unquote(text)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=3000), extra=st.lists(_FORM_PIECES, max_size=5).map("".join))
def test_a_form_encoded_base64_value_and_its_spoilers(raw: bytes, extra: str) -> None:
    value = urllib.parse.quote_plus(base64.b64encode(raw).decode("ascii"))
    assert _unquote(value) == urllib.parse.unquote(value) == base64.b64encode(raw).decode("ascii")
    for spoiled in (value + extra, extra + value, value[: len(value) // 2] + extra + value[len(value) // 2:]):
        assert _unquote(spoiled) == urllib.parse.unquote(spoiled)


def _stdlib_form(text: str) -> Any:
    try:
        return urllib.parse.parse_qs(text, keep_blank_values=True, max_num_fields=MAX_ACS_FIELDS)
    except ValueError:
        return ValueError


def _our_form(text: str) -> Any:
    try:
        return _parse_qs(text)
    except ValueError:
        return ValueError


@settings(max_examples=1500, deadline=None)
@given(text=st.lists(_FORM_PIECES, max_size=80).map("".join))
def test_parse_qs_answers_as_the_stdlib(text: str) -> None:
    assert _our_form(text) == _stdlib_form(text)


@pytest.mark.parametrize("text", ["", "&", "&&&&&&&&", "a&" * 7 + "a", "a&" * 8 + "a", "=", "==", "a=b=c",
                                  "+=+", "SAMLResponse", "SAMLResponse=&SAMLResponse=x"])
def test_parse_qs_edges(text: str) -> None:
    assert _our_form(text) == _stdlib_form(text)


# -- the text policy on long ASCII strings ----------------------------------------------------


def test_the_deleted_bytes_are_the_ascii_characters_isprintable_refuses() -> None:
    assert set(textpolicy._ASCII_UNPRINTABLE) == {c for c in range(128) if not chr(c).isprintable()}


@settings(max_examples=800, deadline=None)
@given(
    body=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=600),
    spoilers=st.lists(st.tuples(st.integers(min_value=0, max_value=700),
                                st.characters(max_codepoint=0x7F) | st.sampled_from(["é", "\ud800", "\u2028"])),
                      max_size=3),
    identifier=st.booleans(),
)
def test_long_ascii_strings_get_the_answer_of_the_scans(body: str, spoilers: list[tuple[int, str]],
                                                        identifier: bool) -> None:
    value = body
    for at, char in spoilers:
        value = value[:at] + char + value[at:]
    for text in (value, value * (1 + textpolicy.TRANSLATE_FROM // max(len(value), 1))):
        assert textpolicy.violation(text, identifier=identifier) == _by_scans(text, identifier=identifier)
        assert (textpolicy.violation(text, identifier=identifier) is None) == (
            text.isprintable() or _by_scans(text, identifier=identifier) is None)


@pytest.mark.parametrize("length", [textpolicy.TRANSLATE_FROM - 1, textpolicy.TRANSLATE_FROM, 60_000])
@pytest.mark.parametrize("char", [chr(c) for c in (*range(0x20), 0x7F)])
def test_every_ascii_control_is_found_at_any_length(length: int, char: str) -> None:
    value = "Q" * (length - 1) + char
    assert textpolicy.violation(value, identifier=True) == _by_scans(value, identifier=True) is not None
    assert textpolicy.violation(value, identifier=False) == _by_scans(value, identifier=False)


# -- group ids and the plan -------------------------------------------------------------------

_GUID_LOWER = "0f8fad5b-d9cb-469f-a165-70867728950e"
#: ids whose case matters or not, GUIDs in either case, and characters whose lower case is
#: special (final sigma, dotted capital I, the Kelvin sign, a title-case digraph)
_ID_PIECES = st.sampled_from([
    _GUID_LOWER, _GUID_LOWER.upper(), "0F8FAD5B-d9cb-469f-A165-70867728950e", "00gAbC123", "00gabc", "Engineering",
    "engineering", "ΟΔΟΣ", "οδος", "Σ", "ς", "İ", "i̇", "K", "ǅ", "ß", "ẞ", "", " ", "\n", "a\nB",
])
_IDS = st.lists(st.lists(_ID_PIECES, min_size=1, max_size=3).map("".join), max_size=30)


@settings(max_examples=1500, deadline=None)
@given(ids=_IDS, as_tuple=st.booleans())
def test_canonical_group_ids_as_one_call_per_id(ids: list[str], as_tuple: bool) -> None:
    expected = list(dict.fromkeys(canonical_group_id(i) for i in ids))
    assert canonical_group_ids(tuple(ids) if as_tuple else ids) == expected
    assert canonical_group_ids(iter(ids)) == expected


_IDENTS = st.sampled_from(["a", "b", "c", "d", "e", "f"])
_ROWS = st.lists(
    st.tuples(_IDENTS, st.sampled_from([SOURCE_IDP, SOURCE_IDP, SOURCE_IDP, SOURCE_MANUAL, "other", None])),
    max_size=8, unique_by=lambda row: row[0],
).map(lambda rows: [(f"g-{ident}", f"group {ident}", ident, source) for ident, source in rows])


@settings(max_examples=1500, deadline=None)
@given(wanted=st.sets(_IDENTS | st.sampled_from(["x", "y"])), rows=_ROWS, shape=st.sampled_from(["list", "values"]))
def test_plan_as_the_loop(wanted: set[str], rows: list[tuple[str, str, str, str | None]], shape: str) -> None:
    given_rows: Iterable[tuple[str, str, str, str | None]] = (
        rows if shape == "list" else {row[0]: MappedGroup(*row) for row in rows}.values())
    assert _plan(set(wanted), given_rows) == _plan_rows(set(wanted), rows)


def test_plan_steady_state_with_unmatched_ids() -> None:
    rows = [("g-a", "group a", "a", SOURCE_IDP), ("g-b", "group b", "b", SOURCE_IDP)]
    plan = _plan({"a", "b", "zz", "yy"}, rows)
    assert plan == _plan_rows({"a", "b", "zz", "yy"}, rows)
    assert not plan.changed and plan.unmatched_ids == ("yy", "zz")


# -- the groups claim -------------------------------------------------------------------------


class _Text(str):
    pass


_VALUE = st.text(max_size=4) | st.builds(_Text, st.text(max_size=4)) | st.integers() | st.none() | st.floats()


@settings(max_examples=500, deadline=None)
@given(ids=st.lists(_VALUE, max_size=40), as_tuple=st.booleans())
def test_groups_claim_present_as_the_generator(ids: list[Any], as_tuple: bool) -> None:
    claim = GroupsClaim.present(tuple(ids) if as_tuple else ids)
    expected = tuple(str(i) for i in ids)
    assert claim.state is GroupsState.PRESENT and claim.ids == expected
    assert [type(i) for i in claim.ids] == [type(i) for i in expected]
