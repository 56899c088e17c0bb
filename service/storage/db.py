"""The database: engine construction, and the one place a transaction is opened and retried."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
from asyncpg.exceptions import InterfaceError as AsyncpgInterfaceError
from asyncpg.exceptions import InternalClientError
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import InterfaceError as SQLAlchemyInterfaceError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import QueuePool
from sqlalchemy.util import greenlet_spawn

from service.retry import backoff

T = TypeVar("T")
log = logging.getLogger("relbank.database")

# Deadlock detected, serialization failure: the transaction did nothing and may run again.
_RETRYABLE_SQLSTATES = {"40P01", "40001"}
# Besides class 08 (connection exception): terminated by an administrator (pg_terminate_backend),
# crash or shutdown, not accepting connections yet, too many connections.
_LOST_SQLSTATES = {"57P01", "57P02", "57P03", "53300"}
ATTEMPTS = 5
# A pooled connection idle for longer than this is pinged before use (see `make_engine`).
PING_IDLE_SECONDS = 1.0


IDLE_IN_TRANSACTION_MS = 60_000


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An engine whose pool pings a connection before use only when it has sat idle for over
    PING_IDLE_SECONDS (a restarted or vanished PostgreSQL, a server-side idle timeout), instead
    of before every use as `pool_pre_ping` does: on asyncpg that ping is a BEGIN, a query and a
    ROLLBACK, three round trips more than a one-row read needs. A connection that breaks while
    in steady use fails its statement; `Database.transaction` retries that."""
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_args={
            "server_settings": {
                "application_name": "relbank",
                # An instance frozen mid-transaction (SIGSTOP, a paused VM) must not hold its
                # locks for ever: the others would wait on them. Its transaction is aborted, and
                # when it wakes the stored offsets refuse its stale batch.
                "idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_MS),
            }
        },
    )
    pool = engine.sync_engine.pool
    dialect = engine.sync_engine.dialect

    def idle_from_now(_: object, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def ping_when_idle(dbapi_connection: Any, record: Any, _: object) -> None:
        if time.monotonic() - record.info.get("idle_since", 0.0) <= PING_IDLE_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool replaces the connection with a new one (whose failure is raised).
            raise DisconnectionError(f"a pooled connection no longer answers: {exc}") from exc

    event.listen(pool, "connect", idle_from_now)
    event.listen(pool, "checkin", idle_from_now)
    event.listen(pool, "checkout", ping_when_idle)
    return engine


async def driver_connection(conn: AsyncConnection) -> Any:
    """The asyncpg connection under `conn`, its transaction begun (the driver begins it with the
    first statement): for COPY, and for reads of many rows without SQLAlchemy's row objects."""
    raw: Any = (await conn.get_raw_connection()).driver_connection
    if not raw.is_in_transaction():
        await conn.execute(text("SELECT 1"))
    return raw


_STAGING = "relbank.staging"  # the key of a session's `_Staging` in the connection's info


class _Staging:
    """The staging tables of one session (pooled connection): those a committed transaction
    made, and those the transaction in progress made (gone again if it rolls back)."""

    __slots__ = ("held", "made")

    def __init__(self) -> None:
        self.held: set[str] = set()
        self.made: set[str] = set()

    def settle(self, *, committed: bool) -> None:
        if committed:
            self.held |= self.made
        self.made.clear()


def _staging(conn: AsyncConnection) -> _Staging:
    # The connection's `info` lives as long as its session: a new session starts with none.
    staging: _Staging | None = conn.info.get(_STAGING)
    if staging is None:
        staging = conn.info[_STAGING] = _Staging()
    return staging


async def stage(
    conn: AsyncConnection, table: str, columns: str, records: Sequence[tuple[Any, ...]]
) -> Any:
    """COPY `records` into `table`, a temporary table of the session (`columns` its column
    definitions; created on first use, emptied by every commit), in the caller's transaction,
    for one statement to take the batch from. Returns the driver connection.

    For a batch this beats a JSON parameter read with `json_to_recordset` by about a fifth, for
    PostgreSQL and Python alike (measured; issue 8). The table is made (`IF NOT EXISTS`) until a
    transaction of `Database.transaction` that made it has committed: a rolled-back transaction
    takes a table it made along."""
    raw = await driver_connection(conn)
    staging = _staging(conn)
    try:
        if table not in staging.held:
            await raw.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {table} ({columns}) ON COMMIT DELETE ROWS"
            )
            staging.made.add(table)
        await raw.copy_records_to_table(table, records=records)
    except asyncpg.PostgresError as exc:
        raise as_dbapi_error(f"COPY {table}", exc) from exc
    return raw


def as_dbapi_error(what: str, exc: asyncpg.PostgresError) -> DBAPIError:
    """An asyncpg error as SQLAlchemy would raise it, so callers tell refused data (22xxx,
    23xxx) and retryable failures by sqlstate alike."""
    return DBAPIError(what, None, exc)


def sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, the driver error SQLAlchemy wraps, and the errors each was raised from."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        orig = getattr(e, "orig", None)
        todo += [orig if isinstance(orig, BaseException) else None, e.__cause__]


