"""Distributed ingest commands: ray-ingest (many machines -> Parquet vector shards) and
import-shards (shards -> a collection and its index, on one machine). See docs/distributed.md."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from indexer.cli.common import collection_option, store_options
from indexer.ingest.discover import INSTALL_HINT, require

if TYPE_CHECKING:
    from indexer.store.store import Store


def _need(module: str) -> None:
    try:
        require(module)
    except ImportError:
        raise click.ClickException(f"this command needs {module}, which is not installed: {INSTALL_HINT}") from None


@click.command(
    "ray-ingest",
    help="Embed SOURCES on a Ray cluster into Parquet vector shards in --out "
    "(SOURCES: paths, folders, globs or fsspec URLs like s3://bucket/lib/**.wav, "
    "or @LIST / *.txt files with one path or URL per line).",
)
@click.argument("sources", nargs=-1, required=True)
@click.option("--out", "out_dir", required=True, help="shard folder or URL (shared by all machines)")
@click.option("--address", default=None, help="Ray cluster: auto, ray://head:10001 ... (default: start a local Ray)")
@click.option("--actors", type=int, default=None, help="embedding actors (default: cluster GPUs or CPUs / per actor)")
@click.option("--gpus-per-actor", type=float, default=0.0, show_default=True)
@click.option(
    "--cpus-per-actor", type=float, default=1.0, show_default=True, help="also the decode threads of each actor"
)
@click.option("--files-per-shard", type=int, default=1000, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True, help="views per ONNX call")
@click.option(
    "--max-failed-batches",
    type=int,
    default=0,
    show_default=True,
    help="batches whose actor keeps dying (3 retries) to skip instead of failing the run; -1: any",
)
@click.option("--segments/--no-segments", default=False, help="also embed windows of long files")
@click.option("--segment-seconds", type=float, default=10.0, show_default=True)
@click.option("--segment-hop", type=float, default=5.0, show_default=True)
@click.option("--model", default=None, help="model folder or URL [env CLAPSEARCH_MODEL; default: the shipped model]")
@click.option("--variant", default=None, help="model variant (fp32, fp16, int8...)")
def ray_ingest(
    sources,
    out_dir,
    address,
    actors,
    gpus_per_actor,
    cpus_per_actor,
    files_per_shard,
    batch_size,
    max_failed_batches,
    segments,
    segment_seconds,
    segment_hop,
    model,
    variant,
) -> int:
    _need("ray")
    _need("fsspec")
    import ray

    from indexer.ingest.distributed import ray_embed
    from indexer.settings import IndexerSettings
    from indexer.store.catalog import SegmentSpec

    settings = IndexerSettings()
    if not ray.is_initialized():
        ray.init(address=address) if address else ray.init()
    summary = ray_embed(
        list(sources),
        model or settings.resolved_model_dir,
        out_dir,
        variant=variant or settings.model_variant,
        segments=SegmentSpec(segment_seconds, segment_hop) if segments else None,
        num_actors=actors,
        num_gpus_per_actor=gpus_per_actor,
        num_cpus_per_actor=cpus_per_actor,
        batch_size=batch_size,
        files_per_shard=files_per_shard,
        max_failed_batches=max_failed_batches,
    )
    print(
        f"{summary['files']} files ({summary['audio_seconds'] / 3600:.2f} h of audio), {summary['failed']} failed, "
        f"{summary['shards']} shards in {out_dir} by {summary['actors']} actors in {summary['seconds']:.1f} s"
    )
    if summary["missing"]:
        print(
            f"{summary['missing']} files are in no shard (their batches kept failing): list them "
            f"and run again into the same --out (docs/distributed.md)",
            file=sys.stderr,
        )
    return 1 if summary["failed"] or summary["missing"] else 0


@click.command(
    "import-shards",
    help="Import the vector shards in SHARDS_DIR (from ray-ingest) into a collection and publish its index.",
)
@click.argument("shards_dir")
@collection_option
@click.option("--batch", type=int, default=500, show_default=True, help="rows per transaction")
@store_options
def import_shards(shards_dir: str, collection: str, batch: int, store: Store) -> int:
    _need("fsspec")
    from indexer.ingest.shards import import_shards as run_import

    report = run_import(store, collection, shards_dir, batch=batch)
    print(
        f"collection {collection!r}: {report['files']} files from {report['shards']} shards "
        f"({report['segments']} segments), {report['failed']} failed, in {report['seconds']:.1f} s"
    )
    for result in report["published"]:
        if result.version is not None:
            print(
                f"  {result.kind} index {result.version.folder.name}: {result.mode}, "
                f"{result.version.n_vectors} vectors (+{result.added} -{result.removed}, {result.seconds:.1f} s)"
            )
    if report["failed"]:
        print(f"{report['failed']} files failed: `indexer status --errors -c {collection}`", file=sys.stderr)
    return 1 if report["failed"] else 0


COMMANDS = [ray_ingest, import_shards]
