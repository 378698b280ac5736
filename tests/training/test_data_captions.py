"""Keyword-to-caption templates, de-biasing, the caption policy and the local seq2seq captioner."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.captions import (
    TEMPLATES,
    CaptionPolicy,
    Seq2SeqCaptioner,
    combine_captions,
    debias,
    indefinite_article,
    join_list,
    keywords_to_caption,
)
from training.data.records import ClipRecord


def test_keywords_to_caption_without_rng_is_the_first_template_in_order():
    assert (
        keywords_to_caption(["Dog", "owl", "rain", "dog", " ", "barking"])
        == "The sound of a dog, an owl, rain and barking"
    )
    assert keywords_to_caption(["cars"]) == "The sound of cars"
    assert keywords_to_caption(["DJ", "the sea"]) == "The sound of a DJ and the sea"
    with pytest.raises(ValueError):
        keywords_to_caption(["", "  "])


def test_keywords_to_caption_with_rng_is_deterministic_and_varied():
    tags = ["dog", "owl", "engine"]
    outputs = {keywords_to_caption(tags, np.random.default_rng(seed)) for seed in range(60)}
    again = {keywords_to_caption(tags, np.random.default_rng(seed)) for seed in range(60)}
    assert outputs == again and len(outputs) > 10
    for text in outputs:
        assert all(phrase in text.lower() for phrase in ("a dog", "an owl", "an engine"))
        assert ", and" not in text and text[0].isupper()
    starts = {t.split(" a")[0] for t in outputs}
    assert any(t.endswith("can be heard") for t in outputs) and len(starts) >= 3
    assert len(TEMPLATES) >= 3


@pytest.mark.parametrize(
    "word, article",
    [("owl", "an"), ("dog", "a"), ("hour", "an"), ("unicorn", "a"), ("European", "a"), ("engine", "an")],
)
def test_indefinite_article(word, article):
    assert indefinite_article(word) == article


def test_join_list_has_no_oxford_comma():
    assert join_list([]) == "" and join_list(["a"]) == "a"
    assert join_list(["a", "b"]) == "a and b" and join_list(["a", "b", "c"]) == "a, b and c"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("A woman speaks", "A person speaks"),
        ("a man and a woman talk", "a person and a person talk"),
        ("Two men and three WOMEN laugh", "Two people and three PEOPLE laugh"),
        ("Boys and girls shout", "People and people shout"),
        ("A lady and a gentleman", "A person and a person"),
        ("The man's dog barks", "The person's dog barks"),
        ("He coughs, then she laughs", "The person coughs, then the person laughs"),
        ("She hands her phone to him", "The person hands their phone to them"),
        ("A crowd cheers for her.", "A crowd cheers for them."),
        ("A male announcer speaks", "An announcer speaks"),
        ("Female vocals over a guitar", "Vocals over a guitar"),
        ("A male speaks", "A person speaks"),
        ("Manhattan traffic at night", "Manhattan traffic at night"),
        ("human voices and a fireman", "human voices and a fireman"),
        ("the theme of Shere Khan", "the theme of Shere Khan"),
    ],
)
def test_debias(text, expected):
    assert debias(text) == expected
    assert debias(expected) == expected


def test_combine_captions():
    assert combine_captions("A dog barks.", "Rain falls on a roof") == "A dog barks and rain falls on a roof"
    assert combine_captions("birds sing", "DJ mixes") == "Birds sing and DJ mixes"


def _record(captions=(), tags=()):
    return ClipRecord("x.wav", tuple(captions), tuple(tags), source="m.jsonl", line=3)


def test_policy_picks_deterministically_from_the_rng():
    both = _record(["A man talks", "Someone talks", "Talking"], ["speech", "room"])
    policy = CaptionPolicy(keyword_prob=0.5)
    picks = [policy.pick(both, np.random.default_rng(s)) for s in range(40)]
    assert picks == [policy.pick(both, np.random.default_rng(s)) for s in range(40)]
    assert set(picks) - set(both.captions)  # some keyword captions...
    assert set(picks) & set(both.captions) == set(both.captions)  # ...and every caption
    rng = np.random.default_rng(0)
    assert (
        CaptionPolicy(keyword_prob=1.0)
        .pick(both, rng)
        .endswith(("speech and a room", "a room and speech", "can be heard"))
    )
    assert CaptionPolicy(random_caption=False).pick(both, rng) == "A man talks"
    assert CaptionPolicy(random_caption=False, debias=True).pick(both, rng) == "A person talks"
    assert CaptionPolicy(random_template=False).pick(_record(tags=["dog"]), rng) == "The sound of a dog"
    assert CaptionPolicy(generator=lambda tags: "from model").pick(_record(tags=["dog"]), rng) == "from model"
    with pytest.raises(ValueError, match="m.jsonl:3"):
        CaptionPolicy().pick(_record(), rng)
    with pytest.raises(ValueError):
        CaptionPolicy(keyword_prob=1.5)


# ----------------------------------------------------------------------------- seq2seq plumbing

WORDS = "dog rain man woman barks falls a the keywords write an audio caption using the: with , :".split()


@pytest.fixture(scope="module")
def tiny_bart(tmp_path_factory):
    """A random 1-layer BART whose output bias makes it always say "man": gibberish, but it shows
    the loaded model, not a default, produced the text, and that de-biasing is applied."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {w: k for k, w in enumerate(["<s>", "<pad>", "</s>", "<unk>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    folder = tmp_path_factory.mktemp("tiny_bart")
    transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    ).save_pretrained(folder)
    sizes = dict(d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2)
    sizes |= dict(encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64)
    token_ids = dict(pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)
    config = transformers.BartConfig(
        vocab_size=len(vocab), **sizes, **token_ids, forced_bos_token_id=None, forced_eos_token_id=None
    )
    torch.manual_seed(0)
    model = transformers.BartForConditionalGeneration(config)
    with torch.no_grad():
        model.final_logits_bias[0, vocab["man"]] = 100.0
    model.save_pretrained(folder)
    return folder


def test_seq2seq_captioner_loads_offline_is_deterministic_and_debiased(tiny_bart):
    captioner = Seq2SeqCaptioner(tiny_bart, max_new_tokens=4)
    text = captioner(["dog", "rain"])
    assert text == captioner(["dog", "rain"]) == Seq2SeqCaptioner(tiny_bart, max_new_tokens=4)(["dog", "rain"])
    raw = Seq2SeqCaptioner(tiny_bart, max_new_tokens=4, debias_output=False)(["dog", "rain"])
    assert raw.split() == ["man"] * 4
    assert text == debias(raw) == "person person person person"
    assert captioner.generate([["dog"], ["rain", "dog", "dog"]]) == [text, text]
    import pickle

    assert pickle.loads(pickle.dumps(captioner))._loaded is None  # workers reload, lazily
    policy = CaptionPolicy(generator=captioner)
    assert policy.pick(_record(tags=["dog"]), np.random.default_rng(0)) == text
    with pytest.raises(ValueError, match="keywords"):
        Seq2SeqCaptioner(tiny_bart, prompt="no placeholder")
