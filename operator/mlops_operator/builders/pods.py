"""Pieces every pod the operator creates shares: `restricted`-safe security, resources."""

from __future__ import annotations

from typing import Any

from mlops_operator.api.common import ResourceRequirements, Scheduling

# Not root, so the restricted Pod Security Standard admits the pod; images must not need root.
RUN_AS = 1000


def pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
    }


def resources(requirements: ResourceRequirements) -> dict[str, Any]:
    """Requests and limits as a container wants them; empty parts left out."""
    wanted = {"requests": requirements.requests, "limits": requirements.limits}
    return {
        kind: {name: str(value) for name, value in values.items()}
        for kind, values in wanted.items()
        if values
    }


def scheduling(pod: dict[str, Any], placement: Scheduling) -> None:
    """Copy node selection and priority onto a pod spec."""
    if placement.node_selector:
        pod["nodeSelector"] = dict(placement.node_selector)
    if placement.tolerations:
        pod["tolerations"] = [t.wire() for t in placement.tolerations]
    if placement.priority_class_name:
        pod["priorityClassName"] = placement.priority_class_name
