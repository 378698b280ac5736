"""``indexer``: build and query a searchable audio library from the shell (torch-free).

    indexer ingest ./library                    # embed new/changed files, publish the index
    indexer search "dog barking in the rain"    # --audio clip.wav, --item ID, --tag rain, --format flac...
    indexer status [--errors]                   # collections, index choice, failures
    indexer remove ./library/old                # forget files or folders
    indexer rebuild --model models/new-clap     # re-embed a collection with another model
    indexer export --out library.parquet        # vectors + metadata
    indexer check [--repair]                    # rows, vectors and indexes agree?
    indexer duplicates [--threshold 0.95]       # same recording in other formats, trims, gains
    indexer analyze                             # tempo, key, loudness (ingest --analyze; search --key "A minor")
    indexer embed|embed-text|rank|model-info    # model-level tools without a database
    indexer -v ingest ...                       # also log what happens (-vv: debug)

Data lives in $CLAPSEARCH_HOME (default ~/.local/share/clapsearch): SQLite + index versions,
or PostgreSQL with --db / $CLAPSEARCH_DATABASE_URL. Exit codes: 0 all good, 1 some files
failed (or problems found), 2 usage, model or store errors (``error [code]: ...``, docs/errors.md).
"""

from __future__ import annotations

import sys

import click

from indexer.errors import report_error, translate


@click.group(help=__doc__.split("\n\n")[0], context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--verbose",
    "-v",
    count=True,
    help="log what happens (-v: info, including the libraries' start-up lines; -vv: debug)",
)
def app(verbose: int) -> None:
    if verbose:
        import logging

        from indexer.logs import set_verbose

        logging.basicConfig(
            level=logging.DEBUG if verbose > 1 else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
        )
        set_verbose()


def _register() -> None:
    from indexer.cli import analysis, distributed, embed, library, watch

    for module in (library, analysis, embed, distributed, watch):
        for command in module.COMMANDS:
            app.add_command(command)


_VERBOSE_FLAGS = {"-v", "-vv", "-vvv", "--verbose"}


def _hoist_verbose(argv: list[str]) -> list[str]:
    """``indexer ingest ... -v`` works like ``indexer -v ingest ...``: no command has a -v of
    its own, and people add it at the end of the line they just ran."""
    end = argv.index("--") if "--" in argv else len(argv)
    flags = [a for a in argv[:end] if a in _VERBOSE_FLAGS]
    return flags + [a for a in argv[:end] if a not in _VERBOSE_FLAGS] + argv[end:]


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script exits with it)."""
    from indexer.logs import quiet_library_loggers

    quiet_library_loggers()
    _register()
    argv = _hoist_verbose(list(sys.argv[1:] if argv is None else argv))
    try:
        result = app.main(args=argv, prog_name="indexer", standalone_mode=False)
    except click.exceptions.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except click.ClickException as exc:
        exc.show()
        return 2
    except Exception as exc:
        known = translate(exc)  # a core error, or a database/disk/runtime failure it names
        if known is None:
            raise  # a bug: the traceback is the useful report
        return report_error(known)
    return int(result or 0)
