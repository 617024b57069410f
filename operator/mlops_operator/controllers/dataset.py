"""Dataset handlers: validate the registry entry, list what was trained on it, and wake the
runs waiting for it.

A TrainingJob whose `dataset.ref` names a version that does not exist (or is not Ready)
waits with a condition saying so; each event of a Dataset of that name wakes it. `usedBy` is
refreshed when a run records the version it read and when a Model trained on it appears.
"""

from __future__ import annotations

from functools import partial
from typing import Any, cast

import kopf
from pydantic import ValidationError

from mlops_operator import GROUP, VERSION, metrics
from mlops_operator.api import Dataset, DatasetStatus, dataset_object_name, describe_errors
from mlops_operator.builders import datasets
from mlops_operator.builders.conditions import Readiness, set_readiness
from mlops_operator.builders.meta import Event
from mlops_operator.controllers import trainingjob
from mlops_operator.controllers.common import enqueue, post, write_status
from mlops_operator.kube import Body, Kube, clock

PLURAL = "datasets"


@kopf.on.event(GROUP, VERSION, PLURAL)
async def dataset_event(
    type: str | None, event: kopf.RawEvent, namespace: str | None, name: str, memo: kopf.Memo,
    **_: Any,
) -> None:  # fmt: skip
    kube: Kube = memo["kube"]
    news = kube.seen(PLURAL, event)
    if type == "DELETED":
        return
    if news:
        refresh(kube, namespace or "", name)
    # Every event, our own status writes included: becoming Ready is one of them.
    obj = cast(Body, event["object"])
    spec = obj.get("spec") or {}
    if datasets.is_ready(obj):
        _wake_waiting(kube, namespace or "", spec.get("datasetName"))


def _wake_waiting(kube: Kube, namespace: str, dataset_name: str | None) -> None:
    for tj in kube.list_custom(trainingjob.PLURAL, namespace):
        if dataset_name and datasets.waiting_on(tj) == dataset_name:
            trainingjob.reconcile(kube, namespace, tj["metadata"]["name"], first=True)


@kopf.on.event(GROUP, VERSION, trainingjob.PLURAL)
async def trainingjob_event(
    event: kopf.RawEvent, body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    """A run that recorded the registered version it reads: that version's usedBy."""
    record = (body.get("status") or {}).get("dataset")
    _refresh_record(memo["kube"], event, trainingjob.PLURAL, record, "trainingJobs")


@kopf.on.event(GROUP, VERSION, "models")
async def model_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A Model trained on a registered version: that version's usedBy."""
    record = ((body.get("spec") or {}).get("lineage") or {}).get("dataset")
    _refresh_record(memo["kube"], event, "models", record, "models")


def _refresh_record(
    kube: Kube, event: kopf.RawEvent, plural: str, record: dict[str, Any] | None, field: str
) -> None:
    """Refresh the Dataset a record (of the event's object) names, unless its usedBy lists
    the object already."""
    if not record or not record.get("name") or not record.get("version"):
        return
    # Fed here too: the refresh lists these objects, maybe before their own controller's
    # handler for this event has run.
    kube.seen(plural, event)
    meta = cast(Body, event["object"])["metadata"]
    namespace = meta.get("namespace") or ""
    name = dataset_object_name(str(record["name"]), int(record["version"]))
    body = kube.get_custom(PLURAL, namespace, name)
    if body is None:
        return
    listed = ((body.get("status") or {}).get("usedBy") or {}).get(field) or []
    if meta["name"] not in listed or event["type"] == "DELETED":
        refresh(kube, namespace, name)


def refresh(kube: Kube, namespace: str, name: str) -> None:
    enqueue("Dataset", namespace, name, partial(_refresh, kube, namespace, name))


@metrics.reconciled("Dataset")
def _refresh(kube: Kube, namespace: str, name: str) -> None:
    body = kube.get_custom(PLURAL, namespace, name)
    if body is None:
        return
    previous = DatasetStatus.model_validate(body.get("status") or {})
    generation = body["metadata"].get("generation")
    used_by = previous.used_by
    try:
        ds = Dataset.model_validate(body)
        ready, reason, message = datasets.readiness(ds)
        used_by = datasets.used_by(
            ds,
            kube.list_custom(trainingjob.PLURAL, namespace),
            kube.list_custom("models", namespace),
        )
    except ValidationError as err:
        ready, reason, message = False, "InvalidSpec", "; ".join(describe_errors(err))[:4096]
    # A Dataset is immutable: one that is not Ready stays so.
    state: Readiness = "Ready" if ready else "Stalled"
    conditions = set_readiness(list(previous.conditions), state, reason, message,
                               generation=generation, now=clock.now())  # fmt: skip
    status = previous.model_copy(
        update={"conditions": conditions, "observed_generation": generation, "used_by": used_by}
    )
    if write_status(kube, PLURAL, body, previous.wire(), status.wire()):
        was = next((c for c in previous.conditions if c.type == "Ready"), None)
        if was is None or was.reason != reason:
            event = (
                Event("Normal", "Registered", message)
                if ready
                else Event("Warning", reason, message)
            )
            post(body, [event])
