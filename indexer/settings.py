"""Typed settings for the indexer (and the service built on it), from arguments or environment.

    CLAPSEARCH_HOME           where the embedded default keeps its data (~/.local/share/clapsearch)
    CLAPSEARCH_DATABASE_URL   sqlite:///$CLAPSEARCH_HOME/clapsearch.db, or postgresql+psycopg://...
    CLAPSEARCH_DB_TIMEOUT_S   longest a PostgreSQL connect, statement or round trip may take before
                              the database counts as unavailable (store.database); 0: no bound
    CLAPSEARCH_INDEX_DIR      $CLAPSEARCH_HOME/indexes: published FAISS index versions
    CLAPSEARCH_MODEL          model folder (default: the shipped clapsearch-sfx-v2)
    CLAPSEARCH_MODEL_VARIANT  fp32 / fp16 / int8 ... if the folder has it (default: its manifest's)
    CLAPSEARCH_DEVICE         auto | cpu | cuda            (ONNX Runtime)
    CLAPSEARCH_FAISS_GPU      auto | never | always        (index training/adding on GPUs)
    CLAPSEARCH_INDEX_MEMORY_GB  memory budget that picks the index type (see `indexer status`)
    CLAPSEARCH_ONNX_THREADS   ONNX Runtime intra-op threads (unset or 0: one per physical core)
    CLAPSEARCH_ONNX_SPINNING  let idle ONNX threads spin for the next call (fast back-to-back
                              batches when ingesting; the service turns it off, see its settings)

This class alone resolves the model folder (``resolved_model_dir``) and the ONNX Runtime options
(``onnx``); every CLI command, the service and the worker build their encoder from it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from indexer.models.options import OnnxOptions


def default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "clapsearch"


class IndexerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLAPSEARCH_", extra="ignore", protected_namespaces=())

    home: Path = Field(default_factory=default_home)
    database_url: str | None = None
    db_timeout_s: float = Field(30.0, ge=0)
    index_dir: Path | None = None
    model: Path | None = None
    model_variant: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    faiss_gpu: Literal["auto", "never", "always"] = "auto"
    index_memory_gb: float = Field(4.0, gt=0)
    onnx_threads: int | None = Field(None, ge=0)
    onnx_spinning: bool = True

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'clapsearch.db'}"

    @property
    def resolved_index_dir(self) -> Path:
        return self.index_dir or self.home / "indexes"

    @property
    def resolved_model_dir(self) -> Path:
        from indexer.models.defaults import shipped_model_dir

        return self.model or shipped_model_dir()  # ``model`` already holds $CLAPSEARCH_MODEL

    @property
    def onnx(self) -> OnnxOptions:
        return OnnxOptions(self.device, self.onnx_threads, self.onnx_spinning)

    def open_encoder(self):
        """The model named by these settings, with their variant and ONNX options."""
        from indexer.models.encoder import ClapEncoder

        return ClapEncoder.open(self.resolved_model_dir, variant=self.model_variant, options=self.onnx)
