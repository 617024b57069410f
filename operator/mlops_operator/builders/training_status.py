"""What a TrainingJob's status should say, from what its Job and pods say. Pure.

The controller reads the objects, calls `observe` and `training_status`, and
writes the result: all decisions about phases, reasons and messages live here,
where unit tests can reach every branch without a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from mlops_operator.api import Condition, TrainingJob, TrainingJobStatus
from mlops_operator.api.common import ResolvedDataset
from mlops_operator.api.report import TrainingReport
from mlops_operator.api.trainingjob import Failure
from mlops_operator.api.trainingjob import TrainingPhase as Phase
from mlops_operator.builders.conditions import Readiness, set_condition, set_readiness
from mlops_operator.builders.meta import Event, not_ours
from mlops_operator.builders.training import CONTAINER, INDEX_ANNOTATION, KUEUE_QUEUE_LABEL

# Waiting reasons that mean the image will not come without someone changing something.
IMAGE_PULL_FAILURES = frozenset({"ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
MESSAGE_LIMIT = 4096
# Reasons of a run waiting for the registered Dataset it names (builders/datasets.py).
DATASET_WAITING = ("DatasetNotFound", "DatasetNotReady")
# Phases announced by an Event of their own. Not Running: the Running condition's transition
# time and startTime say when it began. Not Succeeded: a run succeeds when its Model is
# registered, and ModelRegistered says both.
PHASE_MESSAGES = {
    "Queued": "queued: waiting for Kueue to admit the run",
    "Suspended": "training is suspended",
}


@dataclass(frozen=True)
class JobObservation:
    """The parts of a Job and its pods that decide the TrainingJob's status."""

    phase: Phase
    reason: str
    message: str
    active: int = 0
    failed_pods: int = 0
    start_time: str | None = None
    completion_time: str | None = None
    failure: Failure | None = None
    # Termination message of the worker with index 0 (or the only worker), once it succeeded.
    report_message: str | None = None
    report_pod: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What the controller did about a succeeded run's output."""

    registered_model: str | None = None
    report: TrainingReport | None = None
    output_error: str | None = None


# A Job's verdict. SuccessCriteriaMet (Kubernetes 1.31+) comes as soon as success is decided,
# before Complete: acting on it saves a reconcile per run, and the reports are final by then.
# Its counterpart FailureTarget is not used: the Job's failed-pod count, which gives the
# attempts, is only final at Failed.
SUCCEEDED = ("Complete", "SuccessCriteriaMet")
FAILED = ("Failed",)


def observe(
    job: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    workload: dict[str, Any] | None = None,
    *,
    queued: bool = False,
) -> JobObservation | None:
    """None when there is no Job; otherwise its phase and, on failure, why. `queued`: the Job
    is Kueue's to unsuspend (it names a queue and the user has not suspended the run), and
    `workload` is Kueue's Workload for it, if seen yet."""
    if job is None:
        return None
    status = job.get("status") or {}
    conditions = {c["type"]: c for c in status.get("conditions") or [] if c.get("status") == "True"}
    pending = JobObservation(
        "Pending",
        "Pending",
        "waiting for the training pods to start",
        active=int(status.get("active") or 0),
        failed_pods=int(status.get("failed") or 0),
        start_time=status.get("startTime"),
    )
    succeeded = next((conditions[t] for t in SUCCEEDED if t in conditions), None)
    if succeeded is not None:
        message, pod = _report_message(pods)
        return replace(
            pending,
            phase="Succeeded",
            reason="Succeeded",
            message="training finished",
            completion_time=status.get("completionTime") or succeeded.get("lastTransitionTime"),
            report_message=message,
            report_pod=pod,
        )
    failed = next((conditions[t] for t in FAILED if t in conditions), None)
    if failed is not None:
        failure = _failure(failed.get("reason") or "Failed", failed.get("message") or "", pods)
        return replace(
            pending,
            phase="Failed",
            reason=failure.reason,
            message=failure.message or failed.get("message") or "training failed",
            completion_time=failed.get("lastTransitionTime"),
            failure=failure,
        )
    if "Suspended" in conditions or (job.get("spec") or {}).get("suspend"):
        if queued:
            return replace(pending, phase="Queued", reason="Queued", message=_kueue(job, workload))
        return replace(pending, phase="Suspended", reason="Suspended", message="suspended")
    pull = _image_pull_failure(pods)
    if pull is not None:
        return replace(
            pending, phase="Failed", reason=pull.reason, message=pull.message, failure=pull
        )
    if int(status.get("ready") or 0) > 0:
        return replace(pending, phase="Running", reason="Running", message="training is running")
    return pending


