"""kopf handlers, one module per kind; thin: read, call builders, apply.

Importing this package registers every handler with kopf's default registry.
"""

import asyncio
import logging
import os
from collections.abc import Iterable
from functools import partial
from typing import Any

import kopf

from mlops_operator.controllers import (
    continuoustraining,
    dataset,
    model,
    modeldeployment,
    trainingjob,
    watchdog,
)
from mlops_operator.controllers.common import Ticker
from mlops_operator.kube import Kube

# How often every known object is reconciled again, whatever the watches said: a lost write
# or a missed event is repaired within this time. `mlops-operator run --resync-seconds`.
RESYNC_ENV = "MLOPS_RESYNC_SECONDS"
DEFAULT_RESYNC_SECONDS = 300.0

__all__ = ["continuoustraining", "dataset", "model", "modeldeployment", "trainingjob"]


class _NoEssence(kopf.AnnotationsDiffBaseStorage):
    """kopf builds each event's "essence" (a deep copy of the whole body) to detect changes
    for on.create/on.update handlers. We have none, so it is never used; building it was
    a tenth of the operator's CPU under load (py-spy, bench/training_latency.py --profile)."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        return {}

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Every handler is an event handler (level-triggered: each recomputes from what exists),
    # so kopf keeps no state on the objects: no finalizer, no progress or diff-base
    # annotations. The operator writes only status.
    settings.persistence.diffbase_storage = _NoEssence()
    # Our handlers post their own Events for lifecycle transitions (kopf.event); kopf's
    # per-handler "succeeded" chatter stays in the log and out of `kubectl describe`.
    settings.posting.level = logging.WARNING
    # Deadlines on kopf's own calls and watches (unset, an idle watch can go silent forever,
    # kopf#698): the server ends each watch after 5 minutes and kopf starts a new one; a
    # connection that stops answering is dropped after 30 s more.
    settings.networking.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.watching.connect_timeout = 10
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    kube = memo["kube"] = Kube.connect(fence=memo.get("fence"))
    seconds = float(os.environ.get(RESYNC_ENV) or DEFAULT_RESYNC_SECONDS)
    resync = Ticker("resync", seconds)
    resync.want(("all", ""), partial(_resync, kube))


@kopf.on.startup()
async def start_watchdog(memo: kopf.Memo, **_: Any) -> None:
    """With a way to be started again (`mlops-operator run` gives one), never run deaf."""
    restart = memo.get("restart")
    if restart is not None:
        memo["watchdog"] = asyncio.create_task(watchdog.run(restart), name="watchdog")


def _resync(kube: Kube) -> None:
    """Queue every cached object once more, echo or not (the queue coalesces duplicates)."""
    for namespace, name in kube.cache.keys(trainingjob.PLURAL):
        trainingjob.reconcile(kube, namespace, name)
    for namespace, name in kube.cache.keys(modeldeployment.PLURAL):
        modeldeployment.reconcile(kube, namespace, name)
    by_namespace: dict[str, list[str]] = {}
    for namespace, name in kube.cache.keys(model.PLURAL):
        by_namespace.setdefault(namespace, []).append(name)
    for namespace, names in by_namespace.items():
        model.refresh(kube, namespace, names)
    for namespace, name in kube.cache.keys(dataset.PLURAL):
        dataset.refresh(kube, namespace, name)
    for namespace, name in kube.cache.keys(continuoustraining.PLURAL):
        continuoustraining.reconcile(kube, namespace, name)
