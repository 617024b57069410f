"""Small kubectl helpers the controller tests share."""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

import yaml
from kubernetes import client, watch

from tests.fixtures import Cluster


def apply(cluster: Cluster, namespace: str, *manifests: dict[str, Any]) -> None:
    docs = yaml.safe_dump_all(list(manifests))
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=docs)


def get(cluster: Cluster, namespace: str, kind: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "-n", namespace, kind, name, "-o", "json").stdout
    loaded: dict[str, Any] = json.loads(out)
    return loaded


def items(cluster: Cluster, namespace: str, kind: str, *selector: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "-n", namespace, kind, *selector, "-o", "json").stdout
    listed: list[dict[str, Any]] = json.loads(out)["items"]
    return listed


def wait(cluster: Cluster, namespace: str, target: str, condition: str, timeout: int = 90) -> None:
    cluster.kubectl(
        "wait", "-n", namespace, f"--for={condition}", target, f"--timeout={timeout}s",
        timeout=timeout + 10,
    )  # fmt: skip


def wait_new(
    cluster: Cluster, namespace: str, target: str, condition: str, timeout: int = 90
) -> None:
    """`wait` for an object the operator is yet to create: first that it exists."""
    wait(cluster, namespace, target, "create", timeout)
    wait(cluster, namespace, target, condition, timeout)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == type_)


def events(
    cluster: Cluster, namespace: str, name: str, kind: str | None = None
) -> list[tuple[str, str]]:
    """(type, reason) of the Events about `name`; of `kind` only when given (a TrainingJob
    and its Job share a name, and the Job controller records its own)."""
    selector = f"involvedObject.name={name}" + (f",involvedObject.kind={kind}" if kind else "")
    listed = items(cluster, namespace, "events", f"--field-selector={selector}")
    return [(e["type"], e["reason"]) for e in listed]


def status(cluster: Cluster, namespace: str, kind: str, name: str) -> dict[str, Any]:
    """The object's status; empty until the operator has written one."""
    found: dict[str, Any] = get(cluster, namespace, kind, name).get("status") or {}
    return found


class SpecHistory:
    """Every spec each Deployment of a namespace had, in order, from a watch: a flap (two
    writers putting back each other's spec) shows as a spec that comes back."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self._apps = client.AppsV1Api(api)
        self.namespace = namespace
        self.specs: dict[str, list[str]] = {}
        self._watch = watch.Watch()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        version = ""
        while not self._stopped.is_set():
            try:
                for event in self._watch.stream(
                    self._apps.list_namespaced_deployment, self.namespace,
                    resource_version=version, timeout_seconds=300,
                ):  # fmt: skip
                    version = event["object"].metadata.resource_version
                    if event["type"] != "DELETED":
                        self._seen(event["object"])
            except Exception:  # a watch that ended early: go on from where it was
                continue

    def _seen(self, deployment: Any) -> None:
        spec = json.dumps(self._apps.api_client.sanitize_for_serialization(deployment.spec),
                          sort_keys=True)  # fmt: skip
        digest = hashlib.sha256(spec.encode()).hexdigest()[:12]
        seen = self.specs.setdefault(deployment.metadata.name, [])
        if not seen or seen[-1] != digest:
            seen.append(digest)

    def stop(self) -> None:
        self._stopped.set()
        self._watch.stop()

    def flaps(self) -> dict[str, list[str]]:
        return {name: specs for name, specs in self.specs.items() if len(set(specs)) < len(specs)}
