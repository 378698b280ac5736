"""Which YAMNet labels become captions: the policy behind ``clap-train corpus-pseudo``.

Why agreement: the CLAP paper turned dataset keywords into captions; our keywords are path
words. YAMNet (an AudioSet tagger) hears what is in a file, but alone it is a noisy labeller. So
a YAMNet class becomes a caption only when it *agrees* with the path (the same class, or one
below the path's most specific label, under the top level: path "rain" + "Rain on surface"),
or, for a file whose path maps to no label at all, when YAMNet is confident beyond a stricter
threshold. A path that says something YAMNet does not hear is a disagreement: no caption, since
we cannot tell which side is wrong. Music, Speech and Singing (whole ontology subtrees) never
become captions, and a clip whose top class is one of them, or where one of them scores at or
above ``music_speech_max``, is music or speech and left out. Generic classes (silence, noise,
room acoustics, "sound effect", top-level categories) never become captions either.

Scores are rounded to 4 decimals before the fixed thresholds, so decisions do not flip with
float noise between machines.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.corpus.captions import as_sentence, mass_aware_article
from training.corpus.ontology import BLOCKED_CLASSES, Ontology
from training.corpus.sources import SOURCES, Source
from training.data.captions import combine_captions, debias

# tagger(path, [(start_s, end_s), ...]) -> (len(spans), len(class_names)) scores in [0, 1]
Tagger = Callable[[str, Sequence[tuple[float, float]]], np.ndarray]
CLASS_MAP = Path(__file__).resolve().parents[1] / "model_configs" / "yamnet_class_map.csv"
# Phrases for frequent sound-event classes; other classes fall back to their first name part.
PHRASES = {
    "Rain": "rain falling",
    "Rain on surface": "rain falling on a surface",
    "Raindrop": "raindrops falling",
    "Thunder": "thunder rumbling",
    "Thunderstorm": "a thunderstorm",
    "Wind": "wind blowing",
    "Rustling leaves": "leaves rustling",
    "Stream": "a stream flowing",
    "Waterfall": "a waterfall roaring",
    "Ocean": "the sea",
    "Waves, surf": "waves breaking on a shore",
    "Splash, splatter": "water splashing",
    "Drip": "water dripping",
    "Pour": "liquid pouring",
    "Trickle, dribble": "water trickling",
    "Gurgling": "water gurgling",
    "Boiling": "water boiling",
    "Fire": "a fire burning",
    "Crackle": "crackling",
    "Walk, footsteps": "footsteps",
    "Run": "someone running",
    "Knock": "knocking on a door",
    "Slam": "a door slamming",
    "Door": "a door opening or closing",
    "Sliding door": "a sliding door",
    "Squeak": "a squeak",
    "Creak": "a creak",
    "Bird": "a bird",
    "Bird vocalization, bird call, bird song": "birds singing",
    "Chirp, tweet": "a bird chirping",
    "Caw": "a crow cawing",
    "Crow": "a crow cawing",
    "Hoot": "an owl hooting",
    "Owl": "an owl hooting",
    "Pigeon, dove": "a pigeon cooing",
    "Coo": "a pigeon cooing",
    "Gull, seagull": "seagulls calling",
    "Quack": "a duck quacking",
    "Duck": "a duck quacking",
    "Goose": "a goose honking",
    "Honk": "a goose honking",
    "Chicken, rooster": "a chicken",
    "Cluck": "a chicken clucking",
    "Crowing, cock-a-doodle-doo": "a rooster crowing",
    "Dog": "a dog",
    "Bark": "a dog barking",
    "Howl": "an animal howling",
    "Growling": "an animal growling",
    "Cat": "a cat",
    "Meow": "a cat meowing",
    "Purr": "a cat purring",
    "Hiss": "hissing",
    "Horse": "a horse",
    "Neigh, whinny": "a horse neighing",
    "Clip-clop": "hooves clip-clopping",
    "Cattle, bovinae": "a cow",
    "Moo": "a cow mooing",
    "Pig": "a pig",
    "Oink": "a pig oinking",
    "Sheep": "a sheep",
    "Bleat": "a sheep bleating",
    "Goat": "a goat bleating",
    "Insect": "insects buzzing",
    "Cricket": "crickets chirping",
    "Bee, wasp, etc.": "a bee buzzing",
    "Buzz": "buzzing",
    "Fly, housefly": "a fly buzzing",
    "Mosquito": "a mosquito whining",
    "Frog": "a frog",
    "Croak": "a frog croaking",
    "Roaring cats (lions, tigers)": "a big cat roaring",
    "Roar": "a roar",
    "Engine": "an engine running",
    "Idling": "an engine idling",
    "Accelerating, revving, vroom": "an engine revving",
    "Engine starting": "an engine starting",
    "Aircraft engine": "an aircraft engine",
    "Fixed-wing aircraft, airplane": "an airplane",
    "Jet engine": "a jet engine roaring",
    "Propeller, airscrew": "a propeller spinning",
    "Rail transport": "a train on rails",
    "Railroad car, train wagon": "railroad cars rolling",
    "Boat, Water vehicle": "a boat",
    "Bell": "a bell ringing",
    "Church bell": "a church bell ringing",
    "Chime": "a chime",
    "Wind chime": "wind chimes tinkling",
    "Tick-tock": "a clock ticking",
    "Tick": "ticking",
    "Clock": "a clock ticking",
    "Alarm": "an alarm",
    "Beep, bleep": "a beep",
    "Buzzer": "a buzzer",
    "Siren": "a siren wailing",
    "Telephone bell ringing": "a telephone ringing",
    "Chink, clink": "glass clinking",
    "Shatter": "glass shattering",
    "Breaking": "something breaking",
    "Smash, crash": "a crash",
    "Chop": "chopping wood",
    "Crack": "a crack",
    "Hammer": "hammering",
    "Sawing": "sawing",
    "Mechanisms": "a machine working",
    "Gears": "gears turning",
    "Ratchet, pawl": "a ratchet clicking",
    "Clicking": "clicking",
    "Typing": "typing",
    "Computer keyboard": "typing on a keyboard",
    "Mechanical fan": "a fan whirring",
    "Explosion": "an explosion",
    "Burst, pop": "a pop",
    "Gunshot, gunfire": "gunshots",
    "Whoosh, swoosh, swish": "a whoosh",
    "Thump, thud": "a thud",
    "Clang": "a metallic clang",
    "Ding": "a ding",
    "Coin (dropping)": "coins dropping",
    "Crumpling, crinkling": "paper crumpling",
    "Scrape": "scraping",
    "Rumble": "a low rumble",
    "Sizzle": "sizzling",
    "Applause": "applause",
    "Clapping": "clapping",
    "Toilet flush": "a toilet flushing",
    "Steam": "steam hissing",
    "Water tap, faucet": "water running from a tap",
    "Outside, rural or natural": "outdoor ambience in nature",
    "Outside, urban or manmade": "outdoor city ambience",
    "Vehicle horn, car horn, honking": "a car horn honking",
    "Firecracker": "firecrackers popping",
    "Helicopter": "a helicopter flying",
    "Slosh": "water sloshing",
    "Burping, eructation": "someone burping",
    "Fowl": "poultry",
    "Bow-wow": "a dog woofing",
    "Train": "a train passing",
    "Busy signal": "a telephone busy signal",
    "Gobble": "a turkey gobbling",
    "Turkey": "a turkey gobbling",
    "Aircraft": "an aircraft flying",
    "Single-lens reflex camera": "a camera shutter clicking",
    "Camera": "a camera shutter clicking",
    "Chopping (food)": "chopping food on a board",
    "Motorcycle": "a motorcycle engine",
    "Squawk": "a bird squawking",
    "Train whistle": "a train whistle blowing",
    "Zipper (clothing)": "a zipper being pulled",
    "Drill": "a power drill whirring",
    "Ding-dong": "a doorbell ding-dong",
    "Doorbell": "a doorbell ringing",
    "Typewriter": "typing on a typewriter",
    "Heart sounds, heartbeat": "a heartbeat",
    "Jackhammer": "a jackhammer pounding",
    "Whip": "a whip cracking",
    "Vacuum cleaner": "a vacuum cleaner running",
    "Laughter": "people laughing",
    "Police car (siren)": "a police siren wailing",
    "Fire engine, fire truck (siren)": "a fire engine siren",
    "Civil defense siren": "an air raid siren",
    "Chainsaw": "a chainsaw running",
    "Snoring": "someone snoring",
    "Cough": "someone coughing",
    "Sneeze": "someone sneezing",
    "Breathing": "someone breathing",
    "Chewing, mastication": "someone chewing",
    "Biting": "biting into something",
    "Eruption": "a volcano erupting",
    "Whale vocalization": "a whale singing",
    "Machine gun": "a machine gun firing",
    "Frying (food)": "food frying",
    "Dishes, pots, and pans": "dishes clattering",
    "Cutlery, silverware": "cutlery clinking",
    "Bouncing": "something bouncing",
    "Tearing": "something tearing",
    "Skidding": "tires skidding",
    "Tire squeal": "tires squealing",
    "Car passing by": "a car passing by",
    "Spray": "a spray hissing",
    "Motorboat, speedboat": "a motorboat",
    "Sink (filling or washing)": "a sink filling with water",
}
# Category classes: true but say nothing a caption could use ("a livestock", "a vehicle").
CATEGORIES = frozenset(
    (
        "Livestock, farm animals, working animals",
        "Wild animals",
        "Vehicle",
        "Domestic animals, pets",
        "Motor vehicle (road)",
        "Liquid",
        "Tools",
        "Emergency vehicle",
        "Domestic sounds, home sounds",
    )
)
_DESC = re.compile(
    r"^(?:steady |the )?sounds? (?:of|made by|produced by) (.+?)"
    r"(?:[,;.(]| such as| as | when | while | in which| that | which |$)",
    re.I,
)
_TRAILING = re.compile(r"(\s+(with|and|or|of|to|for|in|on|at|by|from|a|an|the))+\s*$", re.I)
_DEFINITIONAL = frozenset("consisting designed used typically called known usually".split())


@dataclass
class PseudoConfig:
    """One run; the CLI fills it from flags. Thresholds apply to patch-mean sigmoid scores."""

    corpus: Path
    cache: Path = Path("data/deb-cache")
    roots: dict[str, Path] = field(default_factory=dict)  # package -> extracted folder
    sources: tuple[Source, ...] = SOURCES
    agree_min: float = 0.2  # a class agreeing with the path words
    confident_min: float = 0.7  # a class for a file whose path maps to no label
    top_k: int = 3  # a class must rank among the clip's top usable classes
    music_speech_max: float = 0.3  # any Music/Speech/Singing class at or above: left out
    max_classes: int = 2
    excluded_roots: tuple[str, ...] = ("Music", "Speech", "Singing")
    out_name: str = "manifest_pseudo.jsonl"
    write: bool = True  # False: report only (no FLACs, no manifest)
    ontology: str | None = None
    progress: bool = True


@dataclass
class Tree:
    """YAMNet classes placed in the ontology: ancestors, depth, and which may become captions."""

    names: list[str]
    onto: Ontology
    ancestors: dict[str, frozenset[str]]
    parents: dict[str, set[str]]
    excluded: np.ndarray  # bool per class: in a Music/Speech/Singing subtree
    usable: np.ndarray  # bool per class: may become a caption

    def agrees(self, c: str, labels: Sequence[str]) -> bool:
        """``c`` is one of the path's labels, or lies below one of its most specific labels
        (below the ontology's top level). Never above: a generic class ("Roaring cats" over
        "Growling", which also sits under "Dog") says the path is wrong as often as right; and
        never below a label the path refines ("Insect" of "Bee": a "Fly" contradicts it)."""
        anc, d = self.ancestors, self.onto.depth
        leaves = [p for p in labels if not any(p in anc.get(q, ()) for q in labels)]
        return c in labels or any(p in anc.get(c, ()) and d.get(p, 0) >= 1 for p in leaves)


def class_tree(names: Sequence[str], onto: Ontology, excluded_roots: Sequence[str]) -> Tree:
    by_id = {c["id"]: c["name"] for c in onto.by_name.values()}
    parents: dict[str, set[str]] = {}
    for c in onto.by_name.values():
        for child in c.get("child_ids", []):
            parents.setdefault(by_id.get(child, ""), set()).add(c["name"])
    anc: dict[str, frozenset[str]] = {}

    def up(n: str, guard: int = 0) -> frozenset[str]:
        if n not in anc:
            ps = parents.get(n, set()) if guard < 20 else set()
            anc[n] = frozenset(ps).union(*(up(p, guard + 1) for p in ps))
        return anc[n]

    for n in onto.by_name:
        up(n)
    lineage = [({n} | anc.get(n, frozenset())) for n in names]
    generic = {"Channel, environment and background", "Other sourceless", "Silence"}
    excluded = np.array([bool(li & set(excluded_roots)) for li in lineage])
    usable = np.array(
        [
            not ex
            and n not in BLOCKED_CLASSES | CATEGORIES
            and onto.depth.get(n, 0) >= 1
            and (not li & generic or n.startswith("Outside,"))
            for n, li, ex in zip(names, lineage, excluded)
        ]
    )
    return Tree(list(names), onto, anc, parents, excluded, usable)


def judge(scores: np.ndarray, labels: Sequence[str], tree: Tree, cfg: PseudoConfig) -> tuple[str, list[str]]:
    """``(verdict, classes)``: verdict "path" / "confident" (classes to caption, most specific and
    likely first) or why not: "music/speech", "disagree" (path labels, no agreeing class),
    "unsure" (no labels, nothing confident)."""
    s = np.round(np.asarray(scores, dtype=np.float64), 4)
    top = int(np.argmax(s))
    if (tree.excluded[top] and s[top] > 0) or (s[tree.excluded] >= cfg.music_speech_max).any():
        return "music/speech", []
    order = sorted((k for k in np.nonzero(tree.usable & (s >= cfg.agree_min))[0]), key=lambda k: (-s[k], tree.names[k]))
    order = order[: cfg.top_k]  # only YAMNet's main impressions count, not a class far down
    agree = [k for k in order if tree.agrees(tree.names[k], labels)]
    if labels and not agree:
        return "disagree", []
    verdict, chosen = ("path", agree) if agree else ("confident", [k for k in order if s[k] >= cfg.confident_min])
    if not chosen:
        return "unsure", []
    names = [tree.names[k] for k in chosen]  # a class implied by a more specific one goes
    names = [n for n in names if not any(n in tree.ancestors.get(o, ()) for o in names)]
    kept: list[str] = []
    for n in names:  # siblings say the same twice ("Bark" and "Bow-wow" of "Dog"): keep the first
        if not any(tree.parents.get(n, set()) & tree.parents.get(o, set()) for o in kept):
            kept.append(n)
    return verdict, kept[: cfg.max_classes]


def phrase(name: str) -> str:
    if name in PHRASES:
        return PHRASES[name]
    return mass_aware_article(re.sub(r"\s*\(.*?\)", "", name.split(", ")[0]).lower().strip())


def class_captions(classes: Sequence[str], onto: Ontology) -> list[str]:
    """The top class as a phrase, the two top classes joined, then the top class's ontology
    description when that reads as "the sound of X" in a few words."""
    caps = [as_sentence(phrase(classes[0]))]
    if len(classes) > 1:
        caps.append(combine_captions(caps[0], phrase(classes[1])))
    m = _DESC.match(onto.by_name.get(classes[0], {}).get("description", ""))
    words = _TRAILING.sub("", m.group(1)).split() if m else []
    if 2 <= len(words) <= 10 and not set(words) & _DEFINITIONAL:  # a sound, not a dictionary entry
        caps.append(f"The sound of {' '.join(words)}")
    return [debias(c) for c in caps]


def yamnet_tagger(tflite: str | Path, threads: int = 1) -> Tagger:
    """Real YAMNet: a span's scores are the mean over the patches centred inside it (all of
    the file's patches for a whole-file span), the tower's own patch-mean rule."""
    import torch

    from indexer.audio.patches import frames_to_patches, patch_samples
    from indexer.audio.views import file_views
    from indexer.models.manifest import AudioFrontend
    from training.convert.yamnet import load_yamnet
    from training.models.audio_yamnet import EMBEDDING_WIDTH, YamnetTower
    from training.models.config import YAMNET_FRONTEND

    torch.set_num_threads(threads)
    spec = AudioFrontend(**YAMNET_FRONTEND)
    tower = YamnetTower(load_yamnet(tflite)).eval()
    hop = spec.patch_hop_frames * spec.hop_length / spec.sample_rate
    half = patch_samples(spec) / 2 / spec.sample_rate

    def tag(path: str, spans: Sequence[tuple[float, float]]) -> np.ndarray:
        views, dur = file_views(path, spec)
        patches = frames_to_patches(np.asarray(views.features[0], dtype=np.float32), spec)
        with torch.inference_mode():
            s = np.concatenate(
                [
                    tower.patch_outputs(torch.tensor(patches[i : i + 256]))[:, EMBEDDING_WIDTH:].numpy()
                    for i in range(0, len(patches), 256)
                ]
            )
        mid = np.arange(len(s)) * hop + half
        rows = []
        for a, b in spans:
            sel = np.ones(len(s), bool) if a <= 0 and b >= dur - 1e-3 else (mid >= a) & (mid < b)
            rows.append(s[sel].mean(0) if sel.any() else s[int(np.argmin(np.abs(mid - (a + b) / 2)))])
        return np.stack(rows)

    return tag


def cached(tagger: Tagger, path: Path, model_key: str) -> tuple[Tagger, Callable[[], None]]:
    """``tagger`` behind a score cache (rows keyed by file, size, mtime and span) and its saver:
    re-running with other thresholds costs no network time."""
    store: dict[str, np.ndarray] = {}
    if path.exists():
        with np.load(path) as z:
            store = dict(zip(z["keys"].tolist(), z["scores"]))

    def key(p: str, a: float, b: float) -> str:
        st = os.stat(p)
        return f"{model_key}|{p}|{st.st_size}|{int(st.st_mtime)}|{a:.3f}-{b:.3f}"

    def tag(p: str, spans: Sequence[tuple[float, float]]) -> np.ndarray:
        keys = [key(p, a, b) for a, b in spans]
        if not all(k in store for k in keys):
            store.update(zip(keys, np.round(tagger(p, spans), 4).astype(np.float32)))
        return np.stack([store[k] for k in keys])

    def save() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(store)
        np.savez_compressed(path, keys=np.array(keys), scores=np.stack([store[k] for k in keys]))

    return tag, save
