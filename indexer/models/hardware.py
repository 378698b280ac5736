"""What the model and the index really run on: ONNX Runtime's active execution providers per
graph (a CUDA request that fell back to the CPU shows), and FAISS's build and GPUs.

Read by ``indexer status --hardware`` and the service's readiness view; a request for CUDA
that silently ran on the CPU is the failure this exists to make visible.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from indexer.models.encoder import ClapEncoder

CUDA = "CUDAExecutionProvider"


def onnx_report(encoder: ClapEncoder, requested: str) -> dict:
    import onnxruntime as ort

    available = list(ort.get_available_providers())
    active = encoder.session_providers()
    wanted_cuda = requested == "cuda" or (requested == "auto" and CUDA in available)
    on_cuda = {graph: providers[0] == CUDA for graph, providers in active.items()}
    return {
        "onnxruntime": ort.__version__,
        "requested": requested,
        "available": available,
        "active": active,
        "device": "cuda" if all(on_cuda.values()) else ("mixed" if any(on_cuda.values()) else "cpu"),
        "fell_back_to_cpu": wanted_cuda and not all(on_cuda.values()),
    }


def faiss_report(mode: str) -> dict:
    import faiss

    gpus = int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0
    return {
        "faiss": getattr(faiss, "__version__", "unknown"),
        "build": "gpu" if hasattr(faiss, "StandardGpuResources") else "cpu",
        "gpus": gpus,
        "mode": mode,
        "index_training_on": "gpu" if gpus and mode != "never" else "cpu",
    }


def format_report(onnx: dict, index: dict) -> str:
    graphs = ", ".join(
        f"{graph}: {' > '.join(p.replace('ExecutionProvider', '') for p in providers)}"
        for graph, providers in onnx["active"].items()
    )
    lines = [
        f"model runs on {onnx['device']} (requested {onnx['requested']}; {graphs})",
        f"  ONNX Runtime {onnx['onnxruntime']}, providers available: {', '.join(onnx['available'])}",
        f"index: FAISS {index['faiss']} ({index['build']} build, {index['gpus']} GPU(s)); "
        f"k-means training on {index['index_training_on']} (mode {index['mode']})",
    ]
    if onnx["fell_back_to_cpu"]:
        lines.insert(1, "  WARNING: CUDA was wanted but ONNX Runtime runs (part of) the model on the CPU")
    return "\n".join(lines)
