"""Engine and session factory. SQLite runs in WAL mode with ``synchronous=NORMAL`` and a
busy timeout (performance-notes: 4x faster commits, and concurrent writers wait instead
of failing).

SQLite has one writer, and every Transom transaction begins with ``BEGIN IMMEDIATE``. Writers
of this process queue on a lock per database file (``Database.transaction``) instead of
meeting in SQLite's busy handler, which sleeps in growing steps (up to 100 ms) between
retries: the lock hands the database to the next writer the moment the last one commits.
Other processes (CLI, a second worker) still meet this process in the busy handler.

A read that must not queue behind the writers (an SSO callback checking its login state
before the network calls) runs in ``Database.read``: on SQLite a deferred ``BEGIN`` (a WAL
snapshot, no writer lock, no ``BEGIN IMMEDIATE``); on both engines a statement that is not a
``SELECT`` fails there, and the unit is rolled back, never committed.

What a unit costs (docs/performance.md, "Cheaper units of work"): the login hot path runs
three units per login, so their fixed price counts as much as their statements.

* No engine event listeners: the read-only guard, the text-policy backstop (every
  statement's parameters, docs/security.md) and SQLite's ``BEGIN`` / ``BEGIN IMMEDIATE`` run
  in the engine's dialect (:class:`_Guarded`, ``do_execute`` and ``do_begin``), because any
  connection event turns on SQLAlchemy's event dispatch for every statement and unit. The
  ``BEGIN`` goes to the driver connection, not through ``exec_driver_sql`` (a whole statement
  execution per unit); a failure is wrapped by SQLAlchemy like any statement's, so a locked
  database is still an outage (503).
* ``Database.read`` and ``Database.core_transaction`` hand out a Core ``Connection``, for
  code that runs Core statements only (the callback's check, the OIDC login start): an ORM
  ``Session`` costs more than the statements such a unit runs. ``Database.transaction``
  keeps the ``Session`` for everything else.
* :func:`core` gives a unit's hot Core statements the session's ``Connection``:
  ``Session.execute`` adds its own layer to each statement.
* The backstop's common case (ASCII strings in a tuple or dict) is the short way through it.
* The pool's reset on return already skips its ROLLBACK after a unit that committed or rolled
  back (SQLAlchemy knows the transaction was reset); PostgreSQL keeps ``pool_pre_ping``: one
  round trip per checkout buys a request that does not fail on a connection the server
  dropped while it sat in the pool.

WAL checkpoints run in a background thread (``_Checkpointer``), not inside a login's COMMIT:
SQLite's automatic checkpoint copies the WAL into the database file and fsyncs it as part of
whichever commit crosses the threshold, which made that login 5-10x slower than its
neighbours (bench/group_sync_bench.py p95). The automatic threshold stays as a high backstop
for processes that run no checkpointer.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from transom.errors import ServiceUnavailable
from transom.textpolicy import check_statement_parameters

#: pages; the automatic checkpoint is only a backstop (see the module doc)
AUTO_CHECKPOINT_PAGES = 10_000
#: how often the background checkpointer looks for new commits
CHECKPOINT_INTERVAL_SECONDS = 0.5

#: connection execution option of a ``Database.read`` unit
READ_ONLY = "transom_read_only"

#: as long as SQLite's busy timeout: a writer waits this long before "database is locked"
WRITER_WAIT_SECONDS = 30.0

_writer_locks: dict[str, threading.Lock] = {}
_writer_locks_guard = threading.Lock()


def _writer_lock(url: str) -> threading.Lock:
    """The process-wide writer lock of one SQLite database. A plain ``Lock``, not an
    ``RLock``: FastAPI enters and exits a yield dependency (``get_db``) on different pool
    threads, and only a ``Lock`` may be released by another thread. No code path opens a
    transaction inside another one on the same database (they would already wait on each
    other in SQLite); the bounded wait turns such a bug into an error, not a hang."""
    with _writer_locks_guard:
        return _writer_locks.setdefault(url, threading.Lock())


#: SQLite reports bugs (a missing table, bad SQL) as OperationalError too; those stay 500s
_SQLITE_BUGS = ("no such table", "no such column", "syntax error", "has no column")


def unavailable_error(exc: SQLAlchemyError) -> ServiceUnavailable | None:
    """A :class:`ServiceUnavailable` when ``exc`` means the database cannot serve right now
    (refused or lost connection, pool exhausted, locked past the wait), else ``None``. Logs
    nothing itself: the error carries the driver's error class as ``log_detail`` into the
    request's one refusal line (transom.observe), without a traceback: an outage must not
    write a traceback per request."""
    down = isinstance(exc, OperationalError | InterfaceError | PoolTimeout) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated)
    if down and any(bug in str(exc.orig if isinstance(exc, DBAPIError) else exc) for bug in _SQLITE_BUGS):
        down = False
    if not down:
        return None
    cause = type(exc.orig).__name__ if isinstance(exc, DBAPIError) and exc.orig is not None else type(exc).__name__
    return ServiceUnavailable("the database is unavailable; nothing was changed, retry shortly",
                              log_detail=f"error={cause}")


class ReadOnlyViolation(RuntimeError):
    """A statement other than a read in a ``Database.read`` unit: a bug, never a client's doing."""


