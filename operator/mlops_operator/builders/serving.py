"""ModelDeployment -> its children: Deployments (stable, canary), Service, HPA, PDB. Pure.

A pod serving a Model with a reference profile (and `spec.monitoring.enabled`) has the
monitor in front of its runtime: storage-init fetches the reference beside the artifact,
the monitor container owns the port named `http` (the Service's target) and passes
traffic to the runtime on localhost; the runtime's port is then named `runtime`.

Children are applied with server-side apply, so each manifest lists only the
fields the operator owns: what it leaves out (a Deployment's replicas under an
HPA) stays with whoever owns it.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from mlops_operator.api import Model, ModelDeployment
from mlops_operator.api.common import RESERVED_PREFIX
from mlops_operator.builders.meta import child_labels, name_and_uid, owner_reference
from mlops_operator.builders.pods import container_security, pod_security, resources, scheduling

Track = Literal["stable", "canary"]
RUNTIME_PORT = 8080
MODEL_DIR = "/mnt/models"
PVC_ROOT = "/mnt/pvc"
# The monitor's ports: traffic (the Service's target when monitored) and /drift, /metrics.
MONITOR_PORT = 9080
MONITOR_ADMIN_PORT = 9081
# Set by the API server on every namespace: what a NetworkPolicy selects a namespace by.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
MiB = 2**20
REFERENCE_DIR = "/mnt/reference"
REFERENCE_PATH = f"{REFERENCE_DIR}/reference.json"
TRACK_LABEL = f"{RESERVED_PREFIX}track"
VERSION_LABEL = f"{RESERVED_PREFIX}model-version"
MD_LABEL = f"{RESERVED_PREFIX}modeldeployment"
# Seldon's MLServer (V2 inference protocol) and the model class it loads per format.
MLSERVER_IMAGE = "docker.io/seldonio/mlserver:1.7.1"
MLSERVER_IMPLEMENTATIONS = {
    "sklearn": "mlserver_sklearn.SKLearnModel",
    "xgboost": "mlserver_xgboost.XGBoostModel",
    "lightgbm": "mlserver_lightgbm.LightGBMModel",
}


def deployment_name(md: ModelDeployment, track: Track) -> str:
    name = _name(md)
    return name if track == "stable" else f"{name}-canary"


def url(md: ModelDeployment) -> str:
    return f"http://{_name(md)}.{md.metadata.namespace}.svc:{md.spec.port}"


def total_replicas(md: ModelDeployment) -> int:
    spec = md.spec
    if spec.autoscaling is not None:
        return spec.autoscaling.min_replicas
    return 1 if spec.replicas is None else spec.replicas


def split_replicas(md: ModelDeployment, weight: int) -> tuple[int, int]:
    """(stable, canary) replicas giving the canary about `weight` percent of the pods.

    The Service spreads requests over all Ready pods, so the replica share is the
    traffic share; the stable track keeps at least one pod until promotion.
    """
    total = max(1, total_replicas(md))
    canary = max(1, math.ceil(total * weight / 100))
    return max(1, total - canary), canary


def build_deployment(
    md: ModelDeployment,
    model: Model,
    *,
    track: Track,
    replicas: int | None,
    storage_image: str,
) -> dict[str, Any]:
    """`replicas` None leaves the count to the HPA (the field is then not ours)."""
    name = deployment_name(md, track)
    selector = {MD_LABEL: _name(md), TRACK_LABEL: track}
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector},
        "template": _pod_template(md, model, track, storage_image),
        "progressDeadlineSeconds": md.spec.progress_deadline_seconds,
        "revisionHistoryLimit": 3,
    }
    if replicas is not None:
        spec["replicas"] = replicas
    rolling = md.spec.strategy.rolling_update
    if rolling is not None:
        spec["strategy"] = {
            "type": "RollingUpdate",
            "rollingUpdate": {
                "maxSurge": rolling.max_surge,
                "maxUnavailable": rolling.max_unavailable,
            },
        }
    return _child(md, "apps/v1", "Deployment", name, spec, track=track)


def build_service(md: ModelDeployment) -> dict[str, Any]:
    """One Service over both tracks: traffic follows the Ready pods of each."""
    spec = {
        "selector": {MD_LABEL: _name(md)},
        "ports": [{"name": "http", "port": md.spec.port, "targetPort": "http"}],
    }
    return _child(md, "v1", "Service", _name(md), spec)


def build_hpa(md: ModelDeployment) -> dict[str, Any] | None:
    scaling = md.spec.autoscaling
    if scaling is None:
        return None
    spec = {
        "scaleTargetRef": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": deployment_name(md, "stable"),
        },
        "minReplicas": scaling.min_replicas,
        "maxReplicas": scaling.max_replicas,
        "metrics": [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {
                        "type": "Utilization",
                        "averageUtilization": scaling.target_cpu_utilization_percentage,
                    },
                },
            }
        ],
    }
    return _child(md, "autoscaling/v2", "HorizontalPodAutoscaler", _name(md), spec)


def build_pdb(md: ModelDeployment) -> dict[str, Any] | None:
    """With more than one replica, voluntary evictions take at most one pod at a time."""
    if total_replicas(md) <= 1:
        return None
    spec = {"maxUnavailable": 1, "selector": {"matchLabels": {MD_LABEL: _name(md)}}}
    return _child(md, "policy/v1", "PodDisruptionBudget", _name(md), spec)


# The operator's own pods, as manifests/ and the Helm chart label them.
OPERATOR_POD_LABELS = {
    "app.kubernetes.io/name": "mlops-operator",
    "app.kubernetes.io/component": "operator",
}


def network_policy_name(md: ModelDeployment) -> str:
    return f"{_name(md)}-serving"


def build_network_policy(
    md: ModelDeployment, operator_namespace: str, scrape_namespaces: list[str]
) -> dict[str, Any] | None:
    """Who may reach the serving pods: the serving port (`http`, the monitor's when it runs)
    from `inferenceFrom` or everyone; the monitor's port only from the operator's pods, the
    Prometheus namespaces the install names and `monitorFrom`. Every other port of the pods
    (the runtime's behind the monitor) from no one: the evidence cannot be gone around."""
    access = md.spec.network_policy
    if not access.enabled:
        return None

    def peers(listed: list[Any]) -> list[dict[str, Any]]:
        # Without the empty defaults, as the API server would keep them.
        dump = {"mode": "json", "by_alias": True, "exclude_none": True, "exclude_defaults": True}
        return [p.model_dump(**dump) for p in listed]

    operator = {
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: operator_namespace}},
        "podSelector": {"matchLabels": dict(OPERATOR_POD_LABELS)},
    }
    scrapers = [
        {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: ns}}}
        for ns in scrape_namespaces
    ]
    inference: dict[str, Any] = {"ports": [{"port": "http", "protocol": "TCP"}]}
    if access.inference_from:
        inference["from"] = peers(access.inference_from)
    monitor = {
        "ports": [{"port": "monitor", "protocol": "TCP"}],
        "from": [operator, *scrapers, *peers(access.monitor_from)],
    }
    spec = {
        "podSelector": {"matchLabels": {MD_LABEL: _name(md)}},
        "policyTypes": ["Ingress"],
        "ingress": [inference, monitor],
    }
    return _child(md, "networking.k8s.io/v1", "NetworkPolicy", network_policy_name(md), spec)


