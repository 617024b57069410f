"""The operator's read cache (mlops_operator.kube.Cache): what it keeps and what it refuses."""

from __future__ import annotations

from typing import Any

from mlops_operator.kube import Cache


def obj(name: str, rv: int, ns: str = "team", **extra: Any) -> dict[str, Any]:
    meta = {"name": name, "namespace": ns, "resourceVersion": str(rv), **extra}
    return {"metadata": meta, "status": {"rv": rv}}


def test_a_late_older_event_does_not_replace_a_newer_body() -> None:
    cache = Cache()
    cache.observe("models", obj("a", 10), ours=True)  # our write's answer
    cache.observe("models", obj("a", 7))  # the watch catches up with an older state
    assert cache.get("models", "team", "a") == obj("a", 10)
    cache.observe("models", obj("a", 12))
    assert cache.get("models", "team", "a") == obj("a", 12)


def test_only_our_latest_write_is_an_echo() -> None:
    cache = Cache()
    cache.observe("trainingjobs", obj("a", 10), ours=True)
    assert cache.is_echo("trainingjobs", obj("a", 10))
    assert not cache.is_echo("trainingjobs", obj("a", 11)), "someone else's change"
    cache.observe("trainingjobs", obj("a", 11))
    assert not cache.is_echo("trainingjobs", obj("a", 11))


def test_a_list_answered_before_a_deletion_does_not_bring_the_object_back() -> None:
    cache = Cache()
    cache.forget("models", "team", "a", "20")  # DELETED event at revision 20
    cache.fill("models", "team", [obj("a", 15), obj("b", 16)])  # LIST from revision 16
    assert cache.items("models", "team") == [obj("b", 16)]
    cache.observe("models", obj("a", 25))  # created again, later
    assert cache.get("models", "team", "a") == obj("a", 25)


def test_items_only_for_namespaces_filled_by_a_list() -> None:
    cache = Cache()
    cache.observe("models", obj("a", 1))
    assert cache.items("models", "team") is None, "a watch event alone is not the whole set"
    cache.fill("models", "team", [])
    assert cache.items("models", "team") == [obj("a", 1)]
    assert cache.items("models", "other") is None


def test_pods_by_job_label_follow_changes_and_deletions() -> None:
    cache = Cache(index={"pods": "job"})
    cache.observe("pods", obj("p1", 1, labels={"job": "j1"}))
    cache.observe("pods", obj("p2", 2, labels={"job": "j1"}))
    cache.observe("pods", obj("p3", 3, labels={"job": "j2"}))
    assert [p["metadata"]["name"] for p in cache.labelled("pods", "team", "j1")] == ["p1", "p2"]
    cache.forget("pods", "team", "p1", "4")
    assert [p["metadata"]["name"] for p in cache.labelled("pods", "team", "j1")] == ["p2"]
    assert cache.labelled("pods", "other", "j1") == []


def test_what_is_never_read_is_not_kept() -> None:
    cache = Cache(index={"pods": "batch.kubernetes.io/job-name"})
    job = obj("j", 1, managedFields=[{"manager": "x"}])
    job["spec"] = {"suspend": False, "template": {"spec": {"containers": []}}}
    applied = {"kubectl.kubernetes.io/last-applied-configuration": "{...}", "team": "a"}
    tj = obj("t", 3, annotations=applied)
    index = {"batch.kubernetes.io/job-completion-index": "1"}
    terminated = {"terminated": {"exitCode": 0, "message": "{}"}}
    pod = {
        "metadata": {"name": "p", "namespace": "team", "resourceVersion": "2", "uid": "u",
                     "labels": {"batch.kubernetes.io/job-name": "j"},
                     "annotations": {**index, "sim": "x" * 100},
                     "ownerReferences": [{"kind": "Job"}], "managedFields": [{}]},
        "spec": {"containers": [{"name": "trainer"}]},
        "status": {"phase": "Succeeded", "podIP": "10.0.0.1", "conditions": [{"type": "Ready"}],
                   "containerStatuses": [{"name": "trainer", "image": "i", "imageID": "d",
                                          "state": terminated, "lastState": {}}]},
    }  # fmt: skip
    cache.observe("jobs", job)
    cache.observe("pods", pod)
    cache.observe("trainingjobs", tj)
    kept = cache.get("jobs", "team", "j")
    assert kept is not None
    assert kept["spec"] == {"suspend": False}
    assert "managedFields" not in kept["metadata"]
    assert "managedFields" in job["metadata"], "the caller's body is left as it was"
    assert cache.get("pods", "team", "p") == {
        "metadata": {"name": "p", "namespace": "team", "resourceVersion": "2", "uid": "u",
                     "labels": {"batch.kubernetes.io/job-name": "j"},
                     "annotations": index},
        "status": {"phase": "Succeeded",
                   "containerStatuses": [{"name": "trainer", "state": terminated}]},
    }  # fmt: skip
    assert cache.labelled("pods", "team", "j") != [], "still found by its Job"
    kept_tj = cache.get("trainingjobs", "team", "t")
    assert kept_tj is not None
    assert kept_tj["metadata"]["annotations"] == {"team": "a"}
    assert "kubectl.kubernetes.io/last-applied-configuration" in tj["metadata"]["annotations"]


def test_a_finished_runs_pods_leave_the_cache() -> None:
    from kubernetes import client

    from mlops_operator.kube import Kube

    kube = Kube(client.ApiClient())  # no server: nothing here makes a request
    for name, job in (("a-0", "a"), ("a-1", "a"), ("b-0", "b")):
        labels = {"batch.kubernetes.io/job-name": job}
        kube.cache.observe("pods", {**obj(name, 1), "metadata": {**obj(name, 1)["metadata"],
                                                                 "labels": labels}})  # fmt: skip
    kube.release_pods("team", "a")
    assert kube.pods_of_job("team", "a") == []
    assert [p["metadata"]["name"] for p in kube.pods_of_job("team", "b")] == ["b-0"]
