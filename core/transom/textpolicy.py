"""The one input policy for text that reaches the database or a filter (docs/security.md).

Two rules, applied at the edge (SCIM bodies and filters, admin-API bodies, path and query
parameters, form fields) and once more as a backstop on every statement's parameters
(``transom.db``), so both engines answer alike: PostgreSQL cannot store NUL and neither
driver can encode a lone surrogate, while SQLite would silently store both.

* **text** (every string): no lone surrogate (U+D800-U+DFFF), no NUL, no other C0 control
  except TAB, LF and CR (a formatted postal address may span lines, RFC 7643 §4.1.2).
* **identifier** (names and ids: user names, external ids, emails, group names, path
  parameters, JSON keys): additionally no TAB, LF, CR or DEL.

A refusal is a 400 whose ``reason`` says which rule refused; the message names the field and
the code point, never the value (echoing a lone surrogate would itself fail to encode).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from transom.errors import BadRequest

#: a lone surrogate: json.loads joins valid pairs, so any surrogate left in a str is alone
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_IDENTIFIER_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

#: form and JSON fields that name someone or something: the identifier rule applies to their values
IDENTIFIER_FIELDS = frozenset({"email", "account", "name", "idp_identifier", "user_name", "username"})

REASON_SURROGATE = "lone_surrogate"
REASON_NUL = "nul_character"
REASON_CONTROL = "control_character"


class UnsafeText(BadRequest):
    """A string breaks the input policy. ``code`` stays generic (``bad_request``, SCIM
    ``invalidValue``); ``reason`` names the rule."""


#: the ASCII characters ``str.isprintable`` calls non-printable: C0 controls and DEL
_ASCII_UNPRINTABLE = bytes(range(0x20)) + b"\x7f"
#: from this length an ASCII string's printable check is a ``bytes.translate`` (see violation)
TRANSLATE_FROM = 256


def violation(value: str, *, identifier: bool) -> tuple[str, str] | None:
    """``(reason, code point)`` of the first character the rule refuses, else ``None``."""
    # Every character either rule refuses (C0 controls, DEL, surrogates) is non-printable, so
    # a printable string passes both without the two regex scans: str.isprintable is one C
    # loop, ~3x cheaper on a 40 KB SAMLResponse form field (docs/performance.md).
    if len(value) < TRANSLATE_FROM or not value.isascii():
        if value.isprintable():
            return None
    # A long ASCII string (a SAMLResponse form field: ~60 KB at 200 groups): the only
    # non-printable ASCII characters are C0 controls and DEL, and deleting them from the bytes
    # (one C pass over a 256-entry table, after a copy) leaves the length unchanged exactly
    # when isprintable would hold; ~2.5x cheaper than isprintable's Unicode table lookups.
    # isascii reads a flag; for short strings the copy costs more than it saves.
    elif len(value.encode("ascii").translate(None, _ASCII_UNPRINTABLE)) == len(value):
        return None
    surrogate = _SURROGATE.search(value)
    if surrogate:
        return REASON_SURROGATE, f"U+{ord(surrogate.group()):04X}"
    control = (_IDENTIFIER_CONTROL if identifier else _TEXT_CONTROL).search(value)
    if control:
        char = control.group()
        return (REASON_NUL if char == "\x00" else REASON_CONTROL), f"U+{ord(char):04X}"
    return None


def check(value: str, where: str, *, identifier: bool = False) -> str:
    """``value`` unchanged, or :class:`UnsafeText` naming ``where`` and the code point."""
    found = violation(value, identifier=identifier)
    if found is not None:
        reason, point = found
        what = {REASON_SURROGATE: "a lone surrogate", REASON_NUL: "a NUL character"}.get(reason, "a control character")
        kind = "identifier" if identifier else "text"
        raise UnsafeText(f"{where}: contains {what} ({point}), which {kind} fields may not hold", reason=reason)
    return value


def check_json(value: Any, where: str, *, identifier_keys: Iterable[str] = (), all_identifiers: bool = False) -> None:
    """Walk a parsed JSON document. Keys are identifiers; string values follow the text rule,
    except under a key in ``identifier_keys`` (lower case) or everywhere if
    ``all_identifiers``. ``where`` grows with the keys that already passed."""
    keys = frozenset(k.lower() for k in identifier_keys)
    _walk(value, where, keys, all_identifiers, identifier=all_identifiers)


def _walk(value: Any, where: str, keys: frozenset[str], everywhere: bool, *, identifier: bool) -> None:
    if isinstance(value, str):
        check(value, where, identifier=identifier)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            label = check(str(key), f"a key in {where}", identifier=True)
            _walk(item, f"{where}.{label[:60]}", keys, everywhere,
                  identifier=everywhere or label.lower().rsplit(":", 1)[-1] in keys)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _walk(item, f"{where}[{index}]", keys, everywhere, identifier=identifier)


#: parameter values that hold no text (the backstop skips them without an ABC check)
_NO_TEXT = frozenset({type(None), int, float, bool, bytes})


def check_statement_parameters(parameters: Any) -> None:
    """The database backstop: NUL and lone surrogates in any bound string (the two things a
    driver refuses with a 500 or SQLite stores silently). The edge has already applied the
    full policy; this catches a path that forgot to. Runs on every statement, so the common
    shapes (a tuple or dict of ASCII strings and scalars) take the short way: an ASCII
    string cannot hold a surrogate."""
    items: Iterable[Any]
    kind = type(parameters)
    if kind is tuple or kind is list:
        items = parameters
    elif kind is dict or isinstance(parameters, Mapping):
        items = parameters.values()
    elif isinstance(parameters, list | tuple):
        items = parameters
    else:
        return
    for item in items:
        if isinstance(item, str):
            if "\x00" in item or (not item.isascii() and _SURROGATE.search(item)):
                check(item, "a value sent to the database")
        elif type(item) not in _NO_TEXT and isinstance(item, Mapping | list | tuple):
            check_statement_parameters(item)
