"""deploy/k8s: schema validation (kubernetes-validate ships the Kubernetes JSON schemas, so this
runs offline) and the wiring: probes, selectors, autoscaler, config keys, shared index volume."""

from __future__ import annotations

import pytest

from tests.deploy import DEPLOY, K8S, known_settings, load_yaml_documents, missing_tool

# the oldest Kubernetes minor we promise to run on, and the newest the schemas know
VERSIONS = ("1.29.0", None)


def _kustomization() -> dict:
    return load_yaml_documents(K8S / "kustomization.yaml")[0]


def resources() -> list[dict]:
    docs = []
    for name in _kustomization()["resources"]:
        docs.extend(load_yaml_documents(K8S / name))
    return docs


def _by_kind(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in resources() if d["kind"] == kind}


def test_kustomization_lists_every_manifest():
    listed = set(_kustomization()["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present, f"not in kustomization.yaml: {present - listed}; missing files: {listed - present}"


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v or "latest")
def test_manifests_validate_strictly(version):
    try:
        import kubernetes_validate
    except ImportError:
        missing_tool("kubernetes-validate", "pip install kubernetes-validate (dev extra)")
    version = version or kubernetes_validate.latest_version()
    failures = []
    for doc in resources():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert not failures, "\n".join(failures)


def test_strict_validation_catches_a_typo():
    try:
        import kubernetes_validate
    except ImportError:
        missing_tool("kubernetes-validate", "pip install kubernetes-validate (dev extra)")
    deployment = dict(_by_kind("Deployment")["clapsearch-api"])
    deployment["spec"] = {**deployment["spec"], "replicaz": 3}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


def _pod(deployment: str) -> dict:
    return _by_kind("Deployment")[deployment]["spec"]["template"]


def _container(deployment: str, name: str) -> dict:
    return next(c for c in _pod(deployment)["spec"]["containers"] if c["name"] == name)


def test_api_probes_service_and_autoscaler():
    api = _container("clapsearch-api", "api")
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert api["command"] == ["clapsearch-api", "serve"]
    port = api["ports"][0]
    assert port == {"name": "http", "containerPort": 8000}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert api[probe]["httpGet"]["port"] == "http"

    labels = _pod("clapsearch-api")["metadata"]["labels"]
    deployment = _by_kind("Deployment")["clapsearch-api"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = _by_kind("Service")["clapsearch-api"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    pdb = _by_kind("PodDisruptionBudget")["clapsearch-api"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    worker_labels = _pod("clapsearch-worker")["metadata"]["labels"]
    assert not service["spec"]["selector"].items() <= worker_labels.items(), "the Service must not reach workers"

    hpa = _by_kind("HorizontalPodAutoscaler")["clapsearch-api"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "clapsearch-api"}
    assert hpa["spec"]["minReplicas"] >= 2
    assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in hpa["spec"]["metrics"])
    assert "resources" in api and "cpu" in api["resources"]["requests"], "CPU autoscaling needs a CPU request"

    ingress = _by_kind("Ingress")["clapsearch-api"]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "clapsearch-api", "port": {"name": "http"}}


def test_migration_before_the_api():
    init = _pod("clapsearch-api")["spec"]["initContainers"]
    assert [c["command"] for c in init] == [["clapsearch-api", "migrate"]]
    assert init[0]["envFrom"] == _container("clapsearch-api", "api")["envFrom"]


def test_worker():
    worker = _container("clapsearch-worker", "worker")
    assert worker["command"] == ["clapsearch-worker"]
    assert worker["envFrom"] == _container("clapsearch-api", "api")["envFrom"]
    assert _by_kind("Deployment")["clapsearch-worker"]["spec"]["strategy"]["type"] == "Recreate"


def test_shared_index_volume_and_read_only_library():
    claims = _by_kind("PersistentVolumeClaim")
    assert claims["clapsearch-indexes"]["spec"]["accessModes"] == ["ReadWriteMany"]
    config = _by_kind("ConfigMap")["clapsearch-config"]["data"]
    for deployment, container, index_read_only in (
        ("clapsearch-api", "api", True),
        ("clapsearch-worker", "worker", False),
    ):
        pod = _pod(deployment)["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m for m in _container(deployment, container)["volumeMounts"]}
        index_mount = mounts[config["CLAPSEARCH_INDEX_DIR"]]
        assert volumes[index_mount["name"]]["persistentVolumeClaim"]["claimName"] == "clapsearch-indexes"
        assert index_mount.get("readOnly", False) is index_read_only, deployment
        library = mounts[config["CLAPSEARCH_ALLOWED_INGEST_ROOTS"]]
        assert library["readOnly"] is True
        assert volumes[library["name"]]["persistentVolumeClaim"]["claimName"] == "clapsearch-library"
        assert config["CLAPSEARCH_HOME"] in mounts, f"{deployment}: HOME must be writable (read-only root fs)"


def test_pods_are_locked_down():
    for deployment in ("clapsearch-api", "clapsearch-worker"):
        spec = _pod(deployment)["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 10001  # the image's USER
        for container in spec["containers"] + spec.get("initContainers", []):
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["readOnlyRootFilesystem"] is True
            assert security["capabilities"]["drop"] == ["ALL"]
            assert "memory" in container["resources"]["limits"]
            assert container["image"] == "clapsearch"
    images = _kustomization()["images"]
    assert [i["name"] for i in images] == ["clapsearch"]


def test_config_and_secret_keys_are_settings():
    known = known_settings()
    config = _by_kind("ConfigMap")["clapsearch-config"]["data"]
    secret = _by_kind("Secret")["clapsearch-secrets"]["stringData"]
    for where, keys in (("configmap", config), ("secret", secret)):
        unknown = set(keys) - known
        assert not unknown, f"{where} sets variables no clapsearch process reads: {sorted(unknown)}"
    assert not set(config) & set(secret)
    assert {"CLAPSEARCH_DATABASE_URL", "CLAPSEARCH_REDIS_URL", "CLAPSEARCH_API_KEYS"} <= set(secret)
    assert secret["CLAPSEARCH_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert config["CLAPSEARCH_WORKERS"] == "1"
    assert all(isinstance(v, str) for v in config.values()), "ConfigMap values must be strings"
    from service.settings import ServiceSettings

    values = {k[len("CLAPSEARCH_") :].lower(): v for k, v in {**config, **secret}.items()}
    ServiceSettings(_env_file=None, **{k: v for k, v in values.items() if k in ServiceSettings.model_fields})


def test_prometheus_annotations_match_the_port():
    annotations = _pod("clapsearch-api")["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == _container("clapsearch-api", "api")["ports"][0]["containerPort"]


def test_ray_cluster_config():
    """deploy/ray/cluster.yaml: the autoscaler config for `indexer ray-ingest` (docs/distributed.md)."""
    spec = load_yaml_documents(DEPLOY / "ray" / "cluster.yaml")[0]
    assert spec["head_node_type"] in spec["available_node_types"]
    assert spec["file_mounts"] == {"/opt/clapsearch": "."}
    assert any("clapsearch[distributed]" in c for c in spec["setup_commands"])
    for node in spec["available_node_types"].values():
        assert node.get("max_workers", 0) <= spec["max_workers"]


def test_onnx_threads_follow_the_cpu_request():
    known = known_settings()
    for deployment, name in (("clapsearch-api", "api"), ("clapsearch-worker", "worker")):
        container = _container(deployment, name)
        env = {e["name"]: e for e in container.get("env", [])}
        assert set(env) <= known, set(env) - known
        ref = env["CLAPSEARCH_ONNX_THREADS"]["valueFrom"]["resourceFieldRef"]
        assert ref == {"containerName": name, "resource": "requests.cpu", "divisor": "1"}
        assert "cpu" in container["resources"]["requests"]
