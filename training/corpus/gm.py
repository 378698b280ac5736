"""Render General MIDI instruments, drums and sound effects with fluidsynth + fluid-soundfont-gm.

Why: game packages are weak on musical instruments, and the MIT-licensed FluidR3 soundfont gives
every GM instrument, the percussion map and a few sound-effect programs (seashore, bird tweet,
helicopter, applause, telephone) for free. We write tiny MIDI files ourselves (no MIDI library
needed: a single-track format-0 file is a few bytes) and render them with the ``fluidsynth``
binary. Captions come from the instrument names; labels from a hand table of AudioSet names.
Voice programs (choir, voice oohs, synth voice) and the gunshot are skipped on purpose.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2")

_I = tuple[str, str, tuple[str, ...]]


def _numbered(family: str, caption: str, kinds: str) -> list[_I]:
    """GM's eight synthesizer programs of a family: ``Lead 1 (square)`` .. ``Lead 8 (bass + lead)``."""
    return [(f"{family} {i} ({kind})", caption, ("Synthesizer",)) for i, kind in enumerate(kinds.split("|"), 1)]


# (program name, caption noun, AudioSet labels); None = skipped (voices, gunshot).
PROGRAMS: tuple[_I | None, ...] = (
    ("Acoustic Grand Piano", "grand piano", ("Piano",)),
    ("Bright Acoustic Piano", "piano", ("Piano",)),
    ("Electric Grand Piano", "electric piano", ("Electric piano", "Piano")),
    ("Honky-tonk Piano", "honky-tonk piano", ("Piano",)),
    ("Electric Piano 1", "electric piano", ("Rhodes piano", "Electric piano")),
    ("Electric Piano 2", "electric piano", ("Electric piano",)),
    ("Harpsichord", "harpsichord", ("Harpsichord",)),
    ("Clavinet", "clavinet", ("Clavinet",)),
    ("Celesta", "celesta", ("Keyboard (musical)",)),
    ("Glockenspiel", "glockenspiel", ("Glockenspiel", "Mallet percussion")),
    ("Music Box", "music box", ("Mallet percussion",)),
    ("Vibraphone", "vibraphone", ("Vibraphone", "Mallet percussion")),
    ("Marimba", "marimba", ("Marimba, xylophone", "Mallet percussion")),
    ("Xylophone", "xylophone", ("Marimba, xylophone", "Mallet percussion")),
    ("Tubular Bells", "tubular bells", ("Tubular bells", "Bell")),
    ("Dulcimer", "dulcimer", ("Zither",)),
    ("Drawbar Organ", "organ", ("Hammond organ", "Organ")),
    ("Percussive Organ", "organ", ("Electronic organ", "Organ")),
    ("Rock Organ", "organ", ("Hammond organ", "Organ")),
    ("Church Organ", "church organ", ("Organ",)),
    ("Reed Organ", "reed organ", ("Organ",)),
    ("Accordion", "accordion", ("Accordion",)),
    ("Harmonica", "harmonica", ("Harmonica",)),
    ("Tango Accordion", "accordion", ("Accordion",)),
    ("Acoustic Guitar (nylon)", "nylon-string acoustic guitar", ("Acoustic guitar", "Guitar")),
    ("Acoustic Guitar (steel)", "steel-string acoustic guitar", ("Acoustic guitar", "Guitar")),
    ("Electric Guitar (jazz)", "jazz electric guitar", ("Electric guitar", "Guitar")),
    ("Electric Guitar (clean)", "clean electric guitar", ("Electric guitar", "Guitar")),
    ("Electric Guitar (muted)", "muted electric guitar", ("Electric guitar", "Guitar")),
    ("Overdriven Guitar", "overdriven electric guitar", ("Electric guitar", "Distortion")),
    ("Distortion Guitar", "distorted electric guitar", ("Electric guitar", "Distortion")),
    ("Guitar Harmonics", "guitar playing harmonics", ("Guitar",)),
    ("Acoustic Bass", "acoustic bass", ("Double bass",)),
    ("Electric Bass (finger)", "bass guitar", ("Bass guitar",)),
    ("Electric Bass (pick)", "bass guitar", ("Bass guitar",)),
    ("Fretless Bass", "fretless bass guitar", ("Bass guitar",)),
    ("Slap Bass 1", "slap bass guitar", ("Bass guitar",)),
    ("Slap Bass 2", "slap bass guitar", ("Bass guitar",)),
    ("Synth Bass 1", "synth bass", ("Synthesizer",)),
    ("Synth Bass 2", "synth bass", ("Synthesizer",)),
    ("Violin", "violin", ("Violin, fiddle", "Bowed string instrument")),
    ("Viola", "viola", ("Bowed string instrument",)),
    ("Cello", "cello", ("Cello", "Bowed string instrument")),
    ("Contrabass", "double bass", ("Double bass", "Bowed string instrument")),
    ("Tremolo Strings", "tremolo strings", ("String section",)),
    ("Pizzicato Strings", "pizzicato strings", ("Pizzicato", "String section")),
    ("Orchestral Harp", "harp", ("Harp",)),
    ("Timpani", "timpani", ("Timpani", "Drum")),
    ("String Ensemble 1", "string ensemble", ("String section",)),
    ("String Ensemble 2", "string ensemble", ("String section",)),
    ("Synth Strings 1", "synth strings", ("Synthesizer",)),
    ("Synth Strings 2", "synth strings", ("Synthesizer",)),
    None,
    None,
    None,  # choir aahs, voice oohs, synth voice: voices
    ("Orchestra Hit", "orchestra hit", ("Orchestra",)),
    ("Trumpet", "trumpet", ("Trumpet", "Brass instrument")),
    ("Trombone", "trombone", ("Trombone", "Brass instrument")),
    ("Tuba", "tuba", ("Brass instrument",)),
    ("Muted Trumpet", "muted trumpet", ("Trumpet", "Brass instrument")),
    ("French Horn", "french horn", ("French horn", "Brass instrument")),
    ("Brass Section", "brass section", ("Brass instrument",)),
    ("Synth Brass 1", "synth brass", ("Synthesizer",)),
    ("Synth Brass 2", "synth brass", ("Synthesizer",)),
    ("Soprano Sax", "soprano saxophone", ("Soprano saxophone", "Saxophone")),
    ("Alto Sax", "alto saxophone", ("Alto saxophone", "Saxophone")),
    ("Tenor Sax", "tenor saxophone", ("Saxophone",)),
    ("Baritone Sax", "baritone saxophone", ("Saxophone",)),
    ("Oboe", "oboe", ("Oboe", "Wind instrument, woodwind instrument")),
    ("English Horn", "english horn", ("Wind instrument, woodwind instrument",)),
    ("Bassoon", "bassoon", ("Bassoon", "Wind instrument, woodwind instrument")),
    ("Clarinet", "clarinet", ("Clarinet", "Wind instrument, woodwind instrument")),
    ("Piccolo", "piccolo", ("Flute", "Wind instrument, woodwind instrument")),
    ("Flute", "flute", ("Flute", "Wind instrument, woodwind instrument")),
    ("Recorder", "recorder", ("Flute", "Wind instrument, woodwind instrument")),
    ("Pan Flute", "pan flute", ("Flute", "Wind instrument, woodwind instrument")),
    ("Blown Bottle", "blown bottle", ("Wind instrument, woodwind instrument",)),
    ("Shakuhachi", "shakuhachi", ("Flute", "Wind instrument, woodwind instrument")),
    ("Whistle", "whistle", ("Whistle",)),
    ("Ocarina", "ocarina", ("Wind instrument, woodwind instrument",)),
    *_numbered("Lead", "synthesizer lead", "square|sawtooth|calliope|chiff|charang|voice|fifths|bass + lead"),
    *_numbered("Pad", "synthesizer pad", "new age|warm|polysynth|choir|bowed|metallic|halo|sweep"),
    *_numbered("FX", "synthesizer effect", "rain|soundtrack|crystal|atmosphere|brightness|goblins|echoes|sci-fi"),
    ("Sitar", "sitar", ("Sitar", "Plucked string instrument")),
    ("Banjo", "banjo", ("Banjo", "Plucked string instrument")),
    ("Shamisen", "shamisen", ("Plucked string instrument",)),
    ("Koto", "koto", ("Zither", "Plucked string instrument")),
    ("Kalimba", "kalimba", ("Mallet percussion",)),
    ("Bagpipe", "bagpipes", ("Bagpipes",)),
    ("Fiddle", "fiddle", ("Violin, fiddle",)),
    ("Shanai", "shehnai", ("Wind instrument, woodwind instrument",)),
    ("Tinkle Bell", "tinkling bell", ("Jingle bell", "Bell")),
    ("Agogo", "agogo bells", ("Cowbell", "Percussion")),
    ("Steel Drums", "steel drum", ("Steelpan",)),
    ("Woodblock", "wood block", ("Wood block", "Percussion")),
    ("Taiko Drum", "taiko drum", ("Drum",)),
    ("Melodic Tom", "tom drum", ("Drum",)),
    ("Synth Drum", "electronic drum", ("Drum machine", "Drum")),
    ("Reverse Cymbal", "reversed cymbal", ("Cymbal",)),
    ("Guitar Fret Noise", "guitar fret noise", ("Guitar", "Squeak")),
    ("Breath Noise", "breathing", ("Breathing",)),
    ("Seashore", "waves on a seashore", ("Waves, surf", "Ocean")),
    ("Bird Tweet", "birds tweeting", ("Chirp, tweet", "Bird")),
    ("Telephone Ring", "a telephone ringing", ("Telephone bell ringing", "Telephone")),
    ("Helicopter", "a helicopter", ("Helicopter", "Aircraft")),
    ("Applause", "applause", ("Applause", "Clapping")),
    None,  # gunshot
)

