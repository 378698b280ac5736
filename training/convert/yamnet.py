"""YAMNet TFLite (int8) -> torch :class:`~training.models.audio_yamnet.YamnetNet` weights.

Why: YAMNet is the strongest AudioSet-trained audio network obtainable here, and the only copy is
Coral's int8 ``yamnet_spectra_in.tflite`` (see ``shared/data/pretrained/yamnet/SOURCE.md``).
Dequantizing its weights gives a float network that trains, exports to ONNX and agrees with the
TFLite interpreter up to the interpreter's own int8 activation rounding.

The graph is checked before anything is copied, so another model (or another YAMNet export) is
refused with a ModelError instead of loading into the wrong layers: pre-processing ops
(QUANTIZE, RESHAPE (1,96,64) -> (1,96,64,1) NHWC, a one-way SPLIT), then exactly the stem conv,
13 depthwise/pointwise pairs with the expected strides, widths, SAME padding, no dilation and a
fused RELU6, a MEAN over H and W, the 1024 -> 521 dense layer and LOGISTIC.

Layout: TFLite conv kernels are [out, kh, kw, in] -> torch [out, in, kh, kw]; depthwise kernels
[1, kh, kw, channels] -> torch [channels, 1, kh, kw]; dense [out, in] is torch's layout already.

One known difference that no float port can remove: the interpreter quantizes the input patch to
int8 over [-6.93, 5.26], so log-mel values above 5.26 are clipped there and not here.
"""

from __future__ import annotations

import csv
import warnings
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from indexer.errors import ModelError
from indexer.models.manifest import sha256_file
from training.convert.tflite_reader import Operator, TFLiteGraph, dequantize, read_tflite
from training.models.config import pretrained_table

if TYPE_CHECKING:  # torch stays out of import time
    import torch

    from training.models.audio_yamnet import YamnetNet

# sha256 of google-coral/coralmicro models/yamnet_spectra_in.tflite, from the table of known weights
YAMNET_SHA256 = pretrained_table()["yamnet"]["sha256"]
_LAYOUT_OPS = ("QUANTIZE", "RESHAPE", "SPLIT", "DEQUANTIZE")


def check_sha256(tflite_path: str | Path) -> str:
    """The file's sha256; warns (does not fail) when it is not the known YAMNet file, since another
    export with the same graph converts fine but its numbers were never checked here."""
    digest = sha256_file(tflite_path)
    if digest != YAMNET_SHA256:
        warnings.warn(
            f"{tflite_path}: sha256 {digest} is not the known YAMNet file "
            f"({YAMNET_SHA256}); converting anyway, the graph is checked op by op",
            stacklevel=2,
        )
    return digest


def _fail(path: Path, what: str) -> ModelError:
    return ModelError(f"{path}: not the expected YAMNet graph: {what}")


def _check_conv(
    path: Path, graph: TFLiteGraph, op: Operator, kind: str, stride: int, cin: int, cout: int, kernel: int
) -> None:
    """Op type, options and weight/bias shapes of one conv of the expected network."""
    where = f"operator {op.index} ({op.op})"
    if op.op != kind:
        raise _fail(path, f"{where}: expected {kind}")
    o = op.options
    if (
        o.get("padding") != "SAME"
        or (o.get("stride_h"), o.get("stride_w")) != (stride, stride)
        or (o.get("dilation_h"), o.get("dilation_w")) != (1, 1)
    ):
        raise _fail(path, f"{where}: expected SAME padding, stride {stride}, no dilation; got {o}")
    if o.get("fused_activation") != "RELU6":
        # YamnetNet hard-codes ReLU6 because that is what this graph has; anything else would
        # silently compute another function.
        raise _fail(path, f"{where}: fused activation {o.get('fused_activation')}, expected RELU6")
    if kind == "DEPTHWISE_CONV_2D" and o.get("depth_multiplier") != 1:
        raise _fail(path, f"{where}: depth multiplier {o.get('depth_multiplier')}, expected 1")
    if len(op.inputs) != 3 or min(op.inputs) < 0:
        raise _fail(path, f"{where}: expected input, weights and bias")
    weight, bias = graph.tensors[op.inputs[1]], graph.tensors[op.inputs[2]]
    want = (1, kernel, kernel, cout) if kind == "DEPTHWISE_CONV_2D" else (cout, kernel, kernel, cin)
    if weight.shape != want or weight.data is None:
        raise _fail(path, f"{where}: weights {weight.shape}, expected constant {want}")
    if bias.shape != (cout,) or bias.data is None:
        raise _fail(path, f"{where}: bias {bias.shape}, expected constant ({cout},)")


