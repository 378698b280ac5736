"""Turn a clip's path (and any text shipped with it) into specific sound-event captions.

Why not one caption per package: a contrastive model learns only what differs between captions.
``0ad/.../cattle/cow_moo_02.ogg`` must read "a cow mooing" and ``footsteps/gravel_3.ogg``
"footsteps on gravel", so each clip gets a phrase built from its own path words:

1. words: the path's words minus noise (numbers, file types, "sfx", "loop", single letters, the
   package's own noise words), with per-source aliases applied (``bd`` -> ``bass drum``);
2. a phrase, by the first rule that fits: footsteps (+ the surface word), an animal (+ its call,
   or the call the path names), a sound source + an action ("a door opening"), else the last
   few content words as a noun phrase;
3. captions: given text first (extra-sfx manifest), then the phrase as a sentence, then a
   keyword caption from :func:`training.data.captions.keywords_to_caption`; all de-biased.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from training.corpus.sources import Source, path_words
from training.data.captions import clean_tags, debias, keywords_to_caption, with_article

NOISE_WORDS = frozenset(
    "ogg oga wav flac mp3 opus sfx snd sound sounds fx loop loops var variant usr share games game "
    "data audio media resource resources assets effects effect sample samples misc generic "
    "the and to a an rcc zip mono stereo short long new old final cut edit mix version "
    "take alt small big large medium wav ambient ambience ambi env".split()
)

ANIMAL_CALLS: dict[str, str] = {
    "cow": "mooing",
    "cattle": "mooing",
    "bull": "bellowing",
    "ox": "lowing",
    "bison": "grunting",
    "dog": "barking",
    "puppy": "yapping",
    "wolf": "howling",
    "coyote": "howling",
    "fox": "yelping",
    "cat": "meowing",
    "kitten": "meowing",
    "lion": "roaring",
    "tiger": "roaring",
    "bear": "growling",
    "sheep": "bleating",
    "lamb": "bleating",
    "goat": "bleating",
    "ram": "bleating",
    "pig": "oinking",
    "piglet": "squealing",
    "boar": "grunting",
    "horse": "neighing",
    "donkey": "braying",
    "chicken": "clucking",
    "hen": "clucking",
    "rooster": "crowing",
    "duck": "quacking",
    "drake": "quacking",
    "goose": "honking",
    "gander": "honking",
    "turkey": "gobbling",
    "owl": "hooting",
    "crow": "cawing",
    "raven": "cawing",
    "bird": "singing",
    "birds": "singing",
    "blackbird": "singing",
    "lark": "singing",
    "cuckoo": "calling",
    "seagull": "calling",
    "gull": "calling",
    "hawk": "screeching",
    "eagle": "screeching",
    "vulture": "screeching",
    "parrot": "squawking",
    "pigeon": "cooing",
    "dove": "cooing",
    "frog": "croaking",
    "frogs": "croaking",
    "toad": "croaking",
    "cricket": "chirping",
    "crickets": "chirping",
    "grasshopper": "chirping",
    "bee": "buzzing",
    "bees": "buzzing",
    "wasp": "buzzing",
    "hornet": "buzzing",
    "mosquito": "buzzing",
    "fly": "buzzing",
    "elephant": "trumpeting",
    "monkey": "chattering",
    "chimp": "screeching",
    "gorilla": "grunting",
    "whale": "singing",
    "dolphin": "clicking",
    "moose": "calling",
    "stag": "bellowing",
    "deer": "calling",
    "camel": "grunting",
    "zebra": "braying",
    "mouse": "squeaking",
    "rat": "squeaking",
    "squirrel": "chattering",
    "seal": "barking",
    "penguin": "calling",
    "turkeys": "gobbling",
    "animal": "calling",
}
# Call words a path may name itself ("cow_moo") -> the gerund to use.
CALL_WORDS: dict[str, str] = {
    "moo": "mooing",
    "bark": "barking",
    "woof": "barking",
    "meow": "meowing",
    "purr": "purring",
    "bleat": "bleating",
    "baa": "bleating",
    "oink": "oinking",
    "grunt": "grunting",
    "neigh": "neighing",
    "whinny": "whinnying",
    "cluck": "clucking",
    "crow": "crowing",
    "quack": "quacking",
    "honk": "honking",
    "hoot": "hooting",
    "caw": "cawing",
    "chirp": "chirping",
    "tweet": "tweeting",
    "croak": "croaking",
    "buzz": "buzzing",
    "howl": "howling",
    "growl": "growling",
    "roar": "roaring",
    "squeal": "squealing",
    "hiss": "hissing",
    "snort": "snorting",
    "canter": "cantering",
    "gallop": "galloping",
    "trot": "trotting",
    "call": "calling",
    "sing": "singing",
    "song": "singing",
    "flapping": "flapping its wings",
    "flap": "flapping its wings",
    "fly": "flying",
    "eat": "eating",
    "drink": "drinking",
}
FOOTSTEP_WORDS = frozenset("footstep footsteps step steps walk walking singlesteps run running".split())
SURFACES = frozenset(
    "gravel grass sand snow wood wooden metal stone dirt mud water leaves concrete carpet tile ice "
    "glass rock hard soft dry wet floor ground forest".split()
)
# Action words -> gerunds: "door_open" -> "a door opening".
ACTIONS: dict[str, str] = {
    "open": "opening",
    "opening": "opening",
    "close": "closing",
    "closing": "closing",
    "shut": "shutting",
    "break": "breaking",
    "breaking": "breaking",
    "shatter": "shattering",
    "crack": "cracking",
    "cracking": "cracking",
    "fall": "falling",
    "falling": "falling",
    "drop": "dropping",
    "roll": "rolling",
    "rolling": "rolling",
    "bounce": "bouncing",
    "slide": "sliding",
    "drip": "dripping",
    "pour": "pouring",
    "splash": "splashing",
    "bubble": "bubbling",
    "boil": "boiling",
    "burn": "burning",
    "crackle": "crackling",
    "explode": "exploding",
    "ring": "ringing",
    "ringing": "ringing",
    "tick": "ticking",
    "knock": "knocking",
    "creak": "creaking",
    "squeak": "squeaking",
    "idle": "idling",
    "start": "starting",
    "starting": "starting",
    "stop": "stopping",
    "accel": "accelerating",
    "revving": "revving",
    "moving": "moving",
    "turning": "turning",
    "spin": "spinning",
    "dig": "digging",
    "chop": "chopping",
    "saw": "sawing",
    "sawing": "sawing",
    "hammer": "hammering",
    "hammering": "hammering",
    "cut": "cutting",
    "grind": "grinding",
    "weaving": "weaving",
    "sharpening": "sharpening",
    "flush": "flushing",
    "whistle": "whistling",
    "blow": "blowing",
    "rattle": "rattling",
    "flapping": "flapping",
    "flying": "flying",
    "screech": "screeching",
    "crank": "cranking",
    "cranking": "cranking",
    "takeoff": "taking off",
    "inflate": "inflating",
    "pop": "popping",
    "swish": "swishing",
    "place": "being placed",
    "dug": "being dug",
    "cool": "cooling",
    "strike": "striking",
}
SKIP_IN_PHRASE = frozenset("in on at of with by from for".split())
# Percussion words -> the instrument name used in "a snare drum hit".
PERCUSSION: dict[str, str] = {
    "hi hat": "hi-hat",
    "snare": "snare drum",
    "bass drum": "bass drum",
    "kick drum": "kick drum",
    "kick": "kick drum",
    "tom": "tom drum",
    "drum bass": "bass drum",
    "crash cymbal": "crash cymbal",
    "ride cymbal": "ride cymbal",
    "cymbal": "cymbal",
    "tom drum": "tom drum",
    "conga drum": "conga drum",
    "conga": "conga drum",
    "bongo": "bongo drum",
    "cowbell": "cowbell",
    "clap": "hand clap",
    "rimshot": "rimshot",
    "tambourine": "tambourine",
    "shaker": "shaker",
    "agogo": "agogo bell",
    "tabla": "tabla",
    "triangle": "triangle",
    "woodblock": "wood block",
    "timpani": "timpani",
    "gong": "gong",
    "maracas": "maracas",
    "cabasa": "cabasa",
    "guiro": "guiro",
    "claves": "claves",
}
_PERC_MODS = ("closed", "open", "pedal", "muted", "high", "low", "electronic", "acoustic")
_HAS_DIGIT = re.compile(r"\d")


def clip_words(source: Source, rel_path: str) -> list[str]:
    """Content words of a path, in order, de-duplicated, with the source's aliases applied."""
    stem = re.sub(r"\.[A-Za-z0-9]+$", "", rel_path)
    raw = path_words(stem)
    out: list[str] = []
    for w in raw:
        for part in source.aliases.get(w, w).split():
            if len(part) < 2 or part in NOISE_WORDS or part in source.noise_words or _HAS_DIGIT.search(part):
                continue
            out.append(part)
    return list(dict.fromkeys(out))


