#!/usr/bin/env python
"""The new default model against the old one, in the same run, through the torch-free runtime
(``ClapEncoder.open``, default variant, CPU): audio clips/s at batch 1 and 16 with the audio network's
GFLOP per clip and fraction of the fp32 peak, single text query latency, and one long file embedded
in a fresh subprocess per model (wall time, peak RSS). What each part measures: bench/README.md.

    .venv/bin/python bench/default_model.py                       # full run -> bench/results_default_model.json
    .venv/bin/python bench/default_model.py --new models/clapsearch-sfx-v2 --old models/clapsearch-sfx-v1
    .venv/bin/python bench/default_model.py --clips 2 --queries 5 --long-seconds 20 --out /tmp/r.json  # smoke
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import command_line, quiet_logs, synth  # noqa: E402
from embed import machine_info as _embed_machine_info  # noqa: E402
from machine import CpuMonitor, cpu_info, loadavg, timed, wait_quiet, write_results  # noqa: E402

CLIP_SECONDS = 10.0
CLIP_RATE = 44_100
LONG_RATE = 16_000
TEXT_P50_TARGET_MS = 5.0  # new default model, single query

# YAMNet / MobileNetV1 (Plakal & Ellis): stem 3x3 s2 conv 1->32, then 13 depthwise-separable blocks.
YAMNET_STRIDES = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)
YAMNET_WIDTHS = (64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)

SOUNDS = (
    "dog barking; rain on a tin roof; church bells ringing; glass breaking; birds singing at dawn; "
    "footsteps on gravel; a door creaking open; wind in the trees; waves crashing on the shore; "
    "a car engine starting; a jet flying overhead; a helicopter passing; a train horn; "
    "typing on a keyboard; a clock ticking; water dripping; a crackling fire; a rooster crowing; "
    "a horse galloping; slow piano; a violin melody; a drum roll; an electric guitar riff; applause; "
    "a police siren; a chainsaw; a crowd cheering; a baby crying; thunder; a busy kitchen; "
    "street market chatter; children laughing; a cat meowing; a phone ringing; a microwave beeping; "
    "a vacuum cleaner; a toilet flushing; frying bacon; a kettle whistling; cutlery clinking; "
    "a bicycle bell; a motorbike revving; a lawn mower; bees buzzing; frogs croaking at night; "
    "an owl hooting; a cow mooing; sheep bleating; a door slamming; a zipper; coins dropping; "
    "paper rustling; a camera shutter; a ball bouncing; a whistle blowing; a fog horn; a heartbeat; "
    "someone snoring; a man coughing; a woman whispering"
).split("; ")
PLACES = ("", " in the distance", " close up", " indoors", " outside", " at night", " in a large hall")
PLACES += (" with traffic behind", " in the rain", " on the radio", " echoing in a tunnel")


# ----------------------------------------------------------------------------- inputs
def make_waves(count: int, seed: int, seconds: float = CLIP_SECONDS, rate: int = CLIP_RATE) -> list[np.ndarray]:
    """``count`` mono float32 waveforms: 1-3 enveloped tones over coloured noise."""
    return [synth(np.random.default_rng(seed * 1000 + i), int(seconds * rate), rate)[:, 0] for i in range(count)]


def make_phrases(count: int, seed: int) -> list[str]:
    """``count`` varied everyday-sound phrases (a sound, sometimes with a place), all distinct if possible."""
    rng = np.random.default_rng(seed)
    combos = [s + p for s in SOUNDS for p in sorted(set(PLACES))]
    order = rng.permutation(len(combos))
    return [combos[order[i % len(combos)]] for i in range(count)]


def write_long_flac(path: Path, seconds: float, seed: int, rate: int = LONG_RATE, block_s: float = 60.0) -> Path:
    """A mono 16-bit FLAC of ``seconds`` (other tones every block, over noise), written block by block."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    block, total = int(block_s * rate), int(seconds * rate)
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=1, subtype="PCM_16", format="FLAC") as fh:
        for done in range(0, total, block):
            fh.write(synth(rng, min(block, total - done), rate, t0=done / rate))
    return path


