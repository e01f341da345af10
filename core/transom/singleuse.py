"""The single-use marks of one SSO callback, checked first and spent exactly once.

A callback's marks are the OIDC login state, or SAML's replay-cache row of the assertion id
and the login state named by the signed InResponseTo. They are *checked*, then *spent*:

* OIDC checks its state in a read-only unit (``Database.read``: on SQLite no writer lock)
  before the code exchange, so an unknown state never reaches the IdP; the checked marks
  travel in the :class:`~transom.verified.VerifiedLogin`.
* SAML makes no network call after the signature checks (except a groups overage, below),
  so its check (:func:`transom.saml.replay.check_response`) runs inside the transaction that
  spends the marks, as its first statements (:class:`Check`): one database unit per ACS. A
  refusal by that check has written nothing yet and is rolled back with the transaction.

The marks are spent:

* as the first statements of the login's one transaction (:func:`transom.login.complete_login`),
  so a successful callback writes once;
* in a transaction of their own before a groups overage is looked up through the IdP's API,
  so a replayed state or assertion never reaches that API;
* when anything fails after the check (the IdP's error answer, the code exchange, a token
  check, a plugin's refusal, a refused login, a bug), in a transaction of their own before
  the refusal is answered: a refused login cannot be retried with the same state or
  assertion. (SAML, failing before any transaction ran its check: that transaction runs
  the check first and spends what it allows.)

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
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from transom.db import Database
from transom.errors import LoginRefused

log = logging.getLogger("transom.singleuse")

#: spends one mark inside the caller's transaction; raises ``LoginRefused`` when it was spent already
Mark = Callable[[Session], None]


@dataclass(frozen=True)
class Checked:
    """What a check made inside the spending transaction found: the marks to spend, the
    account they are scoped by, and where to send the browser afterwards."""

    marks: tuple[Mark, ...]
    account_id: str
    #: already checked to be a local path
    next_path: str | None


#: checks the marks as the first statements of the transaction that spends them; raises
#: ``LoginRefused`` (having only read) when they may not be spent
Check = Callable[[Session], Checked]


class SingleUse:
    """The marks of one callback. ``spent`` turns true once a transaction that spent them
    has committed; from then on :meth:`spend` does nothing.

    ``account_id``: the account the marks are scoped by, read by the check. A transaction
    that spends the marks as its first statements may use it instead of reading the account
    again: those statements are scoped by it and refuse when the account is gone (the login
    state's row goes with its account; the replay row's foreign key names it).

    :meth:`checked_when_spent`: marks not checked yet; every transaction that spends them
    runs ``check`` first (SAML), which supplies the marks, ``account_id`` and ``next_path``."""

    def __init__(self, *marks: Mark, account_id: str | None = None) -> None:
        #: ``None``: a check not run yet (``checked_when_spent``); ``()`` after it refused
        self._marks: tuple[Mark, ...] | None = marks
        self._check: Check | None = None
        self.account_id = account_id
        #: where the check run by :meth:`spend` sends the browser (``checked_when_spent`` only)
        self.next_path: str | None = None
        self.spent = False

    @classmethod
    def checked_when_spent(cls, check: Check) -> SingleUse:
        """Marks that ``check`` finds and checks inside the very transaction that spends
        them: no unit of their own before it."""
        single_use = cls()
        single_use._check, single_use._marks = check, None
        return single_use

    def spend(self, db: Session) -> str | None:
        """Spend every mark in ``db``'s transaction (its first statements; for
        ``checked_when_spent`` marks the check comes first); ``LoginRefused`` when the check
        refuses or a mark was spent already. Returns the account the spent marks are scoped
        by (``None``: spent already, or not known). The caller reports the commit with
        :meth:`committed`."""
        if self.spent:
            return None
        for mark in self._checked(db) if self._check is not None else self._marks or ():
            mark(db)
        return self.account_id

    def _checked(self, db: Session) -> tuple[Mark, ...]:
        """Run the check in ``db``'s transaction; its marks. Run again by every transaction
        that spends (a retried login transaction was rolled back), and until it passes there
        is nothing to spend after a failure: a refusal by the check spends nothing."""
        assert self._check is not None
        self._marks = ()
        checked = self._check(db)
        self._marks, self.account_id, self.next_path = checked.marks, checked.account_id, checked.next_path
        return checked.marks

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
            if not self.spent and self._marks != ():  # (): the check refused, nothing to spend
                self._spend_after_failure(database)
            raise

    def _spend_after_failure(self, database: Database) -> None:
        """Each mark in a savepoint of one transaction: a mark spent already (the replay
        or concurrent callback that caused the failure) does not keep the others from being
        spent. A database failure here is logged, never answered instead of the failure
        the person is waiting to see."""
        try:
            with database.transaction() as db:
                marks = self._marks
                if marks is None:  # failed before the check ran: check here (reads only)
                    try:
                        marks = self._checked(db)
                    except LoginRefused:
                        marks = ()  # the check's refusal spends nothing
                for mark in marks:
                    try:
                        with db.begin_nested():
                            mark(db)
                    except LoginRefused:
                        continue  # spent already
            self.spent = True
        except SQLAlchemyError as exc:
            log.warning("single-use marks of a failed callback not spent: %s", type(exc).__name__)