def _kueue(job: dict[str, Any], workload: dict[str, Any] | None) -> str:
    """What Kueue says about a queued Job: its Workload's latest word on quota (or eviction)."""
    queue = ((job.get("metadata") or {}).get("labels") or {}).get(KUEUE_QUEUE_LABEL, "")
    where = f"waiting in Kueue's LocalQueue {queue}"
    if workload is None:
        return f"{where}: Kueue has not made a Workload for the Job yet"
    conditions = {c.get("type"): c for c in (workload.get("status") or {}).get("conditions") or []}
    name = workload["metadata"]["name"]
    for type_ in ("Evicted", "QuotaReserved"):
        found = conditions.get(type_)
        if found is not None and (found.get("status") == "True") == (type_ == "Evicted"):
            detail = f"{found.get('reason', type_)}: {found.get('message', '')}".strip(": ")
            return f"{where} (Workload {name}, {type_}): {detail}"[:MESSAGE_LIMIT]
    return f"{where} (Workload {name}): admitted, starting"


def training_status(
    tj: TrainingJob,
    observed: JobObservation | None,
    *,
    job_name: str | None,
    attempts: int,
    outcome: Outcome | None,
    now: datetime,
    dataset: ResolvedDataset | None = None,
) -> TrainingJobStatus:
    """The next status. `observed` None with a job_name means the Job was deleted.
    `dataset`: what the run reads, once resolved."""
    previous = tj.status or TrainingJobStatus()
    generation = tj.metadata.generation
    phase, reason, message, failure = _phase(observed, job_name)
    updates: dict[str, Any] = {}
    registered: bool | None = None  # None: the output is not handled yet
    if phase == "Succeeded" and outcome is not None:
        registered = outcome.registered_model is not None
        if outcome.report is not None:
            updates["metrics"] = dict(outcome.report.metrics)
            key = tj.spec.output.key_metric
            if key and key in outcome.report.metrics:
                updates["key_metric"] = f"{key}={outcome.report.metrics[key]:g}"
        updates["registered_model"] = outcome.registered_model
        if not registered:
            # A run that produced no Model did not succeed: GitOps tools must show it failed.
            reason = "OutputInvalid"
            message = (
                f"the run finished but its output cannot be registered: {outcome.output_error}"
            )
            phase, failure = "Failed", Failure(reason=reason, message=message[:MESSAGE_LIMIT])

    conditions = list(previous.conditions)

    def put(type_: str, status: bool, why: str, text: str) -> None:
        nonlocal conditions
        conditions = set_condition(
            conditions, type_, status, why, text, generation=generation, now=now
        )

    put("Running", phase == "Running", reason, message)
    if phase in ("Succeeded", "Failed"):
        put(phase, True, reason, message)
        other = "Failed" if phase == "Succeeded" else "Succeeded"
        if any(c.type == other for c in conditions):
            put(other, False, reason, message)
    if registered is not None:
        text = f"registered Model {outcome.registered_model}" if outcome and registered else message
        put("ModelRegistered", registered, "ModelRegistered" if registered else reason, text)
    if registered:
        state: Readiness = "Ready"
        reason, message = "ModelRegistered", f"registered Model {updates['registered_model']}"
    elif phase == "Failed":
        state = "Stalled"
    else:
        state = "Reconciling"
        if phase == "Succeeded":
            reason, message = "Registering", "registering the output as a Model"
    conditions = set_readiness(conditions, state, reason, message, generation=generation, now=now)
    return previous.model_copy(
        update={
            "phase": phase,
            "conditions": conditions,
            "observed_generation": generation,
            "job_name": job_name,
            "attempts": attempts,
            "start_time": _start(previous, observed, phase),
            "completion_time": _completion(previous, observed, phase, now),
            "failure": failure,
            "dataset": dataset or previous.dataset,
            **updates,
        }
    )


