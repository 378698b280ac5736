"""Response models: what the API returns, as documented in OpenAPI (``/docs``, ``/openapi.json``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class SearchHit(BaseModel):
    id: int = Field(description="item (file) id: use it for /v1/items/{id}, similar search, classify")
    score: float = Field(description="cosine similarity to the query, -1..1")
    relevance: float | None = Field(None, description=(
        "text queries on calibrated models: P(match) from the model's score calibration, 0..1, comparable "
        "across queries (a nonsense query scores near 0); null otherwise"))
    path: str
    name: str
    duration_s: float | None = None
    format: str | None = None
    tags: dict[str, str] | None = None
    start_s: float | None = Field(None, description="with segments=true: where the moment starts")
    end_s: float | None = None
    segment_id: int | None = None
    audio_url: str
    peaks_url: str


class SearchResponse(BaseModel):
    query: str
    collection: str
    model: str
    index_version: int
    took_ms: float
    cached: bool = Field(description="answered from the result cache")
    limit: int
    offset: int
    results: list[SearchHit]

    model_config = {"json_schema_extra": {"examples": [{
        "query": "dog barking in the rain", "collection": "default", "model": "clapsearch-sfx-v1",
        "index_version": 3, "took_ms": 11.2, "cached": False, "limit": 10, "offset": 0,
        "results": [{"id": 42, "score": 0.412, "relevance": 0.93, "path": "/srv/library/animals/dog_bark_rain.flac",
                     "name": "dog_bark_rain.flac", "duration_s": 7.5, "format": "FLAC", "tags": None,
                     "start_s": None, "end_s": None, "segment_id": None,
                     "audio_url": "/v1/items/42/audio", "peaks_url": "/v1/items/42/peaks"}]}]}}


class TextHit(BaseModel):
    text: str
    score: float = Field(description="cosine similarity between the audio and the text")
    source: str = Field(description="vocabulary (AudioSet labels) or user (texts you sent)")


class TextsResponse(BaseModel):
    query: str
    model: str
    took_ms: float
    results: list[TextHit]


class LabelScore(BaseModel):
    label: str
    score: float = Field(description="softmax probability over the candidates, or with multi_label "
                                     "the share of AudioSet's labels this label beats for the clip")
    cosine: float = Field(description="raw cosine similarity of the clip and the phrased label")


class ClassifyResponse(BaseModel):
    query: str
    model: str
    took_ms: float
    multi_label: bool
    hypothesis_template: str
    logit_scale: float
    labels: list[LabelScore]

    model_config = {"json_schema_extra": {"examples": [{
        "query": "clip.wav", "model": "clapsearch-sfx-v1", "took_ms": 31.0, "multi_label": False,
        "hypothesis_template": "This is a sound of {}.", "logit_scale": 14.95,
        "labels": [{"label": "dog", "score": 0.81, "cosine": 0.39},
                   {"label": "rain", "score": 0.15, "cosine": 0.28},
                   {"label": "engine", "score": 0.04, "cosine": 0.19}]}]}}


class Item(BaseModel):
    id: int
    collection: str
    path: str
    name: str
    size: int
    duration_s: float | None
    format: str | None
    subtype: str | None
    sample_rate: int | None
    channels: int | None
    tags: dict[str, str] | None
    status: str
    error_code: str | None = None
    n_segments: int
    updated_at: datetime | None
    audio_url: str
    peaks_url: str


class Peaks(BaseModel):
    n: int
    duration_s: float
    min: list[float]
    max: list[float]


class IndexSummary(BaseModel):
    version: int
    n_vectors: int
    up_to_date: bool
    plan: str | None = None


class CollectionInfo(BaseModel):
    name: str
    model: str
    model_fingerprint: str
    served: bool = Field(description="its model is the one this service runs")
    dim: int
    files: int
    failed: int
    hours: float
    segments: bool
    index: dict[str, IndexSummary | None]


class CollectionList(BaseModel):
    collections: list[CollectionInfo]


class IngestRequest(BaseModel):
    path: str = Field(description="a file or folder under one of CLAPSEARCH_ALLOWED_INGEST_ROOTS",
                      examples=["/srv/library/new-recordings"])
    collection: str = Field("default", min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$")
    segments: bool = Field(False, description="also index 10 s windows of long files")
    prune: bool = Field(False, description="forget files under path that no longer exist")
