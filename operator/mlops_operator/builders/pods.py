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


def restarts(pods: list[dict[str, Any]]) -> int:
    """Container restarts summed over `pods` (init containers apart: they run before Ready)."""
    return sum(
        int(c.get("restartCount") or 0)
        for pod in pods
        for c in (pod.get("status") or {}).get("containerStatuses") or []
    )


def why_not_ready(pods: list[dict[str, Any]]) -> str | None:
    """The first real reason, in the pods' own words, that keeps them from being Ready: a
    container that failed (its exit code, reason and termination message, e.g. storage-init's
    "cannot fetch ..."), or one waiting (ImagePullBackOff, CrashLoopBackOff) with its message.
    None when no pod says anything but "not ready yet"."""
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        status = pod.get("status") or {}
        name = pod["metadata"]["name"]
        kinds = (("init container", "initContainerStatuses"), ("container", "containerStatuses"))
        for kind, field in kinds:
            for container in status.get(field) or []:
                problem = _container_problem(container)
                if problem:
                    return f"pod {name}: {kind} {container.get('name')} {problem}"
        for condition in status.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                why = condition.get("message") or condition.get("reason")
                return f"pod {name}: not scheduled: {why}"
    return None


def _container_problem(container: dict[str, Any]) -> str | None:
    state = container.get("state") or {}
    last = (container.get("lastState") or {}).get("terminated")
    terminated = state.get("terminated") or last
    waiting = state.get("waiting") or {}
    if terminated and terminated.get("exitCode", 0) != 0:
        text = f"exited {terminated.get('exitCode')} ({terminated.get('reason') or 'Error'})"
        message = " ".join(str(terminated.get("message") or "").split())
        return f"{text}: {message}" if message else text
    if waiting.get("reason") not in (None, "ContainerCreating", "PodInitializing"):
        message = " ".join(str(waiting.get("message") or "").split())
        return f"waiting: {waiting['reason']}" + (f": {message}" if message else "")
    return None