# GM percussion map (channel 10): key -> (caption noun, labels).
PERCUSSION: dict[int, tuple[str, tuple[str, ...]]] = {
    35: ("acoustic bass drum", ("Bass drum", "Drum")),
    36: ("bass drum", ("Bass drum", "Drum")),
    37: ("side stick", ("Rimshot", "Drum")),
    38: ("acoustic snare drum", ("Snare drum", "Drum")),
    39: ("hand clap", ("Clapping",)),
    40: ("electric snare drum", ("Snare drum", "Drum")),
    41: ("low floor tom", ("Drum",)),
    42: ("closed hi-hat", ("Hi-hat", "Cymbal")),
    43: ("high floor tom", ("Drum",)),
    44: ("pedal hi-hat", ("Hi-hat", "Cymbal")),
    45: ("low tom", ("Drum",)),
    46: ("open hi-hat", ("Hi-hat", "Cymbal")),
    47: ("low-mid tom", ("Drum",)),
    48: ("high-mid tom", ("Drum",)),
    49: ("crash cymbal", ("Crash cymbal", "Cymbal")),
    50: ("high tom", ("Drum",)),
    51: ("ride cymbal", ("Cymbal",)),
    52: ("chinese cymbal", ("Cymbal",)),
    53: ("ride bell", ("Cymbal", "Bell")),
    54: ("tambourine", ("Tambourine",)),
    55: ("splash cymbal", ("Cymbal",)),
    56: ("cowbell", ("Cowbell",)),
    57: ("crash cymbal", ("Crash cymbal", "Cymbal")),
    58: ("vibraslap", ("Rattle (instrument)",)),
    59: ("ride cymbal", ("Cymbal",)),
    60: ("high bongo", ("Drum",)),
    61: ("low bongo", ("Drum",)),
    62: ("muted high conga", ("Drum",)),
    63: ("open high conga", ("Drum",)),
    64: ("low conga", ("Drum",)),
    65: ("high timbale", ("Drum",)),
    66: ("low timbale", ("Drum",)),
    67: ("high agogo", ("Cowbell",)),
    68: ("low agogo", ("Cowbell",)),
    69: ("cabasa", ("Rattle (instrument)",)),
    70: ("maracas", ("Maraca",)),
    71: ("short whistle", ("Whistle",)),
    72: ("long whistle", ("Whistle",)),
    73: ("short guiro", ("Scrape", "Percussion")),
    74: ("long guiro", ("Scrape", "Percussion")),
    75: ("claves", ("Wood block", "Percussion")),
    76: ("high wood block", ("Wood block",)),
    77: ("low wood block", ("Wood block",)),
    78: ("muted cuica", ("Percussion",)),
    79: ("open cuica", ("Percussion",)),
    80: ("muted triangle", ("Chime", "Percussion")),
    81: ("open triangle", ("Chime", "Percussion")),
}


