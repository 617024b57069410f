"""ContinuousTraining handlers: thin. Gather what its triggers look at, let
builders/continuous.py decide, then create and delete runs and write status.

Woken by its own changes, its runs' (a finished run frees a `Forbid` slot), new Dataset
versions, changes of the watched ModelDeployment, and its own clock: each pass asks the
work queue to come back at the next schedule time or the end of a cooldown. No timer
polls an idle ContinuousTraining.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any

import kopf
from pydantic import ValidationError

from mlops_operator import GROUP, VERSION, metrics
from mlops_operator.api import ContinuousTraining, ContinuousTrainingStatus, describe_errors
from mlops_operator.builders import continuous, schedule
from mlops_operator.builders.meta import Event, owned_by
from mlops_operator.controllers.common import enqueue, enqueue_after, post, write_status
from mlops_operator.kube import AlreadyExists, Body, Kube, clock

PLURAL = "continuoustrainings"
TJ_PLURAL = "trainingjobs"
KIND = "ContinuousTraining"


@kopf.on.event(GROUP, VERSION, PLURAL)
async def continuoustraining_event(
    type: str | None, event: kopf.RawEvent, namespace: str | None, name: str, memo: kopf.Memo,
    **_: Any,
) -> None:  # fmt: skip
    kube: Kube = memo["kube"]
    if kube.seen(PLURAL, event) and type != "DELETED":
        reconcile(kube, namespace or "", name)


# Each handler below feeds the cache itself before it wakes anyone: kopf runs the handlers
# of one event one after the other, and the reconcile it queues may start on a worker thread
# before the kind's own controller has fed the cache (feeding it twice is harmless).


@kopf.on.event(GROUP, VERSION, TJ_PLURAL, labels={continuous.CT_LABEL: kopf.PRESENT})
async def run_event(
    event: kopf.RawEvent, labels: kopf.Labels, namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    """One of its runs changed: a finished or deleted run frees a `Forbid` slot."""
    kube: Kube = memo["kube"]
    kube.seen(TJ_PLURAL, event)
    reconcile(kube, namespace or "", labels[continuous.CT_LABEL])


@kopf.on.event(GROUP, VERSION, "datasets")
async def dataset_event(
    event: kopf.RawEvent, body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    """A Dataset version appeared or became Ready: the ContinuousTrainings watching it look."""
    kube: Kube = memo["kube"]
    kube.seen("datasets", event)
    name = (body.get("spec") or {}).get("datasetName")
    _wake(kube, namespace or "", lambda t: (t.get("onNewDataset") or {}).get("name") == name)


@kopf.on.event(GROUP, VERSION, "modeldeployments")
async def modeldeployment_event(
    event: kopf.RawEvent, name: str, namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    """The watched ModelDeployment changed: its condition may have turned."""
    kube: Kube = memo["kube"]
    kube.seen("modeldeployments", event)
    _wake(kube, namespace or "", lambda t: (t.get("onModelDeployment") or {}).get("name") == name)


def _wake(kube: Kube, namespace: str, watches: Any) -> None:
    for ct in kube.list_custom(PLURAL, namespace):
        if watches((ct.get("spec") or {}).get("triggers") or {}):
            reconcile(kube, namespace, ct["metadata"]["name"])


def reconcile(kube: Kube, namespace: str, name: str) -> None:
    enqueue(KIND, namespace, name, partial(_reconcile, kube, namespace, name))


@metrics.reconciled(KIND)
def _reconcile(kube: Kube, namespace: str, name: str) -> None:
    body = kube.get_custom(PLURAL, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return
    now = clock.now()
    try:
        ct = ContinuousTraining.model_validate(body)
        if ct.spec.triggers.schedule:
            schedule.check(ct.spec.triggers.schedule)
    except (ValidationError, schedule.InvalidSchedule) as err:
        message = "; ".join(describe_errors(err)) if isinstance(err, ValidationError) else str(err)
        _reject(kube, body, message, now)
        return
    uid = ct.metadata.uid or ""
    runs = [
        tj
        for tj in kube.list_custom(TJ_PLURAL, namespace)
        if (tj["metadata"].get("labels") or {}).get(continuous.CT_LABEL) == name
        and owned_by(tj, uid)
    ]
    trigger = ct.spec.triggers.on_model_deployment
    md = kube.get_custom("modeldeployments", namespace, trigger.name) if trigger else None
    found = kube.list_custom("datasets", namespace) if ct.spec.triggers.on_new_dataset else []
    created = continuous.parse_time(body["metadata"]["creationTimestamp"])
    plan = continuous.plan(ct, [continuous.run_of(r) for r in runs], found, md, created, now)
    for run in plan.delete:
        kube.delete_custom(TJ_PLURAL, namespace, run)
    for manifest in plan.create:
        try:
            kube.create_custom(TJ_PLURAL, manifest)
        except AlreadyExists:
            # Started by an earlier pass whose status write was lost: the same run, not a
            # second one (its name is the trigger's). Someone else's is not adopted.
            existing = kube.get_custom(
                TJ_PLURAL, namespace, manifest["metadata"]["name"], fresh=True
            )
            if existing is not None and not owned_by(existing, uid):
                message = (
                    f"a TrainingJob named {manifest['metadata']['name']} exists and is not ours"
                )
                post(body, [Event("Warning", "RunNameConflict", message)])
    previous = ct.status or ContinuousTrainingStatus()
    write_status(kube, PLURAL, body, previous.wire(), plan.status.wire())
    post(body, plan.events)
    for decision in plan.decided:
        metrics.trigger_decided(decision.trigger, decision.action)
    if plan.wake_at is not None:
        delay = (plan.wake_at - now).total_seconds()
        enqueue_after(KIND, namespace, name, partial(_reconcile, kube, namespace, name), delay)


def _reject(kube: Kube, body: Body, message: str, now: datetime) -> None:
    """A spec the operator cannot act on: Stalled with InvalidSpec, announced once, no retry
    until the spec changes (its update is an event)."""
    previous = ContinuousTrainingStatus.model_validate(body.get("status") or {})
    generation = body["metadata"].get("generation")
    stalled = next((c for c in previous.conditions if c.type == "Stalled"), None)
    if stalled and stalled.message == message and stalled.observed_generation == generation:
        return
    status = continuous.invalid_status(previous, generation, message, now)
    write_status(kube, PLURAL, body, previous.wire(), status.wire())
    post(body, [Event("Warning", "InvalidSpec", message[:1024])])
