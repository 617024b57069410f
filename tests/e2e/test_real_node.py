"""The lifecycle with real containers, on the local cluster's real node.

Nothing here is simulated: the operator runs from its image (installed with Helm, as its
ServiceAccount), the training pod runs examples/iris/train.py and writes model.joblib to the
S3 store in the cluster, storage-init and MLServer serve it, and a client pod asks for
predictions through the Service. The same tests run on any cluster with the images loaded
(MLOPS_TEST_CLUSTER=existing; see docs/development.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris

from mlops_operator.api.report import parse_report
from tests.e2e.realnode import (
    HPARAMS,
    ON_REAL_NODE,
    RELEASE,
    S3_ENV,
    TRAIN,
    TRAINER,
    apply,
    in_pod,
    kubectl_json,
    predict_in_cluster,
    trainingjob,
    wait,
)
from tests.fixtures import Cluster, local_cluster
from tests.polling import until
from tests.readiness import summary


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, float], Any]:
    """The same training run as a local process: the metrics and model the pod must match."""
    out = tmp_path_factory.mktemp("iris")
    env = {
        **os.environ,
        "MLOPS_OUTPUT_URI": f"file://{out}",
        "MLOPS_HPARAMS": json.dumps(HPARAMS),
        "MLOPS_TERMINATION_LOG": str(out / "report"),
    }
    subprocess.run([sys.executable, str(TRAIN)], env=env, check=True, timeout=120)
    report = parse_report((out / "report").read_text())
    return report.metrics, joblib.load(out / "model.joblib")


def test_the_operator_runs_from_its_image_under_helm(real: Cluster, installed: str) -> None:
    pods = kubectl_json(real, "get", "pods", "-n", installed,
                        "-l", "app.kubernetes.io/name=mlops-operator")["items"]  # fmt: skip
    assert len(pods) == 2, "a leader and a standby"
    for pod in pods:
        assert pod["spec"]["nodeName"] == local_cluster.realnode.NAME
        assert pod["spec"]["containers"][0]["image"] == "localhost/mlops-operator:0.1.0"
        assert pod["spec"]["containers"][0]["livenessProbe"]["httpGet"]["path"] == "/healthz"
        (status,) = pod["status"]["containerStatuses"]
        assert status["ready"], status
        assert status["restartCount"] == 0, "the liveness probe never failed"
    # One of them holds the Lease in the release's namespace: the pod's name and a suffix.
    lease = kubectl_json(real, "get", "lease", "mlops-operator", "-n", installed)
    holder = lease["spec"]["holderIdentity"]
    (pod,) = [p for p in pods if holder.startswith(p["metadata"]["name"] + "-")]
    # Through the API server's proxy, as Prometheus or a person would reach them.
    api = f"/api/v1/namespaces/{installed}"
    pod_name = pod["metadata"]["name"]
    healthz = real.kubectl("get", "--raw", f"{api}/pods/{pod_name}:8080/proxy/healthz")
    assert healthz.returncode == 0
    service = f"{RELEASE}-mlops-operator-metrics"
    metrics = real.kubectl("get", "--raw", f"{api}/services/{service}:metrics/proxy/metrics").stdout
    assert "mlops_operator_reconcile_total" in metrics
    assert "process_resident_memory_bytes" in metrics


def test_a_real_training_run_registers_its_model(
    real: Cluster, workspace: str, local_run: tuple[dict[str, float], Any]
) -> None:
    apply(real, workspace, trainingjob("iris-train", hyperparameters=HPARAMS))
    wait(real, workspace, "tj/iris-train", "condition=Ready", 240)
    tj = kubectl_json(real, "get", "tj", "iris-train", "-n", workspace)
    assert tj["status"]["phase"] == "Succeeded"
    model = kubectl_json(real, "get", "mdl", tj["status"]["registeredModel"], "-n", workspace)
    metrics, _ = local_run
    assert model["spec"]["metrics"] == pytest.approx(metrics), "the pod trained what runs locally"
    assert model["spec"]["artifact"]["uri"].startswith("s3://models/iris/iris-train-")
    assert model["spec"]["artifact"]["digest"].startswith("sha256:")
    pod = kubectl_json(real, "get", "pods", "-n", workspace, "-l",
                       "batch.kubernetes.io/job-name=iris-train")["items"][0]  # fmt: skip
    assert pod["spec"]["nodeName"] == local_cluster.realnode.NAME
    logs = real.kubectl("logs", "-n", workspace, pod["metadata"]["name"]).stdout
    assert "Traceback" not in logs


def test_mlserver_serves_the_trained_model_through_its_service(
    real: Cluster, workspace: str, local_run: tuple[dict[str, float], Any]
) -> None:
    md = {
        "apiVersion": "mlops.seed.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris"},
        "spec": {
            "model": {"name": "iris", "version": 1},
            "runtime": {"preset": "mlserver"},
            "storage": {"env": S3_ENV},
            "scheduling": ON_REAL_NODE,
            "strategy": {"type": "Canary", "canary": {"steps": [{"weight": 50}]}},
            "replicas": 1,
            "progressDeadlineSeconds": 45,
            "monitoring": {"intervalSeconds": 10, "minSamples": 200, "windowSeconds": 3600},
        },
    }
    apply(real, workspace, md)
    wait(real, workspace, "mdep/iris", "condition=Ready", 240)
    status = kubectl_json(real, "get", "mdep", "iris", "-n", workspace)["status"]
    assert status["currentVersion"] == 1
    x, _ = load_iris(return_X_y=True)
    rows = x[::15].tolist()
    (answer,) = predict_in_cluster(real, workspace, status["url"], rows)
    _, model = local_run
    (output,) = answer["outputs"]
    assert output["data"] == model.predict(x[::15]).tolist()


def drifted(real: Cluster, namespace: str, samples: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Wait until the operator has read at least `samples` rows from the monitors."""
    wait(real, namespace, "mdep/iris", f"jsonpath={{.status.drift.samples}}={samples}", 120)
    status = kubectl_json(real, "get", "mdep", "iris", "-n", namespace)["status"]
    return status["drift"], next(c for c in status["conditions"] if c["type"] == "Drifted")


