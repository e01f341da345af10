"""The ACS steps branch acs-python made cheaper, old code next to new, in one process.

On a machine shared with other test runs a whole ACS through HTTP varies by ±10 % between
rounds, more than these steps weigh together; each step is therefore timed here against a copy
of the code it replaced (as it was on main 8bd4a4f), alternately, the best of 7 repeats, on
one core. Input: a form-encoded SAMLResponse of the bench's 200-group size (44 KB of XML,
~60 KB of base64) or of its one-group size, 200 (or 1) GUID group ids, the user's current
memberships all owned by the IdP (the steady state of a returning user).

    python bench/acs_python_bench.py               # 200 groups
    python bench/acs_python_bench.py --groups 1
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import timeit
import urllib.parse
import uuid
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from transom import textpolicy
from transom.connector import GroupsClaim, GroupsState
from transom.groups import _plan, _plan_rows, canonical_group_id, canonical_group_ids
from transom.models import SOURCE_IDP
from transom.saml.form import MAX_ACS_FIELDS, parse_form

# -- the code as it was ------------------------------------------------------------------------

_TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_IDENTIFIER_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def violation_before(value: str, *, identifier: bool) -> tuple[str, str] | None:
    if value.isprintable():
        return None
    surrogate = textpolicy._SURROGATE.search(value)
    if surrogate:
        return textpolicy.REASON_SURROGATE, f"U+{ord(surrogate.group()):04X}"
    control = (_IDENTIFIER_CONTROL if identifier else _TEXT_CONTROL).search(value)
    if control:
        return textpolicy.REASON_CONTROL, f"U+{ord(control.group()):04X}"
    return None


def parse_form_before(text: str) -> dict[str, list[str]]:
    fields = urllib.parse.parse_qs(text, keep_blank_values=True, max_num_fields=MAX_ACS_FIELDS)
    for name, values in fields.items():
        assert violation_before(name, identifier=True) is None
        for value in values:
            assert violation_before(value, identifier=False) is None
    return fields


def unknown_ids_before(rows: list[tuple[str, str, str, str | None]], ids: list[str]) -> list[str]:
    known = {row[2] for row in rows}
    return [i for i in ids if i not in known]


_IDENTIFIER = itemgetter(2)


def unknown_ids_now(rows: list[tuple[str, str, str, str | None]], ids: list[str]) -> list[str]:
    """groups._read's test before its second read."""
    known = set(map(_IDENTIFIER, rows))
    if known.issuperset(ids):
        return []
    return [i for i in ids if i not in known]


# -- timing ------------------------------------------------------------------------------------


def best(fn: Callable[[], Any], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--groups", type=int, default=200, choices=(1, 200))
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    ids = [str(uuid.uuid4()) for _ in range(args.groups)]
    xml_bytes = 44_000 if args.groups == 200 else 4_900
    body = urllib.parse.urlencode({"SAMLResponse": base64.b64encode(os.urandom(xml_bytes)).decode("ascii")})
    field = parse_form(body)["SAMLResponse"][0]
    rows = [(uuid.uuid4().hex, f"group {i}", g, SOURCE_IDP) for i, g in enumerate(ids)]
    wanted = set(ids)
    assert parse_form(body) == parse_form_before(body)
    assert _plan(wanted, rows) == _plan_rows(wanted, rows)
    assert canonical_group_ids(ids) == list(dict.fromkeys(canonical_group_id(i) for i in ids))
    steps: dict[str, tuple[Callable[[], Any], Callable[[], Any], int]] = {
        "ACS form: parse + input policy": (lambda: parse_form_before(body), lambda: parse_form(body), 20),
        "  of which the policy on SAMLResponse": (
            lambda: violation_before(field, identifier=False), lambda: textpolicy.violation(field, identifier=False),
            50),
        "group ids: canonical, each once": (
            lambda: list(dict.fromkeys(canonical_group_id(i) for i in ids)), lambda: canonical_group_ids(ids), 2000),
        "group read: ids not yet known": (
            lambda: unknown_ids_before(rows, ids), lambda: unknown_ids_now(rows, ids), 2000),
        "group plan (steady state)": (lambda: _plan_rows(wanted, rows), lambda: _plan(wanted, rows), 2000),
        "GroupsClaim.present": (
            lambda: GroupsClaim(GroupsState.PRESENT, tuple(str(i) for i in ids)), lambda: GroupsClaim.present(ids),
            2000),
    }
    print(f"{args.groups} group(s), SAMLResponse field {len(field)} characters; microseconds, best of 7")
    before_total = now_total = 0.0
    for name, (before, now, number) in steps.items():
        old, new = best(before, number), best(now, number)
        if not name.startswith(" "):
            before_total += old
            now_total += new
        print(f"{name:40} {old:8.1f} -> {new:8.1f}  ({old / new:.1f}x)")
    print(f"{'sum per ACS':40} {before_total:8.1f} -> {now_total:8.1f}  (saved {before_total - now_total:.0f} us)")


if __name__ == "__main__":
    main()
