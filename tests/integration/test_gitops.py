"""What Argo CD and Flux see: applying the same manifests again changes nothing.

The operator writes only status (kopf keeps no annotations on our objects: every handler is
an event handler), never spec, so once it has reconciled an object a GitOps tool finds no
drift and a re-sync is a no-op: client-side apply (Argo CD's default) and server-side apply
(Flux; Argo CD with ServerSideApply).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from mlops_operator.api.report import TrainingReport

from .conftest import ROOT, Cluster, Operator

REPORT = TrainingReport.model_validate(
    {"metrics": {"accuracy": 0.95}, "artifact": {"uri": "s3://bucket/iris/gitops/model.joblib"}}
).to_message()


def manifests(suffix: str) -> str:
    """A TrainingJob as a user commits it (few fields: the CRD defaults the rest) and the
    hand-registered Model example."""
    trainingjob = {
        "apiVersion": "mlops.seed.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {
            "name": f"iris-{suffix}",
            "annotations": {"mlops.seed.dev/code-revision": "4f9c2e1"},
        },
        "spec": {
            "image": "registry.example/train-iris:1",
            "hyperparameters": {"C": "1.0"},
            "output": {"uri": "s3://mlops-artifacts/iris", "modelName": f"gitops-{suffix}",
                       "format": "sklearn", "keyMetric": "accuracy"},
            "podMetadata": {"annotations": {"sim.mlops.seed.dev/message": REPORT}},
        },
    }  # fmt: skip
    model = yaml.safe_load((ROOT / "examples" / "model-hand-registered.yaml").read_text())
    model["metadata"]["name"] = f"manual-{suffix}-v1"
    model["spec"]["modelName"] = f"manual-{suffix}"
    return yaml.safe_dump_all([trainingjob, model])


def versions(cluster: Cluster, namespace: str, suffix: str) -> dict[str, Any]:
    names = [f"trainingjob/iris-{suffix}", f"model/manual-{suffix}-v1"]
    listed = json.loads(cluster.kubectl("get", "-n", namespace, *names, "-o", "json").stdout)
    return {
        item["kind"]: (item["metadata"]["resourceVersion"], item["metadata"]["generation"])
        for item in listed["items"]
    }


@pytest.mark.parametrize("mode", ["client-side", "server-side"])
def test_reapplying_after_the_operator_reconciled_changes_nothing(
    cluster: Cluster, op_namespace: str, operator: Operator, mode: str
) -> None:
    suffix = "csa" if mode == "client-side" else "ssa"
    flags = ["--server-side", "--field-manager=gitops-test"] if mode == "server-side" else []
    docs = manifests(suffix)
    cluster.kubectl("apply", *flags, "-n", op_namespace, "-f", "-", input=docs)
    # Everything the operator writes, written: the run registered its Model, and the
    # hand-registered Model was validated.
    cluster.kubectl("wait", "-n", op_namespace, "--for=condition=Ready", "--timeout=90s",
                    f"trainingjob/iris-{suffix}", f"model/manual-{suffix}-v1")  # fmt: skip
    before = versions(cluster, op_namespace, suffix)

    diff = cluster.kubectl("diff", *flags, "-n", op_namespace, "-f", "-", input=docs, check=False)
    assert diff.returncode == 0, f"perpetual diff:\n{diff.stdout}{diff.stderr}"
    out = cluster.kubectl("apply", *flags, "-n", op_namespace, "-f", "-", input=docs).stdout
    assert "configured" not in out, out
    assert versions(cluster, op_namespace, suffix) == before