def _child(
    md: ModelDeployment, api_version: str, kind: str, name: str, spec: dict[str, Any], **extra: str
) -> dict[str, Any]:
    md_name, uid = name_and_uid(md.metadata)
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": md.metadata.namespace,
            "labels": child_labels("ModelDeployment", md_name, **extra),
            "ownerReferences": [owner_reference("ModelDeployment", md_name, uid)],
        },
        "spec": spec,
    }


def monitored(md: ModelDeployment, model: Model) -> bool:
    """Whether pods serving `model` run the monitor: it is wanted, and there is something
    to judge (drift against the Model's reference, or the canary analysis's traffic)."""
    canary = md.spec.strategy.canary
    analysed = canary is not None and canary.analysis is not None
    return md.spec.monitoring.enabled and (model.spec.artifact.reference is not None or analysed)


def _pod_template(
    md: ModelDeployment, model: Model, track: Track, storage_image: str
) -> dict[str, Any]:
    spec = md.spec
    labels = {
        **spec.pod_metadata.labels,
        **child_labels("ModelDeployment", _name(md), track=track),
        VERSION_LABEL: str(model.spec.version),
    }
    sources = _Sources()
    args = ["storage-init", sources.local(model.spec.artifact.uri), MODEL_DIR]
    init_mounts = [{"name": "model", "mountPath": MODEL_DIR}]
    volumes: list[dict[str, Any]] = [{"name": "model", "emptyDir": {}}]
    watched = monitored(md, model)
    reference = model.spec.artifact.reference if watched else None
    # Monitored, the monitor takes the port the Service targets and the runtime's is renamed.
    runtime = _runtime_container(md, model, port_name="runtime" if watched else "http")
    containers = [runtime]
    if reference is not None:
        args += ["--reference", sources.local(reference.uri), "--reference-digest",
                 reference.digest, "--reference-dir", REFERENCE_DIR]  # fmt: skip
        init_mounts.append({"name": "reference", "mountPath": REFERENCE_DIR})
        volumes.append({"name": "reference", "emptyDir": {}})
    if watched:
        port = runtime["ports"][0]["containerPort"]
        containers.append(
            _monitor_container(
                md, model, storage_image, runtime_port=port, reference=bool(reference)
            )
        )
    pod: dict[str, Any] = {
        "securityContext": pod_security(),
        "automountServiceAccountToken": spec.service_account_name is not None,
        "initContainers": [
            {
                "name": "storage-init",
                "image": storage_image,
                "args": args,
                # storage-init writes why it failed; anything else that kills it leaves logs.
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "volumeMounts": [*init_mounts, *sources.mounts],
                "securityContext": container_security(),
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            }
        ],
        "containers": containers,
        "volumes": [*volumes, *sources.volumes],
    }
    if spec.storage.env:
        pod["initContainers"][0]["env"] = [e.wire() for e in spec.storage.env]
    if spec.service_account_name:
        pod["serviceAccountName"] = spec.service_account_name
    scheduling(pod, spec.scheduling)
    return {
        "metadata": {"labels": labels, "annotations": dict(spec.pod_metadata.annotations)},
        "spec": pod,
    }


