"""Kueue, the real manager (tests/kueue.py), admits plain batch/v1 Jobs within a quota on the
local cluster: its webhooks, reached by URL, suspend and validate them, its scheduler admits
as much as the ClusterQueue holds and queues the rest until a Job finishes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.k8s import apply, condition, get, items, wait, wait_new
from tests.kueue import QUEUE_LABEL, Kueue
from tests.readiness import summary

from .conftest import Cluster
from .test_trainingjob import report, trainingjob

KUEUE_API = "kueue.x-k8s.io/v1beta2"
RESTRICTED: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


@contextmanager
def gpu_queue_in(cluster: Cluster, namespace: str) -> Iterator[str]:
    """A ResourceFlavor for the GPU node, a ClusterQueue holding one GPU (and cpu and memory
    to spare) for this namespace only, and a LocalQueue in it: the LocalQueue's name.

    Kueue keeps finalizers on Workloads, ClusterQueues and ResourceFlavors, so all of it goes
    while Kueue still runs: the Jobs and their Workloads first, then the queues."""
    name = f"gpu-{namespace}"
    flavor = {
        "apiVersion": KUEUE_API,
        "kind": "ResourceFlavor",
        "metadata": {"name": name},
        "spec": {"nodeLabels": {"nvidia.com/gpu.present": "true"}},
    }
    cluster_queue = {
        "apiVersion": KUEUE_API,
        "kind": "ClusterQueue",
        "metadata": {"name": name},
        "spec": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "resourceGroups": [
                {
                    "coveredResources": ["cpu", "memory", "nvidia.com/gpu"],
                    "flavors": [
                        {
                            "name": name,
                            "resources": [
                                {"name": "cpu", "nominalQuota": "8"},
                                {"name": "memory", "nominalQuota": "32Gi"},
                                {"name": "nvidia.com/gpu", "nominalQuota": "1"},
                            ],
                        }
                    ],
                }
            ],
        },
    }
    local_queue = {
        "apiVersion": KUEUE_API,
        "kind": "LocalQueue",
        "metadata": {"name": "gpus", "namespace": namespace},
        "spec": {"clusterQueue": name},
    }
    try:
        cluster.kubectl("apply", "-f", "-", input=json.dumps(flavor))
        cluster.kubectl("apply", "-f", "-", input=json.dumps(cluster_queue))
        apply(cluster, namespace, local_queue)
        cluster.kubectl(
            "wait", "--for=condition=Active=true", "--timeout=60s", f"clusterqueue/{name}"
        )
        wait(cluster, namespace, "localqueue/gpus", "condition=Active=true", timeout=60)
        yield "gpus"
    finally:
        cluster.kubectl(
            "delete", "-n", namespace, "jobs", "--all", "--cascade=foreground",
            "--wait=true", "--timeout=90s", timeout=120,
        )  # fmt: skip
        cluster.kubectl(
            "wait", "-n", namespace, "--for=delete", "workloads", "--all", "--timeout=90s",
            timeout=120,
        )  # fmt: skip
        cluster.kubectl(
            "delete", "--ignore-not-found", "--wait=true", "--timeout=90s",
            "-n", namespace, "localqueue/gpus", timeout=120,
        )  # fmt: skip
        cluster.kubectl(
            "delete", "--ignore-not-found", "--wait=true", "--timeout=90s",
            f"clusterqueue/{name}", f"resourceflavor/{name}", timeout=120,
        )  # fmt: skip


@pytest.fixture
def gpu_queue(kueue: Kueue, cluster: Cluster, namespace: str) -> Iterator[str]:
    with gpu_queue_in(cluster, namespace) as queue:
        yield queue


@pytest.fixture
def watched_gpu_queue(kueue: Kueue, cluster: Cluster, op_namespace: str) -> Iterator[str]:
    """The same in a namespace the test operator watches."""
    with gpu_queue_in(cluster, op_namespace) as queue:
        yield queue


def gpu_job(name: str, queue: str, duration: str) -> dict[str, Any]:
    """A plain Job of one pod asking for one GPU, created suspended (as Kueue wants), that
    kwok finishes `duration` after it starts (tools/cluster/kwok.yaml)."""
    container = {
        "name": "main",
        "image": "registry.example/train:1",
        "securityContext": RESTRICTED,
        "resources": {
            "requests": {"cpu": "500m", "memory": "1Gi"},
            "limits": {"memory": "1Gi", "nvidia.com/gpu": "1"},
        },
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {QUEUE_LABEL: queue}},
        "spec": {
            "suspend": True,
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": {"sim.mlops.seed.dev/duration": duration}},
                "spec": {"restartPolicy": "Never", "containers": [container]},
            },
        },
    }


def workload_of(cluster: Cluster, namespace: str, job: str, timeout_s: float = 60) -> str:
    """The name of the Workload Kueue made for the Job (labelled with the Job's uid)."""
    uid = get(cluster, namespace, "job", job)["metadata"]["uid"]
    deadline = time.monotonic() + timeout_s
    while True:
        names = cluster.kubectl(
            "get", "-n", namespace, "workloads", f"-l=kueue.x-k8s.io/job-uid={uid}",
            "-o=jsonpath={.items[*].metadata.name}",
        ).stdout.split()  # fmt: skip
        if names:
            assert len(names) == 1, f"one Workload per Job, got {names}"
            return names[0]
        assert time.monotonic() < deadline, f"Kueue made no Workload for Job {job}"
        time.sleep(0.3)


def test_kueue_admits_a_plain_job_within_its_quota(
    cluster: Cluster, namespace: str, gpu_queue: str
) -> None:
    # Long enough that the second Job is certainly seen waiting while the first runs.
    apply(cluster, namespace, gpu_job("first", gpu_queue, duration="20s"))
    first = workload_of(cluster, namespace, "first")
    wait(cluster, namespace, f"workload/{first}", "condition=QuotaReserved=true")
    wait(cluster, namespace, f"workload/{first}", "condition=Admitted=true")
    wait(cluster, namespace, "job/first", "jsonpath={.spec.suspend}=false")
    # Admitted to the flavor: Kueue put its node labels into the pod template.
    template = get(cluster, namespace, "job", "first")["spec"]["template"]["spec"]
    assert template["nodeSelector"] == {"nvidia.com/gpu.present": "true"}

    apply(cluster, namespace, gpu_job("second", gpu_queue, duration="1s"))
    second = workload_of(cluster, namespace, "second")
    wait(cluster, namespace, f"workload/{second}", "condition=QuotaReserved=false")
    reserved = condition(get(cluster, namespace, "workload", second), "QuotaReserved")
    assert reserved["reason"] == "Pending"
    assert "insufficient unused quota for nvidia.com/gpu" in reserved["message"], reserved
    assert get(cluster, namespace, "job", "second")["spec"]["suspend"] is True
    assert get(cluster, namespace, "job", "first")["status"].get("succeeded", 0) == 0, (
        "the first Job must still run while the second is seen waiting"
    )

    # The first Job finishes: its Workload releases the GPU and the second is admitted.
    wait(cluster, namespace, "job/first", "condition=Complete", timeout=120)
    wait(cluster, namespace, f"workload/{first}", "condition=Finished=true")
    wait(cluster, namespace, f"workload/{second}", "condition=Admitted=true")
    wait(cluster, namespace, "job/second", "jsonpath={.spec.suspend}=false")
    wait(cluster, namespace, "job/second", "condition=Complete", timeout=120)
    finished = get(cluster, namespace, "job", "first")["status"]["completionTime"]
    admitted = condition(get(cluster, namespace, "workload", second), "Admitted")
    assert admitted["lastTransitionTime"] >= finished, "admitted only once the GPU was free"


def gpu_run(name: str, queue: str, duration: str) -> dict[str, Any]:
    """A TrainingJob of one GPU in Kueue's queue, which kwok runs for `duration` and ends with
    a report (so the operator registers its Model)."""
    sim = {"sim.mlops.seed.dev/message": report(), "sim.mlops.seed.dev/duration": duration}
    resources = {"requests": {"cpu": "500m", "memory": "1Gi"},
                 "limits": {"memory": "1Gi", "nvidia.com/gpu": "1"}}  # fmt: skip
    return trainingjob(name, model=name, sim=sim, queueName=queue, resources=resources)


def ready_message(cluster: Cluster, namespace: str, name: str) -> str:
    return str(condition(get(cluster, namespace, "tj", name), "Ready")["message"])


def eventually_says(cluster: Cluster, namespace: str, name: str, text: str) -> str:
    """Kueue's Workload comes a moment after the Job: poll the run's message for `text`."""
    deadline = time.monotonic() + 60
    while text not in (message := ready_message(cluster, namespace, name)):
        assert time.monotonic() < deadline, f"{name} never said {text!r}: {message}"
        time.sleep(0.3)
    return message


def test_a_queued_run_says_why_runs_when_admitted_and_survives_eviction(
    cluster: Cluster, op_namespace: str, watched_gpu_queue: str
) -> None:
    """Two one-GPU runs, quota for one: the second is Queued with Kueue's own reason (not
    Pending forever), and starts when the first is evicted; the evicted one is Queued again,
    runs to the end once readmitted, and each registers exactly one Model."""
    ns, queue = op_namespace, watched_gpu_queue
    apply(cluster, ns, gpu_run("gpu-first", queue, duration="15s"))
    wait_new(cluster, ns, "tj/gpu-first", "jsonpath={.status.phase}=Running", 90)

    apply(cluster, ns, gpu_run("gpu-second", queue, duration="3s"))
    wait_new(cluster, ns, "tj/gpu-second", "jsonpath={.status.phase}=Queued", 90)
    message = eventually_says(cluster, ns, "gpu-second", "insufficient unused quota")
    assert "waiting in Kueue's LocalQueue gpus" in message
    status = get(cluster, ns, "tj", "gpu-second")["status"]
    assert summary(status["conditions"]) == ("Reconciling", "Queued")

    # Kueue evicts the first (its Workload deactivated): the Job is suspended, its pod goes.
    first = workload_of(cluster, ns, "gpu-first")
    cluster.kubectl("patch", "-n", ns, f"workload/{first}", "--type=merge",
                    "-p", '{"spec": {"active": false}}')  # fmt: skip
    wait(cluster, ns, "tj/gpu-first", "jsonpath={.status.phase}=Queued", 90)
    eventually_says(cluster, ns, "gpu-first", "Evicted")
    # The GPU is free: the second runs and registers its Model.
    wait(cluster, ns, "tj/gpu-second", "condition=Ready", 120)

    cluster.kubectl("patch", "-n", ns, f"workload/{first}", "--type=merge",
                    "-p", '{"spec": {"active": true}}')  # fmt: skip
    wait(cluster, ns, "tj/gpu-first", "condition=Ready", 180)
    for run in ("gpu-first", "gpu-second"):
        models = [m for m in items(cluster, ns, "mdl") if m["spec"]["modelName"] == run]
        assert [m["spec"]["version"] for m in models] == [1], f"{run} registered {models}"
    assert get(cluster, ns, "tj", "gpu-first")["status"]["jobName"] == "gpu-first", (
        "the evicted run resumed in its own Job, not a new one"
    )
