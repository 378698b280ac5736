"""The image's install steps and entry points, without Docker: a fresh virtualenv gets exactly the
Dockerfile builder stage's COPY sources and `deploy/docker/install.sh` steps, then the compose
services run from it against the local PostgreSQL and Redis, with docker-compose.yml's settings:

    clapsearch-api migrate  ->  clapsearch-api serve  +  clapsearch-worker
    POST /v1/jobs/ingest (the worker runs it)  ->  GET /v1/search?q=a tone  finds the files
    indexer ingest (the CLI, as in `docker compose exec worker indexer ingest /library`)
                                              ->  the running API hot-reloads and finds more

It takes about a minute with a warm pip cache (the install is most of it)."""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.deploy import REPO, compose, interpolate_defaults
from tests.deploy.test_dockerfile import stages
from tests.helpers import free_port, run_captured, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.needs_postgres, pytest.mark.needs_redis]

MODEL = REPO / "models" / "clapsearch-sfx-v1"


# ----------------------------------------------------------------------------- the install
def _builder_steps() -> tuple[list[tuple[list[str], str]], list[tuple[dict, list[str]]]]:
    """COPY (sources, destination) and install.sh invocations of the Dockerfile's builder stage."""
    copies, installs = [], []
    workdir = "/"
    for line in stages()["builder"]["lines"]:
        keyword, _, body = line.partition(" ")
        if keyword == "WORKDIR":
            workdir = body.strip()
        elif keyword == "COPY":
            parts = [p for p in body.split() if not p.startswith("--")]
            copies.append((parts[:-1], parts[-1] if parts[-1].startswith("/") else f"{workdir}/{parts[-1]}"))
        elif keyword == "RUN":
            body = re.sub(r"--mount=\S+", "", body)
            for match in re.finditer(r"((?:\b[A-Z_]+=\S+\s+)*)sh (deploy/docker/install\.sh(?:\s+[^\s&;]+)+)", body):
                assignments = dict(a.split("=", 1) for a in match.group(1).split())
                installs.append((assignments, ["sh", *match.group(2).split()]))
    return copies, installs


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("image")
    src, venv = base / "src", base / "venv"
    copies, installs = _builder_steps()
    assert copies and len(installs) == 2, (copies, installs)
    for sources, destination in copies:  # Docker's COPY semantics, /src -> src
        assert destination.startswith("/src"), destination
        into_dir = destination.endswith(("/", "/.")) or len(sources) > 1
        target = src / posixpath.normpath(destination)[len("/src") :].strip("/")
        for source in sources:
            path = REPO / source
            if path.is_dir():
                shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), dirs_exist_ok=True)
            else:
                dest = target / path.name if into_dir else target
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV", "PYTHON"))}
    env["PYTHON"] = sys.executable  # the image's python3 -> this interpreter
    start = time.monotonic()
    for assignments, argv in installs:
        argv = [str(venv) if a == "/opt/venv" else str(src) if a == "/src" else a for a in argv]
        result = run_captured(argv, cwd=src, env={**env, **assignments}, timeout=900)
        assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    print(f"image install steps: {time.monotonic() - start:.0f} s")
    no_torch = subprocess.run([venv / "bin" / "python", "-c", "import torch"], capture_output=True)
    assert no_torch.returncode != 0, "the runtime install must not bring torch"
    for script in ("clapsearch-api", "clapsearch-worker", "indexer"):
        assert (venv / "bin" / script).is_file(), script
    return venv


# ----------------------------------------------------------------------------- the services
@pytest.fixture
def database(pg_db) -> str:
    """A fresh PostgreSQL database (the service suite's ``pg_db``), as the URL the services read."""
    return pg_db.render_as_string(hide_password=False)


@pytest.fixture
def redis_db(redis_url):
    """The test Redis, with this test's keys removed afterwards. Result-cache keys
    (``clapsearch:res:<collection id>:<kind>:<version>:<generation>:...``) are dropped before
    too: they do not tell one database from another, so a page cached by an earlier run (another
    database, same collection id 1 / version 1) would be served here for RESULT_CACHE_TTL_S."""
    import redis

    client = redis.Redis.from_url(redis_url)
    created: list[str] = []

    def drop(pattern: str) -> None:
        keys = list(client.scan_iter(match=pattern, count=500))
        if keys:
            client.delete(*keys)

    drop("clapsearch:res:*")
    try:
        yield redis_url, created
    finally:
        for marker in created:
            drop(f"*{marker}*")
            client.srem("rq:queues", f"rq:queue:{marker}")
        drop("clapsearch:res:*")
        client.close()


def _compose_env(tmp: Path, database_url: str, redis_url: str, port: int) -> dict[str, str]:
    """docker-compose.yml's settings for the api/worker, with the container paths and hosts
    replaced by this machine's (everything else exactly as compose sets it by default)."""
    settings = {k: interpolate_defaults(v) for k, v in compose()["services"]["api"]["environment"].items()}
    local = {
        "CLAPSEARCH_DATABASE_URL": database_url,
        "CLAPSEARCH_REDIS_URL": redis_url,
        "CLAPSEARCH_HOME": str(tmp / "home"),
        "CLAPSEARCH_INDEX_DIR": str(tmp / "indexes"),
        "CLAPSEARCH_MODEL": str(MODEL),  # the image: /opt/clapsearch/models/...
        "CLAPSEARCH_ALLOWED_INGEST_ROOTS": str(tmp / "library"),
        "CLAPSEARCH_HOST": "127.0.0.1",
        "CLAPSEARCH_PORT": str(port),
    }
    assert set(local) <= set(settings), set(local) - set(settings)
    settings.update(local)
    # a queue of its own, so a concurrent run or another test's worker never takes these jobs
    settings["CLAPSEARCH_JOB_QUEUE"] = f"clapsearch-e2e-{uuid.uuid4().hex[:8]}"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CLAPSEARCH_", "VIRTUAL_ENV", "PYTHON"))}
    return {**base, "HOME": str(tmp / "home"), **settings}