@dataclass(frozen=True)
class Render:
    """One clip to render: a MIDI event list and what describes it."""

    name: str  # file stem, unique
    phrase: str  # caption phrase
    tags: tuple[str, ...]
    labels: tuple[str, ...]
    midi: bytes


def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    while n > 0x7F:
        n >>= 7
        out.append((n & 0x7F) | 0x80)
    return bytes(reversed(out))


def midi_file(events: list[tuple[int, bytes]], ticks: int = 480, tempo_us: int = 500_000) -> bytes:
    """Format-0 MIDI from ``(delta_ticks, message)`` pairs (120 bpm: 480 ticks = 0.5 s)."""
    body = b"\x00\xff\x51\x03" + tempo_us.to_bytes(3, "big")
    for delta, msg in events:
        body += _vlq(delta) + msg
    body += b"\x00\xff\x2f\x00"
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, ticks) + b"MTrk" + struct.pack(">I", len(body)) + body


def _notes(channel: int, program: int | None, notes: list[tuple[int, int, int]]) -> bytes:
    """``notes``: (key, velocity, length in ticks), played one after another."""
    events: list[tuple[int, bytes]] = []
    if program is not None:
        events.append((0, bytes((0xC0 | channel, program))))
    for key, vel, length in notes:
        events.append((0, bytes((0x90 | channel, key, vel))))
        events.append((length, bytes((0x80 | channel, key, 0))))
    events.append((480, bytes((0xB0 | channel, 123, 0))))  # let the release ring, then all off
    return midi_file(events)


