"""Datasets, TrainingJobs that read them, and ContinuousTraining's triggers, against the
real control plane (kwok plays the pods)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.fixtures import local_cluster
from tests.k8s import apply, condition, events, get, items, status, wait, wait_new

from .conftest import ROOT, Cluster, Operator
from .test_modeldeployment import deployment, served_version
from .test_observability import scrape, value
from .test_trainingjob import APPROVED, env_of, model, report, trainingjob

CT_LABEL = "mlops.seed.dev/continuoustraining"


def digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def dataset(version: int, *, name: str = "churn", data: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "mlops.seed.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": f"{name}-v{version}"},
        "spec": {
            "datasetName": name,
            "version": version,
            "uri": f"s3://data/{name}/{version}/",
            "digest": digest(data or f"{name} {version}"),
            "format": "csv",
            "rows": 100 * version,
        },
    }


def continuous(name: str, triggers: dict[str, Any], *, accuracy: float = 0.9,
               **spec: Any) -> dict[str, Any]:  # fmt: skip
    """A ContinuousTraining whose runs kwok plays as succeeding with this accuracy."""
    template = trainingjob("unused", sim={"sim.mlops.seed.dev/message": report(accuracy)})
    template["spec"].pop("dataset")
    if "onNewDataset" in triggers:
        template["spec"]["dataset"] = {"ref": {"name": triggers["onNewDataset"]["name"]}}
    return {
        "apiVersion": "mlops.seed.dev/v1alpha1",
        "kind": "ContinuousTraining",
        "metadata": {"name": name},
        "spec": {"template": {"spec": template["spec"]}, "triggers": triggers, **spec},
    }


def runs(cluster: Cluster, ns: str, ct: str) -> list[str]:
    return sorted(t["metadata"]["name"] for t in items(cluster, ns, "tj", "-l", f"{CT_LABEL}={ct}"))


def test_a_trainingjob_waits_for_its_dataset_then_reads_it(
    cluster: Cluster, op_namespace: str
) -> None:
    ns = op_namespace
    tj = trainingjob("reads-churn")
    tj["spec"]["dataset"] = {"ref": {"name": "churn", "version": "latest"}}
    apply(cluster, ns, tj)
    wait(
        cluster,
        ns,
        "tj/reads-churn",
        "jsonpath={.status.conditions[?(@.type=='Ready')].reason}=DatasetNotFound",
    )
    waiting = get(cluster, ns, "tj", "reads-churn")
    assert waiting["status"]["phase"] == "Pending"
    assert "churn" in condition(waiting, "Ready")["message"]
    assert ("Warning", "DatasetNotFound") in events(cluster, ns, "reads-churn")
    assert items(cluster, ns, "jobs") == []

    apply(cluster, ns, dataset(1))
    wait(cluster, ns, "tj/reads-churn", "condition=Ready")
    env = env_of(get(cluster, ns, "job", "reads-churn"))
    assert env["MLOPS_DATASET_URI"] == "s3://data/churn/1/"
    assert env["MLOPS_DATASET_DIGEST"] == digest("churn 1")
    assert (env["MLOPS_DATASET_NAME"], env["MLOPS_DATASET_VERSION"]) == ("churn", "1")
    recorded = {"uri": "s3://data/churn/1/", "digest": digest("churn 1"), "name": "churn",
                "version": 1}  # fmt: skip
    assert get(cluster, ns, "tj", "reads-churn")["status"]["dataset"] == recorded
    assert get(cluster, ns, "mdl", "iris-v1")["spec"]["lineage"]["dataset"] == recorded
    wait(cluster, ns, "dataset/churn-v1", "jsonpath={.status.usedBy.models[0]}=iris-v1")
    used = get(cluster, ns, "dataset", "churn-v1")["status"]["usedBy"]
    assert used == {"trainingJobs": ["reads-churn"], "models": ["iris-v1"]}

    # `latest` is the newest Ready version when the run starts.
    apply(cluster, ns, dataset(2))
    wait(cluster, ns, "dataset/churn-v2", "condition=Ready")
    newest = trainingjob("reads-newest")
    newest["spec"]["dataset"] = {"ref": {"name": "churn"}}
    apply(cluster, ns, newest)
    wait(cluster, ns, "tj/reads-newest", "condition=Ready")
    assert env_of(get(cluster, ns, "job", "reads-newest"))["MLOPS_DATASET_VERSION"] == "2"
    assert "usedBy" not in status(cluster, ns, "dataset", "churn-v2") or status(
        cluster, ns, "dataset", "churn-v2"
    )["usedBy"]["trainingJobs"] == ["reads-newest"]


def test_a_pinned_dataset_version_that_is_missing_is_a_condition(
    cluster: Cluster, op_namespace: str
) -> None:
    ns = op_namespace
    tj = trainingjob("pinned")
    tj["spec"]["dataset"] = {"ref": {"name": "churn", "version": 7}}
    apply(cluster, ns, dataset(1), tj)
    wait(
        cluster,
        ns,
        "tj/pinned",
        "jsonpath={.status.conditions[?(@.type=='Ready')].reason}=DatasetNotFound",
    )
    assert "churn-v7" in condition(get(cluster, ns, "tj", "pinned"), "Ready")["message"]
    apply(cluster, ns, dataset(7))
    wait(cluster, ns, "tj/pinned", "condition=Ready")
    assert env_of(get(cluster, ns, "job", "pinned"))["MLOPS_DATASET_VERSION"] == "7"


def test_the_watcher_registers_a_version_only_when_the_data_changed(
    cluster: Cluster, op_namespace: str, tmp_path: Path
) -> None:
    """`mlops-operator dataset watch` as the example's own ServiceAccount and Role."""
    ns = op_namespace
    rbac = (ROOT / "examples" / "dataset-watch" / "rbac.yaml").read_text()
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=rbac)
    kubeconfig = tmp_path / "watcher.kubeconfig"
    local_cluster.service_account_kubeconfig(
        kubeconfig, Path(cluster.kubeconfig), (ns, "dataset-watcher")
    )
    data = tmp_path / "churn"
    (data / "part").mkdir(parents=True)
    (data / "part" / "a.csv").write_text("x,y\n1,2\n")
    (data / "b.csv").write_text("x,y\n3,4\n")

    def watch() -> str:
        args = [str(data), "--name", "churn", "--rows", "2", "--schema", "x:int64,y:int64",
                "--code-revision", "abc123"]  # fmt: skip
        proc = subprocess.run(
            [sys.executable, "-m", "mlops_operator", "dataset", "watch", *args],
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    assert watch() == "dataset churn: registered churn-v1"
    assert watch() == "dataset churn: unchanged: the newest version is churn-v1"
    (data / "b.csv").write_text("x,y\n3,5\n")
    assert watch() == "dataset churn: registered churn-v2"
    wait(cluster, ns, "dataset/churn-v2", "condition=Ready")
    v2 = get(cluster, ns, "dataset", "churn-v2")["spec"]
    assert v2["digest"] != get(cluster, ns, "dataset", "churn-v1")["spec"]["digest"]
    assert (v2["format"], v2["rows"], v2["sizeBytes"]) == ("csv", 2, 16)
    assert v2["schema"] == {
        "columns": [{"name": "x", "type": "int64"}, {"name": "y", "type": "int64"}]
    }
    assert v2["lineage"] == {"codeRevision": "abc123"}
    # A deleted version's number is never given again.
    cluster.kubectl("delete", "-n", ns, "dataset", "churn-v2")
    (data / "b.csv").write_text("x,y\n3,6\n")
    assert watch() == "dataset churn: registered churn-v3"
    # `lineage` as this account: refused (it may not read Models), said in one line.
    refused = subprocess.run(
        [sys.executable, "-m", "mlops_operator", "lineage", "iris", "-n", ns],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: the API server refused: 403")
    # Least privilege: the watcher cannot read Secrets or touch Models.
    for verb, what in (
        ("get", "secrets"),
        ("list", "secrets"),
        ("create", "models.mlops.seed.dev"),
    ):
        can = cluster.kubectl(
            "auth",
            "can-i",
            verb,
            what,
            "-n",
            ns,
            f"--as=system:serviceaccount:{ns}:dataset-watcher",
            check=False,
        )
        assert can.stdout.strip() == "no", (verb, what)


def test_new_data_trains_and_a_better_model_is_rolled_out(
    cluster: Cluster, op_namespace: str, operator: Operator
) -> None:
    """The loop: a new Dataset version -> a run -> a Model -> the ModelDeployment's policy
    (mustBeatCurrent) rolls it out; a worse one is registered but not rolled out."""
    ns = op_namespace
    before = scrape(operator.metrics_url)
    policy = {
        "gates": [{"metric": "accuracy", "operator": ">=", "value": 0.5}],
        "mustBeatCurrent": True,
    }
    ct = continuous("churn", {"onNewDataset": {"name": "churn"}}, accuracy=0.90)
    ct["spec"]["template"]["metadata"] = {"labels": APPROVED}
    apply(cluster, ns, dataset(1), ct, deployment("web", policy=policy))
    wait_new(cluster, ns, "tj/churn-d1", "condition=Ready")
    wait(cluster, ns, "mdep/web", "condition=Ready")
    assert served_version(cluster, ns, "web") == 1

    # v2: its run reports a better metric; it is rolled out.
    apply(cluster, ns, continuous_accuracy(cluster, ns, "churn", 0.95), dataset(2))
    wait_new(cluster, ns, "tj/churn-d2", "condition=Ready")
    model = get(cluster, ns, "mdl", "iris-v2")
    lineage = model["spec"]["lineage"]
    assert (lineage["dataset"]["name"], lineage["dataset"]["version"]) == ("churn", 2)
    assert lineage["trigger"] == {
        "continuousTraining": "churn",
        "type": "onNewDataset",
        "detail": "churn-v2",
    }
    wait(cluster, ns, "mdep/web", "jsonpath={.status.currentModel}=iris-v2")
    wait(cluster, ns, "mdep/web", "condition=Ready")

    # v3: worse; registered, not rolled out.
    apply(cluster, ns, continuous_accuracy(cluster, ns, "churn", 0.80), dataset(3))
    wait_new(cluster, ns, "tj/churn-d3", "condition=Ready")
    assert get(cluster, ns, "mdl", "iris-v3")["spec"]["metrics"]["accuracy"] == 0.80
    wait(cluster, ns, "ct/churn", "jsonpath={.status.lastSuccessfulModel}=iris-v3")
    assert get(cluster, ns, "mdep", "web")["status"]["currentModel"] == "iris-v2"

    ct_status = status(cluster, ns, "ct", "churn")
    started = [d["detail"] for d in ct_status["decisions"] if d["action"] == "Started"]
    assert started == ["churn-v1", "churn-v2", "churn-v3"]
    assert ct_status["triggers"]["datasetVersion"] == 3
    assert ct_status["active"] == []
    reasons = [r for _, r in events(cluster, ns, "churn")]
    assert reasons.count("RunStarted") == 3
    decided = "mlops_operator_trigger_decisions_total"
    started = {"trigger": "onNewDataset", "action": "Started"}
    counted = value(scrape(operator.metrics_url), decided, **started) - value(
        before, decided, **started
    )
    assert counted >= 3
    # The chain, as `kubectl mlops lineage` prints it (kubectl finds the plugin on PATH).
    chain = json.loads(plugin(cluster, "lineage", "iris-v2", "-n", ns, "-o", "json").stdout)
    assert (chain["dataset"]["objectName"], chain["dataset"]["exists"]) == ("churn-v2", True)
    assert (chain["trigger"]["type"], chain["trainingJob"]["name"]) == ("onNewDataset", "churn-d2")
    assert [d["name"] for d in chain["deployments"]] == ["web"]
    newest = plugin(cluster, "lineage", "iris", "-n", ns).stdout
    assert newest.startswith("lineage of Model iris-v3")
    missing = plugin(cluster, "lineage", "rose", "-n", ns)
    assert missing.returncode == 1
    assert "no Model 'rose'" in missing.stderr
    # Owned by the ContinuousTraining; the Models are not.
    tj = get(cluster, ns, "tj", "churn-d3")
    assert tj["metadata"]["ownerReferences"][0]["kind"] == "ContinuousTraining"
    assert "ownerReferences" not in model["metadata"]


def plugin(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    """`kubectl mlops ...`: kubectl runs `kubectl-mlops` from PATH (the venv's, as installed)."""
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    return subprocess.run(
        [local_cluster.kubectl_binary(), "mlops", *args],
        env={**os.environ, "PATH": path, "KUBECONFIG": cluster.kubeconfig},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def continuous_accuracy(cluster: Cluster, ns: str, name: str, accuracy: float) -> dict[str, Any]:
    """The ContinuousTraining as it is, with its runs reporting `accuracy` from now on."""
    ct = get(cluster, ns, "ct", name)
    pod = ct["spec"]["template"]["spec"]["podMetadata"]
    pod["annotations"]["sim.mlops.seed.dev/message"] = report(accuracy)
    return {k: ct[k] for k in ("apiVersion", "kind", "spec")} | {"metadata": {"name": name}}


def test_forbid_defers_new_data_until_the_active_run_ends(
    cluster: Cluster, op_namespace: str
) -> None:
    ns = op_namespace
    ct = continuous("slow", {"onNewDataset": {"name": "churn"}})
    # The runs keep running until the test ends them.
    annotations = ct["spec"]["template"]["spec"]["podMetadata"]["annotations"]
    annotations["sim.mlops.seed.dev/duration"] = "1h"
    apply(cluster, ns, dataset(1), ct)
    wait_new(cluster, ns, "tj/slow-d1", "jsonpath={.status.phase}=Running")
    apply(cluster, ns, dataset(2), dataset(3))
    wait(cluster, ns, "ct/slow", "jsonpath={.status.decisions[-1].detail}=churn-v3")
    last = status(cluster, ns, "ct", "slow")["decisions"][-1]
    assert (last["action"], last["reason"]) == ("Deferred", "ConcurrencyForbid")
    assert runs(cluster, ns, "slow") == ["slow-d1"]
    cluster.kubectl("delete", "-n", ns, "tj", "slow-d1", "--wait=true")
    # The active run is gone: the newest version (not each one missed) starts a run.
    wait_new(cluster, ns, "tj/slow-d3", "jsonpath={.status.phase}=Running")
    assert runs(cluster, ns, "slow") == ["slow-d3"]


def test_a_schedule_fires_on_time_and_records_it(cluster: Cluster, op_namespace: str) -> None:
    ns = op_namespace
    apply(
        cluster,
        ns,
        continuous("nightly", {"schedule": {"cron": "* * * * *", "timeZone": "Europe/Paris"}}),
    )
    wait(cluster, ns, "ct/nightly", "condition=Ready")
    planned = status(cluster, ns, "ct", "nightly")["nextScheduleTime"]
    minute = int(datetime.fromisoformat(planned.replace("Z", "+00:00")).timestamp() // 60)
    wait_new(cluster, ns, f"tj/nightly-s{minute}", "condition=Ready", timeout=150)
    tj = get(cluster, ns, "tj", f"nightly-s{minute}")
    trigger = json.loads(tj["metadata"]["annotations"]["mlops.seed.dev/trigger"])
    assert trigger == {"continuousTraining": "nightly", "type": "schedule", "detail": planned}
    # Every minute fires: by now a later minute may have been acted on too (a slow host).
    recorded = status(cluster, ns, "ct", "nightly")
    assert planned in [d["detail"] for d in recorded["decisions"] if d["action"] == "Started"]
    assert when(recorded["triggers"]["lastScheduleTime"]) >= when(planned)
    model = get(cluster, ns, "mdl", tj["status"]["registeredModel"])
    assert model["spec"]["lineage"]["trigger"]["detail"] == planned
    assert when(tj["metadata"]["creationTimestamp"]) >= when(planned)  # not early


def when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_a_modeldeployment_condition_starts_a_run(cluster: Cluster, op_namespace: str) -> None:
    ns = op_namespace
    # The condition is written by hand below: first let the operator's own drift read (soon
    # after the ModelDeployment appears, then hourly) be done, or it overwrites the hand-made
    # one before the ContinuousTraining sees it (a CI run lost that race).
    apply(cluster, ns, model(1), deployment("web", version=1, monitoring={"intervalSeconds": 3600}))
    wait(cluster, ns, "mdep/web", "condition=Ready")
    wait(cluster, ns, "mdep/web",
         "jsonpath={.status.conditions[?(@.type=='Drifted')].reason}=NoReference")  # fmt: skip
    trigger = {"onModelDeployment": {"name": "web", "condition": "Drifted", "forSeconds": 2}}
    apply(cluster, ns, continuous("retrain", trigger, cooldownSeconds=3600))
    wait(cluster, ns, "ct/retrain", "condition=Ready")
    assert runs(cluster, ns, "retrain") == []

    def drifted(since: str) -> None:
        md = get(cluster, ns, "mdep", "web")
        conditions = [c for c in md["status"]["conditions"] if c["type"] != "Drifted"]
        conditions.append({
            "type": "Drifted", "status": "True", "reason": "FeatureDrift",
            "message": "petal_length over threshold", "lastTransitionTime": since,
        })  # fmt: skip
        patch = {"status": {"conditions": conditions}}
        cluster.kubectl(
            "patch",
            "-n",
            ns,
            "mdep",
            "web",
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps(patch),
        )

    now = datetime.now(UTC)
    drifted((now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    wait(cluster, ns, "ct/retrain", "jsonpath={.status.lastRun.trigger}=onModelDeployment")
    (run,) = runs(cluster, ns, "retrain")
    assert run.startswith("retrain-c")
    # Drifted again (a later transition) within the cooldown: deferred, not a second run.
    drifted(now.strftime("%Y-%m-%dT%H:%M:%SZ"))
    wait(cluster, ns, "ct/retrain", "jsonpath={.status.decisions[-1].reason}=Cooldown")
    assert runs(cluster, ns, "retrain") == [run]


def test_history_limits_keep_the_newest_runs_and_every_model(
    cluster: Cluster, op_namespace: str
) -> None:
    ns = op_namespace
    ct = continuous("hist", {"onNewDataset": {"name": "churn"}}, successfulRunsHistoryLimit=1)
    # A TrainingJob of the user's that carries the label but is not owned: never deleted.
    mine = trainingjob("mine", model="other")
    mine["metadata"]["labels"] = {CT_LABEL: "hist"}
    apply(cluster, ns, mine, dataset(1), ct)
    wait_new(cluster, ns, "tj/hist-d1", "condition=Ready")
    apply(cluster, ns, dataset(2))
    wait_new(cluster, ns, "tj/hist-d2", "condition=Ready")
    wait(cluster, ns, "tj/hist-d1", "delete")
    assert runs(cluster, ns, "hist") == ["hist-d2", "mine"]
    assert sorted(m["metadata"]["name"] for m in items(cluster, ns, "mdl")) == [
        "iris-v1", "iris-v2", "other-v1",
    ]  # fmt: skip


def test_a_cron_expression_only_the_operator_can_refuse_stalls(
    cluster: Cluster, op_namespace: str
) -> None:
    ns = op_namespace
    apply(cluster, ns, continuous("bad", {"schedule": {"cron": "61 * * * *"}}))
    wait(cluster, ns, "ct/bad", "condition=Stalled")
    ct = get(cluster, ns, "ct", "bad")
    assert condition(ct, "Ready")["status"] == "False"
    assert condition(ct, "Stalled")["reason"] == "InvalidSpec"
    assert condition(ct, "Stalled")["message"].startswith("cron:")
    assert ("Warning", "InvalidSpec") in events(cluster, ns, "bad")
    fixed = continuous("bad", {"schedule": {"cron": "0 3 * * *"}})
    apply(cluster, ns, fixed)
    wait(cluster, ns, "ct/bad", "condition=Ready")
    assert all(
        c["type"] != "Stalled" for c in get(cluster, ns, "ct", "bad")["status"]["conditions"]
    )
