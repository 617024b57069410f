"""The Argo CD health checks (Lua) against their own test cases, in Argo CD's format.

The cases run under Argo CD's own Lua engine: tools/cluster/go/argocd/main.go is a small
harness around Argo CD's util/lua package (gopher-lua inside), built from the pinned
ARGOCD_VERSION by `bash tools/cluster/build.sh argocd` (`make test-unit` and `make test` build
it before pytest). It registers each health.lua as an argocd-cm entry does and asks Argo CD's
GetResourceHealth for the health of each test object, the call Argo CD's controller makes.
Test objects were captured from the operator on the local cluster (TrainingJob, Model) or
follow the API models (checked below).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_operator import api

ROOT = Path(__file__).resolve().parents[2]
RESOURCE_CUSTOMIZATIONS = ROOT / "gitops" / "argocd" / "resource_customizations"
GROUP = "mlops.seed.dev"
CUSTOMIZATIONS = RESOURCE_CUSTOMIZATIONS / GROUP
ARGOCD_CM = ROOT / "gitops" / "argocd" / "argocd-cm.yaml"
KINDS = ["TrainingJob", "Model", "ModelDeployment", "Dataset", "ContinuousTraining"]
MODELS = {info.kind: info.resource for info in api.KINDS}
# The harness's results, by (<group>/<Kind>, inputPath).
Results = dict[tuple[str, str], dict[str, Any]]


def cases() -> list[Any]:
    found = []
    for kind in KINDS:
        tests = yaml.safe_load((CUSTOMIZATIONS / kind / "health_test.yaml").read_text())["tests"]
        for case in tests:
            found.append(pytest.param(kind, case, id=f"{kind}-{Path(case['inputPath']).stem}"))
    return found


@pytest.fixture(scope="module")
def argocd_results() -> Results:
    """Every case's result from Argo CD's engine."""
    # Built before pytest (`make test-unit`); never here, under the test timeout. A missing
    # binary fails the tests: without it nothing checks the scripts.
    built = subprocess.run(
        ["bash", str(ROOT / "tools" / "cluster" / "build.sh"), "--cached", "argocd"],
        capture_output=True,
        text=True,
    )
    if built.returncode != 0:
        pytest.fail(
            f"the Argo CD harness is not built: {built.stderr.strip()}\n"
            "build it with `bash tools/cluster/build.sh argocd` (or `make test-unit`)",
            pytrace=False,
        )
    harness = Path(built.stdout.strip().splitlines()[-1]) / "argocd-lua-test"
    ran = subprocess.run(
        [str(harness), "-json", str(RESOURCE_CUSTOMIZATIONS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Exit 1 is "some case failed": each test below reports its own.
    if ran.returncode not in (0, 1):
        pytest.fail(f"{harness.name} failed (exit {ran.returncode}):\n{ran.stderr}", pytrace=False)
    return {(r["key"], r["input"]): r for r in json.loads(ran.stdout)}


@pytest.mark.parametrize(("kind", "case"), cases())
def test_health(argocd_results: Results, kind: str, case: dict[str, Any]) -> None:
    result = argocd_results.get((f"{GROUP}/{kind}", case["inputPath"]))
    assert result is not None, f"Argo CD's engine did not run {kind}/{case['inputPath']}"
    assert "error" not in result, f"Argo CD's engine: {result['error']}"
    assert result["got"] == case["healthStatus"]
    assert result["pass"]


def test_argocd_ran_exactly_these_cases(argocd_results: Results) -> None:
    expected = {
        (f"{GROUP}/{kind}", case["inputPath"]) for kind, case in (p.values for p in cases())
    }
    assert set(argocd_results) == expected


@pytest.mark.parametrize("kind", KINDS)
def test_every_state_has_a_case_and_every_case_is_a_valid_object(kind: str) -> None:
    tests = yaml.safe_load((CUSTOMIZATIONS / kind / "health_test.yaml").read_text())["tests"]
    used = {case["inputPath"] for case in tests}
    files = {f"testdata/{p.name}" for p in (CUSTOMIZATIONS / kind / "testdata").glob("*.yaml")}
    assert used == files
    statuses = {case["healthStatus"]["status"] for case in tests}
    assert {"Progressing", "Healthy", "Degraded"} <= statuses
    for path in files:
        # The objects are what the API server would hand Argo CD: valid by our API models.
        MODELS[kind].model_validate(yaml.safe_load((CUSTOMIZATIONS / kind / path).read_text()))


def test_argocd_cm_embeds_the_scripts_verbatim() -> None:
    """gitops/argocd/argocd-cm.yaml is what users apply; it must carry these exact scripts."""
    data = yaml.safe_load(ARGOCD_CM.read_text())["data"]
    for kind in KINDS:
        key = f"resource.customizations.health.mlops.seed.dev_{kind}"
        assert data[key] == (CUSTOMIZATIONS / kind / "health.lua").read_text(), (
            f"{key} differs from {kind}/health.lua: run `make manifests`"
        )