_MASS = frozenset(
    "glass water gravel sand snow ice wood metal lava steam grass paper rain wind "
    "fire thunder traffic machinery static applause laughter typing".split()
)


def mass_aware_article(phrase: str) -> str:
    """``with_article`` that also leaves materials alone ("glass breaking", not "a glass ...")."""
    words = phrase.split()
    return phrase if words[-1] in _MASS or words[0] in _MASS else with_article(phrase)


def event_phrase(words: Sequence[str], hint: str | None = None, head: Sequence[str] = ()) -> str | None:
    """The most specific phrase the words support, or ``hint``, or None when there is nothing.
    ``head``: the file name's own words, preferred over folder words for the plain noun phrase
    (``mammals/rodents/beaver`` -> "a beaver", not "a mammals rodents beaver")."""
    ws = list(words)
    while ws and ws[0] in SKIP_IN_PHRASE:
        ws.pop(0)
    while ws and ws[-1] in SKIP_IN_PHRASE:
        ws.pop()
    if not ws:
        return hint
    pairs = [f"{a} {b}" for a, b in zip(ws, ws[1:])]
    perc = next((PERCUSSION[p] for p in reversed(pairs) if p in PERCUSSION), None) or next(
        (PERCUSSION[w] for w in reversed(ws) if w in PERCUSSION), None
    )
    if perc:
        mods = [m for m in _PERC_MODS if m in ws]
        name = " ".join(mods[:1] + [perc])
        return f"{with_article(name)} hit"
    if any(w in FOOTSTEP_WORDS for w in ws):
        surface = next((w for w in ws if w in SURFACES), None)
        running = any(w in ("run", "running") for w in ws)
        base = "running footsteps" if running else "footsteps"
        return f"{base} on {surface}" if surface else base
    animals = [w for w in ws if w in ANIMAL_CALLS]
    if len(animals) > 1:  # "rooster crow": crow is the call here, not the bird
        animals = [w for w in animals if w not in CALL_WORDS] or animals
    if animals:
        animal = animals[-1]
        call = next((CALL_WORDS[w] for w in ws if w in CALL_WORDS and w != animal), None)
        return f"{mass_aware_article(animal)} {call or ANIMAL_CALLS[animal]}"
    gerunds = [ACTIONS[w] for w in ws if w in ACTIONS]
    nouns = [w for w in ws if w not in ACTIONS and w not in SKIP_IN_PHRASE]
    if gerunds and nouns:
        noun = " ".join(nouns[-2:])
        return f"{mass_aware_article(noun)} {gerunds[-1]}"
    if gerunds:
        if hint is not None:
            return f"{hint}, {gerunds[-1]}"
        said = [w for w in ws if w in ACTIONS][-1]
        return said if said.endswith("ing") else f"something {gerunds[-1]}"
    tail = [w for w in head if w not in SKIP_IN_PHRASE] or ws
    return mass_aware_article(" ".join(tail[-3:]))


