"""docker-compose.yml: valid for the compose tools, and wired the way the quick start needs."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.deploy import REPO, compose, find_tool, interpolate_defaults, known_settings, missing_tool
from tests.helpers import run_captured

CLAPSEARCH_SERVICES = ("migrate", "api", "worker", "api-gpu", "worker-gpu")


def _run_config(command: list[str], tmp_path, env_file: bool = False) -> subprocess.CompletedProcess:
    # run from a copy with an empty environment for compose variables, so the defaults are checked
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAPSEARCH_", "COMPOSE_"))}
    (tmp_path / "docker-compose.yml").write_text((REPO / "docker-compose.yml").read_text())
    if env_file:
        (tmp_path / ".env").write_text((REPO / "deploy" / "compose.env.example").read_text())
    return run_captured(command, cwd=tmp_path, env=env, timeout=120)


@pytest.mark.parametrize("env_file", [False, True], ids=["defaults", "env-example"])
def test_docker_compose_v1_config(tmp_path, env_file):
    """Debian's docker-compose (1.29) validates against its bundled compose schema."""
    tool = find_tool("docker-compose", "apt-get install docker-compose")
    result = _run_config([tool, "--profile", "gpu", "--profile", "monitoring", "config", "-q"], tmp_path, env_file)
    assert result.returncode == 0, result.stderr


def test_docker_compose_v2_config(tmp_path):
    """`docker compose config` where the Compose v2 plugin is installed (not on Debian 12)."""
    docker = find_tool("docker", "the Docker CLI with the compose plugin")
    if subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip(
            "docker CLI without the compose v2 plugin (docker-compose v1 and the compose-spec "
            "schema check cover the file)"
        )
    result = _run_config([docker, "compose", "--profile", "gpu", "--profile", "monitoring", "config", "-q"], tmp_path)
    assert result.returncode == 0, result.stderr


def test_compose_spec_schema():
    """The current Compose Specification schema (vendored by check-jsonschema, offline)."""
    tool = find_tool("check-jsonschema", "pip install check-jsonschema (dev extra)")
    result = run_captured(
        [tool, "--builtin-schema", "vendor.compose-spec", str(REPO / "docker-compose.yml")], timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_services_volumes_and_healthchecks():
    spec = compose()
    services = spec["services"]
    for name in ("postgres", "redis", "migrate", "api", "worker"):
        assert name in services, name
        assert "profiles" not in services[name], f"{name} must start with a plain `docker compose up`"
    for name in ("postgres", "redis", "api"):
        assert "test" in services[name]["healthcheck"], name
    # persistent state on named volumes
    named = set(spec["volumes"])
    assert {"pgdata", "redisdata", "indexes"} <= named
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    for name in ("api", "worker", "api-gpu", "worker-gpu"):
        volumes = services[name]["volumes"]
        assert "indexes:/var/lib/clapsearch/indexes" in volumes, name
        library = [v for v in volumes if v.split(":")[-2:-1] == ["/library"] or ":/library:" in v]
        assert library and all(v.endswith(":ro") for v in library), f"{name}: library must be read-only"
    # only the API is published, and on loopback by default
    for name in ("postgres", "redis", "migrate", "worker", "worker-gpu"):
        assert "ports" not in services[name], name
    for name in ("api", "api-gpu"):
        assert [interpolate_defaults(p) for p in services[name]["ports"]] == ["127.0.0.1:8000:8000"]


def test_migration_runs_before_the_api_and_worker():
    services = compose()["services"]
    assert services["migrate"]["command"] == ["clapsearch-api", "migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker", "api-gpu", "worker-gpu"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name
    assert services["api"]["command"] == ["clapsearch-api", "serve"]
    assert services["worker"]["command"] == ["clapsearch-worker"]


def test_gpu_profile_reserves_nvidia_devices():
    services = compose()["services"]
    for name in ("api-gpu", "worker-gpu"):
        service = services[name]
        assert service["profiles"] == ["gpu"]
        assert service["build"]["target"] == "cuda"
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
        assert service["environment"]["CLAPSEARCH_DEVICE"] == "cuda"
    for name in ("api", "worker", "migrate"):
        assert services[name]["build"]["target"] == "runtime"
        assert "deploy" not in services[name]


def test_settings_are_real_and_safe():
    """Every CLAPSEARCH_* variable compose sets is one the processes read, the defaults keep the
    service private, and the same settings reach every clapsearch container."""
    services = compose()["services"]
    known = known_settings()
    reference = services["api"]["environment"]
    for name in CLAPSEARCH_SERVICES:
        env = services[name]["environment"]
        unknown = {k for k in env if k.startswith("CLAPSEARCH_")} - known
        assert not unknown, f"{name} sets variables no clapsearch process reads: {sorted(unknown)}"
        assert {k: v for k, v in env.items() if k != "CLAPSEARCH_DEVICE" and k != "CLAPSEARCH_FAISS_GPU"} == {
            k: v for k, v in reference.items() if k != "CLAPSEARCH_DEVICE"
        }, name
    env = {k: interpolate_defaults(v) for k, v in reference.items()}
    assert env["CLAPSEARCH_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert env["CLAPSEARCH_REDIS_URL"].startswith("redis://redis:6379")
    assert env["CLAPSEARCH_ALLOWED_INGEST_ROOTS"] == "/library"
    assert env["CLAPSEARCH_INDEX_DIR"] == "/var/lib/clapsearch/indexes"
    assert env["CLAPSEARCH_METRICS_PUBLIC"] == "false"
    # the settings class accepts every default compose passes
    from service.settings import ServiceSettings

    settings = ServiceSettings(
        _env_file=None,
        **{
            k[len("CLAPSEARCH_") :].lower(): v
            for k, v in env.items()
            if k[len("CLAPSEARCH_") :].lower() in ServiceSettings.model_fields
        },
    )
    assert settings.api_keys == [] and settings.rate_limit_per_minute == 0
    assert [str(p) for p in settings.allowed_ingest_roots] == ["/library"]


def test_env_example_names_only_real_settings():
    example = (REPO / "deploy" / "compose.env.example").read_text().splitlines()
    names = {line.split("=", 1)[0] for line in example if line and not line.startswith("#")}
    spec_text = (REPO / "docker-compose.yml").read_text()
    unknown = {n for n in names if n.startswith("CLAPSEARCH_")} - known_settings()
    assert not unknown, unknown
    unused = {n for n in names if "${" + n not in spec_text}
    assert not unused, f"deploy/compose.env.example names variables docker-compose.yml ignores: {unused}"


def test_missing_tool_helper_fails_in_ci(monkeypatch):
    monkeypatch.setenv("CLAPSEARCH_REQUIRE_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception):
        missing_tool("x", "y")
