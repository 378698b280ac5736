"""Which Debian packages feed the corpus, where their sounds are, and which files to leave out.

Why a declarative table: every package lays its sounds out differently (plain files, a zip inside
the package, Qt resource files) and each game mixes real sound effects with music, voice lines and
combat noises that would teach the model the wrong thing. Keeping those decisions in one table
makes them reviewable, and lets tests swap real packages for fake, already-extracted folders.

Path filtering works on the lower-cased *words* of the path (split on separators, camelCase and
digits), so ``voices/`` or ``Influencer_Scream`` is caught without fragile substring rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

AUDIO_SUFFIXES = (".ogg", ".oga", ".wav", ".flac", ".mp3")

# Words that mark music, speech or UI chatter in any package: never sound events we can caption.
GLOBAL_SKIP_WORDS = frozenset(
    "music musics song songs speech voice voices vocal vocals spoken speak speaking desc dialog "
    "dialogue narration narrator taunt taunts announcer announcement jingle jingles credits "
    "fanfare soundtrack menu tutorial".split()
)

# Combat words for game packages whose notes say to skip weapons and combat.
COMBAT_WORDS = frozenset(
    "attack attacks weapon weapons combat battle hit hits die death dying kill killed miss "
    "sword swords bow arrow arrows crossbow spear mace flail dagger axe hatchet knife club "
    "gun guns gunshot shotgun minigun sniper rifle pistol laser phaser plasma bullet bullets "
    "shoot shot grenade molotov bazooka cannon catapult siege blast "
    "magic spell missile ack select scream hurt pain grunt grunts impact strike swing slash "
    "claws fist bite punch".split()
)


@dataclass(frozen=True)
class Source:
    """One Debian package (or other input) and how to turn it into candidate clips.

    ``members``: tar wildcards passed to ``tar -x`` on the package's data (saves extracting
    gigabytes of textures). ``nested``: ``(glob, kind)`` archives inside the extracted tree to
    open (``"zip"`` or ``"rcc"``). ``include``: regexes a relative path must match (any);
    ``exclude``: regexes that drop a path; ``keep``: regexes that win over the skip words.
    ``skip_words``: extra path words that drop a file. ``noise_words``: words removed from
    captions (game and engine names). ``aliases``: word -> replacement words (``bd`` -> ``bass
    drum``). ``hint``: phrase used when the path says nothing useful (bucklespring's key codes),
    ``context``: words appended to every clip's tags (``keyboard``).
    """

    package: str
    licence: str
    members: tuple[str, ...] = ("*.ogg", "*.oga", "*.wav", "*.flac", "*.mp3", "*.txt")
    nested: tuple[tuple[str, str], ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    skip_words: frozenset[str] = frozenset()
    noise_words: frozenset[str] = frozenset()
    aliases: dict[str, str] = field(default_factory=dict)
    hint: str | None = None
    context: tuple[str, ...] = ()
    text_captions: bool = False  # read a sibling ``.txt`` (tuxpaint)

    def __post_init__(self) -> None:
        # ("a" "b") without a trailing comma is a str, and iterating it would match any path.
        for name in ("members", "include", "exclude", "keep", "context"):
            if isinstance(getattr(self, name), str):
                raise TypeError(f"Source {self.package}: {name} must be a tuple, not a string")

    def __hash__(self) -> int:
        return hash(self.package)


_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SPLIT = re.compile(r"[^a-z]+")


def path_words(path: str) -> list[str]:
    """Lower-case alphabetic words of a path: ``LRRain_in_garden01.ogg`` -> lr rain in garden ogg."""
    return [w for w in _SPLIT.split(_CAMEL.sub(" ", path).lower()) if w]


def skip_reason(source: Source, rel_path: str) -> str | None:
    """Why ``rel_path`` (relative to the extracted package root) is not used, or None to keep it."""
    if not rel_path.lower().endswith(AUDIO_SUFFIXES):
        return "not audio"
    if source.include and not any(re.search(p, rel_path) for p in source.include):
        return "outside sound folders"
    if any(re.search(p, rel_path) for p in source.exclude):
        return "excluded path"
    if any(re.search(p, rel_path) for p in source.keep):
        return None
    words = set(path_words(rel_path))
    hit = words & GLOBAL_SKIP_WORDS
    if hit:
        return f"music/speech ({sorted(hit)[0]})"
    hit = words & source.skip_words
    if hit:
        return f"skipped word ({sorted(hit)[0]})"
    return None


def _regexes(text: str) -> tuple[str, ...]:
    """Path regexes written space-separated (none contains a space), so a long list of plain
    words to exclude reads as a paragraph instead of one line a word."""
    return tuple(text.split())


_GAME_NOISE = frozenset("default data sounds sound sfx audio".split())

SOURCES: tuple[Source, ...] = (
    Source(
        "tuxpaint-stamps-default",
        "GPL-2+",
        text_captions=True,
        include=(r"stamps/",),
        # *_desc* are spoken names; letters, digits, signs and emotions are spoken words too.
        exclude=(
            r"_desc",
            r"_[a-z]{2}(_[A-Za-z]{2})?\.ogg$",
            r"/(alphabet|symbols|signs|"
            r"text|letters|numbers|emotions|hebrew|cyrillic|greek)/",
            r"_(filled|outline)",
            r"/[0-9a-zA-Z]\.ogg$",
        ),
        noise_words=frozenset(
            "stamps tuxpaint animals household mammals marsupials aquatic rodents "
            "bovines apes cats bears seasonal halloween christmas hobbies "
            "arttools tools dishes roadsigns town amphibians insects reptiles "
            "food vehicles".split()
        ),
    ),
    Source(
        "gcompris-qt-data",
        "GPL-3+ / CC-BY-SA-4.0 (per file, see debian/copyright)",
        members=("*.rcc",),
        nested=(("**/*.rcc", "rcc"),),
        include=(r"resource/",),
        exclude=(
            r"/voices",
            r"explore_world_music",
            r"/chronos/",
            r"/morse_code/",
            r"core/resource/intro",
            r"memory-sound/resource/(guitar|LRWeird|LRLaPause)",
        ),
        skip_words=frozenset("melody son melodie".split()),
        noise_words=frozenset(
            "gcompris src activities activity resource resources lr la cut "
            "core memory explore farm animals instruments qt tac toe tic ballcatch "
            "guessnumber".split()
        ),
        aliases={"xylofon": "xylophone", "traversiere": "", "applauses": "applause", "apert": "", "son": ""},
    ),
    Source(
        "0ad-data",
        "CC-BY-SA-3.0",
        members=("*/mods/public/public.zip",),
        nested=(("**/public.zip", "zip"),),
        include=(r"audio/(actor|ambient|resource)/",),
        exclude=(r"/death/", r"/voice/", r"/attack/", r"ambient/building/"),
        skip_words=COMBAT_WORDS,
        noise_words=frozenset(
            "actor fauna public zip ambient resource movement "
            "dayscape actors mounted mods ad con fs gather construction gathering "
            "lumbering".split()
        )
        | _GAME_NOISE,
        aliases={
            "singlesteps": "footstep",
            "lumber": "wood chopping",
            "hoe": "hoe digging",
            "meat": "meat cutting",
            "fruit": "fruit picking",
        },
    ),
    Source(
        "megaglest-data",
        "GPL-2+ / CC-BY-SA-3.0",
        include=(r"tilesets/.*/sounds/", r"water_sounds/", r"commondata/sounds/"),
        keep=(r"(cow|pig|chicken|sheep)_(ack|select)",),
        skip_words=COMBAT_WORDS | frozenset("heal summon golem daemon shaman good".split()),
        aliases={
            "day": "daytime outdoor ambience",
            "sunny": "",
            "nightime": "night",
            "night": "night-time outdoor ambience",
            "desertday": "daytime outdoor ambience",
        },
        noise_words=frozenset(
            "megaglest tilesets tileset techs megapack commondata core "
            "autumn birch forest desert mudchute ack select orni karningul mediterran scrub land "
            "meadow spring evergreen pine peat rock hell dark jungle winter "
            "swamp snowy tech".split()
        )
        | _GAME_NOISE,
    ),
    Source(
        "widelands-data",
        "GPL-2+ / CC-BY-SA-3.0",
        include=(r"data/sound/",),
        exclude=(r"/(message|lobby)", r"under_attack", r"site_occupied", r"create_construction", r"/fizzle"),
        skip_words=COMBAT_WORDS,
        noise_words=frozenset("widelands barbarians atlanteans empire frisians farm smiths metal".split())
        | _GAME_NOISE,
    ),
    Source(
        "flightgear-data-base",
        "GPL-2+",
        include=(r"/Sounds/",),
        exclude=(r"/mk-viii/", r"/tcas/", r"/(female|male)/", r"gatling", r"checklist", r"/(intro|callouts?)"),
        skip_words=frozenset("altitude glideslope gpws minimums callouts".split()),
        noise_words=frozenset("flightgear aircraft instruments c p r slow".split()) | _GAME_NOISE,
        aliases={"engstart": "engine start", "gear hrn": "gear horn", "hrn": "horn", "lck": "lock"},
    ),
    Source(
        "supertuxkart-data",
        "CC-BY-SA-3.0 / CC0 (per file)",
        include=(r"data/sfx/", r"data/tracks/", r"data/library/"),
        exclude=(
            r"WilhelmScream",
            r"introcutscene",
            r"sara_airport_pa",
            r"nolok_speech",
            r"/(goal_scored|"
            r"gp_end|race_finish|last_lap|pre_start|start_race|track_intro|energy_bar|"
            r"grab_collectable|bubblegum|nitro|plunger|swatter|portal|forcefield|swap|"
            r"tractor_beam|wee|ugh|dark|appear|goo)",
        ),
        skip_words=COMBAT_WORDS,
        noise_words=frozenset("supertuxkart tracks library stklib introcutscene".split()) | _GAME_NOISE,
        aliases={"plopp": "plop", "revup": "revving"},
    ),
    Source(
        "minetest-data",
        "CC-BY-SA-3.0",
        include=(r"mods/.*/sounds/",),
        exclude=(r"soundstuff", r"oddly_breakable", r"dig_immediate", r"dug_node", r"place_node", r"item_smoke"),
        noise_words=frozenset(
            "minetest games game minetest_game mods default env carts xpanes "
            "tnt doors choppy cracky crumbly snappy dug node hard".split()
        )
        | _GAME_NOISE,
    ),
    Source(
        "wesnoth-1.16-data",
        "GPL-2+",
        include=(
            r"sounds/ambient/",
            r"/(horse-canter|horse-elf-canter|fire|bell|rumble|"
            r"wolf-growl-\d|gryphon-shriek-\d|bat-flapping|open-chest|potion|gold)\.",
            r"/(birds\d|campfire|morning|night|ship)\.",
        ),
        skip_words=COMBAT_WORDS,
        noise_words=frozenset("wesnoth core ambient elf".split()) | _GAME_NOISE,
    ),
    Source(
        "supertux-data",
        "GPL-3+ / CC-BY-SA-3.0",
        include=(r"supertux2/sounds/",),
        exclude=(
            r"/(coin|coins|grow|invincible|lifeup|upgrade|warp|tada|welldone|excellent|"
            r"yeti|willo|totem|mr_tree|tux_|penny|retro|fire-flower|kill|hurt|stomp|"
            r"trampoline|brick|flip|flop|empty|iceblock|squish|dartfire|darthit|bigjump|"
            r"jump|hop|fall|grunts|crystallo|tree_)",
        ),
        skip_words=COMBAT_WORDS,
        noise_words=frozenset("supertux".split()) | _GAME_NOISE,
    ),
    Source(
        "freedroidrpg-data",
        "GPL-2+",
        include=(r"sound/effects/",),
        exclude=_regexes(
            r"bot_sounds tux_ingame_comments bullets/ Influencer Takeover Menu Mission Shop Spell ThouArt "
            r"GotInto No_Ammo swing Item_Range"
        ),
        skip_words=COMBAT_WORDS,
        noise_words=frozenset("freedroidrpg effects item items new put".split()) | _GAME_NOISE,
    ),
    Source(
        "hedgewars-data",
        "GPL-2 / GFDL (see debian/copyright)",
        include=(r"Data/Sounds/",),
        exclude=_regexes(
            r"/voices/ mine /\d[A-G]\. countdown custom\d hog Hellish hell_ suddendeath extratime homerun "
            r"denied Yoohoo Kiss TARDIS portal ride_of rope invulnerable lowgravity skip placed CollectCrate "
            r"sinegun melon cake egg lasersight landgun ice_beam firepunch drillgun throw airmine graveimpact "
            r"BirdyLay ufo shotgun sniper grenade mortar baseballbat jetpack warp bump"
        ),
        skip_words=COMBAT_WORDS,
        noise_words=frozenset("hedgewars rubberduck".split()) | _GAME_NOISE,
        aliases={
            "rcplane": "toy plane",
            "shutterclick": "camera shutter click",
            "whipcrack": "whip crack",
            "beewater": "bee water",
            "planewater": "plane water",
            "pickhammer": "jackhammer",
        },
    ),
    Source(
        "lincity-ng-data",
        "GPL-2+",
        include=(r"lincity-ng/sounds/",),
        exclude=(
            r"/(Click|Build|Raze|Tip|Recycle|Monument|Health|School|University|Commune|"
            r"Market|Power|Substation|Shanty|Residential|Industry|Green|Rocket\d)",
        ),
        noise_words=frozenset("lincity ng parkland organic".split()) | _GAME_NOISE,
        aliases={
            "trafic": "traffic",
            "croud": "crowd",
            "sports": "sports",
            "oremine": "ore mine",
            "coalmine": "coal mine",
            "firestation": "fire station",
            "windmill": "windmill",
            "dirttrack": "dirt track",
            "railtrain": "train",
        },
    ),
    Source(
        "bucklespring-data",
        "GPL-2",
        include=(r"buckle/wav/",),
        hint="a key press on a mechanical keyboard",
        context=("keyboard", "key press", "typing"),
        noise_words=frozenset("buckle wav".split()),
    ),
    Source(
        "hydrogen-drumkits",
        "GPL-2+ / CC (per drumkit, see debian/copyright)",
        include=(r"drumkits/",),
        # rumpf's "beats_01-NN" files are numbered hits nobody named: uncaptionable.
        exclude=(r"/(Audiophob|HardElectro1)/", r"/beats_"),
        noise_words=frozenset(
            "hydrogen drumkits drumkit kit rumpf forzee stereo millo "
            "multi layered drums colombo acoustic electric empire ee h z "
            "mics br normal mic opaque shot noise menegass minorr paiste "
            "cbeeching anillogic trimo connersaw cubix lewis sabmute "
            "dayvonjersen fxshake sstokes ss crunchtime walter odington "
            "garage city snappy stomachache zgump i p dirty phaser nz old "
            "power ring stomp dist lite low high hard".split()
        )
        | _GAME_NOISE,
        aliases={
            "hhat": "hi hat",
            "hihat": "hi hat",
            "hat": "hi hat",
            "bassdrum": "bass drum",
            "kick": "kick drum",
            "tomh": "tom drum",
            "tom": "tom drum",
            "ht": "tom drum",
            "cl": "closed",
            "op": "open",
            "crash": "crash cymbal",
            "ride": "ride cymbal",
            "bd": "bass drum",
            "sd": "snare",
            "jsnare": "snare",
            "rsnare": "snare",
            "hhopen": "open hi hat",
            "hhclosed": "closed hi hat",
            "china": "china cymbal",
        },
        context=("drum",),
    ),
    Source(
        "sonic-pi-samples",
        "CC0-1.0",
        include=(r"sonic-pi/samples/",),
        exclude=(
            r"/(loop_|glitch_|mehackit_|bass_|ambi_(choir|piano|drone|dark|haunted|"
            r"lunar|soft|sauna|swoosh)|guit_|elec_|perc_bell2|vinyl_)",
        ),
        noise_words=frozenset(
            "sonic pi samples hard soft hi lo mid fat pure boom tek zum zome klub haus gas ada sone".split()
        )
        | _GAME_NOISE,
        aliases={
            "bd": "bass drum",
            "sn": "snare",
            "drum_cymbal": "cymbal",
            "perc": "percussion",
            "ambi": "",
            "tom": "tom drum",
            "tabla": "tabla",
            "misc": "",
        },
    ),
    Source(
        "sound-theme-freedesktop",
        "GPL-2+ / CC-BY-SA-3.0 / CC-BY-3.0 (per file)",
        include=(r"sounds/freedesktop/",),
        exclude=(r"audio-channel", r"audio-test-signal", r"service-log"),
        noise_words=frozenset("freedesktop stereo oga".split()) | _GAME_NOISE,
        aliases={"elapsed": "", "trash": "trash can"},
    ),
)

FLUIDSYNTH_PACKAGE = "fluid-soundfont-gm"
FLUIDSYNTH_LICENCE = "MIT"
EXTRA_PREFIX = "extra-sfx:"

BY_NAME = {s.package: s for s in SOURCES}
