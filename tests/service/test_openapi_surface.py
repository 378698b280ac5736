"""The public HTTP surface, pinned: paths, methods, parameters, request bodies and response
schemas, summarised from ``/openapi.json`` into ``openapi_surface.txt`` beside this file (like
httpx's public-API test). A change to the API fails here until the summary is regenerated, so
every change to what clients see is deliberate and shows up in review as a diff:

    PYTHONPATH=. python tests/service/test_openapi_surface.py > tests/service/openapi_surface.txt
"""

from __future__ import annotations

import difflib
import sys
import tempfile
from pathlib import Path

SNAPSHOT = Path(__file__).with_name("openapi_surface.txt")
REGENERATE = "PYTHONPATH=. python tests/service/test_openapi_surface.py > tests/service/openapi_surface.txt"


def _type(schema: dict) -> str:
    """A schema in a few characters: ``int>=1``, ``list[str]``, ``SearchHit``, ``str|null``."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return "|".join(_type(s) for s in schema["anyOf"])
    kind = schema.get("type", "any")
    if kind == "array":
        text = f"list[{_type(schema.get('items', {}))}]"
    elif kind == "object" and "additionalProperties" in schema:
        extra = schema["additionalProperties"]
        text = f"dict[str,{_type(extra) if isinstance(extra, dict) else 'any'}]"
    else:
        text = {"integer": "int", "string": "str", "boolean": "bool", "number": "float"}.get(kind, kind)
        if schema.get("format") == "binary":
            text = "file"
    for key, sign in (
        ("minimum", ">="),
        ("exclusiveMinimum", ">"),
        ("maximum", "<="),
        ("minLength", " len>="),
        ("maxLength", " len<="),
        ("minItems", " items>="),
        ("maxItems", " items<="),
        ("pattern", " ~"),
    ):
        if key in schema:
            value = schema[key]  # 1 and 1.0 are one bound (pydantic writes either)
            text += f"{sign}{int(value) if isinstance(value, float) and value.is_integer() else value}"
    if "enum" in schema:
        text += "{" + ",".join(map(str, schema["enum"])) + "}"
    return text


def _fields(schema: dict) -> str:
    required = set(schema.get("required", ()))
    return ", ".join(
        f"{name}{'' if name in required else '?'}: {_type(prop)}" for name, prop in schema.get("properties", {}).items()
    )


def summarise(spec: dict) -> str:
    lines = [
        f"# {spec['info']['title']} {spec['info']['version']} (OpenAPI {spec['openapi']})",
        f"# regenerate: {REGENERATE}",
    ]
    for path in sorted(spec["paths"]):
        for method, op in sorted(spec["paths"][path].items()):
            lines.append(f"{method.upper()} {path}")
            for p in op.get("parameters", []):
                lines.append(f"  {p['in']} {p['name']}{'' if p.get('required') else '?'}: {_type(p.get('schema', {}))}")
            body = op.get("requestBody")
            if body:
                for ctype, media in sorted(body["content"].items()):
                    schema = media.get("schema", {})
                    shown = _type(schema) if "$ref" in schema else "{" + _fields(schema) + "}"
                    lines.append(f"  body{'' if body.get('required') else '?'} {ctype}: {shown}")
            for status, answer in sorted(op.get("responses", {}).items()):
                kinds = [
                    f"{ctype} {_type(media.get('schema', {}))}"
                    for ctype, media in sorted(answer.get("content", {}).items())
                ]
                lines.append(f"  -> {status} {'; '.join(kinds)}".rstrip())
    lines.append("")
    for name, schema in sorted(spec.get("components", {}).get("schemas", {}).items()):
        lines.append(f"{name} {{{_fields(schema)}}}" if "properties" in schema else f"{name} = {_type(schema)}")
    return "\n".join(lines) + "\n"


def current() -> str:
    from service.app import create_app
    from service.settings import ServiceSettings

    with tempfile.TemporaryDirectory() as home:  # openapi() needs no lifespan: nothing starts
        return summarise(create_app(ServiceSettings(home=Path(home))).openapi())


def test_the_public_surface_is_the_committed_one():
    now, pinned = current(), SNAPSHOT.read_text()
    if now != pinned:
        diff = "".join(
            difflib.unified_diff(
                pinned.splitlines(True), now.splitlines(True), "openapi_surface.txt (committed)", "the app now"
            )
        )
        raise AssertionError(
            f"the public API changed; if that is meant, regenerate the summary and "
            f"commit it with the change:\n    {REGENERATE}\n\n{diff}"
        )


def test_every_operation_documents_its_errors_as_problems():
    """Every operation's 422 (FastAPI's default) names the problem schema the handlers send."""
    text = SNAPSHOT.read_text()
    assert "HTTPValidationError" not in text, "a 422 documented as FastAPI's default, not a problem"


if __name__ == "__main__":
    sys.stdout.write(current())
