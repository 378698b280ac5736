"""Musical key names: one spelling in the store ("A minor", "F# major": sharps, full mode
word), any common spelling in a filter ("Am", "a min", "Gb major", "F#", "Bbm").

    canonical_key(9, "minor")      -> "A minor"
    keys_matching("Gb")            -> ("F# major", "F# minor")   # no mode: either mode
    keys_matching("bbm")           -> ("A# minor",)

No dependency: filters parse keys in the torch- and librosa-free runtime.
"""

from __future__ import annotations

import re

from indexer.errors import FilterValueError

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
MODES = ("major", "minor")
_LETTER = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_ACCIDENTAL = {"": 0, "#": 1, "♯": 1, "b": -1, "♭": -1}
_MODE_WORDS = {
    "": None,
    "maj": "major",
    "major": "major",
    "M": "major",
    "m": "minor",
    "min": "minor",
    "minor": "minor",
}
# letter, accidental, then a mode word: "A minor", "a:min", "F#m", "Gb major", "C"
_KEY = re.compile(r"^\s*([A-Ga-g])\s*(#|♯|b|♭)?\s*[:_-]?\s*([A-Za-z]*)\s*$")


def canonical_key(pitch_class: int, mode: str) -> str:
    return f"{PITCH_CLASSES[pitch_class % 12]} {mode}"


def all_keys() -> tuple[str, ...]:
    return tuple(canonical_key(pc, mode) for mode in MODES for pc in range(12))


def keys_matching(text: str) -> tuple[str, ...]:
    """The stored key names a filter value means; raises ``FilterValueError`` on anything else."""
    match = _KEY.match(text or "")
    if match is None or len(text) > 40:
        raise FilterValueError(
            f"{text[:40]!r} is not a key: write a note and a mode, e.g. 'A minor', 'F# major', 'Bbm'"
        )
    letter, accidental, mode_word = match.groups()
    # "m" is minor and "M" major only as the one-letter suffix; words are case-blind
    mode_key = mode_word if mode_word in ("m", "M") else mode_word.lower()
    if mode_key not in _MODE_WORDS:
        raise FilterValueError(f"{text[:40]!r}: the mode must be major or minor (maj, min, m)")
    pitch_class = (_LETTER[letter.upper()] + _ACCIDENTAL[accidental or ""]) % 12
    mode = _MODE_WORDS[mode_key]
    return tuple(canonical_key(pitch_class, m) for m in ((mode,) if mode else MODES))
