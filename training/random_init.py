"""Random-weight model folders and tokenizers trained on the fly, for tests, benchmarks and a
demo that runs on a fresh machine with no checkpoint.

    clap-train init-random micro models/micro-random
    clap-train init-random cnn10-minilm /tmp/bench-model --variants fp32,int8

Random weights embed nothing meaningful. A tokenizer in the text family's style (byte-level BPE
with RoBERTa's special tokens, WordPiece with BERT's, BPE with CLIP's) is trained on a small
caption corpus, so no tokenizer download is needed.
"""

from __future__ import annotations

from pathlib import Path

from training.convert import ConvertedModel
from training.models.config import ModelConfig, load_config

TOKENIZER_CORPUS = [
    "a dog barks",
    "a dog barking in the rain",
    "rain falling on a tin roof",
    "heavy rain and thunder",
    "a man speaks while cars pass by in the distance",
    "a woman laughs",
    "children playing in a park",
    "glass breaking on a stone floor",
    "church bells ring in the distance",
    "the sound of a cat meowing",
    "birds singing at dawn",
    "footsteps on gravel",
    "footsteps on wood",
    "a door creaks open slowly",
    "wind blowing through trees",
    "waves crashing on the shore",
    "a car engine starts",
    "a jet flies over",
    "a helicopter hovers",
    "a train passes by",
    "keyboard typing",
    "a clock ticking",
    "water dripping",
    "a fire crackling",
    "a cow moos",
    "a rooster crows",
    "sheep bleating",
    "a horse neighs",
    "piano and violin duet, slow tempo",
    "drum kit playing a rock beat",
    "an electric guitar riff",
    "This is a sound of applause.",
    "This is a sound of a siren.",
    "This is a sound of a chainsaw.",
]


def build_clap_model(config: ModelConfig | str | dict, seed: int = 0, *, randomize_norms: bool = False):
    """A transformers ``ClapModel`` (the Hugging Face layout) for an HTSAT + RoBERTa config; tests
    and the benchmark use it as the reference implementation. ``randomize_norms`` also draws every
    norm/BatchNorm tensor at random, so a dropped tensor changes the output."""
    import torch
    from transformers import ClapConfig, ClapModel

    config = config if isinstance(config, ModelConfig) else load_config(config)
    if config.audio.type != "htsat" or config.text.type != "roberta":
        raise ValueError("the transformers ClapModel layout needs an htsat audio and a roberta text tower")
    torch.manual_seed(seed)
    audio = dict(config.audio.config, enable_fusion=config.fusion, fusion_type="aff_2d" if config.fusion else None)
    model = ClapModel(
        ClapConfig(text_config=dict(config.text.config), audio_config=audio, projection_dim=config.embed_dim)
    )
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


def train_tokenizer(
    dest: Path, vocab_size: int = 2048, corpus: list[str] | None = None, style: str = "roberta"
) -> Path:
    """Train a small tokenizer and save it as ``dest/tokenizer.json``.

    roberta: byte-level BPE, <s>=0 <pad>=1 </s>=2 <unk>=3 <mask>=4. bert: lower-cased WordPiece,
    [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4. clip: lower-cased byte-level BPE,
    <|startoftext|>=0 <|endoftext|>=2 (also the padding token, as in CLIP) <pad>=1.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    texts = (corpus or TOKENIZER_CORPUS) * 5
    if style == "bert":
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
        vocab = _wordpiece_vocab(texts, specials, vocab_size, normalizer, pre_tokenizer)
        tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
        tok.normalizer, tok.pre_tokenizer = normalizer, pre_tokenizer
        tok.decoder = decoders.WordPiece()
        tok.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    elif style in ("roberta", "clip"):
        specials = (
            ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
            if style == "roberta"
            else ["<|startoftext|>", "<pad>", "<|endoftext|>"]
        )
        tok = Tokenizer(models.BPE())
        if style == "clip":
            tok.normalizer = normalizers.Lowercase()
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator(
            texts,
            trainers.BpeTrainer(
                vocab_size=vocab_size,
                special_tokens=specials,
                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                show_progress=False,
            ),
        )
        bos, eos = specials[0], specials[2]
        tok.post_processor = processors.RobertaProcessing((eos, 2), (bos, 0), trim_offsets=True, add_prefix_space=False)
    else:
        raise ValueError(f"unknown tokenizer style {style!r}")
    dest.mkdir(parents=True, exist_ok=True)
    tok.save(str(dest / "tokenizer.json"))
    return dest


def _wordpiece_vocab(texts: list[str], specials: list[str], size: int, normalizer, pre_tokenizer) -> dict[str, int]:
    """A deterministic WordPiece vocabulary: specials, every character (alone and as a ``##``
    continuation), then whole words by frequency (ties by spelling). tokenizers' WordPiece
    trainer breaks count ties in hash order, so the same corpus gave different ids from run to
    run, and a training run must be reproducible from its command line."""
    from collections import Counter

    words: Counter[str] = Counter()
    for text in texts:
        words.update(w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for w in words for c in w})
    vocab = [*specials, *chars, *(f"##{c}" for c in chars)]
    seen = set(vocab)
    for word, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(vocab) >= size:
            break
        if word not in seen:
            vocab.append(word)
            seen.add(word)
    return {token: i for i, token in enumerate(vocab)}


def random_converted(config_name: str | Path | dict, tokenizer_dir: Path, seed: int = 0) -> ConvertedModel:
    """A random-weight model of any registry config, ready for ``write_model_folder``."""
    from training.models.factory import create_model

    config = load_config(config_name)
    vocab = min(config.tokenizer_vocab_size, int(config.text.config.get("vocab_size", 2048)))
    train_tokenizer(tokenizer_dir, vocab_size=vocab, style=config.text.type)
    label = config_name if isinstance(config_name, (str, Path)) else "custom"
    model = create_model(config, seed=seed).eval()
    if config.head is not None:  # label-space anchors from this (random) text tower
        from indexer.text import TextTokenizer
        from training.models.clap import refresh_anchors

        refresh_anchors(model, TextTokenizer(Path(tokenizer_dir) / "tokenizer.json", max_length=config.text.max_length))
    return ConvertedModel(
        model=model,
        frontend=config.audio_frontend(),
        audio_architecture=architecture_name(config, "audio"),
        text_architecture=config.text.type,
        tokenizer_dir=tokenizer_dir,
        max_text_length=config.text.max_length,
        source=f"random:{label}:seed={seed}",
        source_format="random",
        source_sha256=None,
        notes=[f"RANDOM WEIGHTS from config {label!r} (seed {seed}): vectors carry no meaning"],
    )


def architecture_name(config: ModelConfig, tower: str) -> str:
    if tower == "text":
        return config.text.type
    if config.audio.type == "cnn":
        return config.audio.preset or "cnn"
    if config.audio.type == "yamnet":
        return "yamnet-mobilenetv1"
    return f"htsat-{config.audio.config.get('patch_embeds_hidden_size', 'custom')}"
