"""One way to send fields to every POST: a JSON object, or form fields (urlencoded, or multipart
where a ``file`` part rides along), parsed into one pydantic model either way.

FastAPI binds a route to either ``Form`` or a JSON body; with ``Form`` a JSON body is silently
empty (a misleading "field required" 422), with ``Query`` form fields are silently ignored. So
POST routes read their fields here instead:

    body = fields.parse(ClassifyInput, request.query_params)

Lists are JSON arrays or repeated form fields, never split on commas (AudioSet has labels such
as "Crowing, cock-a-doodle-doo"). Query parameters are still read where the body does not name
a field, so clients of the older query-parameter style keep working.
"""

from __future__ import annotations

import json
import types
from collections.abc import AsyncIterator, Mapping
from typing import Any, TypeVar, Union, get_args, get_origin

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from service.problems import ProblemError

M = TypeVar("M", bound=BaseModel)
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
# a form is at most this many fields (starlette's own bound, stated here so docs and tests agree)
MAX_FORM_FIELDS = 1000


def _is_list(annotation: Any) -> bool:
    if get_origin(annotation) is list:
        return True
    return get_origin(annotation) in (Union, types.UnionType) and any(
        get_origin(a) is list for a in get_args(annotation)
    )


class Fields:
    """The fields of one request body: ``values`` from JSON (any JSON types) or ``multi`` from a
    form (every value a list of strings), and the uploaded ``file`` part if any."""

    def __init__(
        self,
        values: Mapping[str, Any] | None = None,
        multi: Mapping[str, list] | None = None,
        file: UploadFile | None = None,
    ):
        self.values, self.multi, self.file = dict(values or {}), dict(multi or {}), file

    def parse(self, model: type[M], query: Mapping[str, Any] | None = None) -> M:
        unknown = sorted(set(self.values) - {f.alias or n for n, f in model.model_fields.items()})
        if unknown:  # a typo ("query" for "q") answers 422, not a default answer to no question
            raise RequestValidationError(
                [{"loc": ("body", key), "msg": "unknown field", "type": "extra_forbidden"} for key in unknown]
            )
        data: dict[str, Any] = {}
        for name, info in model.model_fields.items():
            key, many = info.alias or name, _is_list(info.annotation)
            if key in self.values:
                value = self.values[key]
                data[key] = [value] if many and isinstance(value, str) else value
            elif key in self.multi or (query is not None and key in query):
                found = self.multi[key] if key in self.multi else query.getlist(key)  # type: ignore[union-attr]
                found = [v for v in found if not isinstance(v, UploadFile)]
                if many:
                    data[key] = found
                elif found and found[-1] != "":  # a browser's empty field is an absent one
                    data[key] = found[-1]
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
            ) from None


def media_type(request: Request) -> str:
    return (request.headers.get("content-type") or "").split(";")[0].strip().lower()


async def request_fields(request: Request) -> AsyncIterator[Fields]:
    """The dependency: the body's fields, whatever way they were sent; upload files are closed
    once the response is done."""
    ctype = media_type(request)
    if ctype == JSON or ctype.endswith("+json"):
        raw = await request.body()
        try:
            data = json.loads(raw) if raw.strip() else {}
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than Python's stack
            raise ProblemError("request.invalid", "the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise ProblemError("request.invalid", "send the fields as one JSON object")
        yield Fields(values=data)
    elif ctype in (FORM, MULTIPART):
        form = await request.form(max_fields=MAX_FORM_FIELDS)
        try:
            multi: dict[str, list] = {}
            for key, value in form.multi_items():
                multi.setdefault(key, []).append(value)
            # a browser's "no file chosen" may arrive as an empty text part: no file
            files = [f for f in multi.pop("file", []) if f != ""]
            if len(files) > 1 or any(not isinstance(f, UploadFile) for f in files):
                raise ProblemError("request.invalid", "`file` is one multipart file part")
            yield Fields(multi=multi, file=files[0] if files else None)
        finally:
            await form.close()
    else:
        if ctype or await request.body():
            raise ProblemError(
                "upload.content_type",
                f"send fields as {JSON}, {MULTIPART} or {FORM}" + (f", not {ctype}" if ctype else ""),
            )
        yield Fields()


BodyFields = Depends(request_fields)


def body_doc(model: type[BaseModel], *, file: bool = False, required: bool = False) -> dict:
    """``openapi_extra`` for a route that reads ``request_fields``: the same fields as JSON, a
    urlencoded form or (with ``file``) a multipart form with the audio part."""
    schema = model.model_json_schema()
    assert "$defs" not in schema, f"{model.__name__}: keep input models flat"
    form = {**schema, "properties": dict(schema.get("properties", {}))}
    content: dict[str, Any] = {JSON: {"schema": schema}, FORM: {"schema": form}}
    if file:
        multipart = {
            **form,
            "properties": {
                **form["properties"],
                "file": {
                    "type": "string",
                    "format": "binary",
                    "description": "an audio clip (WAV, FLAC, Ogg, Opus, MP3, AIFF...)",
                },
            },
        }
        content = {MULTIPART: {"schema": multipart}, **content}
    else:
        content[MULTIPART] = {"schema": form}
    return {"requestBody": {"required": required, "content": content}}
