"""``indexer``: embed audio and text from the shell with a model folder (torch-free).

    indexer embed ./library --model models/my-clap --out library.npz
    indexer embed-text "dog barking in the rain" --model models/my-clap
    indexer rank library.npz "dog barking in the rain" --model models/my-clap
    indexer model-info models/my-clap

The model folder defaults to $CLAPSEARCH_MODEL. Exit code: 0 all good, 1 some files failed, 2 usage
or model errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from indexer.errors import ClapSearchError, ModelMismatchError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff")


def discover(paths: list[Path], extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[Path]:
    """Files given directly, plus audio files found recursively in folders, sorted per folder."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions))
        else:
            found.append(path)
    return found


def _model_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=None,
                        help="model folder (default: $CLAPSEARCH_MODEL, else the shipped default model)")
    parser.add_argument("--variant", help="fp32, int8 or fp16 if the folder has it (default: the manifest's default)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])


def _encoder(args):
    from indexer.models.encoder import ClapEncoder

    from indexer.models.defaults import default_model_dir

    return ClapEncoder.open(args.model or default_model_dir(), variant=args.variant, device=args.device)


def cmd_embed(args) -> int:
    from tqdm import tqdm

    encoder = _encoder(args)
    files = discover(args.paths)
    if not files:
        print("no audio files found", file=sys.stderr)
        return 1
    paths, vectors, failures = [], [], []
    seconds = 0.0
    # disable=None: tqdm turns itself off when stderr is not a terminal (CI logs stay readable).
    with tqdm(total=len(files), unit="file", disable=True if args.quiet else None, mininterval=0.5) as bar:
        for item in encoder.embed_files(files, batch_size=args.batch_size):
            if item.error is not None:
                failures.append(item)
            else:
                paths.append(item.path)
                vectors.append(item.vector)
                seconds += item.duration_s or 0.0
            bar.update(1)
            bar.set_postfix(audio_h=f"{seconds / 3600:.2f}", errors=len(failures))
    matrix = np.stack(vectors) if vectors else np.zeros((0, encoder.dim), np.float32)
    np.savez(args.out, vectors=matrix, paths=np.array(paths),
             model=encoder.manifest.name, fingerprint=encoder.manifest.fingerprint, variant=encoder.variant)
    print(f"embedded {len(paths)} files ({seconds / 60:.1f} min of audio) -> {args.out}")
    for item in failures:
        print(f"failed [{item.error.code}] {item.error}", file=sys.stderr)
    return 1 if failures else 0


def cmd_embed_text(args) -> int:
    vectors = _encoder(args).embed_text(args.texts)
    if args.out:
        np.save(args.out, vectors)
    else:
        for text, vector in zip(args.texts, vectors):
            print(json.dumps({"text": text, "vector": [round(float(v), 6) for v in vector]}))
    return 0


def cmd_rank(args) -> int:
    """Brute-force cosine ranking of an ``embed`` output against text queries (a quick check;
    the FAISS-backed ``indexer search`` serves real libraries)."""
    encoder = _encoder(args)
    data = np.load(args.embeddings)
    if str(data["fingerprint"]) != encoder.manifest.fingerprint:
        raise ModelMismatchError(f"{args.embeddings} was embedded with model {str(data['model'])!r} "
                                 f"({str(data['fingerprint'])}), not {encoder.manifest.name!r} "
                                 f"({encoder.manifest.fingerprint})")
    scores = data["vectors"] @ encoder.embed_text(args.queries).T
    for q, query in enumerate(args.queries):
        print(f"{query}")
        for i in np.argsort(-scores[:, q], kind="stable")[: args.top]:
            print(f"  {scores[i, q]:+.3f}  {data['paths'][i]}")
    return 0


def cmd_model_info(args) -> int:
    from indexer.models.manifest import load_manifest

    manifest = load_manifest(args.folder)
    print(json.dumps({"fingerprint": manifest.fingerprint, **manifest.model_dump(mode="json")}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="indexer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    embed = sub.add_parser("embed", help="embed audio files/folders into an .npz (vectors, paths)")
    embed.add_argument("paths", nargs="+", type=Path)
    embed.add_argument("--out", type=Path, default=Path("embeddings.npz"))
    embed.add_argument("--batch-size", type=int, default=16)
    embed.add_argument("--quiet", action="store_true")
    _model_arg(embed)
    text = sub.add_parser("embed-text", help="embed texts (JSON lines to stdout, or --out .npy)")
    text.add_argument("texts", nargs="+")
    text.add_argument("--out", type=Path)
    _model_arg(text)
    rank = sub.add_parser("rank", help="rank an embed output (.npz) against text queries")
    rank.add_argument("embeddings", type=Path)
    rank.add_argument("queries", nargs="+")
    rank.add_argument("--top", type=int, default=5)
    _model_arg(rank)
    info = sub.add_parser("model-info", help="print a model folder's manifest")
    info.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    handler = {"embed": cmd_embed, "embed-text": cmd_embed_text, "rank": cmd_rank,
               "model-info": cmd_model_info}[args.command]
    try:
        return handler(args)
    except ClapSearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
