"""Tagging with many labels (issue 18 #3): ``POST /v1/classify`` with 50 labels on a 5 s upload,
against the audio embedding of the same clip alone, measured in the same run.

    PYTHONPATH=. python bench/tagging.py [--labels 50] [--rounds 40] [--model models/clapsearch-sfx-v2]

Timings, p50 and p90 over ``--rounds`` requests each, no Redis (the default install):
  - audio alone: decoding the 5 s clip and the encoder's front end and network on it (what a tag
    request cannot avoid), with the service's ONNX Runtime settings (CLAPSEARCH_ONNX_THREADS and
    _SPINNING as the API defaults them): the peer of the target;
  - classify, labels remembered: the service as shipped (the in-process text-vector LRU; a first
    request embeds the labels and is not counted), the multipart body encoded once and handed
    straight to the ASGI app in 64 KiB chunks, as a server would (the client's work is not the
    service's). It alternates with the audio alone request by request, so both see the same
    minute of a shared machine;
  - then, apart, for comparison with earlier runs: classify through TestClient with the body
    encoded by the client each time (TestClient also runs the app in a thread of its own and
    hands every message across), the same with ``text_vector_cache_size=0`` (how every request
    ran before the LRU), and audio alone with the indexer's ONNX settings (a thread per core,
    spinning: what earlier runs compared with).
The requests go through the real app (routing, multipart parsing, decoding, batching, JSON); the
clip is generated (a chirp in noise), 5 s, 44.1 kHz stereo WAV.
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


def _app(home: Path, model: Path, cache_size: int):
    from service.app import create_app
    from service.settings import ServiceSettings

    return create_app(ServiceSettings(home=home, model=model, text_vector_cache_size=cache_size))


def _multipart(wav: bytes, labels: list[str]) -> tuple[bytes, bytes]:
    """The request body a client sends (content type, bytes), encoded once by httpx's encoder."""
    import httpx

    files = {"file": ("clip.wav", wav, "audio/wav")}
    request = httpx.Request("POST", "http://x/", files=files, data={"candidate_labels": labels})
    return request.headers["content-type"].encode(), request.read()


def _settled(app) -> None:
    """Wait for the app's start-up embedding of the label vocabulary (~560 texts, seconds of CPU in
    a background thread, as bench/service.py waits for it): timed requests running
    beside it measured the start-up, not a request (the first runs of this script did)."""
    runtime = app.state.runtime
    runtime.vocabulary.vectors(runtime.encoder.embed_text)


async def _post(app, content_type: bytes, body: bytes, chunk: int = 65_536) -> bytes:
    """One POST /v1/classify straight into the ASGI app, the body in chunks as a server hands it
    over: no client library and no thread between the caller and the app (TestClient runs the app
    in a thread of its own and hands every message across)."""
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http"}
    scope |= {"path": "/v1/classify", "raw_path": b"/v1/classify", "query_string": b"", "root_path": ""}
    scope |= {"headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {}}
    pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)]
    sent = 0
    status, answer = 0, bytearray()

    async def receive():
        nonlocal sent
        sent += 1
        if sent > len(pieces):
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": pieces[sent - 1], "more_body": sent < len(pieces)}

    async def send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        else:
            answer.extend(message.get("body", b""))

    await app(scope, receive, send)
    if status != 200:
        raise RuntimeError(f"/v1/classify answered {status}: {bytes(answer[:300])!r}")
    return bytes(answer)


