"""A real Prometheus scrapes the test operator: every metric of the table in docs/metrics.md is
there with exactly the labels the table lists, and the alerting rules load and evaluate.

Prometheus is the binary `make test` builds from its Go module (`build.sh prometheus`), run
as a process with a static scrape config, as `job="mlops-operator"` (the convention the
alerts rely on, docs/metrics.md#alerts-and-runbooks).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from mlops_operator.metrics import FAILURE_REASONS
from tests.fixtures import stop_process
from tests.metrics_doc import documented_metrics

from .conftest import ROOT, Cluster, Operator, local_cluster

RULES = ROOT / "manifests" / "monitoring" / "alerts.rules.yaml"
JOB = "mlops-operator"
# Labels Prometheus adds to every scraped series: not the operator's own.
TARGET_LABELS = {"__name__", "job", "instance"}
CONDITION_TYPES = {"Ready", "Degraded", "Stalled", "Reconciling"}

T = TypeVar("T")


class Prometheus:
    """`prometheus` as a process: one static target, scraped and rules evaluated every second,
    its TSDB in a temporary directory."""

    def __init__(self, binary: Path, workdir: Path, target: str, rule_files: list[Path]) -> None:
        self.binary = binary
        self.workdir = workdir
        self.config = workdir / "prometheus.yml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(path) for path in rule_files],
                    "scrape_configs": [
                        {
                            "job_name": JOB,
                            "honor_labels": True,
                            "static_configs": [{"targets": [target]}],
                        }
                    ],
                }
            )
        )
        self.log_path = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> None:
        for _ in range(3):
            if self._launch():
                return
        raise AssertionError(f"no free port for Prometheus:\n{self.log()[-3000:]}")

    def _launch(self) -> bool:
        """Start it and wait until /-/ready answers; False if the port was taken meanwhile."""
        port = local_cluster.free_port()
        self.url = f"http://127.0.0.1:{port}"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(self.binary), f"--config.file={self.config}",
                 f"--storage.tsdb.path={self.workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if "address already in use" in self.log():
                    return False
                raise AssertionError(f"prometheus exited {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2):
                    return True
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        raise AssertionError(f"prometheus never became ready:\n{self.log()[-3000:]}")

    def api(self, path: str, params: list[tuple[str, str]] | None = None) -> Any:
        """GET /api/v1/<path>: its `data`, once Prometheus says success."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def stop(self) -> None:
        stop_process(self.proc)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def eventually(what: str, check: Callable[[], T | None], timeout: float = 60) -> T:
    """Poll `check` until it returns something other than None (or fail saying `what`)."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found is not None:
            return found
        assert time.monotonic() < deadline, f"{what} within {timeout}s"
        time.sleep(0.2)


@pytest.fixture
def prometheus(operator: Operator, tmp_path: Path) -> Iterator[Prometheus]:
    """Prometheus scraping the test operator (read its address now: a test that restarts the
    operator gives it new ports), until the target is up."""
    try:
        binary = local_cluster.build("prometheus", cached_only=True) / "prometheus"
    except local_cluster.NotBuilt as err:
        pytest.fail(f"{err}\n(`make test` builds it first: make prometheus)")
    target = urllib.parse.urlsplit(operator.metrics_url).netloc
    prom = Prometheus(binary, tmp_path, target, [RULES])
    prom.start()
    try:

        def target_up() -> bool | None:
            targets = prom.api("targets", [("state", "active")])["activeTargets"]
            return True if [t for t in targets if t["health"] == "up"] else None

        eventually(f"the operator at {target} scraped and up", target_up)
        yield prom
    finally:
        prom.stop()


def objects_with_metrics(cluster: Cluster, namespace: str) -> None:
    """A TrainingJob that fails and a ModelDeployment, so that the metrics about single
    objects (labelled by namespace) have series."""
    failing = {
        "apiVersion": "mlops.seed.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "scraped-failure"},
        "spec": {
            "image": "registry.example/train:1",
            "backoffLimit": 0,
            "output": {"uri": "s3://bucket/scraped", "modelName": "scraped", "format": "sklearn"},
            "podMetadata": {"annotations": {"sim.mlops.seed.dev/exit-code": "3"}},
        },
    }
    # No Model of that name: the ModelDeployment waits (Reconciling), and has conditions.
    deployment = {
        "apiVersion": "mlops.seed.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "scraped"},
        "spec": {
            "model": {"name": "no-such-model", "version": 1},
            "runtime": {"preset": "mlserver"},
        },
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-",
                    input=yaml.safe_dump_all([failing, deployment]))  # fmt: skip
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Failed", "tj/scraped-failure",
                    "--timeout=90s")  # fmt: skip


def test_every_documented_metric_is_scraped_with_exactly_its_labels(
    cluster: Cluster, op_namespace: str, prometheus: Prometheus
) -> None:
    objects_with_metrics(cluster, op_namespace)
    documented = documented_metrics()
    exact = {
        series: labels
        for metric in documented
        if metric.labels is not None
        for series, labels in metric.series_names().items()
    }
    prefixes = [metric.name.rstrip("*") for metric in documented if metric.name.endswith("*")]
    others = [m.name for m in documented if m.labels is None and not m.name.endswith("*")]
    selector = '{__name__=~"mlops_operator_.+|process_.+|python_.+"}'

    def every_name_present() -> list[dict[str, str]] | None:
        series: list[dict[str, str]] = prometheus.api("series", [("match[]", selector)])
        names = {s["__name__"] for s in series}
        ours = [s for s in series if s.get("namespace") == op_namespace]
        wanted = set(exact) | set(others)
        # The two metrics of single objects: this test's objects have been counted too.
        counted = {s["__name__"] for s in ours}
        if not wanted <= names or not all(any(n.startswith(p) for n in names) for p in prefixes):
            return None
        if (
            not {
                "mlops_operator_trainingjob_failures_total",
                "mlops_operator_modeldeployment_condition",
            }
            <= counted
        ):
            return None
        return series

    try:
        series = eventually("every metric of docs/metrics.md's table scraped", every_name_present)
    except AssertionError:
        found = {s["__name__"] for s in prometheus.api("series", [("match[]", selector)])}
        raise AssertionError(
            f"never scraped: {sorted((set(exact) | set(others)) - found)}; prefixes {prefixes}"
        ) from None

    for one in series:
        name = one["__name__"]
        if name in exact:
            labels = set(one) - TARGET_LABELS
            assert labels == exact[name], (
                f"{name}: labels {sorted(labels)}, documented {sorted(exact[name])}"
            )
        else:
            # Nothing the operator exports is undocumented (the default collectors aside).
            assert not name.startswith("mlops_operator_"), f"{name} is not in docs/metrics.md"

    ours = [s for s in series if s.get("namespace") == op_namespace]
    failures = [s for s in ours if s["__name__"] == "mlops_operator_trainingjob_failures_total"]
    # Every reason starts at 0 in a namespace with TrainingJobs (so increase() sees the first).
    assert {s["reason"] for s in failures} == set(FAILURE_REASONS), failures
    conditions = [
        s
        for s in ours
        if s["__name__"] == "mlops_operator_modeldeployment_condition" and s["name"] == "scraped"
    ]
    assert {s["type"] for s in conditions} == CONDITION_TYPES, conditions
    query = f'mlops_operator_trainingjob_failures_total{{namespace="{op_namespace}"}} > 0'
    # The failure is scraped a moment after its series exist (at 0).
    [failed] = eventually(
        "the failure counted", lambda: prometheus.api("query", [("query", query)])["result"] or None
    )
    assert failed["metric"]["reason"] == "BackoffLimitExceeded"
    assert float(failed["value"][1]) == 1


def test_the_alerting_rules_load_and_evaluate_healthy(prometheus: Prometheus) -> None:
    wanted = {
        rule["alert"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
    }

    def evaluated() -> list[dict[str, Any]] | None:
        groups = prometheus.api("rules", [("type", "alert")])["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        # Before its first evaluation a rule's health is "unknown".
        done = all(rule["health"] != "unknown" for rule in rules)
        return rules if rules and done else None

    rules = eventually("every rule evaluated once", evaluated)
    assert {rule["name"] for rule in rules} == wanted
    for rule in rules:
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))

    # The operator is up as job="mlops-operator": the alert that says otherwise stays quiet.
    def down_state() -> str | None:
        groups = prometheus.api("rules", [("type", "alert")])["groups"]
        [down] = [r for g in groups for r in g["rules"] if r["name"] == "MLOpsOperatorDown"]
        return "inactive" if down["state"] == "inactive" else None

    eventually("MLOpsOperatorDown inactive", down_state, timeout=30)
    [up] = prometheus.api("query", [("query", f'up{{job="{JOB}"}}')])["result"]
    assert up["value"][1] == "1"
