"""``indexer analyze``: tempo, key and loudness of a collection's files (those not analysed
yet, or changed since), stored with them and searchable (``indexer search --bpm-min 118
--bpm-max 122 --key "A minor"``). ``indexer ingest --analyze`` runs the same after the ingest."""

from __future__ import annotations

import sys

import click

from indexer.cli.common import collection_option, store_options


def run_analysis(store, collection: str, *, workers: int | None, quiet: bool) -> int:
    """Analyse what is pending, print a summary (and the failures); the exit code."""
    from indexer.analysis.run import analyze_collection

    def progress(report) -> None:
        done = report.analysed + report.failed
        if not quiet and sys.stderr.isatty() and done % 10 == 0:
            print(f"\ranalysed {done} files", end="", file=sys.stderr, flush=True)

    report = analyze_collection(store, collection, workers=workers or 1, progress=progress)
    if not quiet and sys.stderr.isatty():
        print("\r", end="", file=sys.stderr)
    print(
        f"collection {collection!r}: {report.analysed} files analysed ({report.with_tempo} with a tempo, "
        f"{report.with_key} with a key), {report.failed} could not be, in {report.seconds:.1f} s"
    )
    for path, error in report.failures[:50]:
        print(f"  not analysed {path}: {error}", file=sys.stderr)
    if len(report.failures) > 50:
        print(f"  ... and {len(report.failures) - 50} more", file=sys.stderr)
    return 1 if report.failed else 0


def musical_summary(analysis: dict | None) -> str:
    """ "  [120.0 BPM, A minor, -14.2 LUFS]" for an analysed hit ("" when nothing is known)."""
    if not analysis:
        return ""
    parts = []
    if analysis.get("tempo_bpm") is not None:
        parts.append(f"{analysis['tempo_bpm']:.1f} BPM")
    if analysis.get("key"):
        parts.append(analysis["key"])
    if analysis.get("loudness_lufs") is not None:
        parts.append(f"{analysis['loudness_lufs']:.1f} LUFS")
    return f"  [{', '.join(parts)}]" if parts else ""


@click.command(
    "analyze",
    help="Estimate tempo (BPM), key and loudness (LUFS) of the collection's files that have none yet; "
    "search filters them with --bpm-min/--bpm-max/--key. Needs librosa (the `analysis` extra).",
)
@collection_option
@click.option("--workers", type=click.IntRange(min=1), default=None, help="analysis processes (default: 1)")
@click.option("--quiet", "-q", is_flag=True, help="no progress line")
@store_options
def analyze(collection, workers, quiet, store) -> int:
    return run_analysis(store, collection, workers=workers, quiet=quiet)


COMMANDS = [analyze]
