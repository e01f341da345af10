"""The python3-saml time patch (issue 13): ``OneLogin_Saml2_Utils.parse_SAML_to_time`` runs
``datetime.strptime`` (up to three times) on every SAML time, about 15 times per ACS between
the library and Transom's own checks (``transom.saml.common.saml_time`` calls it too).

:func:`parse_saml_time` answers the one form IdPs send, ``YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z``
with ASCII digits and a valid date and time, by integer arithmetic, and hands everything
else to the stock function, so what the stock function refuses is refused with its own
error and what it accepts in other forms (lower-case ``t``/``z``, one-digit fields, long
fractions, no ``Z``, a trailing newline) gets its own answer. On that one form both return
the same whole seconds since the epoch (UTC, fraction dropped):
tests/test_saml_library_patches.py checks it on generated strings of every nearby shape.
No new format is accepted: ``datetime.fromisoformat`` was not used because it accepts far
more (offsets, a space for ``T``, week dates).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from onelogin.saml2.utils import OneLogin_Saml2_Utils

#: python3-saml's own parser, kept for the fallback and the equivalence test
STOCK_PARSE_SAML_TO_TIME: Callable[[str], int] = OneLogin_Saml2_Utils.parse_SAML_to_time
_COMMON_FORM = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]{1,6})?Z")
_EPOCH = datetime(1970, 1, 1)
_SECOND = timedelta(seconds=1)
_patch_lock = threading.Lock()
_patched = False


def parse_saml_time(timestr: str) -> int:
    """Same contract as ``OneLogin_Saml2_Utils.parse_SAML_to_time``."""
    match = _COMMON_FORM.fullmatch(timestr) if type(timestr) is str else None
    if match is not None:
        year, month, day, hour, minute, second = map(int, match.groups())
        try:
            moment = datetime(year, month, day, hour, minute, second)
        except ValueError:
            pass  # the stock function raises its own error for this one
        else:
            return (moment - _EPOCH) // _SECOND
    return STOCK_PARSE_SAML_TO_TIME(timestr)


def install_time_parse() -> None:
    """Apply the patch once per process."""
    global _patched
    with _patch_lock:
        if _patched:
            return
        OneLogin_Saml2_Utils.parse_SAML_to_time = staticmethod(parse_saml_time)
        _patched = True


install_time_parse()
