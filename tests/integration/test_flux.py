"""Flux judges us: a Git repository served locally, Flux's own source- and kustomize-
controllers (tests/flux.py) applying it with `wait: true`, and kstatus, Flux's health check,
reading the conditions our operator writes. No healthCheckExprs: the default check."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.flux import NAMESPACE, Flux, git_repository, kustomization, reconcile_now
from tests.gitserver import GitServer
from tests.k8s import apply, condition, get, wait, wait_new

from .conftest import Cluster
from .test_trainingjob import report, trainingjob

KS = "kustomizations.kustomize.toolkit.fluxcd.io"


@pytest.fixture(scope="module")
def flux(
    crds: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Flux, GitServer]]:
    workdir = tmp_path_factory.mktemp("flux")
    flux = Flux(crds, workdir)
    with GitServer(workdir / "git") as server:
        try:
            flux.start()
            yield flux, server
        finally:
            try:
                # Deleted while the controllers run, so kustomize-controller prunes what it
                # applied.
                crds.kubectl("delete", "-n", NAMESPACE, "--all", "--timeout=120s",
                             f"{KS},gitrepositories.source.toolkit.fluxcd.io",
                             timeout=150)  # fmt: skip
            finally:
                flux.stop()


def deployment(name: str, model: str) -> dict[str, Any]:
    return {
        "apiVersion": "mlops.seed.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {"model": {"name": model, "version": 1}, "runtime": {"preset": "mlserver"}},
    }


def sync(cluster: Cluster, server: GitServer, name: str, target: str,
         objects: list[dict[str, Any]]) -> tuple[Path, str]:  # fmt: skip
    """A repository `name` holding `objects` under apps/, and Flux syncing it into `target`."""
    work = server.repository(name)
    sha = GitServer.commit(work, "the run and its serving", {
        "apps/objects.yaml": yaml.safe_dump_all(objects),
    })  # fmt: skip
    apply(cluster, NAMESPACE, git_repository(name, server.url(name)),
          kustomization(name, "./apps", target))  # fmt: skip
    return work, sha


def ks_ready(cluster: Cluster, name: str) -> dict[str, Any]:
    return condition(get(cluster, NAMESPACE, KS, name), "Ready")


def test_a_kustomization_is_ready_only_when_our_objects_are_and_a_no_op_commit_writes_nothing(
    cluster: Cluster, op_namespace: str, flux: tuple[Flux, GitServer]
) -> None:
    engine, server = flux
    ns = op_namespace
    sim = {"sim.mlops.seed.dev/message": report(), "sim.mlops.seed.dev/duration": "25s"}
    run = trainingjob("flux-run", model="flux-iris", sim=sim)
    objects = [run, deployment("flux-web", "flux-iris")]
    # Ours first, as they will be in Git: kstatus reads an object the operator has not yet
    # given a status as Current (docs/gitops.md), and Flux's first health poll may come
    # before that; applied first, Flux meets them already reporting.
    apply(cluster, ns, *objects)
    wait_new(cluster, ns, "tj/flux-run", "jsonpath={.status.phase}=Running", 120)
    wait_new(cluster, ns, "mdep/flux-web", "jsonpath={.status.observedGeneration}=1", 120)
    work, first = sync(cluster, server, "ready", ns, objects)
    wait(cluster, NAMESPACE, f"{KS}/ready", "jsonpath={.status.lastAttemptedRevision}", 120)
    assert get(cluster, ns, "tj", "flux-run")["status"]["phase"] == "Running"
    # Applied, but training: kstatus says InProgress (Reconciling=True), so Flux waits.
    assert ks_ready(cluster, "ready")["status"] != "True", engine.log("kustomize-controller")

    wait(cluster, NAMESPACE, f"{KS}/ready", "condition=Ready", 240)
    ks = ks_ready(cluster, "ready")
    assert first in get(cluster, NAMESPACE, KS, "ready")["status"]["lastAppliedRevision"]
    tj, md = get(cluster, ns, "tj", "flux-run"), get(cluster, ns, "mdep", "flux-web")
    for ours in (tj, md):
        ready = condition(ours, "Ready")
        assert ready["status"] == "True", ours["status"]
        # Current by kstatus before Flux called the Kustomization Ready, not after.
        assert ready["lastTransitionTime"] <= ks["lastTransitionTime"]
    assert md["status"]["currentModel"] == "flux-iris-v1"

    # A commit that changes nothing of ours: Flux applies it, and our objects see no write.
    versions = {kind: get(cluster, ns, kind, name)["metadata"]["resourceVersion"]
                for kind, name in (("tj", "flux-run"), ("mdep", "flux-web"))}  # fmt: skip
    second = GitServer.commit(work, "docs only", {"README.md": "the iris team's objects\n"})
    reconcile_now(cluster, "gitrepositories.source.toolkit.fluxcd.io", "ready")
    reconcile_now(cluster, KS, "ready")
    wait(cluster, NAMESPACE, f"{KS}/ready",
         f"jsonpath={{.status.lastAppliedRevision}}=main@sha1:{second}", 120)  # fmt: skip
    wait(cluster, NAMESPACE, f"{KS}/ready", "condition=Ready", 60)
    after = {kind: get(cluster, ns, kind, name)["metadata"]["resourceVersion"]
             for kind, name in (("tj", "flux-run"), ("mdep", "flux-web"))}  # fmt: skip
    assert after == versions, "a commit that changes nothing of ours wrote to our objects"


def test_a_failing_training_job_fails_the_kustomization_with_our_reason(
    cluster: Cluster, op_namespace: str, flux: tuple[Flux, GitServer]
) -> None:
    engine, server = flux
    ns = op_namespace
    sim = {"sim.mlops.seed.dev/exit-code": "3", "sim.mlops.seed.dev/message": "loss diverged"}
    run = trainingjob("flux-broken", model="flux-broken", sim=sim, backoffLimit=0)
    sync(cluster, server, "failing", ns, [run])
    wait_new(cluster, ns, "tj/flux-broken", "condition=Stalled", 120)
    # kstatus reads Stalled=True as Failed: Flux stops waiting at once (no timeout) and fails,
    # naming the object. Flux's message carries kstatus' verdict, not the object's own message
    # (fluxcd/pkg/ssa formats only "<kind>/<ns>/<name> status: 'Failed'"): our reason is on
    # the TrainingJob, which the message names.
    deadline = time.monotonic() + 120
    while (ready := ks_ready(cluster, "failing"))["status"] != "False":
        assert time.monotonic() < deadline, engine.log("kustomize-controller")
        time.sleep(0.5)
    assert ready["reason"] == "HealthCheckFailed", ready
    assert "failed early due to stalled resources" in ready["message"], ready
    assert f"TrainingJob/{ns}/flux-broken status: 'Failed'" in ready["message"], ready
    stalled = condition(get(cluster, ns, "tj", "flux-broken"), "Stalled")
    assert (stalled["reason"], stalled["message"]) == ("BackoffLimitExceeded", "loss diverged")
