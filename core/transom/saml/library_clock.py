"""python3-saml's clock, moved for one validation so that the configured clock skew applies
to every SAML time (issue 12, case 5; docs/saml.md "clock skew").

The library grants the Conditions a fixed 300 s of drift but compares the bearer
SubjectConfirmationData ``NotOnOrAfter``/``NotBefore`` and the ``SessionNotOnOrAfter`` with
none at all, so a confirmation that expired 30 s ago was refused although
``clock_skew_seconds`` (120 s by default) promises otherwise. python3-saml reads the time
only through ``OneLogin_Saml2_Utils.now()``; that function is replaced once, at import, by
one that answers a per-thread stopped time while :func:`library_clock` is active (the real
time otherwise, so every other use of the library is unchanged). The offset puts the
library's clock just inside the window of the first bearer confirmation, by at most the
300 s it already grants the Conditions.
``response._after_library`` then checks every time itself, against the real clock and the
configured skew: the move widens nothing that Transom accepts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from onelogin.saml2.constants import OneLogin_Saml2_Constants
from onelogin.saml2.utils import OneLogin_Saml2_Utils

from transom.saml.common import BEARER, SAML, saml_time

#: the drift python3-saml grants the Conditions; the clock never moves further than this
MAX_MOVE_SECONDS: int = OneLogin_Saml2_Constants.ALLOWED_CLOCK_DRIFT

_state = threading.local()
_stock_now = OneLogin_Saml2_Utils.now


def _moved_now() -> int:
    frozen: int | None = getattr(_state, "frozen", None)
    return int(_stock_now()) if frozen is None else frozen


OneLogin_Saml2_Utils.now = staticmethod(_moved_now)


def library_clock_offset(root: Any, now: int) -> int:
    """Seconds to move the library's clock for this Response (``root``) at ``now``: into the
    window of its first bearer SubjectConfirmationData and before any SessionNotOnOrAfter,
    by at most :data:`MAX_MOVE_SECONDS`; 0 when ``now`` is already inside."""
    path = f"{SAML}Assertion/{SAML}Subject/{SAML}SubjectConfirmation"
    bearer = [c for c in root.iterfind(path) if c.get("Method") == BEARER]
    data = bearer[0].find(f"{SAML}SubjectConfirmationData") if bearer else None
    ends = [saml_time(s.get("SessionNotOnOrAfter")) for s in root.iterfind(f"{SAML}Assertion/{SAML}AuthnStatement")]
    if data is not None:
        ends.append(saml_time(data.get("NotOnOrAfter")))
    known_ends = [end for end in ends if end is not None]
    start = saml_time(data.get("NotBefore")) if data is not None else None
    if known_ends and now >= min(known_ends):
        return max(min(known_ends) - 1 - now, -MAX_MOVE_SECONDS)
    if start is not None and now < start:
        return min(start - now, MAX_MOVE_SECONDS)
    return 0


@contextmanager
def library_clock(offset: int) -> Iterator[None]:
    """Run python3-saml with its clock moved by ``offset`` seconds and *stopped*, in this
    thread only. Stopped, because the offset puts the clock one second inside the window:
    a clock that kept running would leave it again when the validation (xmlsec on a loaded
    host) takes longer than that, and a confirmation inside the skew would be refused."""
    _state.frozen = int(_stock_now()) + offset
    try:
        yield
    finally:
        _state.frozen = None
