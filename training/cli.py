"""``clap-train``: train, evaluate and export CLAP models; convert public checkpoints.

clap-train train --model cnn10-minilm --train data/train.jsonl --val data/val.jsonl --out runs/x
clap-train train --config run.json --set batch_size=128 --set lr=3e-4     # any TrainConfig field
torchrun --nproc-per-node 4 -m training.cli train --config run.json        # DDP, one process per GPU
clap-train evaluate --model models/x --manifest data/test.jsonl            # or --checkpoint best.pt
clap-train export runs/x/checkpoints/best.pt models/x --variants fp32,int8
clap-train corpus --out data/corpus --extra ../shared/data/extra-sfx    # the default model's data
clap-train corpus-pseudo --corpus data/corpus --yamnet yamnet_spectra_in.tflite  # + YAMNet captions
clap-train model-card models/x --corpus data/corpus --run runs/x         # held-out numbers + card
clap-train convert-laion 630k-audioset-fusion-best.pt models/laion-fusion --tokenizer ./roberta-base
clap-train convert-hf ./clap-htsat-unfused models/clap-htsat-unfused
clap-train init-random micro models/micro-random     # random weights: tests, benchmarks, demo
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import tempfile
from pathlib import Path

from indexer.errors import ClapSearchError, ConfigError, report_error

# flag -> TrainConfig field, for the common options (everything else: --config or --set)
TRAIN_FLAGS = {
    "--model": ("model", str, "registry name (training/model_configs) or a model config JSON"),
    "--train": ("train_manifest", str, "training manifest: JSONL/CSV, AudioCaps/Clotho CSV, or WebDataset shards"),
    "--val": ("val_manifest", str, "validation manifest; best.pt follows its retrieval metric"),
    "--train-split": ("train_split", str, "keep only records of this split from --train"),
    "--val-split": ("val_split", str, "keep only records of this split from --val"),
    "--out": ("out_dir", str, "run folder: checkpoints/, metrics.jsonl, tokenizer.json (default runs/clap)"),
    "--init": ("init", str, "whole model: our checkpoint, a Hugging Face CLAP folder or a laion .pt"),
    "--audio-init": ("audio_init", str, "audio tower weights: PATH or PATH:PREFIX (a state dict) or a CLAP source"),
    "--text-init": ("text_init", str, "text tower: a Hugging Face BERT/RoBERTa/CLIP folder, or PATH[:PREFIX]"),
    "--tokenizer": ("tokenizer", str, "folder with tokenizer.json (default: from the init source, else trained)"),
    "--epochs": ("epochs", int, "passes over the training records (default 10)"),
    "--max-steps": ("max_steps", int, "optimizer steps; overrides --epochs"),
    "--batch-size": ("batch_size", int, "clips per process and micro-batch (default 32)"),
    "--grad-accum": ("grad_accum", int, "micro-batches per optimizer step (default 1)"),
    "--lr": ("lr", float, "peak learning rate (default 1e-4; per tower: --set lr_text=...)"),
    "--workers": ("workers", int, "data loader processes (default 2)"),
    "--precision": ("precision", str, "auto | fp32 | bf16 | fp16 (auto: bf16 on a GPU, fp32 on CPU)"),
    "--device": ("device", str, "auto | cpu | cuda"),
    "--seed": ("seed", int, "seed of initialisation, data order and augmentation (default 0)"),
    "--eval-every": ("eval_every", int, "validate every N steps (default 200, and at the end)"),
    "--save-every": ("save_every", int, "checkpoint every N steps (default 200, and at the end)"),
}


# subcommands with argument parsers of their own: module (its ``main(argv)``), help
DELEGATED = {
    "corpus": ("training.corpus.cli", "build the captioned training corpus from Debian packages"),
    "corpus-pseudo": ("training.corpus.pseudo", "add YAMNet-agreed captions and clips to the train split"),
    "label-space": ("training.label_space_tune", "tune label-space settings, table prior/branch mixes"),
    "model-card": ("training.model_card", "held-out evaluation + MODEL_CARD.md of a model folder"),
}


def _variants(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _report(manifest, out: Path) -> None:
    print(
        f"wrote {out}  ({manifest.name}: {manifest.audio.architecture}"
        f"{' + fusion' if manifest.audio.fusion else ''}, {manifest.text.architecture}, {manifest.embed_dim}-d)"
    )
    for name, variant in manifest.variants.items():
        if not variant.shipped:
            print(f"  {name}: measured, not shipped")
            continue
        costs = [
            f"{tower} {value:.5f}"
            for tower, value in (("audio", variant.audio_min_cosine_to_fp32), ("text", variant.text_min_cosine_to_fp32))
            if value is not None
        ]
        cost = f"  min cosine to fp32: {', '.join(costs)}" if costs else ""
        print(f"  {name}: {variant.audio}, {variant.text}{cost}")


def _export_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", help="model name in the manifest (default: the output folder's name)")
    p.add_argument(
        "--variants",
        type=_variants,
        default=("fp32", "int8"),
        help="comma-separated: fp32 (always), int8, fp16 (default: fp32,int8)",
    )
    p.add_argument("--overwrite", action="store_true")
    p.add_argument(
        "--ship",
        type=_variants,
        help="variants whose files the folder keeps (default: all); "
        "the others are measured and recorded but left out, e.g. --ship int8 for a small folder",
    )
    p.add_argument("--default-variant", help="variant the runtime opens by default (default: fp32 when shipped)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clap-train", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train or fine-tune (resumes from OUT/checkpoints/last.pt)")
    train.add_argument("--config", type=Path, help="TrainConfig JSON (flags and --set override it)")
    for flag, (field, kind, text) in TRAIN_FLAGS.items():
        train.add_argument(flag, dest=field, type=kind, help=text)
    train.add_argument("--freeze-text", action="store_true", default=None, help="lock the text tower (LiT)")
    train.add_argument("--freeze-audio", action="store_true", default=None, help="lock the audio tower")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="any TrainConfig field; VALUE is parsed as JSON when it can be",
    )
    train.add_argument("--export-to", type=Path, help="export best.pt to this model folder when done")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.add_parser("evaluate", add_help=False, help="retrieval / zero-shot / linear-probe metrics")
    for name, (_, text) in DELEGATED.items():
        sub.add_parser(name, add_help=False, help=text)
    export = sub.add_parser("export", help="training checkpoint -> model folder (manifest + ONNX)")
    export.add_argument("checkpoint", type=Path)
    export.add_argument("out", type=Path)
    _export_options(export)
    laion = sub.add_parser("convert-laion", help="laion_clap .pt checkpoint -> model folder")
    laion.add_argument("checkpoint", type=Path)
    laion.add_argument("out", type=Path)
    laion.add_argument(
        "--tokenizer",
        type=Path,
        required=True,
        help="folder with the RoBERTa tokenizer.json (laion checkpoints carry none)",
    )
    laion.add_argument("--text-config", type=Path, help="RoBERTa config.json (attention heads are not in the weights)")
    hf = sub.add_parser("convert-hf", help="Hugging Face CLAP folder -> model folder")
    hf.add_argument("folder", type=Path)
    hf.add_argument("out", type=Path)
    rnd = sub.add_parser("init-random", help="random-weight model folder from a registry config")
    rnd.add_argument("config", help="registry name (training/model_configs/*.json) or a JSON path")
    rnd.add_argument("out", type=Path)
    rnd.add_argument("--seed", type=int, default=0)
    for p in (laion, hf, rnd):
        _export_options(p)
    return parser


def train_config_from_args(args: argparse.Namespace):
    from training.train_config import TrainConfig

    values = json.loads(args.config.read_text()) if args.config else {}
    for field, _, _ in TRAIN_FLAGS.values():
        if getattr(args, field, None) is not None:
            values[field] = getattr(args, field)
    for flag in ("freeze_text", "freeze_audio"):
        if getattr(args, flag):
            values[flag] = True
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        target = values
        *parents, leaf = key.split(".")  # augment.mix_prob=0.3
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    if args.quiet:
        values["progress"] = False
    return TrainConfig.model_validate(values)


def torch_embedder(checkpoint: Path, args: argparse.Namespace):
    """``clap-train evaluate --checkpoint``: the checkpoint's model through the same evaluation."""
    from training.evaluate import TorchEmbedder
    from training.export import converted_from_checkpoint
    from training.towers import AudioEmbedder, TextEmbedder, pad_token_id

    converted = converted_from_checkpoint(checkpoint, Path(tempfile.mkdtemp(prefix="clap-tok-")))
    device = "cuda" if args.device == "cuda" else "cpu"
    model = converted.model.to(device)
    tokenizer_file = converted.tokenizer_dir / "tokenizer.json"
    return TorchEmbedder(
        AudioEmbedder(model),
        TextEmbedder(model),
        converted.frontend,
        tokenizer_file,
        converted.max_text_length,
        pad_token_id(tokenizer_file, model.text.model.config.pad_token_id),
        device=device,
        name=checkpoint.name,
    )


