"""What the second decoder (PyAV) costs: nothing, for the formats soundfile reads; and how fast
it decodes the formats only it reads.

1. WAV, FLAC and OGG/Vorbis clips decoded by ``load_audio`` (the two-decoder path: sniff the first
   bytes, soundfile behind a reader) against the soundfile-only ``load_audio`` of ``--baseline``
   (the code before PyAV, loaded from git); interleaved A/B rounds, median per format, at the
   source rate (decoding alone) and at 48 kHz (with resampling). Target: ratio ~1.0.
2. One long WAV streamed block by block into a temporary file (``open_audio`` past
   ``in_memory_max_s``), new against baseline, same rounds.
3. PyAV throughput: M4A (AAC, ALAC) clips decoded by ``load_audio``, as seconds of audio per
   second, beside the same audio as WAV through soundfile.

    PYTHONPATH=. .venv/bin/python bench/decoders.py [--clips 20] [--seconds 10] [--rounds 5]
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import CpuMonitor, cpu_info, loadavg, wait_quiet  # noqa: E402
from indexer.audio import decode  # noqa: E402
from indexer.audio.decode import load_audio  # noqa: E402
from tests.formats import BY_NAME, encode  # noqa: E402
from tests.helpers import tone  # noqa: E402

SR = 44_100


def baseline_modules(ref: str) -> ModuleType:
    """``indexer/audio/decode.py`` and ``stream.py`` as they were at ``ref`` (before the second
    decoder), loaded as a private package: the soundfile-only path itself, not a re-creation."""
    root = Path(tempfile.mkdtemp(prefix="bench-decoders-baseline-")) / "baseline_audio"
    root.mkdir()
    (root / "__init__.py").write_text("")
    for name in ("decode", "stream"):
        text = subprocess.run(
            ["git", "show", f"{ref}:indexer/audio/{name}.py"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout
        (root / f"{name}.py").write_text(text.replace("indexer.audio.stream", "baseline_audio.stream"))
    sys.path.insert(0, str(root.parent))
    return importlib.import_module("baseline_audio.decode")


def stream_with(module: ModuleType):
    def run(path: Path, target_sr: int) -> int:
        with module.open_audio(path, target_sr, limits=module.DecodeLimits(in_memory_max_s=0)) as src:
            return src.num_samples

    return run


def timed(fn, paths: list[Path], target_sr: int) -> tuple[float, float]:
    """(wall, this process's CPU) seconds to decode ``paths``. CPU time is the steadier figure on
    a shared machine: other tenants stretch the wall clock, not the work done."""
    wall, cpu = time.perf_counter(), time.process_time()
    for p in paths:
        fn(p, target_sr)
    return time.perf_counter() - wall, time.process_time() - cpu


def ab(a, b, paths: list[Path], target_sr: int, rounds: int) -> dict:
    """Interleaved rounds (A B, B A, ...): median seconds of each, and the median of the paired
    ratios b / a (CPU and wall), so load that drifts across rounds cancels within a pair."""
    pairs = []
    timed(a, paths[:2], target_sr), timed(b, paths[:2], target_sr)  # warm caches and imports
    for r in range(rounds):
        if r % 2:
            tb = timed(b, paths, target_sr)
            ta = timed(a, paths, target_sr)
        else:
            ta = timed(a, paths, target_sr)
            tb = timed(b, paths, target_sr)
        pairs.append((ta, tb))
    return {
        "soundfile_only_cpu_s": round(statistics.median(ta[1] for ta, _ in pairs), 4),
        "two_decoders_cpu_s": round(statistics.median(tb[1] for _, tb in pairs), 4),
        "ratio_cpu": round(statistics.median(tb[1] / ta[1] for ta, tb in pairs), 3),
        "soundfile_only_wall_s": round(statistics.median(ta[0] for ta, _ in pairs), 4),
        "two_decoders_wall_s": round(statistics.median(tb[0] for _, tb in pairs), 4),
        "ratio_wall": round(statistics.median(tb[0] / ta[0] for ta, tb in pairs), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--long-seconds", type=float, default=300.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--baseline", default="5b848d3", help="git ref of the soundfile-only decoder (main before PyAV)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results_decoders.json")
    args = ap.parse_args()

    results: dict = {"machine": cpu_info(), "args": {k: str(v) for k, v in vars(args).items()}}
    old = baseline_modules(args.baseline)
    with tempfile.TemporaryDirectory(prefix="bench-decoders-") as tmp, CpuMonitor() as whole_run:
        root = Path(tmp)
        clips = [tone(args.seconds, SR, channels=2, freq=220.0 + 30 * i, seed=i) for i in range(args.clips)]
        sets: dict[str, list[Path]] = {"WAV": [], "FLAC": [], "OGG": []}
        for i, x in enumerate(clips):
            sets["WAV"].append(root / f"c{i}.wav")
            sf.write(sets["WAV"][-1], x, SR, subtype="PCM_16")
            sets["FLAC"].append(root / f"c{i}.flac")
            sf.write(sets["FLAC"][-1], x, SR, subtype="PCM_16")
            sets["OGG"].append(root / f"c{i}.ogg")
            sf.write(sets["OGG"][-1], x, SR, format="OGG", subtype="VORBIS")
        wait_quiet(30)
        soundfile_formats = []
        for target in (SR, 48_000):
            for name, paths in sets.items():
                row = {
                    "format": name,
                    "target_sr": target,
                    **ab(old.load_audio, load_audio, paths, target, args.rounds),
                }
                soundfile_formats.append(row)
                print(f"{name:5s} -> {target} Hz  {row}", flush=True)
        results["soundfile_formats"] = soundfile_formats
        results["ratio_cpu_geomean"] = round(
            float(statistics.geometric_mean(r["ratio_cpu"] for r in soundfile_formats)), 3
        )
        print("geometric mean of the CPU ratios:", results["ratio_cpu_geomean"], flush=True)

        long_path = root / "long.wav"
        sf.write(long_path, tone(args.long_seconds, SR, channels=2, seed=99), SR, subtype="PCM_16")
        stream_rows = []
        for target in (SR, 48_000):
            row = {
                "target_sr": target,
                **ab(stream_with(old), stream_with(decode), [long_path], target, args.rounds),
            }
            stream_rows.append(row)
            print(f"stream {args.long_seconds:g} s WAV -> {target} Hz  {row}", flush=True)
        results["streaming"] = stream_rows

        pyav_rows = []
        audio_s = args.clips * args.seconds
        for fmt_name in ("m4a-aac", "m4a-alac"):
            fmt = BY_NAME[fmt_name]
            paths = [encode(root / f"{fmt_name}{i}{fmt.suffix}", x, SR, fmt) for i, x in enumerate(clips)]
            times = [timed(load_audio, paths, SR) for _ in range(args.rounds)]
            wav = [timed(load_audio, sets["WAV"], SR) for _ in range(args.rounds)]
            t_wall, t_cpu = (statistics.median(t[i] for t in times) for i in (0, 1))
            w_wall, w_cpu = (statistics.median(t[i] for t in wav) for i in (0, 1))
            row = {
                "format": fmt_name,
                "cpu_s": round(t_cpu, 4),
                "x_realtime_cpu": round(audio_s / t_cpu, 1),
                "x_realtime_wall": round(audio_s / t_wall, 1),
                "wav_cpu_s": round(w_cpu, 4),
                "vs_wav_cpu": round(t_cpu / w_cpu, 2),
            }
            pyav_rows.append(row)
            print(f"PyAV {fmt_name}: {row}", flush=True)
        results["pyav"] = pyav_rows
    results["cpu"] = {"wall_s": round(whole_run.wall, 1), "other_pct": round(whole_run.other_pct, 1)}
    results["loadavg"] = loadavg()
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["cpu"]), "loadavg", results["loadavg"])


if __name__ == "__main__":
    main()