def is_finished(status: TrainingJobStatus | None) -> bool:
    """Succeeded with its output handled, or Failed: nothing more will happen."""
    if status is None:
        return False
    if status.phase == "Failed":
        return True
    return status.phase == "Succeeded" and any(
        c.type == "ModelRegistered" for c in status.conditions
    )


def _phase(
    observed: JobObservation | None, job_name: str | None
) -> tuple[Phase, str, str, Failure | None]:
    if observed is None:
        if job_name is None:
            return "Pending", "Creating", "creating the training Job", None
        message = f"the Job {job_name} was deleted while the run was in progress"
        return "Failed", "JobDeleted", message, Failure(reason="JobDeleted", message=message)
    return observed.phase, observed.reason, observed.message, observed.failure


def _start(
    previous: TrainingJobStatus, observed: JobObservation | None, phase: Phase
) -> datetime | None:
    """The Job's startTime, taken with the write that says the run is running (or done):
    a pod being created changes nothing a user acts on, so it costs no status write of its
    own (the pod count is the Job's to show)."""
    if previous.start_time or phase not in ("Running", "Succeeded", "Failed"):
        return previous.start_time
    return _time(observed.start_time if observed else None)


def _completion(
    previous: TrainingJobStatus, observed: JobObservation | None, phase: Phase, now: datetime
) -> datetime | None:
    if phase not in ("Succeeded", "Failed"):
        return None
    return previous.completion_time or _time(observed.completion_time if observed else None) or now


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _trainer_state(pod: dict[str, Any]) -> dict[str, Any]:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER:
            state: dict[str, Any] = status.get("state") or {}
            return state
    return {}


