"""The local control plane behaves like a real cluster where our tests need it to."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from .conftest import Cluster, local_cluster

RESTRICTED_CONTAINER: dict[str, Any] = {
    "securityContext": {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
}


def container(name: str = "main", **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "registry.example/app:1", **RESTRICTED_CONTAINER, **extra}


def job(name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": annotations or {}},
                "spec": {"restartPolicy": "Never", "containers": [container()]},
            },
        },
    }


def apply(cluster: Cluster, namespace: str, manifest: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest))


def pods_of(cluster: Cluster, namespace: str, selector: str) -> list[client.V1Pod]:
    pods = client.CoreV1Api(cluster.api).list_namespaced_pod(namespace, label_selector=selector)
    return list(pods.items)


def test_version_is_the_pinned_release(cluster: Cluster) -> None:
    info = client.VersionApi(cluster.api).get_code()
    assert info.major == "1"
    if os.environ.get("MLOPS_TEST_CLUSTER") != "existing":
        assert info.git_version == local_cluster.pinned_versions()["KUBERNETES_VERSION"]


def test_every_node_is_ready_and_one_has_gpus(cluster: Cluster) -> None:
    nodes = client.CoreV1Api(cluster.api).list_node().items
    assert len(nodes) >= 2
    for node in nodes:
        ready = {c.type: c.status for c in node.status.conditions}["Ready"]
        assert ready == "True", node.metadata.name
    gpus = [n.status.allocatable.get("nvidia.com/gpu") for n in nodes]
    assert "4" in gpus


def test_deployment_pods_become_running_and_ready(cluster: Cluster, namespace: str) -> None:
    labels = {"app": "web"}
    apply(
        cluster,
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [container()]}},
            },
        },
    )
    cluster.kubectl("rollout", "status", "-n", namespace, "deployment/web", "--timeout=60s")
    pods = pods_of(cluster, namespace, "app=web")
    assert len(pods) == 2
    for pod in pods:
        assert pod.status.phase == "Running"
        assert pod.spec.node_name, "the scheduler placed the pod"
        assert pod.status.pod_ip, "kwok gave the pod an IP"


def test_garbage_collector_deletes_owned_pods(cluster: Cluster, namespace: str) -> None:
    apply(cluster, namespace, job("gc", {"sim.mlops.seed.dev/duration": "1h"}))
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod", "-l", "job-name=gc")
    cluster.kubectl("delete", "-n", namespace, "job/gc", "--cascade=background")
    cluster.kubectl("wait", "-n", namespace, "--for=delete", "pod", "-l", "job-name=gc")
    assert pods_of(cluster, namespace, "job-name=gc") == []


def test_job_completes(cluster: Cluster, namespace: str) -> None:
    apply(cluster, namespace, job("ok"))
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Complete", "job/ok", "--timeout=60s")
    (pod,) = pods_of(cluster, namespace, "job-name=ok")
    assert pod.status.phase == "Succeeded"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0


def test_job_fails_with_annotated_exit_code_and_message(cluster: Cluster, namespace: str) -> None:
    message = json.dumps({"error": "loss diverged", "metrics": {"loss": 1e9}})
    annotations = {"sim.mlops.seed.dev/exit-code": "3", "sim.mlops.seed.dev/message": message}
    apply(cluster, namespace, job("boom", annotations))
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Failed", "job/boom", "--timeout=60s")
    (pod,) = pods_of(cluster, namespace, "job-name=boom")
    terminated = pod.status.container_statuses[0].state.terminated
    assert pod.status.phase == "Failed"
    assert terminated.exit_code == 3
    assert terminated.reason == "Error"
    assert json.loads(terminated.message) == json.loads(message)


def test_pod_can_be_kept_unready(cluster: Cluster, namespace: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "stuck", "annotations": {"sim.mlops.seed.dev/ready": "false"}},
        "spec": {"containers": [container()]},
    }
    apply(cluster, namespace, pod)
    cluster.kubectl("wait", "-n", namespace, "--for=jsonpath={.status.phase}=Running", "pod/stuck")
    status = client.CoreV1Api(cluster.api).read_namespaced_pod("stuck", namespace).status
    assert {c.type: c.status for c in status.conditions}["Ready"] == "False"
    assert status.container_statuses[0].ready is False


def test_image_pull_failure_can_be_simulated(cluster: Cluster, namespace: str) -> None:
    annotations = {"sim.mlops.seed.dev/waiting-reason": "ImagePullBackOff"}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "nopull", "annotations": annotations},
        "spec": {"containers": [container()]},
    }
    apply(cluster, namespace, pod)
    cluster.kubectl(
        "wait",
        "-n",
        namespace,
        "--for=jsonpath={.status.containerStatuses[0].state.waiting.reason}=ImagePullBackOff",
        "pod/nopull",
    )
    status = client.CoreV1Api(cluster.api).read_namespaced_pod("nopull", namespace).status
    assert status.phase == "Pending"


def test_gpu_pod_is_scheduled_on_the_gpu_node(cluster: Cluster, namespace: str) -> None:
    gpu = container(resources={"limits": {"nvidia.com/gpu": "2"}})
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "gpu"},
        "spec": {"containers": [gpu]},
    }
    apply(cluster, namespace, pod)
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod/gpu")
    placed = client.CoreV1Api(cluster.api).read_namespaced_pod("gpu", namespace)
    node = client.CoreV1Api(cluster.api).read_node(placed.spec.node_name)
    assert node.status.allocatable["nvidia.com/gpu"] == "4"


def test_service_account_without_binding_is_forbidden(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "serviceaccount", "-n", namespace, "nobody")
    token = cluster.kubectl("create", "token", "-n", namespace, "nobody").stdout.strip()
    assert token.count(".") == 2, "TokenRequest returned a JWT"
    as_nobody = client.Configuration()
    as_nobody.host = cluster.api.configuration.host
    as_nobody.ssl_ca_cert = cluster.api.configuration.ssl_ca_cert
    as_nobody.api_key = {"authorization": f"Bearer {token}"}
    with client.ApiClient(as_nobody) as api, pytest.raises(ApiException) as denied:
        client.CoreV1Api(api).list_namespaced_pod(namespace)
    assert denied.value.status == 403
    assert f"system:serviceaccount:{namespace}:nobody" in str(denied.value.body)


def test_privileged_pod_is_rejected_in_restricted_namespace(
    cluster: Cluster, namespace: str
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root"},
        "spec": {
            "containers": [{"name": "main", "image": "x", "securityContext": {"privileged": True}}]
        },
    }
    result = cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(pod), check=False
    )
    assert result.returncode != 0
    assert "violates PodSecurity" in result.stderr
    assert "privileged" in result.stderr
