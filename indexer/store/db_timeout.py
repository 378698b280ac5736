"""A PostgreSQL that accepts connections but never answers costs a bounded time, not forever.

A server stopped by SIGSTOP, a hung proxy or a half-open network path all look the same to a
client: the kernel completes the TCP handshake (or has already), bytes go out, nothing comes
back, and libpq would wait forever; keepalives and ``tcp_user_timeout`` do not help, because
the peer's kernel acknowledges everything. So every PostgreSQL connection the store opens is
bounded three ways by ``CLAPSEARCH_DB_TIMEOUT_S`` (``IndexerSettings.db_timeout_s``):

    connect_timeout    opening a connection (libpq's floor: 2 s)
    statement_timeout  the server abandons a statement that runs longer (it was given up on)
    round trip         client side: one exchange with the server (a statement, a fetch, a
                       commit, the pool's ping) that has not finished within the budget closes
                       the connection and raises ``psycopg.OperationalError``; SQLAlchemy sees
                       a closed connection, drops it from the pool, and the caller gets
                       ``store.database`` (503 with Retry-After in the API)

The round-trip bound wraps psycopg's I/O generators: its wait loop resumes them every 0.1 s
even when the socket stays silent, which is when the deadline is checked (a long result still
arriving is an answer, not a hang). 0 disables it all. Alembic migrations run under the same
bounds: raise the setting for a migration of a very large database.
"""

from __future__ import annotations

import math
import time
from typing import Any

from sqlalchemy import Engine, event


class _RoundTripTimeout(Exception):
    """Raised inside psycopg's wait loop when a round trip passes its deadline."""


def bounded_connect_args(timeout_s: float) -> dict[str, Any]:
    """libpq parameters for ``create_engine(connect_args=...)``: connect and statement budgets."""
    if timeout_s <= 0:
        return {}
    return {
        "connect_timeout": max(2, math.ceil(timeout_s)),
        "options": f"-c statement_timeout={int(timeout_s * 1000)}",
    }


def bound_round_trips(engine: Engine, timeout_s: float) -> None:
    """Open ``engine``'s psycopg connections with a client-side bound on every round trip."""
    if timeout_s <= 0:
        return
    connection_class = _bounded_connection_class(timeout_s)

    @event.listens_for(engine, "do_connect")
    def _connect(dialect, conn_rec, cargs, cparams):  # noqa: ARG001 (SQLAlchemy's signature)
        return connection_class.connect(*cargs, **cparams)


def _bounded_connection_class(timeout_s: float) -> Any:
    import psycopg

    class BoundedConnection(psycopg.Connection):
        def wait(self, gen, *args, **kwargs):
            try:
                return super().wait(_with_deadline(gen, time.monotonic() + timeout_s), *args, **kwargs)
            except _RoundTripTimeout:
                # The protocol state is unknown mid-exchange: the connection cannot be reused.
                self.pgconn.finish()
                raise psycopg.OperationalError(
                    f"the database did not answer within {timeout_s:g} s (CLAPSEARCH_DB_TIMEOUT_S); connection closed"
                ) from None

    return BoundedConnection


def _with_deadline(gen, deadline: float):
    """``gen`` (a psycopg I/O generator), raising ``_RoundTripTimeout`` once ``deadline`` passes."""
    try:
        state = next(gen)
        while True:
            ready = yield state
            if not ready and time.monotonic() > deadline:  # silent past the deadline (bytes flowing are an answer)
                gen.close()
                raise _RoundTripTimeout
            state = gen.send(ready)
    except StopIteration as done:
        return done.value
