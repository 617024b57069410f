"""The loop closed on the real node: live traffic drifts, the drift retrains, the retrained
model is rolled out as a canary that must pass analysis; and a retrained model that answers
errors is rolled back by analysis before it is promoted.

Real containers throughout: iris training pods (one on the drifted data the traffic now
looks like, one on an extract that lost a column), MLServer behind the monitor, and a client
pod sending requests through the Service the whole time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sklearn.datasets import load_iris

from tests.e2e.realnode import (
    ON_REAL_NODE,
    S3_ENV,
    apply,
    in_pod,
    kubectl_json,
    traffic,
    trainingjob,
    wait,
)
from tests.fixtures import Cluster
from tests.polling import until
from tests.readiness import summary

# Training runs, rollouts and a canary's pause in each, with the cluster's setup in the first.
pytestmark = pytest.mark.timeout(900)

MODEL = "iris-loop"
SHIFT = 3.0  # cm added to petal_length by the drifted traffic and in the drifted data
DATA = "s3://models/datasets"


def csv(x: Any, y: Any, columns: list[str]) -> str:
    rows = "\n".join(",".join(f"{v:g}" for v in (*r, c)) for r, c in zip(x, y, strict=True))
    return ",".join([*columns, "species"]) + "\n" + rows + "\n"


@pytest.fixture(scope="module")
def datasets(real: Cluster, workspace: str) -> dict[str, str]:
    """Two extracts in the S3 store: iris as the traffic now looks (petal_length shifted),
    and one that lost its last column (a model trained on it cannot answer 4 columns)."""
    x, y = load_iris(return_X_y=True)
    shifted = x.copy()
    shifted[:, 2] += SHIFT
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    files = {
        f"{DATA}/iris-shifted.csv": csv(shifted, y, names),
        f"{DATA}/iris-three-columns.csv": csv(x[:, :3], y, names[:3]),
    }
    script = "import fsspec\n" + "".join(
        f"with fsspec.open({uri!r}, 'w') as f:\n    f.write({text!r})\n"
        for uri, text in files.items()
    )
    in_pod(real, workspace, "put-datasets", script, env=S3_ENV)
    wait(real, workspace, "job/put-datasets", "condition=Complete", 120)
    return {"shifted": f"{DATA}/iris-shifted.csv", "broken": f"{DATA}/iris-three-columns.csv"}


def run(name: str, dataset: str | None = None) -> dict[str, Any]:
    """A TrainingJob of iris-loop (on iris, or on `dataset`); its spec is the template too."""
    tj = trainingjob(name)
    tj["spec"]["output"] |= {"uri": f"s3://models/{MODEL}", "modelName": MODEL}
    if dataset:
        tj["spec"]["dataset"] = {"uri": dataset}
    return tj


@pytest.fixture(scope="module")
def loop(real: Cluster, workspace: str) -> str:
    """`loop`: the newest version of iris-loop, canaries with analysis, monitored closely;
    version 1 (trained on iris as it was) served."""
    apply(real, workspace, run("loop-1"))
    wait(real, workspace, "tj/loop-1", "condition=Ready", 240)
    apply(real, workspace, {
        "apiVersion": "mlops.seed.dev/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "loop"},
        "spec": {
            "model": {"name": MODEL, "policy": {}},
            "runtime": {"preset": "mlserver"},
            "storage": {"env": S3_ENV},
            "scheduling": ON_REAL_NODE,
            "replicas": 2,
            "strategy": {"type": "Canary", "canary": {
                "steps": [{"weight": 50, "pauseSeconds": 40}],
                # The retrained model fits the drifted traffic; the served one does not. The
                # absolute drift limit is loose: the margin over the stable version is tested.
                # Drift is judged on minSamples rows, one a request: the step waits for them
                # (a loaded node sends fewer than the client's 10 a second).
                "analysis": {"minRequests": 100, "maxDrift": 0.5},
            }},
            "progressDeadlineSeconds": 180,
            "monitoring": {"intervalSeconds": 10, "minSamples": 100, "windowSeconds": 60},
        },
    })  # fmt: skip
    wait(real, workspace, "mdep/loop", "condition=Ready", 300)
    return kubectl_json(real, "get", "mdep", "loop", "-n", workspace)["status"]["url"]


@pytest.fixture(scope="module")
def drifted_traffic(real: Cluster, workspace: str, loop: str) -> Iterator[float]:
    """Requests of the drifted kind, from now until the module ends; yields when they began."""
    traffic(real, workspace, "traffic", f"{loop}/v2/models/{MODEL}/infer", shift=SHIFT)
    started = time.monotonic()
    yield started
    real.kubectl("delete", "job", "traffic", "-n", workspace, "--wait=false", check=False)


def conditions(real: Cluster, namespace: str, name: str) -> dict[str, dict[str, Any]]:
    status = kubectl_json(real, "get", "mdep", name, "-n", namespace)["status"]
    return {c["type"]: c for c in status.get("conditions", [])}


def events(real: Cluster, namespace: str, reason: str) -> list[dict[str, Any]]:
    """The Events of `loop` with this reason, once there is one (an Event is posted after
    the status that records the same transition, so it may land a moment later)."""
    about = f"--field-selector=involvedObject.name=loop,reason={reason}"
    found: list[dict[str, Any]] = until(
        lambda: kubectl_json(real, "get", "events", "-n", namespace, about)["items"],
        30, f"a {reason} Event about loop",
    )  # fmt: skip
    return found


def test_drift_retrains_and_the_retrained_canary_passes_analysis(
    real: Cluster,
    workspace: str,
    datasets: dict[str, str],
    drifted_traffic: float,
    record: Callable[..., None],
) -> None:
    apply(real, workspace, {
        "apiVersion": "mlops.seed.dev/v1alpha1", "kind": "ContinuousTraining",
        "metadata": {"name": "retrain"},
        "spec": {
            "template": {"spec": run("template", datasets["shifted"])["spec"]},
            "triggers": {"onModelDeployment": {"name": "loop", "condition": "Drifted",
                                               "forSeconds": 20}},
            "cooldownSeconds": 3600,
            "maxRunsPerDay": 2,
        },
    })  # fmt: skip
    wait(real, workspace, "mdep/loop", "condition=Drifted", 180)
    to_drifted = time.monotonic() - drifted_traffic
    drifted = conditions(real, workspace, "loop")["Drifted"]
    assert drifted["reason"] == "FeaturesDrifted"
    assert drifted["message"].startswith("petal_length PSI "), "the shifted feature, first"

    wait(real, workspace, "ct/retrain", "jsonpath={.status.lastRun.trigger}=onModelDeployment", 120)
    to_retrain = time.monotonic() - drifted_traffic
    ct = kubectl_json(real, "get", "ct", "retrain", "-n", workspace)["status"]
    retrain = ct["lastRun"]["trainingJob"]
    assert ct["lastRun"]["detail"].startswith("ModelDeployment loop: Drifted=True since ")
    wait(real, workspace, f"tj/{retrain}", "condition=Ready", 300)
    model = kubectl_json(real, "get", "tj", retrain, "-n", workspace)["status"]["registeredModel"]
    assert model == f"{MODEL}-v2"
    lineage = kubectl_json(real, "get", "mdl", model, "-n", workspace)["spec"]["lineage"]
    assert lineage["trigger"]["type"] == "onModelDeployment"
    assert lineage["dataset"]["uri"] == datasets["shifted"]

    # Version 2 goes out as a canary at 50% and must pass analysis on the live traffic.
    wait(real, workspace, "mdep/loop", "jsonpath={.status.currentVersion}=2", 420)
    to_promoted = time.monotonic() - drifted_traffic
    status = kubectl_json(real, "get", "mdep", "loop", "-n", workspace)["status"]
    assert (status["history"][0]["version"], status["history"][0]["outcome"]) == (2, "Succeeded")
    (passed,) = events(real, workspace, "AnalysisPassed")
    message = passed["message"]
    assert "error rate 0 (stable 0)" in message, message
    # The retrained model's own reference is the drifted data: its traffic is calm against
    # it, while the served version's is far off its own.
    canary_psi, stable_psi = _psi_pair(message)
    assert canary_psi < 0.5 < stable_psi, message
    # And the loop closes: version 2's traffic is not drifted against its reference.
    wait(real, workspace, "mdep/loop", "jsonpath={.status.drift.version}=2", 120)
    wait(real, workspace, "mdep/loop", "condition=Drifted=False", 120)
    record(
        shifted_traffic_to_drifted_s=round(to_drifted, 1),
        shifted_traffic_to_retrain_trainingjob_s=round(to_retrain, 1),
        shifted_traffic_to_retrained_version_serving_s=round(to_promoted, 1),
        analysis=message,
    )


def _psi_pair(message: str) -> tuple[float, float]:
    """`highest PSI petal_width 0.05 (stable 2.1)` from an analysis message."""
    after = message.split("highest PSI ", 1)[1]
    canary = float(after.split()[1])
    stable = float(after.split("(stable ", 1)[1].split(")")[0])
    return canary, stable


def test_a_retrained_canary_that_answers_errors_is_rolled_back_by_analysis(
    real: Cluster, workspace: str, datasets: dict[str, str], drifted_traffic: float
) -> None:
    apply(real, workspace, run("loop-broken", datasets["broken"]))
    wait(real, workspace, "tj/loop-broken", "condition=Ready", 300)
    # It loads and is Ready (a Not-Ready rollback is not what this is), but every request
    # of four columns fails inside the model: 500s from MLServer.
    wait(real, workspace, "mdep/loop", "jsonpath={.status.failedVersion}=3", 420)
    status = kubectl_json(real, "get", "mdep", "loop", "-n", workspace)["status"]
    assert status["currentVersion"] == 2, "version 2 kept serving"
    assert summary(status["conditions"]) == ("Stalled", "AnalysisFailed")
    record = status["history"][0]
    assert (record["version"], record["outcome"]) == (3, "RolledBack")
    assert record["message"].startswith("analysis failed at step 1 of 1 (50%): error rate 1 > ")
    assert "(maxErrorRate)" in record["message"]
    assert record["message"].endswith("rolled back to version 2")
    degraded = conditions(real, workspace, "loop")["Degraded"]
    assert (degraded["status"], degraded["reason"]) == ("True", "AnalysisFailed")
    (failed,) = events(real, workspace, "AnalysisFailed")
    assert "error rate 1" in failed["message"]
    wait(real, workspace, "mdep/loop", "jsonpath={.status.readyReplicas}=2", 120)
