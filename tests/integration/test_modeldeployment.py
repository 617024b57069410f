"""Model and ModelDeployment controllers against the real control plane (kwok plays pods)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from mlops_operator.controllers.common import FAULT_ENV
from tests.fixtures import OPERATOR_PREFIX, fresh_namespace
from tests.k8s import SpecHistory, apply, condition, events, get, items, status, wait
from tests.operators import clock_ahead
from tests.polling import until
from tests.readiness import summary

from .conftest import Cluster, Operator
from .test_trainingjob import APPROVED, model, report, trainingjob

VERSION_LABEL = "mlops.seed.dev/model-version"


def deployment(name: str, *, version: int | None = None, policy: dict[str, Any] | None = None,
               **spec: Any) -> dict[str, Any]:  # fmt: skip
    choice: dict[str, Any] = {"name": "iris"}
    if version is not None:
        choice["version"] = version
    if policy is not None:
        choice["policy"] = policy
    return {
        "apiVersion": "mlops.seed.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {"model": choice, "runtime": {"preset": "mlserver"}, **spec},
    }


def served_version(cluster: Cluster, ns: str, name: str) -> int:
    template = get(cluster, ns, "deployment", name)["spec"]["template"]
    return int(template["metadata"]["labels"][VERSION_LABEL])


def test_pinned_version_is_served_with_all_children(cluster: Cluster, op_namespace: str) -> None:
    ns = op_namespace
    apply(cluster, ns, model(1), deployment("web", version=1, replicas=2, port=9000))
    wait(cluster, ns, "mdep/web", "condition=Ready")

    md = get(cluster, ns, "mdep", "web")
    status = md["status"]
    assert (status["currentVersion"], status["currentModel"]) == (1, "iris-v1")
    assert status["readyReplicas"] == 2
    assert status["url"] == f"http://web.{ns}.svc:9000"
    assert status["observedGeneration"] == md["metadata"]["generation"]
    assert status["history"][0]["outcome"] == "Succeeded"
    assert condition(md, "Progressing")["status"] == "False"

    dep = get(cluster, ns, "deployment", "web")
    assert dep["metadata"]["ownerReferences"][0]["uid"] == md["metadata"]["uid"]
    pod = dep["spec"]["template"]["spec"]
    init = pod["initContainers"][0]
    assert init["args"] == ["storage-init", "s3://models/iris/1/model.joblib", "/mnt/models"]
    runtime = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in runtime["env"]}
    assert env["MLSERVER_MODEL_IMPLEMENTATION"] == "mlserver_sklearn.SKLearnModel"
    assert env["MLSERVER_MODEL_URI"] == "/mnt/models/model.joblib"
    assert runtime["readinessProbe"]["httpGet"]["path"] == "/v2/models/iris/ready"
    service = get(cluster, ns, "service", "web")
    assert service["spec"]["ports"][0]["port"] == 9000
    assert get(cluster, ns, "pdb", "web")["spec"]["maxUnavailable"] == 1
    policy = get(cluster, ns, "networkpolicy", "web-serving")["spec"]
    inference, monitor = policy["ingress"]
    assert "from" not in inference, "inference open to every caller unless the spec says"
    assert [p["port"] for p in inference["ports"]] == ["http"]
    assert [p["port"] for p in monitor["ports"]] == ["monitor"]
    assert monitor["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == (
        "mlops-operator"
    )
    # The namespace enforces `restricted`: Ready pods prove they were admitted.
    assert len(items(cluster, ns, "pods", "-l", "mlops.seed.dev/modeldeployment=web")) == 2

    wait(cluster, ns, "mdl/iris-v1", "jsonpath={.status.servedBy[0]}=web")
    served = get(cluster, ns, "mdl", "iris-v1")["status"]
    assert served["keyMetric"] == "accuracy=0.95"
    assert condition({"status": served}, "Ready")["status"] == "True"


def test_changing_the_pinned_version_rolls(cluster: Cluster, op_namespace: str) -> None:
    ns = op_namespace
    apply(cluster, ns, model(1), model(2), deployment("roll", version=1))
    wait(cluster, ns, "mdep/roll", "condition=Ready")
    apply(cluster, ns, deployment("roll", version=2))
    wait(cluster, ns, "mdep/roll", "jsonpath={.status.currentVersion}=2")
    wait(cluster, ns, "mdep/roll", "condition=Ready")
    status = get(cluster, ns, "mdep", "roll")["status"]
    assert status["previousVersion"] == 1
    assert [(h["version"], h["outcome"]) for h in status["history"]] == [
        (2, "Succeeded"),
        (1, "Succeeded"),
    ]
    assert served_version(cluster, ns, "roll") == 2
    reasons = [r for _, r in events(cluster, ns, "roll")]
    assert reasons.count("RolloutSucceeded") == 2


def test_policy_follows_approved_models_that_pass_the_gate(
    cluster: Cluster, op_namespace: str
) -> None:
    ns = op_namespace
    policy = {
        "selector": {"matchLabels": APPROVED},
        "gates": [{"metric": "accuracy", "operator": ">=", "value": 0.9}],
    }
    apply(cluster, ns, model(1, 0.92, APPROVED), deployment("follow", policy=policy))
    wait(cluster, ns, "mdep/follow", "jsonpath={.status.currentVersion}=1")

    apply(cluster, ns, model(2, 0.50, APPROVED))  # fails the gate
    apply(cluster, ns, model(3, 0.99))  # not approved
    apply(cluster, ns, model(4, 0.95, APPROVED))  # the one to serve
    wait(cluster, ns, "mdep/follow", "jsonpath={.status.currentVersion}=4")
    status = get(cluster, ns, "mdep", "follow")["status"]
    assert "newest matching version 4" in status["resolvedReason"]
    assert "accuracy=0.95 >= 0.9" in status["resolvedReason"]
    assert [h["version"] for h in status["history"]] == [4, 1], "2 and 3 were never rolled out"


def test_canary_steps_then_promotes(cluster: Cluster, op_namespace: str) -> None:
    ns = op_namespace
    canary = {"type": "Canary", "canary": {"steps": [{"weight": 25, "pauseSeconds": 2},
                                                     {"weight": 50}]}}  # fmt: skip
    apply(cluster, ns, model(1), model(2), deployment("can", version=1, replicas=4,
                                                      strategy=canary))  # fmt: skip
    wait(cluster, ns, "mdep/can", "condition=Ready")
    apply(cluster, ns, deployment("can", version=2, replicas=4, strategy=canary))
    wait(cluster, ns, "mdep/can", "jsonpath={.status.canary.weight}=25")
    # While the canary runs, both versions serve behind the one Service: 3 stable + 1 canary.
    wait(cluster, ns, "deployment/can-canary", "jsonpath={.status.readyReplicas}=1")
    assert get(cluster, ns, "deployment", "can")["spec"]["replicas"] == 3
    assert served_version(cluster, ns, "can-canary") == 2
    assert served_version(cluster, ns, "can") == 1

    wait(cluster, ns, "mdep/can", "jsonpath={.status.currentVersion}=2")
    wait(cluster, ns, "deployment/can-canary", "delete")
    md = get(cluster, ns, "mdep", "can")
    assert "canary" not in md["status"]
    assert served_version(cluster, ns, "can") == 2
    assert get(cluster, ns, "deployment", "can")["spec"]["replicas"] == 4
    assert ("Normal", "CanaryStep") in events(cluster, ns, "can")


def test_a_crash_between_a_canary_step_s_two_writes_never_takes_the_step_back(
    cluster: Cluster, op_namespace: str, operator: Operator, tmp_path: Path
) -> None:
    """The process dies right after it recorded a canary's next step, before it scaled the
    Deployments for it: the status already says the new step, the next process carries it
    out, and no Deployment ever gets an earlier spec back (the flap the failover test saw
    when the children were written first)."""
    ns = op_namespace
    steps = [{"weight": 25, "pauseSeconds": 2}, {"weight": 50, "pauseSeconds": 2}]
    canary = {"type": "Canary", "canary": {"steps": steps}}
    history = SpecHistory(cluster.api, ns)
    operator.kill()
    faulty = Operator(cluster, tmp_path / "faulty.log", env={FAULT_ENV: "after-canary-step-status"})
    try:
        faulty.start()
        apply(cluster, ns, model(1), model(2), deployment("can", version=1, replicas=4,
                                                          strategy=canary))  # fmt: skip
        wait(cluster, ns, "mdep/can", "condition=Ready")
        apply(cluster, ns, deployment("can", version=2, replicas=4, strategy=canary))
        assert faulty.proc is not None
        assert faulty.proc.wait(timeout=120) == 70, faulty.log()
        assert get(cluster, ns, "mdep", "can")["status"]["canary"]["weight"] == 50
        assert get(cluster, ns, "deployment", "can-canary")["spec"]["replicas"] == 1
    finally:
        faulty.stop()
        operator.start()
    try:
        wait(cluster, ns, "mdep/can", "jsonpath={.status.currentVersion}=2")
        wait(cluster, ns, "deployment/can-canary", "delete")
    finally:
        history.stop()
    assert not history.flaps(), f"a Deployment's spec came back: {history.specs}"
    # The successor carried out the recorded step (2 canary replicas) before promoting.
    assert len(history.specs["can-canary"]) == 2, history.specs


def canary_of_2_ready(cluster: Cluster, ns: str, name: str, spec: dict[str, Any]) -> None:
    """Version 1 served, then version 2 as a canary whose first step's pods are Ready."""
    apply(cluster, ns, model(1), model(2), deployment(name, version=1, **spec))
    wait(cluster, ns, f"mdep/{name}", "condition=Ready")
    apply(cluster, ns, deployment(name, version=2, **spec))
    until(
        lambda: (status(cluster, ns, "mdep", name).get("canary") or {}).get("stepStartedAt"),
        60,
        "the canary Ready at its first step",
        every=0.2,
    )


