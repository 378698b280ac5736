"""Options the commands share, and the settings (or Store) they build: one path for every
command, so ``--model/--variant/--device`` and every ``CLAPSEARCH_*`` variable mean the same
in ``indexer embed`` as in ``indexer ingest``."""

from __future__ import annotations

import functools
from contextlib import contextmanager, nullcontext
from pathlib import Path

import click

from indexer.ingest.discover import AUDIO_EXTENSIONS


def _setting(flag: str, dest: str | None, help: str, **kw):
    """An option that overrides one setting: ``None`` when not given, so the environment's value stays."""
    return click.option(flag, *([dest] if dest else []), default=None, help=help, **kw)


_PATH = click.Path(path_type=Path)
_MODEL_OPTIONS = [
    _setting("--model", None, "model folder [env CLAPSEARCH_MODEL; default: the shipped model]", type=_PATH),
    _setting(
        "--variant",
        "model_variant",
        "model variant: fp32, int8, fp16... if the folder has it [env CLAPSEARCH_MODEL_VARIANT]",
    ),
    _setting(
        "--device", None, "where ONNX Runtime runs [env CLAPSEARCH_DEVICE]", type=click.Choice(["auto", "cpu", "cuda"])
    ),
]
_STORE_OPTIONS = [
    _setting("--home", None, "data folder of the embedded default [env CLAPSEARCH_HOME]", type=_PATH),
    _setting(
        "--db", "database_url", "database URL, e.g. postgresql+psycopg://user@host/db [env CLAPSEARCH_DATABASE_URL]"
    ),
    _setting("--index-dir", None, "where index versions are published [env CLAPSEARCH_INDEX_DIR]", type=_PATH),
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


def ingest_request(paths, collection: str, extensions, follow_symlinks: bool, **options):
    """What ``ingest`` and ``watch`` ask for: PATHS into ``collection``, every audio extension
    unless ``--ext`` names some, and their other ``IngestOptions``."""
    from indexer.ingest.report import IngestOptions

    return IngestOptions(
        paths=[str(p) for p in paths],
        collection=collection,
        extensions=tuple(extensions) or AUDIO_EXTENSIONS,
        follow_symlinks=follow_symlinks,
        **options,
    )
