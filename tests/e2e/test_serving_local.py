"""The serving contract, really served: no cluster, real processes.

examples/iris trains a model, `mlops-operator storage-init` fetches the artifact the way
the init container does, and MLServer (the `mlserver` preset, from its own virtualenv
as in its image) serves it with exactly the environment the operator's builder gives
the runtime container; a V2 inference request returns the model's predictions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import joblib
import pytest
from sklearn.datasets import load_iris

from mlops_operator.api import Model, ModelDeployment
from mlops_operator.api.report import parse_report
from mlops_operator.builders import serving

ROOT = Path(__file__).resolve().parents[2]
MLSERVER = ROOT / ".venv-mlserver" / "bin" / "mlserver"
sys.path.insert(0, str(ROOT / "tools" / "cluster"))
import cluster as local_cluster  # noqa: E402


def pod_spec(artifact_uri: str) -> dict[str, Any]:
    model = Model.model_validate({
        "metadata": {"name": "iris-v1"},
        "spec": {"modelName": "iris", "version": 1,
                 "artifact": {"uri": artifact_uri, "format": "sklearn"}},
    })  # fmt: skip
    md = ModelDeployment.model_validate({
        "metadata": {"name": "iris", "namespace": "ml", "uid": "u", "generation": 1},
        "spec": {"model": {"name": "iris", "version": 1}, "runtime": {"preset": "mlserver"}},
    })  # fmt: skip
    built = serving.build_deployment(md, model, track="stable", replicas=1, storage_image="op")
    spec: dict[str, Any] = built["spec"]["template"]["spec"]
    return spec


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"mlserver exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url}:\n{log.read_text()}")


def test_trained_model_is_fetched_and_served_over_v2(tmp_path: Path) -> None:
    assert MLSERVER.exists(), "run `make mlserver-venv` (make test does)"
    # 1. Train: the artifact lands on "the PVC" (a local directory standing in for it).
    pvc = tmp_path / "pvc"
    log = tmp_path / "termination-log"
    env = {**os.environ, "MLOPS_OUTPUT_URI": f"file://{pvc}/models/iris/run-1",
           "MLOPS_TERMINATION_LOG": str(log)}  # fmt: skip
    subprocess.run([sys.executable, str(ROOT / "examples" / "iris" / "train.py")], env=env,
                   check=True, timeout=120)  # fmt: skip
    report = parse_report(log.read_text())

    # 2. The Model an operator would register points at the PVC; build the pod for it.
    spec = pod_spec("pvc://models/iris/run-1/model.joblib")
    init, runtime = spec["initContainers"][0], spec["containers"][0]
    models_dir = tmp_path / "mnt-models"
    local = {serving.PVC_ROOT: str(pvc), serving.MODEL_DIR: str(models_dir)}

    def localise(value: str) -> str:
        for container_path, here in local.items():
            value = value.replace(container_path, here)
        return value

    # 3. storage-init, as the init container runs it.
    fetched = subprocess.run(
        [sys.executable, "-m", "mlops_operator", *[localise(a) for a in init["args"]]],
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert fetched.stdout.strip() == str(models_dir / "model.joblib")
    assert report.artifact.uri.endswith("run-1/model.joblib")

    # 4. MLServer with the runtime container's environment (ports moved off the defaults).
    http, grpc, metrics = (local_cluster.free_port() for _ in range(3))
    runtime_env = {e["name"]: localise(e["value"]) for e in runtime["env"]}
    runtime_env |= {"MLSERVER_HTTP_PORT": str(http), "MLSERVER_GRPC_PORT": str(grpc),
                    "MLSERVER_METRICS_PORT": str(metrics)}  # fmt: skip
    args = [localise(a) for a in runtime["args"]]
    assert args[:2] == ["mlserver", "start"]
    server_log = tmp_path / "mlserver.log"
    with server_log.open("wb") as out:
        server = subprocess.Popen(
            [str(MLSERVER), *args[1:]], env={**os.environ, **runtime_env}, cwd=tmp_path,
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        probe = runtime["readinessProbe"]["httpGet"]["path"]
        wait_ready(f"http://127.0.0.1:{http}{probe}", server, server_log)
        # 5. A V2 inference request.
        features, _ = load_iris(return_X_y=True)
        rows = features[::25].tolist()
        request = {"inputs": [{"name": "input-0", "shape": [len(rows), 4], "datatype": "FP64",
                               "data": rows}]}  # fmt: skip
        url = f"http://127.0.0.1:{http}/v2/models/iris/infer"
        call = urllib.request.Request(url, data=json.dumps(request).encode(),
                                      headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(call, timeout=30) as response:
            answer = json.load(response)
    finally:
        server.terminate()
        server.wait(timeout=30)
    expected = joblib.load(models_dir / "model.joblib").predict(features[::25]).tolist()
    assert answer["model_name"] == "iris"
    assert answer["outputs"][0]["data"] == expected
    assert len(set(expected)) > 1, "a real model, not a constant"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # urllib must talk to the local server directly.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
