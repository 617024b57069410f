"""What the real-node tests share: the images and placement of their pods, the S3 store's
credentials (referenced from a Secret), and kubectl helpers. The fixtures that install the
operator are in conftest.py."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import yaml

from tests.fixtures import Cluster

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / "examples" / "iris" / "train.py"
# Unique per run: a namespace of an earlier run may still be terminating.
RELEASE = f"e2e-{uuid.uuid4().hex[:6]}"
SYSTEM_NS = f"mlops-{RELEASE}"
WATCHED = "e2e-*"
TRAINER = "localhost/iris-trainer:0.1.0"
# Pods that ask for the real node: its label, and a toleration of its taint.
ON_REAL_NODE = {
    "nodeSelector": {"mlops.seed.dev/node": "real"},
    "tolerations": [{"key": "mlops.seed.dev/real-node", "operator": "Exists",
                     "effect": "NoSchedule"}],
}  # fmt: skip
S3_ENV = [
    {"name": "AWS_ENDPOINT_URL", "value": "http://s3.storage.svc.cluster.local:7070"},
    {"name": "AWS_DEFAULT_REGION", "value": "us-east-1"},
    *(
        {"name": key, "valueFrom": {"secretKeyRef": {"name": "s3-credentials", "key": key}}}
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    ),
]
HPARAMS = {"C": "0.5", "seed": "3"}


def kubectl_json(cluster: Cluster, *args: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(cluster.kubectl(*args, "-o", "json").stdout)
    return loaded


def apply(cluster: Cluster, namespace: str, manifest: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest))


def wait(cluster: Cluster, namespace: str, target: str, condition: str, timeout: int) -> None:
    cluster.kubectl("wait", "-n", namespace, f"--for={condition}", target,
                    f"--timeout={timeout}s", timeout=timeout + 10)  # fmt: skip


def trainingjob(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mlops.seed.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "image": TRAINER,
            "imagePullPolicy": "Never",
            "env": S3_ENV,
            "output": {"uri": "s3://models/iris", "modelName": "iris", "format": "sklearn",
                       "keyMetric": "accuracy"},
            "scheduling": ON_REAL_NODE,
            **spec,
        },
    }  # fmt: skip


def predict_in_cluster(
    real: Cluster, namespace: str, url: str, rows: list[list[float]], *, batch: int = 100
) -> list[Any]:
    """V2 inference requests of at most `batch` rows each (the monitor counts at most 100
    rows of one request) from a pod on the real node, through the Service's name; the
    answers, in order."""
    name = f"client-{uuid.uuid4().hex[:6]}"
    requests = [
        {"inputs": [{"name": "x", "shape": [len(part), 4], "datatype": "FP64",
                     "data": [v for row in part for v in row]}]}
        for part in (rows[i : i + batch] for i in range(0, len(rows), batch))
    ]  # fmt: skip
    script = (
        "import json, sys, urllib.request\n"
        f"bodies = {[json.dumps(r).encode() for r in requests]!r}\n"
        f"url = {url + '/v2/models/iris/infer'!r}\n"
        "answers = [json.loads(urllib.request.urlopen(urllib.request.Request(url, data=b,"
        " headers={'Content-Type': 'application/json'}), timeout=30).read()) for b in bodies]\n"
        "print(json.dumps(answers))\n"
    )
    in_pod(real, namespace, name, script, retries=3)
    wait(real, namespace, f"job/{name}", "condition=Complete", 120)
    answers: list[Any] = json.loads(real.kubectl("logs", "-n", namespace, f"job/{name}").stdout)
    return answers


def in_pod(
    real: Cluster, namespace: str, name: str, script: str, *, env: Any = (), retries: int = 0
) -> None:
    """Start a Python script in a pod of the trainer image on the real node (a Job)."""
    job = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": retries, "template": {"spec": {
            "restartPolicy": "Never", "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "main", "image": TRAINER, "imagePullPolicy": "Never",
                            "command": ["python", "-c", script], "env": list(env),
                            "securityContext": {"allowPrivilegeEscalation": False,
                                                "capabilities": {"drop": ["ALL"]}}}],
            **ON_REAL_NODE,
        }}},
    }  # fmt: skip
    apply(real, namespace, job)


def traffic(real: Cluster, namespace: str, name: str, url: str, *, shift: float) -> None:
    """A client sending one-row V2 requests of iris rows, `shift` cm added to petal_length,
    about 10 a second for up to 15 minutes: a new connection each, so the Service spreads
    them over every Ready pod, stable and canary. Error answers are sent on regardless."""
    script = (
        "import json, random, time, urllib.request\n"
        "from sklearn.datasets import load_iris\n"
        "x = load_iris().data\n"
        "rng = random.Random(7)\n"
        "end = time.time() + 900\n"
        "while time.time() < end:\n"
        "    row = [float(v) for v in x[rng.randrange(len(x))]]\n"
        f"    row[2] += {shift}\n"
        "    body = {'inputs': [{'name': 'x', 'shape': [1, 4], 'datatype': 'FP64', 'data': row}]}\n"
        f"    req = urllib.request.Request({url!r}, data=json.dumps(body).encode(),\n"
        "                                 headers={'Content-Type': 'application/json'})\n"
        "    try:\n"
        "        urllib.request.urlopen(req, timeout=10).read()\n"
        "    except Exception:\n"
        "        pass\n"
        "    time.sleep(0.1)\n"
    )
    in_pod(real, namespace, name, script)
