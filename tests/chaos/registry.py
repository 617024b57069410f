"""What every fault test checks when the dust settles: each TrainingJob ran one Job and
registered one Model, and the versions of a model are 1..N with none missing or twice."""

from __future__ import annotations

import random
from typing import Any

from tests.fixtures import Cluster
from tests.integration.test_trainingjob import report, trainingjob
from tests.k8s import apply, items


def runs(names: list[str], model: str, rng: random.Random, seconds: tuple[int, int]) -> list[Any]:
    """TrainingJobs of one model whose pods kwok finishes after a random few seconds."""
    return [
        trainingjob(
            name,
            model=model,
            sim={
                "sim.mlops.seed.dev/message": report(),
                "sim.mlops.seed.dev/duration": f"{rng.randint(*seconds)}s",
            },
        )
        for name in names
    ]


def start_runs(cluster: Cluster, namespace: str, manifests: list[Any]) -> None:
    for start in range(0, len(manifests), 50):  # kubectl apply of a few hundred at once is slow
        apply(cluster, namespace, *manifests[start : start + 50])


def all_registered(cluster: Cluster, namespace: str, names: list[str]) -> bool:
    """Whether every one of these TrainingJobs is Ready (its Model registered)."""
    ready = {
        tj["metadata"]["name"]
        for tj in items(cluster, namespace, "tj")
        if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in (tj.get("status") or {}).get("conditions") or []
        )
    }
    return ready >= set(names)


def unregistered(cluster: Cluster, namespace: str, names: list[str]) -> str:
    """Each of these TrainingJobs that is not Ready, with its phase and conditions."""
    tjs = {tj["metadata"]["name"]: tj for tj in items(cluster, namespace, "tj")}
    jobs = {j["metadata"]["name"]: j.get("status") or {} for j in items(cluster, namespace, "jobs")}
    pods = items(cluster, namespace, "pods")
    lines = []
    for name in names:
        st = (tjs.get(name) or {}).get("status") or {}
        conditions = st.get("conditions") or []
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            continue
        said = "; ".join(f"{c['type']}={c['status']} {c.get('reason', '')}" for c in conditions)
        job = jobs.get(name)
        ran = [
            f"{p['metadata']['name']}={(p.get('status') or {}).get('phase')}"
            for p in pods
            if (p["metadata"].get("labels") or {}).get("job-name") == name
        ]
        lines.append(
            f"{name}: phase={st.get('phase')} {said} | Job: {job} | pods: {ran}"
            if name in tjs
            else f"{name}: gone"
        )
    return "not registered:\n" + "\n".join(lines)


def assert_registered_once(cluster: Cluster, namespace: str, model: str, names: list[str]) -> None:
    tjs = {tj["metadata"]["name"]: tj for tj in items(cluster, namespace, "tj")}
    ours = [tjs[n] for n in names]
    models = [m for m in items(cluster, namespace, "mdl") if m["spec"]["modelName"] == model]
    versions = sorted(m["spec"]["version"] for m in models)
    assert versions == list(range(1, len(names) + 1)), f"versions of {model}: {versions}"
    registered = [tj["status"]["registeredModel"] for tj in ours]
    assert sorted(registered) == sorted(m["metadata"]["name"] for m in models)
    by_uid = {m["spec"]["lineage"]["trainingJob"]["uid"] for m in models}
    assert by_uid == {tj["metadata"]["uid"] for tj in ours}, "one Model per TrainingJob"
    jobs = [j for j in items(cluster, namespace, "jobs") if j["metadata"]["name"] in tjs]
    owners = sorted(j["metadata"]["ownerReferences"][0]["uid"] for j in jobs)
    assert owners == sorted(tj["metadata"]["uid"] for tj in ours), "one Job per TrainingJob"
