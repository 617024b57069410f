"""Small kubectl helpers the controller tests share."""

from __future__ import annotations

import json
from typing import Any

import yaml

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