def test_a_successor_whose_clock_runs_30s_ahead_ends_no_pause_early(
    cluster: Cluster, op_namespace: str, operator: Operator, tmp_path: Path
) -> None:
    """The canary's pause began under one replica; the next one's wall clock runs 30 s
    ahead. It decides by the API server's time (kube/clock.py), so the 40 s pause lasts
    40 s, not 10."""
    ns = op_namespace
    pause = 40
    steps = [{"weight": 25, "pauseSeconds": pause}, {"weight": 50}]
    spec = {"replicas": 4, "strategy": {"type": "Canary", "canary": {"steps": steps}}}
    canary_of_2_ready(cluster, ns, "skew", spec)
    ready_seen = time.monotonic()  # at or after the pause began
    operator.kill()
    skewed = Operator(cluster, tmp_path / "skewed.log", env=clock_ahead(30))
    try:
        skewed.start()
        until(
            lambda: (status(cluster, ns, "mdep", "skew").get("canary") or {}).get("weight") != 25,
            pause + 60,
            "the next step",
            every=0.2,
            explain=skewed.log,
        )
        held = time.monotonic() - ready_seen
    finally:
        skewed.stop()
        operator.start()
    assert held >= pause - 3, f"the {pause} s pause ended after {held:.1f} s"
    # The test's operator finishes the rollout (and so watches the namespace when it goes).
    wait(cluster, ns, "mdep/skew", "jsonpath={.status.currentVersion}=2", timeout=120)


