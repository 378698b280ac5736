"""Tagging with many labels (issue 18 #3): ``POST /v1/classify`` with 50 labels on a 5 s upload,
against the audio embedding of the same clip alone, measured in the same run.

    PYTHONPATH=. python bench/tagging.py [--labels 50] [--rounds 40] [--model models/clapsearch-sfx-v2]

Three timings, p50 and p90 over ``--rounds`` requests each, no Redis (the default install):
  - audio alone: decoding the 5 s clip and the encoder's front end and network on it (what a tag
    request cannot avoid);
  - classify, labels remembered: the service as shipped (the in-process text-vector LRU; the
    first request, which embeds the labels, is a warm-up and not counted);
  - classify, labels embedded every time: the same app with ``text_vector_cache_size=0``, which
    is how every request ran before the LRU (the peer).
The requests go through the real app (routing, multipart parsing, decoding, batching, JSON) in
process, over ASGI; the clip is generated (a chirp in noise), 5 s, 44.1 kHz stereo WAV.
Target: classify with remembered labels <= 1.3x the audio embedding alone at p50.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import cpu_info, loadavg  # noqa: E402

LABELS = [
    "dog barking", "rain", "thunder", "a car engine", "birds singing", "a door slamming", "footsteps",
    "glass breaking", "wind", "applause", "a baby crying", "a cat meowing", "church bells", "a siren",
    "a helicopter", "keyboard typing", "a clock ticking", "water dripping", "a train", "an explosion",
    "a gunshot", "laughter", "coughing", "sneezing", "snoring", "a vacuum cleaner", "a chainsaw",
    "a hammer", "a saw", "a drill", "crickets", "frogs", "a rooster", "a cow", "a pig", "a sheep",
    "a horse", "an airplane", "a motorcycle", "a bicycle bell", "a phone ringing", "a kettle",
    "a washing machine", "a toilet flushing", "brushing teeth", "breathing", "a crowd", "music",
    "speech", "silence", "a fire crackling", "waves", "a fountain", "an alarm clock",
]  # fmt: skip


def clip_wav(seconds: float = 5.0, rate: int = 44_100) -> bytes:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    chirp = 0.4 * np.sin(2 * np.pi * (300 + 400 * t) * t)
    stereo = np.stack([chirp, chirp], axis=1) + 0.05 * rng.standard_normal((len(t), 2))
    buf = io.BytesIO()
    sf.write(buf, stereo.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def percentiles(times: list[float]) -> dict[str, float]:
    ms = np.array(times) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p90_ms": round(float(np.percentile(ms, 90)), 2)}


def classify_times(home: Path, model: Path, wav: bytes, labels: list[str], rounds: int, cache_size: int) -> list[float]:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import ServiceSettings

    settings = ServiceSettings(home=home, model=model, text_vector_cache_size=cache_size)
    times = []
    with TestClient(create_app(settings)) as client:
        for i in range(rounds + 1):
            start = time.perf_counter()
            response = client.post(
                "/v1/classify",
                files={"file": ("clip.wav", wav, "audio/wav")},
                data={"candidate_labels": labels},
            )
            elapsed = time.perf_counter() - start
            response.raise_for_status()
            assert len(response.json()["labels"]) == len(labels)
            if i:  # the first request embeds the labels (and warms the app): not counted
                times.append(elapsed)
    return times


def audio_times(model: Path, clip: Path, rounds: int) -> list[float]:
    """Decode + front end + network for the clip, the calls the service makes for an upload: the
    part of a tag request that remembering labels cannot save."""
    from indexer.settings import IndexerSettings

    encoder = IndexerSettings(model=model).open_encoder()
    encoder.embed_views([encoder.views_from_file(clip)[0]])  # warm-up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        encoder.embed_views([encoder.views_from_file(clip)[0]])
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "clapsearch-sfx-v2")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results_tagging.json")
    args = parser.parse_args()
    labels = LABELS[: args.labels]
    wav = clip_wav()
    with tempfile.TemporaryDirectory(prefix="bench-tagging-") as tmp:
        home = Path(tmp)
        clip = home / "clip.wav"
        clip.write_bytes(wav)
        audio = audio_times(args.model, clip, args.rounds)
        remembered = classify_times(home, args.model, wav, labels, args.rounds, cache_size=20_000)
        every_time = classify_times(home, args.model, wav, labels, args.rounds, cache_size=0)
    rows = {
        "audio embedding alone": percentiles(audio),
        "classify, labels remembered (shipped)": percentiles(remembered),
        "classify, labels embedded every time (before)": percentiles(every_time),
    }
    base = rows["audio embedding alone"]["p50_ms"]
    print(f"{len(labels)} labels, 5 s clip, {args.rounds} rounds, model {args.model.name}, load {loadavg()}")
    print(f"{'':48} {'p50 ms':>8} {'p90 ms':>8} {'x audio p50':>12}")
    for name, row in rows.items():
        print(f"{name:48} {row['p50_ms']:8.2f} {row['p90_ms']:8.2f} {row['p50_ms'] / base:12.2f}")
    speedup = (
        rows["classify, labels embedded every time (before)"]["p50_ms"]
        / rows["classify, labels remembered (shipped)"]["p50_ms"]
    )
    print(f"remembered labels: {speedup:.2f}x faster than embedding them every time (target: classify <= 1.3x audio)")
    record = {"labels": len(labels), "rounds": args.rounds, "model": args.model.name, "machine": cpu_info()}
    record.update(rows=rows, load=loadavg())
    args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
