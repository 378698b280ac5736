"""Int8 text towers whose every token row is quantized on its own.

ONNX Runtime's ``quantize_dynamic`` picks ONE activation scale per MatMul call, from the largest
value anywhere in the batch: a text's vector then depends on which texts share its call (up to
3e-3 per coordinate on RoBERTa-base), so the runtime has to embed such a variant one text per call,
and a batch of 64 queries costs 64 passes over the weights.

Here each MatMul ``X @ W`` with a constant ``W`` becomes

    s   = max(|X|, last axis) / 127                       one scale per token row
    Xq  = QuantizeLinear(X / s, 1, 128)                    uint8, per row
    Y   = float(MatMulInteger(Xq, Wq, 128)) * w * s        Wq int8 and w one scale per column

Every output row depends on its own input row only, so a text's vector is bit-identical alone and
in any batch (the export records ``text_batch_invariant``), and the runtime embeds a batch in one
call per token length. (It is even unchanged when padded to a longer text with the attention mask,
but padding was measured slower than a call per length: bench/RESULTS.md.) Per-row and
per-column scales are also closer to fp32 than one scale per tensor (RoBERTa-base probes: cosine
0.99999 against 0.9997). The uint8 activations with a zero point of 128 keep ONNX Runtime on its u8s8 (VNNI)
kernels; int8 activations fall back to a far slower path (measured ~10x).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ZERO_POINT = 128
LEVELS = 127.0
TINY = 1e-12  # a row of zeros gets this scale instead of dividing by zero


def quantize_rowwise_int8(src: Path, dst: Path) -> int:
    """Rewrite ``src``'s MatMuls with 2-D constant weights as row-wise int8; returns how many."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 18:
        raise ValueError(f"{src}: row-wise int8 needs opset >= 18 (ReduceMax axes as an input), found {opset}")

    def quantizable(node) -> bool:
        init = weights.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        return init is not None and len(init.dims) == 2 and init.data_type == TensorProto.FLOAT

    shared = [
        numpy_helper.from_array(np.array(LEVELS, np.float32), "rq_levels"),
        numpy_helper.from_array(np.array([TINY / LEVELS], np.float32), "rq_tiny"),
        numpy_helper.from_array(np.array([-1], np.int64), "rq_last_axis"),
        numpy_helper.from_array(np.array(1.0, np.float32), "rq_unit"),
        numpy_helper.from_array(np.array(ZERO_POINT, np.uint8), "rq_zero_point"),
    ]
    nodes, added, count = [], [], 0
    quantized: dict[str, str] = {}  # input -> its prefix: Q, K and V share one quantized input
    for node in graph.node:
        if not quantizable(node):
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weights[node.input[1]]).astype(np.float32)
        column_scale = (np.maximum(np.abs(w).max(axis=0), TINY) / LEVELS).astype(np.float32)
        w_q = np.clip(np.round(w / column_scale), -LEVELS, LEVELS).astype(np.int8)
        p, x, y = f"rq{count}_", node.input[0], node.output[0]
        count += 1
        added += [numpy_helper.from_array(w_q, p + "w_int8"), numpy_helper.from_array(column_scale, p + "w_scale")]
        if x not in quantized:
            quantized[x] = q = p
            nodes += [
                helper.make_node("Abs", [x], [q + "abs"]),
                helper.make_node("ReduceMax", [q + "abs", "rq_last_axis"], [q + "max"], keepdims=1),
                helper.make_node("Div", [q + "max", "rq_levels"], [q + "s_raw"]),
                helper.make_node("Max", [q + "s_raw", "rq_tiny"], [q + "s"]),
                helper.make_node("Div", [x, q + "s"], [q + "x_scaled"]),
                helper.make_node("QuantizeLinear", [q + "x_scaled", "rq_unit", "rq_zero_point"], [q + "x_uint8"]),
            ]
        q = quantized[x]
        nodes += [
            helper.make_node("MatMulInteger", [q + "x_uint8", p + "w_int8", "rq_zero_point"], [p + "y_int32"]),
            helper.make_node("Cast", [p + "y_int32"], [p + "y_raw"], to=TensorProto.FLOAT),
            # column scales first, row scales last: ONNX Runtime's MatMulIntegerToFloat fusion
            # takes a Mul of the two scales for per-tensor ones and would mis-broadcast the rows
            # (measured: cosine to fp32 0.975 on the test model instead of 0.99999)
            helper.make_node("Mul", [p + "y_raw", p + "w_scale"], [p + "y_columns"]),
            helper.make_node("Mul", [p + "y_columns", q + "s"], [y], name=node.name or p + "out"),
        ]
    if count == 0:
        raise ValueError(f"{src}: no MatMul with a constant 2-D weight to quantize")
    used = {name for node in nodes for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept + shared + added)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return count
