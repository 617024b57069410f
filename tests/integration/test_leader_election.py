"""Two operator replicas and one Lease: only the holder reconciles; when it dies, the other
takes over and finishes the work, with nothing done twice."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures import fresh_namespace
from tests.k8s import apply, get, items, wait

from .conftest import Cluster, Operator
from .test_trainingjob import report, trainingjob

LEASE_NAMESPACE = "mlops-system"


@pytest.fixture
def pair(crds: Cluster, tmp_path: Path) -> Iterator[tuple[Operator, Operator, str]]:
    """Two replicas sharing one Lease, watching `le-*` namespaces (no other operator does)."""
    lease = f"le-{uuid.uuid4().hex[:8]}"
    args = [f"--lease-name={lease}"]
    replicas = [Operator(crds, tmp_path / f"replica-{i}.log", watch="le-*", args=args)
                for i in range(2)]  # fmt: skip
    for replica in replicas:
        replica.start()  # /healthz answers as soon as it runs, leader or standby
    yield replicas[0], replicas[1], lease
    for replica in replicas:
        replica.stop()


def holder(cluster: Cluster, lease: str) -> str:
    out = cluster.kubectl("get", "lease", lease, "-n", LEASE_NAMESPACE, "-o", "json").stdout
    return str(json.loads(out)["spec"].get("holderIdentity") or "")


def wait_for_holder(cluster: Cluster, lease: str, not_: str = "") -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = cluster.kubectl("get", "lease", lease, "-n", LEASE_NAMESPACE, check=False)
        if found.returncode == 0 and (who := holder(cluster, lease)) and who != not_:
            return who
        time.sleep(0.5)
    raise AssertionError(f"no new holder of Lease {lease}")


def leader_of(pair: tuple[Operator, Operator, str], who: str) -> tuple[Operator, Operator]:
    first, second, _ = pair
    return (first, second) if f"{who} holds Lease" in first.log() else (second, first)


def test_the_standby_takes_over_when_the_leader_dies(
    crds: Cluster, pair: tuple[Operator, Operator, str]
) -> None:
    _, _, lease = pair
    who = wait_for_holder(crds, lease)
    leader, standby = leader_of(pair, who)
    assert "holds Lease" not in standby.log(), "one leader at a time"
    namespace = next(fresh_namespace(crds, "le"))
    sim = {"sim.mlops.seed.dev/message": report(), "sim.mlops.seed.dev/duration": "4s"}
    apply(crds, namespace, trainingjob("failover", sim=sim))
    wait(crds, namespace, "tj/failover", "jsonpath={.status.phase}=Running")
    leader.kill()  # SIGKILL: the Lease is not released, the standby must wait it out
    new = wait_for_holder(crds, lease, not_=who)
    assert new != who
    wait(crds, namespace, "tj/failover", "condition=Ready", timeout=120)
    assert [j["metadata"]["name"] for j in items(crds, namespace, "jobs")] == ["failover"]
    assert [m["metadata"]["name"] for m in items(crds, namespace, "mdl")] == ["iris-v1"]
    assert get(crds, namespace, "tj", "failover")["status"]["registeredModel"] == "iris-v1"
    crds.kubectl("delete", "namespace", namespace, "--wait=false")


def test_a_clean_shutdown_hands_the_lease_over(
    crds: Cluster, pair: tuple[Operator, Operator, str]
) -> None:
    _, _, lease = pair
    who = wait_for_holder(crds, lease)
    leader, standby = leader_of(pair, who)
    leader.stop()  # SIGTERM: the leader releases the Lease on its way out
    assert leader.proc is not None
    assert leader.proc.returncode == 0, leader.log()
    assert "released Lease" in leader.log()
    new = wait_for_holder(crds, lease, not_=who)
    assert f"{new} holds Lease" in standby.log()
