"""Tiny random CLAP models and tokenizers for tests: built in seconds, offline, no fixtures on disk."""

from __future__ import annotations

from pathlib import Path

CAPTIONS = [
    "a dog barks in the rain", "rain falling on a tin roof", "a man speaks while cars pass by",
    "glass breaking on a stone floor", "church bells ring in the distance", "the sound of a cat",
    "birds singing at dawn", "footsteps on gravel", "a door creaks open slowly", "thunder and wind",
]


def tiny_clap_model(fusion: bool, text_hidden: int = 32, text_heads: int = 2, vocab_size: int = 2048,
                    seed: int = 0):
    """A ClapModel with golden-tiny sizes whose every float tensor (norms, running stats, logit
    scales included) is random, so a dropped or mis-mapped tensor changes the output."""
    import torch
    from transformers import ClapConfig, ClapModel

    torch.manual_seed(seed)
    audio = dict(patch_embeds_hidden_size=16, depths=[1, 1, 2, 1], num_attention_heads=[1, 2, 4, 8],
                 hidden_size=128, window_size=8, spec_size=256, enable_fusion=fusion,
                 fusion_type="aff_2d" if fusion else None)
    text = dict(vocab_size=vocab_size, hidden_size=text_hidden, num_hidden_layers=2,
                num_attention_heads=text_heads, intermediate_size=64, max_position_embeddings=514,
                layer_norm_eps=1e-5)
    model = ClapModel(ClapConfig(text_config=text, audio_config=audio, projection_dim=512))
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=gen) * 0.2)
                if name.endswith("running_var"):
                    t.abs_().add_(0.5)
            elif name.endswith("num_batches_tracked"):
                t.fill_(int(torch.randint(1, 1000, (1,), generator=gen)))
    return model.eval()


def make_tokenizer(dest: Path, vocab_size: int = 400) -> Path:
    """A byte-level BPE with RoBERTa's special tokens and post-processor, trained on CAPTIONS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CAPTIONS * 5, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True, add_prefix_space=False)
    dest.mkdir(parents=True, exist_ok=True)
    tok.save(str(dest / "tokenizer.json"))
    return dest


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