def core(db: Session | Connection) -> Connection:
    """The ``Connection`` of a unit, for its hot Core statements: ``Session.execute`` adds
    its own layer (bind lookup, execution options, the ORM plugin check) to every statement,
    about 40 % over ``Connection.execute`` on SQLite. Same transaction, same statement
    events; a Core statement never autoflushes through the session either."""
    return db if isinstance(db, Connection) else db.connection()


def _guard(statement: str, context: Any) -> None:
    """The read-only unit's guard (see :meth:`Database.read`)."""
    if (context is not None and context.execution_options.get(READ_ONLY)
            and statement.lstrip()[:6].upper() not in ("SELECT", "BEGIN")):
        raise ReadOnlyViolation(f"a read-only unit may only read: {statement.lstrip()[:40]!r}")


class _Guarded(DefaultDialect):
    """The statement checks, in the dialect's own ``do_execute`` family, which every
    statement SQLAlchemy sends goes through (single, executemany, insertmanyvalues batches,
    no parameters): the read-only guard, and the text-policy backstop on every statement's
    parameters (docs/security.md). As an engine event listener they cost more than the
    checks: any connection event turns on SQLAlchemy's event path (before/after execute,
    before/after cursor execute, begin, commit, rollback dispatch) for every statement and
    unit (bench/db_units_bench.py: ~7 % of an in-process login)."""

    # methods only (no slots, no state): the engine's dialect instance takes this class (make_engine)
    __slots__ = ()
    supports_statement_cache = True

    def do_execute(self, cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
        _guard(statement, context)
        check_statement_parameters(parameters)
        super().do_execute(cursor, statement, parameters, context)  # type: ignore[no-untyped-call]

    def do_executemany(self, cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
        _guard(statement, context)
        for params in parameters:
            check_statement_parameters(params)
        super().do_executemany(cursor, statement, parameters, context)  # type: ignore[no-untyped-call]

    def do_execute_no_params(self, cursor: Any, statement: str, context: Any = None) -> None:
        _guard(statement, context)
        super().do_execute_no_params(cursor, statement, context)  # type: ignore[no-untyped-call]


class _SQLite(_Guarded, SQLiteDialect_pysqlite):
    __slots__ = ()
    #: SQLAlchemy reads it from each dialect class's own namespace: without it, no statement cache
    supports_statement_cache = True

    def do_begin(self, dbapi_connection: Any) -> None:
        # Writers serialise at BEGIN instead of failing on lock upgrade mid-transaction; a
        # read-only unit takes a snapshot and no lock (Database.read marks its connection).
        # Sent on the driver connection: through exec_driver_sql it cost a whole statement
        # execution per unit. A failure is wrapped by SQLAlchemy like any statement's
        # ("database is locked" stays an outage: 503).
        read_only = dbapi_connection.info.get(READ_ONLY)
        dbapi_connection.driver_connection.execute("BEGIN" if read_only else "BEGIN IMMEDIATE")


class _PostgreSQL(_Guarded, PGDialect_psycopg):
    __slots__ = ()
    supports_statement_cache = True


#: the dialects Transom runs on, and the same with the checks built in
_GUARDED_DIALECTS: dict[type[Any], type[Any]] = {SQLiteDialect_pysqlite: _SQLite, PGDialect_psycopg: _PostgreSQL}


def _parameter_backstop(engine: Engine) -> None:
    """Another driver: the same checks as engine events (slower, same guarantees)."""

    @event.listens_for(engine, "before_cursor_execute")
    def _check(conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
               executemany: bool) -> None:
        if conn.get_execution_options().get(READ_ONLY) and statement.lstrip()[:6].upper() not in ("SELECT", "BEGIN"):
            raise ReadOnlyViolation(f"a read-only unit may only read: {statement.lstrip()[:40]!r}")
        for params in parameters if executemany else (parameters,):
            check_statement_parameters(params)

    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")


def make_engine(url: str, **kwargs: Any) -> Engine:
    engine = _make_engine(url, **kwargs)
    guarded = _GUARDED_DIALECTS.get(type(engine.dialect))
    if guarded is not None:
        # the engine's own dialect instance, given the subclass with the checks (its state,
        # set up by create_engine, is kept: the subclasses add methods only)
        engine.dialect.__class__ = guarded
    else:
        _parameter_backstop(engine)
    return engine


def _make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, decide when transactions begin, so that
            # BEGIN IMMEDIATE (_SQLite.do_begin) takes the write lock up front.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute(f"PRAGMA wal_autocheckpoint={AUTO_CHECKPOINT_PAGES}")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


class _Checkpointer:
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` off the request path after commits. PASSIVE
    never waits for readers or writers, so it cannot stall a login; frames still in use are
    simply left for the next round."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_guard = threading.Lock()
        self.completed = 0

    def committed(self) -> None:
        self._dirty.set()
        if self._thread is None:
            with self._start_guard:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="transom-wal-checkpoint", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(CHECKPOINT_INTERVAL_SECONDS):
            if not self._dirty.is_set():
                continue
            self._dirty.clear()
            try:
                raw = self._engine.raw_connection()
                try:
                    raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
                finally:
                    raw.close()
                self.completed += 1
            except Exception:  # noqa: S112 - best effort; the automatic checkpoint is the backstop
                continue

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = _writer_lock(url) if url.startswith("sqlite") else None
        self.checkpointer = _Checkpointer(self.engine) if self._writer is not None else None

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: committed when the block ends, rolled back on any error. On
        SQLite the process's writer lock is held for the whole unit (see the module doc)."""
        with self._writer_held(), self.sessions() as session, session.begin():
            yield session

    @contextmanager
    def core_transaction(self) -> Iterator[Connection]:
        """:meth:`transaction` on a Core ``Connection`` instead of an ORM ``Session``, for
        code that only runs Core statements (a login start): the same writer lock, ``BEGIN
        IMMEDIATE``, commit and rollback, without the session's own bookkeeping."""
        with self._writer_held(), self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def _writer_held(self) -> Iterator[None]:
        writer = self._writer
        if writer is None:
            yield
            return
        if not writer.acquire(timeout=WRITER_WAIT_SECONDS):
            raise OperationalError("BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked"))
        try:
            yield
        finally:
            writer.release()
        assert self.checkpointer is not None
        self.checkpointer.committed()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only unit on a Core ``Connection`` (its readers run Core statements only):
        one snapshot, rolled back at the end. On SQLite a deferred ``BEGIN`` without the
        process's writer lock, so it never queues behind a login's transaction (WAL readers
        do not block the writer, nor it them). A statement other than a ``SELECT`` in it
        raises :class:`ReadOnlyViolation`."""
        with self.engine.connect() as conn:
            conn.execution_options(**{READ_ONLY: True})  # the statements' guard
            marks = conn.connection.info  # the DBAPI connection's: SQLite's do_begin reads it
            marks[READ_ONLY] = True
            try:
                conn.begin()
                try:
                    yield conn
                finally:
                    conn.rollback()
            finally:
                marks.pop(READ_ONLY, None)

    def dispose(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.engine.dispose()
