"""Print the configuration reference (docs/configuration.md) from the settings classes.

    python scripts/settings_reference.py > docs/configuration.md     # regenerate
    python scripts/settings_reference.py --check docs/configuration.md   # exit 1 if stale

Every field of ``service.settings.ServiceSettings`` (which extends
``indexer.settings.IndexerSettings``) becomes a row: its environment variable, type, default
and description. Descriptions come from ``Field(description=...)``; the indexer's fields, which
have none, take theirs from the ``CLAPSEARCH_*`` table in ``indexer/settings.py``'s docstring.
Where ``clapsearch-worker`` (``WorkerSettings``) changes a default, the row says so. Nothing
here reads the environment, so the output is the same on every machine.
"""

from __future__ import annotations

import enum
import re
import sys
import typing
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import generated_doc  # noqa: E402  (beside this script)
from pydantic import SecretStr  # noqa: E402
from pydantic_core import PydanticUndefined  # noqa: E402

import indexer.settings as indexer_settings  # noqa: E402
from indexer.settings import IndexerSettings  # noqa: E402
from service.settings import ServiceSettings, WorkerSettings  # noqa: E402

PREFIX = ServiceSettings.model_config.get("env_prefix", "CLAPSEARCH_")

# Defaults that are computed (default_factory) or derived from other settings when unset.
DERIVED_DEFAULTS = {
    "home": "`$XDG_DATA_HOME/clapsearch`, else `~/.local/share/clapsearch`",
    "database_url": "unset: `sqlite:///$CLAPSEARCH_HOME/clapsearch.db`",
    "index_dir": "unset: `$CLAPSEARCH_HOME/indexes`",
    "model": "unset: the shipped `models/clapsearch-sfx-v2` (the images set it)",
    "model_variant": "unset: the model manifest's default",
}
# Descriptions for fields that declare none (before indexer/settings.py's docstring, which is terser).
EXTRA_DESCRIPTIONS = {
    "home": "data folder of the embedded default (SQLite database, index versions, caches)",
    "database_url": "metadata database: `sqlite:///...` or `postgresql+psycopg://user:pass@host/db` "
    "(shared by the API, workers and `indexer`)",
    "index_dir": "where FAISS index versions are published (`<collection>/<files|segments>/vNNNNNN/` + "
    "`CURRENT`); shared storage when several machines serve",
    "model": "model folder (`manifest.json` + ONNX towers + `tokenizer.json`); changing it means "
    "rebuilding the index (`indexer rebuild`)",
    "model_variant": "`fp32`, `fp16`, `int8` ... when the model folder has that variant",
    "device": "ONNX Runtime execution provider: `cuda` needs onnxruntime-gpu (the cuda image)",
    "faiss_gpu": "train/add index vectors on GPUs when faiss-gpu is installed",
    "index_memory_gb": "memory budget that picks the index type above 50k vectors (`indexer status` shows the plan)",
    "default_collection": "collection searched when a request names none",
    "cors_origins": "origins allowed to call the API from a browser (CORS); empty: same origin only",
    "embedding_cache_ttl_s": "seconds a query embedding stays in the Redis cache (0: not cached)",
    "result_cache_ttl_s": "seconds a search result page stays in the Redis cache (0: not cached)",
}


def _docstring_descriptions() -> dict[str, str]:
    """``CLAPSEARCH_X   text`` lines of indexer/settings.py's docstring -> {field: text}."""
    found, last, column = {}, None, 0
    for line in (indexer_settings.__doc__ or "").splitlines():
        match = re.match(rf"(\s*){PREFIX}(\w+)\s{{2,}}(.+)$", line)
        if match:
            last, column = match.group(2).lower(), match.start(3)
            found[last] = " ".join(match.group(3).split())
        elif last and line.strip() and len(line) - len(line.lstrip()) >= column:  # continued
            found[last] += " " + " ".join(line.split())
        else:
            last = None
    return found


