"""laion_clap (the reference CLAP package) as a peer of ``bench/fused.py``, on the benchmark's weights.

laion_clap is NOT a requirement of this project: ``pip install --no-deps laion-clap==1.1.6
torchlibrosa==0.1.0`` plus its small imports (``h5py braceexpand webdataset wget ftfy
progressbar``) with ``-c constraints.txt``; without ``--no-deps`` it pins numpy 1.23 and pulls
wandb. When it is missing, :func:`unavailable` says so and the benchmark skips this peer.

What runs is laion_clap's own ``CLAP_Module.get_audio_embedding_from_filelist``: ``librosa.load``,
the int16 round trip, ``get_audio_features(data_truncating="fusion")`` (the whole file's mel,
three chunks, the resized global view) and its HTSAT forward. Three things make it run offline on
a CPU-only box, none on the measured path's arithmetic:

* laion_clap fetches ``roberta-base`` (weights and tokenizers) from the hub when it is imported
  and built. The audio benchmark never touches text, so tokenizers load as ``None`` and the text
  branch is a one-layer RoBERTa of roberta-base's width (its projection expects 768 inputs).
* laion_clap imports torchvision and torchaudio, whose wheels on this project's package mirror
  are CUDA builds that cannot load beside the CPU torch. When they do not import, laion_clap
  gets stand-ins for the calls it makes on this path: torchaudio's ``MelSpectrogram``
  (``torch.stft`` power 2, then the HTK mel bank without norm, which is what torchaudio computes)
  and ``AmplitudeToDB`` (``10 log10(max(x, 1e-10))``), and torchvision's ``Resize`` of a tensor (bilinear, align_corners=False, no antialias: the
  resize laion trained with). :attr:`LaionPeer.stand_ins` records which were used.
* Its random fusion chunks: ``_fused_peers.pinned_chunks()`` pins them to ours to compare vectors.

Weights: the transformers model's state dict in laion's layout (``training.convert.layout
.hf_to_laion``, setup only); every audio tensor must load, which :class:`LaionPeer` checks.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import types
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

# laion keys with no transformers counterpart: its torchlibrosa front end, AudioSet heads and loss MLPs
LAION_ONLY = (
    "audio_branch.spectrogram_extractor.",
    "audio_branch.logmel_extractor.",
    "audio_branch.head.",
    "audio_branch.tscam_conv.",
    "audio_transform.",
    "text_transform.",
)


def unavailable() -> str | None:
    """Why the laion_clap peer cannot run here, or None when it can."""
    if importlib.util.find_spec("laion_clap") is None:
        return (
            "laion_clap is not installed (pip install --no-deps laion-clap==1.1.6 torchlibrosa==0.1.0 "
            "h5py braceexpand webdataset wget ftfy progressbar -c constraints.txt); skipping that peer"
        )
    return None


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
        return True
    except Exception:  # noqa: BLE001  a CUDA-only wheel raises OSError/RuntimeError, not ImportError
        sys.modules.pop(name, None)
        return False


def _torchaudio_stand_in() -> types.ModuleType:
    import torch
    from transformers.audio_utils import mel_filter_bank

    class MelSpectrogram(torch.nn.Module):
        def __init__(self, *, sample_rate, n_fft, win_length, hop_length, n_mels, f_min, f_max, power=2.0, **_):
            super().__init__()
            self.n_fft, self.win_length, self.hop_length, self.power = n_fft, win_length, hop_length, power
            self.window = torch.hann_window(win_length)
            bank = mel_filter_bank(n_fft // 2 + 1, n_mels, f_min, f_max, sample_rate, norm=None, mel_scale="htk")
            self.bank = torch.from_numpy(bank.astype(np.float32))

        def forward(self, x):
            spec = torch.stft(
                x,
                self.n_fft,
                self.hop_length,
                self.win_length,
                self.window,
                center=True,
                pad_mode="reflect",
                return_complex=True,
            )
            return torch.matmul(spec.abs().pow(self.power).transpose(-1, -2), self.bank).transpose(-1, -2)

    class AmplitudeToDB(torch.nn.Module):  # power in, dB out: 10 log10(max(x, 1e-10)), ref 1, no top_db
        def __init__(self, top_db=None, **_):
            super().__init__()
            if top_db is not None:
                raise RuntimeError("torchaudio stand-in: only top_db=None is implemented")

        def forward(self, x):
            return 10.0 * torch.log10(torch.clamp(x, min=1e-10))

    module = types.ModuleType("torchaudio")
    module.transforms = types.SimpleNamespace(MelSpectrogram=MelSpectrogram, AmplitudeToDB=AmplitudeToDB)  # type: ignore[attr-defined]
    return module


def _torchvision_stand_in() -> dict[str, types.ModuleType]:
    import torch

    class Resize:
        def __init__(self, size, **_):
            self.size = list(size)

        def __call__(self, x):
            resized = torch.nn.functional.interpolate(
                x[None], size=self.size, mode="bilinear", align_corners=False, antialias=False
            )
            return resized[0]

    class Unused:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("torchvision stand-in: only transforms.Resize is available")

    transforms = types.ModuleType("torchvision.transforms")
    for name in ("Normalize", "Compose", "RandomResizedCrop", "ToTensor", "CenterCrop", "InterpolationMode"):
        setattr(transforms, name, Unused)
    transforms.Resize = Resize  # type: ignore[attr-defined]
    misc = types.ModuleType("torchvision.ops.misc")
    misc.FrozenBatchNorm2d = Unused  # type: ignore[attr-defined]
    ops = types.ModuleType("torchvision.ops")
    ops.misc = misc  # type: ignore[attr-defined]
    root = types.ModuleType("torchvision")
    datasets = types.ModuleType("torchvision.datasets")
    root.transforms, root.ops, root.datasets = transforms, ops, datasets  # type: ignore[attr-defined]
    return {
        "torchvision": root,
        "torchvision.transforms": transforms,
        "torchvision.ops": ops,
        "torchvision.ops.misc": misc,
        "torchvision.datasets": datasets,
    }


@contextlib.contextmanager
def _offline_hub() -> Iterator[None]:
    """Tokenizers load as None and ``RobertaModel.from_pretrained`` builds a one-layer stand-in."""
    from transformers import PreTrainedTokenizerBase, RobertaConfig, RobertaModel

    saved_tok, saved_model = PreTrainedTokenizerBase.__dict__["from_pretrained"], RobertaModel.from_pretrained

    def stand_in(cls, *args, **kwargs):
        return RobertaModel(
            RobertaConfig(
                vocab_size=64, hidden_size=768, num_hidden_layers=1, num_attention_heads=12, intermediate_size=768
            )
        )

    PreTrainedTokenizerBase.from_pretrained = classmethod(lambda cls, *a, **k: None)  # type: ignore[method-assign,assignment]
    RobertaModel.from_pretrained = classmethod(stand_in)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        PreTrainedTokenizerBase.from_pretrained = saved_tok  # type: ignore[method-assign]
        RobertaModel.from_pretrained = saved_model  # type: ignore[method-assign]


def _import_laion() -> tuple[types.ModuleType, list[str]]:
    stand_ins = []
    if not _importable("torchaudio"):
        sys.modules["torchaudio"] = _torchaudio_stand_in()
        stand_ins.append("torchaudio.transforms.MelSpectrogram, AmplitudeToDB")
    if not _importable("torchvision"):
        sys.modules.update(_torchvision_stand_in())
        stand_ins.append("torchvision.transforms.Resize")
    with _offline_hub():
        return importlib.import_module("laion_clap"), stand_ins


class LaionPeer:
    """laion_clap 1.1.x ``CLAP_Module(enable_fusion=True)``, HTSAT-tiny, fp32 eager torch, CPU."""

    name = "laion_clap fp32"

    def __init__(self, hf_model, threads: int):
        import torch

        from training.convert.layout import hf_to_laion

        torch.set_num_threads(threads)
        self.torch = torch
        laion_clap, self.stand_ins = _import_laion()
        with _offline_hub():
            self.module = laion_clap.CLAP_Module(
                enable_fusion=True, device="cpu", amodel="HTSAT-tiny", tmodel="roberta"
            )
        self.data = sys.modules["laion_clap.training.data"]
        self._load(hf_to_laion(hf_model.state_dict()))
        self.module.eval()

    def _load(self, weights: dict) -> None:
        own = self.module.model.state_dict()
        usable = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
        self.module.model.load_state_dict(usable, strict=False)
        audio = [
            k for k in own if k.startswith(("audio_branch.", "audio_projection.")) and not k.startswith(LAION_ONLY)
        ]
        missing = [k for k in audio if k not in usable and not k.endswith("attn_mask")]
        if missing:
            raise RuntimeError(f"laion_clap peer: {len(missing)} audio tensors did not load, e.g. {missing[:3]}")

    def embed_files(self, paths: Sequence[str | Path]) -> np.ndarray:
        # no_grad, as a user who knows torch would call it (laion_clap itself records the graph)
        with self.torch.no_grad():
            return self.module.get_audio_embedding_from_filelist([str(p) for p in paths])

    def stages(self, path: str | Path) -> tuple[object, object, object]:
        """(decode, front end, network) as callables run in order: the steps of
        ``get_audio_embedding_from_filelist`` for one file, each timed on its own."""
        import librosa

        data, cfg, torch = self.data, self.module.model_cfg["audio_cfg"], self.torch
        box: dict = {}

        def decode():
            wave, _ = librosa.load(str(path), sr=48_000)
            box["wave"] = torch.from_numpy(data.int16_to_float32(data.float32_to_int16(wave))).float()

        def front_end():
            box["input"] = data.get_audio_features({}, box["wave"], 480_000, "fusion", "repeatpad", cfg)

        def network():
            with torch.no_grad():
                return self.module.model.get_audio_embedding([box["input"]]).numpy()

        return decode, front_end, network