def _report_message(pods: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    """The termination message of the succeeded worker with index 0 (or the only worker)."""
    succeeded = [p for p in pods if (p.get("status") or {}).get("phase") == "Succeeded"]
    for pod in sorted(succeeded, key=_index):
        terminated = _trainer_state(pod).get("terminated") or {}
        return terminated.get("message"), pod["metadata"]["name"]
    return None, None


def _index(pod: dict[str, Any]) -> int:
    annotations = pod["metadata"].get("annotations") or {}
    return int(annotations.get(INDEX_ANNOTATION, "0"))


def _failure(job_reason: str, job_message: str, pods: list[dict[str, Any]]) -> Failure:
    """Why the run failed: the worker's own exit code and message where there is one."""
    failed = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
    terminated = [(_trainer_state(p).get("terminated") or {}) for p in failed]
    terminated = sorted(
        (t for t in terminated if t), key=lambda t: t.get("finishedAt") or "", reverse=True
    )
    last = terminated[0] if terminated else {}
    reason = job_reason
    if last.get("reason") == "OOMKilled":
        reason = "OOMKilled"
    elif job_reason in ("PodFailurePolicy", "MaxFailedIndexesExceeded"):
        # A worker failed and no restarts are left: for the user, retries ran out.
        reason = "BackoffLimitExceeded"
    message = (last.get("message") or job_message or "").strip()
    return Failure(reason=reason, exit_code=last.get("exitCode"), message=message[:MESSAGE_LIMIT])


def _image_pull_failure(pods: list[dict[str, Any]]) -> Failure | None:
    for pod in pods:
        waiting = _trainer_state(pod).get("waiting") or {}
        if waiting.get("reason") in IMAGE_PULL_FAILURES:
            detail = waiting.get("message") or waiting["reason"]
            message = f"pod {pod['metadata']['name']} cannot pull its image: {detail}"
            return Failure(reason="ImagePullFailed", message=message[:MESSAGE_LIMIT])
    return None


def job_finished(job: dict[str, Any]) -> bool:
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(c["type"] in SUCCEEDED + FAILED and c["status"] == "True" for c in conditions)


def desired_suspend(tj: TrainingJob, job: dict[str, Any] | None) -> bool | None:
    """The Job's spec.suspend to set, or None to leave it.

    spec.suspend drives the Job; with a Kueue queue, Kueue decides when to unsuspend.
    """
    if job is None or job_finished(job):
        return None
    current = bool((job.get("spec") or {}).get("suspend"))
    wanted = tj.spec.suspend
    if current == wanted or (tj.spec.queue_name and not wanted):
        return None
    return wanted


def should_restart(tj: TrainingJob, observed: JobObservation | None, attempt: int) -> bool:
    """Several nodes: a failed worker fails the Job; restart the whole run while retries last."""
    return (
        tj.spec.nodes > 1
        and observed is not None
        and observed.failure is not None
        and observed.failure.reason in ("BackoffLimitExceeded", "OOMKilled")
        and attempt <= tj.spec.backoff_limit
    )


def attempts(tj: TrainingJob, observed: JobObservation | None, attempt: int) -> int:
    """Runs started: Job attempts for several nodes, pods for one (the Job retries those)."""
    if tj.spec.nodes > 1 or observed is None:
        return attempt
    started = observed.active > 0 or observed.phase == "Succeeded"
    return max(1, observed.failed_pods + int(started))


def lifecycle_events(previous: TrainingJobStatus, status: TrainingJobStatus) -> list[Event]:
    """An Event for each transition a user acts on or looks back for (`kubectl describe`,
    alerting): a failure, queueing, suspend and resume, the registered Model. Each costs a
    request per run, so what the status already says (the Job's name, running) has none."""
    events: list[Event] = []
    if status.phase != previous.phase:
        if status.phase == "Failed" and status.failure:
            message = status.failure.message or status.failure.reason
            if status.failure.exit_code is not None:
                message = f"exit code {status.failure.exit_code}: {message}"
            events.append(Event("Warning", status.failure.reason, message[:1024]))
        elif previous.phase == "Suspended" and status.phase in ("Pending", "Running"):
            events.append(Event("Normal", "Resumed", "training resumed"))
        elif status.phase in PHASE_MESSAGES:
            events.append(Event("Normal", status.phase, PHASE_MESSAGES[status.phase]))
    if status.registered_model and status.registered_model != previous.registered_model:
        metric = f" ({status.key_metric})" if status.key_metric else ""
        message = f"training succeeded; registered Model {status.registered_model}{metric}"
        events.append(Event("Normal", "ModelRegistered", message))
    ready, was = _condition(status, "Ready"), _condition(previous, "Ready")
    if ready and ready.reason in DATASET_WAITING and (was is None or was.reason != ready.reason):
        events.append(Event("Warning", ready.reason, ready.message[:1024]))
    return events


def _condition(status: TrainingJobStatus, type_: str) -> Condition | None:
    return next((c for c in status.conditions if c.type == type_), None)


def name_conflict(job: dict[str, Any], owner: str) -> JobObservation:
    """The Job this TrainingJob should own exists but belongs to someone else."""
    message = not_ours("Job", job, "TrainingJob", owner)
    failure = Failure(reason="JobNameConflict", message=message)
    return JobObservation("Failed", "JobNameConflict", message, failure=failure)


def releases_pods(status: TrainingJobStatus, job: dict[str, Any]) -> bool:
    """A run failed for want of its image: suspend its Job so its pods stop holding nodes."""
    return (
        status.failure is not None
        and status.failure.reason == "ImagePullFailed"
        and not job_finished(job)
        and not (job.get("spec") or {}).get("suspend")
    )


def observed_at(status: TrainingJobStatus, generation: int | None) -> TrainingJobStatus:
    """The same status, declared current for `generation`."""
    conditions = [
        c.model_copy(update={"observed_generation": generation}) for c in status.conditions
    ]
    return status.model_copy(update={"observed_generation": generation, "conditions": conditions})
