"""The TrainingJob controller against the real control plane, kwok playing the pods."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from mlops_operator.api.report import TrainingReport
from mlops_operator.controllers.common import FAULT_ENV
from tests.audit import AuditLog
from tests.k8s import apply, condition, events, get, items, wait, wait_new
from tests.readiness import summary

from .conftest import Cluster, Operator

DIGEST = "sha256:" + "ab" * 32
INDEX = "batch.kubernetes.io/job-completion-index"
RESUME = '{"spec":{"suspend":false}}'
APPROVED = {"mlops.seed.dev/approved": "true"}


def report(accuracy: float = 0.97, uri: str = "s3://bucket/iris/run/model.joblib") -> str:
    return TrainingReport.model_validate(
        {"metrics": {"accuracy": accuracy, "loss": 0.1}, "artifact": {"uri": uri, "digest": DIGEST}}
    ).to_message()


def trainingjob(name: str, *, model: str = "iris", sim: dict[str, str] | None = None,
                **spec: Any) -> dict[str, Any]:  # fmt: skip
    """A TrainingJob whose pods kwok plays as `sim` says (default: succeed with a report)."""
    annotations = {"sim.mlops.seed.dev/message": report()} if sim is None else sim
    return {
        "apiVersion": "mlops.seed.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "image": "registry.example/train:1",
            "hyperparameters": {"C": "1.0"},
            "dataset": {"uri": "s3://data/iris.csv", "digest": DIGEST},
            "output": {
                "uri": "s3://bucket/iris",
                "modelName": model,
                "format": "sklearn",
                "keyMetric": "accuracy",
            },
            "podMetadata": {"annotations": annotations},
            **spec,
        },
    }


def model(version: int, accuracy: float = 0.95, labels: dict[str, str] | None = None,
          name: str = "iris", uri: str | None = None, **spec: Any) -> dict[str, Any]:  # fmt: skip
    """A Model registered by hand (kubectl apply)."""
    return {
        "apiVersion": "mlops.seed.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": f"{name}-v{version}", "labels": labels or {}},
        "spec": {
            "modelName": name,
            "version": version,
            "artifact": {
                "uri": uri or f"s3://models/{name}/{version}/model.joblib",
                "format": "sklearn",
            },
            "metrics": {"accuracy": accuracy},
            "keyMetric": "accuracy",
            **spec,
        },
    }


def env_of(pod_or_job: dict[str, Any]) -> dict[str, Any]:
    spec = pod_or_job["spec"]
    pod_spec = spec["template"]["spec"] if "template" in spec else spec
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in pod_spec["containers"][0]["env"]}


def test_success_registers_a_model_with_metrics_and_lineage(
    cluster: Cluster, op_namespace: str
) -> None:
    ns = op_namespace
    apply(cluster, ns, trainingjob("iris-a"))
    wait(cluster, ns, "tj/iris-a", "condition=Ready")

    tj = get(cluster, ns, "tj", "iris-a")
    status = tj["status"]
    assert status["phase"] == "Succeeded"
    assert status["registeredModel"] == "iris-v1"
    assert status["metrics"] == {"accuracy": 0.97, "loss": 0.1}
    assert status["keyMetric"] == "accuracy=0.97"
    assert status["jobName"] == "iris-a"
    assert status["attempts"] == 1
    assert status["observedGeneration"] == tj["metadata"]["generation"]
    assert status["startTime"]
    assert status["completionTime"]
    assert condition(tj, "Succeeded")["status"] == "True"
    assert condition(tj, "Ready")["reason"] == "ModelRegistered"

    model = get(cluster, ns, "mdl", "iris-v1")
    assert model["spec"]["modelName"] == "iris"
    assert model["spec"]["version"] == 1
    assert model["spec"]["artifact"] == {
        "uri": "s3://bucket/iris/run/model.joblib",
        "digest": DIGEST,
        "format": "sklearn",
    }
    assert model["spec"]["metrics"] == {"accuracy": 0.97, "loss": 0.1}
    lineage = model["spec"]["lineage"]
    assert lineage["trainingJob"] == {"name": "iris-a", "uid": tj["metadata"]["uid"]}
    assert lineage["image"] == "registry.example/train:1"
    assert lineage["dataset"] == {"uri": "s3://data/iris.csv", "digest": DIGEST}
    assert lineage["hyperparameters"] == {"C": "1.0"}
    assert "ownerReferences" not in model["metadata"], "the Model outlives its TrainingJob"
    _registered(cluster, ns, "iris-a", "iris-v1")
    outcome = [("Normal", "ModelRegistered")]
    assert events(cluster, ns, "iris-a", "TrainingJob") == outcome, "the outcome only"
    # The Model controller takes the new Model over: valid, so Ready, with its key metric.
    wait(cluster, ns, "mdl/iris-v1", "condition=Ready")
    model = get(cluster, ns, "mdl", "iris-v1")
    assert model["status"]["keyMetric"] == "accuracy=0.97"
    assert model["status"]["observedGeneration"] == model["metadata"]["generation"]


def _registered(cluster: Cluster, ns: str, run: str, model: str) -> None:
    """The run's Model is Ready and its ModelRegistered Event is posted (kopf posts Events
    from a queue of its own, after the status write)."""
    wait(cluster, ns, f"tj/{run}", "condition=Ready")
    wait_new(cluster, ns, f"mdl/{model}", "condition=Ready")
    deadline = time.monotonic() + 60
    while ("Normal", "ModelRegistered") not in events(cluster, ns, run):
        assert time.monotonic() < deadline, f"no ModelRegistered Event for {run}"
        time.sleep(0.2)


def test_a_run_costs_at_most_eight_api_requests(cluster: Cluster, op_namespace: str) -> None:
    """Create to registered Model, counted by the API server's audit log, in a namespace the
    operator already works in (its LISTs and WATCHes, and its first read of the version
    ledger, are per namespace, not per run). Each request is one docs/benchmarks.md names."""
    ns = op_namespace
    apply(cluster, ns, trainingjob("warm"))
    _registered(cluster, ns, "warm", "iris-v1")
    audit = AuditLog()
    apply(cluster, ns, trainingjob("counted"))
    _registered(cluster, ns, "counted", "iris-v2")
    counts = audit.requests(ns)
    writes = counts.pop("patch trainingjobs/status")
    # Pending with the Job's name, Running, Succeeded with the Model; Running folds into
    # Pending when the pod is ready before the first write.
    assert writes in (2, 3), counts
    assert counts == {
        "create jobs": 1,
        "update configmaps": 1,  # the version ledger's claim
        "create models": 1,
        "patch models/status": 1,  # the Model controller: Ready, key metric
        "create events": 1,  # ModelRegistered
    }
    assert writes + sum(counts.values()) <= 8


def test_a_two_node_run_creates_its_rendezvous_service_once(
    cluster: Cluster, op_namespace: str
) -> None:
    """The headless Service is looked up in the watch's cache, not POSTed on every pass
    (which the API server answered with 409 each time)."""
    ns = op_namespace
    apply(cluster, ns, trainingjob("warm"))
    _registered(cluster, ns, "warm", "iris-v1")
    audit = AuditLog()
    apply(cluster, ns, trainingjob("pair", nodes=2))
    _registered(cluster, ns, "pair", "iris-v2")
    counts = audit.requests(ns)
    assert counts.pop("create services") == 1, counts  # 6 on eb46f8b
    assert counts["create jobs"] == 1
    assert sum(counts.values()) <= 8, counts  # what a one-node run costs


def test_job_carries_the_container_contract(cluster: Cluster, op_namespace: str) -> None:
    ns = op_namespace
    gpu = {"limits": {"nvidia.com/gpu": "2", "memory": "1Gi"}, "requests": {"cpu": "1"}}
    apply(cluster, ns, trainingjob("contract", resources=gpu, backoffLimit=2))
    wait(cluster, ns, "tj/contract", "condition=Ready")
    tj = get(cluster, ns, "tj", "contract")
    job = get(cluster, ns, "job", "contract")

    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"]) == ("TrainingJob", tj["metadata"]["uid"])
    assert owner["controller"] is True
    labels = job["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "mlops-operator"
    assert labels["mlops.seed.dev/trainingjob"] == "contract"
    assert job["spec"]["backoffLimit"] == 2
    env = env_of(job)
    assert env["MLOPS_RUN_ID"] == tj["metadata"]["uid"]
    assert env["MLOPS_MODEL_NAME"] == "iris"
    assert env["MLOPS_OUTPUT_URI"] == f"s3://bucket/iris/contract-{tj['metadata']['uid'][:8]}"
    assert json.loads(env["MLOPS_HPARAMS"]) == {"C": "1.0"}
    assert env["MLOPS_DATASET_URI"] == "s3://data/iris.csv"

    (pod,) = items(cluster, ns, "pods", "-l", "batch.kubernetes.io/job-name=contract")
    container = pod["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    node = client.CoreV1Api(cluster.api).read_node(pod["spec"]["nodeName"])
    assert node.status.allocatable.get("nvidia.com/gpu") == "4", "GPU pod on the GPU node"
    # The namespace enforces `restricted`: that the pod exists at all proves it passed.
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_versions_increase_per_model(cluster: Cluster, op_namespace: str) -> None:
    ns = op_namespace
    apply(cluster, ns, trainingjob("first"))
    wait(cluster, ns, "tj/first", "condition=Ready")
    apply(cluster, ns, trainingjob("second", sim={"sim.mlops.seed.dev/message": report(0.99)}))
    wait(cluster, ns, "tj/second", "condition=Ready")
    assert get(cluster, ns, "tj", "second")["status"]["registeredModel"] == "iris-v2"
    assert get(cluster, ns, "mdl", "iris-v2")["spec"]["metrics"]["accuracy"] == 0.99


def test_five_concurrent_runs_get_versions_one_to_five(cluster: Cluster, op_namespace: str) -> None:
    ns = op_namespace
    names = [f"par-{i}" for i in range(5)]
    apply(cluster, ns, *[trainingjob(n, model="fraud") for n in names])
    for n in names:
        wait(cluster, ns, f"tj/{n}", "condition=Ready")
    registered = sorted(get(cluster, ns, "tj", n)["status"]["registeredModel"] for n in names)
    assert registered == [f"fraud-v{v}" for v in range(1, 6)]
    models = items(cluster, ns, "mdl", "-l", "mlops.seed.dev/model-name=fraud")
    assert sorted(m["spec"]["version"] for m in models) == [1, 2, 3, 4, 5]
    assert len({m["spec"]["lineage"]["trainingJob"]["uid"] for m in models}) == 5


def test_failure_reports_exit_code_and_message(cluster: Cluster, op_namespace: str) -> None:
    ns = op_namespace
    message = '{"error": "loss diverged at step 120"}'
    sim = {"sim.mlops.seed.dev/exit-code": "3", "sim.mlops.seed.dev/message": message}
    apply(cluster, ns, trainingjob("boom", sim=sim, backoffLimit=1))
    wait(cluster, ns, "tj/boom", "condition=Failed")
    status = get(cluster, ns, "tj", "boom")["status"]
    assert status["phase"] == "Failed"
    assert status["failure"] == {
        "reason": "BackoffLimitExceeded",
        "exitCode": 3,
        "message": message,
    }
    assert status["attempts"] == 2, "backoffLimit 1: two attempts"
    assert condition(get(cluster, ns, "tj", "boom"), "Ready")["status"] == "False"
    assert items(cluster, ns, "mdl") == []
    assert ("Warning", "BackoffLimitExceeded") in events(cluster, ns, "boom")


def test_oom_killed_is_named(cluster: Cluster, op_namespace: str) -> None:
    ns = op_namespace
    sim = {"sim.mlops.seed.dev/exit-code": "137", "sim.mlops.seed.dev/reason": "OOMKilled"}
    apply(cluster, ns, trainingjob("oom", sim=sim))
    wait(cluster, ns, "tj/oom", "condition=Failed")
    failure = get(cluster, ns, "tj", "oom")["status"]["failure"]
    assert (failure["reason"], failure["exitCode"]) == ("OOMKilled", 137)


def test_deadline_exceeded(cluster: Cluster, op_namespace: str) -> None:
    ns = op_namespace
    sim = {"sim.mlops.seed.dev/duration": "1h"}
    apply(cluster, ns, trainingjob("slow", sim=sim, activeDeadlineSeconds=2))
    wait(cluster, ns, "tj/slow", "condition=Failed")
    status = get(cluster, ns, "tj", "slow")["status"]
    assert status["failure"]["reason"] == "DeadlineExceeded"
    assert items(cluster, ns, "mdl") == []


def test_image_pull_failure(cluster: Cluster, op_namespace: str) -> None:
    ns = op_namespace
    sim = {
        "sim.mlops.seed.dev/waiting-reason": "ImagePullBackOff",
        "sim.mlops.seed.dev/waiting-message": "registry.example/train:1: not found",
    }
    apply(cluster, ns, trainingjob("nopull", sim=sim))
    wait(cluster, ns, "tj/nopull", "condition=Failed")
    failure = get(cluster, ns, "tj", "nopull")["status"]["failure"]
    assert failure["reason"] == "ImagePullFailed"
    assert "not found" in failure["message"]
    # The stuck pod must not hold its node: the Job is suspended, its pods go away.
    wait(cluster, ns, "job/nopull", "jsonpath={.spec.suspend}=true")
    cluster.kubectl("wait", "-n", ns, "--for=delete", "pod", "-l", "job-name=nopull")


def test_suspend_and_resume(cluster: Cluster, op_namespace: str) -> None:
    ns = op_namespace
    apply(cluster, ns, trainingjob("later", suspend=True))
    wait(cluster, ns, "tj/later", "jsonpath={.status.phase}=Suspended")
    assert get(cluster, ns, "job", "later")["spec"]["suspend"] is True
    assert items(cluster, ns, "pods", "-l", "batch.kubernetes.io/job-name=later") == []

    cluster.kubectl("patch", "-n", ns, "tj/later", "--type=merge", "-p", RESUME)
    wait(cluster, ns, "tj/later", "condition=Ready")
    assert get(cluster, ns, "tj", "later")["status"]["registeredModel"] == "iris-v1"
    assert ("Normal", "Suspended") in events(cluster, ns, "later")


def test_queue_name_creates_the_job_suspended_for_kueue(
    cluster: Cluster, op_namespace: str
) -> None:
    ns = op_namespace
    apply(cluster, ns, trainingjob("queued", queueName="team-a"))
    # Queued, whether or not the session runs Kueue (test_kueue.py admits runs for real).
    wait(cluster, ns, "tj/queued", "jsonpath={.status.phase}=Queued")
    job = get(cluster, ns, "job", "queued")
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    tj = get(cluster, ns, "tj", "queued")
    assert summary(tj["status"]["conditions"]) == ("Reconciling", "Queued")


def test_multi_node_indexed_job_with_rendezvous_env(cluster: Cluster, op_namespace: str) -> None:
    ns = op_namespace
    apply(cluster, ns, trainingjob("ddp", nodes=3, processesPerNode=4))
    wait(cluster, ns, "tj/ddp", "condition=Ready")
    job = get(cluster, ns, "job", "ddp")
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 3
    service = get(cluster, ns, "service", "ddp")
    assert service["spec"]["clusterIP"] == "None"

    pods = items(cluster, ns, "pods", "-l", "batch.kubernetes.io/job-name=ddp")
    assert sorted(p["metadata"]["annotations"][INDEX] for p in pods) == ["0", "1", "2"]
    for pod in pods:
        index = pod["metadata"]["annotations"][INDEX]
        assert pod["spec"]["hostname"] == f"ddp-{index}"
        assert pod["spec"]["subdomain"] == "ddp"
        env = env_of(pod)
        assert env["MASTER_ADDR"] == f"ddp-0.ddp.{ns}.svc"
        assert env["MASTER_PORT"] == "29500"
        assert env["WORLD_SIZE"] == env["PET_NNODES"] == "3"
        assert env["PET_NPROC_PER_NODE"] == "4"
        for rank in ("RANK", "NODE_RANK", "PET_NODE_RANK"):
            path = env[rank]["fieldRef"]["fieldPath"]
            assert path == f"metadata.annotations['{INDEX}']"


def test_multi_node_failure_restarts_the_whole_run(cluster: Cluster, op_namespace: str) -> None:
    ns = op_namespace
    sim = {"sim.mlops.seed.dev/exit-code": "1", "sim.mlops.seed.dev/message": "NCCL timeout"}
    apply(cluster, ns, trainingjob("ddp-fail", nodes=2, backoffLimit=1, sim=sim))
    wait(cluster, ns, "tj/ddp-fail", "condition=Failed")
    status = get(cluster, ns, "tj", "ddp-fail")["status"]
    assert status["attempts"] == 2
    assert status["jobName"] == "ddp-fail-2"
    assert status["failure"]["reason"] == "BackoffLimitExceeded"
    assert status["failure"]["exitCode"] == 1
    first = get(cluster, ns, "job", "ddp-fail")
    assert condition(first, "Failed")["reason"] == "PodFailurePolicy", "one failure ends an attempt"
    assert ("Normal", "Restarted") in events(cluster, ns, "ddp-fail")


def test_malformed_report_is_output_invalid(cluster: Cluster, op_namespace: str) -> None:
    ns = op_namespace
    sim = {"sim.mlops.seed.dev/message": '{"metrics": {"accuracy": "great"}}'}
    apply(cluster, ns, trainingjob("garbled", sim=sim))
    wait(cluster, ns, "tj/garbled", "condition=Stalled")
    tj = get(cluster, ns, "tj", "garbled")
    # No Model: the run failed, terminally, as Flux and Argo CD must show it.
    assert tj["status"]["phase"] == "Failed"
    assert tj["status"]["failure"]["reason"] == "OutputInvalid"
    assert summary(tj["status"]["conditions"]) == ("Stalled", "OutputInvalid")
    assert condition(tj, "ModelRegistered")["status"] == "False"
    ready = condition(tj, "Ready")
    assert "metrics.accuracy" in ready["message"]
    assert "artifact" in ready["message"]
    assert items(cluster, ns, "mdl") == []
    assert ("Warning", "OutputInvalid") in events(cluster, ns, "garbled")


def test_deleting_the_job_mid_run_is_reported_not_recreated(
    cluster: Cluster, op_namespace: str
) -> None:
    ns = op_namespace
    apply(cluster, ns, trainingjob("orphan", sim={"sim.mlops.seed.dev/duration": "1h"}))
    wait(cluster, ns, "tj/orphan", "jsonpath={.status.phase}=Running")
    cluster.kubectl("delete", "-n", ns, "job/orphan", "--wait=true")
    wait(cluster, ns, "tj/orphan", "condition=Failed")
    assert get(cluster, ns, "tj", "orphan")["status"]["failure"]["reason"] == "JobDeleted"
    assert items(cluster, ns, "jobs") == [], "not silently recreated"


def test_deletion_cascades_and_keeps_the_model(cluster: Cluster, op_namespace: str) -> None:
    ns = op_namespace
    apply(cluster, ns, trainingjob("gone"))
    wait(cluster, ns, "tj/gone", "condition=Ready")
    assert items(cluster, ns, "pods", "-l", "mlops.seed.dev/trainingjob=gone")
    cluster.kubectl("delete", "-n", ns, "tj/gone", "--wait=true")
    wait(cluster, ns, "job/gone", "delete")
    cluster.kubectl("wait", "-n", ns, "--for=delete", "pod", "-l", "job-name=gone")
    assert get(cluster, ns, "mdl", "iris-v1")["spec"]["lineage"]["trainingJob"]["name"] == "gone"


def test_ttl_removes_the_job_after_registration(cluster: Cluster, op_namespace: str) -> None:
    ns = op_namespace
    apply(cluster, ns, trainingjob("brief", ttlSecondsAfterFinished=0))
    wait(cluster, ns, "tj/brief", "condition=Ready")
    wait(cluster, ns, "job/brief", "delete")
    assert get(cluster, ns, "tj", "brief")["status"]["registeredModel"] == "iris-v1"
    assert get(cluster, ns, "mdl", "iris-v1")


def test_operator_killed_mid_run_converges_without_duplicates(
    cluster: Cluster, op_namespace: str, operator: Operator
) -> None:
    ns = op_namespace
    sim = {"sim.mlops.seed.dev/message": report(), "sim.mlops.seed.dev/duration": "3s"}
    apply(cluster, ns, trainingjob("crash", sim=sim))
    wait(cluster, ns, "tj/crash", "jsonpath={.status.phase}=Running")
    operator.kill()
    try:
        # The run finishes while no operator is there to see it.
        wait(cluster, ns, "job/crash", "condition=Complete")
    finally:
        operator.start()
    wait(cluster, ns, "tj/crash", "condition=Ready")
    assert [j["metadata"]["name"] for j in items(cluster, ns, "jobs")] == ["crash"]
    assert [m["metadata"]["name"] for m in items(cluster, ns, "mdl")] == ["iris-v1"]


def test_a_foreign_job_of_the_same_name_is_never_adopted(
    cluster: Cluster, op_namespace: str
) -> None:
    ns = op_namespace
    foreign = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "taken"},
        "spec": {
            "template": {
                "metadata": {"annotations": {"sim.mlops.seed.dev/duration": "1h"}},
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{"name": "trainer", "image": "someone/else:1",
                                    "securityContext": {"allowPrivilegeEscalation": False,
                                                        "capabilities": {"drop": ["ALL"]}}}],
                },
            }
        },
    }  # fmt: skip
    apply(cluster, ns, foreign)
    apply(cluster, ns, trainingjob("taken", suspend=True))
    wait(cluster, ns, "tj/taken", "condition=Failed")
    assert get(cluster, ns, "tj", "taken")["status"]["failure"]["reason"] == "JobNameConflict"
    job = get(cluster, ns, "job", "taken")
    assert "ownerReferences" not in job["metadata"]
    assert job["spec"]["suspend"] is False, "someone else's Job is left alone"


def test_hand_registered_versions_count(cluster: Cluster, op_namespace: str) -> None:
    ns = op_namespace
    apply(cluster, ns, model(5))
    apply(cluster, ns, trainingjob("after-hand"))
    wait(cluster, ns, "tj/after-hand", "condition=Ready")
    assert get(cluster, ns, "tj", "after-hand")["status"]["registeredModel"] == "iris-v6"


def test_a_finished_run_acknowledges_later_changes(cluster: Cluster, op_namespace: str) -> None:
    ns = op_namespace
    apply(cluster, ns, trainingjob("done"))
    wait(cluster, ns, "tj/done", "condition=Ready")
    cluster.kubectl("patch", "-n", ns, "tj/done", "--type=merge", "-p", '{"spec":{"suspend":true}}')
    wait(cluster, ns, "tj/done", "jsonpath={.status.observedGeneration}=2")
    tj = get(cluster, ns, "tj", "done")
    assert tj["status"]["phase"] == "Succeeded"
    assert condition(tj, "Ready")["observedGeneration"] == 2
    assert items(cluster, ns, "mdl") != []


def test_a_deleted_rendezvous_service_is_put_back(cluster: Cluster, op_namespace: str) -> None:
    ns = op_namespace
    apply(cluster, ns, trainingjob("ddp-svc", nodes=2, sim={"sim.mlops.seed.dev/duration": "1h"}))
    wait(cluster, ns, "tj/ddp-svc", "jsonpath={.status.phase}=Running")
    uid = get(cluster, ns, "service", "ddp-svc")["metadata"]["uid"]
    cluster.kubectl("delete", "-n", ns, "service/ddp-svc", "--wait=true")
    wait(cluster, ns, "service/ddp-svc", "create")
    assert get(cluster, ns, "service", "ddp-svc")["metadata"]["uid"] != uid


def test_a_diverged_run_names_its_non_finite_metric(cluster: Cluster, op_namespace: str) -> None:
    """What json.dumps writes for a diverged loss: the run ends with a clear outcome (the
    API server could never store NaN), not a retry loop with the TrainingJob stuck Running."""
    ns = op_namespace
    diverged = '{"metrics": {"loss": NaN, "accuracy": 0.2}, "artifact": {"uri": "s3://b/m"}}'
    apply(cluster, ns, trainingjob("diverged", sim={"sim.mlops.seed.dev/message": diverged}))
    wait(cluster, ns, "tj/diverged", "condition=Stalled")
    tj = get(cluster, ns, "tj", "diverged")
    assert tj["status"]["phase"] == "Failed"
    assert summary(tj["status"]["conditions"]) == ("Stalled", "OutputInvalid")
    ready = condition(tj, "Ready")
    assert "metrics.loss" in ready["message"]
    assert "finite" in ready["message"]
    assert items(cluster, ns, "mdl") == []
    assert ("Warning", "OutputInvalid") in events(cluster, ns, "diverged")


def test_a_deleted_version_number_is_never_given_again(cluster: Cluster, op_namespace: str) -> None:
    """For an audit trail a version means one artifact forever: deleting the newest Model
    does not hand its number to the next run. The ledger says who had each number."""
    ns = op_namespace
    apply(cluster, ns, trainingjob("first"))
    wait(cluster, ns, "tj/first", "condition=Ready")
    assert get(cluster, ns, "tj", "first")["status"]["registeredModel"] == "iris-v1"
    cluster.kubectl("delete", "-n", ns, "mdl", "iris-v1")
    apply(cluster, ns, trainingjob("second"))
    wait(cluster, ns, "tj/second", "condition=Ready")
    assert get(cluster, ns, "tj", "second")["status"]["registeredModel"] == "iris-v2"
    ledger = get(cluster, ns, "configmap", "mlops-model-versions")
    second_uid = get(cluster, ns, "tj", "second")["metadata"]["uid"]
    assert ledger["data"]["iris"] == f"2 {second_uid}"


@pytest.mark.parametrize("point", ["after-ledger", "after-model"])
def test_a_crash_between_two_registration_writes_registers_nothing_twice(
    cluster: Cluster, op_namespace: str, operator: Operator, tmp_path: Path, point: str
) -> None:
    """The process dies right after claiming the version (after-ledger), or right after
    creating the Model and before the TrainingJob's status says so (after-model): the next
    process registers the same version, once."""
    ns = op_namespace
    operator.kill()
    faulty = Operator(cluster, tmp_path / "faulty.log", env={FAULT_ENV: point})
    try:
        faulty.start()
        apply(cluster, ns, trainingjob("crashy"))
        assert faulty.proc is not None
        assert faulty.proc.wait(timeout=120) == 70, faulty.log()
        assert "registeredModel" not in (get(cluster, ns, "tj", "crashy").get("status") or {})
        created = [m["metadata"]["name"] for m in items(cluster, ns, "mdl")]
        assert created == ([] if point == "after-ledger" else ["iris-v1"])
    finally:
        faulty.stop()
        operator.start()
    wait(cluster, ns, "tj/crashy", "condition=Ready")
    assert get(cluster, ns, "tj", "crashy")["status"]["registeredModel"] == "iris-v1"
    assert [m["metadata"]["name"] for m in items(cluster, ns, "mdl")] == ["iris-v1"]


def test_a_tenant_cannot_pass_a_model_off_as_a_run_s_output(
    cluster: Cluster, op_namespace: str, tenant: Cluster
) -> None:
    """A team member who may create Models names a running TrainingJob in a Model's
    lineage, so that the run would take it for its output: refused at admission, naming the
    field; the run registers its own artifact. Hand-registering without that field works."""
    ns = op_namespace
    # Long enough to try the forgery while it runs; kwok then plays it succeeding.
    sim = {"sim.mlops.seed.dev/message": report(), "sim.mlops.seed.dev/duration": "10s"}
    apply(tenant, ns, trainingjob("victim", sim=sim))
    wait(cluster, ns, "tj/victim", "jsonpath={.status.phase}=Running")
    uid = get(cluster, ns, "tj", "victim")["metadata"]["uid"]
    lineage = {"trainingJob": {"name": "victim", "uid": uid}}
    forged = model(7, labels=APPROVED, uri="s3://elsewhere/forged.joblib", lineage=lineage)
    proc = tenant.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(forged), check=False)
    assert proc.returncode != 0
    assert "spec.lineage.trainingJob: only the operator registers" in proc.stderr, proc.stderr
    assert f"system:serviceaccount:{ns}:tenant may not" in proc.stderr
    apply(tenant, ns, model(7))  # a hand-registered version, honestly so
    wait(cluster, ns, "tj/victim", "condition=Ready")
    registered = get(cluster, ns, "tj", "victim")["status"]["registeredModel"]
    assert registered == "iris-v8", "after the hand-registered version"
    output = get(cluster, ns, "mdl", registered)["spec"]
    assert output["artifact"]["uri"] == "s3://bucket/iris/run/model.joblib"
    assert output["lineage"]["trainingJob"]["uid"] == uid


def test_a_hand_registered_last_version_does_not_end_numbering(
    cluster: Cluster, op_namespace: str, tenant: Cluster
) -> None:
    """Version 999999 registered by hand leaves no number above it: the next runs take the
    lowest free numbers above the ledger's instead of failing forever."""
    ns = op_namespace
    apply(tenant, ns, model(999999))
    apply(tenant, ns, trainingjob("past-top"))
    wait(cluster, ns, "tj/past-top", "condition=Ready")
    assert get(cluster, ns, "tj", "past-top")["status"]["registeredModel"] == "iris-v1"
    apply(tenant, ns, trainingjob("next"))
    wait(cluster, ns, "tj/next", "condition=Ready")
    assert get(cluster, ns, "tj", "next")["status"]["registeredModel"] == "iris-v2"
    uid = get(cluster, ns, "tj", "next")["metadata"]["uid"]
    ledger = get(cluster, ns, "configmap", "mlops-model-versions")
    assert ledger["data"]["iris"] == f"2 {uid}"


def test_a_corrupt_ledger_entry_is_said_on_the_run_not_retried(
    cluster: Cluster, op_namespace: str
) -> None:
    """An entry no registration writes (someone who may edit ConfigMaps in the namespace
    wrote it): the run fails saying which ConfigMap and key to fix, with an Event, once."""
    ns = op_namespace
    ledger = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "mlops-model-versions"},
        "data": {"iris": "1000000 someone"},
    }
    apply(cluster, ns, ledger)
    apply(cluster, ns, trainingjob("blocked"))
    wait(cluster, ns, "tj/blocked", "condition=Failed")
    tj = get(cluster, ns, "tj", "blocked")
    assert tj["status"]["failure"]["reason"] == "OutputInvalid"
    message = tj["status"]["failure"]["message"]
    assert "ConfigMap mlops-model-versions, key iris: '1000000 someone'" in message
    assert "fix or remove that key" in message
    assert ("Warning", "OutputInvalid") in events(cluster, ns, "blocked")
    assert items(cluster, ns, "mdl") == []
