"""Open the metadata database by URL and bring its schema up to date (alembic).

    db = open_database("sqlite:///library/clapsearch.db")          # the embedded default
    db = open_database("postgresql+psycopg://user@host/clapsearch")  # a shared server
    with db.session() as s: ...

Opening runs ``alembic upgrade head`` first, so a database made by an older release is
migrated before anything reads it. SQLite runs in WAL mode, so a search can read while an
ingest writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from indexer.errors import DatabaseUnavailableError, StoreError, StoreMissingError, translate
from indexer.store.db_timeout import bound_round_trips, bounded_connect_args

MIGRATIONS = Path(__file__).with_name("migrations")


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at every WAL checkpoint; safe in WAL
    cursor.execute("PRAGMA foreign_keys=ON")  # ON DELETE CASCADE for segments
    cursor.execute("PRAGMA busy_timeout=30000")  # wait for another writer instead of failing
    cursor.close()


def make_engine(url: str, *, timeout_s: float = 0.0) -> Engine:
    """``timeout_s`` bounds PostgreSQL connects, statements and round trips (``db_timeout``);
    SQLite, a local file, waits for other writers by its busy timeout instead."""
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(url, pool_pre_ping=True, connect_args=bounded_connect_args(timeout_s))
    if engine.dialect.driver == "psycopg":
        bound_round_trips(engine, timeout_s)
    return engine


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply alembic migrations up to ``revision`` on ``engine``'s database."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


class Database:
    def __init__(self, url: str, engine: Engine):
        self.url = url
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on any error."""
        with self._sessions() as session, session.begin():
            yield session

    def close(self) -> None:
        self.engine.dispose()


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for other databases and in-memory SQLite)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[1] if "///" in url else ""
    return Path(path) if path and path != ":memory:" else None


def open_database(url: str, *, migrate: bool = True, create: bool = True, timeout_s: float = 0.0) -> Database:
    """``create=False`` (read-only commands): a SQLite file that does not exist raises
    ``StoreMissingError`` rather than leaving an empty database (and its folder) behind.
    ``timeout_s``: a PostgreSQL that stops answering costs this long, then ``store.database``."""
    path = sqlite_path(url)
    if not create and path is not None and not path.exists():
        raise StoreMissingError(
            f"nothing stored at {path.parent}: no database there yet (ingest files "
            f"first: `indexer ingest PATH --home {path.parent}`, or pick another --home/--db)"
        )
    try:
        engine = make_engine(url, timeout_s=timeout_s)
        if migrate:
            upgrade(engine)
    except StoreError:
        raise
    except Exception as exc:  # driver missing, server down, bad URL: one clear message
        # a server that refuses or does not answer is store.database, as it is later on
        down = isinstance(translate(exc), DatabaseUnavailableError)
        raise (DatabaseUnavailableError if down else StoreError)(
            f"cannot open the database {_safe(url)}: {exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    return Database(url, engine)


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable URL>"