def renders() -> list[Render]:
    """Every clip we render: two registers per melodic instrument, each percussion key, the SFX."""
    out: list[Render] = []
    for prog, entry in enumerate(PROGRAMS):
        if entry is None:
            continue
        name, noun, labels = entry
        slug = "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")
        tags = tuple(dict.fromkeys([noun, "musical instrument"] if prog < 120 else [noun]))
        if prog >= 120:  # sound effects: one long note
            for key in (60, 72) if prog == 123 else (60,):
                out.append(
                    Render(f"sfx_{prog:03d}_{slug}_{key}", noun, tags, labels, _notes(0, prog, [(key, 100, 480 * 8)]))
                )
            continue
        low, high = (36, 48) if "bass" in noun.lower() or prog in (42, 43, 58, 70) else (55, 72)
        for register, root in (("low", low), ("high", high)):
            notes = [(root, 100, 480), (root + 4, 90, 480), (root + 7, 100, 960)]
            out.append(
                Render(
                    f"gm_{prog:03d}_{slug}_{register}",
                    f"{noun} playing a few {register} notes",
                    tags,
                    labels,
                    _notes(0, prog, notes),
                )
            )
    for key, (noun, labels) in PERCUSSION.items():
        hits = [(key, 110, 240), (key, 70, 240), (key, 120, 480)]
        out.append(
            Render(
                f"perc_{key:02d}_{noun.replace(' ', '_')}",
                f"{noun} hit several times",
                (noun, "percussion"),
                labels,
                _notes(9, None, hits),
            )
        )
    return out


def find_soundfont() -> str | None:
    return next((p for p in SOUNDFONTS if Path(p).exists()), None)


def render_all(dest: Path, sample_rate: int = 44100) -> list[tuple[Render, Path]]:
    """Render every clip into ``dest`` (kept between runs: existing wavs are reused). Returns
    ``(render, wav)`` pairs; raises RuntimeError when fluidsynth or the soundfont is missing."""
    binary, sf2 = shutil.which("fluidsynth"), find_soundfont()
    if not binary or not sf2:
        raise RuntimeError(
            "fluidsynth or fluid-soundfont-gm missing (apt-get install -y "
            "--no-install-recommends fluidsynth fluid-soundfont-gm)"
        )
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for r in renders():
        wav = dest / f"{r.name}.wav"
        if not wav.exists() or wav.stat().st_size < 1000:
            mid = dest / f"{r.name}.mid"
            mid.write_bytes(r.midi)
            tmp = wav.with_suffix(".tmp.wav")
            subprocess.run(
                [binary, "-ni", "-q", "-g", "0.7", "-r", str(sample_rate), "-F", str(tmp), sf2, str(mid)],
                check=True,
                capture_output=True,
                timeout=120,
            )
            tmp.replace(wav)
            mid.unlink()
        out.append((r, wav))
    return out
