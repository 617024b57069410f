"""Generate the CRDs (crds/*.yaml) from the API models.

pydantic's JSON schema of each spec and status model is turned into a structural
OpenAPI v3 schema: `$ref`s inlined, `anyOf` with null collapsed (optional fields are simply
not required), `int | str` unions turned into `x-kubernetes-int-or-string`, and map key
constraints (which structural schemas cannot express) turned into CEL rules. Output is
deterministic (sorted keys) so that `--check` can compare it with the files on disk.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml

from mlops_operator import GROUP, VERSION, docgen
from mlops_operator.api import (
    KINDS,
    ApiModel,
    KindInfo,
    PrinterColumn,
    cel_regex,
    cel_validation,
)

Schema = dict[str, Any]

CATEGORY = "mlops"
# Keys of pydantic's JSON schema that the Kubernetes schema does not take or need.
_DROPPED = {"title", "$defs"}
# How pydantic constrains the keys of a dict; structural schemas have no such thing.
_MAP_KEYS = {"patternProperties", "propertyNames"}


def crds() -> dict[str, Schema]:
    """The CRD of every kind, by file name."""
    return {f"{GROUP}_{info.plural}.yaml": crd(info) for info in KINDS}


def crd(info: KindInfo) -> Schema:
    """The CustomResourceDefinition of one kind."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{info.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": [info.short_name],
                "categories": [CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [_column(c) for c in info.printer_columns],
                    "schema": {"openAPIV3Schema": root_schema(info)},
                }
            ],
        },
    }


def _column(column: PrinterColumn) -> Schema:
    entry: Schema = {
        "name": column.name,
        "type": column.type,
        "jsonPath": column.json_path,
        "description": column.description,
    }
    if column.priority:
        entry["priority"] = column.priority
    return entry


def root_schema(info: KindInfo) -> Schema:
    """The schema of the whole object: apiVersion, kind, metadata, spec, status."""
    schema: Schema = {
        "type": "object",
        "description": (info.resource.__doc__ or "").strip(),
        "properties": {
            "apiVersion": {"type": "string", "description": "API group and version."},
            "kind": {"type": "string", "description": "Kind of the object."},
            "metadata": {
                "type": "object",
                "properties": {
                    "name": {
                        "type": "string",
                        "maxLength": info.max_name_length,
                        "description": f"Name, at most {info.max_name_length} characters.",
                    }
                },
            },
            "spec": model_schema(info.spec),
            "status": model_schema(info.status),
        },
        "required": ["spec"],
    }
    if info.resource.rules:
        schema["x-kubernetes-validations"] = [cel_validation(r) for r in info.resource.rules]
    return schema


def model_schema(model: type[ApiModel]) -> Schema:
    """The structural schema of one model."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _convert(raw, raw.get("$defs", {}))


def _convert(node: Schema, defs: dict[str, Schema]) -> Schema:
    node = _inline(node, defs)
    if _is_int_or_string(node):
        return _int_or_string(node)
    out: Schema = {}
    for key, value in node.items():
        if key in _DROPPED or key in _MAP_KEYS or (key == "default" and _empty(value)):
            continue
        if key == "default":
            out[key] = _without_none(value)
        elif key == "properties":
            out[key] = {name: _convert(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            # `additionalProperties: false` (pydantic's extra="forbid") is not allowed in a CRD.
            if isinstance(value, dict):
                out[key] = _convert(value, defs)
        elif key == "const":
            out["enum"] = [value]
        else:
            out[key] = value
    if _MAP_KEYS & node.keys():
        _map_keys(node, out, defs)
    return out


def _inline(node: Schema, defs: dict[str, Schema]) -> Schema:
    """Resolve `$ref` and drop the null branch of `anyOf`; the node's own keys win."""
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[1]]
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return _inline({**target, **rest}, defs)
    branches = node.get("anyOf")
    if branches and {"type": "null"} in branches:
        kept = [b for b in branches if b != {"type": "null"}]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        inner = kept[0] if len(kept) == 1 else {"anyOf": kept}
        return _inline({**_inline(inner, defs), **rest}, defs)
    return node


def _without_none(value: Any) -> Any:
    """A default as the API server would store it: unset fields left out."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    return value


def _empty(value: Any) -> bool:
    return value is None or value == [] or value == {}


def _is_int_or_string(node: Schema) -> bool:
    types = sorted(branch.get("type", "") for branch in node.get("anyOf", []))
    return types == ["integer", "string"]


def _int_or_string(node: Schema) -> Schema:
    """`int | str` (a quantity, a percentage) as Kubernetes spells it."""
    out: Schema = {k: v for k, v in node.items() if k not in _DROPPED and k != "anyOf"}
    for branch in node["anyOf"]:
        out.update({k: v for k, v in branch.items() if k != "type"})
    out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    out["x-kubernetes-int-or-string"] = True
    return out


def _map_keys(node: Schema, out: Schema, defs: dict[str, Schema]) -> None:
    """Constraints on map keys become a CEL rule: structural schemas cannot hold them."""
    patterns = node.get("patternProperties", {})
    if patterns:
        ((pattern, value),) = patterns.items()
        out["additionalProperties"] = _convert(value, defs)
    limits = node.get("propertyNames", {})
    if set(limits) - {"maxLength"}:
        raise ValueError(f"unsupported constraint on map keys: {limits}")
    checks, words = [], []
    if "maxLength" in limits:
        checks.append(f"size(k) <= {limits['maxLength']}")
        words.append(f"have at most {limits['maxLength']} characters")
    if patterns:
        checks.append(f"k.matches({cel_regex(pattern)})")
        words.append(f"match {pattern}")
    rule = {
        "rule": f"self.all(k, {' && '.join(checks)})",
        "message": f"keys must {' and '.join(words)}",
    }
    out.setdefault("x-kubernetes-validations", []).insert(0, rule)


class _Dumper(yaml.SafeDumper):
    """Writes shared subtrees out in full: anchors and aliases would puzzle readers."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render(document: Schema) -> str:
    """YAML text of a generated document, stable from run to run."""
    header = "# Generated by `mlops-operator crds` from operator/mlops_operator/api. Do not edit.\n"
    return header + yaml.dump(document, Dumper=_Dumper, sort_keys=True, width=100)


def generated_files(out: Path, docs: Path) -> dict[Path, str]:
    """Every generated file's path and text: the CRDs in `out`, the reference at `docs`."""
    documents = crds()
    files = {out / name: render(document) for name, document in documents.items()}
    files[docs] = docgen.render(list(documents.values()))
    return files


def write(files: dict[Path, str]) -> None:
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def differences(files: dict[Path, str], out: Path) -> list[str]:
    """Unified diffs between the files on disk and `files`, plus stale YAML files in `out`."""
    diffs: list[str] = []
    for path, text in files.items():
        current = path.read_text() if path.exists() else ""
        diffs += difflib.unified_diff(
            current.splitlines(keepends=True),
            text.splitlines(keepends=True),
            fromfile=f"{path} (on disk)",
            tofile=f"{path} (generated)",
        )
    stale = sorted(set(out.glob("*.yaml")) - set(files))
    diffs += [f"stale file, not generated: {path}\n" for path in stale]
    return diffs
