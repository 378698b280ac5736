"""Hugging Face CLAP folder (``config.json`` + weights + feature-extractor settings + tokenizer)
-> transformers ``ClapModel`` and the front end its own feature-extractor settings describe.

The settings are read where transformers itself reads them: nested under ``"feature_extractor"``
in ``processor_config.json`` (what ``ClapProcessor.save_pretrained`` writes from transformers 5.x
on, with no ``preprocessor_config.json``), else top level in ``preprocessor_config.json`` (older
saves and the hub's laion/clap-htsat-* repos).

Loading is offline (``local_files_only``). The folder's configs are followed as written, but what
would make them ambiguous or unsupported (a non-repeatpad padding, an unknown truncation, a
fusion type transformers does not implement) is an error, and what is merely suspicious (the
transformers class default ``frequency_min=0`` that no public checkpoint was trained with) is
recorded in ``notes``.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

from indexer.errors import ModelError
from indexer.models.manifest import AudioFrontend, LogSpec, sha256_file
from training.convert import ConvertedModel
from training.convert.laion import LAION_MAX_TEXT_LENGTH, audio_architecture_name
from training.convert.layout import describe_key_problems

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
SHARD_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
# Keys transformers may legitimately find absent in older saves: deterministic buffers it rebuilds.
_BENIGN_MISSING = (
    "position_ids",
    "token_type_ids",
    "relative_position_index",
    "num_batches_tracked",
)
SUPPORTED_TRUNCATION = ("fusion", "rand_trunc")
PROCESSOR_CONFIG = "processor_config.json"
PREPROCESSOR_CONFIG = "preprocessor_config.json"
# transformers' FeatureExtractionMixin accepts either key for the nested settings.
_NESTED_KEYS = ("feature_extractor", "audio_processor")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return data


def _weights_digest(folder: Path, notes: list[str]) -> str:
    """sha256 of the single weights file; for a sharded save, of the sorted shard digests."""
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return sha256_file(folder / name)
    for name in SHARD_INDEXES:
        if (folder / name).is_file():
            shards = sorted(set(_read_json(folder / name).get("weight_map", {}).values()))
            if not shards:
                raise ModelError(f"{folder / name} lists no shards")
            combined = hashlib.sha256()
            for shard in shards:
                combined.update(f"{shard}:{sha256_file(folder / shard)}\n".encode())
            notes.append(f"sharded weights ({len(shards)} files): source_sha256 is a digest of the shard digests")
            return combined.hexdigest()
    raise ModelError(f"{folder}: no weights ({', '.join(WEIGHT_FILES + SHARD_INDEXES)})")


def feature_extractor_settings(folder: Path, notes: list[str]) -> tuple[dict[str, Any], str]:
    """The folder's ``ClapFeatureExtractor`` settings and where they were found (for messages).

    Same priority as transformers' ``FeatureExtractionMixin.get_feature_extractor_dict``: nested
    settings in ``processor_config.json`` win over ``preprocessor_config.json``, so the front end
    recorded here is the one ``ClapProcessor.from_pretrained`` would build from this folder.
    """
    processor = folder / PROCESSOR_CONFIG
    legacy = folder / PREPROCESSOR_CONFIG
    if processor.is_file():
        data = _read_json(processor)
        for key in _NESTED_KEYS:
            if key in data:
                nested = data[key]
                if not isinstance(nested, dict):
                    raise ModelError(f"{processor}: {key!r} is not a JSON object")
                source = f"{PROCESSOR_CONFIG} [{key}]"
                # a stale legacy file next to the nested settings is ignored by transformers too;
                # say so, since editing it would silently change nothing
                if legacy.is_file() and _read_json(legacy) != nested:
                    notes.append(f"{PREPROCESSOR_CONFIG} differs from {source}; following {source}")
                return nested, source
    if legacy.is_file():
        return _read_json(legacy), PREPROCESSOR_CONFIG
    if processor.is_file():
        raise ModelError(
            f"{folder}: {PROCESSOR_CONFIG} has no feature-extractor settings "
            f"(no {' or '.join(repr(k) for k in _NESTED_KEYS)} key) and there is no "
            f"{PREPROCESSOR_CONFIG}; cannot tell the audio front end"
        )
    raise ModelError(
        f"{folder}: neither {PROCESSOR_CONFIG} (transformers 5.x) nor {PREPROCESSOR_CONFIG} "
        "(older saves); cannot tell the audio front end"
    )


def hf_frontend(
    pre: dict[str, Any], fusion: bool, notes: list[str], source: str = PREPROCESSOR_CONFIG
) -> AudioFrontend:
    """The front end a ``ClapFeatureExtractor`` with these settings computes (minus its randomness).

    The filter bank follows the model, as in laion_clap: HTK/unnormalised for fusion models,
    slaney/slaney otherwise. transformers feeds float waveforms as they are, so no int16 round trip.
    ``source`` names where the settings came from in errors and notes.
    """
    kind = pre.get("feature_extractor_type", "ClapFeatureExtractor")
    if kind != "ClapFeatureExtractor":
        raise ModelError(f"{source} describes a {kind!r}, not a ClapFeatureExtractor")
    padding = pre.get("padding", "repeatpad")
    if padding != "repeatpad":
        raise ModelError(f"{source} padding={padding!r} is not supported (only 'repeatpad')")
    truncation = pre.get("truncation", "fusion")
    if truncation not in SUPPORTED_TRUNCATION:
        raise ModelError(
            f"{source} truncation={truncation!r} is not supported (expected one of {SUPPORTED_TRUNCATION})"
        )
    if (truncation == "fusion") != fusion:
        notes.append(
            f"{source} truncation={truncation!r} does not match a "
            f"{'fusion' if fusion else 'non-fusion'} model; the model's architecture decides"
        )
    sr = int(pre.get("sampling_rate", 48_000))
    n_fft = int(pre.get("fft_window_size", pre.get("n_fft", 1024)))
    f_min = float(pre.get("frequency_min", 0.0))
    if f_min == 0:
        notes.append(
            f"{source} frequency_min is 0 (the transformers class default; every "
            "public CLAP checkpoint was trained with 50 Hz); following the folder as written"
        )
    top_db = pre.get("top_db")
    try:
        return AudioFrontend(
            sample_rate=sr,
            clip_samples=int(round(float(pre.get("max_length_s", 10)) * sr)),
            n_fft=n_fft,
            win_length=n_fft,
            hop_length=int(pre.get("hop_length", 480)),
            n_mels=int(pre.get("feature_size", 64)),
            f_min=f_min,
            f_max=float(pre.get("frequency_max", 14_000)),
            log=LogSpec(top_db=None if top_db is None else float(top_db)),
            int16_roundtrip=False,
            mel_scale="htk" if fusion else "slaney",
            mel_norm=None if fusion else "slaney",
            long_policy="fusion" if fusion else "center_crop",
        )
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ModelError(f"{source}: unusable front-end settings: {exc}") from exc


def ensure_tokenizer_json(folder: Path, notes: list[str]) -> Path:
    """Return a folder holding ``tokenizer.json`` for this model.

    A slow-tokenizer-only folder (``vocab.json`` + ``merges.txt``) is converted offline with
    ``AutoTokenizer`` into a fresh temporary folder, so the user's model folder is never written to.
    """
    if (folder / "tokenizer.json").is_file():
        return folder
    if not ((folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()):
        raise ModelError(f"{folder}: no tokenizer (need tokenizer.json, or vocab.json + merges.txt)")
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # transformers raises several types for unusable tokenizer files
        raise ModelError(f"{folder}: cannot build a tokenizer from vocab.json + merges.txt: {exc}") from exc
    out = Path(tempfile.mkdtemp(prefix="clap-tokenizer-"))
    tokenizer.save_pretrained(str(out))
    if not (out / "tokenizer.json").is_file():
        raise ModelError(f"{folder}: AutoTokenizer did not produce a tokenizer.json")
    notes.append(f"tokenizer.json built from vocab.json + merges.txt into {out}")
    return out


def _max_text_length(folder: Path, max_positions: int, notes: list[str]) -> int:
    """77 (laion's training length) unless the folder deliberately asks for a shorter window.

    roberta tokenizer configs say 512 (the positional capacity, 514 - 2), which is not a training
    length; only a value below that capacity is taken as a deliberate choice.
    """
    for name in ("tokenizer_config.json", "processor_config.json"):
        if not (folder / name).is_file():
            continue
        value = _read_json(folder / name).get("model_max_length")
        if isinstance(value, int) and 8 <= value < max_positions - 2 and value != LAION_MAX_TEXT_LENGTH:
            notes.append(f"max_text_length {value} from {name}")
            return value
    return LAION_MAX_TEXT_LENGTH


def _check_loading_info(info: dict[str, Any], folder: Path, notes: list[str]) -> None:
    missing = sorted(info.get("missing_keys") or [])
    benign = [k for k in missing if k.rsplit(".", 1)[-1] in _BENIGN_MISSING]
    bad_missing = [k for k in missing if k not in benign]
    unexpected = sorted(info.get("unexpected_keys") or [])
    mismatched = sorted(str(k) for k in (info.get("mismatched_keys") or []))
    problems = describe_key_problems({"missing": bad_missing, "unexpected": unexpected, "shape mismatch": mismatched})
    if problems:
        raise ModelError(f"{folder}: weights do not fit config.json; " + "; ".join(problems))
    if benign:
        notes.append(f"rebuilt {len(benign)} deterministic buffers absent from the weights (e.g. {benign[0]})")


def load_hf_folder(path: str | Path) -> ConvertedModel:
    """Load a Hugging Face CLAP folder offline into an eval-mode float32 ``ClapModel``."""
    import torch
    from transformers import ClapModel

    folder = Path(path)
    if not folder.is_dir():
        raise ModelError(f"{str(folder)!r} is not a folder")
    config = _read_json(folder / "config.json") if (folder / "config.json").is_file() else None
    if config is None or config.get("model_type") != "clap":
        raise ModelError(f"{folder}: config.json is missing or is not a CLAP config (model_type 'clap')")
    notes: list[str] = []
    # read before the (slow) weight load so a folder without a front end fails fast
    pre, pre_source = feature_extractor_settings(folder, notes)
    digest = _weights_digest(folder, notes)
    try:
        model, info = ClapModel.from_pretrained(
            str(folder), local_files_only=True, dtype=torch.float32, output_loading_info=True
        )
    except Exception as exc:  # OSError, RuntimeError (sizes), ValueError (config) ...
        raise ModelError(f"{folder}: transformers could not load the model: {exc}") from exc
    _check_loading_info(info, folder, notes)
    model.float().eval()

    audio_cfg = model.config.audio_config
    text_cfg = model.config.text_config
    fusion = bool(audio_cfg.enable_fusion)
    if fusion and audio_cfg.fusion_type not in (None, "aff_2d"):
        raise ModelError(f"{folder}: fusion_type {audio_cfg.fusion_type!r} is not supported (only aff_2d)")
    if fusion and audio_cfg.fusion_type is None:
        notes.append("config enables fusion with fusion_type null; transformers runs it as aff_2d")
    frontend = hf_frontend(pre, fusion, notes, pre_source)
    if frontend.n_mels != audio_cfg.num_mel_bins:
        raise ModelError(
            f"{folder}: {pre_source} feature_size {frontend.n_mels} != model num_mel_bins {audio_cfg.num_mel_bins}"
        )
    if abs(float(text_cfg.layer_norm_eps) - 1e-12) < 1e-18:
        notes.append("text layer_norm_eps is 1e-12 (transformers' default; RoBERTa used 1e-5); following config.json")
    tokenizer_dir = ensure_tokenizer_json(folder, notes)
    return ConvertedModel(
        model=model,
        frontend=frontend,
        audio_architecture=audio_architecture_name(int(audio_cfg.patch_embeds_hidden_size), list(audio_cfg.depths)),
        text_architecture="roberta",
        tokenizer_dir=tokenizer_dir,
        max_text_length=_max_text_length(folder, int(text_cfg.max_position_embeddings), notes),
        source=str(path),
        source_format="hf_clap",
        source_sha256=digest,
        notes=notes,
    )
