"""A small reader for TensorFlow Lite flatbuffers: operators, tensors, constant data, quantization.

Why our own: the converters only need to *read* a graph (which ops, in which order, with which
options) and dequantize its weights. The ``tflite`` package gives raw flatbuffer accessors for
that; this module turns them into plain dataclasses and numpy arrays so a converter reads like the
graph it converts. No interpreter, no TensorFlow. ``tflite`` is imported inside
:func:`read_tflite` only: it is a conversion-time dependency (the ``train`` extra) and must never
be needed to import this module, let alone by the torch-free runtime.

Only the ops the supported converters meet are decoded; any other op is refused with a
:class:`~indexer.errors.ModelError` naming it, rather than being silently mis-read.

    graph = read_tflite("yamnet.tflite")
    for op in graph.operators:          # execution order
        op.op, op.inputs, op.outputs    # "CONV_2D", (12, 13, 14), (15,)
        op.options                      # {"padding": "SAME", "stride_h": 2, ...}
    w = dequantize(graph.tensors[13])   # float32, (q - zero_point) * scale per channel
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from indexer.errors import ModelError

# TensorType enum of the TFLite schema -> numpy dtype (little-endian, as the flatbuffer stores it).
_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),  # FLOAT32
    1: np.dtype("<f2"),  # FLOAT16
    2: np.dtype("<i4"),  # INT32
    3: np.dtype("u1"),  # UINT8
    4: np.dtype("<i8"),  # INT64
    6: np.dtype("?"),  # BOOL
    7: np.dtype("<i2"),  # INT16
    9: np.dtype("i1"),  # INT8
    10: np.dtype("<f8"),  # FLOAT64
}
_ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
_PADDINGS = {0: "SAME", 1: "VALID"}
# The ops we know how to decode (their options, if any, are read in _options).
SUPPORTED_OPS = frozenset(
    "CONV_2D DEPTHWISE_CONV_2D FULLY_CONNECTED MEAN RESHAPE SPLIT QUANTIZE DEQUANTIZE LOGISTIC".split()
)


@dataclass(frozen=True)
class Quantization:
    """Affine quantization: ``real = (q - zero_point) * scale``.

    ``scale``/``zero_point`` have one entry (per tensor) or one per slice along
    ``quantized_dimension`` (per channel: the output channel of a conv kernel, the channel of a
    depthwise kernel, the bias element).
    """

    scale: np.ndarray  # float32, (1,) or (channels,)
    zero_point: np.ndarray  # int64, same length as scale
    quantized_dimension: int


@dataclass(frozen=True)
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    data: np.ndarray | None  # the constant buffer reshaped to ``shape``; None for activations
    quantization: Quantization | None


@dataclass(frozen=True)
class Operator:
    index: int
    op: str  # builtin op name, e.g. "DEPTHWISE_CONV_2D"
    inputs: tuple[int, ...]  # tensor indices; -1 marks an omitted optional input
    outputs: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TFLiteGraph:
    """Subgraph 0 of a model: what a single-signature model like YAMNet consists of."""

    tensors: list[Tensor]
    operators: list[Operator]  # in execution order
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    version: int


def dequantize(tensor: Tensor) -> np.ndarray:
    """The real values of a quantized constant tensor as float32.

    Computed in float64 and rounded once, so an int32 bias larger than 2**24 is not rounded twice;
    a float constant is returned as float32 unchanged.
    """
    if tensor.data is None:
        raise ModelError(f"tensor {tensor.index} ({tensor.name!r}) has no constant data to dequantize")
    if tensor.dtype.kind == "f":
        return tensor.data.astype(np.float32)
    q = tensor.quantization
    if q is None:
        raise ModelError(
            f"tensor {tensor.index} ({tensor.name!r}) is {tensor.dtype} but has no quantization parameters"
        )
    data = tensor.data.astype(np.float64)
    scale = q.scale.astype(np.float64)
    zero = q.zero_point.astype(np.float64)
    if scale.size > 1:  # per channel: broadcast along the quantized dimension
        axis = q.quantized_dimension
        if not 0 <= axis < data.ndim or data.shape[axis] != scale.size:
            raise ModelError(
                f"tensor {tensor.index} ({tensor.name!r}): {scale.size} scales do not "
                f"match dimension {axis} of shape {data.shape}"
            )
        shape = [1] * data.ndim
        shape[axis] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((data - zero) * scale).astype(np.float32)


def read_tflite(path: str | Path) -> TFLiteGraph:
    """Parse a ``.tflite`` file. Raises ModelError for a file that is not TFLite, a model with no
    or several subgraphs, or an op outside :data:`SUPPORTED_OPS`."""
    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read ({exc})") from exc
    # The flatbuffer file identifier "TFL3" sits at bytes 4..8; checking it first turns a wrong
    # file into a clear error instead of a flatbuffers IndexError / struct error deep inside.
    if len(buf) < 16 or buf[4:8] != b"TFL3":
        raise ModelError(f"{path}: not a TensorFlow Lite model (no 'TFL3' flatbuffer identifier)")
    try:
        return _parse(buf, path)
    except ModelError:
        raise
    except Exception as exc:  # a truncated or corrupt flatbuffer fails in arbitrary ways
        raise ModelError(f"{path}: corrupt TensorFlow Lite model ({type(exc).__name__}: {exc})") from exc


def _parse(buf: bytes, path: Path) -> TFLiteGraph:
    import tflite  # conversion-time only (the ``train`` extra)

    model = tflite.Model.GetRootAsModel(buf, 0)
    if model.SubgraphsLength() != 1:
        raise ModelError(f"{path}: expected one subgraph, found {model.SubgraphsLength()}")
    graph = model.Subgraphs(0)
    op_names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}

    tensors = [_tensor(model, graph.Tensors(i), i, buf, path) for i in range(graph.TensorsLength())]
    operators = []
    for i in range(graph.OperatorsLength()):
        raw = graph.Operators(i)
        code = model.OperatorCodes(raw.OpcodeIndex())
        # Schema v3a moved op codes >127 to BuiltinCode; older files only fill the deprecated
        # int8 field. The larger of the two is the real code in both cases.
        number = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = op_names.get(number, f"builtin #{number}")
        if number == tflite.BuiltinOperator.CUSTOM:
            name = f"CUSTOM ({(code.CustomCode() or b'').decode(errors='replace')})"
        if name not in SUPPORTED_OPS:
            raise ModelError(
                f"{path}: operator {i} is {name}, which this reader does not support "
                f"(supported: {', '.join(sorted(SUPPORTED_OPS))})"
            )
        operators.append(
            Operator(
                index=i,
                op=name,
                inputs=tuple(int(t) for t in raw.InputsAsNumpy()) if raw.InputsLength() else (),
                outputs=tuple(int(t) for t in raw.OutputsAsNumpy()) if raw.OutputsLength() else (),
                options=_options(tflite, name, raw),
            )
        )
    return TFLiteGraph(
        tensors=tensors,
        operators=operators,
        inputs=tuple(int(t) for t in graph.InputsAsNumpy()),
        outputs=tuple(int(t) for t in graph.OutputsAsNumpy()),
        version=model.Version(),
    )


def _tensor(model: Any, raw: Any, index: int, buf: bytes, path: Path) -> Tensor:
    name = raw.Name().decode("utf-8", errors="replace")
    if raw.Type() not in _DTYPES:
        raise ModelError(f"{path}: tensor {index} ({name!r}) has unsupported type #{raw.Type()}")
    dtype = _DTYPES[raw.Type()]
    shape = tuple(int(d) for d in raw.ShapeAsNumpy()) if raw.ShapeLength() else ()

    data = None
    buffer = model.Buffers(raw.Buffer())
    if buffer is not None:
        if buffer.Offset() > 1:  # models over 2 GB keep buffers after the flatbuffer
            raw_bytes = buf[buffer.Offset() : buffer.Offset() + buffer.Size()]
        elif buffer.DataLength():
            raw_bytes = buffer.DataAsNumpy().tobytes()
        else:
            raw_bytes = b""
        if raw_bytes:
            data = np.frombuffer(raw_bytes, dtype=dtype)
            if data.size != int(np.prod(shape, dtype=np.int64)):
                raise ModelError(f"{path}: tensor {index} ({name!r}) holds {data.size} values for shape {shape}")
            data = data.reshape(shape)

    quant = None
    q = raw.Quantization()
    if q is not None and q.ScaleLength():
        scale = q.ScaleAsNumpy().astype(np.float32)
        zero = q.ZeroPointAsNumpy().astype(np.int64) if q.ZeroPointLength() else np.zeros(scale.size, np.int64)
        if zero.size != scale.size:
            raise ModelError(f"{path}: tensor {index} ({name!r}) has {scale.size} scales but {zero.size} zero points")
        quant = Quantization(scale=scale, zero_point=zero, quantized_dimension=q.QuantizedDimension())
    return Tensor(index=index, name=name, shape=shape, dtype=dtype, data=data, quantization=quant)


def _options(tflite: Any, name: str, raw: Any) -> dict[str, Any]:
    """The options a converter needs, as plain Python values (enums as their schema names)."""
    table = raw.BuiltinOptions()
    if table is None:
        return {}

    def view(cls: type) -> Any:
        opts = cls()
        opts.Init(table.Bytes, table.Pos)
        return opts

    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        o = view(tflite.Conv2DOptions if name == "CONV_2D" else tflite.DepthwiseConv2DOptions)
        out = {
            "padding": _PADDINGS.get(o.Padding(), f"#{o.Padding()}"),
            "stride_h": o.StrideH(),
            "stride_w": o.StrideW(),
            "dilation_h": o.DilationHFactor(),
            "dilation_w": o.DilationWFactor(),
            "fused_activation": _ACTIVATIONS.get(o.FusedActivationFunction(), f"#{o.FusedActivationFunction()}"),
        }
        if name == "DEPTHWISE_CONV_2D":
            out["depth_multiplier"] = o.DepthMultiplier()
        return out
    if name == "FULLY_CONNECTED":
        o = view(tflite.FullyConnectedOptions)
        return {
            "fused_activation": _ACTIVATIONS.get(o.FusedActivationFunction(), f"#{o.FusedActivationFunction()}"),
            "keep_num_dims": bool(o.KeepNumDims()),
            "weights_format": o.WeightsFormat(),
        }
    if name == "MEAN":
        return {"keep_dims": bool(view(tflite.ReducerOptions).KeepDims())}
    if name == "SPLIT":
        return {"num_splits": view(tflite.SplitOptions).NumSplits()}
    if name == "RESHAPE":
        o = view(tflite.ReshapeOptions)
        shape = tuple(int(d) for d in o.NewShapeAsNumpy()) if o.NewShapeLength() else ()
        return {"new_shape": shape}
    return {}