def connection_lost(exc: BaseException) -> bool:
    """PostgreSQL could not be reached or the connection broke: the error says nothing about the
    data, and a transaction that had not reached its commit changed nothing."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    for e in _chain(exc):
        # OSError covers refused, reset, timed out and a missing Unix socket while connecting.
        if isinstance(e, OSError | SQLAlchemyInterfaceError | InternalClientError):
            return True
        if isinstance(e, AsyncpgInterfaceError) and "connection" in str(e):
            return True
        state = getattr(e, "sqlstate", None)
        if isinstance(state, str) and (state.startswith("08") or state in _LOST_SQLSTATES):
            return True
    return False


def unavailable(exc: BaseException) -> bool:
    """The database cannot serve now (down, unreachable, or every connection busy): worth trying
    again a little later."""
    return connection_lost(exc) or any(isinstance(e, PoolTimeoutError) for e in _chain(exc))


def refused_data(exc: DBAPIError) -> bool:
    """Data exception (22xxx) or integrity violation (23xxx): this data, whenever tried, fails."""
    state = sqlstate(exc)
    return state is not None and state[:2] in ("22", "23")


@asynccontextmanager
async def _dropped_when_lost(conn: AsyncConnection) -> AsyncIterator[None]:
    """A connection that broke is not given back to the pool: the driver may not have noticed
    (asyncpg's "cannot switch to state" leaves it open and unusable)."""
    try:
        yield
    except Exception as exc:
        if connection_lost(exc) and not conn.invalidated:
            await conn.invalidate(exc)
        raise


class Database:
    """An engine and the retry policy every transaction runs under."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # Reads in flight at once: no more than the pool keeps. Past that a read waits for a
        # pooled connection rather than open one of the pool's overflow, which is closed again
        # on its return: under a burst of reads that churn (a new PostgreSQL backend, its
        # prepared statements made again, per read) costs more than the reads themselves.
        pool = engine.pool
        self._read_slots = asyncio.Semaphore(pool.size() if isinstance(pool, QueuePool) else 5)

    @classmethod
    def connect(cls, url: str, *, pool_size: int = 10) -> Database:
        return cls(make_engine(url, pool_size=pool_size))

    async def transaction(
        self, work: Callable[[AsyncConnection], Awaitable[T]], *, attempts: int = ATTEMPTS
    ) -> T:
        """Run `work` in one transaction, again from the start when it changed nothing: PostgreSQL
        chose it as a deadlock or serialization victim, or the connection could not be made or
        broke before the commit. A connection lost during the commit itself is not retried (the
        commit may have happened); it is raised for the caller to answer."""
        for attempt in range(1, attempts + 1):
            committing = False
            try:
                async with self.engine.connect() as conn, _dropped_when_lost(conn):
                    staging, committed = _staging(conn), False
                    try:
                        async with conn.begin():
                            result = await work(conn)
                            committing = True  # leaving the block commits
                        committed = True
                    finally:
                        staging.settle(committed=committed)
                return result
            except Exception as exc:
                if attempt == attempts:
                    raise
                if isinstance(exc, DBAPIError) and sqlstate(exc) in _RETRYABLE_SQLSTATES:
                    await asyncio.sleep(random.uniform(0, 0.01 * 2**attempt))
                elif connection_lost(exc) and not committing:
                    log.info(
                        "database: connection lost before the commit (%s); trying again",
                        type(exc).__name__,
                    )
                    await asyncio.sleep(backoff(attempt, base=0.05, cap=1.0))
                else:
                    raise
        raise AssertionError("unreachable")

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads only, in autocommit: at READ COMMITTED every statement has a
        snapshot of its own in a transaction too, and this saves the BEGIN and ROLLBACK round
        trips (half the time of a read by primary key). Making the connection is retried like a
        transaction's."""
        async with self._read_slots:
            conn = await self._connect()
            try:
                async with _dropped_when_lost(conn):
                    yield await conn.execution_options(isolation_level="AUTOCOMMIT")
            finally:
                await conn.close()

    @asynccontextmanager
    async def driver(self) -> AsyncIterator[Any]:
        """The driver's own connection (asyncpg's), pooled, for statements run outside any
        transaction: nothing to set on it or to reset, as `reading` must for SQLAlchemy. It is
        checked out of the pool bare, without a SQLAlchemy connection around it, which would
        double the cost of checking it out and in again."""
        async with self._read_slots:
            pooled = await self._retried(
                lambda: greenlet_spawn(self.engine.sync_engine.raw_connection)
            )
            try:
                yield pooled.driver_connection
            except Exception as exc:
                if connection_lost(exc):  # as `_dropped_when_lost`
                    await greenlet_spawn(pooled.invalidate, exc)
                raise
            finally:
                await greenlet_spawn(pooled.close)

    async def _connect(self) -> AsyncConnection:
        return await self._retried(self.engine.connect)

    @staticmethod
    async def _retried(connect: Callable[[], Awaitable[T]], attempts: int = ATTEMPTS) -> T:
        """A connection from the pool, tried again while the database cannot be reached."""
        for attempt in range(1, attempts + 1):
            try:
                return await connect()
            except Exception as exc:
                if attempt == attempts or not connection_lost(exc):
                    raise
                await asyncio.sleep(backoff(attempt, base=0.05, cap=1.0))
        raise AssertionError("unreachable")

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncConnection]:
        """A connection in one read-only, repeatable-read transaction: every read sees the same
        snapshot, and PostgreSQL refuses any write made through it. Rolled back on release."""
        async with self.engine.connect() as conn:
            await conn.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
            yield conn

    async def ping(self) -> None:
        async with self.reading() as conn:
            await conn.execute(text("SELECT 1"))

    def connections(self) -> tuple[int, int]:
        """Connections of the pool (in use, idle)."""
        pool = self.engine.pool
        if isinstance(pool, QueuePool):
            return pool.checkedout(), pool.checkedin()
        return 0, 0

    async def dispose(self) -> None:
        await self.engine.dispose()
