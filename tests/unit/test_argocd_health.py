"""The Argo CD health checks (Lua) against their own test cases, in Argo CD's format.

Argo CD runs health.lua with gopher-lua (Lua 5.1) and the object as the global `obj`;
lupa's Lua 5.1 does the same here. Test objects were captured from the operator on the
local cluster (TrainingJob, Model) or follow the API models (checked below).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa.lua51 as lupa
import pytest
import yaml

from mlops_operator import api

ROOT = Path(__file__).resolve().parents[2]
CUSTOMIZATIONS = ROOT / "gitops" / "argocd" / "resource_customizations" / "mlops.seed.dev"
ARGOCD_CM = ROOT / "gitops" / "argocd" / "argocd-cm.yaml"
KINDS = ["TrainingJob", "Model", "ModelDeployment", "Dataset", "ContinuousTraining"]
MODELS = {info.kind: info.resource for info in api.KINDS}


def health(script: str, obj: dict[str, Any]) -> dict[str, str]:
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(script)
    return {key: result[key] for key in ("status", "message") if result[key] is not None}


def cases() -> list[Any]:
    found = []
    for kind in KINDS:
        tests = yaml.safe_load((CUSTOMIZATIONS / kind / "health_test.yaml").read_text())["tests"]
        for case in tests:
            found.append(pytest.param(kind, case, id=f"{kind}-{Path(case['inputPath']).stem}"))
    return found


@pytest.mark.parametrize(("kind", "case"), cases())
def test_health(kind: str, case: dict[str, Any]) -> None:
    script = (CUSTOMIZATIONS / kind / "health.lua").read_text()
    obj = yaml.safe_load((CUSTOMIZATIONS / kind / case["inputPath"]).read_text())
    assert health(script, obj) == case["healthStatus"]


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