def _core_ops(path: Path, graph: TFLiteGraph) -> list[Operator]:
    """The compute ops, after checking the input, the layout ops and that they form one chain."""
    from training.models.audio_yamnet import MEL_BINS, NUM_CLASSES, PATCH_FRAMES

    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise _fail(path, f"{len(graph.inputs)} inputs / {len(graph.outputs)} outputs, expected 1 / 1")
    shape_in = graph.tensors[graph.inputs[0]].shape
    if shape_in not in ((1, PATCH_FRAMES, MEL_BINS), (1, PATCH_FRAMES, MEL_BINS, 1)):
        raise _fail(path, f"input shape {shape_in}, expected (1, {PATCH_FRAMES}, {MEL_BINS})")
    shape_out = graph.tensors[graph.outputs[0]].shape
    if shape_out != (1, NUM_CLASSES):
        raise _fail(path, f"output shape {shape_out}, expected (1, {NUM_CLASSES})")
    for op in graph.operators:
        if op.op == "SPLIT" and op.options.get("num_splits") != 1:
            raise _fail(path, f"operator {op.index}: SPLIT into {op.options.get('num_splits')}")
        if op.op == "RESHAPE":
            # the only reshape allowed is adding the channel axis: frames stay H, mel bins W
            out = graph.tensors[op.outputs[0]].shape
            if out != (1, PATCH_FRAMES, MEL_BINS, 1):
                raise _fail(path, f"operator {op.index}: RESHAPE to {out}, expected (1, {PATCH_FRAMES}, {MEL_BINS}, 1)")
    core = [op for op in graph.operators if op.op not in _LAYOUT_OPS]
    for prev, op in pairwise(core):
        if op.inputs[0] != prev.outputs[0]:
            raise _fail(path, f"operator {op.index} does not consume the output of operator {prev.index}")
    stem_in = graph.tensors[core[0].inputs[0]].shape if core else None
    if stem_in != (1, PATCH_FRAMES, MEL_BINS, 1):
        raise _fail(path, f"first conv sees {stem_in}, expected NHWC (1, {PATCH_FRAMES}, {MEL_BINS}, 1)")
    return core