# ----------------------------------------------------------------------------- FLOPs
def yamnet_macs(frames: int = 96, mels: int = 64, classes: int = 521) -> int:
    """Analytic multiply-adds of one YAMNet patch (SAME padding: out = ceil(in / stride))."""
    h, w = -(-frames // 2), -(-mels // 2)
    macs = h * w * 32 * 1 * 9  # stem 3x3 s2, 1 -> 32
    cin = 32
    for stride, cout in zip(YAMNET_STRIDES, YAMNET_WIDTHS):
        h, w = -(-h // stride), -(-w // stride)
        macs += h * w * cin * 9  # depthwise 3x3
        macs += h * w * cin * cout  # pointwise 1x1
        cin = cout
    return macs + cin * classes  # dense 1024 -> 521 after global average pooling


def onnx_macs(path: Path, feeds: dict[str, tuple[int, ...]] | None = None) -> dict:
    """Multiply-adds of a graph's Conv/ConvTranspose/Gemm/MatMul nodes from inferred shapes.

    ``feeds`` fixes input shapes (default: every symbolic dimension = 1). Returns the total and the
    per-op counts; ``unresolved`` counts nodes whose shapes inference could not give.
    """
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(path))
    inits = {i.name: tuple(i.dims) for i in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        dims = inp.type.tensor_type.shape.dim
        want = (feeds or {}).get(inp.name)
        for k, d in enumerate(dims):
            value = want[k] if want else (d.dim_value if d.HasField("dim_value") else 1)
            d.Clear()
            d.dim_value = int(value)
    del model.graph.value_info[:]  # stale symbolic shapes from the export would shadow the fixed ones
    for out in model.graph.output:
        out.type.tensor_type.ClearField("shape")
    model = shape_inference.infer_shapes(model, data_prop=True)
    shapes = dict(inits)
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = tuple(d.dim_value for d in dims)
    counted = [n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul")]
    wanted = {name for n in counted for name in (n.output[0], n.input[0], n.input[1])}
    missing = sorted(wanted - set(shapes))
    if missing:  # shapes inference could not give (e.g. pads computed by the graph): run it once and look
        shapes.update(_run_shapes(model, missing, feeds))
    by_op: dict[str, int] = {}
    unresolved = 0
    for node in counted:
        conv = node.op_type in ("Conv", "ConvTranspose")
        # what the count needs: the output's shape and the weight's (Conv) or the left operand's (Gemm/MatMul)
        out, operand = shapes.get(node.output[0]), shapes.get(node.input[1 if conv else 0])
        if out is None or operand is None:
            unresolved += 1
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv":  # weight (Cout, Cin/g, k...): each output element costs Cin/g * prod(k) MACs
            per_out = int(np.prod(operand[1:]))
        elif conv:  # ConvTranspose weight (Cin, Cout/g, k...)
            per_out = int(np.prod(operand[2:])) * operand[0] // attrs.get("group", 1)
        else:
            per_out = int(operand[0] if (node.op_type == "Gemm" and attrs.get("transA", 0)) else operand[-1])
        by_op[node.op_type] = by_op.get(node.op_type, 0) + int(np.prod(out)) * per_out
    return {
        "macs": sum(by_op.values()),
        "by_op": by_op,
        "unresolved_nodes": unresolved,
        "shapes_from_run": len(missing),
    }


def _run_shapes(model, names: list[str], feeds: dict | None) -> dict[str, tuple[int, ...]]:
    """Shapes of ``names`` from one ONNX Runtime run on zeros (inputs as fixed in ``model``)."""
    import onnx
    import onnxruntime as ort

    model = onnx.ModelProto.FromString(model.SerializeToString())
    outputs = {o.name for o in model.graph.output}
    for name in names:
        if name not in outputs:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    dtypes = {
        f"tensor({t})": np.dtype(t if t != "float" else "float32")
        for t in ("float", "bool", "int64", "int32", "float16")
    }
    inputs = {
        i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], dtypes.get(i.type, np.float32))
        for i in session.get_inputs()
    }
    values = session.run(names, inputs)
    return {name: tuple(v.shape) for name, v in zip(names, values)}


def audio_gflop_per_clip(encoder, wave: np.ndarray, rate: int) -> dict:
    """GFLOP (2 x MACs) of the audio network for one clip, counted from the model folder's graphs."""
    manifest, files = encoder.manifest, encoder.manifest.variants[encoder.variant]
    views = encoder.views_from_waveform(wave, rate)
    folder = encoder.folder
    if manifest.patched:
        from indexer.audio.patches import frames_to_patches

        patches = frames_to_patches(views.features[0], manifest.audio_frontend)
        n_patches, frames, mels = patches.shape
        tower = onnx_macs(folder / files.audio, {"patches": (1, frames, mels)})
        head = onnx_macs(folder / files.audio_head) if files.audio_head else {"macs": 0}
        analytic = yamnet_macs(frames, mels)  # YAMNet's 521-way dense (outputs may add the 1024-d embedding)
        macs = tower["macs"] * n_patches + head["macs"]
        flops = {"gflop": round(2 * macs / 1e9, 3), "patches_per_clip": int(n_patches)}
        flops["tower_mflop_per_patch"] = round(2 * tower["macs"] / 1e6, 2)
        flops |= {"head_mflop": round(2 * head["macs"] / 1e6, 3), "unresolved_nodes": tower["unresolved_nodes"]}
        flops["analytic_yamnet_gflop"] = round(2 * analytic * n_patches / 1e9, 3)
        return flops | {"analytic_yamnet_mflop_per_patch": round(2 * analytic / 1e6, 2)}
    feats = views.features
    tower = onnx_macs(folder / files.audio, {"input_features": (1, *feats.shape), "is_longer": (1,)})
    flops = {"gflop": round(2 * tower["macs"] / 1e9, 3), "input_shape": list(feats.shape)}
    return flops | {"unresolved_nodes": tower["unresolved_nodes"]}


def numpy_peak_gflops(n: int = 2048, tries: int = 5) -> float:
    """GFLOP/s of an n x n float32 numpy matmul, best of ``tries`` (after one warm-up)."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), np.float32), rng.standard_normal((n, n), np.float32)
    a @ b  # warm-up
    best = min(timed(lambda: a @ b)[0] for _ in range(tries))
    return 2.0 * n**3 / best / 1e9


# ----------------------------------------------------------------------------- measurements
def audio_pass(encoder, waves: list[np.ndarray], batch: int, rate: int = CLIP_RATE) -> float:
    """Seconds to embed every wave end to end, ``batch`` clips per ``embed_views`` call."""
    t0 = time.perf_counter()
    for start in range(0, len(waves), batch):
        views = [encoder.views_from_waveform(w, rate) for w in waves[start : start + batch]]
        encoder.embed_views(views)
    return time.perf_counter() - t0


def time_audio(encoders: dict, waves: list[np.ndarray], batches: tuple[int, ...], repeats: int, quiet: float) -> dict:
    """clips/s per model and batch: median of ``repeats`` passes, models in alternating blocks."""
    names = list(encoders)
    for enc in encoders.values():  # warm-up: first-call allocations, thread pools
        audio_pass(enc, waves[:2], 1)
    out: dict = {name: {} for name in names}
    for batch in batches:
        times: dict[str, list[float]] = {name: [] for name in names}
        others: dict[str, list[float]] = {name: [] for name in names}
        for rep in range(repeats):
            for name in names if rep % 2 == 0 else names[::-1]:
                wait_quiet(quiet)
                with CpuMonitor() as mon:
                    times[name].append(audio_pass(encoders[name], waves, batch))
                others[name].append(mon.other_pct)
        for name in names:
            med = statistics.median(times[name])
            row = {"clips_per_s": round(len(waves) / med, 2), "ms_per_clip": round(1000 * med / len(waves), 2)}
            row |= {"pass_s": [round(t, 3) for t in times[name]], "other_load_pct": [round(o, 1) for o in others[name]]}
            out[name][f"b{batch}"] = row
    return out


def time_text(encoder, phrases: list[str], warmup: int, quiet: float) -> dict:
    """Single-query latency, one ``embed_text`` call per phrase (tokenisation included); the first
    ``warmup`` phrases are untimed."""
    for q in phrases[:warmup]:
        encoder.embed_text([q])
    wait_quiet(quiet)
    lat = []
    with CpuMonitor() as mon:
        for q in phrases[warmup:]:
            t0 = time.perf_counter()
            encoder.embed_text([q])
            lat.append(1000 * (time.perf_counter() - t0))
    figures = {"p50_ms": np.percentile(lat, 50), "p95_ms": np.percentile(lat, 95), "mean_ms": np.mean(lat)}
    figures = {k: round(float(v), 3) for k, v in (figures | {"max_ms": np.max(lat)}).items()}
    return figures | {"queries": len(lat), "warmup": warmup, "other_load_pct": round(mon.other_pct, 1)}


_LONG_CHILD = r"""
import json, sys, time
sys.path[:0] = [sys.argv[1], sys.argv[1] + '/bench']
import numpy as np
from machine import status_bytes as status
from indexer.models.encoder import ClapEncoder
t0 = time.perf_counter()
enc = ClapEncoder.open(sys.argv[2], device='cpu')
open_s = time.perf_counter() - t0
rss_open, hwm_open = status('VmRSS'), status('VmHWM')
t0 = time.perf_counter()
items = list(enc.embed_files([sys.argv[3]]))
wall = time.perf_counter() - t0
item = items[0]
import resource
print(json.dumps({"wall_s": wall, "open_s": open_s, "rss_after_open_bytes": rss_open,
                  "peak_rss_after_open_bytes": hwm_open, "peak_rss_bytes": status('VmHWM'),
                  "ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "duration_s": item.duration_s, "is_longer": item.is_longer,
                  "error": None if item.error is None else str(item.error),
                  "norm": None if item.vector is None else float(np.linalg.norm(item.vector))}))
"""


def long_file(folder: Path, path: Path, timeout: float = 1800) -> dict:
    """Embed ``path`` with ``embed_files([path])`` in a fresh subprocess; its wall time and peak RSS."""
    proc = subprocess.run(
        [sys.executable, "-c", _LONG_CHILD, str(REPO), str(folder), str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"long-file subprocess for {folder} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["peak_rss_mib"] = round(res["peak_rss_bytes"] / 2**20, 1)
    res["rss_after_open_mib"] = round(res["rss_after_open_bytes"] / 2**20, 1)
    res["peak_growth_mib"] = round((res["peak_rss_bytes"] - res["rss_after_open_bytes"]) / 2**20, 1)
    res["wall_s"] = round(res["wall_s"], 2)
    res["open_s"] = round(res["open_s"], 3)
    return res


def machine_info() -> dict:
    try:
        info = _embed_machine_info()  # also records torch/transformers versions where installed
    except ImportError:
        import onnxruntime

        info = cpu_info() | {"versions": {"onnxruntime": onnxruntime.__version__, "numpy": np.__version__}}
    info["loadavg_at_start"] = loadavg()
    return info


def _model_info(enc) -> dict:
    m, folder = enc.manifest, enc.folder.resolve()
    folder = folder.relative_to(REPO) if folder.is_relative_to(REPO) else folder
    info = {"folder": str(folder), "name": m.name, "variant": enc.variant, "patched": bool(m.patched)}
    info |= {"architecture": m.audio.architecture, "sample_rate": m.audio_frontend.sample_rate}
    return info | {"long_policy": m.audio_frontend.long_policy, "embed_dim": m.embed_dim, "providers": enc.providers}


# ----------------------------------------------------------------------------- the run
def run(args) -> dict:
    new_dir, old_dir = Path(args.new), Path(args.old)
    same = new_dir.resolve() == old_dir.resolve()
    names = {"new": new_dir, "old": old_dir}
    results: dict = {
        "command": command_line(args.argv, "bench/default_model.py"),
        "machine": machine_info(),
        "settings": {k: getattr(args, k) for k in ("clips", "repeats", "batches", "queries", "long_seconds")}
        | {
            "clip_seconds": CLIP_SECONDS,
            "clip_rate": CLIP_RATE,
            "long_rate": LONG_RATE,
            "same_folder_both_sides": same,
        },
    }
    from indexer.models.encoder import ClapEncoder

    with quiet_logs():
        encoders = {key: ClapEncoder.open(folder, device="cpu") for key, folder in names.items()}
    results["models"] = {key: _model_info(enc) for key, enc in encoders.items()}

    # 1. audio throughput, FLOPs and fraction of peak
    waves = make_waves(args.clips, args.seed)
    audio = time_audio(encoders, waves, tuple(args.batches), args.repeats, args.wait_quiet)
    peak = numpy_peak_gflops(args.peak_n)
    results["peak"] = {"numpy_fp32_gflops": round(peak, 1), "matmul_n": args.peak_n, "best_of": 5}
    for key, enc in encoders.items():
        try:
            audio[key]["flops"] = audio_gflop_per_clip(enc, waves[0], CLIP_RATE)
        except Exception as exc:  # shape inference can fail on exotic graphs: report, keep the timings
            audio[key]["flops"] = {"gflop": None, "error": f"{type(exc).__name__}: {exc}"}
        gflop = audio[key]["flops"].get("gflop")
        for batch in args.batches:
            row = audio[key][f"b{batch}"]
            if gflop:
                row["gflops_achieved"] = round(gflop * row["clips_per_s"], 2)
                row["fraction_of_peak"] = round(gflop * row["clips_per_s"] / peak, 4)
    clips = {key: {b: audio[key][f"b{b}"]["clips_per_s"] for b in args.batches} for key in ("new", "old")}
    audio["ratio_new_over_old"] = {f"b{b}": round(clips["new"][b] / clips["old"][b], 3) for b in args.batches}
    results["audio"] = audio

    # 2. text latency
    phrases = make_phrases(args.queries + args.text_warmup, args.seed)
    text = {}
    for key in ["old", "new"] if args.seed % 2 else ["new", "old"]:
        text[key] = time_text(encoders[key], phrases, args.text_warmup, args.wait_quiet)
    text["ratio_p50_new_over_old"] = round(text["new"]["p50_ms"] / text["old"]["p50_ms"], 3)
    text["target_p50_ms"] = TEXT_P50_TARGET_MS
    text["new_meets_target"] = text["new"]["p50_ms"] <= TEXT_P50_TARGET_MS
    results["text"] = text
    del encoders

    # 3. the long file, one fresh subprocess per model
    results["long_file"] = long_files(args, names, results["models"])
    return results


def long_files(args, names: dict[str, Path], models: dict) -> dict:
    """One ``--long-seconds`` FLAC embedded by each model in a fresh subprocess: wall time, peak RSS."""
    with tempfile.TemporaryDirectory(prefix="bench-default-model-") as tmp:
        path = Path(tmp) / f"long_{int(args.long_seconds)}s_16k.flac"
        write_s = timed(lambda: write_long_flac(path, args.long_seconds, args.seed))[0]
        long = {"seconds": args.long_seconds, "rate": LONG_RATE, "file_bytes": path.stat().st_size}
        long["write_s"] = round(write_s, 1)
        for key in ("new", "old"):
            wait_quiet(args.wait_quiet)
            with CpuMonitor(children=True) as mon:  # the subprocess is ours
                long[key] = long_file(names[key], path)
            long[key]["other_load_pct"] = round(mon.other_pct, 1)
            if models[key]["patched"]:
                from indexer.audio.patches import patch_count
                from indexer.models.manifest import load_manifest

                spec = load_manifest(names[key]).audio_frontend
                long[key]["patches"] = int(patch_count(int(args.long_seconds * spec.sample_rate), spec))
    return long


def print_report(r: dict) -> None:
    m, a, t, lf = r["models"], r["audio"], r["text"], r["long_file"]
    print(
        f"machine: {r['machine'].get('cpu')} ({r['machine'].get('logical_cpus')} logical CPUs), "
        f"numpy fp32 peak {r['peak']['numpy_fp32_gflops']} GFLOP/s"
    )
    print(
        f"new: {m['new']['folder']} ({m['new']['architecture']}, patched={m['new']['patched']})   "
        f"old: {m['old']['folder']} ({m['old']['architecture']}, patched={m['old']['patched']})"
    )
    batches = r["settings"]["batches"]
    label = f"{lf['seconds'] / 3600:g} h file" if lf["seconds"] >= 3600 else f"{lf['seconds']:g} s file"
    per_batch = {b: {k: a[k][f"b{b}"] for k in ("new", "old")} for b in batches}
    # (row, {"new": ..., "old": ...}, figure, new/old: a value, True to compute it, or None)
    rows = [
        (f"audio clips/s, batch {b}", per_batch[b], "clips_per_s", a["ratio_new_over_old"][f"b{b}"]) for b in batches
    ]
    rows.append(("audio GFLOP / 10 s clip", {k: a[k]["flops"] for k in ("new", "old")}, "gflop", None))
    rows += [(f"fraction of fp32 peak, b{b}", per_batch[b], "fraction_of_peak", None) for b in batches]
    rows += [("text p50 ms", t, "p50_ms", t["ratio_p50_new_over_old"]), ("text p95 ms", t, "p95_ms", True)]
    rows += [(f"{label}: wall s", lf, "wall_s", True), (f"{label}: peak RSS MiB", lf, "peak_rss_mib", True)]
    rows.append((f"{label}: RSS after open MiB", lf, "rss_after_open_mib", None))
    print(f"{'':32s} {'new':>12s} {'old':>12s} {'new/old':>9s}")
    for name, part, key, ratio in rows:
        new, old = part["new"].get(key), part["old"].get(key)
        ratio = round(new / old, 3) if ratio is True else ratio
        fmt = lambda v: "-" if v is None else f"{v:g}"  # noqa: E731
        print(f"{name:32s} {fmt(new):>12s} {fmt(old):>12s} {fmt(ratio):>9s}")
    fl = a["new"]["flops"]
    if "analytic_yamnet_gflop" in fl:
        print(
            f"new audio net: {fl['patches_per_clip']} patches x {fl['tower_mflop_per_patch']} MFLOP "
            f"(analytic YAMNet {fl['analytic_yamnet_mflop_per_patch']}) + head {fl['head_mflop']} MFLOP"
        )
    print(f"text p50 target <= {t['target_p50_ms']} ms for new: {'PASS' if t['new_meets_target'] else 'MISS'}")
    loads = [o for k in ("new", "old") for b in batches for o in a[k][f"b{b}"]["other_load_pct"]]
    worst = max(loads + [t["new"]["other_load_pct"], t["old"]["other_load_pct"]], default=0.0)
    if worst > 10:
        print(f"warning: other processes took up to {worst:.0f} % of the CPUs during a timed block")


def parse_args(argv: list[str] | None = None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--new", default=str(REPO / "models" / "clapsearch-sfx-v2"))
    p.add_argument("--old", default=str(REPO / "models" / "clapsearch-sfx-v1"))
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--text-warmup", type=int, default=20)
    p.add_argument("--long-seconds", type=float, default=3600.0)
    p.add_argument("--peak-n", type=int, default=2048)
    p.add_argument("--wait-quiet", type=float, default=5.0, help="max seconds to wait for idle CPUs per block")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(REPO / "bench" / "results_default_model.json"))
    args = p.parse_args(argv)
    args.argv = argv
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    results = run(args)
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    print_report(results)
    write_results(Path(args.out), results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
