"""Is this error the database being out of reach (down, restarting, the network to it cut)?

Such a request is not the client's fault and not a bug: it is answered 503 with Retry-After, and the
connection pools recover by themselves once the database is back (a dead connection is discarded on
its first failure). Everything else stays a 500.
"""

from __future__ import annotations

import errno

import asyncpg
from sqlalchemy import exc as sa_exc

RETRY_AFTER_S = 5

_UNREACHABLE: tuple[type[BaseException], ...] = (
    ConnectionError,  # refused, reset, aborted, broken pipe
    TimeoutError,
    asyncpg.PostgresConnectionError,  # class 08: connection failure, rejection, does not exist
    asyncpg.CannotConnectNowError,  # starting up or shutting down
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,  # "connection is closed" while in use
    sa_exc.TimeoutError,  # no pooled connection came free
)


_NO_ROUTE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ETIMEDOUT, errno.ECONNREFUSED}


def database_unreachable(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it: SQLAlchemy wraps the driver's errors) says so."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, _UNREACHABLE) or (isinstance(e, OSError) and e.errno in _NO_ROUTE):
            return True
        todo += [getattr(e, "orig", None), e.__cause__, e.__context__]
    return False
