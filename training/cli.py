"""``clap-train``: convert public CLAP checkpoints into model folders (training comes later).

    clap-train convert-laion 630k-audioset-fusion-best.pt models/laion-fusion --tokenizer ./roberta-base
    clap-train convert-hf ./clap-htsat-unfused models/clap-htsat-unfused --variants fp32,int8
    clap-train init-random micro models/micro-random     # random weights: tests, benchmarks, demo
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from indexer.errors import ClapSearchError


def _variants(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _report(manifest, out: Path) -> None:
    print(f"wrote {out}  ({manifest.name}: {manifest.audio.architecture}"
          f"{' + fusion' if manifest.audio.fusion else ''}, {manifest.text.architecture}, {manifest.embed_dim}-d)")
    for name, variant in manifest.variants.items():
        cost = ""
        if variant.audio_min_cosine_to_fp32 is not None:
            cost = (f"  min cosine to fp32: audio {variant.audio_min_cosine_to_fp32:.5f}, "
                    f"text {variant.text_min_cosine_to_fp32:.5f}")
        print(f"  {name}: {variant.audio}, {variant.text}{cost}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clap-train", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    laion = sub.add_parser("convert-laion", help="laion_clap .pt checkpoint -> model folder")
    laion.add_argument("checkpoint", type=Path)
    laion.add_argument("out", type=Path)
    laion.add_argument("--tokenizer", type=Path, required=True,
                       help="folder with the RoBERTa tokenizer.json (laion checkpoints carry none)")
    laion.add_argument("--text-config", type=Path, help="RoBERTa config.json (attention heads are not in the weights)")
    hf = sub.add_parser("convert-hf", help="Hugging Face CLAP folder -> model folder")
    hf.add_argument("folder", type=Path)
    hf.add_argument("out", type=Path)
    rnd = sub.add_parser("init-random", help="random-weight model folder from a registry config")
    rnd.add_argument("config", help="registry name (training/model_configs/*.json) or a JSON path")
    rnd.add_argument("out", type=Path)
    rnd.add_argument("--seed", type=int, default=0)
    for p in (laion, hf, rnd):
        p.add_argument("--name", help="model name in the manifest (default: the output folder's name)")
        p.add_argument("--variants", type=_variants, default=("fp32", "int8"),
                       help="comma-separated: fp32 (always), int8, fp16 (default: fp32,int8)")
        p.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    from training.export import write_model_folder

    try:
        if args.command == "convert-laion":
            from training.convert.laion import load_laion_checkpoint

            converted = load_laion_checkpoint(args.checkpoint, text_config=args.text_config,
                                              tokenizer_dir=args.tokenizer)
        elif args.command == "convert-hf":
            from training.convert.hf import load_hf_folder

            converted = load_hf_folder(args.folder)
        else:
            import tempfile

            from training.random_init import random_converted

            converted = random_converted(args.config, Path(tempfile.mkdtemp(prefix="clap-tok-")), seed=args.seed)
        for note in converted.notes:
            print(f"note: {note}")
        manifest = write_model_folder(converted, args.out, name=args.name, variants=args.variants,
                                      overwrite=args.overwrite)
    except ClapSearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _report(manifest, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
