"""YAMNet TFLite -> torch: parity with the TFLite interpreter, exact dequantization, the tower
wrapper, ONNX export and refusal of files that are not TFLite.

Offline. Needs ``shared/data/pretrained/yamnet`` beside the repository checkout (CI clones may
lack it: those tests skip); the parity test also needs ``ai-edge-litert`` (the ``dev`` extra).
The interpreter runs int8 activations and int8 output scores (steps of 1/256), so the float port
cannot match it exactly: the bounds below are the measured agreement plus a margin.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from indexer.errors import ModelError  # noqa: E402
from training.convert.tflite_reader import read_tflite  # noqa: E402
from training.convert.yamnet import (  # noqa: E402
    YAMNET_SHA256,
    check_sha256,
    class_names,
    load_yamnet,
    yamnet_state_dict,
)
from training.models.audio_yamnet import YamnetNet, YamnetTower  # noqa: E402

YAMNET_DIR = Path(__file__).resolve().parents[2].parent / "shared/data/pretrained/yamnet"
TFLITE = YAMNET_DIR / "yamnet_spectra_in.tflite"
LOG_FLOOR = float(np.log(0.001))  # log(mel + 0.001) of silence


@pytest.fixture(scope="module")
def tflite_path() -> Path:
    if not TFLITE.is_file():
        pytest.skip(f"YAMNet TFLite file not found at {TFLITE}")
    return TFLITE


@pytest.fixture(scope="module")
def net(tflite_path: Path) -> YamnetNet:
    return load_yamnet(tflite_path)


def _smooth(rng: np.random.Generator, shape: tuple[int, int], kt: float, kf: float) -> np.ndarray:
    """Gaussian noise low-passed in time and frequency: smooth, spectrogram-like surfaces."""
    spectrum = np.fft.rfft2(rng.standard_normal(shape))
    ft = np.fft.fftfreq(shape[0])[:, None]
    ff = np.fft.rfftfreq(shape[1])[None, :]
    spectrum *= np.exp(-((ft / kt) ** 2) - (ff / kf) ** 2)
    out = np.fft.irfft2(spectrum, s=shape)
    return out / out.std()


def _patches() -> list[np.ndarray]:
    """20 log-mel-like patches (log(|smooth random spectrum| + 0.001) with a spectral tilt and a
    level envelope), then silence and a loud one. Capped at 5.0, inside the interpreter's input
    quantization range (it clips at 5.26; a float port does not, which is not what we test)."""
    out = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        surface = _smooth(rng, (96, 64), rng.uniform(0.02, 0.3), rng.uniform(0.02, 0.3))
        tilt = np.linspace(0.0, -rng.uniform(0.0, 3.0), 64)[None, :]
        envelope = _smooth(rng, (96, 1), 0.05, 1.0) * rng.uniform(0.2, 1.5)
        mel = np.exp(rng.uniform(-1.0, 2.0) + rng.uniform(0.5, 1.5) * surface + tilt + envelope)
        out.append(np.log(np.abs(mel) + 0.001))
    out.append(np.full((96, 64), LOG_FLOOR))
    rng = np.random.default_rng(99)
    out.append(4.5 + 0.2 * _smooth(rng, (96, 64), 0.2, 0.2))  # loud: every bin near the top
    return [np.clip(p, LOG_FLOOR, 5.0).astype(np.float32) for p in out]


def _interpreter_scores(path: Path, patches: list[np.ndarray]) -> np.ndarray:
    interpreter_mod = pytest.importorskip("ai_edge_litert.interpreter")
    interpreter = interpreter_mod.Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    assert tuple(inp["shape"]) == (1, 96, 64) and tuple(out["shape"]) == (1, 521)
    scores = []
    for patch in patches:
        interpreter.set_tensor(inp["index"], patch[None])
        interpreter.invoke()
        scores.append(interpreter.get_tensor(out["index"])[0].copy())
    return np.stack(scores)


def _torch_scores(net: YamnetNet, patches: list[np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return torch.sigmoid(net(torch.from_numpy(np.stack(patches)))[1]).numpy()


def _top1_agrees(reference: np.ndarray, ours: np.ndarray) -> bool:
    """Our top class is one of the interpreter's top classes (its 1/256 score steps can tie)."""
    return int(np.argmax(ours)) in set(np.flatnonzero(reference == reference.max()).tolist())


