"""Zero-shot tagging: a clip + the labels YOU choose -> labels ranked with scores.

Follows the Hugging Face ``zero-shot-audio-classification`` pipeline's conventions:
``candidate_labels`` and ``hypothesis_template`` ("This is a sound of {}."), softmax scores over
the candidates (the model's own learned temperature), plus the raw cosines. ``multi_label``
scores each label on its own instead: the share of AudioSet's ~560 labels it beats for this
clip, so several labels can all be near 1 (present) or all low.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
from fastapi import APIRouter, Form, Request, UploadFile

from service import queries
from service.problems import ProblemError
from service.routes.params import AudioUpload, optional_upload
from service.schemas import ClassifyResponse
from service.vocabulary import phrase

if TYPE_CHECKING:
    from service.runtime import Runtime

router = APIRouter(tags=["classify"])
DEFAULT_TEMPLATE = "This is a sound of {}."


def _labels(values: list[str], limit: int) -> list[str]:
    labels: list[str] = []
    for value in values:
        parts = value.split(",") if len(values) == 1 else [value]   # one "a, b, c" value or repeated
        labels.extend(p.strip() for p in parts if p.strip())
    labels = list(dict.fromkeys(labels))
    if not labels:
        raise ProblemError("request.no_labels", "send candidate_labels, repeated or as one comma-separated value")
    if len(labels) > limit:
        raise ProblemError("request.too_many_labels", f"{len(labels)} labels; the limit is {limit} (CLAPSEARCH_MAX_LABELS)")
    if any(len(label) > 200 for label in labels):
        raise ProblemError("request.label_too_long", "labels are at most 200 characters")
    return labels


def _flag(value: str | None) -> bool:
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


@router.post("/v1/classify", response_model=ClassifyResponse, summary="Zero-shot tagging")
@router.post("/classify", response_model=ClassifyResponse, summary="Zero-shot tagging (unversioned alias)")
async def classify(request: Request, file: UploadFile | None = AudioUpload,
                   candidate_labels: list[str] = Form([], description="labels to choose from "
                                                      "(repeatable, or one comma-separated value); "
                                                      "also accepted as query parameters"),
                   hypothesis_template: str | None = Form(None, description='default "This is a sound of {}."'),
                   multi_label: str | None = Form(None, description="true: score labels independently"),
                   id: int | None = Form(None, ge=1, description="an indexed item instead of an upload")):
    rt: Runtime = request.app.state.runtime
    started = time.perf_counter()
    qp = request.query_params
    labels = _labels(candidate_labels or qp.getlist("candidate_labels"), rt.settings.max_labels)
    template = hypothesis_template or qp.get("hypothesis_template") or DEFAULT_TEMPLATE
    if "{}" not in template and "{label}" not in template:
        raise ProblemError("request.template", "hypothesis_template must contain {} where the label goes")
    multi = _flag(multi_label if multi_label is not None else qp.get("multi_label"))
    item_id = id if id is not None else (int(qp["id"]) if qp.get("id", "").isdigit() else None)
    vector, name = await queries.audio_vector(rt, optional_upload(file), item_id)
    texts = await queries.text_vectors(rt, [phrase(template, label) for label in labels])
    cosines = texts @ vector
    scale = queries.logit_scale(rt)
    if multi:
        vocabulary = await queries.vocabulary_vectors(rt)
        scores = queries.rank_against_vocabulary(cosines, vocabulary @ vector)
    else:
        scores = queries.softmax(scale * cosines)
    order = np.lexsort((-cosines, -scores))
    return {"query": name, "model": rt.manifest.name, "multi_label": multi, "hypothesis_template": template,
            "logit_scale": scale, "took_ms": round((time.perf_counter() - started) * 1000, 3),
            "labels": [{"label": labels[i], "score": round(float(scores[i]), 6),
                        "cosine": round(float(cosines[i]), 6)} for i in order]}
