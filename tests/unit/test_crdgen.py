"""The CRD generator: structural, bounded, deterministic, and in sync with crds/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_operator import api, crdgen
from mlops_operator.cli import main

ROOT = Path(__file__).resolve().parents[2]
CRDS = crdgen.crds()
# The keys of JSONSchemaProps the generator may write; anything else is a conversion bug.
ALLOWED = {
    "type", "description", "properties", "required", "items", "additionalProperties",
    "enum", "format", "default", "minimum", "maximum", "minLength", "maxLength", "pattern",
    "minItems", "maxItems", "maxProperties", "anyOf", "x-kubernetes-int-or-string",
    "x-kubernetes-validations", "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
}  # fmt: skip


def schemas() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, crd in CRDS.items():
        yield name, crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node below `node`, with a readable path."""
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from nodes(child, f"{path}.{name}")
    if "items" in node:
        yield from nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from nodes(node["additionalProperties"], f"{path}[*]")


def structural_problems(path: str, node: dict[str, Any]) -> list[str]:
    """What the API server's structural-schema check would object to at one node."""
    problems = [f"{path}: unexpected key {key}" for key in set(node) - ALLOWED]
    if node.get("x-kubernetes-int-or-string"):
        if "type" in node or node.get("anyOf") != [{"type": "integer"}, {"type": "string"}]:
            problems.append(f"{path}: int-or-string must be the plain anyOf of integer and string")
    elif "type" not in node:
        problems.append(f"{path}: no type")
    elif "anyOf" in node:
        problems.append(f"{path}: anyOf outside int-or-string")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{path}: properties and additionalProperties together")
    return problems


def unbounded(path: str, node: dict[str, Any]) -> list[str]:
    """Sizes the CEL cost estimator needs: strings, lists and maps must have a maximum."""
    kind = node.get("type")
    if kind == "string" and not ({"maxLength", "enum", "format"} & node.keys()):
        return [f"{path}: string without maxLength"]
    if kind == "array" and "maxItems" not in node:
        return [f"{path}: array without maxItems"]
    if "additionalProperties" in node and "maxProperties" not in node:
        return [f"{path}: map without maxProperties"]
    return []


@pytest.mark.parametrize(("name", "schema"), list(schemas()), ids=lambda x: str(x)[:40])
def test_schema_is_structural_and_bounded(name: str, schema: dict[str, Any]) -> None:
    problems = []
    for path, node in nodes(schema):
        problems += structural_problems(path, node)
        if path not in (".apiVersion", ".kind"):
            problems += unbounded(path, node)
    assert problems == []


@pytest.mark.parametrize(("name", "schema"), list(schemas()), ids=lambda x: str(x)[:40])
def test_every_field_is_described_for_kubectl_explain(name: str, schema: dict[str, Any]) -> None:
    undescribed = [
        f"{path}.{field}"
        for path, node in nodes(schema)
        for field, child in node.get("properties", {}).items()
        if field != "metadata" and not child.get("description")
    ]
    assert undescribed == []


@pytest.mark.parametrize(("name", "schema"), list(schemas()), ids=lambda x: str(x)[:40])
def test_list_map_keys_are_always_present(name: str, schema: dict[str, Any]) -> None:
    for path, node in nodes(schema):
        for key in node.get("x-kubernetes-list-map-keys", []):
            item = node["items"]
            assert key in item["required"] or "default" in item["properties"][key], path


@pytest.mark.parametrize(("name", "schema"), list(schemas()), ids=lambda x: str(x)[:40])
def test_rule_field_paths_exist(name: str, schema: dict[str, Any]) -> None:
    for path, node in nodes(schema):
        for rule in node.get("x-kubernetes-validations", []):
            assert rule["message"]
            if "fieldPath" in rule:
                target = node
                for part in rule["fieldPath"].lstrip(".").split("."):
                    assert part in target["properties"], (path, rule)
                    target = target["properties"][part]


def test_conditions_are_a_list_map_keyed_by_type() -> None:
    for _, schema in schemas():
        conditions = schema["properties"]["status"]["properties"]["conditions"]
        assert conditions["x-kubernetes-list-type"] == "map"
        assert conditions["x-kubernetes-list-map-keys"] == ["type"]
        assert set(conditions["items"]["required"]) == {
            "type", "status", "reason", "message", "lastTransitionTime"
        }  # fmt: skip


def test_optional_fields_are_omitted_rather_than_null() -> None:
    spec = crdgen.model_schema(api.TrainingJobSpec)
    assert "queueName" not in spec["required"]
    assert spec["properties"]["queueName"]["type"] == "string"