def test_parity_with_tflite_interpreter_on_shipped_patch(tflite_path: Path, net: YamnetNet):
    patch = np.fromfile(YAMNET_DIR / "yamnet_test_spectra.bin", dtype=np.float32).reshape(96, 64)
    ref = _interpreter_scores(tflite_path, [patch])[0]
    ours = _torch_scores(net, [patch])[0]
    # measured: max |diff| 0.0038, correlation 0.99999, top-1 "Speech" (0.941 vs 0.945),
    # top-3 identical in order
    names = class_names(YAMNET_DIR / "yamnet_class_map.csv")
    assert names[int(np.argmax(ours))] == names[int(np.argmax(ref))] == "Speech"
    assert list(np.argsort(-ours)[:3]) == list(np.argsort(-ref)[:3])
    assert np.abs(ours - ref).max() < 0.02
    assert np.corrcoef(ours, ref)[0, 1] > 0.999


def test_parity_with_tflite_interpreter_on_generated_patches(tflite_path: Path, net: YamnetNet):
    patches = _patches()
    ref = _interpreter_scores(tflite_path, patches)
    ours = _torch_scores(net, patches)
    diffs = np.abs(ours - ref).max(axis=1)
    corrs = np.array([np.corrcoef(a, b)[0, 1] for a, b in zip(ref, ours, strict=True)])
    top1 = [_top1_agrees(a, b) for a, b in zip(ref, ours, strict=True)]
    top5 = [len(set(np.argsort(-a)[:5]) & set(np.argsort(-b)[:5])) for a, b in zip(ref, ours, strict=True)]
    # measured (22 patches, values -6.91..5.0): top-1 agrees on 22/22 (silence -> "Silence" on
    # both); top-5 overlap mean 4.77 of 5, min 3; per-patch max |diff| median 0.015, worst 0.069;
    # mean |diff| over all scores 0.0002; per-patch correlation min 0.991, all scores pooled 0.9992
    assert sum(top1) >= len(patches) - 2, top1
    assert top1[-2] and top1[-1], "silence and loud patches must agree"
    assert np.mean(top5) >= 4.0 and min(top5) >= 2, top5
    assert np.median(diffs) < 0.05 and diffs.max() < 0.15, diffs
    assert corrs.min() > 0.95 and np.corrcoef(ref.ravel(), ours.ravel())[0, 1] > 0.995, corrs