def test_a_canary_that_cannot_be_judged_is_rolled_back_not_promoted(
    cluster: Cluster, op_namespace: str
) -> None:
    """kwok's pods run nothing, so no monitor answers the analysis: the step waits, and past
    the deadline the canary is rolled back (AnalysisFailed) rather than promoted unjudged."""
    ns = op_namespace
    canary = {"type": "Canary", "canary": {"steps": [{"weight": 50}], "analysis": {}}}
    spec = {"replicas": 2, "strategy": canary, "progressDeadlineSeconds": 10}
    apply(cluster, ns, model(1), model(2), deployment("judged", version=1, **spec))
    wait(cluster, ns, "mdep/judged", "condition=Ready")
    pod = get(cluster, ns, "deployment", "judged")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["runtime", "monitor"], (
        "an analysis puts the monitor in front, with no reference profile too"
    )
    apply(cluster, ns, deployment("judged", version=2, **spec))
    wait(cluster, ns, "mdep/judged", "jsonpath={.status.failedVersion}=2", timeout=120)

    md = get(cluster, ns, "mdep", "judged")
    record = md["status"]["history"][0]
    assert (record["version"], record["outcome"]) == (2, "RolledBack")
    assert record["message"].startswith(
        "analysis failed at step 1 of 1 (50%): still waiting after 10s:"
        " no monitor of the canary answered"
    ), record["message"]
    assert condition(md, "Degraded")["reason"] == "AnalysisFailed"
    assert summary(md["status"]["conditions"]) == ("Stalled", "AnalysisFailed")
    assert ("Warning", "AnalysisFailed") in events(cluster, ns, "judged")
    assert served_version(cluster, ns, "judged") == 1


