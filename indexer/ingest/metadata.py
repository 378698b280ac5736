"""Tags from the file's own metadata (ID3, Vorbis comments, RIFF INFO, ...) via mutagen.

Only the common text fields are kept, as plain strings, so filters and exports stay simple.
A file whose tags cannot be parsed still ingests: its tags are just empty.
"""

from __future__ import annotations

from pathlib import Path

# mutagen's "easy" keys, which it maps across ID3, Vorbis comments, MP4 atoms and RIFF INFO.
FIELDS = tuple(
    "title artist album genre date comment description copyright organization composer license keywords".split()
)
MAX_VALUE_CHARS = 1000


def read_tags(path: str | Path) -> dict[str, str]:
    return _mutagen_tags(path) or _sndfile_tags(path)


def _sndfile_tags(path: str | Path) -> dict[str, str]:
    """libsndfile's string chunks (RIFF INFO in WAV, which mutagen's easy mode does not map)."""
    try:
        import soundfile as sf

        with sf.SoundFile(str(path)) as handle:
            found = handle.copy_metadata()
    except Exception:
        return {}
    return {k: str(v).strip()[:MAX_VALUE_CHARS] for k, v in found.items() if k in FIELDS and str(v).strip()}


def _mutagen_tags(path: str | Path) -> dict[str, str]:
    try:
        import mutagen

        tagged = mutagen.File(path, easy=True)
    except Exception:  # mutagen raises many types on odd files; tags are optional
        return {}
    if tagged is None or not getattr(tagged, "tags", None):
        return {}
    out: dict[str, str] = {}
    try:
        items = list(tagged.tags.items())
    except Exception:
        return {}
    for key, value in items:
        key = str(key).lower()
        if key not in FIELDS:
            continue
        values = value if isinstance(value, list) else [value]
        text = "; ".join(str(v).strip() for v in values if str(v).strip())
        if text:
            out[key] = text[:MAX_VALUE_CHARS]
    return out