def test_weights_are_dequantized_exactly(tflite_path: Path):
    """A handful of tensors recomputed by hand from the raw int8/int32 data and their scales."""
    graph = read_tflite(tflite_path)
    state = yamnet_state_dict(tflite_path)
    convs = [op for op in graph.operators if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    dense = next(op for op in graph.operators if op.op == "FULLY_CONNECTED")

    def by_hand(index: int, axis: int) -> np.ndarray:
        t = graph.tensors[index]
        shape = [1] * t.data.ndim
        shape[axis] = -1
        q = t.quantization
        return (
            (t.data.astype(np.float64) - q.zero_point.reshape(shape)) * q.scale.astype(np.float64).reshape(shape)
        ).astype(np.float32)

    stem_w = by_hand(convs[0].inputs[1], 0)  # [32, 3, 3, 1]
    assert np.array_equal(state["stem.weight"].numpy(), stem_w.transpose(0, 3, 1, 2))
    assert np.array_equal(state["stem.bias"].numpy(), by_hand(convs[0].inputs[2], 0))
    dw = by_hand(convs[3].inputs[1], 3)  # block 1 depthwise [1,3,3,64]
    assert np.array_equal(state["blocks.1.depthwise.weight"].numpy(), dw.transpose(3, 0, 1, 2))
    assert np.array_equal(state["blocks.1.depthwise.bias"].numpy(), by_hand(convs[3].inputs[2], 0))
    pw = by_hand(convs[-1].inputs[1], 0)  # block 12 pointwise
    assert np.array_equal(state["blocks.12.pointwise.weight"].numpy()[:, :, 0, 0], pw[:, 0, 0, :])
    assert np.array_equal(state["classifier.weight"].numpy(), by_hand(dense.inputs[1], 0))
    assert np.array_equal(state["classifier.bias"].numpy(), by_hand(dense.inputs[2], 0))
    # one element spelled out, so the formula itself is checked and not just repeated
    t = graph.tensors[convs[0].inputs[1]]
    q = t.quantization
    element = (int(t.data[5, 1, 2, 0]) - int(q.zero_point[5])) * float(q.scale[5])
    assert state["stem.weight"][5, 0, 1, 2].item() == pytest.approx(element, rel=1e-7)
    # the per-channel scales matter: channels differ, and weights are not all on one grid
    assert len(set(q.scale.tolist())) > 1
    assert all(v.dtype == torch.float32 for v in state.values())


def test_graph_facts_and_class_map(tflite_path: Path):
    graph = read_tflite(tflite_path)
    convs = [op for op in graph.operators if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert len(convs) == 27
    assert {op.options["fused_activation"] for op in convs} == {"RELU6"}
    assert {op.options["padding"] for op in convs} == {"SAME"}
    assert [op.op for op in graph.operators[:3]] == ["QUANTIZE", "RESHAPE", "SPLIT"]
    assert graph.tensors[graph.operators[1].outputs[0]].shape == (1, 96, 64, 1)  # NHWC, H=frames
    assert check_sha256(tflite_path) == YAMNET_SHA256
    names = class_names(YAMNET_DIR / "yamnet_class_map.csv")
    assert len(names) == 521 and names[0] == "Speech" and names[1] == "Child speech, kid speaking"


def test_other_hash_warns_but_converts(tflite_path: Path, tmp_path: Path):
    copy = tmp_path / "yamnet.tflite"
    copy.write_bytes(tflite_path.read_bytes() + b"\0" * 16)  # trailing bytes: same graph
    with pytest.warns(UserWarning, match="sha256"):
        state = yamnet_state_dict(copy)
    assert torch.equal(state["classifier.bias"], yamnet_state_dict(tflite_path)["classifier.bias"])


def test_tower_is_mean_of_patch_outputs_and_trains():
    torch.manual_seed(0)
    tower = YamnetTower()
    assert (tower.width, tower.embedding_width, tower.num_classes) == (1545, 1024, 521)
    assert (tower.patch_frames, tower.patch_hop) == (96, 48)
    frames = [96, 200, 250]  # 1, 3 (drops 8 frames) and 4 patches (drops 10)
    clips = torch.randn(3, 1, max(frames), 64)
    out = torch.stack([tower(clips[i : i + 1, :, :t], None)[0] for i, t in enumerate(frames)])
    for i, t in enumerate(frames):
        starts = range(0, t - 96 + 1, 48)
        patches = torch.stack([clips[i, 0, s : s + 96] for s in starts])
        # same patches, same batch size: the same arithmetic, so equal bit for bit
        assert torch.equal(out[i], tower.patch_outputs(patches).mean(dim=0)), i
    # batched clips of one length: each row as alone
    batch = tower(clips[:, :, :200], torch.zeros(3, dtype=torch.bool))
    assert batch.shape == (3, 1545)
    single = torch.cat([tower(clips[i : i + 1, :, :200], None) for i in range(3)])
    torch.testing.assert_close(batch, single, rtol=1e-5, atol=1e-5)
    batch.sum().backward()
    assert tower.net.stem.weight.grad is not None and tower.net.stem.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="96 frames"):
        tower(torch.randn(1, 1, 95, 64), None)


def test_onnx_export_dynamic_batch(net: YamnetNet, tmp_path: Path):
    """Opset 17 through the TorchScript exporter: the dynamo exporter cannot down-convert its Pad
    to opset 17 (no 18 -> 17 adapter) and writes opset 18 instead; the project exports at 18."""
    ort = pytest.importorskip("onnxruntime")
    x = (torch.randn(7, 96, 64, generator=torch.Generator().manual_seed(1)) * 2).clamp(LOG_FLOOR)
    path = tmp_path / "yamnet.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (x[:2],),
            str(path),
            input_names=["patches"],
            output_names=["embedding", "logits"],
            opset_version=17,
            dynamo=False,
            dynamic_axes={name: {0: "batch"} for name in ("patches", "embedding", "logits")},
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    embedding, logits = session.run(None, {"patches": x.numpy()})
    with torch.no_grad():
        ref_embedding, ref_logits = net(x)
    np.testing.assert_allclose(embedding, ref_embedding.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(logits, ref_logits.numpy(), rtol=0, atol=1e-4)
    # measured: each row alone equals the same row inside the batch of 7 bit for bit
    for i in range(7):
        alone_embedding, alone_logits = session.run(None, {"patches": x[i : i + 1].numpy()})
        assert np.array_equal(alone_embedding[0], embedding[i]), i
        assert np.array_equal(alone_logits[0], logits[i]), i


@pytest.mark.parametrize("content", [b"", b"\x13\x37\xbe\xef\x00\x01", b"not tflite" * 100])
def test_non_tflite_file_is_a_model_error(tmp_path: Path, content: bytes):
    path = tmp_path / "model.tflite"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="not a TensorFlow Lite model"):
        read_tflite(path)
    with pytest.raises(ModelError):
        load_yamnet(path)


def _one_op_tflite(op_name: str) -> bytes:
    """A valid TFLite flatbuffer holding one float op ``(1, 96, 64) -> (1, 96, 64)``."""
    tfl = pytest.importorskip("tflite")
    import flatbuffers

    b = flatbuffers.Builder(1024)

    def int_vector(start, values):
        start(b, len(values))
        for v in reversed(values):
            b.PrependInt32(v)
        return b.EndVector()

    tfl.BufferStart(b)
    buffer = tfl.BufferEnd(b)
    tensors = []
    for name in ("in", "out"):
        name_offset = b.CreateString(name)
        shape = int_vector(tfl.TensorStartShapeVector, [1, 96, 64])
        tfl.TensorStart(b)
        tfl.TensorAddShape(b, shape)
        tfl.TensorAddType(b, tfl.TensorType.FLOAT32)
        tfl.TensorAddBuffer(b, 0)
        tfl.TensorAddName(b, name_offset)
        tensors.append(tfl.TensorEnd(b))
    code = getattr(tfl.BuiltinOperator, op_name)
    tfl.OperatorCodeStart(b)
    tfl.OperatorCodeAddDeprecatedBuiltinCode(b, code)
    tfl.OperatorCodeAddBuiltinCode(b, code)
    tfl.OperatorCodeAddVersion(b, 1)
    opcode = tfl.OperatorCodeEnd(b)
    op_inputs = int_vector(tfl.OperatorStartInputsVector, [0])
    op_outputs = int_vector(tfl.OperatorStartOutputsVector, [1])
    tfl.OperatorStart(b)
    tfl.OperatorAddOpcodeIndex(b, 0)
    tfl.OperatorAddInputs(b, op_inputs)
    tfl.OperatorAddOutputs(b, op_outputs)
    op = tfl.OperatorEnd(b)

    def table_vector(start, items):
        start(b, len(items))
        for item in reversed(items):
            b.PrependUOffsetTRelative(item)
        return b.EndVector()

    tensor_vec = table_vector(tfl.SubGraphStartTensorsVector, tensors)
    op_vec = table_vector(tfl.SubGraphStartOperatorsVector, [op])
    graph_in = int_vector(tfl.SubGraphStartInputsVector, [0])
    graph_out = int_vector(tfl.SubGraphStartOutputsVector, [1])
    tfl.SubGraphStart(b)
    tfl.SubGraphAddTensors(b, tensor_vec)
    tfl.SubGraphAddOperators(b, op_vec)
    tfl.SubGraphAddInputs(b, graph_in)
    tfl.SubGraphAddOutputs(b, graph_out)
    graph = tfl.SubGraphEnd(b)
    codes = table_vector(tfl.ModelStartOperatorCodesVector, [opcode])
    graphs = table_vector(tfl.ModelStartSubgraphsVector, [graph])
    buffers = table_vector(tfl.ModelStartBuffersVector, [buffer])
    tfl.ModelStart(b)
    tfl.ModelAddVersion(b, 3)
    tfl.ModelAddOperatorCodes(b, codes)
    tfl.ModelAddSubgraphs(b, graphs)
    tfl.ModelAddBuffers(b, buffers)
    b.Finish(tfl.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_unsupported_op_and_wrong_graph_are_model_errors(tmp_path: Path):
    unsupported = tmp_path / "tanh.tflite"
    unsupported.write_bytes(_one_op_tflite("TANH"))
    with pytest.raises(ModelError, match="TANH, which this reader does not support"):
        read_tflite(unsupported)
    other = tmp_path / "logistic.tflite"
    other.write_bytes(_one_op_tflite("LOGISTIC"))
    graph = read_tflite(other)  # a valid TFLite file with supported ops ...
    assert [op.op for op in graph.operators] == ["LOGISTIC"]
    assert graph.tensors[0].shape == (1, 96, 64) and graph.tensors[0].data is None
    with pytest.warns(UserWarning, match="sha256"), pytest.raises(ModelError, match="not the expected YAMNet graph"):
        yamnet_state_dict(other)  # ... but not YAMNet


def test_corrupt_tflite_is_a_model_error(tflite_path: Path, tmp_path: Path):
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(tflite_path.read_bytes()[:4096])
    with pytest.raises(ModelError):
        yamnet_state_dict(truncated)
    with pytest.raises(ModelError):
        read_tflite(tmp_path / "missing.tflite")
