"""Options the commands share, and the settings (or Store) they build: one path for every
command, so ``--model/--variant/--device`` and every ``CLAPSEARCH_*`` variable mean the same
in ``indexer embed`` as in ``indexer ingest``."""

from __future__ import annotations

import functools
from contextlib import contextmanager, nullcontext
from pathlib import Path

import click

_MODEL_OPTIONS = [
    click.option(
        "--model",
        type=click.Path(path_type=Path),
        default=None,
        help="model folder [env CLAPSEARCH_MODEL; default: the shipped model]",
    ),
    click.option(
        "--variant",
        "model_variant",
        default=None,
        help="model variant: fp32, int8, fp16... if the folder has it [env CLAPSEARCH_MODEL_VARIANT]",
    ),
    click.option(
        "--device",
        type=click.Choice(["auto", "cpu", "cuda"]),
        default=None,
        help="where ONNX Runtime runs [env CLAPSEARCH_DEVICE]",
    ),
]
_STORE_OPTIONS = [
    click.option(
        "--home",
        type=click.Path(path_type=Path),
        default=None,
        help="data folder of the embedded default [env CLAPSEARCH_HOME]",
    ),
    click.option(
        "--db",
        "database_url",
        default=None,
        help="database URL, e.g. postgresql+psycopg://user@host/db [env CLAPSEARCH_DATABASE_URL]",
    ),
    click.option(
        "--index-dir",
        type=click.Path(path_type=Path),
        default=None,
        help="where index versions are published [env CLAPSEARCH_INDEX_DIR]",
    ),
]
_NAMES = ("model", "model_variant", "device", "home", "database_url", "index_dir")


def _settings_command(func, options, build):
    """Add ``options`` to ``func``; their given values override the environment's settings, and
    ``build(settings)`` is the context manager whose value ``func`` receives."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from indexer.settings import IndexerSettings

        overrides = {name: kwargs.pop(name) for name in _NAMES if name in kwargs}
        settings = IndexerSettings(**{k: v for k, v in overrides.items() if v is not None})
        with build(settings) as value:
            return func(*args, **value, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


@contextmanager
def _open_store(settings, *, create: bool = True):
    from indexer.store.store import Store

    store = Store.open(settings, create=create)
    try:
        yield {"store": store}
    finally:
        store.close()


def settings_options(func):
    """--model/--variant/--device, then ``settings`` (IndexerSettings) passed as a keyword."""
    return _settings_command(func, _MODEL_OPTIONS, lambda settings: nullcontext({"settings": settings}))


def store_options(func):
    """--home/--db/--index-dir and the model options, then ``store`` passed as a keyword."""
    return _settings_command(func, _STORE_OPTIONS + _MODEL_OPTIONS, _open_store)


def read_store_options(func):
    """``store_options`` for commands that only read: they never create a database or a home
    folder (a typo in --home must not leave an empty library behind); a missing one is
    ``error [store.missing]``, exit 2."""
    return _settings_command(func, _STORE_OPTIONS + _MODEL_OPTIONS, functools.partial(_open_store, create=False))


collection_option = click.option(
    "--collection", "-c", default="default", show_default=True, help="collection (named index) to use"
)
