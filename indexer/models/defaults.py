"""Which model folder the runtime uses when none is named.

The settings resolve the choice (``IndexerSettings.resolved_model_dir``: ``--model``, then
``$CLAPSEARCH_MODEL``, then this): the default model shipped in the repository's ``models/``
folder (``DEFAULT_MODEL``, trained here from obtainable data; see its ``MODEL_CARD.md``).
Resolved when asked, never at import time.
"""

from __future__ import annotations

from pathlib import Path

from indexer.errors import ModelError

DEFAULT_MODEL = "clapsearch-sfx-v2"
MODELS_DIR = Path(__file__).resolve().parents[2] / "models"


def shipped_model_dir() -> Path:
    """The folder the CLI, the service and the demo use unless told otherwise."""
    shipped = MODELS_DIR / DEFAULT_MODEL
    if (shipped / "manifest.json").is_file():
        return shipped
    raise ModelError(
        f"no model folder: pass --model, set CLAPSEARCH_MODEL, or restore the shipped default model at {shipped}"
    )
