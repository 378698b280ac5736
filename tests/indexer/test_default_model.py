"""The shipped default model: found without configuration, loads with the torch-free runtime, and
actually understands sound (real recordings, text queries a user would type)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from indexer.models.defaults import DEFAULT_MODEL, MODELS_DIR
from indexer.models.encoder import ClapEncoder
from indexer.models.manifest import load_manifest
from indexer.settings import IndexerSettings

REPO = Path(__file__).resolve().parents[2]
SHIPPED = MODELS_DIR / DEFAULT_MODEL
EXTRA_SFX = REPO.parent / "shared" / "data" / "extra-sfx"


def test_default_model_is_found_without_configuration(monkeypatch, tmp_path):
    monkeypatch.delenv("CLAPSEARCH_MODEL", raising=False)
    assert IndexerSettings().resolved_model_dir == SHIPPED
    monkeypatch.setenv("CLAPSEARCH_MODEL", str(tmp_path))
    assert IndexerSettings().resolved_model_dir == tmp_path  # the environment wins


def test_shipped_folder_is_small_self_describing_and_documented():
    manifest = load_manifest(SHIPPED)
    size = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    assert size < 100 * 2**20, f"{size / 2**20:.1f} MiB"
    assert manifest.provenance.source_format == "trained"
    card = (SHIPPED / "MODEL_CARD.md").read_text()
    for section in ("## Held-out results", "## Known gaps", "## Data", "## Reproduce", "## Compute"):
        assert section in card
    assert (SHIPPED / "LICENCES.md").is_file()
    report = json.loads((SHIPPED / "heldout_report.json").read_text())
    assert report["retrieval"]["text_to_audio"]["R@10"] > 0.2  # the card's numbers come from this file


def test_text_queries_find_the_matching_recordings():
    """Real recordings of clearly different sounds; each query must rank its own kind first."""
    if not EXTRA_SFX.is_dir():
        pytest.skip(f"{EXTRA_SFX} not present")
    import csv

    rows = list(csv.DictReader((EXTRA_SFX / "manifest.csv").open()))
    kinds = {
        "a dog barking": "dog",
        "footsteps": "footstep",
        "a bird singing": "bird",
        "a frog croaking": "frog",
        "a cow mooing": "cow",
        "water": "water",
    }
    files, owner = [], []
    for query, word in kinds.items():
        hits = [r for r in rows if word in r["label_words"].lower()][:3]
        assert hits, word
        files += [EXTRA_SFX / r["path"] for r in hits]
        owner += [query] * len(hits)
    encoder = ClapEncoder.open(SHIPPED)
    audio = np.stack([e.vector for e in encoder.embed_files(files)])
    text = encoder.embed_text(list(kinds))
    best = [owner[int(np.argmax(audio @ t))] for t in text]
    correct = sum(b == q for b, q in zip(best, kinds))
    assert correct >= len(kinds) - 1, list(zip(kinds, best))


def test_default_model_v2_is_the_label_space_model_and_carries_its_licence():
    manifest = load_manifest(SHIPPED)
    if not manifest.patched:
        pytest.skip("the shipped default is not a patch model")
    size = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    assert size < 60 * 2**20, f"{size / 2**20:.1f} MiB"
    assert "Apache-2.0" in (SHIPPED / "NOTICE").read_text() and (SHIPPED / "YAMNET_LICENSE").is_file()
    assert manifest.text.label_space is not None and len(manifest.text.label_space.labels) == 521
    assert manifest.score_calibration is not None and manifest.score_calibration.slope > 0
    card = (SHIPPED / "MODEL_CARD.md").read_text()
    assert "## Alternatives" in card and "clapsearch-sfx-v1" in card


def test_nonsense_queries_score_clearly_below_real_matches():
    """Calibrated relevance: a keyboard mash must not look like a match; a real query's own sound must."""
    if not EXTRA_SFX.is_dir():
        pytest.skip(f"{EXTRA_SFX} not present")
    import csv

    manifest = load_manifest(SHIPPED)
    if manifest.score_calibration is None:
        pytest.skip("the shipped default has no score calibration")
    rows = list(csv.DictReader((EXTRA_SFX / "manifest.csv").open()))
    files = [
        EXTRA_SFX / r["path"] for r in rows if any(w in r["label_words"].lower() for w in ("rain", "dog", "bird"))
    ][:30]
    encoder = ClapEncoder.open(SHIPPED)
    audio = np.stack([e.vector for e in encoder.embed_files(files)])
    real = encoder.embed_text(["rain falling", "a dog barking", "a bird singing"]) @ audio.T
    junk = encoder.embed_text(["asdfghjkl", "qwertyuiop zxcv", "lorem ipsum dolor"]) @ audio.T
    relevance = np.vectorize(manifest.score_calibration.relevance)
    assert relevance(real.max(axis=1)).min() > relevance(junk.max(axis=1)).max()