def test_a_version_that_never_gets_ready_is_rolled_back(
    cluster: Cluster, op_namespace: str
) -> None:
    ns = op_namespace
    sim = {"annotations": {"sim.mlops.seed.dev/unready-model-versions": "2"}}
    spec = {"progressDeadlineSeconds": 10, "podMetadata": sim}
    apply(cluster, ns, model(1), model(2), deployment("safe", version=1, **spec))
    wait(cluster, ns, "mdep/safe", "condition=Ready")
    apply(cluster, ns, deployment("safe", version=2, **spec))
    wait(cluster, ns, "mdep/safe", "condition=Degraded")

    md = get(cluster, ns, "mdep", "safe")
    degraded = condition(md, "Degraded")
    assert degraded["reason"] == "RolledBack"
    assert "version 2" in degraded["message"]
    assert md["status"]["currentVersion"] == 1
    assert md["status"]["failedVersion"] == 2
    assert md["status"]["history"][0]["outcome"] == "RolledBack"
    assert served_version(cluster, ns, "safe") == 1
    # Version 1 serves, but version 2 was asked for: Stalled until the spec or a version changes.
    wait(cluster, ns, "mdep/safe", "jsonpath={.status.readyReplicas}=1")
    md = get(cluster, ns, "mdep", "safe")
    assert summary(md["status"]["conditions"]) == ("Stalled", "RolledBack")
    assert "rolled back to version 1" in condition(md, "Ready")["message"]
    assert ("Warning", "RolledBack") in events(cluster, ns, "safe")


def test_a_canary_that_stops_being_ready_in_its_pause_is_rolled_back(
    cluster: Cluster, op_namespace: str
) -> None:
    """Ready once, then not (the kubelet marks a crashed container's pod not Ready; here its
    Ready condition is set False as a kubelet would): within a 600 s pause, the canary is
    rolled back progressDeadlineSeconds later, not promoted after the pause."""
    ns = op_namespace
    steps = [{"weight": 25, "pauseSeconds": 600}, {"weight": 50}]
    spec = {"replicas": 4, "progressDeadlineSeconds": 10,
            "strategy": {"type": "Canary", "canary": {"steps": steps}}}  # fmt: skip
    canary_of_2_ready(cluster, ns, "flaky", spec)
    pods = items(cluster, ns, "pod", "-l", "mlops.seed.dev/track=canary")
    assert len(pods) == 1
    unready = '{"status": {"conditions": [{"type": "Ready", "status": "False"}]}}'
    cluster.kubectl("patch", "-n", ns, "pod", pods[0]["metadata"]["name"],
                    "--subresource=status", "--type=strategic", "-p", unready)  # fmt: skip
    wait(cluster, ns, "mdep/flaky", "condition=Degraded", timeout=60)
    md = get(cluster, ns, "mdep", "flaky")
    assert md["status"]["currentVersion"] == 1
    assert md["status"]["failedVersion"] == 2
    assert summary(md["status"]["conditions"]) == ("Stalled", "RolledBack")
    assert "stopped being Ready at step 1 of 2 (25%)" in md["status"]["history"][0]["message"]
    wait(cluster, ns, "deployment/flaky-canary", "delete")
    assert served_version(cluster, ns, "flaky") == 1


