"""The input policy's rules on their own: the printable short cut in ``violation`` answers
exactly what the two regex scans answer, for any string."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transom import textpolicy


def _by_scans(value: str, *, identifier: bool) -> tuple[str, str] | None:
    """The rule without the short cut: surrogates first, then the rule's controls."""
    surrogate = textpolicy._SURROGATE.search(value)
    if surrogate:
        return textpolicy.REASON_SURROGATE, f"U+{ord(surrogate.group()):04X}"
    control = (textpolicy._IDENTIFIER_CONTROL if identifier else textpolicy._TEXT_CONTROL).search(value)
    if control:
        char = control.group()
        return (textpolicy.REASON_NUL if char == "\x00" else textpolicy.REASON_CONTROL), f"U+{ord(char):04X}"
    return None


#: every code point class the rules care about, and the rest of Unicode (surrogates included)
_TEXT = st.text(alphabet=st.one_of(
    st.characters(codec=None, min_codepoint=0, max_codepoint=0x7F),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    st.characters(),
), max_size=40)


@settings(max_examples=600, deadline=None)
@given(value=_TEXT, identifier=st.booleans())
def test_the_printable_short_cut_answers_as_the_scans_do(value: str, identifier: bool) -> None:
    assert textpolicy.violation(value, identifier=identifier) == _by_scans(value, identifier=identifier)


@pytest.mark.parametrize("char", [chr(c) for c in (*range(0x20), 0x7F, 0xD800, 0xDBFF, 0xDC00, 0xDFFF)])
def test_every_refused_character_is_outside_the_short_cut(char: str) -> None:
    # the short cut returns None for printable strings only: each character a rule may refuse
    # must be non-printable, or it would slip through
    assert not char.isprintable()
    assert not ("a" * 1000 + char).isprintable()


def test_a_long_base64_field_passes_and_a_late_control_is_still_found() -> None:
    field = "QUJD" * 10_000  # what an ACS form's SAMLResponse looks like
    assert textpolicy.violation(field, identifier=False) is None
    assert textpolicy.violation(field + "\x0b", identifier=False) == (textpolicy.REASON_CONTROL, "U+000B")
    assert textpolicy.violation(field + "\ud800" + "\x00", identifier=True) == (textpolicy.REASON_SURROGATE, "U+D800")
    assert textpolicy.violation("a\tb", identifier=False) is None  # TAB: text allows it
    assert textpolicy.violation("a\tb", identifier=True) == (textpolicy.REASON_CONTROL, "U+0009")
