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
        from_text = False  # form fields and query parameters are strings: read them as pydantic does
        for name, info in model.model_fields.items():
            key, many = info.alias or name, _is_list(info.annotation)
            if key in self.values:
                value = self.values[key]
                data[key] = [value] if many and isinstance(value, str) else value
            elif key in self.multi or (query is not None and key in query):
                found = self.multi[key] if key in self.multi else query.getlist(key)  # type: ignore[union-attr]
                found = [v for v in found if not isinstance(v, UploadFile)]
                from_text = True
                if many:
                    data[key] = found
                elif found and found[-1] != "":  # a browser's empty field is an absent one
                    data[key] = found[-1]
        try:
            # JSON has types: a JSON body is held to them (0 is not false, "5" is not 5), as its
            # schema says (Schemathesis, issue 16); ints still fill float fields
            return model.model_validate(data, strict=not from_text)
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


def _without_null(prop: dict) -> dict:
    """A form field's schema: a form cannot send null (an absent field is the default), so
    ``anyOf: [X, null]`` is X and a default of None is dropped."""
    options = [o for o in prop.get("anyOf", []) if o.get("type") != "null"]
    if not options:
        return prop
    out = {k: v for k, v in prop.items() if k != "anyOf" and not (k == "default" and v is None)}
    return {**out, **options[0]} if len(options) == 1 else {**out, "anyOf": options}


# What pydantic reads as a boolean in a form field, any case (a browser's checkbox sends "on").
_FORM_BOOLEANS = ("0", "1", "f", "t", "n", "y", "no", "yes", "off", "on", "false", "true")
_FORM_BOOLEAN = (
    "^(|"
    + "|".join("".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in w) for w in _FORM_BOOLEANS)
    + ")$"
)


def _one_or_many(prop: dict) -> dict:
    """A list field also takes one value: a JSON string (wrapped by ``Fields.parse``), and on a
    form one field, indistinguishable from a list of one."""
    if prop.get("type") != "array":
        return prop
    keep = {k: v for k, v in prop.items() if k in ("title", "description", "default")}
    value = {k: v for k, v in prop.items() if k not in keep}
    return keep | {"anyOf": [value, prop.get("items", {"type": "string"})]}


def _form_field(prop: dict, required: bool = False) -> dict:
    """A form field's schema: no null (see ``_without_null``); booleans as the strings read as
    one; and an empty value, which a browser sends for a field left blank, is the field absent."""
    prop = _without_null(prop)
    kind = prop.get("type")
    if kind == "boolean":
        out = {k: v for k, v in prop.items() if k != "type"} | {"type": "string", "pattern": _FORM_BOOLEAN}
        if isinstance(out.get("default"), bool):
            out["default"] = str(out["default"]).lower()
        return out
    if required:  # an empty value is an absent field, and this one must be there
        return prop | {"minLength": max(1, prop.get("minLength", 1))} if kind == "string" else prop
    if kind in ("integer", "number") or (kind == "string" and {"pattern", "minLength"} & set(prop)):
        value = {k: v for k, v in prop.items() if k not in ("title", "description", "default")}
        keep = {k: v for k, v in prop.items() if k in ("title", "description", "default")}
        return keep | {"anyOf": [value, {"type": "string", "maxLength": 0}]}
    return prop


def body_doc(
    model: type[BaseModel], *, file: bool = False, required: bool = False, required_fields: tuple[str, ...] = ()
) -> dict:
    """``openapi_extra`` for a route that reads ``request_fields``: the same fields as JSON, a
    urlencoded form or (with ``file``) a multipart form with the audio part. ``required_fields``
    are fields the route itself insists on (with its own error code) although the model has a default."""
    schema = model.model_json_schema()
    assert "$defs" not in schema, f"{model.__name__}: keep input models flat"
    if required_fields:
        schema["required"] = sorted({*schema.get("required", []), *required_fields})
        for name in required_fields:
            schema["properties"][name].pop("default", None)
    if file:  # one audio source: an indexed item's id in any body, or the uploaded part
        schema["required"] = sorted({*schema.get("required", []), "id"})
        schema["properties"]["id"] = _without_null(schema["properties"]["id"])
    schema["properties"] = {k: _one_or_many(v) for k, v in schema.get("properties", {}).items()}
    needed = set(schema.get("required", []))
    form = {**schema, "properties": {k: _form_field(v, k in needed) for k, v in schema["properties"].items()}}
    # a JSON body with a field the model does not know is 422 (Fields.parse): say so
    content: dict[str, Any] = {JSON: {"schema": {**schema, "additionalProperties": False}}, FORM: {"schema": form}}
    if file:
        multipart = {
            **form,
            "required": [r for r in form["required"] if r != "id"],
            "oneOf": [{"required": ["file"]}, {"required": ["id"]}],  # 422 request.audio_source otherwise
            "properties": {
                **form["properties"],
                "file": {
                    "type": "string",
                    "format": "binary",
                    "description": "an audio clip (WAV, FLAC, Ogg, Opus, MP3, AIFF...)",
                },
            },
        }
        # the part types the server accepts (anything else is 415 upload.content_type)
        encoding = {"file": {"contentType": "audio/*, application/octet-stream"}}
        content = {MULTIPART: {"schema": multipart, "encoding": encoding}, **content}
        required = True
    else:
        content[MULTIPART] = {"schema": form}
    return {"requestBody": {"required": required, "content": content}}
