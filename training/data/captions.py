"""Caption text for training: keyword-to-caption, de-biasing, and which text each sample gets.

Many audio datasets ship keywords (tags, class labels) rather than sentences, while users search
with sentences. The CLAP paper (Wu et al., 2023) turns keywords into captions and de-biases the
result so the model does not learn gender from text that the audio cannot support. Here:

* :func:`keywords_to_caption`: cheap template sentences ("The sound of a dog, rain and a car");
* :class:`Seq2SeqCaptioner`: the paper's approach with any LOCAL seq2seq model (T5, BART...),
  greedy/beam decoding so a caption is reproducible; best run once offline over the manifest;
* :func:`debias`: gendered words -> "person"/"people" (whole words only: "Manhattan" stays);
* :class:`CaptionPolicy`: per sample, a given caption or a keyword caption, drawn from the rng the
  dataset passes, so the choice is reproducible for a (seed, epoch, item).

Torch-free: transformers/torch are imported only inside :class:`Seq2SeqCaptioner`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from training.data.records import ClipRecord

TEMPLATES = (
    "the sound of {}",
    "a recording of {}",
    "{} can be heard",
    "this is the sound of {}",
    "an audio clip of {}",
)

# Words after which a tag needs no article, and uncountable sounds ("the sound of rain").
_DETERMINERS = frozenset(
    "a an the some many several few this that these those my your his her its our their no one "
    "two three four five".split()
)
_MASS_NOUNS = frozenset(
    "music speech rain wind water noise applause laughter silence traffic thunder static fire "
    "snow hail rustling chatter babble gunfire machinery wildlife rock jazz pop techno hip-hop "
    "electronica reggae folk blues country funk soul ambience ambient white pink brown".split()
)


def indefinite_article(word: str) -> str:
    """ "a" or "an" by the (approximate) sound of ``word``: an owl, a unicorn, an hour."""
    w = word.lower()
    if w.startswith(("uni", "use", "usu", "uti", "eu", "one", "once", "ubiq", "ur")):
        return "a"
    if w.startswith(("hour", "honest", "honor", "honour", "heir")):
        return "an"
    return "an" if w[:1] in "aeiou" else "a"


def clean_tags(tags: Sequence[str]) -> list[str]:
    """Stripped, whitespace-collapsed, case-insensitively de-duplicated tags, in order.
    Capitalised words ("Dog") are lower-cased; acronyms and mixed case ("DJ") are kept."""
    out: dict[str, str] = {}
    for tag in tags:
        t = " ".join(str(tag).split())
        if not t:
            continue
        if t == t.capitalize() or t.islower():
            t = t.lower()
        out.setdefault(t.lower(), t)
    return list(out.values())


def with_article(phrase: str) -> str:
    """ "dog" -> "a dog", "owl" -> "an owl"; plurals, gerunds, mass nouns and phrases that already
    start with a determiner are left alone ("dogs", "barking", "rain", "the sea")."""
    words = phrase.split()
    first, last = words[0].lower(), words[-1].lower()
    if first in _DETERMINERS or first[:1].isdigit() or last in _MASS_NOUNS:
        return phrase
    if last.endswith("ing") or (last.endswith("s") and not last.endswith(("ss", "us"))):
        return phrase
    return f"{indefinite_article(words[0])} {phrase}"


def join_list(items: Sequence[str]) -> str:
    """ "a", "a and b", "a, b and c" (no Oxford comma)."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def keywords_to_caption(tags: Sequence[str], rng: np.random.Generator | None = None) -> str:
    """A sentence from keywords. Without ``rng``: the first template, tags in their order (fully
    deterministic). With ``rng``: a random template and a random tag order."""
    items = clean_tags(tags)
    if not items:
        raise ValueError("keywords_to_caption needs at least one non-empty tag")
    template = TEMPLATES[0]
    if rng is not None:
        items = [items[k] for k in rng.permutation(len(items))]
        template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    return _sentence(template.format(join_list([with_article(t) for t in items])))


def combine_captions(first: str, second: str) -> str:
    """Caption of two mixed clips: "A dog barks" + "Rain falls." -> "A dog barks and rain falls"."""
    a, b = first.strip().rstrip(".!"), second.strip().rstrip(".!")
    if b[:2] != b[:2].upper():  # keep acronyms ("DJ ...") as they are
        b = b[:1].lower() + b[1:]
    return _sentence(f"{a} and {b}")


# ----------------------------------------------------------------------------- de-biasing

_NEUTRAL = {
    **dict.fromkeys(("man", "woman", "boy", "girl", "male", "female", "lady", "gentleman", "guy"), "person"),
    **dict.fromkeys(("men", "women", "boys", "girls", "males", "females", "ladies", "gentlemen", "guys"), "people"),
    "he": "the person",
    "she": "the person",
    "him": "them",
    "his": "their",
    "hers": "theirs",
    "himself": "themselves",
    "herself": "themselves",
}
# "her" is "them" before these (or punctuation/end), otherwise possessive "their".
_AFTER_OBJECT_HER = frozenset("and or but to from in on at with as while when because then a an the for by".split())
# "a male voice" -> "a voice": dropping the adjective reads better than "a person voice".
_VOICE_NOUNS = frozenset(
    "voice voices vocal vocals vocalist speech speaker speakers singer singers singing speaking "
    "talking narrator narration announcer presenter host child children adult adults teenager "
    "laughter laugh laughing chorus choir crowd student students cough coughing scream screaming "
    "whisper whispering shout shouting yell yelling".split()
)
_WORD = r"(?<![\w-]){}(?![\w-])"
_ADJECTIVE = re.compile(
    r"(?<![\w-])(?:(a|an)\s+)?(?:male|female)\s+("
    + "|".join(sorted(_VOICE_NOUNS, key=len, reverse=True))
    + r")(?![\w-])",
    re.IGNORECASE,
)
_GENDERED = re.compile(_WORD.format("(" + "|".join(sorted(_NEUTRAL, key=len, reverse=True)) + ")"), re.IGNORECASE)
_HER = re.compile(_WORD.format("(her)") + r"(\s*)(\w*)", re.IGNORECASE)


