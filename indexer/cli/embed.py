"""Model-level commands that need no database: embed files into an .npz, embed texts, rank an
.npz against queries, print a model's manifest."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import numpy as np

from indexer.cli.common import settings_options
from indexer.errors import ModelMismatchError
from indexer.ingest.discover import walk


@click.command("embed", help="Embed audio files/folders into an .npz (vectors, paths).")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=Path("embeddings.npz"), show_default=True)
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--quiet", is_flag=True)
@settings_options
def embed(paths, out, batch_size, quiet, settings) -> int:
    from tqdm import tqdm

    encoder = settings.open_encoder()
    files = [f.path for f in walk(paths)]
    if not files:
        print("no audio files found", file=sys.stderr)
        return 1
    kept, vectors, failures = [], [], []
    seconds = 0.0
    with tqdm(total=len(files), unit="file", disable=True if quiet else None, mininterval=0.5) as bar:
        for item in encoder.embed_files(files, batch_size=batch_size):
            if item.error is not None:
                failures.append(item)
            else:
                kept.append(item.path)
                vectors.append(item.vector)
                seconds += item.duration_s or 0.0
            bar.update(1)
            bar.set_postfix(audio_h=f"{seconds / 3600:.2f}", errors=len(failures))
    matrix = np.stack(vectors) if vectors else np.zeros((0, encoder.dim), np.float32)
    np.savez(
        out,
        vectors=matrix,
        paths=np.array(kept),
        model=encoder.manifest.name,
        fingerprint=encoder.manifest.fingerprint,
        variant=encoder.variant,
    )
    print(f"embedded {len(kept)} files ({seconds / 60:.1f} min of audio) -> {out}")
    for item in failures:
        print(f"failed [{item.error.code}] {item.error}", file=sys.stderr)
    return 1 if failures else 0


@click.command("embed-text", help="Embed texts (JSON lines to stdout, or --out .npy).")
@click.argument("texts", nargs=-1, required=True)
@click.option("--out", type=click.Path(path_type=Path), default=None)
@settings_options
def embed_text(texts, out, settings) -> int:
    vectors = settings.open_encoder().embed_text(list(texts))
    if out:
        np.save(out, vectors)
    else:
        for text, vector in zip(texts, vectors):
            print(json.dumps({"text": text, "vector": [round(float(v), 6) for v in vector]}))
    return 0


@click.command("rank", help="Rank an `embed` output (.npz) against text queries (brute force).")
@click.argument("embeddings", type=click.Path(path_type=Path))
@click.argument("queries", nargs=-1, required=True)
@click.option("--top", type=int, default=5, show_default=True)
@settings_options
def rank(embeddings, queries, top, settings) -> int:
    encoder = settings.open_encoder()
    data = np.load(embeddings)
    if str(data["fingerprint"]) != encoder.manifest.fingerprint:
        raise ModelMismatchError(
            f"{embeddings} was embedded with model {str(data['model'])!r} "
            f"({str(data['fingerprint'])}), not {encoder.manifest.name!r} "
            f"({encoder.manifest.fingerprint})"
        )
    scores = data["vectors"] @ encoder.embed_text(list(queries)).T
    for q, query in enumerate(queries):
        print(f"{query}")
        for i in np.argsort(-scores[:, q], kind="stable")[:top]:
            print(f"  {scores[i, q]:+.3f}  {data['paths'][i]}")
    return 0


@click.command("model-info", help="Print a model folder's manifest.")
@click.argument("folder", type=click.Path(path_type=Path))
def model_info(folder) -> int:
    from indexer.models.manifest import load_manifest

    manifest = load_manifest(folder)
    print(json.dumps({"fingerprint": manifest.fingerprint, **manifest.model_dump(mode="json")}, indent=2))
    return 0


COMMANDS = [embed, embed_text, rank, model_info]
