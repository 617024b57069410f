"""TrainingJob -> its child batch/v1 Job (and, for several nodes, a headless Service).

Pure: the same TrainingJob and attempt always give the same manifests, so a
restarted operator builds exactly what it built before.
"""

from __future__ import annotations

import json
from typing import Any

from mlops_operator.api import TrainingJob
from mlops_operator.api.common import ResolvedDataset
from mlops_operator.builders import datasets
from mlops_operator.builders.meta import child_labels, name_and_uid, owner_reference
from mlops_operator.builders.pods import container_security, pod_security, resources, scheduling

CONTAINER = "trainer"
RENDEZVOUS_PORT = 29500
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


def job_name(tj: TrainingJob, attempt: int = 1) -> str:
    """Attempt 1 is `<tj>`; a multi-node run restarted as a whole is `<tj>-<attempt>`."""
    name = _name(tj)
    return name if attempt == 1 else f"{name}-{attempt}"


def attempt_of(tj: TrainingJob, job: str) -> int:
    """The attempt a Job of this TrainingJob belongs to (inverse of `job_name`)."""
    suffix = job.removeprefix(_name(tj)).removeprefix("-")
    return int(suffix) if suffix.isdigit() else 1


def output_uri(tj: TrainingJob) -> str:
    """A directory of its own per run, so a rerun never overwrites a registered artifact."""
    base = tj.spec.output.uri.rstrip("/")
    return f"{base}/{_name(tj)}-{_uid(tj)[:8]}"


def labels(tj: TrainingJob) -> dict[str, str]:
    return child_labels("TrainingJob", _name(tj), model_name=tj.spec.output.model_name)


def build_job(
    tj: TrainingJob, attempt: int = 1, dataset: ResolvedDataset | None = None
) -> dict[str, Any]:
    """The attempt's Job. `dataset`: what spec.dataset resolved to (a `ref` must have been
    resolved by the caller; a plain uri needs no resolving)."""
    spec = tj.spec
    if dataset is None and spec.dataset is not None:
        if spec.dataset.ref is not None:
            raise ValueError("a dataset ref must be resolved before the Job is built")
        dataset = datasets.resolved_uri(spec.dataset)
    multi = spec.nodes > 1
    name = job_name(tj, attempt)
    job_labels = labels(tj)
    if spec.queue_name:
        job_labels[KUEUE_QUEUE_LABEL] = spec.queue_name
    job_spec: dict[str, Any] = {
        # Several nodes: any failed worker fails this Job at once (podFailurePolicy), and the
        # operator restarts the whole run; one node: the Job's own retries are the restarts.
        "backoffLimit": 0 if multi else spec.backoff_limit,
        "completions": spec.nodes,
        "parallelism": spec.nodes,
        # Kueue admits a queued Job by unsuspending it.
        "suspend": spec.suspend or spec.queue_name is not None,
        "template": _pod_template(tj, name, multi, dataset),
    }
    if multi:
        job_spec["completionMode"] = "Indexed"
        job_spec["podFailurePolicy"] = {
            "rules": [
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": CONTAINER,
                        "operator": "NotIn",
                        "values": [0],
                    },
                },
            ]
        }
    if spec.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": tj.metadata.namespace,
            "labels": job_labels,
            "ownerReferences": [owner_reference("TrainingJob", _name(tj), _uid(tj))],
            **(
                {"annotations": {datasets.RESOLVED_ANNOTATION: datasets.annotation(dataset)}}
                if dataset and dataset.name
                else {}
            ),
        },
        "spec": job_spec,
    }


def build_service(tj: TrainingJob) -> dict[str, Any]:
    """Headless Service giving each worker a stable DNS name: `<job>-<index>.<tj>`."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": _name(tj),
            "namespace": tj.metadata.namespace,
            "labels": labels(tj),
            "ownerReferences": [owner_reference("TrainingJob", _name(tj), _uid(tj))],
        },
        "spec": {
            "clusterIP": "None",
            # Workers must resolve each other before any of them is Ready.
            "publishNotReadyAddresses": True,
            "selector": {"mlops.seed.dev/trainingjob": _name(tj)},
            "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT}],
        },
    }


def _pod_template(
    tj: TrainingJob, job: str, multi: bool, dataset: ResolvedDataset | None
) -> dict[str, Any]:
    spec = tj.spec
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": pod_security(),
        # Training code gets API credentials only when it asks for an identity.
        "automountServiceAccountToken": spec.service_account_name is not None,
        "containers": [_container(tj, job, multi, dataset)],
    }
    if spec.service_account_name:
        pod["serviceAccountName"] = spec.service_account_name
    if multi:
        pod["subdomain"] = _name(tj)
    scheduling(pod, spec.scheduling)
    return {
        "metadata": {
            "labels": {**spec.pod_metadata.labels, **labels(tj)},
            "annotations": dict(spec.pod_metadata.annotations),
        },
        "spec": pod,
    }


def _container(
    tj: TrainingJob, job: str, multi: bool, dataset: ResolvedDataset | None
) -> dict[str, Any]:
    spec = tj.spec
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image,
        "env": _env(tj, job, multi, dataset) + [e.wire() for e in spec.env],
        "securityContext": container_security(),
        # A crash that wrote no report still leaves its last log lines as the message.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if spec.image_pull_policy:
        container["imagePullPolicy"] = spec.image_pull_policy
    if spec.command:
        container["command"] = list(spec.command)
    if spec.args:
        container["args"] = list(spec.args)
    if wanted := resources(spec.resources):
        container["resources"] = wanted
    if multi:
        container["ports"] = [{"name": "rendezvous", "containerPort": RENDEZVOUS_PORT}]
    return container


def _env(
    tj: TrainingJob, job: str, multi: bool, dataset: ResolvedDataset | None
) -> list[dict[str, Any]]:
    """The container contract of DESIGN.md section 3."""
    spec = tj.spec
    env = {
        "MLOPS_RUN_ID": _uid(tj),
        "MLOPS_MODEL_NAME": spec.output.model_name,
        "MLOPS_OUTPUT_URI": output_uri(tj),
        "MLOPS_HPARAMS": json.dumps(spec.hyperparameters, sort_keys=True),
    }
    if dataset:
        env["MLOPS_DATASET_URI"] = dataset.uri
        if dataset.digest:
            env["MLOPS_DATASET_DIGEST"] = dataset.digest
        if dataset.name:
            env["MLOPS_DATASET_NAME"] = dataset.name
            env["MLOPS_DATASET_VERSION"] = str(dataset.version)
    if multi:
        master = f"{job}-0.{_name(tj)}.{tj.metadata.namespace}.svc"
        # Kubeflow's PyTorchJob convention: WORLD_SIZE counts nodes, RANK is the node's
        # index; PET_* are torchrun's own flags as environment variables.
        env |= {
            "MASTER_ADDR": master,
            "MASTER_PORT": str(RENDEZVOUS_PORT),
            "WORLD_SIZE": str(spec.nodes),
            "PET_MASTER_ADDR": master,
            "PET_MASTER_PORT": str(RENDEZVOUS_PORT),
            "PET_NNODES": str(spec.nodes),
            "PET_NPROC_PER_NODE": str(spec.processes_per_node),
        }
    listed: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in env.items()]
    if multi:
        index = {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_ANNOTATION}']"}}
        listed += [{"name": n, "valueFrom": index} for n in ("RANK", "NODE_RANK", "PET_NODE_RANK")]
    return listed


def _name(tj: TrainingJob) -> str:
    return name_and_uid(tj.metadata)[0]


def _uid(tj: TrainingJob) -> str:
    return name_and_uid(tj.metadata)[1]
