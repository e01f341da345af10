"""The single-use marks of one SSO callback, checked first and spent exactly once.

A callback's marks are the OIDC login state, or SAML's replay-cache row of the assertion id
and the login state named by the signed InResponseTo. The verify step *checks* them in a
read-only unit (``Database.read``: on SQLite no writer lock) before its network calls, and
hands them on in the :class:`~transom.verified.VerifiedLogin`; they are then *spent*:

* as the first statements of the login's one transaction (:func:`transom.login.complete_login`),
  so a successful callback writes once;
* in a transaction of their own before a groups overage is looked up through the IdP's API,
  so a replayed state or assertion never reaches that API;
* when anything fails after the check (the IdP's error answer, the code exchange, a token
  check, a plugin's refusal, a refused login, a bug), in a transaction of their own before
  the refusal is answered: a refused login cannot be retried with the same state or
  assertion.

Each mark's statement refuses when the mark is spent already: the login state's ``DELETE``
must match exactly one row, the replay row's ``INSERT`` must not hit its primary key. Of two
callbacks racing with the same marks (both checked before either spent), one spends them
and the other is refused. A refusal *by the check* spends nothing: an unknown state has
nothing to spend, and a state presented from another browser stays usable by the browser
that started the login.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from transom.db import Database
from transom.errors import LoginRefused

log = logging.getLogger("transom.singleuse")

#: spends one mark inside the caller's transaction; raises ``LoginRefused`` when it was spent already
Mark = Callable[[Session], None]


class SingleUse:
    """The marks of one callback. ``spent`` turns true once a transaction that spent them
    has committed; from then on :meth:`spend` does nothing.

    ``account_id``: the account the marks are scoped by, read by the check. A transaction
    that spends the marks as its first statements may use it instead of reading the account
    again: those statements are scoped by it and refuse when the account is gone (the login
    state's row goes with its account; the replay row's foreign key names it)."""

    def __init__(self, *marks: Mark, account_id: str | None = None) -> None:
        self._marks = marks
        self.account_id = account_id
        self.spent = False

    def spend(self, db: Session) -> None:
        """Spend every mark in ``db``'s transaction (its first statements); ``LoginRefused``
        when one was spent already. The caller reports the commit with :meth:`committed`."""
        if self.spent:
            return
        for mark in self._marks:
            mark(db)

    def committed(self) -> None:
        """The transaction that ran :meth:`spend` has committed."""
        self.spent = True

    def spend_now(self, database: Database) -> None:
        """Spend them in a transaction of their own (before an IdP API call)."""
        if self.spent:
            return
        with database.transaction() as db:
            self.spend(db)
        self.spent = True

    @contextmanager
    def spent_on_failure(self, database: Database) -> Iterator[None]:
        """Whatever leaves the block with an exception, the marks are spent (unless they
        were already) before the exception goes on to be answered."""
        try:
            yield
        except Exception:
            if not self.spent:
                self._spend_after_failure(database)
            raise

    def _spend_after_failure(self, database: Database) -> None:
        """Each mark in a savepoint of one transaction: a mark spent already (the replay
        or concurrent callback that caused the failure) does not keep the others from being
        spent. A database failure here is logged, never answered instead of the failure
        the person is waiting to see."""
        try:
            with database.transaction() as db:
                for mark in self._marks:
                    try:
                        with db.begin_nested():
                            mark(db)
                    except LoginRefused:
                        continue  # spent already
            self.spent = True
        except SQLAlchemyError as exc:
            log.warning("single-use marks of a failed callback not spent: %s", type(exc).__name__)
