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
from fastapi import APIRouter, Request

from service import queries
from service.problems import ProblemError
from service.routes.body import BodyFields, Fields, body_doc
from service.routes.params import optional_upload
from service.schemas import ClassifyInput, ClassifyResponse
from service.vocabulary import phrase

if TYPE_CHECKING:
    from service.runtime import Runtime

router = APIRouter(tags=["classify"])
DEFAULT_TEMPLATE = "This is a sound of {}."


def _labels(values: list[str], limit: int) -> list[str]:
    # never split on commas: "Crowing, cock-a-doodle-doo" is one of AudioSet's own labels
    if len(values) > limit:  # counted as sent (the schema's maxItems), before duplicates are merged
        raise ProblemError(
            "request.too_many_labels", f"{len(values)} labels; the limit is {limit} (CLAPSEARCH_MAX_LABELS)"
        )
    labels = list(dict.fromkeys(v.strip() for v in values if v.strip()))
    if not labels:
        raise ProblemError("request.no_labels", "send candidate_labels: a JSON array or repeated form fields")
    if len(labels) > limit:
        raise ProblemError(
            "request.too_many_labels", f"{len(labels)} labels; the limit is {limit} (CLAPSEARCH_MAX_LABELS)"
        )
    if any(len(label) > 200 for label in labels):
        raise ProblemError("request.label_too_long", "labels are at most 200 characters")
    return labels


@router.post(
    "/v1/classify",
    response_model=ClassifyResponse,
    summary="Zero-shot tagging",
    openapi_extra=body_doc(ClassifyInput, file=True, required=True, required_fields=("candidate_labels",)),
)
@router.post(
    "/classify",
    response_model=ClassifyResponse,
    summary="Zero-shot tagging (unversioned alias)",
    openapi_extra=body_doc(ClassifyInput, file=True, required=True, required_fields=("candidate_labels",)),
)
async def classify(request: Request, fields: Fields = BodyFields):
    rt: Runtime = request.app.state.runtime
    started = time.perf_counter()
    body = fields.parse(ClassifyInput, request.query_params)
    labels = _labels(body.candidate_labels, rt.settings.max_labels)
    template = body.hypothesis_template or DEFAULT_TEMPLATE
    if "{}" not in template and "{label}" not in template:
        raise ProblemError("request.template", "hypothesis_template must contain {} where the label goes")
    multi = body.multi_label
    vector, name = await queries.audio_vector(rt, optional_upload(fields.file), body.id)
    texts = await queries.text_vectors(rt, [phrase(template, label) for label in labels])
    cosines = texts @ vector
    scale = queries.logit_scale(rt)
    if multi:
        vocabulary = await queries.vocabulary_vectors(rt)
        scores = queries.rank_against_vocabulary(cosines, vocabulary @ vector)
    else:
        scores = queries.softmax(scale * cosines)
    order = np.lexsort((-cosines, -scores))
    return {
        "query": name,
        "model": rt.manifest.name,
        "multi_label": multi,
        "hypothesis_template": template,
        "logit_scale": scale,
        "took_ms": round((time.perf_counter() - started) * 1000, 3),
        "labels": [
            {"label": labels[i], "score": round(float(scores[i]), 6), "cosine": round(float(cosines[i]), 6)}
            for i in order
        ],
    }