def as_sentence(text: str) -> str:
    text = " ".join(text.split()).strip()
    return text[:1].upper() + text[1:] if text else text


def make_captions(phrase: str | None, keywords: Sequence[str], given: Sequence[str] = ()) -> list[str]:
    """Caption variants: given texts, the phrase as a sentence, a keyword caption; de-biased,
    de-duplicated, never empty strings."""
    out: list[str] = [as_sentence(t) for t in given if t and t.strip()]
    if phrase:
        out.append(as_sentence(phrase))
    kw = clean_tags([t for t in keywords if t])[:3]
    if kw:
        out.append(keywords_to_caption(kw))
    seen: dict[str, str] = {}
    for c in out:
        c = debias(c).strip()
        if c:
            seen.setdefault(c.lower().rstrip("."), c)
    return list(seen.values())


def describe(
    source: Source, rel_path: str, given: Sequence[str] = (), extra_words: Sequence[str] = ()
) -> tuple[list[str], list[str], str | None]:
    """``(captions, tags, phrase)`` for one clip of ``source``. ``extra_words`` (e.g. label words
    from a manifest) are added to the tags and used for the phrase when the path has none."""
    words = clip_words(source, rel_path)
    extra = [w.strip().lower() for w in extra_words if w and w.strip()]
    extra_split = [x for e in extra for x in e.split()]
    # Curated label words name the event better than a repository's file naming.
    file_words = clip_words(source, rel_path.split("/")[-1])
    phrase = event_phrase(extra_split or words, source.hint, () if extra_split else file_words)
    tags = clean_tags([w for w in list(extra) + words + list(source.context) if w not in SKIP_IN_PHRASE])
    # Keywords for the keyword caption: the file name's words as one chunk, then the nearest
    # folder's, so "cattle/cow_moo" reads "a cow moo and a cattle", not a bag of words.
    chunks = [
        " ".join(w for w in clip_words(source, seg) if w not in SKIP_IN_PHRASE) for seg in reversed(rel_path.split("/"))
    ]
    keywords = (extra or [c for c in chunks if c][:2]) + list(source.context)
    return make_captions(phrase, keywords or tags, given), tags, phrase