def _request(url: str, method: str = "GET", body: dict | None = None, timeout: float = 30):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"} if data else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def _json(url: str, **kwargs):
    status, _, body = _request(url, **kwargs)
    return status, (json.loads(body) if body else None)


def _wait(what: str, check, timeout: float, procs):
    last = None

    def probe():
        nonlocal last
        for name, proc in procs.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode} while waiting for {what}"
        try:
            last = check()
            return last
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            last = exc  # not up yet: kept for the failure message, never returned as success

    return wait_until(probe, timeout, every_s=0.5) or pytest.fail(
        f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}"
    )


class Services:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str], env: dict) -> None:
        log = open(self.tmp / f"{name}.log", "wb")
        self.procs[name] = subprocess.Popen(
            argv, env=env, cwd=self.tmp, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def logs(self) -> str:
        return "\n".join(f"----- {p.name}\n{p.read_text(errors='replace')[-6000:]}" for p in self.tmp.glob("*.log"))

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def test_image_install_serves_search_after_ingest(venv, database, redis_db, tmp_path):
    from tests.indexer.library import write

    redis_url, redis_markers = redis_db
    bin_dir = venv / "bin"
    port = free_port()
    env = _compose_env(tmp_path, database, redis_url, port)
    redis_markers.append(env["CLAPSEARCH_JOB_QUEUE"])
    assert env["CLAPSEARCH_WORKERS"] == "2"  # uvicorn workers, as compose runs them
    (tmp_path / "home").mkdir()
    library = tmp_path / "library"
    first = [
        write(library / "tones" / f"tone_{freq}.wav", 2.0, freq=float(freq), seed=freq) for freq in (220, 440, 880)
    ]
    base = f"http://127.0.0.1:{port}"

    migrate = run_captured([bin_dir / "clapsearch-api", "migrate"], env=env, cwd=tmp_path, timeout=180)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr

    services = Services(tmp_path)
    try:
        services.start("api", [str(bin_dir / "clapsearch-api"), "serve"], env)
        services.start("worker", [str(bin_dir / "clapsearch-worker")], env)
        _wait("/healthz", lambda: _json(base + "/healthz", timeout=5) == (200, {"status": "ok"}), 180, services.procs)
        status, ready = _wait(
            "/readyz", lambda: (r := _json(base + "/readyz", timeout=5))[0] == 200 and r, 180, services.procs
        )
        assert ready["ready"] is True and ready["model"]["loaded"] is True
        assert ready["redis"]["state"] == "ok", ready["redis"]

        # 1. the HTTP ingest job, run by clapsearch-worker
        status, job = _json(
            base + "/v1/jobs/ingest", method="POST", body={"path": str(library / "tones"), "collection": "default"}
        )
        assert status == 202, job
        redis_markers.append(job["id"])
        outside, problem = _json(base + "/v1/jobs/ingest", method="POST", body={"path": str(REPO)})
        assert outside == 403 and problem["code"] == "ingest.path_not_allowed", problem
        job = _wait(
            "the ingest job",
            lambda: (j := _json(f"{base}/v1/jobs/{job['id']}")[1])["status"] in ("finished", "failed") and j,
            300,
            services.procs,
        )
        assert job["status"] == "finished", job
        assert job["progress"]["failed"] == 0 and job["progress"]["embedded"] == len(first), job

        def search(expected: int):
            status, page = _json(base + "/v1/search?" + urllib.parse.urlencode({"q": "a tone", "limit": 10}))
            assert status == 200, page
            return page if len(page["items"]) == expected else None

        page = _wait("the job's index in search", lambda: search(len(first)), 60, services.procs)
        assert {hit["path"] for hit in page["items"]} == {str(p) for p in first}
        assert all(-1.0 <= hit["score"] <= 1.0 for hit in page["items"])
        status, headers, audio = _request(base + page["items"][0]["audio_url"])
        assert status == 200 and audio == Path(page["items"][0]["path"]).read_bytes()

        # 2. the CLI, with the same settings (docker compose exec worker indexer ingest /library)
        more = [write(library / "more" / f"tone_{freq}.flac", 1.5, freq=float(freq), seed=freq) for freq in (330, 660)]
        cli = run_captured([bin_dir / "indexer", "ingest", str(library)], env=env, cwd=tmp_path, timeout=300)
        assert cli.returncode == 0, cli.stdout + cli.stderr
        # both uvicorn workers must hot-reload the new version (CURRENT polling): ask several times
        for _ in range(4):
            page = _wait("the CLI's index in search", lambda: search(len(first) + len(more)), 60, services.procs)
        assert {hit["path"] for hit in page["items"]} == {str(p) for p in first + more}

        status, headers, metrics = _request(base + "/metrics")
        assert status == 200 and b"clapsearch_request_seconds_bucket" in metrics
        status, headers, html = _request(base + "/")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        status, collections = _json(base + "/v1/collections")
        (default,) = [c for c in collections["items"] if c["name"] == "default"]
        assert default["files"] == len(first) + len(more)
    except BaseException:
        print(services.logs())
        raise
    finally:
        services.stop()
    for name, proc in services.procs.items():
        assert proc.returncode in (0, -signal.SIGTERM, 128 + signal.SIGTERM), (
            f"{name} did not stop cleanly on SIGTERM ({proc.returncode})\n{services.logs()}"
        )
