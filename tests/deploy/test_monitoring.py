"""deploy/prometheus and deploy/grafana: valid configs, and every query names a metric the service
really exports (service/metrics.py), so a renamed metric breaks this test, not a dashboard."""

from __future__ import annotations

import json
import re

import pytest

from tests.deploy import DEPLOY, REPO, compose, find_tool, load_yaml_documents
from tests.helpers import run_captured

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "clapsearch.json"
METRIC = re.compile(r"\b(clapsearch_[a-z0-9_]+)")
# the service's metric families: histograms are exported as ``<family>_bucket`` series
HISTOGRAMS = ("clapsearch_request_seconds", "clapsearch_stage_seconds", "clapsearch_batch_size")
GAUGES_AND_COUNTERS = ("clapsearch_queue_depth", "clapsearch_cache_total", "clapsearch_index_vectors")


def exported_series() -> set[str]:
    """Series names the service's registry exposes (histograms as _bucket/_sum/_count)."""
    from service.metrics import Metrics

    names = set()
    for family in Metrics().registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "histogram":
            names.update(family.name + s for s in ("_bucket", "_sum", "_count"))
        if family.type == "counter":
            names.add(family.name + "_total")
    return names


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def _rule_exprs() -> list[str]:
    rules = load_yaml_documents(DEPLOY / "prometheus" / "rules.yml")[0]
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def test_issue_metrics_are_exported():
    series = exported_series()
    for name in [f"{family}_bucket" for family in HISTOGRAMS] + list(GAUGES_AND_COUNTERS):
        assert name in series, name


@pytest.mark.parametrize("source", ["dashboard", "rules", "adapter"])
def test_queries_use_exported_metrics(source):
    if source == "dashboard":
        exprs = _dashboard_exprs()
    elif source == "rules":
        exprs = _rule_exprs()
    else:
        exprs = [
            r["seriesQuery"] + r["name"]["matches"]
            for r in load_yaml_documents(DEPLOY / "prometheus" / "adapter-rules.yaml")[0]["rules"]["custom"]
        ]
    series = exported_series()
    used = {m for e in exprs for m in METRIC.findall(e)}
    assert used, source
    assert used <= series, f"{source} queries metrics the service does not export: {sorted(used - series)}"


def test_dashboard_covers_the_service_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "clapsearch" and dashboard["panels"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    text = " ".join(_dashboard_exprs())
    for family in HISTOGRAMS + GAUGES_AND_COUNTERS:
        assert family in text, f"no panel shows {family}"
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "job"} <= variables


def _promtool() -> str:
    return find_tool("promtool", "apt-get install prometheus (promtool)")


def test_promtool_check_config_and_rules():
    tool = _promtool()
    result = run_captured([tool, "check", "config", "prometheus.yml"], cwd=DEPLOY / "prometheus", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout + result.stderr


def test_promtool_parses_dashboard_queries(tmp_path):
    """Grafana's variables replaced, each panel query becomes a recording rule promtool parses."""
    yaml = pytest.importorskip("yaml")
    tool = _promtool()
    rules = []
    for i, expr in enumerate(_dashboard_exprs()):
        expr = expr.replace("$__rate_interval", "5m").replace("$__range", "1h").replace("$job", ".*")
        rules.append({"record": f"dashboard:query{i}", "expr": expr})
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run_captured([tool, "check", "rules", str(path)], timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_scrape_job():
    # Debian's promtool is built without Kubernetes discovery, so this one is checked by hand
    config = load_yaml_documents(DEPLOY / "prometheus" / "kubernetes-scrape.yml")[0]
    (job,) = config["scrape_configs"]
    assert job["kubernetes_sd_configs"][0]["role"] == "pod"
    assert job["kubernetes_sd_configs"][0]["namespaces"]["names"] == ["clapsearch"]
    targets = {r.get("target_label") for r in job["relabel_configs"]}
    assert {"__address__", "__metrics_path__", "namespace", "pod"} <= targets
    keeps = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    assert any("prometheus_io_scrape" in r["source_labels"][0] for r in keeps)
    monitor = load_yaml_documents(DEPLOY / "prometheus" / "servicemonitor.yaml")[0]
    assert monitor["spec"]["endpoints"][0] == {"port": "http", "path": "/metrics", "interval": "15s"}


def test_compose_monitoring_profile_mounts_these_files():
    services = compose()["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), volume
    provisioning = load_yaml_documents(DEPLOY / "grafana" / "provisioning" / "dashboards" / "clapsearch.yml")[0]
    dashboards_mount = next(v for v in services["grafana"]["volumes"] if "dashboards:" in v).split(":")[1]
    assert provisioning["providers"][0]["options"]["path"] == dashboards_mount
    datasource = load_yaml_documents(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")[0]
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    prometheus = load_yaml_documents(DEPLOY / "prometheus" / "prometheus.yml")[0]
    names = prometheus["scrape_configs"][0]["dns_sd_configs"][0]["names"]
    assert set(names) == {"api", "api-gpu"} and all(n in services for n in names)