def yamnet_state_dict(tflite_path: str | Path) -> dict[str, torch.Tensor]:
    """Dequantized YamnetNet state dict from the YAMNet TFLite file (float32, CPU).

    Raises ModelError for a file that is not TFLite or whose graph is not this YAMNet; warns when
    the file's sha256 is not :data:`YAMNET_SHA256`.
    """
    import torch

    from training.models.audio_yamnet import BLOCKS, EMBEDDING_WIDTH, NUM_CLASSES, STEM_WIDTH

    path = Path(tflite_path)
    graph = read_tflite(path)
    check_sha256(path)
    core = _core_ops(path, graph)
    expected = ["CONV_2D"] + ["DEPTHWISE_CONV_2D", "CONV_2D"] * len(BLOCKS) + ["MEAN", "FULLY_CONNECTED", "LOGISTIC"]
    if [op.op for op in core] != expected:
        raise _fail(path, f"ops {[op.op for op in core]}")

    state: dict[str, np.ndarray] = {}

    def take(op: Operator, name: str, order: tuple[int, ...]) -> None:
        weight, bias = graph.tensors[op.inputs[1]], graph.tensors[op.inputs[2]]
        state[f"{name}.weight"] = dequantize(weight).transpose(order)
        state[f"{name}.bias"] = dequantize(bias)

    _check_conv(path, graph, core[0], "CONV_2D", 2, 1, STEM_WIDTH, 3)
    take(core[0], "stem", (0, 3, 1, 2))  # [out, kh, kw, in] -> [out, in, kh, kw]
    cin = STEM_WIDTH
    for i, (stride, cout) in enumerate(BLOCKS):
        dw, pw = core[1 + 2 * i], core[2 + 2 * i]
        _check_conv(path, graph, dw, "DEPTHWISE_CONV_2D", stride, cin, cin, 3)
        _check_conv(path, graph, pw, "CONV_2D", 1, cin, cout, 1)
        take(dw, f"blocks.{i}.depthwise", (3, 0, 1, 2))  # [1, kh, kw, c] -> [c, 1, kh, kw]
        take(pw, f"blocks.{i}.pointwise", (0, 3, 1, 2))
        cin = cout

    mean, dense, logistic = core[-3:]
    axes = graph.tensors[mean.inputs[1]].data if len(mean.inputs) > 1 else None
    if axes is None or sorted(np.asarray(axes).reshape(-1).tolist()) != [1, 2]:
        raise _fail(path, f"operator {mean.index}: MEAN over axes {axes}, expected [1, 2] (H, W)")
    if dense.options.get("fused_activation") != "NONE" or len(dense.inputs) != 3:
        raise _fail(path, f"operator {dense.index}: dense layer with {dense.options}")
    weight, bias = graph.tensors[dense.inputs[1]], graph.tensors[dense.inputs[2]]
    if (
        weight.shape != (NUM_CLASSES, EMBEDDING_WIDTH)
        or bias.shape != (NUM_CLASSES,)
        or weight.data is None
        or bias.data is None
    ):
        raise _fail(
            path,
            f"dense weights {weight.shape} / bias {bias.shape}, expected "
            f"({NUM_CLASSES}, {EMBEDDING_WIDTH}) / ({NUM_CLASSES},)",
        )
    state["classifier.weight"] = dequantize(weight)  # [out, in] already
    state["classifier.bias"] = dequantize(bias)
    if graph.outputs[0] not in (logistic.outputs[0], graph.operators[-1].outputs[0]):
        raise _fail(path, "the model output is not the LOGISTIC scores")
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}


def load_yamnet(tflite_path: str | Path) -> YamnetNet:
    """A :class:`YamnetNet` holding the YAMNet weights, in eval mode, float32, CPU."""
    from training.models.audio_yamnet import YamnetNet

    net = YamnetNet()
    state = yamnet_state_dict(tflite_path)
    mine = net.state_dict()
    if state.keys() != mine.keys():  # guards a drift between this converter and the module
        raise ModelError(f"YAMNet keys differ from YamnetNet: {sorted(state.keys() ^ mine.keys())}")
    for key, value in state.items():
        if value.shape != mine[key].shape:
            raise ModelError(f"{key}: converted shape {tuple(value.shape)}, YamnetNet expects {tuple(mine[key].shape)}")
    net.load_state_dict(state, strict=True)
    return net.eval()


def class_names(csv_path: str | Path) -> list[str]:
    """The 521 AudioSet display names in YAMNet's output order (``index,mid,display_name``)."""
    from training.models.audio_yamnet import NUM_CLASSES

    path = Path(csv_path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        indexed = {int(row["index"]): row["display_name"] for row in rows}
    except (OSError, KeyError, TypeError, ValueError, csv.Error) as exc:
        raise ModelError(f"{path}: cannot read the YAMNet class map ({exc})") from exc
    if sorted(indexed) != list(range(NUM_CLASSES)) or len(rows) != NUM_CLASSES:
        raise ModelError(f"{path}: expected indices 0..{NUM_CLASSES - 1} once each, got {len(rows)} rows")
    return [indexed[i] for i in range(NUM_CLASSES)]
