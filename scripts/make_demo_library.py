"""Write a small synthetic audio library (several formats and lengths) for the demo."""

import sys
from pathlib import Path

import numpy as np
import soundfile as sf

SOUNDS = [  # (name, seconds, format, subtype, generator)
    ("tones/beep_880hz.wav", 1.5, "WAV", "PCM_16", lambda t, r: 0.4 * np.sin(2 * np.pi * 880 * t)),
    ("tones/chord_c_major.flac", 6.0, "FLAC", "PCM_24",
     lambda t, r: sum(0.2 * np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0))),
    ("noise/white_noise.ogg", 12.0, "OGG", "VORBIS", lambda t, r: 0.2 * r.standard_normal(t.size)),
    ("noise/rain_like.wav", 25.0, "WAV", "FLOAT",
     lambda t, r: 0.3 * r.standard_normal(t.size) * (r.random(t.size) < 0.02)),
    ("sweeps/chirp_up.mp3", 8.0, "MP3", "MPEG_LAYER_III",
     lambda t, r: 0.4 * np.sin(2 * np.pi * (100 + 400 * t) * t)),
    ("long/drone_90s.flac", 90.0, "FLAC", "PCM_16",
     lambda t, r: 0.3 * np.sin(2 * np.pi * 110 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.05 * t))),
]


def main(out: str) -> None:
    rng = np.random.default_rng(0)
    for name, seconds, fmt, subtype, make in SOUNDS:
        path = Path(out) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sr = 44_100 if fmt == "MP3" else 48_000
        t = np.arange(int(seconds * sr)) / sr
        sf.write(path, make(t, rng).astype(np.float32), sr, format=fmt, subtype=subtype)
    print(f"wrote {len(SOUNDS)} files to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo-library")
