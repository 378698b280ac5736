"""The transformers peer of ``bench/fused.py`` (fused CLAP, long files), and the pin on the peers'
random fusion chunks. Uses none of our code, like ``bench/_peers.py``.

transformers: soundfile -> ``ClapFeatureExtractor(truncation="fusion")`` (numpy, float64: the whole
file's mel, three chunks, the global view resized by ``torch.nn.functional.interpolate``) ->
``ClapModel.get_audio_features(input_features, is_longer)`` in eager PyTorch fp32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from _peers import read_mono

FUSED_EXTRACTOR_KWARGS = dict(frequency_min=50, frequency_max=14_000, truncation="fusion", padding="repeatpad")


@contextlib.contextmanager
def pinned_chunks() -> Iterator[None]:
    """Inside, ``np.random.choice(options)`` returns the middle option. Both peers draw each local
    chunk's start with it from one third of the start positions; the middle of each third is our
    fixed rule (``indexer.audio.clip.fusion_chunk_starts``), so all systems see the same views and
    their vectors can be compared. Costs nothing: the timing is the same either way."""
    saved = np.random.choice
    np.random.choice = lambda options, *args, **kwargs: options[len(options) // 2]  # type: ignore[assignment]
    try:
        yield
    finally:
        np.random.choice = saved


class EagerFusedPeer:
    """transformers' ClapFeatureExtractor + ClapModel (fusion), eager PyTorch fp32."""

    name = "transformers fp32"

    def __init__(self, model, threads: int):
        import torch
        from transformers import ClapFeatureExtractor

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = model.eval()
        self.extractor = ClapFeatureExtractor(**FUSED_EXTRACTOR_KWARGS)

    def features(self, waves: list[np.ndarray]):
        return self.extractor(waves, sampling_rate=48_000, return_tensors="pt")

    def network(self, inputs) -> np.ndarray:
        with self.torch.inference_mode():
            out = self.model.get_audio_features(
                input_features=inputs["input_features"], is_longer=inputs["is_longer"]
            ).pooler_output
        return out.numpy()

    def embed_files(self, paths: Sequence[str | Path]) -> np.ndarray:
        return self.network(self.features([read_mono(p) for p in paths]))

    def stages(self, path: str | Path) -> tuple[object, object, object]:
        """(decode, front end, network) for one file, as callables run in order."""
        box: dict = {}

        def decode():
            box["wave"] = read_mono(path)

        def front_end():
            box["inputs"] = self.features([box["wave"]])

        def network():
            return self.network(box["inputs"])

        return decode, front_end, network
