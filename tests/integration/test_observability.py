"""Prometheus metrics and JSON logs of a real operator process through a training run."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from mlops_operator.api.report import TrainingReport
from tests.fixtures import OPERATOR_PREFIX, fresh_namespace
from tests.polling import until

from .conftest import Cluster, Operator

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def trainingjob(name: str) -> str:
    """A run kwok plays as succeeding with a report, so the operator registers a Model."""
    report = TrainingReport.model_validate(
        {"metrics": {"accuracy": 0.9}, "artifact": {"uri": f"s3://bucket/{name}/model.joblib"}}
    ).to_message()
    return yaml.safe_dump(
        {
            "apiVersion": "mlops.seed.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": name},
            "spec": {
                "image": "registry.example/train:1",
                "output": {"uri": "s3://bucket/iris", "modelName": name, "format": "sklearn"},
                "podMetadata": {"annotations": {"sim.mlops.seed.dev/message": report}},
            },
        }
    )


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, metric: str, **labels: str) -> float:
    return samples.get((metric, frozenset(labels.items())), 0.0)


def test_metrics_follow_a_training_run(
    cluster: Cluster, op_namespace: str, operator: Operator
) -> None:
    before = scrape(operator.metrics_url)
    cluster.kubectl("apply", "-n", op_namespace, "-f", "-", input=trainingjob("metered"))
    cluster.kubectl("wait", "-n", op_namespace, "--for=condition=Ready", "tj/metered",
                    "--timeout=90s")  # fmt: skip

    # The phase gauge follows the operator's own watch, which may trail kubectl's by a moment.
    deadline = time.monotonic() + 30
    after = scrape(operator.metrics_url)
    while value(after, "mlops_operator_trainingjobs", phase="Succeeded") < 1:
        assert time.monotonic() < deadline, "the Succeeded TrainingJob was never counted"
        time.sleep(0.2)
        after = scrape(operator.metrics_url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # Create, Job progress, completion, registration: several reconciles, none failed here.
    assert delta("mlops_operator_reconcile_total", kind="TrainingJob", result="success") >= 2
    assert delta("mlops_operator_reconcile_duration_seconds_count", kind="TrainingJob") >= 2
    assert delta("mlops_operator_reconcile_duration_seconds_sum", kind="TrainingJob") > 0
    assert delta("mlops_operator_models_registered_total") >= 1
    # Defined for ModelDeployment rollouts and present from the start.
    for name in ("mlops_operator_rollouts_total", "mlops_operator_rollbacks_total"):
        assert (name, frozenset({("strategy", "Canary")})) in after
    assert value(after, "process_resident_memory_bytes") > 10_000_000


def test_failures_and_deployment_conditions_are_exported_per_object(
    cluster: Cluster, op_namespace: str, operator: Operator
) -> None:
    """What the alerting rules read (manifests/monitoring): a failed run counts once under its
    namespace and reason; each ModelDeployment's conditions are a gauge of their own."""
    ns = op_namespace
    failing = yaml.safe_load(trainingjob("broken"))
    failing["spec"]["backoffLimit"] = 0
    failing["spec"]["podMetadata"]["annotations"] = {"sim.mlops.seed.dev/exit-code": "3"}
    waiting = {
        "apiVersion": "mlops.seed.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "nothing-yet"},
        "spec": {"model": {"name": "absent", "version": 1}, "runtime": {"preset": "mlserver"}},
    }
    before = scrape(operator.metrics_url)
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all([failing, waiting]))
    cluster.kubectl("wait", "-n", ns, "--for=condition=Failed", "tj/broken", "--timeout=90s")
    cluster.kubectl("wait", "-n", ns, "--for=condition=Reconciling", "mdep/nothing-yet",
                    "--timeout=60s")  # fmt: skip
    failures = "mlops_operator_trainingjob_failures_total"
    labels = {"namespace": ns, "reason": "BackoffLimitExceeded"}
    md = {"namespace": ns, "name": "nothing-yet"}
    deadline = time.monotonic() + 30
    after = scrape(operator.metrics_url)
    # The condition gauge follows the operator's watch, which may trail kubectl's by a moment.
    while value(after, "mlops_operator_modeldeployment_condition", **md, type="Reconciling") < 1:
        assert time.monotonic() < deadline, "the ModelDeployment's conditions were never exported"
        time.sleep(0.2)
        after = scrape(operator.metrics_url)
    assert value(after, failures, **labels) - value(before, failures, **labels) == 1
    for type_, expected in (("Ready", 0), ("Stalled", 0), ("Degraded", 0)):
        series = ("mlops_operator_modeldeployment_condition",
                  frozenset({**md, "type": type_}.items()))  # fmt: skip
        assert after.get(series) == expected, type_


