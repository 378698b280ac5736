"""``clapsearch-api``: run the search service, or prepare its database.

    clapsearch-api serve [--host 0.0.0.0] [--port 8000] [--workers 2]   # (the default command)
    clapsearch-api migrate                                               # create/upgrade the schema

Settings come from ``CLAPSEARCH_*`` variables (``service/settings.py``); every worker process
loads its own model and index, so memory grows with ``--workers``.
"""

from __future__ import annotations

import sys

import click


@click.group(invoke_without_command=True)
@click.pass_context
def main(ctx):
    """The clapsearch REST service."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(serve)


@main.command()
@click.option("--host", default=None, help="listen address [env CLAPSEARCH_HOST; default 127.0.0.1]")
@click.option("--port", default=None, type=click.IntRange(1, 65535), help="[env CLAPSEARCH_PORT; default 8000]")
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(min=1),
    help="uvicorn worker processes, each holding the model and the index [env CLAPSEARCH_WORKERS; default 1]",
)
@click.option("--log-level", default="info", show_default=True)
def serve(host, port, workers, log_level):
    """Serve the API and the web page."""
    import logging

    import uvicorn

    from indexer.logs import quiet_library_loggers
    from service.settings import ServiceSettings

    quiet_library_loggers()
    given = {"host": host, "port": port, "workers": workers}
    settings = ServiceSettings(**{k: v for k, v in given.items() if v is not None})
    host, port, workers = settings.host, settings.port, settings.workers

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        proxy_headers=True,
        timeout_graceful_shutdown=20,
    )


@main.command()
def migrate():
    """Create or upgrade the metadata database (alembic) and exit."""
    from indexer.store.db import open_database
    from service.settings import ServiceSettings

    settings = ServiceSettings()
    url = settings.resolved_database_url
    open_database(url).close()
    click.echo(f"database ready: {url.split('@')[-1]}")


if __name__ == "__main__":
    sys.exit(main())
