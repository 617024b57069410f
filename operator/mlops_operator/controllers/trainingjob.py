"""TrainingJob handlers: thin. Read, call builders, write.

Every trigger (the TrainingJob itself, its Job, a pod failing to pull) funnels
into `reconcile`, which recomputes the whole status from what exists now, so a
missed event or an operator restart converges to the same result.
"""

from __future__ import annotations

from functools import partial
from typing import Any, cast

import kopf
from pydantic import ValidationError

from mlops_operator import GROUP, VERSION, metrics
from mlops_operator.api import TrainingJob, TrainingJobStatus, describe_errors
from mlops_operator.api.common import ResolvedDataset
from mlops_operator.api.report import ReportError, TrainingReport, parse_report
from mlops_operator.builders import datasets, registry, training, versions
from mlops_operator.builders.conditions import set_condition, set_readiness
from mlops_operator.builders.meta import Event, owned_by
from mlops_operator.builders.training_status import (
    IMAGE_PULL_FAILURES,
    JobObservation,
    Outcome,
    attempts,
    desired_suspend,
    is_finished,
    job_finished,
    lifecycle_events,
    name_conflict,
    observe,
    observed_at,
    releases_pods,
    should_restart,
    training_status,
)
from mlops_operator.controllers.common import (
    enqueue,
    log_event,
    maybe_exit_for_fault_test,
    post,
    serialized,
    write_status,
)
from mlops_operator.kube import (
    KUEUE_JOB_UID_LABEL,
    AlreadyExists,
    Body,
    Conflict,
    Kube,
    Refused,
    clock,
)

PLURAL = "trainingjobs"
# Kueue's Workloads (one per queued Job, labelled with the Job's uid), read when installed.
KUEUE_GROUP, KUEUE_VERSION = "kueue.x-k8s.io", "v1beta2"
WORKLOADS = "workloads"
TJ_LABEL = f"{GROUP}/trainingjob"
POD_DONE = ("Succeeded", "Failed")
MAX_REGISTER_TRIES = 50


