"""Prometheus metrics: what the operator reconciles, how long that takes, what it produced.

Controllers call the helpers here (one line each); `mlops-operator run --metrics-port`
serves them with the default process and Python collectors (memory, CPU, open files).
Each metric is documented in docs/metrics.md; keep the two in step.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable
from typing import ParamSpec, TypeVar

from prometheus_client import (
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# `*_created` series double what Prometheus stores and nobody here reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

KINDS = ("TrainingJob", "Model", "ModelDeployment", "Dataset", "ContinuousTraining")
TRAININGJOB_PHASES = ("Pending", "Queued", "Running", "Suspended", "Succeeded", "Failed")
# A TrainingJob the operator has not yet written a status for.
NO_PHASE = "Unknown"
STRATEGIES = ("RollingUpdate", "Canary")
TRIGGERS = ("schedule", "onNewDataset", "onModelDeployment")
ACTIONS = ("Started", "Replaced", "Skipped", "Deferred")
# The ModelDeployment conditions exported per object, for alerts on one deployment.
MODELDEPLOYMENT_CONDITIONS = ("Ready", "Degraded", "Stalled", "Reconciling")

RECONCILES = Counter(
    "mlops_operator_reconcile",
    "Reconciles run, by kind and result (success or error).",
    ["kind", "result"],
)
RECONCILE_ERRORS = Counter(
    "mlops_operator_reconcile_errors",
    "Reconciles that raised (an API error, a conflict); the work queue runs them again.",
    ["kind"],
)
RETRIES = Counter(
    "mlops_operator_workqueue_retries",
    "Keys put back on the work queue after a failed reconcile, to run after their backoff.",
)
QUEUE_DEPTH = Gauge(
    "mlops_operator_workqueue_depth",
    "Objects waiting to be reconciled: queued now, or waiting out a retry's backoff.",
)
RECONCILE_SECONDS = Histogram(
    "mlops_operator_reconcile_duration_seconds",
    "Time one reconcile took, from reading the object to the last write.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
MODELS_REGISTERED = Counter(
    "mlops_operator_models_registered",
    "Models the operator created for successful TrainingJobs (hand-made Models not counted).",
)
# Incremented by the ModelDeployment controller.
ROLLOUTS = Counter(
    "mlops_operator_rollouts",
    "ModelDeployment rollouts started: a new model version began replacing the served one.",
    ["strategy"],
)
ROLLBACKS = Counter(
    "mlops_operator_rollbacks",
    "ModelDeployment rollouts undone automatically: the new version was not Ready in time,"
    " or its canary failed analysis.",
    ["strategy"],
)
# Incremented by the ContinuousTraining controller, once per recorded decision.
TRIGGER_DECISIONS = Counter(
    "mlops_operator_trigger_decisions",
    "ContinuousTraining triggers that fired, by trigger and what was decided.",
    ["trigger", "action"],
)
# The reasons a run fails with (docs/training.md); each starts at 0 in a namespace once a
# TrainingJob is seen there, so increase() counts a namespace's first failure too.
FAILURE_REASONS = (
    "BackoffLimitExceeded",
    "DeadlineExceeded",
    "OOMKilled",
    "ImagePullFailed",
    "JobDeleted",
    "JobNameConflict",
    "OutputInvalid",
    "InvalidSpec",
)
# Incremented by the TrainingJob controller when it writes a run's move to Failed: by the
# writer, once, so a restart's initial listing does not count old failures again.
TRAININGJOB_FAILURES = Counter(
    "mlops_operator_trainingjob_failures",
    "TrainingJobs that reached phase Failed, by namespace and failure reason.",
    ["namespace", "reason"],
)

# Known label values start at 0, so rate() and alerts work before the first event.
for _kind in KINDS:
    RECONCILE_ERRORS.labels(_kind)
    RECONCILE_SECONDS.labels(_kind)
    for _result in ("success", "error"):
        RECONCILES.labels(_kind, _result)
for _strategy in STRATEGIES:
    ROLLOUTS.labels(_strategy)
    ROLLBACKS.labels(_strategy)
for _trigger in TRIGGERS:
    for _action in ACTIONS:
        TRIGGER_DECISIONS.labels(_trigger, _action)

P = ParamSpec("P")
R = TypeVar("R")


def reconciled(kind: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorates a reconcile function: counts it, its errors and its duration for `kind`."""

    def decorate(work: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(work)
        def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            start = time.perf_counter()
            try:
                result = work(*args, **kwargs)
            except Exception:
                RECONCILES.labels(kind, "error").inc()
                RECONCILE_ERRORS.labels(kind).inc()
                raise
            finally:
                RECONCILE_SECONDS.labels(kind).observe(time.perf_counter() - start)
            RECONCILES.labels(kind, "success").inc()
            return result

        return timed

    return decorate


def retried() -> None:
    RETRIES.inc()


def queue_depth(depth: int) -> None:
    QUEUE_DEPTH.set(depth)


def model_registered() -> None:
    MODELS_REGISTERED.inc()


def rollout_started(strategy: str) -> None:
    ROLLOUTS.labels(strategy).inc()


def rolled_back(strategy: str) -> None:
    ROLLBACKS.labels(strategy).inc()


def trigger_decided(trigger: str, action: str) -> None:
    TRIGGER_DECISIONS.labels(trigger, action).inc()


def trainingjob_failed(namespace: str, reason: str) -> None:
    TRAININGJOB_FAILURES.labels(namespace, reason).inc()


class _Phases(Collector):
    """TrainingJobs by phase, as the watch last showed them: a gauge computed at scrape."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._phases: dict[tuple[str, str], str] = {}
        self._namespaces: set[str] = set()

    def seen(self, event: str | None, namespace: str, name: str, phase: str | None) -> None:
        with self._lock:
            if namespace not in self._namespaces:
                self._namespaces.add(namespace)
                for reason in FAILURE_REASONS:
                    TRAININGJOB_FAILURES.labels(namespace, reason)
            if event == "DELETED":
                self._phases.pop((namespace, name), None)
            else:
                self._phases[(namespace, name)] = phase or NO_PHASE

    def forget(self, namespace: str) -> None:
        with self._lock:
            if namespace in self._namespaces:
                self._namespaces.discard(namespace)
                for reason in FAILURE_REASONS:
                    TRAININGJOB_FAILURES.remove(namespace, reason)
            for key in [k for k in self._phases if k[0] == namespace]:
                del self._phases[key]

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            tally = Tally(self._phases.values())
        gauge = GaugeMetricFamily(
            "mlops_operator_trainingjobs",
            "TrainingJobs in the watched namespaces, by status.phase.",
            labels=["phase"],
        )
        for phase in sorted({*TRAININGJOB_PHASES, NO_PHASE, *tally}):
            gauge.add_metric([phase], tally[phase])
        yield gauge


_TRAININGJOBS = _Phases()
REGISTRY.register(_TRAININGJOBS)


def trainingjob_seen(event: str | None, namespace: str, name: str, phase: str | None) -> None:
    """Called for every watch event of a TrainingJob (`event` is the watch event type)."""
    _TRAININGJOBS.seen(event, namespace, name, phase)


class _DeploymentConditions(Collector):
    """Each ModelDeployment's conditions as the watch last showed them, computed at scrape."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._true: dict[tuple[str, str], frozenset[str]] = {}

    def seen(self, event: str | None, namespace: str, name: str, true: frozenset[str]) -> None:
        with self._lock:
            if event == "DELETED":
                self._true.pop((namespace, name), None)
            else:
                self._true[(namespace, name)] = true

    def forget(self, namespace: str) -> None:
        with self._lock:
            for key in [k for k in self._true if k[0] == namespace]:
                del self._true[key]

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            known = sorted(self._true.items())
        gauge = GaugeMetricFamily(
            "mlops_operator_modeldeployment_condition",
            "1 when that condition of the ModelDeployment is True, else 0.",
            labels=["namespace", "name", "type"],
        )
        for (namespace, name), true in known:
            for type_ in MODELDEPLOYMENT_CONDITIONS:
                gauge.add_metric([namespace, name, type_], int(type_ in true))
        yield gauge


_MODELDEPLOYMENTS = _DeploymentConditions()
REGISTRY.register(_MODELDEPLOYMENTS)


def modeldeployment_seen(
    event: str | None, namespace: str, name: str, conditions: list[dict[str, str]]
) -> None:
    """Called for every watch event of a ModelDeployment, with its status.conditions."""
    true = frozenset(c.get("type", "") for c in conditions if c.get("status") == "True")
    _MODELDEPLOYMENTS.seen(event, namespace, name, true)


def namespace_deleted(namespace: str) -> None:
    """Drop every series labelled with a namespace that is gone: kopf may stop watching it
    before its objects' DELETED events arrive, and per-namespace series must not pile up
    as namespaces come and go."""
    _TRAININGJOBS.forget(namespace)
    _MODELDEPLOYMENTS.forget(namespace)


def serve(port: int, host: str) -> None:
    """Serve /metrics from a background thread (prometheus-client's own HTTP server)."""
    start_http_server(port, addr=host)
