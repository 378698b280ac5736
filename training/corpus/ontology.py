"""Map a clip's words to AudioSet class names, so zero-shot and probe numbers use a shared vocabulary.

Why: path words are free text ("cow", "footsteps", "hihat"); evaluation and the default tag
vocabulary speak AudioSet ("Cattle, bovinae", "Walk, footsteps", "Hi-hat"). We match words and
adjacent word pairs against every comma-separated part of a class name (with naive plural and
gerund forms), after a small hand synonym table for words the names do not contain. Labels are
ordered most specific (deepest in the ontology) first; generic or ambiguous classes ("Music",
"Sound effect", "Loop") are never produced from words.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

# The one copy shipped in the repository (the service's label vocabulary reads it too), so
# training works in any checkout, not only beside ../shared.
DEFAULT_ONTOLOGY = Path(__file__).resolve().parents[2] / "service" / "data" / "audioset_ontology.json"

# word (or "word pair") -> AudioSet names, neighbours with the same names in one entry ("cow, cows").
# Targets not in the ontology are dropped at load time.
_SYNONYM_GROUPS: dict[str, tuple[str, ...]] = {
    "cow, cows": ("Cattle, bovinae", "Moo"),
    "bull, ox, bison": ("Cattle, bovinae",),
    "moo, mooing": ("Moo",),
    "footstep, footsteps, step, steps, walk, walking, singlesteps": ("Walk, footsteps",),
    "chicken, hen": ("Chicken, rooster", "Cluck"),
    "rooster": ("Chicken, rooster", "Crowing, cock-a-doodle-doo"),
    "bird, birds, songbird, blackbird": ("Bird", "Bird vocalization, bird call, bird song"),
    "lark, cuckoo": ("Bird",),
    "seagull, gull": ("Gull, seagull",),
    "hawk, eagle, vulture, parrot": ("Bird",),
    "tweet, chirp": ("Chirp, tweet",),
    "dove": ("Pigeon, dove",),
    "crow, raven": ("Crow", "Caw"),
    "pigeon": ("Pigeon, dove",),
    "puppy": ("Dog",),
    "wolf, coyote": ("Canidae, dogs, wolves", "Howl"),
    "fox": ("Canidae, dogs, wolves",),
    "lion, tiger": ("Roaring cats (lions, tigers)", "Roar"),
    "kitten": ("Cat", "Meow"),
    "lamb": ("Sheep", "Bleat"),
    "ram": ("Sheep",),
    "piglet": ("Pig", "Oink"),
    "donkey": ("Donkey, ass",),
    "drake": ("Duck", "Quack"),
    "gander": ("Goose", "Honk"),
    "crickets, cricket": ("Cricket", "Insect"),
    "grasshopper": ("Insect",),
    "bees, bee, wasp, hornet": ("Bee, wasp, etc.", "Buzz"),
    "housefly, flies": ("Fly, housefly", "Buzz"),
    "frogs, toad": ("Frog", "Croak"),
    "whale": ("Whale vocalization",),
    "mice, rat": ("Rodents, rats, mice",),
    "thunderstorm": ("Thunderstorm", "Thunder"),
    "storm": ("Thunderstorm",),
    "lightning, lightningbolt": ("Thunder",),
    "rainfall, drizzle": ("Rain",),
    "raindrops": ("Raindrop",),
    "windy, breeze": ("Wind",),
    "river": ("Stream", "Water"),
    "brook, creek": ("Stream",),
    "sea": ("Ocean", "Waves, surf"),
    "beach, seashore": ("Waves, surf", "Ocean"),
    "waves, surf": ("Waves, surf",),
    "lake, pond": ("Water",),
    "campfire, fireplace": ("Fire", "Crackle"),
    "flame, flames, lava": ("Fire",),
    "motor": ("Engine",),
    "jet": ("Jet engine", "Aircraft"),
    "airplane": ("Fixed-wing aircraft, airplane",),
    "plane": ("Fixed-wing aircraft, airplane", "Aircraft"),
    "prop, propeller": ("Propeller, airscrew",),
    "rotor": ("Helicopter",),
    "locomotive, steamlocomotive": ("Train",),
    "railway": ("Rail transport",),
    "tractor": ("Engine", "Heavy engine (low frequency)"),
    "kart": ("Car",),
    "cart, carts": ("Railroad car, train wagon",),
    "horn": ("Vehicle horn, car horn, honking",),
    "tires": ("Car",),
    "skid": ("Skidding", "Tire squeal"),
    "screech": ("Screech", "Tire squeal"),
    "traffic": ("Traffic noise, roadway noise",),
    "doors": ("Door",),
    "doorbell": ("Doorbell", "Ding-dong"),
    "outdoor": ("Outside, rural or natural",),
    "chest": ("Cupboard open or close",),
    "drawer": ("Drawer open or close",),
    "glass": ("Glass",),
    "shatter": ("Shatter", "Glass"),
    "bottle": ("Glass", "Chink, clink"),
    "bells": ("Bell",),
    "churchbell": ("Church bell", "Bell"),
    "savebell": ("Bell",),
    "clock": ("Clock", "Tick-tock"),
    "ticking": ("Tick-tock", "Tick"),
    "keyboard": ("Computer keyboard", "Typing"),
    "typing": ("Typing", "Computer keyboard"),
    "key press": ("Computer keyboard", "Typing"),
    "keys": ("Keys jangling",),
    "drum, drums": ("Drum",),
    "drumkit": ("Drum kit",),
    "wardrums": ("Drum",),
    "snare": ("Snare drum", "Drum"),
    "bass drum, kick drum": ("Bass drum", "Drum"),
    "kick": ("Bass drum",),
    "hi hat, hihat": ("Hi-hat", "Cymbal"),
    "cymbal": ("Cymbal",),
    "crash": ("Smash, crash",),
    "crash cymbal": ("Crash cymbal", "Cymbal"),
    "ride, splash cymbal": ("Cymbal",),
    "tom drum, tomtom, tom": ("Drum",),
    "rim": ("Rimshot",),
    "conga, conga drum, bongo": ("Drum",),
    "agogo": ("Cowbell",),
    "clap, claps, handclap": ("Clapping",),
    "shaker, maracas": ("Maraca",),
    "triangle": ("Chime",),
    "applauses": ("Applause",),
    "cheer": ("Cheering",),
    "crowd": ("Crowd",),
    "laugh, laughing": ("Laughter",),
    "guitar": ("Guitar",),
    "violin, fiddle": ("Violin, fiddle",),
    "xylophone, marimba": ("Marimba, xylophone",),
    "flute": ("Flute",),
    "sax": ("Saxophone",),
    "bagpipe": ("Bagpipes",),
    "tuba": ("Brass instrument",),
    "contrabass": ("Double bass",),
    "kalimba": ("Mallet percussion",),
    "steel drums": ("Steelpan",),
    "woodblock": ("Wood block",),
    "telephone, phone": ("Telephone", "Telephone bell ringing"),
    "ring": ("Telephone bell ringing",),
    "alarm clock": ("Alarm clock", "Alarm"),
    "beep, beeps, blip": ("Beep, bleep",),
    "saw, sawmill": ("Sawing",),
    "benchsaw": ("Sawing", "Power tool"),
    "hammering": ("Hammer",),
    "anvil": ("Clang", "Hammer"),
    "smith, blacksmith": ("Hammer", "Clang"),
    "woodcutting, chopping": ("Chop", "Wood"),
    "axe, pickaxe": ("Chop",),
    "jackhammer": ("Jackhammer",),
    "drill": ("Drill", "Power tool"),
    "tree falling": ("Crack", "Wood"),
    "splashes, splash": ("Splash, splatter",),
    "droplet, drips, dripping": ("Drip",),
    "pouring": ("Pour",),
    "bubble, bubbles": ("Gurgling",),
    "boil": ("Boiling",),
    "firework": ("Fireworks",),
    "explode, explosions": ("Explosion",),
    "toilet, flush": ("Toilet flush",),
    "tap, faucet": ("Water tap, faucet",),
    "shower": ("Water",),
    "vacuum, vacuum cleaner": ("Vacuum cleaner",),
    "washing machine": ("Mechanisms",),
    "scissors": ("Scissors",),
    "camera, shutter": ("Camera",),
    "kettle": ("Kettle whistle",),
    "coin, gold": ("Coin (dropping)",),
    "zip": ("Zipper (clothing)",),
    "paper": ("Crumpling, crinkling",),
    "whoosh, swoosh, swish": ("Whoosh, swoosh, swish",),
    "thud, thump": ("Thump, thud",),
    "click, clicks": ("Clicking",),
    "creak, creaking": ("Creak",),
    "sizzle": ("Sizzle",),
    "boing": ("Boing",),
    "plop": ("Plop",),
    "rumble": ("Rumble",),
    "static": ("Static",),
    "radionoise": ("Static", "Radio"),
    "siren": ("Siren",),
    "buzzer": ("Buzzer",),
    "notification": ("Ding",),
    "bark": ("Bark", "Dog"),
    "neigh": ("Neigh, whinny", "Horse"),
    "canter, gallop, hooves": ("Clip-clop", "Horse"),
    "oink": ("Oink", "Pig"),
    "bleat": ("Bleat", "Sheep"),
    "quack": ("Quack", "Duck"),
    "cluck": ("Cluck", "Chicken, rooster"),
    "hoot": ("Hoot", "Owl"),
    "caw": ("Caw", "Crow"),
    "growl": ("Growling",),
    "purr": ("Purr", "Cat"),
    "meow": ("Meow", "Cat"),
    "hiss": ("Hiss",),
    "howl": ("Howl",),
    "roar": ("Roar",),
    "croak": ("Croak", "Frog"),
    "buzz": ("Buzz",),
    "gong": ("Gong",),
    "chime": ("Chime",),
    "chimes": ("Wind chime", "Chime"),
    "ice": ("Crack",),
    "mill": ("Mechanisms", "Gears"),
    "windmill": ("Mechanisms",),
    "mining": ("Chop",),
    "digging, dig": ("Scrape",),
    "gravel, snow": ("Crunch",),
    "leaves": ("Rustling leaves",),
    "bush": ("Rustle",),
}
SYNONYMS: dict[str, tuple[str, ...]] = {w: names for words, names in _SYNONYM_GROUPS.items() for w in words.split(", ")}

# Words whose labels only qualify the main event (gravel under footsteps): listed after the others.
WEAK_WORDS = frozenset(
    "gravel snow ice dig digging mining gold chest window bush leaves keys crash animal animals tires".split()
)

# Classes a single path word must never produce: too generic, or the word usually means
# something else in a path (fly = flying, mouse = the UI pointer, bass = frequency range).
BLOCKED_CLASSES = frozenset(
    (
        "Music",
        "Sound effect",
        "Loop",
        "Recording",
        "MP3",
        "Song",
        "Silence",
        "Harmonic",
        "Pulse",
        "Beat",
        "Chord",
        "Drone",
        "Country",
        "Funk",
        "Dub",
        "Swing music",
        "Ska",
        "Noise",
        "Bass (instrument role)",
        "Bass (frequency range)",
        "Echo",
        "Arrow",
        "Melody",
        "Musical note",
        "Sampler",
        "Grime music",
        "Trap music",
        "House music",
        "Effects unit",
        "Throbbing",
    )
)
BLOCKED_WORDS = frozenset("fly mouse bass run walk select house trap rock pop".split())


def _singular(word: str) -> list[str]:
    out = [word]
    if word.endswith("ies"):
        out.append(word[:-3] + "y")
    if word.endswith("es"):
        out.append(word[:-2])
    if word.endswith("s") and not word.endswith("ss"):
        out.append(word[:-1])
    if word.endswith("ing") and len(word) > 5:
        stem = word[:-3]
        out += [stem, stem + "e"]
        if len(stem) > 2 and stem[-1] == stem[-2]:
            out.append(stem[:-1])
    return out


class Ontology:
    """AudioSet class names with depths, and a word -> class index."""

    def __init__(self, classes: Sequence[dict]):
        self.names = [c["name"] for c in classes]
        self.by_name = {c["name"]: c for c in classes}
        self.depth = self._depths(classes)
        self.index: dict[str, str] = {}
        for name in self.names:
            if name in BLOCKED_CLASSES:
                continue
            for part in name.lower().split(", "):
                for form in _singular(part):
                    self.index.setdefault(form, name)
        self.synonyms = {w: tuple(n for n in names if n in self.by_name) for w, names in SYNONYMS.items()}

    @staticmethod
    def _depths(classes: Sequence[dict]) -> dict[str, int]:
        by_id = {c["id"]: c for c in classes}
        parents: dict[str, list[str]] = {}
        for c in classes:
            for child in c.get("child_ids", []):
                parents.setdefault(child, []).append(c["id"])
        depth: dict[str, int] = {}

        def of(cid: str, guard: int = 0) -> int:
            if cid not in depth:
                ps = parents.get(cid, [])
                depth[cid] = 0 if not ps or guard > 20 else 1 + max(of(p, guard + 1) for p in ps)
            return depth[cid]

        return {by_id[cid]["name"]: of(cid) for cid in by_id}

    def lookup(self, phrase: str) -> tuple[str, ...]:
        """Class names for one word or word pair ("" tuple when nothing matches)."""
        phrase = phrase.lower().strip()
        if phrase in self.synonyms:
            return self.synonyms[phrase]
        if phrase in BLOCKED_WORDS:
            return ()
        for form in _singular(phrase):
            if form in self.synonyms:
                return self.synonyms[form]
            if form in self.index:
                return (self.index[form],)
        return ()

    def labels_for(self, words: Sequence[str]) -> list[str]:
        """AudioSet names for a clip's words: pairs first ("bass drum"), then single words; most
        specific (deepest) first, ties in the order the words came."""
        words = [w.lower() for w in words if w]
        found: list[tuple[bool, str]] = []
        used: set[int] = set()
        for i in range(len(words) - 1):
            hits = self.lookup(f"{words[i]} {words[i + 1]}")
            if hits:
                found.extend((False, h) for h in hits)
                used.update((i, i + 1))
        for i, w in enumerate(words):
            if i not in used:
                found.extend((w in WEAK_WORDS, h) for h in self.lookup(w))
        weak: dict[str, bool] = {}
        for is_weak, name in found:
            weak[name] = weak.get(name, True) and is_weak
        order = {n: k for k, n in enumerate(weak)}
        return sorted(weak, key=lambda n: (weak[n], -self.depth.get(n, 0), order[n]))


@lru_cache(maxsize=4)
def load_ontology(path: str | None = None) -> Ontology:
    """The ontology at ``path`` (default: the AudioSet ``ontology.json`` shipped in ``service/data``)."""
    with open(path or DEFAULT_ONTOLOGY, encoding="utf-8") as fh:
        return Ontology(json.load(fh))