@kopf.on.event(GROUP, VERSION, PLURAL)
async def trainingjob_event(
    type: str | None,
    event: kopf.RawEvent,
    namespace: str | None,
    name: str,
    status: kopf.Status,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """Every watch event, the initial listing included (that is how a restart resumes)."""
    metrics.trainingjob_seen(type, namespace or "", name, status.get("phase"))
    kube: Kube = memo["kube"]
    if kube.seen(PLURAL, event) and type != "DELETED":
        # A new run (no Job yet) goes ahead of the updates queued for running ones: under a
        # burst, its Job is what the user waits for.
        reconcile(kube, namespace or "", name, first=not status.get("jobName"))


@kopf.on.event(KUEUE_GROUP, KUEUE_VERSION, "workloads", labels={KUEUE_JOB_UID_LABEL: kopf.PRESENT})
async def workload_changed(
    type: str | None,
    event: kopf.RawEvent,
    body: kopf.Body,
    namespace: str | None,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """Kueue's Workload of a queued run's Job: admitted, or why not yet (quota, eviction).
    Watched only where Kueue is installed; without its CRD kopf watches nothing here."""
    kube: Kube = memo["kube"]
    if not kube.seen(WORKLOADS, event):
        return
    owners = body["metadata"].get("ownerReferences") or []
    job_name = next((o["name"] for o in owners if o.get("kind") == "Job"), None)
    job = kube.get_job(namespace or "", job_name) if job_name else None
    run = ((job or {}).get("metadata", {}).get("labels") or {}).get(TJ_LABEL)
    if run:
        reconcile(kube, namespace or "", run)


@kopf.on.event("batch", "v1", "jobs", labels={TJ_LABEL: kopf.PRESENT})
async def job_changed(
    type: str | None,
    event: kopf.RawEvent,
    labels: kopf.Labels,
    namespace: str | None,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    kube: Kube = memo["kube"]
    if kube.seen("jobs", event):
        reconcile(kube, namespace or "", labels[TJ_LABEL])


@kopf.on.event("", "v1", "services", labels={TJ_LABEL: kopf.PRESENT})
async def service_changed(
    type: str | None,
    event: kopf.RawEvent,
    labels: kopf.Labels,
    namespace: str | None,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """Feeds the cache; a deleted rendezvous Service is put back (the reconcile recreates it)."""
    kube: Kube = memo["kube"]
    kube.seen("services", event)
    if type == "DELETED":
        reconcile(kube, namespace or "", labels[TJ_LABEL])


def _pull_failing(pod: Body) -> bool:
    return any(
        ((s.get("state") or {}).get("waiting") or {}).get("reason") in IMAGE_PULL_FAILURES
        for s in (pod.get("status") or {}).get("containerStatuses") or []
    )


@kopf.on.event("", "v1", "pods", labels={TJ_LABEL: kopf.PRESENT})
async def pod_event(
    type: str | None,
    event: kopf.RawEvent,
    labels: kopf.Labels,
    namespace: str | None,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """Training pods feed the cache (exit codes, reports). A pod stuck pulling its image
    changes nothing on its Job, so that pod wakes the reconcile itself."""
    kube: Kube = memo["kube"]
    kube.seen("pods", event)
    if type != "DELETED" and _pull_failing(cast(Body, event["object"])):
        reconcile(kube, namespace or "", labels[TJ_LABEL])


def reconcile(kube: Kube, namespace: str, name: str, *, first: bool = False) -> None:
    work = partial(_reconcile_fresh, kube, namespace, name)
    enqueue("TrainingJob", namespace, name, work, first=first)


@metrics.reconciled("TrainingJob")
def _reconcile_fresh(kube: Kube, namespace: str, name: str) -> None:
    # Read under the lock: the cache holds what another worker just wrote.
    body = kube.get_custom(PLURAL, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return
    try:
        tj = TrainingJob.model_validate(body)
    except ValidationError as err:
        _reject(kube, body, err)
        return
    if is_finished(tj.status):
        # A finished run ignores spec changes, but says it has seen them (kstatus, kubectl wait).
        if tj.status and tj.status.observed_generation != tj.metadata.generation:
            _write_status(kube, body, tj.status, observed_at(tj.status, tj.metadata.generation))
        _done_with(kube, tj)
        return
    _reconcile(kube, body, tj)


def _reconcile(kube: Kube, body: Body, tj: TrainingJob) -> None:
    namespace = body["metadata"]["namespace"]
    previous = tj.status or TrainingJobStatus()
    job_name = previous.job_name or training.job_name(tj)
    uid = tj.metadata.uid or ""
    if tj.spec.nodes > 1:
        kube.ensure_service(training.build_service(tj))  # put back if someone deleted it
    job: Body | None
    if previous.job_name is None:
        data = tj.spec.dataset
        # Only a ref needs the Datasets (a cluster whose CRDs predate them has none to list).
        registered = kube.list_custom("datasets", namespace) if data and data.ref else []
        resolved = datasets.resolve(data, registered)
        if isinstance(resolved, datasets.Unresolved):
            # Not an error to retry: the Dataset's events wake this run (controllers/dataset.py).
            waiting = JobObservation("Pending", resolved.reason, resolved.message)
            _finish(kube, body, tj, waiting, job_name, job=None, attempt=1, dataset=None)
            return
        job, created = _create_job(kube, tj, attempt=1, dataset=resolved)
        if created:  # logged, not an Event: status.jobName says it
            log_event(body, Event("Normal", "JobCreated", f"created Job {job_name}"))
    else:
        job = kube.get_job(namespace, job_name)
        # Fixed when the Job was made: its annotation, else the status (a plain uri needs no
        # lookup, for a run whose Job an older operator made).
        plain = tj.spec.dataset if tj.spec.dataset and tj.spec.dataset.uri else None
        resolved = datasets.of_job(job) or previous.dataset or datasets.resolved_uri(plain)
    if job is not None and not owned_by(job, uid):
        # Never adopt, suspend or read a Job that belongs to someone else.
        conflict = name_conflict(job, tj.metadata.name or "")
        _finish(kube, body, tj, conflict, job_name, None, 1, resolved)
        return
    suspend = desired_suspend(tj, job)
    if job is not None and suspend is not None:
        job = kube.patch_job(namespace, job["metadata"]["name"], {"spec": {"suspend": suspend}})

    # A run in a Kueue queue that the user has not suspended waits for Kueue to admit it.
    queued = tj.spec.queue_name is not None and not tj.spec.suspend
    workload = kube.workload_of(namespace, job["metadata"]["uid"]) if queued and job else None
    observed = observe(job, _pods_if_needed(kube, namespace, job), workload, queued=queued)
    attempt = training.attempt_of(tj, job_name)
    if should_restart(tj, observed, attempt):
        attempt += 1
        job, _ = _create_job(kube, tj, attempt, resolved)
        job_name = job["metadata"]["name"]
        message = f"a worker failed; restarting the run as {job_name}"
        post(body, [Event("Normal", "Restarted", message)])
        observed = observe(job if owned_by(job, uid) else None, [])
    _finish(kube, body, tj, observed, job_name, job, attempt, resolved)


def _finish(
    kube: Kube,
    body: Body,
    tj: TrainingJob,
    observed: JobObservation | None,
    job_name: str,
    job: Body | None,
    attempt: int,
    dataset: ResolvedDataset | None,
) -> None:
    """Register the output if the run succeeded, then write status and announce it."""
    previous = tj.status or TrainingJobStatus()
    outcome = None
    if observed is not None and observed.phase == "Succeeded":
        outcome = _register(kube, tj, observed, dataset)
    status = training_status(
        tj,
        observed,
        job_name=job_name if job is not None or previous.job_name else None,
        attempts=attempts(tj, observed, attempt),
        outcome=outcome,
        dataset=dataset,
        now=clock.now(),
    )
    _write_status(kube, body, previous, status)
    post(body, lifecycle_events(previous, status))
    if status.phase == "Failed" and previous.phase != "Failed" and status.failure:
        metrics.trainingjob_failed(tj.metadata.namespace or "", status.failure.reason)
    if job is not None and releases_pods(status, job):
        # A run that cannot pull its image would hold its node (and GPUs) forever.
        kube.patch_job(job["metadata"]["namespace"], job_name, {"spec": {"suspend": True}})
    if is_finished(status):
        _done_with(kube, tj.model_copy(update={"status": status}))


def _create_job(
    kube: Kube, tj: TrainingJob, attempt: int, dataset: ResolvedDataset | None
) -> tuple[Body, bool]:
    """Create the attempt's Job (True); or find the one an earlier (crashed) pass created,
    or someone else's of that name (False; the caller checks the owner)."""
    if tj.spec.nodes > 1:
        kube.ensure_service(training.build_service(tj))
    manifest = training.build_job(tj, attempt, dataset)
    name = manifest["metadata"]["name"]
    try:
        job = kube.create_job(manifest)
    except AlreadyExists:
        existing = kube.get_job(tj.metadata.namespace or "", name, fresh=True)
        if existing is None:
            raise
        return existing, False
    return job, True


def _pods_if_needed(kube: Kube, namespace: str, job: Body | None) -> list[Body]:
    """Pods only matter once the Job finished (report, exit code) or some are not ready."""
    if job is None:
        return []
    status = job.get("status") or {}
    not_ready = int(status.get("active") or 0) > int(status.get("ready") or 0)
    finished = job_finished(job)
    if not (finished or not_ready):
        return []
    name = job["metadata"]["name"]
    pods = kube.pods_of_job(namespace, name)
    settled = pods and all((p.get("status") or {}).get("phase") in POD_DONE for p in pods)
    if finished and not settled:
        # The Job's verdict and its pods' last states come on different watches: when
        # the cache has not seen every pod finish yet, ask the server.
        pods = kube.pods_of_job(namespace, name, fresh=True)
    return pods


def _register(
    kube: Kube, tj: TrainingJob, observed: JobObservation, dataset: ResolvedDataset | None
) -> Outcome:
    """Register the run's output as the next version of its model, exactly once."""
    try:
        report = parse_report(observed.report_message)
    except ReportError as err:
        where = f" (pod {observed.report_pod})" if observed.report_pod else ""
        return Outcome(output_error=f"{err}{where}")
    try:
        model = _create_model(kube, tj, report, dataset)
        return Outcome(registered_model=model, report=report)
    except ValidationError as err:
        return Outcome(output_error="; ".join(describe_errors(err)), report=report)
    except (versions.LedgerCorrupt, versions.VersionsExhausted) as err:  # a person must act
        return Outcome(output_error=str(err), report=report)
    except Refused as err:  # what only the server checks: a retry would be refused again
        return Outcome(output_error=f"the API server refused the Model: {err}", report=report)


def _create_model(
    kube: Kube, tj: TrainingJob, report: TrainingReport, dataset: ResolvedDataset | None
) -> str:
    """Claim the next version in the namespace's ledger, then create the Model.

    Versions are names (`<model>-v<N>`), so the API server arbitrates races on the Model;
    the ledger (builders/versions.py) makes a number mean one artifact forever, even after
    its Model is deleted. In this process registrations of one model take turns.
    """
    namespace = tj.metadata.namespace or ""
    name, uid = tj.metadata.name or "", tj.metadata.uid or ""
    model_name = tj.spec.output.model_name
    with serialized(("register", namespace, model_name)):
        # All Models, not only labelled ones: hand-registered versions count too. The cache
        # holds every Model that existed when it was filled plus every one created since.
        models = kube.list_custom("models", namespace)
        already = registry.registered_by(models, uid)
        if already:
            return already
        for _ in range(MAX_REGISTER_TRIES):
            current = kube.get_ledger(namespace)
            data = dict((current or {}).get("data") or {})
            try:
                version, record = versions.next_claim(
                    data, model_name, uid, models, partial(_registering, kube, namespace)
                )
            except versions.ClaimInFlight as err:
                # Let the run that holds the number register first; this one comes back.
                owner = _by_uid(kube, namespace, err.owner)
                if owner is not None:
                    reconcile(kube, namespace, owner["metadata"]["name"], first=True)
                raise
            if record:
                rv = current["metadata"]["resourceVersion"] if current else None
                claim = versions.with_claim(data, model_name, version, uid)
                try:
                    kube.write_ledger(versions.ledger(namespace, claim, rv))
                except Conflict:
                    continue  # another claim came first: read the ledger anew
            maybe_exit_for_fault_test("after-ledger")
            manifest = registry.build_model(tj, report, version, dataset)
            try:
                kube.create_custom("models", manifest)
            except AlreadyExists:
                taken = kube.get_custom("models", namespace, manifest["metadata"]["name"],
                                        fresh=True)  # fmt: skip
                if taken is not None and registry.registered_by([taken], uid):
                    return str(manifest["metadata"]["name"])
                # Someone registered this number by hand: it counts, and the next try
                # goes past it.
                models = [*models, *([taken] if taken else [])]
                kube.get_ledger(namespace, fresh=True)
                continue
            metrics.model_registered()
            maybe_exit_for_fault_test("after-model")
            return str(manifest["metadata"]["name"])
    raise kopf.TemporaryError(f"could not find a free version of {model_name} for {name}")


def _by_uid(kube: Kube, namespace: str, uid: str) -> Body | None:
    return next(
        (tj for tj in kube.list_custom(PLURAL, namespace) if tj["metadata"].get("uid") == uid),
        None,
    )


def _registering(kube: Kube, namespace: str, uid: str) -> bool:
    """Whether the TrainingJob with this uid exists and has not finished: it may still
    register a Model."""
    tj = _by_uid(kube, namespace, uid)
    return tj is not None and not is_finished(
        TrainingJobStatus.model_validate(tj.get("status") or {})
    )


def _write_status(
    kube: Kube, body: Body, previous: TrainingJobStatus, status: TrainingJobStatus
) -> None:
    write_status(kube, PLURAL, body, previous.wire(), status.wire())


def _done_with(kube: Kube, tj: TrainingJob) -> None:
    """A finished run: its pods leave the cache; ttlSecondsAfterFinished goes on its Job
    only now that its output is safe."""
    ttl = tj.spec.ttl_seconds_after_finished
    job_name = tj.status.job_name if tj.status else None
    if job_name is None:
        return
    kube.release_pods(tj.metadata.namespace or "", job_name)
    if ttl is None:
        return
    job = kube.get_job(tj.metadata.namespace or "", job_name)
    if job is not None and (job.get("spec") or {}).get("ttlSecondsAfterFinished") != ttl:
        patch = {"spec": {"ttlSecondsAfterFinished": ttl}}
        kube.patch_job(job["metadata"]["namespace"], job_name, patch)


def _reject(kube: Kube, body: Body, err: ValidationError) -> None:
    """A spec the API server should have refused: say so once; never retry it."""
    message = "; ".join(describe_errors(err))[:4096]
    meta = body["metadata"]
    previous = (body.get("status") or {}).get("conditions") or []
    if any(c.get("reason") == "InvalidSpec" and c.get("message") == message for c in previous):
        return
    conditions = set_readiness(
        [],
        "Stalled",
        "InvalidSpec",
        message,
        generation=meta.get("generation"),
        now=clock.now(),
    )
    conditions = set_condition(
        conditions,
        "Failed",
        True,
        "InvalidSpec",
        message,
        generation=meta.get("generation"),
        now=clock.now(),
    )
    status = {
        "phase": "Failed",
        "observedGeneration": meta.get("generation"),
        "conditions": [c.wire() for c in conditions],
    }
    kube.patch_status(PLURAL, body, status)
    post(body, [Event("Warning", "InvalidSpec", message)])
    metrics.trainingjob_failed(meta.get("namespace", ""), "InvalidSpec")