def test_a_deleted_namespace_s_series_are_dropped(cluster: Cluster, operator: Operator) -> None:
    """Per-namespace series must not pile up as namespaces come and go."""
    space = fresh_namespace(cluster, OPERATOR_PREFIX)
    ns = next(space)
    waiting = {
        "apiVersion": "mlops.seed.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "short-lived"},
        "spec": {"model": {"name": "absent", "version": 1}, "runtime": {"preset": "mlserver"}},
    }
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(waiting))
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=trainingjob("counted"))

    def mine() -> list[tuple[str, frozenset[tuple[str, str]]]]:
        return [key for key in scrape(operator.metrics_url) if ("namespace", ns) in key[1]]

    found = until(
        lambda: (
            {name for name, _ in mine()}
            >= {
                "mlops_operator_modeldeployment_condition",
                "mlops_operator_trainingjob_failures_total",
            }
        ),
        60,
        "the namespace's series",
    )
    assert found
    next(space, None)  # deletes the namespace
    cluster.kubectl("wait", "--for=delete", f"namespace/{ns}", "--timeout=120s", timeout=130)
    until(
        lambda: not mine(),
        30,
        "the deleted namespace's series dropped",
        explain=lambda: str(mine()),
    )


@pytest.fixture
def logs_namespace(cluster: Cluster) -> Iterator[str]:
    """A namespace only the JSON-logging operator below watches."""
    name = f"logs-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    cluster.kubectl("wait", "-n", name, "--for=create", "serviceaccount/default", "--timeout=60s")
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false")


def test_json_logs_are_one_object_per_line_with_the_object_they_are_about(
    crds: Cluster, logs_namespace: str, tmp_path: Path
) -> None:
    op = Operator(crds, tmp_path / "operator.log", watch=logs_namespace,
                  args=["--log-format=json"])  # fmt: skip
    op.start()
    # A run that fails: it registers no Model, whose finalizer would need a running operator
    # for the namespace to be deleted afterwards.
    failing = yaml.safe_load(trainingjob("logged"))
    failing["spec"]["backoffLimit"] = 0
    failing["spec"]["podMetadata"]["annotations"] = {"sim.mlops.seed.dev/exit-code": "3"}
    try:
        crds.kubectl("apply", "-n", logs_namespace, "-f", "-", input=yaml.safe_dump(failing))
        crds.kubectl("wait", "-n", logs_namespace, "--for=condition=Failed", "tj/logged",
                     "--timeout=90s")  # fmt: skip
    finally:
        op.stop()
    entries: list[dict[str, Any]] = [json.loads(line) for line in op.log().splitlines()]
    assert entries
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry), entry
    about = [e for e in entries if (e.get("object") or {}).get("name") == "logged"]
    assert about, "no log line carries the TrainingJob"
    assert about[0]["object"]["namespace"] == logs_namespace
    assert about[0]["object"]["kind"] == "TrainingJob"


def test_resync_reconciles_settled_objects_again_and_writes_nothing(
    crds: Cluster, tmp_path: Path
) -> None:
    """Nothing waits for an event that never comes: every resync period each known object is
    reconciled again, though no watch event says it changed (and an unchanged one is left
    as it is)."""
    namespace = next(fresh_namespace(crds, "rs"))
    operator = Operator(crds, tmp_path / "operator.log", watch="rs-*",
                        args=["--no-leader-elect", "--resync-seconds=1"])  # fmt: skip
    operator.start()
    try:
        crds.kubectl("apply", "-n", namespace, "-f", "-", input=trainingjob("settled"))
        crds.kubectl("wait", "-n", namespace, "--for=condition=Ready", "tj/settled",
                     "--timeout=90s")  # fmt: skip
        version = crds.kubectl("get", "-n", namespace, "tj/settled", "-o",
                               "jsonpath={.metadata.resourceVersion}").stdout  # fmt: skip
        name, labels = (
            "mlops_operator_reconcile_total",
            {"kind": "TrainingJob", "result": "success"},
        )
        start = value(scrape(operator.metrics_url), name, **labels)
        deadline = time.monotonic() + 30
        while value(scrape(operator.metrics_url), name, **labels) < start + 3:
            assert time.monotonic() < deadline, "the settled TrainingJob was never resynced"
            time.sleep(0.5)
        again = crds.kubectl("get", "-n", namespace, "tj/settled", "-o",
                             "jsonpath={.metadata.resourceVersion}").stdout  # fmt: skip
        assert again == version, "a resync of an unchanged object wrote to it"
    finally:
        operator.stop()
        crds.kubectl("delete", "namespace", namespace, "--wait=false")
