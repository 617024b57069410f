"""The alerting rules (manifests/monitoring/alerts.rules.yaml): valid for Prometheus, tested
with promtool against series that fire each alert and series that must not, about documented
metrics only, and the same groups in every form they ship in.

promtool is built from the Prometheus Go module by `make test-unit` (`make prometheus`) before
pytest starts; missing, these tests fail: they never build it, nor skip.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures import ROOT, local_cluster
from tests.metrics_doc import METRICS_DOC, documented_metrics

MONITORING = ROOT / "manifests" / "monitoring"
RULES = MONITORING / "alerts.rules.yaml"
RULE_TESTS = MONITORING / "alerts_test.yaml"
PROMETHEUS_RULE = MONITORING / "prometheusrule.yaml"
CHART_COPY = ROOT / "charts" / "mlops-operator" / "files" / "alerts.rules.yaml"
METRIC = re.compile(r"\bmlops_operator_[a-z_]+")


@pytest.fixture(scope="module")
def promtool() -> Path:
    try:
        return local_cluster.build("prometheus", cached_only=True) / "promtool"
    except local_cluster.NotBuilt as err:
        pytest.fail(f"{err}\n(`make test-unit` builds it first: make prometheus)")


def run(*command: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_checks_the_rules(promtool: Path) -> None:
    proc = run(promtool, "check", "rules", RULES)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in proc.stdout


def test_promtool_unit_tests_pass(promtool: Path) -> None:
    proc = run(promtool, "test", "rules", RULE_TESTS)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    cases = [
        case
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    names = {rule["alert"] for rule in alerts()}
    fires = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert fires == names, f"never seen firing: {names - fires}"
    assert quiet == names, f"never seen not firing: {names - quiet}"


def test_every_alert_has_a_severity_a_summary_a_description_and_a_runbook() -> None:
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in METRICS_DOC.read_text().splitlines()
        if line.startswith("#")
    }
    for rule in alerts():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"], rule["alert"]
        assert annotations["description"], rule["alert"]
        doc, _, anchor = annotations["runbook_url"].partition("#")
        assert doc == "docs/metrics.md", rule["alert"]
        assert anchor == rule["alert"].lower(), rule["alert"]
        assert anchor in headings, f"{rule['alert']}: no section #{anchor} in {METRICS_DOC.name}"


def test_the_rules_use_documented_metrics_and_labels_only() -> None:
    documented = {
        series: labels
        for metric in documented_metrics()
        if metric.name.startswith("mlops_operator_")
        for series, labels in metric.series_names().items()
    }
    for rule in alerts():
        expr = rule["expr"]
        used = set(METRIC.findall(expr))
        assert used <= set(documented), f"{rule['alert']}: not in {METRICS_DOC.name}: {used}"
        if not used:
            continue
        known = frozenset().union(*(documented[name] for name in used))
        for name, matchers in re.findall(r"\b(mlops_operator_[a-z_]+)\{([^}]*)\}", expr):
            labels = set(re.findall(r"([a-z_]+)\s*(?:=~|!=|!~|=)", matchers))
            assert labels <= documented[name], f"{rule['alert']}: {name} has no {labels}"
        for grouping in re.findall(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)", expr):
            labels = {label.strip() for label in grouping.split(",") if label.strip()}
            assert labels <= known, f"{rule['alert']}: no such labels {labels - known}"


def test_the_prometheusrule_and_the_chart_carry_the_same_groups() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    assert yaml.safe_load(PROMETHEUS_RULE.read_text())["spec"]["groups"] == groups
    spec = importlib.util.spec_from_file_location(
        "prometheus_rule", ROOT / "tools" / "prometheus_rule.py"
    )
    assert spec is not None
    assert spec.loader is not None
    renderer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(renderer)
    assert renderer.render(RULES.read_text()) == PROMETHEUS_RULE.read_text(), "run `make manifests`"
    assert CHART_COPY.read_text() == RULES.read_text(), "stale chart copy: run `make manifests`"
