"""The model manifest: the single source of truth for everything a model folder needs.

A model folder looks like::

    my-model/
      manifest.json       # this schema
      audio.onnx          # log-mel views -> L2-normalised embedding   (B,C,T,F),(B,) -> (B,D)
      text.onnx           # token ids + mask -> L2-normalised embedding (B,L),(B,L) -> (B,D)
      tokenizer.json      # a `tokenizers` fast-tokenizer file
      audio.int8.onnx ... # optional variants, listed in ``variants``

Code downstream reads preprocessing numbers from here and never repeats them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator

from indexer.audio.spec import AudioFrontend, LogSpec, StrictModel
from indexer.errors import ManifestError

__all__ = ["AudioFrontend", "LogSpec", "Manifest", "load_manifest"]

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


class AudioTower(StrictModel):
    architecture: str = Field(description="e.g. 'htsat-tiny', 'htsat-base'")
    fusion: Literal["aff_2d"] | None = None
    # Number of log-mel views the ONNX graph takes: 4 for fusion ([global, front, middle, back]), else 1.
    input_channels: int = 1
    config: dict = Field(default_factory=dict, description="architecture hyper-parameters (informative)")
    # patch_mean models: width of the per-patch outputs the runtime averages over a file before
    # the variant's ``audio_head`` graph maps the mean to the embedding (YAMNet: 1024 + 521).
    patch_outputs: int | None = None


class LabelSpace(StrictModel):
    """A fixed text-side projection baked into the text graph (informative here; the graph holds
    the numbers): text embedding -> cosine to each anchor prompt -> softmax at ``temperature`` ->
    L2. ``labels`` are the audio tower's classes in output order; anchors are ``template`` filled
    with each label."""

    template: str
    temperature: float
    labels: list[str]
    encoder: str = Field(description="the sentence encoder whose embeddings are compared")


class JointPart(StrictModel):
    """One block of the embedding, in order: ``dim`` coordinates scaled so that its cosine counts
    ``weight`` in a text->audio score and ``audio_weight`` in an audio->audio score (a block the
    text graph leaves at zero, such as the tower-embedding block, serves query by example only)."""

    name: str
    dim: int
    weight: float
    audio_weight: float | None = None
    description: str = ""


class TextTower(StrictModel):
    architecture: str = Field(description="e.g. 'roberta'")
    tokenizer: str = "tokenizer.json"
    max_length: int = 77
    pad_token_id: int = 1
    config: dict = Field(default_factory=dict)
    label_space: LabelSpace | None = None


class Provenance(StrictModel):
    source: str = Field(description="what was converted or trained, as the user named it")
    source_format: Literal["laion_clap_pt", "hf_clap", "trained", "random"]
    source_sha256: str | None = None
    converter: str
    created: str
    versions: dict[str, str] = Field(default_factory=dict)


class Variant(StrictModel):
    """One ONNX precision of the towers, with its measured cost against fp32."""

    audio: str
    text: str
    # patch_mean models: pooled patch outputs (B, patch_outputs) -> unit embeddings (B, D).
    audio_head: str | None = None
    # Measured at export on probe inputs: min cosine of this variant's vectors to fp32's.
    audio_min_cosine_to_fp32: float | None = None
    text_min_cosine_to_fp32: float | None = None
    # Measured at export: does a row's vector stay bit-identical whatever else is in the batch?
    # Dynamic int8 quantisation computes activation scales over the whole batch, so it is not;
    # the runtime then runs such a tower one item per call to keep vectors deterministic.
    audio_batch_invariant: bool = True
    text_batch_invariant: bool = True
    sha256: dict[str, str] = Field(default_factory=dict)
    # False: the files were measured at export but left out of the folder (a model shipped inside
    # the repository keeps only its compact variant); the entry still pins the model's identity.
    shipped: bool = True


class ScoreCalibration(StrictModel):
    """Text->audio score -> relevance in [0, 1]:
    ``sigmoid(slope * cosine + peak_slope * peak + intercept)``.

    ``peak`` says how clearly the QUERY names a sound the model knows: the largest coordinate of
    the query vector's first ``prior_dims`` coordinates (its label-space block), over that block's
    norm; "footsteps on gravel" is near 1, a keyboard mash near 0.3. Fitted at export on held-apart
    caption/clip pairs with matches and non-matches weighted equally, so 0.5 means "as likely a
    match as not" for any query, and ``min_relevance`` reads the same for every query, unlike a
    raw cosine. Without ``prior_dims`` the peak term is left out.
    """

    kind: Literal["logistic"] = "logistic"
    slope: float
    intercept: float
    peak_slope: float = 0.0
    prior_dims: int | None = None
    fitted_on: str = ""
    auc: float | None = None  # ranking quality of the raw cosine on those pairs

    def query_peak(self, query) -> float:
        """The label-space peak of a query vector (1.0 when the model has no such block)."""
        if not self.prior_dims or query is None:
            return 1.0
        import numpy as np

        block = np.asarray(query, dtype=np.float64)[: self.prior_dims]
        norm = float(np.linalg.norm(block))
        return float(block.max()) / norm if norm > 0 else 0.0

    def relevance(self, cosine: float, peak: float = 1.0) -> float:
        import math

        z = self.slope * cosine + self.peak_slope * peak + self.intercept
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0


class Manifest(StrictModel):
    format_version: int = FORMAT_VERSION
    name: str
    embed_dim: int = 512
    metric: Literal["cosine"] = "cosine"
    audio_frontend: AudioFrontend
    audio: AudioTower
    text: TextTower
    variants: dict[str, Variant] = Field(description="precision name -> files; 'fp32' is required")
    default_variant: str = "fp32"  # what the runtime opens unless told otherwise; must be shipped
    provenance: Provenance
    logit_scale_audio: float | None = None
    logit_scale_text: float | None = None
    # How the embedding is assembled from blocks (e.g. an AudioSet label-space prior and a trained
    # branch); the cosine of two vectors is the weighted sum of the blocks' cosines.
    joint: list[JointPart] = Field(default_factory=list)
    score_calibration: ScoreCalibration | None = None

    @model_validator(mode="after")
    def _check(self) -> Manifest:
        if self.format_version != FORMAT_VERSION:
            raise ValueError(f"unsupported manifest format_version {self.format_version}")
        if "fp32" not in self.variants:
            raise ValueError("variants must include 'fp32' (the reference every variant is measured against)")
        default = self.variants.get(self.default_variant)
        if default is None or not default.shipped:
            raise ValueError(f"default_variant {self.default_variant!r} must be a shipped variant")
        fused = self.audio_frontend.long_policy == "fusion"
        if fused != (self.audio.fusion is not None):
            raise ValueError("audio_frontend.long_policy 'fusion' requires a fusion audio tower and vice versa")
        if self.audio.input_channels != (4 if fused else 1):
            raise ValueError("audio.input_channels must be 4 for fusion models and 1 otherwise")
        patched = self.audio_frontend.long_policy == "patch_mean"
        if patched != (self.audio.patch_outputs is not None):
            raise ValueError("audio.patch_outputs is required by, and only by, long_policy 'patch_mean'")
        if any((v.audio_head is not None) != patched for v in self.variants.values()):
            raise ValueError("every variant of a patch_mean model needs an audio_head graph (and only then)")
        if self.joint and sum(p.dim for p in self.joint) != self.embed_dim:
            raise ValueError("joint parts must add up to embed_dim")
        return self

    @property
    def patched(self) -> bool:
        """True for patch_mean models (tower outputs averaged over all of a file's patches)."""
        return self.audio_frontend.long_policy == "patch_mean"

    @property
    def fingerprint(self) -> str:
        """Identity of the embedding space: same fingerprint <=> vectors are comparable."""
        ident = {
            "name": self.name,
            "source_sha256": self.provenance.source_sha256,
            "audio_frontend": self.audio_frontend.model_dump(),
            "fp32": self.variants["fp32"].sha256,
        }
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / MANIFEST_NAME
        path.write_text(self.model_dump_json(indent=2) + "\n")
        return path


def load_manifest(folder: str | Path) -> Manifest:
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"{folder}: not a model folder (no {MANIFEST_NAME})")
    try:
        manifest = Manifest.model_validate_json(path.read_text())
    except ValidationError as exc:
        raise ManifestError(f"{path}: invalid manifest: {exc}") from exc
    for variant in manifest.variants.values():
        if not variant.shipped:
            continue
        for name in (variant.audio, variant.text, variant.audio_head):
            if name is not None and not (Path(folder) / name).is_file():
                raise ManifestError(f"{folder}: manifest lists {name!r} but the file is missing")
    tok = Path(folder) / manifest.text.tokenizer
    if not tok.is_file():
        raise ManifestError(f"{folder}: tokenizer file {manifest.text.tokenizer!r} is missing")
    return manifest


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