def interleaved_times(home: Path, model: Path, wav: bytes, clip: Path, labels: list[str], rounds: int) -> dict:
    """Audio alone (the service's ONNX settings) and classify (straight into the app), one of each
    per round, in one event loop."""
    import asyncio

    from service.settings import ServiceSettings

    encoder = ServiceSettings(model=model).open_encoder()
    content_type, body = _multipart(wav, labels)
    app = _app(home, model, 20_000)
    times: dict[str, list[float]] = {"audio": [], "classify": []}

    async def run() -> None:
        async with app.router.lifespan_context(app):
            _settled(app)
            await _post(app, content_type, body)  # warm-up: embeds the labels
            encoder.embed_views([encoder.views_from_file(clip)[0]])
            for _ in range(rounds):
                start = time.perf_counter()
                encoder.embed_views([encoder.views_from_file(clip)[0]])
                times["audio"].append(time.perf_counter() - start)
                start = time.perf_counter()
                answer = json.loads(await _post(app, content_type, body))
                times["classify"].append(time.perf_counter() - start)
                assert len(answer["labels"]) == len(labels)

    asyncio.run(run())
    return times


def testclient_times(home: Path, model: Path, wav: bytes, labels: list[str], rounds: int, cache_size: int) -> list:
    """Through TestClient, the client encoding the multipart body each time (how earlier runs measured)."""
    from fastapi.testclient import TestClient

    times = []
    with TestClient(_app(home, model, cache_size)) as client:
        _settled(client.app)
        for i in range(rounds + 1):
            start = time.perf_counter()
            files = {"file": ("clip.wav", wav, "audio/wav")}
            response = client.post("/v1/classify", files=files, data={"candidate_labels": labels})
            elapsed = time.perf_counter() - start
            response.raise_for_status()
            if i:  # the first request embeds the labels (and warms the app): not counted
                times.append(elapsed)
    return times


def indexer_audio_times(model: Path, clip: Path, rounds: int) -> list[float]:
    """Audio alone with the indexer's ONNX settings (a thread per core, spinning), apart from the
    rest: its idle threads spin after each call and would slow whatever ran next."""
    from indexer.settings import IndexerSettings

    encoder = IndexerSettings(model=model).open_encoder()
    encoder.embed_views([encoder.views_from_file(clip)[0]])
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
    load_before = loadavg()
    with tempfile.TemporaryDirectory(prefix="bench-tagging-") as tmp:
        home = Path(tmp)
        clip = home / "clip.wav"
        clip.write_bytes(wav)
        times = interleaved_times(home, args.model, wav, clip, labels, args.rounds)
        testclient = testclient_times(home, args.model, wav, labels, args.rounds, cache_size=20_000)
        every_time = testclient_times(home, args.model, wav, labels, args.rounds, cache_size=0)
        indexer_audio = indexer_audio_times(args.model, clip, args.rounds)
    rows = {
        "audio embedding alone (service ONNX settings)": percentiles(times["audio"]),
        "classify, labels remembered (shipped), straight into the app": percentiles(times["classify"]),
        "audio embedding alone (indexer ONNX settings)": percentiles(indexer_audio),
        "classify, labels remembered, TestClient encoding each body": percentiles(testclient),
        "classify, labels embedded every time (before), TestClient": percentiles(every_time),
    }
    base = rows["audio embedding alone (service ONNX settings)"]["p50_ms"]
    print(
        f"{len(labels)} labels, 5 s clip, {args.rounds} rounds, model {args.model.name}, load {load_before} -> {loadavg()}"
    )
    print(f"{'':64} {'p50 ms':>8} {'p90 ms':>8} {'x audio p50':>12}")
    for name, row in rows.items():
        print(f"{name:64} {row['p50_ms']:8.2f} {row['p90_ms']:8.2f} {row['p50_ms'] / base:12.2f}")
    paired = np.array(times["classify"]) / np.array(times["audio"])
    print(
        f"classify / audio alone (service settings), median of the {args.rounds} paired rounds: {np.median(paired):.3f}"
    )
    print("target: classify (labels remembered) <= 1.3x the audio embedding alone at p50")
    record = {"labels": len(labels), "rounds": args.rounds, "model": args.model.name, "machine": cpu_info()}
    record.update(rows=rows, paired_ratio_p50=round(float(np.median(paired)), 4), load=[load_before, loadavg()])
    args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
