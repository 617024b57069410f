"""Two replicas; the leader SIGKILLed in the middle of a canary step and of a burst of
registrations, again and again: the standby finishes both, no serving Deployment flaps,
nothing is registered twice. Measures the failover time (kill to the new holder's Lease)."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
from kubernetes import client

from tests.fixtures import Cluster
from tests.integration.test_modeldeployment import deployment, served_version
from tests.integration.test_trainingjob import model
from tests.k8s import SpecHistory, apply, status
from tests.polling import until

from .conftest import LEASE_NAMESPACE, SCALE, Supervised
from .registry import all_registered, assert_registered_once, runs, start_runs, unregistered

CANARY = {
    "type": "Canary",
    "canary": {"steps": [{"weight": 25, "pauseSeconds": 6}, {"weight": 50, "pauseSeconds": 6}]},
}


@pytest.fixture
def history(crds: Cluster, chaos_namespace: str) -> Iterator[SpecHistory]:
    specs = SpecHistory(crds.api, chaos_namespace)
    yield specs
    specs.stop()


def holder(cluster: Cluster, lease: str) -> str:
    leases = client.CoordinationV1Api(cluster.api)
    try:
        return leases.read_namespaced_lease(lease, LEASE_NAMESPACE).spec.holder_identity or ""
    except client.ApiException:
        return ""


def new_holder(cluster: Cluster, lease: str, old: str) -> bool:
    return holder(cluster, lease) not in ("", old)


def canary_at(cluster: Cluster, ns: str, weight: int) -> bool:
    return bool((status(cluster, ns, "mdep", "can").get("canary") or {}).get("weight") == weight)


def promoted(cluster: Cluster, ns: str, version: int) -> bool:
    found = status(cluster, ns, "mdep", "can")
    return found.get("currentVersion") == version and "canary" not in found


def test_the_standby_finishes_what_the_killed_leader_started(
    crds: Cluster,
    replicas: tuple[Supervised, str],
    chaos_namespace: str,
    history: SpecHistory,
    record: Callable[..., Any],
) -> None:
    pair, lease = replicas
    ns = chaos_namespace
    rng = random.Random(7)
    rounds = SCALE.failovers
    apply(crds, ns, *(model(v) for v in range(1, rounds + 2)))
    apply(crds, ns, deployment("can", version=1, replicas=4, strategy=CANARY))
    until(lambda: status(crds, ns, "mdep", "can").get("currentVersion") == 1, 90, "v1")
    names: list[str] = []
    failovers: list[float] = []
    for version in range(2, rounds + 2):
        apply(crds, ns, deployment("can", version=version, replicas=4, strategy=CANARY))
        burst = [f"burst-{version}-{i}" for i in range(3)]
        names += burst
        start_runs(crds, ns, runs(burst, "burst", rng, (1, 6)))
        until(partial(canary_at, crds, ns, 25), 60, f"the canary of version {version} at 25%")
        who = until(lambda: holder(crds, lease), 30, "a leader")
        leader = pair.holding(who)
        killed = time.monotonic()
        leader.kill()
        until(partial(new_holder, crds, lease, who), 60, "a new leader", every=0.1)
        failovers.append(time.monotonic() - killed)
        until(partial(promoted, crds, ns, version), 120, f"version {version} promoted")
        assert served_version(crds, ns, "can") == version

    until(
        lambda: all_registered(crds, ns, names),
        120,
        "every burst registered",
        explain=lambda: unregistered(crds, ns, names) + "\n" + pair.tails(),
    )
    assert_registered_once(crds, ns, "burst", names)
    assert not history.flaps(), f"a Deployment's spec came back: {history.flaps()}"
    # Each rollout changes the stable Deployment three times (25%, 50%, promoted): no more.
    changes = len(history.specs["can"]) - 1
    assert changes == 3 * rounds, f"the stable Deployment changed {changes} times"
    record(kills=rounds, failover_p50_s=round(statistics.median(failovers), 1),
           failover_max_s=round(max(failovers), 1))  # fmt: skip
