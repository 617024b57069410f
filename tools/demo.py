"""`make demo`: the whole lifecycle on the local cluster's real node, for a newcomer.

Brings the cluster up with its real node (building what is missing), installs the operator
from its image with Helm, trains iris, shows the registered Model, serves it with MLServer,
asks it for a prediction, trains a better-regularised second version and watches it roll
out as a canary. Every step prints what it does and the kubectl command to look further.
The objects stay in the namespace `demo` afterwards; `make cluster-down` removes it all.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools" / "cluster"))
import cluster  # noqa: E402

NAMESPACE = "demo"
SYSTEM = "mlops-demo"  # not mlops-system: the tests install there
EXAMPLES = ROOT / "examples" / "demo"
ON_REAL_NODE = {
    "nodeSelector": {"mlops.seed.dev/node": "real"},
    "tolerations": [
        {"key": "mlops.seed.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}
    ],
}
started = time.monotonic()


def say(message: str) -> None:
    print(f"[demo {time.monotonic() - started:5.0f}s] {message}", flush=True)


def look(command: str) -> None:
    print(f"             look: KUBECONFIG={cluster.KUBECONFIG} .venv/bin/{command}", flush=True)


def kubectl(*args: str, input: str | None = None, timeout: float = 300) -> str:
    proc = subprocess.run(
        [cluster.kubectl_binary(), "--kubeconfig", str(cluster.KUBECONFIG), *args],
        input=input, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout


def get(kind: str, name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(kubectl("get", "-n", NAMESPACE, kind, name, "-o", "json"))
    return loaded


def install_operator() -> None:
    helm = str(cluster.build("helm") / "helm")
    kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": SYSTEM,
                     "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
    }))  # fmt: skip
    values = {
        "image": {"repository": "localhost/mlops-operator", "tag": "0.1.0", "pullPolicy": "Never"},
        "watchNamespaces": [NAMESPACE],
        **ON_REAL_NODE,
    }
    command = [helm, "--kubeconfig", str(cluster.KUBECONFIG), "upgrade", "--install",
               "demo", str(ROOT / "charts" / "mlops-operator"), "-n", SYSTEM,
               "--values", "-", "--wait", "--timeout=3m"]  # fmt: skip
    proc = subprocess.run(command, input=yaml.safe_dump(values), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"helm install failed:\n{proc.stderr}")


def workspace() -> None:
    kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": NAMESPACE,
                     "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
    }))  # fmt: skip
    secret = json.loads(kubectl("get", "secret", "s3-credentials", "-n", "storage", "-o", "json"))
    kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-credentials"},
        "data": secret["data"],
    }))  # fmt: skip
    kubectl("wait", "-n", NAMESPACE, "--for=create", "serviceaccount/default", "--timeout=60s")


def train(name: str, c: str) -> str:
    manifest = yaml.safe_load((EXAMPLES / "trainingjob.yaml").read_text())
    manifest["metadata"]["name"] = name
    manifest["spec"]["hyperparameters"]["C"] = c
    kubectl("delete", "-n", NAMESPACE, "tj", name, "--ignore-not-found", "--wait=true")
    kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump(manifest))
    kubectl("wait", "-n", NAMESPACE, f"tj/{name}", "--for=condition=Ready", "--timeout=300s")
    model: str = get("tj", name)["status"]["registeredModel"]
    return model


def predict() -> Any:
    url = get("mdep", "iris")["status"]["url"]
    rows = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]]
    request = {"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP64",
                           "data": [v for row in rows for v in row]}]}  # fmt: skip
    script = (
        "import json, urllib.request\n"
        f"req = urllib.request.Request({url + '/v2/models/iris/infer'!r}, "
        f"data={json.dumps(request).encode()!r}, headers={{'Content-Type': 'application/json'}})\n"
        "print(urllib.request.urlopen(req, timeout=30).read().decode())\n"
    )
    name = f"client-{int(time.time())}"
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False,
                 "securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                                     "seccompProfile": {"type": "RuntimeDefault"}},
                 "containers": [{"name": "client", "image": "localhost/iris-trainer:0.1.0",
                                 "imagePullPolicy": "Never", "command": ["python", "-c", script],
                                 "securityContext": {"allowPrivilegeEscalation": False,
                                                     "capabilities": {"drop": ["ALL"]}}}],
                 **ON_REAL_NODE},
    }  # fmt: skip
    kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump(pod))
    kubectl("wait", "-n", NAMESPACE, f"pod/{name}", "--for=jsonpath={.status.phase}=Succeeded",
            "--timeout=120s")  # fmt: skip
    answer = json.loads(kubectl("logs", "-n", NAMESPACE, name))
    kubectl("delete", "-n", NAMESPACE, "pod", name, "--wait=false")
    names = ["setosa", "versicolor", "virginica"]
    return [names[int(p)] for p in answer["outputs"][0]["data"]]


def main() -> int:
    say("bringing up the local cluster with its real node (the first time builds everything)")
    cluster.up()
    if not cluster.has_real_node():
        why = cluster.realnode.unavailable()
        raise SystemExit(f"the demo needs the real node, which this machine cannot run: {why}")
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    say("installing the operator with Helm, from its image, onto the real node")
    install_operator()
    look(f"kubectl -n {SYSTEM} get pods -o wide")
    workspace()

    say("training iris (examples/demo/trainingjob.yaml): a real pod, writing to S3 in-cluster")
    first = train("iris-c1", "1.0")
    model = get("mdl", first)
    say(f"registered {first}: metrics {model['spec']['metrics']}")
    look(f"kubectl -n {NAMESPACE} get tj,mdl")

    say("serving it with MLServer (examples/demo/modeldeployment.yaml)")
    kubectl("apply", "-n", NAMESPACE, "-f", str(EXAMPLES / "modeldeployment.yaml"))
    kubectl("wait", "-n", NAMESPACE, "mdep/iris", "--for=condition=Ready", "--timeout=300s")
    say(f"serving version {get('mdep', 'iris')['status']['currentVersion']}; asking it:")
    say(f"  prediction for three flowers: {predict()}")
    look(f"kubectl -n {NAMESPACE} get mdep,deploy,pods")

    say("training a second version (C=0.5); the policy picks it up and rolls it out as a canary")
    second = train("iris-c05", "0.5")
    version = get("mdl", second)["spec"]["version"]
    served = f"--for=jsonpath={{.status.currentVersion}}={version}"
    kubectl("wait", "-n", NAMESPACE, "mdep/iris", served, "--timeout=300s")
    kubectl("wait", "-n", NAMESPACE, "mdep/iris", "--for=condition=Ready", "--timeout=300s")
    history = get("mdep", "iris")["status"]["history"]
    for record in reversed(history):
        say(f"  rollout of version {record['version']}: {record['outcome']}")
    say(f"  prediction from version {version}: {predict()}")
    look(f"kubectl -n {NAMESPACE} describe mdep iris     # the canary's Events")
    say("done. Everything stays in namespace demo; `make cluster-down` removes the cluster.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