def test_the_monitor_in_front_of_mlserver_measures_drift_on_the_shifted_feature_only(
    real: Cluster, workspace: str
) -> None:
    model = kubectl_json(real, "get", "mdl", "iris-v1", "-n", workspace)
    reference = model["spec"]["artifact"]["reference"]
    assert reference["uri"].endswith("/reference.json"), "the training run profiled its data"
    pods = kubectl_json(real, "get", "pods", "-n", workspace, "-l",
                        "mlops.seed.dev/modeldeployment=iris")["items"]  # fmt: skip
    assert [c["name"] for c in pods[0]["spec"]["containers"]] == ["runtime", "monitor"]
    # The rows of the first prediction are in: too few to judge.
    drift, condition = drifted(real, workspace, 10)
    assert (condition["status"], condition["reason"]) == ("Unknown", "NotEnoughSamples")
    assert drift["version"] == 1
    assert drift["pods"] == 1

    url = kubectl_json(real, "get", "mdep", "iris", "-n", workspace)["status"]["url"]
    x, _ = load_iris(return_X_y=True)
    rng = np.random.default_rng(11)
    predict_in_cluster(real, workspace, url, x[rng.integers(0, len(x), 300)].tolist())
    drift, condition = drifted(real, workspace, 310)
    assert (condition["status"], condition["reason"]) == ("False", "NoDrift"), condition
    assert all(f["psi"] < 0.2 for f in drift["features"]), drift

    shifted = x[rng.integers(0, len(x), 600)]
    shifted[:, 2] += 3.0  # petal_length, 3 cm longer
    predict_in_cluster(real, workspace, url, shifted.tolist())
    drift, condition = drifted(real, workspace, 910)
    assert (condition["status"], condition["reason"]) == ("True", "FeaturesDrifted"), condition
    assert condition["message"].startswith("petal_length PSI ")
    scores = {f["name"]: f["psi"] for f in drift["features"]}
    assert scores["petal_length"] > 1.0
    assert all(scores[f] < 0.2 for f in ("sepal_length", "sepal_width", "petal_width")), scores
    # The Event is posted after the status is written: it may land a moment later.
    about = "--field-selector=involvedObject.name=iris,reason=DriftDetected"
    (event,) = until(
        lambda: kubectl_json(real, "get", "events", "-n", workspace, about)["items"],
        30, "the DriftDetected Event",
    )  # fmt: skip
    assert "petal_length PSI" in event["message"]


