"""The generated CRDs on a real API server: they install, accept the examples, reject
invalid manifests and forbidden updates at the right field, and make `kubectl get` useful."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from mlops_operator import GROUP, api
from tests.integration.invalid.cases import EXAMPLE_NAMES, INVALID, UPDATES, Case, example

if TYPE_CHECKING:
    from tests.integration.conftest import Cluster

ROOT = Path(__file__).resolve().parents[2]
CRD_NAMES = [f"{info.plural}.{GROUP}" for info in api.KINDS]
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def apply(cluster: Cluster, manifest: dict[str, Any], namespace: str, *flags: str) -> Any:
    return cluster.kubectl(
        "apply", "--server-side", "-n", namespace, *flags, "-f", "-",
        input=yaml.safe_dump(manifest), check=False,
    )  # fmt: skip


def parse(manifest: dict[str, Any]) -> Any:
    """The manifest as its kind's model (TrainingJob, Model or ModelDeployment)."""
    resource = next(i.resource for i in api.KINDS if i.kind == manifest["kind"])
    return resource.model_validate(manifest)


def stored_spec(cluster: Cluster, manifest: dict[str, Any], namespace: str) -> api.ApiModel:
    """The spec of the object as the server stores it, parsed by the models."""
    name = manifest["metadata"]["name"]
    stored = cluster.kubectl("get", "-n", namespace, manifest["kind"], name, "-o", "json")
    return parse(json.loads(stored.stdout)).spec


def test_crds_install_with_names_and_category(crds: Cluster) -> None:
    listed = crds.kubectl("api-resources", "--api-group=mlops.seed.dev", "-o", "wide").stdout
    for info in api.KINDS:
        row = next(line for line in listed.splitlines() if line.startswith(info.plural + " "))
        assert info.short_name in row.split()
        assert "mlops" in row


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_example_is_accepted(crds: Cluster, namespace: str, name: str) -> None:
    manifest = example(name)
    result = apply(crds, manifest, namespace)
    assert result.returncode == 0, result.stderr
    # What the server stored, defaults included, is what the operator will parse.
    assert stored_spec(crds, manifest, namespace) == parse(manifest).spec


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.name)
def test_invalid_manifest_is_rejected_at_its_field(crds: Cluster, case: Case) -> None:
    # A server-side dry run goes through validation and admission but stores nothing.
    result = apply(crds, case.manifest(), "default", "--dry-run=server")
    assert result.returncode != 0, f"accepted: {case.name}"
    assert str(case.field) in result.stderr, result.stderr


@pytest.mark.parametrize("case", UPDATES, ids=lambda c: c.name)
def test_update_is_checked_by_transition_rules(crds: Cluster, namespace: str, case: Case) -> None:
    created = apply(crds, case.base(), namespace)
    assert created.returncode == 0, created.stderr
    result = apply(crds, case.manifest(), namespace)
    if case.field is None:
        assert result.returncode == 0, result.stderr
        assert stored_spec(crds, case.manifest(), namespace) == parse(case.manifest()).spec
    else:
        assert result.returncode != 0, f"accepted: {case.name}"
        assert f"{case.field}: Invalid value" in result.stderr, result.stderr
        assert "immutable" in result.stderr


def test_conditions_are_keyed_by_type(crds: Cluster, namespace: str) -> None:
    model = example("model-hand-registered")
    assert apply(crds, model, namespace).returncode == 0
    ready = status_condition().wire()
    patch = {"status": {"conditions": [ready, ready]}}
    result = crds.kubectl(
        "patch", "-n", namespace, "model", model["metadata"]["name"], "--subresource=status",
        "--type=merge", "-p", json.dumps(patch), check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "status.conditions[1]: Duplicate value" in result.stderr


def test_kubectl_explain_shows_descriptions(crds: Cluster) -> None:
    # The OpenAPI document is published a moment after the CRD is established.
    deadline = time.monotonic() + 60
    while True:
        result = crds.kubectl("explain", "trainingjob.spec.output", check=False)
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert result.returncode == 0, result.stderr
    assert "Where the artifact goes and the Model it becomes." in result.stdout
    assert "modelName" in result.stdout


def test_kubectl_get_mlops_lists_all_kinds_with_columns(crds: Cluster, namespace: str) -> None:
    for name in EXAMPLE_NAMES:
        assert apply(crds, example(name), namespace).returncode == 0
    # No controller runs here: write the status the way the operator will.
    for kind, name, status in STATUSES:
        crds.kubectl(
            "patch", "-n", namespace, kind, name, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status.wire()}),
        )  # fmt: skip
    tables = parse_tables(crds.kubectl("get", "mlops", "-n", namespace).stdout)

    assert tables["trainingjob.mlops.seed.dev/iris-sklearn"] == {
        "PHASE": "Succeeded", "MODEL": "iris", "NODES": "1",
        "METRIC": "accuracy=0.97", "REGISTERED": "iris-v2",
    }  # fmt: skip
    assert tables["trainingjob.mlops.seed.dev/resnet-ddp"] == {
        "PHASE": "", "MODEL": "resnet", "NODES": "2", "METRIC": "", "REGISTERED": "",
    }  # fmt: skip
    assert tables["model.mlops.seed.dev/iris-v1"] == {
        "MODEL": "iris", "VERSION": "1", "FORMAT": "sklearn", "METRIC": "accuracy=0.953",
        "APPROVED": "true", "READY": "True",
    }  # fmt: skip
    assert tables["modeldeployment.mlops.seed.dev/iris-pinned"] == {
        "MODEL": "iris", "STRATEGY": "RollingUpdate", "CURRENT": "1", "READY-REPLICAS": "2",
        "READY": "True",
    }  # fmt: skip
    assert tables["modeldeployment.mlops.seed.dev/iris-latest"]["STRATEGY"] == "Canary"

    wide = parse_tables(crds.kubectl("get", "mdep", "-o", "wide", "-n", namespace).stdout)
    assert wide["iris-pinned"]["URL"] == "http://iris-pinned.svc"


def status_condition() -> api.Condition:
    return api.Condition(
        type="Ready", status="True", reason="Ready", message="", last_transition_time=NOW
    )


STATUSES: list[tuple[str, str, api.ApiModel]] = [
    (
        "trainingjob",
        "iris-sklearn",
        api.TrainingJobStatus(
            phase="Succeeded", key_metric="accuracy=0.97", registered_model="iris-v2"
        ),
    ),
    (
        "model",
        "iris-v1",
        api.ModelStatus(conditions=[status_condition()], key_metric="accuracy=0.953"),
    ),
    (
        "modeldeployment",
        "iris-pinned",
        api.ModelDeploymentStatus(
            conditions=[status_condition()],
            current_version=1,
            ready_replicas=2,
            url="http://iris-pinned.svc",
        ),
    ),
]


def parse_tables(output: str) -> dict[str, dict[str, str]]:
    """kubectl's tables as {NAME: {COLUMN: value}}, AGE left out (it changes)."""
    rows: dict[str, dict[str, str]] = {}
    for block in output.strip().split("\n\n"):
        header, *lines = block.splitlines()
        # Cells may be empty, so split at the columns' positions in the header.
        names = header.split()
        starts = [match.start() for match in re.finditer(r"\S+", header)]
        for line in lines:
            cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
            row = dict(zip(names, cells, strict=True))
            name = row.pop("NAME")
            rows[name] = {k: v for k, v in row.items() if k != "AGE"}
    return rows
