"""Options every library command shares, and the Store they build."""

from __future__ import annotations

import functools
from pathlib import Path

import click


def store_options(func):
    """--home/--db/--index-dir/--model/--variant/--device, then ``store`` passed as a keyword."""

    @click.option("--home", type=click.Path(path_type=Path), default=None,
                  help="data folder of the embedded default [env CLAPSEARCH_HOME]")
    @click.option("--db", "database_url", default=None,
                  help="database URL, e.g. postgresql+psycopg://user@host/db [env CLAPSEARCH_DATABASE_URL]")
    @click.option("--index-dir", type=click.Path(path_type=Path), default=None,
                  help="where index versions are published [env CLAPSEARCH_INDEX_DIR]")
    @click.option("--model", type=click.Path(path_type=Path), default=None,
                  help="model folder [env CLAPSEARCH_MODEL; default: the shipped model]")
    @click.option("--variant", "model_variant", default=None, help="model variant (fp32, fp16, int8...)")
    @click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None)
    @functools.wraps(func)
    def wrapper(*args, home, database_url, index_dir, model, model_variant, device, **kwargs):
        from indexer.settings import IndexerSettings
        from indexer.store.store import Store

        overrides = {k: v for k, v in dict(home=home, database_url=database_url, index_dir=index_dir,
                                           model=model, model_variant=model_variant, device=device).items()
                     if v is not None}
        store = Store.open(IndexerSettings(**overrides))
        try:
            return func(*args, store=store, **kwargs)
        finally:
            store.close()

    return wrapper


collection_option = click.option("--collection", "-c", default="default", show_default=True,
                                 help="collection (named index) to use")