def test_a_canary_whose_artifact_is_missing_is_rolled_back_with_the_real_reason(
    real: Cluster, workspace: str
) -> None:
    served = kubectl_json(real, "get", "mdl", "iris-v1", "-n", workspace)
    missing = served["spec"]["artifact"]["uri"].rsplit("/", 2)[0] + "/gone/model.joblib"
    apply(real, workspace, {
        "apiVersion": "mlops.seed.dev/v1alpha1", "kind": "Model", "metadata": {"name": "iris-v2"},
        "spec": {"modelName": "iris", "version": 2,
                 "artifact": {"uri": missing, "format": "sklearn"}, "metrics": {"accuracy": 0.99}},
    })  # fmt: skip
    real.kubectl("patch", "mdep", "iris", "-n", workspace, "--type=merge",
                 "-p", '{"spec": {"model": {"version": 2}}}')  # fmt: skip
    wait(real, workspace, "mdep/iris", "jsonpath={.status.failedVersion}=2", 180)
    md = kubectl_json(real, "get", "mdep", "iris", "-n", workspace)
    degraded = next(c for c in md["status"]["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "RolledBack"
    # The init container's own termination message, read from the real kubelet's report.
    assert "init container storage-init exited 1" in degraded["message"]
    assert f"cannot fetch {missing}" in degraded["message"]
    assert md["status"]["currentVersion"] == 1
    # Version 1 kept serving; what was asked for (2) is not: Stalled, for Flux and Argo CD.
    assert summary(md["status"]["conditions"]) == ("Stalled", "RolledBack")
    assert md["status"]["readyReplicas"] >= 1
    about = "--field-selector=involvedObject.name=iris,reason=RolledBack"
    events = kubectl_json(real, "get", "events", "-n", workspace, about)["items"]
    assert any(f"cannot fetch {missing}" in e["message"] for e in events)


def test_a_training_container_out_of_memory_is_oomkilled(real: Cluster, workspace: str) -> None:
    hog = "block = b'x' * (1 << 30); print(len(block))"
    apply(real, workspace, trainingjob(
        "iris-oom", command=["python", "-c", hog], backoffLimit=0,
        resources={"requests": {"memory": "32Mi"}, "limits": {"memory": "64Mi"}},
    ))  # fmt: skip
    wait(real, workspace, "tj/iris-oom", "jsonpath={.status.phase}=Failed", 180)
    failure = kubectl_json(real, "get", "tj", "iris-oom", "-n", workspace)["status"]["failure"]
    assert failure["reason"] == "OOMKilled", failure
    assert failure["exitCode"] == 137


# A runtime that serves for 20 s then exits 1 when it serves version 2: a model that loads,
# answers, passes its probes, and then crash-loops (the kubelet restarts it, with backoff).
FLAPPY = """
import http.server, os, threading
class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    do_POST = do_GET
    def log_message(self, *args): pass
if os.environ["MLOPS_MODEL_VERSION"] == "2":
    threading.Timer(20, lambda: os._exit(1)).start()
http.server.ThreadingHTTPServer(("", 8080), Answer).serve_forever()
"""


def test_a_canary_that_crash_loops_after_its_first_ready_is_rolled_back(
    real: Cluster, workspace: str, record: Callable[..., None]
) -> None:
    """Ready, then crashing, within a 600 s pause: rolled back at the first restart, not
    left in place until the pause ends (issue 24)."""
    artifact = kubectl_json(real, "get", "mdl", "iris-v1", "-n", workspace)["spec"]["artifact"]
    models = [
        {"apiVersion": "mlops.seed.dev/v1alpha1", "kind": "Model",
         "metadata": {"name": f"flappy-v{v}"},
         "spec": {"modelName": "flappy", "version": v,
                  "artifact": {"uri": artifact["uri"], "format": "sklearn"},
                  "metrics": {"accuracy": 0.9}}}
        for v in (1, 2)
    ]  # fmt: skip

    def deployment(version: int) -> dict[str, Any]:
        return {
            "apiVersion": "mlops.seed.dev/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "flappy"},
            "spec": {
                "model": {"name": "flappy", "version": version},
                "runtime": {"image": TRAINER, "command": ["python", "-c", FLAPPY], "port": 8080},
                "storage": {"env": S3_ENV}, "scheduling": ON_REAL_NODE, "replicas": 2,
                "progressDeadlineSeconds": 60,
                "strategy": {"type": "Canary", "canary": {"steps": [
                    {"weight": 50, "pauseSeconds": 600}]}},
            },
        }  # fmt: skip

    for manifest in (*models, deployment(1)):
        apply(real, workspace, manifest)
    wait(real, workspace, "mdep/flappy", "condition=Ready", 240)
    apply(real, workspace, deployment(2))
    until(
        lambda: (kubectl_json(real, "get", "mdep", "flappy", "-n", workspace)["status"]
                 .get("canary") or {}).get("stepStartedAt"),
        180, "the canary Ready",
    )  # fmt: skip
    ready = time.monotonic()
    wait(real, workspace, "mdep/flappy", "jsonpath={.status.failedVersion}=2", 120)
    rolled_back = time.monotonic() - ready
    md = kubectl_json(real, "get", "mdep", "flappy", "-n", workspace)
    assert md["status"]["currentVersion"] == 1
    assert summary(md["status"]["conditions"]) == ("Stalled", "RolledBack")
    message = md["status"]["history"][0]["message"]
    assert "a container of version 2 restarted at step 1 of 1 (50%)" in message, message
    wait(real, workspace, "deployment/flappy-canary", "delete", 60)
    record(crash_looping_canary_rolled_back_after_first_ready_s=round(rolled_back, 1))


# The hostile mix, all at once from one pod with no rights at all, through the Service: four
# uploads of 200 MB (by Content-Length and chunked), five 10,000-row requests, a body nested a
# million deep, twenty one-row uploads dribbled in 8-byte pieces 0.3 s apart, and 100 idle
# connections held open meanwhile. What each answered, by kind (a status code or the error).
HOSTILE = """
import json, socket, sys, threading
host, crlf = sys.argv[1], "\\r\\n"
said = {"huge": [], "rows": [], "nested": [], "slow": []}
row = [5.1, 3.5, 1.4, 0.2]

def v2(rows):
    return json.dumps({"inputs": [{"name": "x", "shape": [len(rows), 4], "datatype": "FP64",
                                   "data": [v for r in rows for v in r]}]}).encode()

def send(kind, size, pieces, *, chunked=False, pause=0.0):
    conn = socket.create_connection((host, 80), timeout=120)
    length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    head = ["POST /v2/models/iris/infer HTTP/1.1", f"Host: {host}",
            "Content-Type: application/json", length, "Connection: close", "", ""]
    try:
        conn.sendall(crlf.join(head).encode())
        for piece in pieces:
            conn.sendall(b"%x\\r\\n%s\\r\\n" % (len(piece), piece) if chunked else piece)
            if pause:
                threading.Event().wait(pause)
    except OSError:
        pass
    try:
        said[kind].append(conn.recv(64).split(b" ")[1].decode())
    except (OSError, IndexError) as err:
        said[kind].append(type(err).__name__)
    conn.close()

block, total = b"0" * (1 << 20), 200 << 20
calls = [("huge", total, (block for _ in range(200)), {"chunked": c}) for c in (0, 1, 0, 1)]
big = v2([row] * 10000)
calls += [("rows", len(big), [big], {}) for _ in range(5)]
nested = b'{"inputs": ' + b"[" * 1000000 + b"]" * 1000000 + b"}"
calls += [("nested", len(nested), [nested], {})]
one = v2([row])
calls += [("slow", len(one), [one[i:i + 8] for i in range(0, len(one), 8)], {"pause": 0.3})
          for _ in range(20)]
idle = [socket.create_connection((host, 80), timeout=60) for _ in range(100)]
threads = [threading.Thread(target=send, args=c[:3], kwargs=c[3]) for c in calls]
for t in threads:
    t.start()
for t in threads:
    t.join()
for conn in idle:
    conn.close()
print(json.dumps(said))
"""


def test_a_hostile_mix_from_another_namespace_does_not_kill_the_monitor_or_steer_its_window(
    real: Cluster, workspace: str
) -> None:
    """Issue 24: no monitor restarts (OOMKilled), other callers still served, the drift
    window kept (its count carries on) and each 10,000-row request counted as 100 rows."""

    def monitor_restarts() -> dict[str, int]:
        pods = kubectl_json(real, "get", "pods", "-n", workspace, "-l",
                            "mlops.seed.dev/modeldeployment=iris")["items"]  # fmt: skip
        return {
            p["metadata"]["name"]: c["restartCount"]
            for p in pods
            for c in p["status"].get("containerStatuses") or []
            if c["name"] in ("monitor", "runtime")
        }

    def samples() -> int:
        status = kubectl_json(real, "get", "mdep", "iris", "-n", workspace)["status"]
        return int(status["drift"]["samples"])

    before, counted = monitor_restarts(), samples()
    assert before, "the iris pods run the monitor"
    outsider = f"outsider-{os.urandom(3).hex()}"
    real.kubectl("create", "namespace", outsider)
    try:
        real.kubectl("wait", "-n", outsider, "--for=create", "serviceaccount/default",
                     "--timeout=60s")  # fmt: skip
        in_pod(real, outsider, "hostile", HOSTILE.replace("sys.argv[1]", f"'iris.{workspace}.svc'"))
        wait(real, outsider, "job/hostile", "condition=Complete", 300)
        said = json.loads(real.kubectl("logs", "-n", outsider, "job/hostile").stdout)
    finally:
        real.kubectl("delete", "namespace", outsider, "--wait=false")
    huge = said["huge"]
    assert all(s in ("413", "ConnectionResetError", "BrokenPipeError") for s in huge), said
    assert "413" in huge, said
    assert said["rows"] == ["200"] * 5, said
    assert said["slow"] == ["200"] * 20, said
    assert said["nested"][0].isdigit(), f"the nested body was answered, not cut off: {said}"
    assert monitor_restarts() == before, "no monitor or runtime was restarted (OOMKilled)"
    url = kubectl_json(real, "get", "mdep", "iris", "-n", workspace)["status"]["url"]
    x, _ = load_iris(return_X_y=True)
    (answer,) = predict_in_cluster(real, workspace, url, x[:5].tolist())
    assert len(answer["outputs"][0]["data"]) == 5, "other callers are still served"
    # 5 x 100 rows of the big requests (maxRowsPerRequest), 20 slow ones, the 5 just sent;
    # with some slack for rows of earlier tests not yet read when `counted` was. Uncapped, the
    # big requests alone would add 50,000; a restarted monitor would have started from 0.
    expected = counted + 5 * 100 + 20 + 5
    until(lambda: samples() >= expected, 120, f"status.drift.samples at {expected}")
    assert samples() <= expected + 100, "no request counted over 100 rows"


# From a pod in another namespace: can it open a connection to each of a serving pod's ports,
# and does the inference port answer a prediction?
PROBE = """
import json, socket, urllib.request
ip, ports = sys_argv
said = {}
for name, port in ports.items():
    try:
        socket.create_connection((ip, port), timeout=5).close()
        said[name] = "connected"
    except OSError as err:
        said[name] = type(err).__name__
row = {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}
req = urllib.request.Request(f"http://{ip}:{ports['inference']}/v2/models/iris/infer",
                             data=json.dumps({"inputs": [row]}).encode(),
                             headers={"Content-Type": "application/json"})
answer = json.loads(urllib.request.urlopen(req, timeout=30).read())
said["predicted"] = answer["outputs"][0]["data"]
print(json.dumps(said))
"""


def test_the_monitor_s_admin_port_refuses_other_namespaces_and_the_operator_still_reads_it(
    real: Cluster, workspace: str
) -> None:
    """The NetworkPolicy the operator writes, enforced on the real node: a pod in another
    namespace reaches the inference port only; the monitor's /drift and /metrics port and the
    runtime's own port behind the monitor refuse it; the operator's reads still land."""
    policy = kubectl_json(real, "get", "networkpolicy", "iris-serving", "-n", workspace)
    assert policy["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"
    (pod, *_) = kubectl_json(real, "get", "pods", "-n", workspace, "-l",
                             "mlops.seed.dev/modeldeployment=iris")["items"]  # fmt: skip
    ports = {p["name"]: p["containerPort"] for c in pod["spec"]["containers"]
             for p in c.get("ports", [])}  # fmt: skip
    probe = {"inference": ports["http"], "admin": ports["monitor"], "runtime": ports["runtime"]}
    outsider = f"outsider-{os.urandom(3).hex()}"
    real.kubectl("create", "namespace", outsider)
    try:
        real.kubectl("wait", "-n", outsider, "--for=create", "serviceaccount/default",
                     "--timeout=60s")  # fmt: skip
        argv = repr((pod["status"]["podIP"], probe))
        in_pod(real, outsider, "probe", PROBE.replace("sys_argv", argv, 1))
        wait(real, outsider, "job/probe", "condition=Complete", 120)
        said = json.loads(real.kubectl("logs", "-n", outsider, "job/probe").stdout)
    finally:
        real.kubectl("delete", "namespace", outsider, "--wait=false")
    assert said["inference"] == "connected", said
    assert said["predicted"] == [0], "inference stays open to every namespace"
    assert said["admin"] == said["runtime"] == "TimeoutError", said  # dropped, not refused

    # The operator's pod is admitted: the next rows reach status.drift through /drift (at
    # least 20 more: rows an earlier test sent may not have been read yet).
    def status() -> dict[str, Any]:
        found: dict[str, Any] = kubectl_json(real, "get", "mdep", "iris", "-n", workspace)["status"]
        return found

    before = status()["drift"]["samples"]
    x, _ = load_iris(return_X_y=True)
    predict_in_cluster(real, workspace, status()["url"], x[:20].tolist())
    drift = until(lambda: (d := status()["drift"])["samples"] >= before + 20 and d, 120,
                  f"status.drift.samples past {before} + 20")  # fmt: skip
    assert drift["pods"] == 1