def _type_name(annotation) -> str:
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(annotation))
    if origin in (list, tuple, set):
        inner = _type_name(args[0]) if args else "str"
        return f"comma-separated list of {inner}"
    if origin is typing.Union or type(annotation).__name__ == "UnionType":
        return " or ".join(_type_name(a) for a in args)
    if annotation is SecretStr:
        return "secret"
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return "path"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " \\| ".join(f"`{m.value}`" for m in annotation)
    return getattr(annotation, "__name__", str(annotation))


def _bounds(field) -> str:
    parts = []
    for item in field.metadata:
        for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            value = getattr(item, attr, None)
            if value is not None:
                parts.append(f"{sign} {value}")
    return f" ({', '.join(parts)})" if parts else ""


def _default(name: str, field) -> str:
    if name in DERIVED_DEFAULTS:
        return DERIVED_DEFAULTS[name]
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if value is None:
        return "unset"
    if value in ([], (), set(), ""):
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _settings_rows(names, fields, docs) -> list[str]:
    rows = ["| variable | type | default | what it does |", "|---|---|---|---|"]
    for name in names:
        field = fields[name]
        base = IndexerSettings.model_fields.get(name, field)  # the indexer's own definition
        description = base.description or EXTRA_DESCRIPTIONS.get(name) or docs.get(name, "")
        default = _default(name, base)
        if base is not field and _default(name, field) != default:  # the service changes it
            default = f"{default}; the service: {_default(name, field)}"
            if field.description and field.description != base.description:
                description = f"{description} (service: {field.description})"
        worker = WorkerSettings.model_fields[name]
        if _default(name, worker) != _default(name, field):
            default = f"{default}; the worker: {_default(name, worker)}"
        rows.append(
            f"| `{PREFIX}{name.upper()}` | {_type_name(base.annotation)}{_bounds(base)} | "
            f"{_cell(default)} | {_cell(description)} |"
        )
    return rows


def render() -> str:
    fields = ServiceSettings.model_fields
    docs = _docstring_descriptions()
    indexer_names = [n for n in fields if n in IndexerSettings.model_fields]
    service_names = [n for n in fields if n not in IndexerSettings.model_fields]
    worker_names = [n for n in WorkerSettings.model_fields if n not in fields]
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by `python scripts/settings_reference.py > docs/configuration.md` from",
        "     indexer/settings.py and service/settings.py; tests/deploy/test_configuration_doc.py",
        "     fails when it is stale. Do not edit by hand. -->",
        "",
        f"Every setting is an environment variable with the `{PREFIX}` prefix, read when a process",
        "starts (the API, the worker, `indexer` commands). Lists are comma-separated",
        "(`CLAPSEARCH_API_KEYS=key1,key2`). Booleans take `true`/`false` (also `1`/`0`, `yes`/`no`).",
        "Command-line options such as `indexer ingest --db` override the variables.",
        "In the images (Dockerfile) `CLAPSEARCH_HOME=/var/lib/clapsearch`,",
        "`CLAPSEARCH_INDEX_DIR=/var/lib/clapsearch/indexes`,",
        "`CLAPSEARCH_MODEL=/opt/clapsearch/models/clapsearch-sfx-v2`, `CLAPSEARCH_HOST=0.0.0.0`",
        "and `CLAPSEARCH_PORT=8000` are preset; docker-compose.yml and deploy/k8s/configmap.yaml",
        "set the rest (docs/deployment.md).",
        "",
        "## Storage, model and device (indexer and service)",
        "",
        *_settings_rows(indexer_names, fields, docs),
        "",
        "## Service",
        "",
        *_settings_rows(service_names, fields, docs),
        "",
        "## Worker only (`clapsearch-worker`)",
        "",
        *_settings_rows(worker_names, WorkerSettings.model_fields, docs),
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    return generated_doc.main(render, "scripts/settings_reference.py", __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
