"""Keep other libraries' start-up chatter off the user's terminal at the default verbosity.

faiss logs every SIMD build it tries at INFO, including ``ModuleNotFoundError`` for the ones
its wheel does not have (which reads like a failure but is normal), and alembic announces its
plugins and SQL dialect each time a database is opened. A service started with ``--log-level
info`` or ``basicConfig(level=INFO)`` would print all of it. Those records are dropped unless
logging is at DEBUG (``clapsearch-api serve --log-level debug``) or verbose output was asked
for (``indexer -v``); their warnings and errors always pass.
"""

from __future__ import annotations

import logging

CHATTY = ("faiss.loader", "alembic.runtime.migration", "alembic.runtime.plugins")
_verbose = False


def _keep(record: logging.LogRecord) -> bool:
    # Decided when the record is made, so it follows a logging setup done after this import.
    return record.levelno >= logging.WARNING or _verbose or logging.getLogger().getEffectiveLevel() <= logging.DEBUG


def quiet_library_loggers() -> None:
    """Attach the filter (idempotent). Called by each entry point (``indexer``, ``clapsearch-api``,
    the app factory, ``clapsearch-worker``) before faiss or alembic is imported, never at import
    time. A filter on the emitting logger, not a level: levels would have to be chosen now,
    before the application has configured logging."""
    for name in CHATTY:
        logger = logging.getLogger(name)
        if _keep not in logger.filters:
            logger.addFilter(_keep)


def set_verbose(on: bool = True) -> None:
    """Let the library chatter through (``indexer -v``)."""
    global _verbose
    _verbose = on
