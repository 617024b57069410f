"""The table of invalid manifests and updates (cases.yaml), shared by two tests.

The unit tests check that the pydantic models reject each case, the integration tests
that the API server does: the same rules in both places.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"
# The manifests of the API issue: examples/<name>.yaml.
EXAMPLE_NAMES = (
    "trainingjob-sklearn",
    "trainingjob-pytorch-multinode",
    "model-hand-registered",
    "modeldeployment-pinned",
    "modeldeployment-canary",
    "dataset-churn",
    "continuoustraining-churn",
)


@dataclass(frozen=True)
class Case:
    name: str
    example: str
    patch: list[dict[str, Any]]
    # Where the error must be reported; None for an update the server accepts.
    field: str | None

    def base(self) -> dict[str, Any]:
        return example(self.example)

    def manifest(self) -> dict[str, Any]:
        return apply_patch(self.base(), self.patch)


def example(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    return document


def _load(section: str) -> list[Case]:
    table = yaml.safe_load((Path(__file__).parent / "cases.yaml").read_text())
    return [Case(**entry) for entry in table[section]]


INVALID = _load("invalid")
UPDATES = _load("updates")


def apply_patch(document: dict[str, Any], patch: list[dict[str, Any]]) -> dict[str, Any]:
    """A copy of `document` with a JSON patch (RFC 6902: add, replace, remove) applied."""
    result = copy.deepcopy(document)
    for op in patch:
        *parents, last = [_unescape(p) for p in op["path"].split("/")[1:]]
        target: Any = result
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        key: Any = int(last) if isinstance(target, list) else last
        if op["op"] == "remove":
            del target[key]
        elif isinstance(target, list) and op["op"] == "add":
            target.insert(key, op["value"])
        else:
            target[key] = op["value"]
    return result


def _unescape(part: str) -> str:
    return part.replace("~1", "/").replace("~0", "~")
