"""ModelDeployment handlers: thin. Read Models and Deployments, plan, apply.

Every trigger (the ModelDeployment, a Model of its model name, one of its children,
the rollout clock while a rollout is in progress) funnels into `reconcile`, which recomputes
the plan from what exists now.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import Any

import kopf
from pydantic import ValidationError

from mlops_operator import GROUP, VERSION, metrics
from mlops_operator.api import Model, ModelDeployment, ModelDeploymentStatus, describe_errors
from mlops_operator.builders import analysis, drift, serving
from mlops_operator.builders.conditions import condition, set_condition, set_readiness, without
from mlops_operator.builders.meta import Event, not_ours, owned_by
from mlops_operator.builders.pods import restarts, why_not_ready
from mlops_operator.builders.registry import model_readiness
from mlops_operator.builders.rollout import (
    AnalysisDue,
    Plan,
    analysis_due,
    plan,
    resolve,
    skipped_version,
    track,
)
from mlops_operator.controllers import model as model_controller
from mlops_operator.controllers.common import (
    Ticker,
    enqueue,
    maybe_exit_for_fault_test,
    post,
    write_status,
)
from mlops_operator.kube import Body, Kube, clock, current_namespace
from mlops_operator.monitor_client import Asked, MonitorError, read_drift

PLURAL = "modeldeployments"
MD_LABEL = serving.MD_LABEL
# The image whose `storage-init` subcommand fetches artifacts: the operator's own.
STORAGE_IMAGE = os.environ.get("MLOPS_OPERATOR_IMAGE", "mlops-operator:0.1.0")
# Whose pods may read the monitors (the serving pods' NetworkPolicy): the operator's own, in
# its namespace, and the Prometheus namespaces the install names (comma-separated).
OPERATOR_NAMESPACE = os.environ.get("POD_NAMESPACE") or current_namespace()
SCRAPE_NAMESPACES = [
    n.strip() for n in os.environ.get("MLOPS_SCRAPE_NAMESPACES", "").split(",") if n.strip()
]
# While a rollout is in progress, look again this often: pauses and deadlines need a clock
# (readiness itself arrives as Deployment events, so this can be coarse).
TICK_SECONDS = 5.0
# How often to see which ModelDeployments are due a drift read (each at its own
# spec.monitoring.intervalSeconds, from 10 s).
DRIFT_TICK_SECONDS = 10.0


@kopf.on.event(GROUP, VERSION, PLURAL)
async def deployment_event(
    type: str | None,
    event: kopf.RawEvent,
    body: kopf.Body,
    name: str,
    namespace: str | None,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """Every watch event, the initial listing included (that is how a restart resumes).
    A deleted one no longer serves its Models (their deletion may be waiting on that)."""
    conditions = (body.get("status") or {}).get("conditions") or []
    metrics.modeldeployment_seen(type, namespace or "", name, conditions)
    kube: Kube = memo["kube"]
    news = kube.seen(PLURAL, event)
    if type == "DELETED":
        status = body.get("status") or {}
        models = [m for m in (status.get("currentModel"), _canary_model(dict(body))) if m]
        model_controller.refresh(kube, namespace or "", models)
    elif news:
        reconcile(kube, namespace or "", name)


# ModelDeployments with a rollout in progress are looked at every TICK_SECONDS.
_rollouts = Ticker("rollouts", TICK_SECONDS)
# Served ModelDeployments, for their drift, and when each was last read (monotonic).
_drift_reads = Ticker("drift", DRIFT_TICK_SECONDS)
_last_drift_read: dict[tuple[str, str], float] = {}


# What each Model looked like when last seen, as far as choosing a version cares: its own
# status updates (servedBy, written because of ModelDeployments) must not wake them all.
_model_fingerprints: dict[tuple[str, str], str] = {}


@kopf.on.event(GROUP, VERSION, "models")
async def model_event(
    type: str | None,
    event: kopf.RawEvent,
    body: kopf.Body,
    namespace: str | None,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """A new, relabelled or deleted Model may change the version to serve."""
    kube: Kube = memo["kube"]
    # Both controllers see every Model event; whichever runs first feeds the cache.
    kube.seen("models", event)
    key = (namespace or "", body["metadata"]["name"])
    seen = json.dumps(
        [dict(body["metadata"].get("labels") or {}), dict(body.get("spec") or {}),
         bool(body["metadata"].get("deletionTimestamp")), type == "DELETED"],
        sort_keys=True,
    )  # fmt: skip
    if _model_fingerprints.get(key) == seen:
        return
    if type == "DELETED":
        _model_fingerprints.pop(key, None)
    else:
        _model_fingerprints[key] = seen
    model_name = (body.get("spec") or {}).get("modelName")
    work = partial(_reconcile_followers, kube, namespace or "", model_name)
    enqueue("followers of Model", namespace or "", str(model_name), work)


def _reconcile_followers(kube: Kube, namespace: str, model_name: str | None) -> None:
    """Reconcile the ModelDeployments of this model name."""
    for md in kube.list_custom(PLURAL, namespace):
        if md["spec"]["model"]["name"] == model_name:
            reconcile(kube, namespace, md["metadata"]["name"])


@kopf.on.event("apps", "v1", "deployments", labels={MD_LABEL: kopf.PRESENT})
@kopf.on.event("", "v1", "services", labels={MD_LABEL: kopf.PRESENT})
@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers", labels={MD_LABEL: kopf.PRESENT})
@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels={MD_LABEL: kopf.PRESENT})
@kopf.on.event("networking.k8s.io", "v1", "networkpolicies", labels={MD_LABEL: kopf.PRESENT})
async def child_changed(
    type: str | None,
    event: kopf.RawEvent,
    resource: kopf.Resource,
    labels: kopf.Labels,
    namespace: str | None,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """Readiness changes, and hand edits or deletions to put back."""
    kube: Kube = memo["kube"]
    if kube.seen(resource.plural, event):
        reconcile(kube, namespace or "", labels[MD_LABEL])


def reconcile(kube: Kube, namespace: str, name: str) -> None:
    enqueue("ModelDeployment", namespace, name, partial(_reconcile, kube, namespace, name))


@metrics.reconciled("ModelDeployment")
def _reconcile(kube: Kube, namespace: str, name: str) -> None:
    body = kube.get_custom(PLURAL, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        _rollouts.want((namespace, name), None)
        _drift_reads.want((namespace, name), None)
        _last_drift_read.pop((namespace, name), None)
        return
    try:
        md = ModelDeployment.model_validate(body)
    except ValidationError as err:
        _stall(kube, body, "InvalidSpec", "; ".join(describe_errors(err)))
        return
    try:
        _all_ours(kube, md, _named_children(md))
    except NameConflict as err:
        _stall(kube, body, "NameConflict", str(err))
        return
    models = _servable_models(kube, namespace, md.spec.model.name)
    status = md.status or ModelDeploymentStatus()
    current = next((m for m in models if m.metadata.name == status.current_model), None)
    target, reason = resolve(md.spec.model, models, current, skipped_version(md))
    stable = track(kube.get_deployment(namespace, serving.deployment_name(md, "stable"), MD_LABEL))
    canary = track(kube.get_deployment(namespace, serving.deployment_name(md, "canary"), MD_LABEL))
    if canary.exists:  # a restart during a step fails it: count them (a LIST while it lasts)
        selector = f"{MD_LABEL}={name},{serving.TRACK_LABEL}=canary"
        canary = replace(canary, restarts=restarts(kube.list_pods(namespace, selector)))
    now = clock.now()
    due = analysis_due(md, now)
    judgement = _analyse(kube, md, due) if due else None
    why = _why_not_ready(kube, md, now, stuck=stable.stuck or canary.stuck)
    decided = plan(md, target, reason, stable, canary, now, why, judgement)
    decided_status = decided.status.model_copy(update={"url": serving.url(md)})
    # The decision is recorded before it is carried out. A process that dies between the two
    # writes leaves a status its successor goes on from (it applies the step again); the
    # other order left children one step ahead of a status that said the step before, and a
    # successor that found the new step's pods not yet Ready put the old step's replicas
    # back (a Deployment flapping in the failover test). A write refused as stale (409)
    # applies nothing.
    write_status(kube, PLURAL, body, status.wire(), decided_status.wire())
    if _advanced(status, decided_status):
        maybe_exit_for_fault_test("after-canary-step-status")
    try:
        _apply(kube, md, decided, {m.spec.version: m for m in models}, canary=canary.exists)
    except NameConflict as err:  # the canary's name, which the check above leaves out
        _stall(kube, body, "NameConflict", str(err))
        return
    before = {status.current_model, _canary_model(body)}
    after = {decided_status.current_model, _canary_model({**body, "status": decided_status.wire()})}
    if before != after:
        # Only the Models this one started or stopped serving have a new servedBy.
        model_controller.refresh(kube, namespace, sorted(m for m in before ^ after if m))
    post(body, decided.events)
    strategy = md.spec.strategy.type
    for event in decided.events:
        if event.reason == "RolloutStarted":
            metrics.rollout_started(strategy)
        elif event.reason in ("RolledBack", "AnalysisFailed"):
            metrics.rolled_back(strategy)
    tick = partial(reconcile, kube, namespace, name) if decided.in_progress else None
    _rollouts.want((namespace, name), tick)
    _drift_reads.want((namespace, name), partial(_drift_due, kube, namespace, name))


def _advanced(before: ModelDeploymentStatus, after: ModelDeploymentStatus) -> bool:
    """The pass moved a canary to a later step of the same version."""
    was, now = before.canary, after.canary
    if was is None or now is None:
        return False
    return now.version == was.version and now.step > was.step


def _drift_due(kube: Kube, namespace: str, name: str) -> None:
    """Queue a drift read once spec.monitoring.intervalSeconds have passed since the last
    (kept in memory: after a restart every ModelDeployment is read once, soon)."""
    body = kube.get_custom(PLURAL, namespace, name)
    if body is None:
        return
    interval = ((body.get("spec") or {}).get("monitoring") or {}).get("intervalSeconds", 60)
    now = time.monotonic()
    if now - _last_drift_read.get((namespace, name), -math.inf) < interval:
        return
    _last_drift_read[(namespace, name)] = now
    enqueue("ModelDeployment drift", namespace, name, partial(_read_drift, kube, namespace, name))


@metrics.reconciled("ModelDeployment")
def _read_drift(kube: Kube, namespace: str, name: str) -> None:
    """Read the monitors of the served version's pods; write status.drift and Drifted."""
    body = kube.get_custom(PLURAL, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return
    try:
        md = ModelDeployment.model_validate(body)
    except ValidationError:
        return  # _reconcile says why
    status = md.status or ModelDeploymentStatus()
    served = status.current_model
    model_body = kube.get_custom("models", namespace, served) if served else None
    if not md.spec.monitoring.enabled or model_body is None or status.current_version is None:
        verdict = None
    else:
        model = Model.model_validate(model_body)
        if model.spec.artifact.reference is None:
            verdict = drift.no_reference(model.metadata.name or "")
        else:
            verdict = _assess(kube, md, status.current_version)
    before = condition(list(status.conditions), "Drifted")
    unchanged = (
        verdict is not None
        and before is not None
        and (before.status, before.reason) == (_tristate(verdict.drifted), verdict.reason)
        and not drift.changed(status.drift, verdict.drift)
    )
    if unchanged:  # same verdict, numbers within the noise: nothing worth a write
        return
    if verdict is None:
        new = status.model_copy(
            update={"drift": None, "conditions": without(list(status.conditions), "Drifted")}
        )
    else:
        conditions = set_condition(
            list(status.conditions), "Drifted", verdict.drifted, verdict.reason,
            verdict.message, generation=md.metadata.generation, now=clock.now(),
        )  # fmt: skip
        new = status.model_copy(update={"drift": verdict.drift, "conditions": conditions})
    write_status(kube, PLURAL, body, status.wire(), new.wire())
    was = before.status if before else None
    if verdict is not None and verdict.drifted and was != "True":
        post(body, [Event("Warning", "DriftDetected", verdict.message)])
    elif was == "True" and (verdict is None or not verdict.drifted):
        message = verdict.message if verdict else "monitoring is off"
        post(body, [Event("Normal", "DriftCleared", message)])


def _tristate(value: bool | None) -> str:
    return "Unknown" if value is None else str(value)


def _assess(kube: Kube, md: ModelDeployment, version: int) -> drift.Verdict:
    window = md.spec.monitoring.window_seconds
    readings, failures = _windows(kube, md, "stable", version, window)
    return drift.assess(readings, failures, md.spec.monitoring, version, clock.now())


def _analyse(kube: Kube, md: ModelDeployment, due: AnalysisDue) -> analysis.Judgement:
    """The canary analysis: both versions' monitors over the step's traffic."""
    canary = md.spec.strategy.canary
    assert canary is not None
    assert canary.analysis is not None
    current = md.status.current_version if md.status else None
    seconds = due.window_seconds
    canary_readings, failures = _windows(kube, md, "canary", due.version, seconds)
    if not canary_readings:
        why = "; ".join(failures[:3]) or "no Ready pod of it"
        return analysis.Judgement("Waiting", f"no monitor of the canary answered: {why}")
    stable_readings, _ = _windows(kube, md, "stable", current, seconds) if current else ([], [])
    return analysis.judge(
        canary.analysis,
        md.spec.monitoring,
        analysis.traffic(canary_readings),
        analysis.traffic(stable_readings),
        seconds,
    )


def _windows(
    kube: Kube, md: ModelDeployment, track_name: str, version: int, seconds: int
) -> tuple[list[dict[str, Any]], list[str]]:
    """The /drift windows of the Ready pods of one track and version, and why any failed."""
    namespace, name = md.metadata.namespace or "", md.metadata.name or ""
    selector = (
        f"{MD_LABEL}={name},{serving.TRACK_LABEL}={track_name},{serving.VERSION_LABEL}={version}"
    )
    readings, failures = [], []
    for pod in kube.list_pods(namespace, selector):
        ip = (pod.get("status") or {}).get("podIP")
        if not ip or not _pod_ready(pod):
            continue
        try:
            asked = Asked(name, version, pod["metadata"]["name"])
            readings.append(read_drift(ip, serving.MONITOR_ADMIN_PORT, seconds, asked))
        except MonitorError as err:
            failures.append(f"pod {pod['metadata']['name']}: {err}")
    return readings, failures


def _pod_ready(pod: Body) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _why_not_ready(kube: Kube, md: ModelDeployment, now: datetime, *, stuck: bool) -> str | None:
    """What the pods of a rollout past its deadline (ours, or a child Deployment's own:
    `stuck`) say about themselves (a failed storage-init, an image that cannot be pulled),
    read only then: one LIST per failed rollout, not one per reconcile."""
    history = md.status.history if md.status else []
    if not history or history[0].outcome != "Progressing":
        return None
    late = (now - history[0].started_at).total_seconds() > md.spec.progress_deadline_seconds
    if not (late or stuck):
        return None
    selector = f"{MD_LABEL}={md.metadata.name},{serving.VERSION_LABEL}={history[0].version}"
    return why_not_ready(kube.list_pods(md.metadata.namespace or "", selector))


def _servable_models(kube: Kube, namespace: str, model_name: str) -> list[Model]:
    """Models of this model name that parse, are valid to serve, and are not being deleted."""
    servable = []
    for body in kube.list_custom("models", namespace):
        if (body.get("spec") or {}).get("modelName") != model_name:
            continue
        if body["metadata"].get("deletionTimestamp"):
            continue
        try:
            model = Model.model_validate(body)
        except ValidationError:
            continue
        if model_readiness(model)[0]:
            servable.append(model)
    return servable


class NameConflict(Exception):
    """A child's name is held by an object this ModelDeployment does not control."""


def _optional_children(md: ModelDeployment) -> list[tuple[str, str, Body | None]]:
    """(kind, name, manifest or None when the spec does not ask for it) of the children
    beside the Deployments and the Service."""
    policy = serving.build_network_policy(md, OPERATOR_NAMESPACE, SCRAPE_NAMESPACES)
    return [
        ("HorizontalPodAutoscaler", md.metadata.name or "", serving.build_hpa(md)),
        ("PodDisruptionBudget", md.metadata.name or "", serving.build_pdb(md)),
        ("NetworkPolicy", serving.network_policy_name(md), policy),
    ]


def _named_children(md: ModelDeployment) -> list[tuple[str, str]]:
    """The children the spec asks for, the canary aside: it is checked when it is made, so
    that a ModelDeployment without one does not look its name up on every pass."""
    wanted = [(kind, name) for kind, name, manifest in _optional_children(md) if manifest]
    stable = serving.deployment_name(md, "stable")
    return [("Deployment", stable), ("Service", md.metadata.name or ""), *wanted]


def _all_ours(kube: Kube, md: ModelDeployment, children: list[tuple[str, str]]) -> None:
    """Raise NameConflict for the first of these names held by an object this
    ModelDeployment does not control: it is never applied over (which would take it over,
    and garbage collection would delete it with the ModelDeployment) nor deleted."""
    namespace, uid = md.metadata.namespace or "", md.metadata.uid or ""
    for kind, name in children:
        existing = kube.child(kind, namespace, name)
        if existing is not None and not owned_by(existing, uid):
            raise NameConflict(not_ours(kind, existing, "ModelDeployment", md.metadata.name or ""))


def _delete_ours(kube: Kube, md: ModelDeployment, kind: str, name: str) -> None:
    """Delete a child the spec no longer asks for, if it is this ModelDeployment's (the
    cache holds ours: a name not there has nothing of ours to delete)."""
    existing = kube.child(kind, md.metadata.namespace or "", name, cached=True)
    if existing is not None and owned_by(existing, md.metadata.uid or ""):
        kube.delete(kind, md.metadata.namespace or "", name, existing["metadata"]["uid"])


def _apply(
    kube: Kube,
    md: ModelDeployment,
    decided: Plan,
    models: dict[int, Model],
    *,
    canary: bool,
) -> None:
    """Carry out the plan on the children; raises NameConflict before changing anything
    if the canary's name is someone else's."""
    if decided.canary is not None:
        _all_ours(kube, md, [("Deployment", serving.deployment_name(md, "canary"))])
    tracks: tuple[tuple[serving.Track, tuple[int, int | None] | None], ...] = (
        ("stable", decided.stable),
        ("canary", decided.canary),
    )
    for track_name, wanted in tracks:
        if wanted is not None and wanted[0] in models:
            version, replicas = wanted
            kube.apply(
                serving.build_deployment(
                    md,
                    models[version],
                    track=track_name,
                    replicas=replicas,
                    storage_image=STORAGE_IMAGE,
                )
            )
    if decided.canary is None and canary:
        _delete_ours(kube, md, "Deployment", serving.deployment_name(md, "canary"))
    if decided.stable is not None:
        kube.apply(serving.build_service(md))
    for kind, name, manifest in _optional_children(md):
        if manifest is None:
            _delete_ours(kube, md, kind, name)
        else:
            kube.apply(manifest)


def _canary_model(body: Body) -> str | None:
    canary = (body.get("status") or {}).get("canary")
    if not canary:
        return None
    return f"{body['spec']['model']['name']}-v{canary['version']}"


def _stall(kube: Kube, body: Body, reason: str, message: str) -> None:
    """What no retry can fix until someone acts (a spec the API server should have refused,
    a child's name held by someone else's object): Stalled with the reason, an Event once."""
    meta = body["metadata"]
    previous = ModelDeploymentStatus.model_validate(body.get("status") or {})
    conditions = set_readiness(
        list(previous.conditions),
        "Stalled",
        reason,
        message[:4096],
        generation=meta.get("generation"),
        now=clock.now(),
    )
    status = previous.model_copy(
        update={"conditions": conditions, "observed_generation": meta.get("generation")}
    )
    if write_status(kube, PLURAL, body, previous.wire(), status.wire()):
        post(body, [Event("Warning", reason, message)])