class _Sources:
    """Where storage-init reads each file: a URI as is, or a `pvc://claim/path` as the path
    where that claim is mounted (one read-only volume per claim)."""

    def __init__(self) -> None:
        self.volumes: list[dict[str, Any]] = []
        self.mounts: list[dict[str, Any]] = []
        self._claims: list[str] = []

    def local(self, uri: str) -> str:
        if not uri.startswith("pvc://"):
            return uri
        claim, _, path = uri.removeprefix("pvc://").partition("/")
        if claim not in self._claims:
            # The artifact's claim is the volume "artifact"; another (a reference's) gets its own.
            name = "artifact" if not self._claims else f"artifact-{len(self._claims)}"
            self._claims.append(claim)
            self.volumes.append(
                {"name": name, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
            )
            self.mounts.append({"name": name, "mountPath": f"{PVC_ROOT}/{claim}", "readOnly": True})
        return f"{PVC_ROOT}/{claim}/{path}"


def _monitor_container(
    md: ModelDeployment, model: Model, image: str, runtime_port: int, *, reference: bool
) -> dict[str, Any]:
    """`mlops-operator monitor` on the pod's serving port, passing traffic to the runtime
    (without a reference it counts requests, errors and latency only)."""
    health = {"httpGet": {"path": "/healthz", "port": "monitor"}}
    limits = md.spec.monitoring
    # Kept bodies: two waiting and one being read, which parses to several times its size.
    memory = max(256 * MiB, 128 * MiB + 12 * limits.max_binned_bytes)
    container: dict[str, Any] = {
        "name": "monitor",
        "image": image,
        "args": [
            "monitor",
            *(("--reference", REFERENCE_PATH) if reference else ()),
            *("--upstream", f"http://127.0.0.1:{runtime_port}"),
            *("--listen", f"0.0.0.0:{MONITOR_PORT}", "--admin", f"0.0.0.0:{MONITOR_ADMIN_PORT}"),
            *("--max-request-bytes", str(limits.max_request_bytes)),
            *("--max-binned-bytes", str(limits.max_binned_bytes)),
            *("--max-rows-per-request", str(limits.max_rows_per_request)),
        ],
        "env": [
            {"name": "MLOPS_MODEL_NAME", "value": model.spec.model_name},
            {"name": "MLOPS_MODEL_VERSION", "value": str(model.spec.version)},
            {"name": "MLOPS_MODEL_DEPLOYMENT", "value": md.metadata.name or ""},
            # Named in each /drift answer, which the operator checks against the pod it asked.
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "ports": [
            {"name": "http", "containerPort": MONITOR_PORT},
            {"name": "monitor", "containerPort": MONITOR_ADMIN_PORT},
        ],
        "readinessProbe": {**health, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {**health, "periodSeconds": 10, "failureThreshold": 6},
        "securityContext": container_security(),
        # Counts and bounded buffers: its memory is set by the reference's size and the
        # binning cap, not by the traffic.
        "resources": {
            "requests": {"cpu": "50m", "memory": "96Mi"},
            "limits": {"memory": f"{memory // MiB}Mi"},
        },
    }
    if reference:
        container["volumeMounts"] = [
            {"name": "reference", "mountPath": REFERENCE_DIR, "readOnly": True}
        ]
    return container


def _runtime_container(md: ModelDeployment, model: Model, *, port_name: str) -> dict[str, Any]:
    runtime = md.spec.runtime
    env = [
        {"name": "MLOPS_MODEL_NAME", "value": model.spec.model_name},
        {"name": "MLOPS_MODEL_VERSION", "value": str(model.spec.version)},
        {"name": "MLOPS_MODEL_DIR", "value": MODEL_DIR},
    ]
    container: dict[str, Any] = {
        "name": "runtime",
        "securityContext": container_security(),
        "volumeMounts": [{"name": "model", "mountPath": MODEL_DIR, "readOnly": True}],
    }
    if runtime.preset == "mlserver":
        port = RUNTIME_PORT
        artifact = model.spec.artifact.uri.rstrip("/").rsplit("/", 1)[-1]
        env += [
            {"name": "MLSERVER_HTTP_PORT", "value": str(port)},
            {"name": "MLSERVER_GRPC_PORT", "value": "8081"},
            {"name": "MLSERVER_MODEL_NAME", "value": model.spec.model_name},
            {"name": "MLSERVER_MODEL_VERSION", "value": str(model.spec.version)},
            {
                "name": "MLSERVER_MODEL_IMPLEMENTATION",
                "value": MLSERVER_IMPLEMENTATIONS.get(model.spec.artifact.format, ""),
            },
            {"name": "MLSERVER_MODEL_URI", "value": f"{MODEL_DIR}/{artifact}"},
        ]
        container |= {"image": MLSERVER_IMAGE, "args": ["mlserver", "start", MODEL_DIR]}
        # The model's own readiness: the server is "ready" even after failing to load it.
        probe_path: str | None = f"/v2/models/{model.spec.model_name}/ready"
    else:
        port = runtime.port or RUNTIME_PORT
        container["image"] = runtime.image
        if runtime.command:
            container["command"] = list(runtime.command)
        if runtime.args:
            container["args"] = list(runtime.args)
        probe_path = None
    container["env"] = env + [e.wire() for e in runtime.env]
    container["ports"] = [{"name": port_name, "containerPort": port}]
    # A custom image's health path is unknown: an open port is the most we can check.
    check: dict[str, Any] = (
        {"httpGet": {"path": probe_path, "port": port_name}}
        if probe_path
        else {"tcpSocket": {"port": port_name}}
    )
    live: dict[str, Any] = (
        {"httpGet": {"path": "/v2/health/live", "port": port_name}} if probe_path else check
    )
    container["readinessProbe"] = {**check, "periodSeconds": 5, "failureThreshold": 3}
    container["livenessProbe"] = {**live, "periodSeconds": 10, "failureThreshold": 6}
    if wanted := resources(md.spec.resources):
        container["resources"] = wanted
    return container


def _name(md: ModelDeployment) -> str:
    return name_and_uid(md.metadata)[0]
