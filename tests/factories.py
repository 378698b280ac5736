"""Tiny random CLAP models and tokenizers for tests: built in seconds, offline, no fixtures on disk.
Thin wrappers over ``training.random_init`` (the same code the demo and benchmark use)."""

from __future__ import annotations

from pathlib import Path

from training.models.config import load_config
from training.random_init import build_clap_model, train_tokenizer

CAPTIONS = [
    "a dog barks in the rain",
    "rain falling on a tin roof",
    "a man speaks while cars pass by",
    "glass breaking on a stone floor",
    "church bells ring in the distance",
    "the sound of a cat",
    "birds singing at dawn",
    "footsteps on gravel",
    "a door creaks open slowly",
    "thunder and wind",
]


def tiny_clap_model(fusion: bool, text_hidden: int = 32, text_heads: int = 2, vocab_size: int = 2048, seed: int = 0):
    """The ``micro`` registry model with every float tensor (norms and running stats included)
    random, so a dropped or mis-mapped tensor changes the output."""
    config = load_config("micro")
    audio = config.audio.model_copy(update={"fusion": fusion})
    text = config.text.model_copy(
        update={
            "config": {
                **config.text.config,
                "hidden_size": text_hidden,
                "num_attention_heads": text_heads,
                "vocab_size": vocab_size,
            }
        }
    )
    config = config.model_copy(update={"audio": audio, "text": text})
    return build_clap_model(config, seed, randomize_norms=True)


def make_tokenizer(dest: Path, vocab_size: int = 400) -> Path:
    return train_tokenizer(dest, vocab_size=vocab_size, corpus=CAPTIONS)


def save_hf_folder(model, dest: Path, **feature_extractor_kwargs) -> Path:
    """``model`` in the Hugging Face layout: weights, config, preprocessor config, tokenizer."""
    from transformers import ClapFeatureExtractor

    fusion = bool(model.config.audio_config.enable_fusion)
    model.save_pretrained(dest)
    kwargs = dict(frequency_min=50, frequency_max=14_000, truncation="fusion" if fusion else "rand_trunc")
    kwargs.update(feature_extractor_kwargs)
    ClapFeatureExtractor(**kwargs).save_pretrained(dest)
    make_tokenizer(dest)
    return dest