def test_quantities_are_int_or_string() -> None:
    spec = crdgen.model_schema(api.TrainingJobSpec)
    quantity = spec["properties"]["resources"]["properties"]["limits"]["additionalProperties"]
    assert quantity["x-kubernetes-int-or-string"] is True
    assert quantity["pattern"].startswith("^")


def test_map_key_constraints_become_cel() -> None:
    spec = crdgen.model_schema(api.TrainingJobSpec)
    labels = spec["properties"]["podMetadata"]["properties"]["labels"]
    assert labels["x-kubernetes-validations"][0]["rule"].startswith("self.all(k, size(k) <= 317")


def test_training_job_spec_is_immutable_except_suspend() -> None:
    spec = crdgen.model_schema(api.TrainingJobSpec)
    guarded = {
        rule["fieldPath"].lstrip(".")
        for rule in spec["x-kubernetes-validations"]
        if "oldSelf" in rule["rule"]
    }
    assert guarded == set(spec["properties"]) - {"suspend"}


def test_model_spec_is_immutable() -> None:
    rules = crdgen.model_schema(api.ModelSpec)["x-kubernetes-validations"]
    assert {"rule": "self == oldSelf", "message": rules[-1]["message"]} in rules


@pytest.mark.parametrize("info", api.KINDS, ids=lambda i: i.kind)
def test_names_subresource_and_printer_columns(info: api.KindInfo) -> None:
    crd = CRDS[f"mlops.seed.dev_{info.plural}.yaml"]
    names = crd["spec"]["names"]
    version = crd["spec"]["versions"][0]
    assert names["shortNames"] == [info.short_name]
    assert names["categories"] == ["mlops"]
    assert version["subresources"] == {"status": {}}
    schema = version["schema"]["openAPIV3Schema"]
    for column in version["additionalPrinterColumns"]:
        path = column["jsonPath"]
        if path.startswith((".spec.", ".status.")) and "[" not in path:
            node = schema
            for part in path.strip(".").split("."):
                node = node["properties"][part]
            assert node["type"] == column["type"], path


def test_expected_short_names() -> None:
    assert {i.kind: i.short_name for i in api.KINDS} == {
        "TrainingJob": "tj",
        "Model": "mdl",
        "ModelDeployment": "mdep",
        "Dataset": "ds",
        "ContinuousTraining": "ct",
    }


def test_generation_is_deterministic() -> None:
    first = crdgen.generated_files(Path("crds"), Path("docs/api.md"))
    second = crdgen.generated_files(Path("crds"), Path("docs/api.md"))
    assert first == second
    for path, text in first.items():
        if path.suffix == ".yaml":
            assert yaml.safe_load(text) == CRDS[path.name]
            assert "&id" not in text  # no YAML anchors


def test_checked_in_files_are_up_to_date() -> None:
    files = crdgen.generated_files(ROOT / "crds", ROOT / "docs" / "api.md")
    assert crdgen.differences(files, ROOT / "crds") == [], "run `make crds`"


def test_docs_cover_every_field_and_rule() -> None:
    docs = crdgen.generated_files(Path("crds"), Path("api.md"))[Path("api.md")]
    for _, schema in schemas():
        for path, node in nodes(schema):
            if path.startswith((".spec", ".status")) and not path.endswith(("[]", "[*]")):
                assert f"`{path.lstrip('.')}`" in docs, path
            for rule in node.get("x-kubernetes-validations", []):
                assert rule["message"] in docs


def test_cli_writes_then_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, docs = tmp_path / "crds", tmp_path / "docs" / "api.md"
    args = ["crds", "--out", str(out), "--docs", str(docs)]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(CRDS)
    assert main([*args, "--check"]) == 0
    assert capsys.readouterr().out == ""

    edited = out / "mlops.seed.dev_models.yaml"
    edited.write_text(edited.read_text().replace("shortNames:\n    - mdl", "shortNames:\n    - m"))
    (out / "old.yaml").write_text("kind: Leftover\n")
    assert main([*args, "--check"]) == 1
    printed = capsys.readouterr().out
    assert "-    - m\n+    - mdl" in printed
    assert f"stale file, not generated: {out / 'old.yaml'}" in printed


def test_cli_check_fails_on_missing_docs(tmp_path: Path) -> None:
    out = tmp_path / "crds"
    assert main(["crds", "--out", str(out), "--docs", str(tmp_path / "api.md")]) == 0
    (tmp_path / "api.md").unlink()
    assert main(["crds", "--out", str(out), "--docs", str(tmp_path / "api.md"), "--check"]) == 1
