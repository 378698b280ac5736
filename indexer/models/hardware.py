"""What the model and the index really run on: ONNX Runtime's active execution providers per
graph (a CUDA request that fell back to the CPU shows), and FAISS's build and GPUs.

``hardware_report`` is the one view ``indexer status --hardware``, the service's ``/readyz``
(to authenticated callers) and the web page's hardware line all show; a request for CUDA that
silently ran on the CPU is the failure this exists to make visible.
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


def hardware_report(encoder: ClapEncoder, requested: str, faiss_mode: str) -> dict:
    """``{"model": onnx_report, "index": faiss_report, "summary": one line}`` for a loaded encoder."""
    onnx, index = onnx_report(encoder, requested), faiss_report(faiss_mode)
    return {"model": onnx, "index": index, "summary": summary_line(onnx, index)}


def _short(provider: str) -> str:
    return provider.replace("ExecutionProvider", "")


def summary_line(onnx: dict, index: dict) -> str:
    """One line for a status bar: "model on CPU (audio: CPU, text: CPU) · FAISS CPU build, 0 GPUs"."""
    graphs = ", ".join(f"{graph}: {_short(providers[0])}" for graph, providers in onnx["active"].items() if providers)
    line = (
        f"model on {onnx['device'].upper()} ({graphs}) · FAISS {index['build'].upper()} build, "
        f"{index['gpus']} GPU{'s' if index['gpus'] != 1 else ''}"
    )
    if onnx["fell_back_to_cpu"]:
        line += " · CUDA requested but (part of) the model runs on the CPU"
    return line


def format_report(onnx: dict, index: dict) -> str:
    graphs = ", ".join(
        f"{graph}: {' > '.join(_short(p) for p in providers)}" for graph, providers in onnx["active"].items()
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
