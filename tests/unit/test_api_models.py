"""The API models: camelCase on the wire, snake_case in Python, every field described."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel

from mlops_operator import GROUP, VERSION, api
from mlops_operator.api.common import ApiModel
from tests.integration.invalid.cases import EXAMPLE_NAMES, example

RESOURCES: dict[str, type[api.common.Resource]] = {info.kind: info.resource for info in api.KINDS}
# Kubernetes spells acronyms in capitals, as the HorizontalPodAutoscaler does.
ACRONYMS = {
    "target_cpu_utilization_percentage": "targetCPUUtilizationPercentage",
    # `schema` on the wire; the Python name keeps clear of pydantic's BaseModel.schema.
    "schema_": "schema",
    # `except` on the wire (a NetworkPolicy's ipBlock); a keyword in Python.
    "except_": "except",
}
# Maps whose keys are data, not field names.
FREE_FORM = {"metrics", "hyperparameters", "labels", "annotations"}
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def ready(generation: int = 1) -> api.Condition:
    return api.Condition(
        type="Ready",
        status="True",
        reason="Succeeded",
        message="done",
        last_transition_time=NOW,
        observed_generation=generation,
    )


STATUSES: list[ApiModel] = [
    api.TrainingJobStatus(
        phase="Succeeded",
        conditions=[ready()],
        observed_generation=1,
        start_time=NOW,
        completion_time=NOW,
        attempts=1,
        job_name="iris-sklearn",
        metrics={"accuracy": 0.97, "val_loss": 0.1},
        key_metric="accuracy=0.97",
        registered_model="iris-v2",
    ),
    api.ModelStatus(
        conditions=[ready()], observed_generation=1, key_metric="accuracy=0.953", served_by=["a"]
    ),
    api.ModelDeploymentStatus.model_validate(
        {
            "conditions": [ready().wire()],
            "observedGeneration": 2,
            "currentVersion": 2,
            "currentModel": "iris-v2",
            "previousVersion": 1,
            "canary": {"version": 3, "step": 0, "weight": 10, "stepStartedAt": NOW.isoformat()},
            "replicas": 3,
            "readyReplicas": 3,
            "url": "http://iris-latest.ns.svc.cluster.local",
            "history": [
                {
                    "version": 2,
                    "model": "iris-v2",
                    "startedAt": NOW.isoformat(),
                    "outcome": "Succeeded",
                }
            ],
        }
    ),
]


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_example_round_trips_through_camel_case_json(name: str) -> None:
    manifest = example(name)
    parsed = RESOURCES[manifest["kind"]].model_validate(manifest)
    wire = parsed.wire()
    # What the user wrote comes back unchanged; only defaults are added.
    assert _contains(wire, manifest)
    again = type(parsed).model_validate_json(json.dumps(wire))
    assert again == parsed


@pytest.mark.parametrize("status", STATUSES, ids=lambda s: type(s).__name__)
def test_status_round_trips_through_camel_case_json(status: ApiModel) -> None:
    wire = status.wire()
    assert all(key == to_camel(key) for key in _keys(wire))
    assert type(status).model_validate_json(json.dumps(wire)) == status


def test_snake_case_names_work_in_python() -> None:
    spec = api.TrainingJobSpec.model_validate(example("trainingjob-sklearn")["spec"])
    assert spec.output.model_name == "iris"
    assert spec.active_deadline_seconds == 3600
    assert spec.wire()["output"]["modelName"] == "iris"


def test_times_are_written_as_rfc3339() -> None:
    assert ready().wire()["lastTransitionTime"] == "2026-11-26T12:00:00Z"


def test_every_field_is_camel_case_on_the_wire_and_described() -> None:
    for model in _models():
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name} has no description"
            assert (info.alias or name) == ACRONYMS.get(name, to_camel(name))


def test_strict_like_the_api_server() -> None:
    with pytest.raises(ValidationError):
        api.Condition.model_validate(
            {
                "type": "Ready",
                "status": True,
                "reason": "R",
                "message": "",
                "lastTransitionTime": NOW,
            }
        )


def test_errors_name_the_field_as_the_api_server_does() -> None:
    manifest = example("modeldeployment-canary")
    manifest["spec"]["strategy"]["canary"]["steps"][1]["weight"] = 5
    with pytest.raises(ValidationError) as caught:
        api.ModelDeployment.model_validate(manifest)
    assert api.describe_errors(caught.value) == [
        "spec.strategy.canary.steps: weights must be strictly increasing"
    ]


def test_training_job_allows_only_suspend_to_change() -> None:
    spec = api.TrainingJobSpec.model_validate(example("trainingjob-sklearn")["spec"])
    suspended = spec.model_copy(update={"suspend": True})
    retagged = spec.model_copy(update={"image": "train:2", "nodes": 2})
    assert suspended.update_errors(spec) == []
    assert retagged.update_errors(spec) == [
        "image: is immutable; only suspend may change",
        "nodes: is immutable; only suspend may change",
    ]


def test_model_object_name_is_model_and_version() -> None:
    assert api.model_object_name("iris", 7) == "iris-v7"
    model = api.Model.model_validate(example("model-hand-registered"))
    assert model.metadata.name == api.model_object_name(model.spec.model_name, model.spec.version)


def test_model_walk_reaches_the_shared_types() -> None:
    found = {model.__name__ for model in _models()}
    assert {"Condition", "KeyRef", "Toleration", "LabelSelectorRequirement", "CanaryStep"} <= found


def _models() -> set[type[BaseModel]]:
    """Every API model reachable from the three kinds."""
    seen: set[type[BaseModel]] = set()
    todo: list[Any] = [info.resource for info in api.KINDS]
    while todo:
        current = todo.pop()
        if isinstance(current, type) and issubclass(current, ApiModel):
            if current in seen:
                continue
            seen.add(current)
            todo += [field.annotation for field in current.model_fields.values()]
        todo += list(getattr(current, "__args__", ()))
    return seen


def _keys(value: Any) -> list[str]:
    """Keys of the nested objects, not of free-form maps such as metrics."""
    if isinstance(value, list):
        return [k for item in value for k in _keys(item)]
    if not isinstance(value, dict):
        return []
    keys = list(value)
    for key, item in value.items():
        if key not in FREE_FORM:
            keys += _keys(item)
    return keys


def _contains(whole: Any, part: Any) -> bool:
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(
            k in whole and _contains(whole[k], v) for k, v in part.items()
        )
    if isinstance(part, list):
        return (
            isinstance(whole, list)
            and len(whole) == len(part)
            and all(_contains(w, p) for w, p in zip(whole, part, strict=True))
        )
    return bool(whole == part)


def test_api_version_is_group_and_version() -> None:
    assert f"{GROUP}/{VERSION}" == api.API_VERSION
