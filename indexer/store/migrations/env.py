"""alembic environment: run against the connection ``indexer.store.db.upgrade`` passes in, or
against ``sqlalchemy.url`` from alembic.ini / ``-x url=...`` when run from the shell."""

from alembic import context
from sqlalchemy import create_engine

from indexer.store.schema import Base, is_fulltext_object

config = context.config
target_metadata = Base.metadata


def include_name(name, type_, parent_names) -> bool:
    """Autogenerate leaves the full-text objects alone (migration 0003 owns them)."""
    return not is_fulltext_object(name)


def _migrate(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("no database URL: pass `-x url=...` or set sqlalchemy.url in alembic.ini")
    with create_engine(url).begin() as conn:
        _migrate(conn)


run()
