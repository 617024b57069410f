"""The API server, or etcd under it, stopped for a minute in the middle of training runs and
a canary rollout, then started again: the operator neither crashes nor hangs, and every
piece of work finishes once."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import controlplane
import pytest
from kubernetes import client

from tests.fixtures import Cluster
from tests.integration.test_modeldeployment import deployment, served_version
from tests.integration.test_trainingjob import model
from tests.k8s import apply, items, status
from tests.polling import until

from .conftest import LEASE_NAMESPACE, SCALE, Supervised
from .registry import all_registered, assert_registered_once, runs, start_runs, unregistered

CANARY = {"type": "Canary", "canary": {"steps": [{"weight": 50, "pauseSeconds": 20}]}}

RESTRICTED = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
PLAIN_JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "plain"},
    "spec": {
        "template": {
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {"name": "main", "image": "registry.example/plain:1",
                     "securityContext": RESTRICTED}
                ],
            }
        }
    },
}  # fmt: skip


def rolled_out(cluster: Cluster, namespace: str, version: int) -> bool:
    md = status(cluster, namespace, "mdep", "web")
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in md.get("conditions", []))
    return ready and md.get("currentVersion") == version and "canary" not in md


def registration_lag(cluster: Cluster, namespace: str) -> float:
    """The longest wait between a run's Job completing and its Model existing (whole
    seconds, as the API server stamps them): the operator's own share of the recovery."""
    jobs = items(cluster, namespace, "jobs")
    done = {j["metadata"]["name"]: j["status"]["completionTime"]
            for j in jobs if (j.get("status") or {}).get("completionTime")}  # fmt: skip
    lags = [
        (_time(m["metadata"]["creationTimestamp"]) - _time(done[job])).total_seconds()
        for m in items(cluster, namespace, "mdl")
        if (job := m["spec"].get("lineage", {}).get("trainingJob", {}).get("name")) in done
    ]
    return max(lags, default=0.0)


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def renewed_since(cluster: Cluster, lease: str, since: datetime) -> bool:
    """Whether some replica holds the Lease and renewed it after `since`."""
    spec = client.CoordinationV1Api(cluster.api).read_namespaced_lease(lease, LEASE_NAMESPACE).spec
    return bool(spec.holder_identity and spec.renew_time and spec.renew_time > since)


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_a_stopped_control_plane_loses_nothing(
    crds: Cluster,
    replicas: tuple[Supervised, str],
    chaos_namespace: str,
    component: str,
    record: Callable[..., Any],
) -> None:
    pair, lease = replicas
    ns = chaos_namespace
    rng = random.Random(component)
    apply(crds, ns, model(1), model(2), deployment("web", version=1, replicas=2))
    until(lambda: rolled_out(crds, ns, 1), 90, "version 1 served")
    apply(crds, ns, deployment("web", version=2, replicas=2, strategy=CANARY))
    names = [f"before-{i}" for i in range(10)]
    start_runs(crds, ns, runs(names, "churn", rng, (5, 40)))
    until(lambda: status(crds, ns, "mdep", "web").get("canary"), 60, "the canary")

    stopped = controlplane.Component(component)
    stopped.kill()
    try:
        # The fault itself lasts this long; during it, the replicas must stay alive (a
        # leader that cannot renew its Lease exits and comes back, as designed).
        time.sleep(SCALE.outage_seconds)
    finally:
        stopped.start()
    controlplane.wait_api_ready()
    back, back_at = time.monotonic(), datetime.now(UTC)
    after = ["after-0"]
    start_runs(crds, ns, runs(after, "churn", rng, (1, 2)))
    # The cluster's own pace after the fault: a plain Job, no operator involved.
    apply(crds, ns, PLAIN_JOB)
    until(partial(renewed_since, crds, lease, back_at), 60, "a leader again")
    leading = time.monotonic() - back
    until(lambda: status(crds, ns, "job", "plain").get("succeeded"), 240, "the plain Job")
    plain = time.monotonic() - back
    until(
        lambda: all_registered(crds, ns, names + after),
        240,
        "every run registered",
        explain=lambda: unregistered(crds, ns, names + after) + "\n" + pair.tails(),
    )
    until(
        lambda: rolled_out(crds, ns, 2),
        120,
        "version 2 promoted",
        explain=lambda: f"{status(crds, ns, 'mdep', 'web')}\n{pair.tails()}",
    )
    converged = time.monotonic() - back

    assert_registered_once(crds, ns, "churn", names + after)
    lag = registration_lag(crds, ns)
    assert served_version(crds, ns, "web") == 2
    # Exits are only the designed ones (exit 1, logged so): a leader that lost its Lease,
    # or a replica whose watch stream kopf gave up on (controllers/watchdog.py).
    logs = [r.log() for r in pair.replicas]
    lost = sum(log.count("lost; stopping") for log in logs)
    deaf = sum(log.count("a watch stream failed") for log in logs)
    assert set(pair.exits) <= {1}, pair.exits
    assert len(pair.exits) <= lost + deaf, pair.exits
    record(component=component, outage_s=SCALE.outage_seconds,
           leading_again_s=round(leading, 1), plain_job_done_s=round(plain, 1),
           converged_s=round(converged, 1), worst_job_done_to_model_s=lag,
           replica_exits=len(pair.exits), watch_restarts=deaf)  # fmt: skip