def _convert(args: argparse.Namespace):
    if args.command == "convert-laion":
        from training.convert.laion import load_laion_checkpoint

        return load_laion_checkpoint(args.checkpoint, text_config=args.text_config, tokenizer_dir=args.tokenizer)
    if args.command == "convert-hf":
        from training.convert.hf import load_hf_folder

        return load_hf_folder(args.folder)
    if args.command == "export":
        from training.export import converted_from_checkpoint

        return converted_from_checkpoint(args.checkpoint, Path(tempfile.mkdtemp(prefix="clap-tok-")))
    from training.random_init import random_converted

    return random_converted(args.config, Path(tempfile.mkdtemp(prefix="clap-tok-")), seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["evaluate"]:
        from training.evaluate import main as evaluate_main

        return evaluate_main(argv[1:], torch_loader=torch_embedder)
    if argv[:1] and argv[0] in DELEGATED:
        return importlib.import_module(DELEGATED[argv[0]][0]).main(argv[1:])
    args = build_parser().parse_args(argv)
    # Our own progress at INFO; libraries (onnxruntime's quantizer is chatty) only when they warn.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("clap-train").setLevel(logging.INFO)
    from training.export import write_model_folder

    try:
        if args.command == "train":
            from training.train import train

            cfg = train_config_from_args(args)
            state = train(cfg)
            print(
                f"done: {state.step} steps; best {cfg.select_metric} = {state.best_metric} at step {state.best_step}"
                f"; checkpoints in {cfg.checkpoint_dir}"
            )
            if args.export_to is None:
                return 0
            args.checkpoint, args.out, args.command = cfg.checkpoint_dir / "best.pt", args.export_to, "export"
            args.name, args.variants, args.overwrite = None, ("fp32", "int8"), True
            args.ship, args.default_variant = None, None
        converted = _convert(args)
        for note in converted.notes:
            print(f"note: {note}")
        manifest = write_model_folder(
            converted,
            args.out,
            name=args.name,
            variants=args.variants,
            overwrite=args.overwrite,
            ship=args.ship,
            default_variant=args.default_variant,
        )
    except (ClapSearchError, ValueError, FileNotFoundError) as exc:
        return report_error(exc if isinstance(exc, ClapSearchError) else ConfigError(str(exc)))
    _report(manifest, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
