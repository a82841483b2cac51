"""Engine, transactions and schema migrations for SQLite and PostgreSQL.

SQLite: every write transaction starts with ``BEGIN IMMEDIATE`` so writers
queue on the database lock (busy timeout) instead of failing when a read
transaction tries to upgrade; WAL lets readers run beside the writer. Inside
one process, writers also queue on a Python lock: SQLite's busy handler polls
with sleeps of up to 100 ms, which under 20 concurrent writers cost seconds.
PostgreSQL: READ COMMITTED plus conditional updates and unique constraints;
deadlocks and serialization failures are retried by ``Database.write``.
A pooled connection is pinged only when it sat idle for ``IDLE_PING_S``
(catches a database restart while the service was quiet) instead of on
every checkout, which cost one round trip per transaction.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)
T = TypeVar("T")

MIGRATIONS = Path(__file__).parent / "migrations"
_READONLY = "lumenal_readonly"
_RETRY_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock detected
IDLE_PING_S = 10.0


def make_engine(url: str, pool_size: int = 20) -> sa.Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url, pool_size)
    engine = sa.create_engine(url, pool_size=pool_size, max_overflow=10, pool_recycle=1800)
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: sa.Engine) -> None:
    """Ping a connection at checkout only when it was idle for ``IDLE_PING_S``.

    A connection used moments ago is almost surely alive; a dead one that slips
    through (database restarted under load) fails its request once and makes
    SQLAlchemy recycle the whole pool, as for any request in flight.
    """
    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_conn, record) -> None:  # noqa: ANN001
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn, record, _proxy) -> None:  # noqa: ANN001
        if time.monotonic() - record.info.get("idle_since", time.monotonic()) < IDLE_PING_S:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # noqa: BLE001 - any failure: let the pool open a fresh connection
            raise sa.exc.DisconnectionError(str(exc)) from exc


def _sqlite_engine(url: str, pool_size: int) -> sa.Engine:
    path = sa.engine.make_url(url).database
    if path and path != ":memory:":
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, pool_size=pool_size, max_overflow=10,
                              connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record) -> None:  # noqa: ANN001
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=30000"):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        readonly = conn.get_execution_options().get(_READONLY, False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

    return engine


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest migration (safe to call on every start)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # one migrator at a time across replicas
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(471100)"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def _retryable(exc: DBAPIError) -> bool:
    code = getattr(exc.orig, "sqlstate", None)
    if code in _RETRY_SQLSTATES:
        return True
    return isinstance(exc, OperationalError) and "database is locked" in str(exc.orig)


class Database:
    """Sessions with the right transaction mode; ``write`` retries transient conflicts."""

    def __init__(self, url: str, pool_size: int = 20) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock = threading.Lock() if self.engine.dialect.name == "sqlite" else None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> None:
        migrate(self.engine)

    def write(self, fn: Callable[[Session], T], attempts: int = 5) -> T:
        """Run ``fn`` in one write transaction, retrying deadlocks/serialization failures."""
        return self._retry(lambda: self._run(fn), attempts)

    def write_conn(self, fn: Callable[[sa.Connection], T], attempts: int = 5, durable: bool = True) -> T:
        """Like ``write`` on a Core connection: no ORM session to build, for the hot path.

        ``durable=False`` (PostgreSQL) commits without waiting for the WAL flush,
        which costs milliseconds: a database crash may then lose the last few
        hundred milliseconds of such transactions (whole, never half of one). Later
        durable commits flush them too. SQLite (WAL, synchronous=NORMAL) never waits.
        """
        return self._retry(lambda: self._run_conn(fn, durable), attempts)

    def _retry(self, run: Callable[[], T], attempts: int) -> T:
        for attempt in range(1, attempts + 1):
            try:
                if self._write_lock is None:
                    return run()
                with self._write_lock:
                    return run()
            except DBAPIError as exc:
                if attempt == attempts or not _retryable(exc):
                    raise
                log.warning("transaction conflict, retrying", extra={"attempt": attempt, "error": str(exc.orig)})
                time.sleep(0.01 * 2 ** attempt)
        raise AssertionError("unreachable")

    def _run(self, fn: Callable[[Session], T]) -> T:
        with self.sessions.begin() as s:
            return fn(s)

    def _run_conn(self, fn: Callable[[sa.Connection], T], durable: bool) -> T:
        with self.engine.begin() as conn:
            if not durable and self.dialect == "postgresql":
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO off")
            return fn(conn)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction (plain BEGIN on SQLite: does not block writers)."""
        with self.sessions() as s:  # close() ends the transaction and keeps loaded objects usable
            s.connection(execution_options={_READONLY: True})
            yield s

    @contextmanager
    def read_conn(self) -> Iterator[sa.Connection]:
        """A read-only Core connection: cheaper than a Session for hot single-statement reads."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(**{_READONLY: True})
            with conn.begin():
                yield conn

    def healthy(self) -> bool:
        with self.read() as s:
            return s.execute(sa.text("SELECT 1")).scalar() == 1

    def dispose(self) -> None:
        self.engine.dispose()
