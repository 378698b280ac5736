"""How ONNX Runtime runs a model's graphs; built from the settings (``IndexerSettings.onnx``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class OnnxOptions:
    """How ONNX Runtime runs a model's graphs."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = None  # intra-op threads; None or 0: one per physical core
    spinning: bool = True  # idle threads busy-wait for the next call
