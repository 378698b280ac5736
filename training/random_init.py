"""Model registry (JSON configs in ``training/model_configs``) and random-weight model folders.

    clap-train init-random micro models/micro-random
    clap-train init-random htsat-tiny-roberta /tmp/bench-model --variants fp32,int8

Random weights embed nothing meaningful; such folders exist for tests, benchmarks and a demo that
runs on a fresh machine with no checkpoint. A byte-level BPE tokenizer with RoBERTa's special
tokens is trained on the fly on a small caption corpus, so no tokenizer download is needed.
"""

from __future__ import annotations

import json
from pathlib import Path

from indexer.errors import ModelError
from training.convert import ConvertedModel

CONFIG_DIR = Path(__file__).with_name("model_configs")

TOKENIZER_CORPUS = [
    "a dog barks", "a dog barking in the rain", "rain falling on a tin roof", "heavy rain and thunder",
    "a man speaks while cars pass by in the distance", "a woman laughs", "children playing in a park",
    "glass breaking on a stone floor", "church bells ring in the distance", "the sound of a cat meowing",
    "birds singing at dawn", "footsteps on gravel", "footsteps on wood", "a door creaks open slowly",
    "wind blowing through trees", "waves crashing on the shore", "a car engine starts", "a jet flies over",
    "a helicopter hovers", "a train passes by", "keyboard typing", "a clock ticking", "water dripping",
    "a fire crackling", "a cow moos", "a rooster crows", "sheep bleating", "a horse neighs",
    "piano and violin duet, slow tempo", "drum kit playing a rock beat", "an electric guitar riff",
    "This is a sound of applause.", "This is a sound of a siren.", "This is a sound of a chainsaw.",
]


def list_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def load_config(name_or_path: str | Path) -> dict:
    path = Path(name_or_path)
    if not path.is_file():
        path = CONFIG_DIR / f"{name_or_path}.json"
    if not path.is_file():
        raise ModelError(f"unknown model config {name_or_path!r}; known: {', '.join(list_configs())}")
    return json.loads(path.read_text())


def build_clap_model(config: dict, seed: int = 0, *, randomize_norms: bool = False):
    """A transformers ClapModel from a registry config. ``randomize_norms`` also draws every
    norm/BatchNorm tensor at random (tests use it so a dropped tensor changes the output)."""
    import torch
    from transformers import ClapConfig, ClapModel

    torch.manual_seed(seed)
    audio = dict(config["audio"], enable_fusion=config["fusion"],
                 fusion_type="aff_2d" if config["fusion"] else None)
    model = ClapModel(ClapConfig(text_config=dict(config["text"]), audio_config=audio,
                                 projection_dim=config.get("projection_dim", 512)))
    if randomize_norms:
        gen = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for name, tensor in model.state_dict().items():
                if tensor.is_floating_point():
                    tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.2)
                    if name.endswith("running_var"):
                        tensor.abs_().add_(0.5)
                elif name.endswith("num_batches_tracked"):
                    tensor.fill_(int(torch.randint(1, 1000, (1,), generator=gen)))
    return model.eval()


def train_tokenizer(dest: Path, vocab_size: int = 2048, corpus: list[str] | None = None) -> Path:
    """Byte-level BPE with RoBERTa's ids for <s>=0 <pad>=1 </s>=2 <unk>=3 <mask>=4, saved as tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator((corpus or TOKENIZER_CORPUS) * 5, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True,
                                                      add_prefix_space=False)
    dest.mkdir(parents=True, exist_ok=True)
    tok.save(str(dest / "tokenizer.json"))
    return dest


def random_converted(config_name: str, tokenizer_dir: Path, seed: int = 0) -> ConvertedModel:
    """A random-weight model with the LAION front end, ready for ``write_model_folder``."""
    from training.convert.laion import laion_frontend

    config = load_config(config_name)
    train_tokenizer(tokenizer_dir, vocab_size=min(config.get("tokenizer_vocab_size", 2048),
                                                  config["text"]["vocab_size"]))
    frontend = laion_frontend(config["fusion"]).model_copy(update={"int16_roundtrip": False})
    return ConvertedModel(
        model=build_clap_model(config, seed), frontend=frontend,
        audio_architecture=f"htsat-{config_name}", text_architecture="roberta",
        tokenizer_dir=tokenizer_dir, max_text_length=77, source=f"random:{config_name}:seed={seed}",
        source_format="random", source_sha256=None,
        notes=[f"RANDOM WEIGHTS from config {config_name!r} (seed {seed}): vectors carry no meaning"],
    )
