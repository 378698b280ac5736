"""requirements/*.txt: the image locks agree with pyproject.toml and constraints.txt, and keep
their promises (hash-pinned; no torch in the serving images; GPU builds of one CUDA major).
Regenerate with `bash requirements/compile.sh` when this fails after a dependency change."""

from __future__ import annotations

import re
import sys

import pytest

from tests.deploy import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REQ = REPO / "requirements"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
TORCH_FAMILY = {"torch", "torchvision", "torchaudio", "transformers", "triton", "safetensors", "onnx", "onnxscript"}


def lock(name: str) -> dict[str, list[tuple[Version, str | None]]]:
    """{canonical name: [(version, marker or None)]} of a pip requirements lock."""
    pins: dict[str, list] = {}
    text = (REQ / name).read_text()
    for line in text.replace("\\\n", " ").splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        spec, _, marker = line.partition(";")
        marker = marker.split("--hash")[0].strip() or None
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", spec.split("--hash")[0].strip())
        assert match, f"{name}: not an exact pin: {line[:100]}"
        pins.setdefault(canonicalize_name(match.group(1)), []).append((Version(match.group(2)), marker))
    return pins


def _applies(marker: str | None, python: str) -> bool:
    env = {
        "python_version": ".".join(python.split(".")[:2]),
        "python_full_version": python,
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }
    return marker is None or Marker(marker).evaluate(env)


def _pinned(pins, name: str, python: str) -> Version | None:
    versions = [v for v, m in pins.get(canonicalize_name(name), []) if _applies(m, python)]
    assert len(versions) <= 1, f"{name} pinned twice for Python {python}"
    return versions[0] if versions else None


def _requirements(*extras: str) -> list[Requirement]:
    project = PYPROJECT["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return reqs


def _check_covers(lock_name: str, requirements, python: str, skip=()):
    pins = lock(lock_name)
    problems = []
    for req in requirements:
        if canonicalize_name(req.name) in skip:
            continue
        version = _pinned(pins, req.name, python)
        if version is None:
            problems.append(f"{req.name} is not in {lock_name}")
        elif version not in req.specifier:
            problems.append(f"{req.name}=={version} in {lock_name} does not satisfy {req.specifier}")
        for extra in req.extras:  # e.g. uvicorn[standard]: its extra's packages are locked too
            if (req.name, extra) == ("uvicorn", "standard"):
                for needed in ("uvloop", "httptools", "websockets", "watchfiles", "python-dotenv", "pyyaml"):
                    if _pinned(pins, needed, python) is None:
                        problems.append(f"{needed} (uvicorn[standard]) is not in {lock_name}")
    assert not problems, "\n".join(problems) + "\n-> regenerate: bash requirements/compile.sh"


@pytest.mark.parametrize("python", ["3.11.9", "3.12.8", "3.13.1"])
def test_runtime_lock_matches_pyproject(python):
    _check_covers("runtime.txt", _requirements("postgres"), python)


def test_runtime_lock_is_torch_free_and_hashed():
    pins = lock("runtime.txt")
    assert not TORCH_FAMILY & set(pins), "the serving image must not carry torch"
    assert not {canonicalize_name(n) for n in ("onnxruntime-gpu", "faiss-gpu-cu12")} & set(pins)
    _assert_hashed("runtime.txt")


def _assert_hashed(name: str):
    text = (REQ / name).read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            assert "--hash=sha256:" in line, f"{name}: unhashed pin {line[:80]}"


def test_gpu_lock_replaces_the_cpu_builds():
    pins = lock("gpu.txt")
    _check_covers("gpu.txt", _requirements("postgres", "gpu"), "3.12.3", skip={"onnxruntime", "faiss-cpu"})
    assert "onnxruntime" not in pins and "faiss-cpu" not in pins
    assert not TORCH_FAMILY & set(pins)
    ort = _pinned(pins, "onnxruntime-gpu", "3.12.3")
    assert ort < Version("1.27"), (
        "onnxruntime-gpu >= 1.27 is built for CUDA 13; faiss-gpu-cu12 and the image are CUDA 12"
    )
    assert _pinned(pins, "faiss-gpu-cu12", "3.12.3") is not None
    cuda_majors = {n.split("-cu")[-1] for n in pins if n.startswith("nvidia-") and "-cu" in n}
    assert cuda_majors <= {"12"}, f"CUDA wheels of another major in gpu.txt: {cuda_majors}"
    _assert_hashed("gpu.txt")
    # the same resolution as the CPU lock wherever the two overlap (no silent drift)
    runtime = lock("runtime.txt")
    drift = [
        f"{n}: runtime {_pinned(runtime, n, '3.12.3')} gpu {_pinned(pins, n, '3.12.3')}"
        for n in set(runtime) & set(pins)
        if _pinned(runtime, n, "3.12.3") != _pinned(pins, n, "3.12.3")
    ]
    assert not drift, drift


def test_train_lock_matches_pyproject_and_constraints():
    _check_covers("train.txt", _requirements("postgres", "train"), "3.11.7")
    pins = lock("train.txt")
    torch = _pinned(pins, "torch", "3.11.7")
    constraint = next(
        Requirement(line) for line in (REPO / "constraints.txt").read_text().splitlines() if line.startswith("torch")
    )
    assert torch in constraint.specifier and torch.local == "cpu", torch
    assert not any(n.startswith("nvidia-") or n == "triton" for n in pins), "train.txt must take the CPU torch"


def test_build_lock_satisfies_the_build_system():
    pins = lock("build.txt")
    for text in PYPROJECT["build-system"]["requires"]:
        req = Requirement(text)
        version = _pinned(pins, req.name, "3.11.7")
        assert version is not None and version in req.specifier, text
    assert _pinned(pins, "pip", "3.11.7") is not None
    _assert_hashed("build.txt")