def test_a_pinned_first_rollout_past_its_deadline_stalls(
    cluster: Cluster, op_namespace: str, operator: Operator
) -> None:
    """Nothing to roll back to: past progressDeadlineSeconds the rollout ends, terminally
    (Stalled, ProgressDeadlineExceeded, an Event), instead of saying RollingOut forever. Its
    drift read, with nothing served yet, fails nothing (it read a Model of no name, the
    API's LIST, and retried a KeyError with backoff)."""
    ns = op_namespace
    sim = {"annotations": {"sim.mlops.seed.dev/unready-model-versions": "3"}}
    apply(cluster, ns, model(3), deployment("stuck", version=3, progressDeadlineSeconds=15,
                                            podMetadata=sim))  # fmt: skip
    wait(cluster, ns, "mdep/stuck", "condition=Stalled")
    md = get(cluster, ns, "mdep", "stuck")
    assert summary(md["status"]["conditions"]) == ("Stalled", "ProgressDeadlineExceeded")
    assert "version 3 is not Ready after 15s" in condition(md, "Stalled")["message"]
    assert condition(md, "Progressing")["status"] == "False"
    assert ("Warning", "ProgressDeadlineExceeded") in events(cluster, ns, "stuck")
    failed = [line for line in operator.log().splitlines() if f"'{ns}', 'stuck') failed" in line]
    assert not failed, failed[:3]


def test_deleting_a_served_model_waits(cluster: Cluster, op_namespace: str) -> None:
    ns = op_namespace
    apply(cluster, ns, model(1), deployment("keep", version=1))
    wait(cluster, ns, "mdep/keep", "condition=Ready")
    wait(cluster, ns, "mdl/iris-v1", "jsonpath={.status.servedBy[0]}=keep")
    cluster.kubectl("delete", "-n", ns, "mdl/iris-v1", "--wait=false")
    wait(cluster, ns, "mdl/iris-v1", "condition=Ready=False")
    blocked = get(cluster, ns, "mdl", "iris-v1")
    assert blocked["metadata"]["deletionTimestamp"]
    assert "still served by ModelDeployment keep" in condition(blocked, "Ready")["message"]
    assert ("Warning", "DeletionBlocked") in events(cluster, ns, "iris-v1")

    cluster.kubectl("delete", "-n", ns, "mdep/keep")
    wait(cluster, ns, "mdl/iris-v1", "delete")


def test_a_namespace_serving_a_model_can_be_deleted(cluster: Cluster, operator: Operator) -> None:
    """The served Model's finalizer must not keep its namespace from going, though the
    ModelDeployment and the Model are deleted at once and kopf may stop watching there."""
    ns = next(fresh_namespace(cluster, OPERATOR_PREFIX, watched=False))
    apply(cluster, ns, model(1), deployment("last", version=1))
    wait(cluster, ns, "mdep/last", "condition=Ready")
    wait(cluster, ns, "mdl/iris-v1", "jsonpath={.metadata.finalizers[0]}=mlops.seed.dev/in-use")
    cluster.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=90s", timeout=100)
    gone = cluster.kubectl("get", "namespace", ns, check=False)
    assert gone.returncode != 0
    assert "NotFound" in gone.stderr


def test_deleting_the_model_deployment_removes_its_children(
    cluster: Cluster, op_namespace: str
) -> None:
    ns = op_namespace
    scaling = {"minReplicas": 2, "maxReplicas": 5}
    apply(cluster, ns, model(1), deployment("bye", version=1, autoscaling=scaling))
    wait(cluster, ns, "mdep/bye", "condition=Ready")
    hpa = get(cluster, ns, "hpa", "bye")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    cluster.kubectl("delete", "-n", ns, "mdep/bye")
    for child in ("deployment/bye", "service/bye", "hpa/bye", "pdb/bye"):
        wait(cluster, ns, child, "delete")


def test_hand_edited_children_are_put_back(cluster: Cluster, op_namespace: str) -> None:
    ns = op_namespace
    apply(cluster, ns, model(1), deployment("drift", version=1, replicas=2))
    wait(cluster, ns, "mdep/drift", "condition=Ready")
    cluster.kubectl("scale", "-n", ns, "deployment/drift", "--replicas=5")
    wait(cluster, ns, "deployment/drift", "jsonpath={.spec.replicas}=2")
    uid = get(cluster, ns, "service", "drift")["metadata"]["uid"]
    cluster.kubectl("delete", "-n", ns, "service/drift")
    wait(cluster, ns, "service/drift", "create")
    assert get(cluster, ns, "service", "drift")["metadata"]["uid"] != uid


