"""``indexer``: build and query a searchable audio library from the shell (torch-free).

    indexer ingest ./library                    # embed new/changed files, publish the index
    indexer search "dog barking in the rain"    # --audio clip.wav, --item ID, --tag rain, --format flac...
    indexer status [--errors]                   # collections, index choice, failures
    indexer remove ./library/old                # forget files or folders
    indexer rebuild --model models/new-clap     # re-embed a collection with another model
    indexer export --out library.parquet        # vectors + metadata
    indexer check [--repair]                    # rows, vectors and indexes agree?
    indexer embed|embed-text|rank|model-info    # model-level tools without a database

Data lives in $CLAPSEARCH_HOME (default ~/.local/share/clapsearch): SQLite + index versions,
or PostgreSQL with --db / $CLAPSEARCH_DATABASE_URL. Exit codes: 0 all good, 1 some files
failed (or problems found), 2 usage, model or store errors (``error [code]: ...``, docs/errors.md).
"""

from __future__ import annotations

import sys

import click

from indexer.errors import exit_code, translate


@click.group(help=__doc__.split("\n\n")[0], context_settings={"help_option_names": ["-h", "--help"]})
def app() -> None:
    pass


def _register() -> None:
    from indexer.cli import distributed, embed, library

    for module in (library, embed, distributed):
        for command in module.COMMANDS:
            app.add_command(command)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script exits with it)."""
    _register()
    try:
        result = app.main(args=argv, prog_name="indexer", standalone_mode=False)
    except click.exceptions.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except click.ClickException as exc:
        exc.show()
        return 2
    except Exception as exc:
        known = translate(exc)      # a core error, or a database/disk/runtime failure it names
        if known is None:
            raise                   # a bug: the traceback is the useful report
        print(f"error [{known.code}]: {known}", file=sys.stderr)
        return exit_code(known)
    return int(result or 0)