def _match_case(source: str, word: str) -> str:
    if len(source) > 1 and source.isupper():
        return word.upper()
    return word[:1].upper() + word[1:] if source[:1].isupper() else word


def _drop_adjective(m: re.Match) -> str:
    article, noun = m.group(1), m.group(2)
    if article is None:
        return _match_case(m.group(0), noun)
    return f"{_match_case(article, indefinite_article(noun))} {noun}"


def _her(m: re.Match) -> str:
    her, space, nxt = m.group(1), m.group(2), m.group(3)
    word = "them" if not nxt or nxt.lower() in _AFTER_OBJECT_HER else "their"
    return _match_case(her, word) + space + nxt


def debias(text: str) -> str:
    """Replace gendered words with neutral ones, whole words only, keeping capitalisation:
    "A woman speaks" -> "A person speaks", "Two men talk" -> "Two people talk", "he" -> "the
    person", "his/her" -> "their"; "Manhattan", "human", "man-made" are untouched."""
    text = _ADJECTIVE.sub(_drop_adjective, text)
    text = _HER.sub(_her, text)
    return _GENDERED.sub(lambda m: _match_case(m.group(1), _NEUTRAL[m.group(1).lower()]), text)


# ----------------------------------------------------------------------------- generators


class CaptionGenerator(Protocol):
    """Anything that turns a record's tags into one caption."""

    def __call__(self, tags: Sequence[str]) -> str: ...


class Seq2SeqCaptioner:
    """Keywords -> caption with a local seq2seq model (the CLAP paper used T5).

    Loads only from ``model_dir`` (``local_files_only``: training never reaches a hub), decodes
    greedily (``num_beams=1``) or with beam search, never samples, so one input always gives one
    caption; the output is de-biased unless ``debias_output=False``. The model loads on first
    use and is not pickled, so DataLoader workers each load their own copy; for real models
    prefer captioning the whole manifest once, offline.
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        prompt: str = "Write an audio caption using the keywords: {keywords}",
        max_new_tokens: int = 40,
        num_beams: int = 1,
        debias_output: bool = True,
        device: str = "cpu",
    ):
        if "{keywords}" not in prompt:
            raise ValueError("prompt must contain '{keywords}'")
        self.model_dir = Path(model_dir)
        self.prompt, self.max_new_tokens, self.num_beams = prompt, max_new_tokens, num_beams
        self.debias_output, self.device = debias_output, device
        self._loaded = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_loaded": None}

    def _load(self):
        if self._loaded is None:
            from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
            model = AutoModelForSeq2SeqLM.from_pretrained(str(self.model_dir), local_files_only=True)
            self._loaded = tokenizer, model.to(self.device).eval()
        return self._loaded

    def generate(self, batch: Sequence[Sequence[str]]) -> list[str]:
        """One caption per tag list."""
        import torch

        tokenizer, model = self._load()
        prompts = [self.prompt.format(keywords=", ".join(clean_tags(tags))) for tags in batch]
        enc = tokenizer(prompts, return_tensors="pt", padding=True, truncation=True).to(self.device)
        with torch.inference_mode():
            out = model.generate(**enc, do_sample=False, num_beams=self.num_beams, max_new_tokens=self.max_new_tokens)
        texts = [" ".join(t.split()) for t in tokenizer.batch_decode(out, skip_special_tokens=True)]
        return [debias(t) for t in texts] if self.debias_output else texts

    def __call__(self, tags: Sequence[str]) -> str:
        return self.generate([tags])[0]


# ----------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class CaptionPolicy:
    """Which text a training sample gets.

    A record with captions and tags gets a keyword caption with probability ``keyword_prob``,
    otherwise one of its captions; a record with only one kind uses that kind.
    """

    keyword_prob: float = 0.0  # P(keyword caption) when a record has both captions and tags
    random_caption: bool = True  # one caption at random; False: always the first (evaluation)
    random_template: bool = True  # keyword captions: random template and tag order
    debias: bool = False  # apply debias() to the chosen text
    generator: CaptionGenerator | None = None  # keyword captions from a model instead of templates

    def __post_init__(self) -> None:
        if not 0.0 <= self.keyword_prob <= 1.0:
            raise ValueError("keyword_prob must be in [0, 1]")

    def pick(self, record: ClipRecord, rng: np.random.Generator) -> str:
        """The caption for ``record``; the same ``rng`` state always gives the same text."""
        captions, tags = record.captions, record.tags
        use_keywords = bool(tags) and (not captions or rng.random() < self.keyword_prob)
        if use_keywords:
            if self.generator is not None:
                text = self.generator(tags)
            else:
                text = keywords_to_caption(tags, rng if self.random_template else None)
        elif captions:
            text = captions[int(rng.integers(len(captions))) if self.random_caption else 0]
        else:
            raise ValueError(f"{record.where}: record has no caption and no tags")
        return debias(text) if self.debias else text