def test_training_to_serving_end_to_end(cluster: Cluster, op_namespace: str) -> None:
    """TrainingJob succeeds -> Model registered -> a policy ModelDeployment serves it."""
    ns = op_namespace
    policy = {"gates": [{"metric": "accuracy", "operator": ">=", "value": 0.9}]}
    apply(cluster, ns, deployment("auto", policy=policy))
    wait(
        cluster, ns, "mdep/auto", 'jsonpath={.status.conditions[?(@.type=="Ready")].reason}=NoModel'
    )
    sim = {"sim.mlops.seed.dev/message": report(0.97, "s3://bucket/iris/run/model.joblib")}
    apply(cluster, ns, trainingjob("retrain", sim=sim))
    wait(cluster, ns, "tj/retrain", "condition=Ready")
    wait(cluster, ns, "mdep/auto", "jsonpath={.status.currentVersion}=1")
    wait(cluster, ns, "mdep/auto", "condition=Ready")
    status = get(cluster, ns, "mdep", "auto")["status"]
    assert status["currentModel"] == "iris-v1"
    dep = get(cluster, ns, "deployment", "auto")
    args = dep["spec"]["template"]["spec"]["initContainers"][0]["args"]
    assert args[1] == "s3://bucket/iris/run/model.joblib"
    assert status["readyReplicas"] == 1


THEIRS = {"app": "theirs"}
# Someone else's object of each child kind, named as ModelDeployment "clash" names its own.
FOREIGN: dict[str, dict[str, Any]] = {
    "Deployment": {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "clash"},
        "spec": {
            "selector": {"matchLabels": THEIRS},
            "template": {
                "metadata": {"labels": THEIRS},
                "spec": {"containers": [{"name": "app", "image": "registry.example/theirs:1"}]},
            },
        },
    },
    "Service": {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "clash"},
        "spec": {"selector": THEIRS, "ports": [{"port": 80}]},
    },
    "HorizontalPodAutoscaler": {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "clash"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "theirs"},
            "minReplicas": 1,
            "maxReplicas": 2,
        },
    },
    "PodDisruptionBudget": {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "clash"},
        "spec": {"selector": {"matchLabels": THEIRS}, "minAvailable": 1},
    },
    "NetworkPolicy": {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "clash-serving"},
        "spec": {"podSelector": {"matchLabels": THEIRS}, "policyTypes": ["Ingress"]},
    },
}


@pytest.mark.parametrize("kind", FOREIGN)
def test_a_child_s_name_held_by_someone_else_s_object_is_a_condition_never_a_takeover(
    cluster: Cluster, op_namespace: str, kind: str
) -> None:
    """The operator never applies over, adopts or deletes an object it did not create: the
    ModelDeployment is Stalled with NameConflict naming the object, with an Event, and the
    other object keeps its spec and gets no ownerReference (which would have the garbage
    collector delete it with the ModelDeployment)."""
    ns = op_namespace
    theirs = FOREIGN[kind]
    resource, name = kind.lower(), theirs["metadata"]["name"]
    apply(cluster, ns, theirs)

    def managers() -> set[str]:
        shown = cluster.kubectl("get", "-n", ns, resource, name, "--show-managed-fields",
                                "-o", "jsonpath={.metadata.managedFields[*].manager}")  # fmt: skip
        return set(shown.stdout.split())

    before, written_by = get(cluster, ns, resource, name), managers()
    # Asks for every child: autoscaling from two replicas (an HPA and a PDB), a NetworkPolicy.
    scaling = {"minReplicas": 2, "maxReplicas": 3}
    apply(cluster, ns, model(1), deployment("clash", version=1, autoscaling=scaling))
    wait(cluster, ns, "mdep/clash", "jsonpath={.status.conditions[?(@.type=='Stalled')].reason}"
         "=NameConflict")  # fmt: skip
    md = get(cluster, ns, "mdep", "clash")
    assert condition(md, "Ready")["status"] == "False"
    assert condition(md, "Ready")["message"].startswith(
        f"{kind} {name} already exists and is not this ModelDeployment's (controlled by nothing,"
    )
    assert ("Warning", "NameConflict") in events(cluster, ns, "clash", "ModelDeployment")
    after = get(cluster, ns, resource, name)
    assert after["spec"] == before["spec"]
    assert "ownerReferences" not in after["metadata"]
    assert managers() == written_by, "the operator wrote nothing to it"
