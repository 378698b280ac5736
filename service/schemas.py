"""What the API takes and returns, as documented in OpenAPI (``/docs``, ``/openapi.json``).

Conventions (README, "API"): POST fields come as JSON or form fields (``routes/body.py``); lists
are arrays or repeated fields; list resources answer ``{items, total, limit, offset}``; ``tags``
is always an object.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from service.jobs import JobInfo


def _tags(value: object) -> object:
    return {} if value is None else value  # no tags is an empty object, never null


class Problem(BaseModel):
    """Every error (RFC 9457, ``application/problem+json``); docs/errors.md lists every ``code``."""

    type: str = Field(examples=["/problems/audio.decode"])
    title: str
    status: int
    code: str = Field(description="stable and dotted: switch on this, not on the title or detail")
    detail: str | None = None
    instance: str | None = Field(None, description="the request path")
    errors: list[dict] | None = Field(None, description="request.invalid: one entry per field (loc, msg, type)")


class MusicalAnalysis(BaseModel):
    """What ``indexer analyze`` (or ``ingest --analyze``) found; a value is null where the file
    has none (no steady beat, no tonal centre, silence)."""

    tempo_bpm: float | None = Field(None, description="beats per minute")
    tempo_confidence: float | None = Field(None, description="0..1: how periodic the onsets are at that tempo")
    key: str | None = Field(None, description="'A minor', 'F# major' (sharps)", examples=["A minor"])
    key_confidence: float | None = Field(None, description="correlation with the Krumhansl-Schmuckler key profile")
    loudness_lufs: float | None = Field(None, description="integrated loudness, ITU-R BS.1770 / EBU R 128")


class SearchHit(BaseModel):
    id: int = Field(description="item (file) id: use it for /v1/items/{id}, similar search, classify")
    score: float = Field(description="cosine similarity to the query, -1..1")
    relevance: float | None = Field(
        None,
        description=(
            "text queries on calibrated models: P(match) from the model's score calibration, 0..1, comparable "
            "across queries (a nonsense query scores near 0); null otherwise"
        ),
    )
    path: str
    name: str
    duration_s: float | None = None
    format: str | None = None
    tags: dict[str, str] = Field(default_factory=dict, description="the file's tags; {} when it has none")
    start_s: float | None = Field(None, description="with segments=true: where the moment starts")
    end_s: float | None = None
    segment_id: int | None = None
    analysis: MusicalAnalysis | None = Field(None, description="tempo, key and loudness; null until analysed")
    audio_url: str
    peaks_url: str


class Page(BaseModel):
    """The envelope of every list resource."""

    total: int = Field(description="how many there are in all (jobs: of the most recent ones kept)")
    limit: int
    offset: int


SEARCH_TOTAL = (
    "how many hits paging can walk: a vector search ranks every vector it may return, so this counts "
    "the files (segments=true: the distinct moments, short files whole) that pass the filters and "
    "min_score / min_relevance, the query's own item excluded, up to CLAPSEARCH_MAX_OFFSET + limit "
    "(no page reaches deeper hits; narrow the query with filters). On an approximate (IVF) index, "
    "and between an ingest's index publishes, a deep page may hold fewer."
)


class SearchResponse(Page):
    query: str
    collection: str
    model: str
    index_version: int
    took_ms: float
    cached: bool = Field(description="answered from the result cache")
    items: list[SearchHit] = Field(description="this page of hits, best first")
    total: int = Field(description=SEARCH_TOTAL)

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "query": "dog barking in the rain",
                    "collection": "default",
                    "model": "clapsearch-sfx-v1",
                    "index_version": 3,
                    "took_ms": 11.2,
                    "cached": False,
                    "items": [
                        {
                            "id": 42,
                            "score": 0.412,
                            "relevance": 0.93,
                            "path": "/srv/library/animals/dog_bark_rain.flac",
                            "name": "dog_bark_rain.flac",
                            "duration_s": 7.5,
                            "format": "FLAC",
                            "tags": {},
                            "start_s": None,
                            "end_s": None,
                            "segment_id": None,
                            "audio_url": "/v1/items/42/audio",
                            "peaks_url": "/v1/items/42/peaks",
                        }
                    ],
                    "total": 143,
                    "limit": 10,
                    "offset": 0,
                }
            ]
        }
    }


class TextHit(BaseModel):
    text: str
    score: float = Field(description="cosine similarity between the audio and the text")
    source: str = Field(description="vocabulary (AudioSet labels) or user (texts you sent)")


class TextsResponse(Page):
    query: str
    model: str
    took_ms: float
    items: list[TextHit] = Field(description="this page of texts, nearest first")
    total: int = Field(description="how many candidate texts were ranked (vocabulary labels and yours)")


class LabelScore(BaseModel):
    label: str
    score: float = Field(
        description="softmax probability over the candidates, or with multi_label "
        "the share of AudioSet's labels this label beats for the clip"
    )
    cosine: float = Field(description="raw cosine similarity of the clip and the phrased label")


class ClassifyResponse(BaseModel):
    query: str
    model: str
    took_ms: float
    multi_label: bool
    hypothesis_template: str
    logit_scale: float
    labels: list[LabelScore]

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "query": "clip.wav",
                    "model": "clapsearch-sfx-v1",
                    "took_ms": 31.0,
                    "multi_label": False,
                    "hypothesis_template": "This is a sound of {}.",
                    "logit_scale": 14.95,
                    "labels": [
                        {"label": "dog", "score": 0.81, "cosine": 0.39},
                        {"label": "rain", "score": 0.15, "cosine": 0.28},
                        {"label": "engine", "score": 0.04, "cosine": 0.19},
                    ],
                }
            ]
        }
    }


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
    tags: dict[str, str] = Field(default_factory=dict, description="the file's tags; {} when it has none")
    status: str
    error_code: str | None = None
    n_segments: int
    updated_at: datetime | None
    analysis: MusicalAnalysis | None = Field(None, description="tempo, key and loudness; null until analysed")
    audio_url: str
    peaks_url: str

    _no_null_tags = field_validator("tags", mode="before")(_tags)


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


class CollectionList(Page):
    items: list[CollectionInfo]


class JobList(Page):
    items: list[JobInfo]


# ----------------------------------------------------------------------------- inputs
# POST bodies, JSON or form fields alike (routes/body.py). Flat models: OpenAPI shows them inline.


MODE_DOC = (
    "text queries: hybrid (the default) fuses the sound ranking with the words of file names, folders "
    "and tags; audio ranks by sound only; text by the words only. Queries by example rank by sound"
)


class SearchOptions(BaseModel):
    """Paging and filters of every search; GET takes the same as query parameters (routes/params.py)."""

    collection: str | None = Field(
        None, max_length=200, description="collection to search (default: the configured one)"
    )
    limit: int = Field(10, ge=1, description="results per page; capped at CLAPSEARCH_MAX_LIMIT")
    offset: int = Field(0, ge=0, description="skip this many results (pagination)")
    min_score: float | None = Field(None, ge=-1, le=1, description="drop hits below this cosine")
    min_relevance: float | None = Field(
        None,
        ge=0,
        le=1,
        description=(
            "text queries: drop hits whose calibrated relevance (0..1, the same meaning for every query; "
            "0.5 = as likely a match as not) is below this; needs a model with a score calibration"
        ),
    )
    min_duration: float | None = Field(None, ge=0, description="seconds")
    max_duration: float | None = Field(None, ge=0, description="seconds")
    format: list[str] = Field([], max_length=100, description="container formats to keep, e.g. WAV, FLAC, MP3")
    tag: list[str] = Field([], max_length=100, description="'rain' (any tag contains it) or 'genre:ambient'")
    path_prefix: str | None = Field(None, description="only files whose path starts with this")
    segments: bool = Field(False, description="search 10 s windows inside long files; hits carry start_s/end_s")
    bpm_min: float | None = Field(None, ge=0, le=1000, description="analysed files at least this tempo (BPM)")
    bpm_max: float | None = Field(None, ge=0, le=1000, description="analysed files at most this tempo (BPM)")
    key: str | None = Field(
        None,
        max_length=40,
        description="analysed files in this key: 'A minor', 'F# major', 'Bbm' (a note alone: either mode)",
    )
    mode: Literal["hybrid", "audio", "text"] = Field("hybrid", description=MODE_DOC)


class SearchTextInput(SearchOptions):
    q: str = Field(
        description="what it should sound like",
        examples=["dog barking in the rain"],
        json_schema_extra={"pattern": r"\S"},  # blank is 422 text.empty (checked by the route)
    )


class SearchAudioInput(SearchOptions):
    id: int | None = Field(None, ge=1, description="an indexed item's id instead of an upload")
    exclude_self: bool = Field(True, description="leave the query item out")


class TextsInput(BaseModel):
    id: int | None = Field(None, ge=1, description="an indexed item's id instead of an upload")
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=100_000, description="skip this many texts (pagination)")
    texts: list[str] = Field([], description="your own candidate texts")
    vocabulary: bool = Field(True, description="include AudioSet's labels")


class ClassifyInput(BaseModel):
    id: int | None = Field(None, ge=1, description="an indexed item instead of an upload")
    # json_schema_extra: what the route checks itself (answering request.no_labels,
    # request.label_too_long, request.template), stated in the schema too (Schemathesis, issue 16)
    candidate_labels: list[str] = Field(
        [],
        description="labels to choose from: a JSON array or repeated fields; a label may contain commas",
        json_schema_extra={"minItems": 1, "items": {"type": "string", "maxLength": 200, "pattern": r"\S"}},
    )
    hypothesis_template: str | None = Field(
        None,
        max_length=1000,
        description='default (also when empty) "This is a sound of {}."; must hold {} (or {label}) where the label goes',
        json_schema_extra={"pattern": r"^$|\{(label)?\}"},
    )
    multi_label: bool = Field(False, description="true: score labels independently")


class IngestRequest(BaseModel):
    path: str = Field(
        min_length=1,
        description="a file or folder under one of CLAPSEARCH_ALLOWED_INGEST_ROOTS",
        examples=["/srv/library/new-recordings"],
    )
    collection: str = Field("default", min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$")
    segments: bool = Field(False, description="also index 10 s windows of long files")
    prune: bool = Field(False, description="forget files under path that no longer exist")
    analyze: bool = Field(
        False, description="then estimate tempo, key and loudness of files not analysed yet (needs librosa)"
    )


# ----------------------------------------------------------------------------- near-duplicates


class DuplicateMember(BaseModel):
    id: int = Field(description="item (file) id: /v1/items/{id}")
    path: str
    duration_s: float | None
    format: str | None
    sample_rate: int | None
    channels: int | None
    size: int


class DuplicatePair(BaseModel):
    a: int = Field(description="item id")
    b: int = Field(description="item id")
    score: float = Field(description="cosine similarity of the two files' vectors")


class DuplicateGroup(BaseModel):
    members: list[DuplicateMember]
    pairs: list[DuplicatePair] = Field(description="every pair of members at or above the threshold")
    score_min: float
    score_max: float
    identical: list[list[int]] = Field(description="ids of byte-identical members (same sha256), two or more each")
    differences: list[str] = Field(description="stored properties that differ: format, sample_rate, channels, ...")
    reason: str = Field(examples=["vector similarity 0.982-1.000; same length ±0.2 s (4.00 s); different formats"])


class DuplicateList(Page):
    items: list[DuplicateGroup]
    collection: str
    threshold: float
    files: int = Field(description="files with a vector in the collection")
    pairs: int = Field(description="pairs at or above the threshold")
    mode: str = Field(description="cached, incremental (only files added since the last run searched) or full")
