"""Model handlers: validate the registry entry, list who serves it, guard its deletion.

Only a Model that some ModelDeployment serves carries our finalizer: it is added when
the Model starts being served and removed when it stops, so deleting an unserved Model
(or a namespace of them) never waits on the operator.
"""

from __future__ import annotations

from fnmatch import fnmatch
from functools import partial
from typing import Any

import kopf
from pydantic import ValidationError

from mlops_operator import GROUP, VERSION, metrics
from mlops_operator.api import Model, ModelStatus, describe_errors
from mlops_operator.builders.conditions import Readiness, set_readiness
from mlops_operator.builders.meta import Event, some_names
from mlops_operator.builders.registry import model_readiness, served_by, serving_fields
from mlops_operator.controllers.common import enqueue, post, write_status
from mlops_operator.kube import Body, Kube, clock

PLURAL = "models"
MD_PLURAL = "modeldeployments"
IN_USE_FINALIZER = f"{GROUP}/in-use"


@kopf.on.event(GROUP, VERSION, PLURAL)
async def model_event(
    type: str | None,
    event: kopf.RawEvent,
    namespace: str | None,
    name: str,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """Every watch event, the initial listing included: validity, who serves it, and a
    deletion request (let through if unserved, otherwise say why it waits)."""
    kube: Kube = memo["kube"]
    if kube.seen(PLURAL, event) and type != "DELETED":
        refresh(kube, namespace or "", [name])


@kopf.on.event("", "v1", "namespaces")
async def namespace_event(
    type: str | None, body: kopf.Body, name: str, memo: kopf.Memo, **_: Any
) -> None:
    """A namespace being deleted: let its served Models go once nothing serves them; once
    gone, its metric series go too.

    kopf may stop watching a terminating namespace's objects before they are gone (it drops
    a namespace matched by `--namespace` pattern as soon as its deletion has no blockers
    listed), so the ModelDeployments' deletions may never be seen. The namespace controller
    updates the namespace's status as its content goes; each update (and the listing at
    startup) re-reads the held Models from the server.
    """
    if type == "DELETED":
        metrics.namespace_deleted(name)
        return
    watched = memo.get("namespaces") or ["*"]
    if body.get("metadata", {}).get("deletionTimestamp") and any(
        fnmatch(name, pattern) for pattern in watched
    ):
        kube: Kube = memo["kube"]
        enqueue("Namespace", "", name, partial(_release_served, kube, name))


def _release_served(kube: Kube, namespace: str) -> None:
    # From the server: kopf may never have listed this namespace (a restart after its
    # deletion began), and a namespace is terminating only for a few events.
    held = [
        model["metadata"]["name"]
        for model in kube.list_custom(PLURAL, namespace, fresh=True)
        if IN_USE_FINALIZER in (model["metadata"].get("finalizers") or [])
    ]
    if held:
        refresh(kube, namespace, held, fresh=True)


def refresh(kube: Kube, namespace: str, names: list[str], *, fresh: bool = False) -> None:
    """Recompute these Models' status (validity, key metric, who serves them) and finalizer.

    `fresh` reads from the server rather than the cache, for when watch events may have
    stopped (kopf stops watching a namespace that is being deleted).
    """
    for name in names:
        enqueue("Model", namespace, name, partial(_refresh, kube, namespace, name, fresh))


@metrics.reconciled("Model")
def _refresh(kube: Kube, namespace: str, name: str, fresh: bool) -> None:
    body = kube.get_custom(PLURAL, namespace, name, fresh=fresh)
    deployments = kube.list_custom(MD_PLURAL, namespace, fresh=fresh)
    if body is None:
        return
    serving = served_by(deployments, name)
    body, gone = _sync_finalizer(kube, body, serving)
    if gone:
        return  # the last finalizer is gone: so is the Model
    previous = ModelStatus.model_validate(body.get("status") or {})
    generation = body["metadata"].get("generation")
    try:
        model = Model.model_validate(body)
        ready, reason, message = model_readiness(model)
    except ValidationError as err:
        model, ready, reason, message = None, False, "InvalidSpec", "; ".join(describe_errors(err))
    if body["metadata"].get("deletionTimestamp"):
        ready, reason = False, "InUse" if serving else "Deleting"
        message = (
            f"deletion waits: still served by ModelDeployment {some_names(serving)}"
            if serving
            else "being deleted"
        )
    key = model.spec.key_metric if model else None
    metric = model.spec.metrics.get(key) if model and key else None
    # A Model waits only for its own deletion; anything else not Ready needs a new spec.
    deleting = reason in ("InUse", "Deleting")
    state: Readiness = "Ready" if ready else "Reconciling" if deleting else "Stalled"
    conditions = set_readiness(
        list(previous.conditions), state, reason, message,
        generation=generation, now=clock.now(),
    )  # fmt: skip
    status = previous.model_copy(
        update={
            "conditions": conditions,
            "observed_generation": generation,
            "key_metric": f"{key}={metric:g}" if key and metric is not None else None,
            **serving_fields(serving),
        }
    )
    if write_status(kube, PLURAL, body, previous.wire(), status.wire()) and not ready:
        was = next((c for c in previous.conditions if c.type == "Ready"), None)
        if was is None or was.reason != reason:
            blocked = reason == "InUse"
            post(body, [Event("Warning", "DeletionBlocked" if blocked else reason, message)])


def _sync_finalizer(kube: Kube, body: Body, serving: list[str]) -> tuple[Body, bool]:
    """Hold a served Model's deletion; release it as soon as nothing serves it.

    Returns the Model as it is now (the status write that follows must carry its new
    resourceVersion), and whether that release let a deleting Model go.
    """
    meta = body["metadata"]
    finalizers: list[str] = list(meta.get("finalizers") or [])
    held = IN_USE_FINALIZER in finalizers
    if serving and not held and not meta.get("deletionTimestamp"):
        wanted = [*finalizers, IN_USE_FINALIZER]
    elif not serving and held:
        wanted = [f for f in finalizers if f != IN_USE_FINALIZER]
    else:
        return body, False
    # resourceVersion makes this a compare-and-swap: another writer's finalizer is never lost.
    patch = {"metadata": {"finalizers": wanted, "resourceVersion": meta["resourceVersion"]}}
    patched = kube.patch_custom(PLURAL, meta["namespace"], meta["name"], patch)
    return patched, bool(meta.get("deletionTimestamp")) and not wanted
