"""Registered Datasets: what a run reads (builders/datasets.py), how the Job and the Model
carry it (training.build_job, registry.build_model), and the API rules around them."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from mlops_operator import api
from mlops_operator.api import ContinuousTraining, Dataset, TrainingJob
from mlops_operator.api.common import ResolvedDataset, TrainingData
from mlops_operator.api.dataset import MAX_USED_BY
from mlops_operator.api.report import TrainingReport
from mlops_operator.builders import datasets, registry, training
from mlops_operator.builders.datasets import RESOLVED_ANNOTATION, Unresolved
from mlops_operator.builders.registry import TRIGGER_ANNOTATION

UID = "0123abcd-0000-4000-8000-000000000000"
DIGEST = "sha256:" + "ab" * 32
OTHER_DIGEST = "sha256:" + "cd" * 32
OUTPUT = {"uri": "s3://b/iris/", "modelName": "iris", "format": "sklearn"}


def dataset(
    version: int, ready: bool | None = True, name: str = "iris-data", message: str = "ok"
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": f"{name}-v{version}", "namespace": "ml"},
        "spec": {
            "datasetName": name,
            "version": version,
            "uri": f"s3://d/{name}/v{version}/",
            "digest": DIGEST,
            "format": "csv",
        },
    }
    if ready is not None:
        body["status"] = {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": "Valid" if ready else "DigestMismatch",
                    "message": message,
                    "lastTransitionTime": "2026-06-01T00:00:00Z",
                }
            ]
        }
    return body


def data(**fields: Any) -> TrainingData:
    return TrainingData.model_validate(fields)


def tj(annotations: dict[str, str] | None = None, **spec: Any) -> TrainingJob:
    return TrainingJob.model_validate(
        {
            "metadata": {"name": "iris", "namespace": "ml", "uid": UID, "generation": 1,
                         "annotations": annotations or {}},
            "spec": {"image": "train:1", "output": OUTPUT, **spec},
        }
    )  # fmt: skip


def env(job: dict[str, Any]) -> dict[str, Any]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# --- resolve -------------------------------------------------------------------------


def test_a_plain_uri_passes_through() -> None:
    assert datasets.resolve(data(uri="s3://d/iris.csv", digest=DIGEST), []) == ResolvedDataset(
        uri="s3://d/iris.csv", digest=DIGEST
    )
    assert datasets.resolve(data(uri="s3://d/iris.csv"), [dataset(1)]) == ResolvedDataset(
        uri="s3://d/iris.csv"
    )
    assert datasets.resolve(None, [dataset(1)]) is None


def test_latest_is_the_newest_ready_version_of_that_dataset() -> None:
    found = [
        dataset(10, ready=True),
        dataset(2, ready=True),
        dataset(11, ready=False),
        dataset(12, ready=None),  # not validated yet
        dataset(99, name="other-data"),
    ]
    resolved = datasets.resolve(data(ref={"name": "iris-data"}), found)
    # Version 10 is newer than 2 though "10" < "2" as strings.
    assert resolved == ResolvedDataset(
        uri="s3://d/iris-data/v10/", digest=DIGEST, name="iris-data", version=10
    )
    explicit = datasets.resolve(data(ref={"name": "iris-data", "version": "latest"}), found)
    assert explicit == resolved


def test_a_pinned_version_is_that_version_even_if_newer_ones_exist() -> None:
    found = [dataset(1), dataset(2), dataset(3)]
    resolved = datasets.resolve(data(ref={"name": "iris-data", "version": 1}), found)
    assert resolved == ResolvedDataset(
        uri="s3://d/iris-data/v1/", digest=DIGEST, name="iris-data", version=1
    )


def test_a_missing_dataset_is_unresolved_not_found() -> None:
    latest = datasets.resolve(data(ref={"name": "iris-data"}), [dataset(1, name="other-data")])
    assert isinstance(latest, Unresolved)
    assert latest.reason == "DatasetNotFound"
    assert "iris-data" in latest.message

    pinned = datasets.resolve(data(ref={"name": "iris-data", "version": 5}), [dataset(4)])
    assert isinstance(pinned, Unresolved)
    assert pinned.reason == "DatasetNotFound"
    assert "iris-data-v5" in pinned.message


def test_a_dataset_that_is_not_ready_is_unresolved_not_ready() -> None:
    latest = datasets.resolve(data(ref={"name": "iris-data"}), [dataset(1, ready=False)])
    assert isinstance(latest, Unresolved)
    assert latest.reason == "DatasetNotReady"

    found = [dataset(3, ready=False, message="digest mismatch at part-0"), dataset(4)]
    pinned = datasets.resolve(data(ref={"name": "iris-data", "version": 3}), found)
    assert isinstance(pinned, Unresolved)
    assert pinned.reason == "DatasetNotReady"
    assert "iris-data-v3" in pinned.message
    assert "digest mismatch at part-0" in pinned.message

    unvalidated = datasets.resolve(data(ref={"name": "iris-data", "version": 4}),
                                   [dataset(4, ready=None)])  # fmt: skip
    assert isinstance(unvalidated, Unresolved)
    assert unvalidated.reason == "DatasetNotReady"
    assert "not validated yet" in unvalidated.message


def test_newest_ready_and_versions_of() -> None:
    found = [dataset(3), dataset(1), dataset(2, ready=False), dataset(7, name="other-data")]
    assert [d["spec"]["version"] for d in datasets.versions_of(found, "iris-data")] == [1, 2, 3]
    newest = datasets.newest_ready(found, "iris-data")
    assert newest is not None
    assert newest["metadata"]["name"] == "iris-data-v3"
    assert datasets.newest_ready([dataset(2, ready=False)], "iris-data") is None


# --- used_by -------------------------------------------------------------------------


def dataset_object(version: int = 2) -> Dataset:
    return Dataset.model_validate(dataset(version))


def reader(name: str, created: datetime, version: int = 2, ds: str = "iris-data") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ")},
        "status": {"dataset": {"uri": "s3://d/x", "name": ds, "version": version}},
    }


def model(name: str, created: datetime, version: int = 2, ds: str = "iris-data") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ")},
        "spec": {"lineage": {"dataset": {"uri": "s3://d/x", "name": ds, "version": version}}},
    }


def test_used_by_lists_the_readers_of_this_version_newest_last() -> None:
    t0 = datetime(2026, 6, 1, tzinfo=UTC)
    jobs = [
        reader("late", t0 + timedelta(hours=2)),
        reader("early", t0),
        reader("other-version", t0 + timedelta(hours=1), version=3),
        reader("other-dataset", t0 + timedelta(hours=1), ds="wine-data"),
        {"metadata": {"name": "plain-uri"}, "status": {"dataset": {"uri": "s3://d/x"}}},
        {"metadata": {"name": "no-status"}},
    ]
    models = [
        model("iris-v2", t0 + timedelta(hours=3)),
        model("iris-v1", t0 + timedelta(hours=1)),
        model("iris-v3", t0, version=1),
        {"metadata": {"name": "hand-made"}, "spec": {}},
    ]
    used = datasets.used_by(dataset_object(2), jobs, models)
    assert used.training_jobs == ["early", "late"]
    assert used.models == ["iris-v1", "iris-v2"]


def test_used_by_is_bounded_to_the_newest() -> None:
    t0 = datetime(2026, 6, 1, tzinfo=UTC)
    total = MAX_USED_BY + 10
    jobs = [reader(f"tj-{i:03d}", t0 + timedelta(minutes=i)) for i in range(total)]
    random.Random(7).shuffle(jobs)
    models = [model(f"iris-v{i}", t0 + timedelta(minutes=i)) for i in range(total)]
    used = datasets.used_by(dataset_object(2), jobs, models)
    assert MAX_USED_BY == 64
    assert used.training_jobs == [f"tj-{i:03d}" for i in range(10, total)]
    assert used.models == [f"iris-v{i}" for i in range(10, total)]
    # Still a valid status (maxItems 64).
    api.DatasetStatus.model_validate({"usedBy": used.wire()})


# --- the Job annotation --------------------------------------------------------------


def test_annotation_round_trips_through_of_job() -> None:
    resolved = ResolvedDataset(uri="s3://d/v2/", digest=DIGEST, name="iris-data", version=2)
    text = datasets.annotation(resolved)
    assert json.loads(text) == {
        "uri": "s3://d/v2/",
        "digest": DIGEST,
        "name": "iris-data",
        "version": 2,
    }
    job = {"metadata": {"annotations": {RESOLVED_ANNOTATION: text}}}
    assert datasets.of_job(job) == resolved


def test_of_job_without_a_usable_annotation_is_none() -> None:
    assert datasets.of_job(None) is None
    assert datasets.of_job({"metadata": {}}) is None
    assert datasets.of_job({"metadata": {"annotations": {"other": "x"}}}) is None
    assert (
        datasets.of_job({"metadata": {"annotations": {RESOLVED_ANNOTATION: "{not json"}}}) is None
    )
    bad = json.dumps({"uri": "not a uri"})
    assert datasets.of_job({"metadata": {"annotations": {RESOLVED_ANNOTATION: bad}}}) is None


def test_waiting_on_names_the_dataset_of_a_run_without_a_job() -> None:
    waiting = {"spec": {"dataset": {"ref": {"name": "iris-data"}}}}
    assert datasets.waiting_on(waiting) == "iris-data"
    assert datasets.waiting_on({**waiting, "status": {"jobName": "iris"}}) is None
    assert datasets.waiting_on({"spec": {"dataset": {"uri": "s3://d/x"}}}) is None


# --- build_job -----------------------------------------------------------------------


def test_build_job_passes_a_resolved_dataset_and_annotates_the_job() -> None:
    run = tj(dataset={"ref": {"name": "iris-data"}})
    resolved = ResolvedDataset(uri="s3://d/v2/", digest=DIGEST, name="iris-data", version=2)
    job = training.build_job(run, dataset=resolved)
    variables = env(job)
    assert variables["MLOPS_DATASET_URI"] == "s3://d/v2/"
    assert variables["MLOPS_DATASET_DIGEST"] == DIGEST
    assert variables["MLOPS_DATASET_NAME"] == "iris-data"
    assert variables["MLOPS_DATASET_VERSION"] == "2"
    assert job["metadata"]["annotations"][RESOLVED_ANNOTATION] == datasets.annotation(resolved)
    assert datasets.of_job(job) == resolved


def test_build_job_refuses_an_unresolved_ref() -> None:
    with pytest.raises(ValueError, match="resolved"):
        training.build_job(tj(dataset={"ref": {"name": "iris-data", "version": 2}}))


def test_build_job_with_a_plain_uri_needs_no_resolving() -> None:
    job = training.build_job(tj(dataset={"uri": "s3://d/iris.csv", "digest": OTHER_DIGEST}))
    variables = env(job)
    assert variables["MLOPS_DATASET_URI"] == "s3://d/iris.csv"
    assert variables["MLOPS_DATASET_DIGEST"] == OTHER_DIGEST
    assert "MLOPS_DATASET_NAME" not in variables
    assert "MLOPS_DATASET_VERSION" not in variables
    assert RESOLVED_ANNOTATION not in (job["metadata"].get("annotations") or {})


def test_build_job_without_a_dataset_sets_no_dataset_env() -> None:
    assert not [k for k in env(training.build_job(tj())) if k.startswith("MLOPS_DATASET")]


# --- build_model ---------------------------------------------------------------------


REPORT = TrainingReport.model_validate(
    {"metrics": {"accuracy": 0.9}, "artifact": {"uri": "s3://b/iris/iris-0123abcd/model"}}
)
TRIGGER = {"continuousTraining": "iris-ct", "type": "onNewDataset", "detail": "iris-data-v2"}


def test_build_model_records_the_dataset_and_the_trigger_in_lineage() -> None:
    run = tj({TRIGGER_ANNOTATION: json.dumps(TRIGGER)}, dataset={"ref": {"name": "iris-data"}})
    resolved = ResolvedDataset(uri="s3://d/v2/", digest=DIGEST, name="iris-data", version=2)
    built = registry.build_model(run, REPORT, version=4, dataset=resolved)
    lineage = built["spec"]["lineage"]
    assert lineage["dataset"] == {
        "uri": "s3://d/v2/",
        "digest": DIGEST,
        "name": "iris-data",
        "version": 2,
    }
    assert lineage["trigger"] == TRIGGER
    # The Model is valid, and used_by finds it as trained on v2.
    api.Model.model_validate(built)
    used = datasets.used_by(dataset_object(2), [], [built])
    assert used.models == ["iris-v4"]


def test_trigger_of_reads_the_annotation_or_nothing() -> None:
    assert registry.trigger_of(tj({TRIGGER_ANNOTATION: json.dumps(TRIGGER)})) is not None
    assert registry.trigger_of(tj()) is None
    assert registry.trigger_of(tj({TRIGGER_ANNOTATION: "{broken"})) is None
    wrong = json.dumps({**TRIGGER, "type": "cron"})
    assert registry.trigger_of(tj({TRIGGER_ANNOTATION: wrong})) is None
    built = registry.build_model(tj({TRIGGER_ANNOTATION: "{broken"}), REPORT, version=1)
    assert "trigger" not in built["spec"]["lineage"]


# --- API validation ------------------------------------------------------------------


def errors_of(kind: type[Any], body: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        kind.model_validate(body)
    return api.describe_errors(caught.value)


def tj_body(dataset_field: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "iris"},
            "spec": {"image": "train:1", "output": OUTPUT, "dataset": dataset_field}}  # fmt: skip


def ct_body(
    name: str = "iris-ct",
    triggers: dict[str, Any] | None = None,
    dataset_field: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"image": "train:1", "output": OUTPUT}
    if dataset_field is not None:
        spec["dataset"] = dataset_field
    return {
        "metadata": {"name": name},
        "spec": {
            "template": {"spec": spec},
            "triggers": triggers if triggers is not None else {"schedule": {"cron": "@daily"}},
        },
    }


def test_a_trainingjob_dataset_with_uri_and_ref_is_rejected() -> None:
    body = tj_body({"uri": "s3://d/x.csv", "ref": {"name": "iris-data"}})
    assert errors_of(TrainingJob, body) == ["spec.dataset: set exactly one of uri or ref"]
    assert errors_of(TrainingJob, tj_body({})) == ["spec.dataset: set exactly one of uri or ref"]
    TrainingJob.model_validate(tj_body({"ref": {"name": "iris-data", "version": 3}}))


def test_a_ref_with_a_digest_is_rejected_at_digest() -> None:
    body = tj_body({"ref": {"name": "iris-data"}, "digest": DIGEST})
    errors = errors_of(TrainingJob, body)
    assert len(errors) == 1
    assert errors[0].startswith("spec.dataset.digest: only with uri")


def test_a_ref_version_is_a_number_or_latest() -> None:
    for bad in (0, "newest", 1_000_000):
        errors = errors_of(TrainingJob, tj_body({"ref": {"name": "iris-data", "version": bad}}))
        assert errors
        assert all(line.startswith("spec.dataset.ref.version") for line in errors), errors


def test_a_continuous_training_without_a_trigger_is_rejected() -> None:
    assert errors_of(ContinuousTraining, ct_body(triggers={})) == [
        "spec.triggers: set at least one of schedule, onNewDataset or onModelDeployment"
    ]


def test_on_new_dataset_must_match_the_templates_dataset() -> None:
    on = {"onNewDataset": {"name": "iris-data"}}
    for template_dataset in ({"ref": {"name": "wine-data"}}, {"uri": "s3://d/iris.csv"}):
        errors = errors_of(ContinuousTraining, ct_body(triggers=on, dataset_field=template_dataset))
        assert len(errors) == 1
        assert errors[0].startswith("spec.triggers.onNewDataset: ")
        assert "the template's dataset must be unset or a ref to the same dataset" in errors[0]
    # The same dataset (any version) or none at all is fine.
    ContinuousTraining.model_validate(
        ct_body(triggers=on, dataset_field={"ref": {"name": "iris-data"}})
    )
    ContinuousTraining.model_validate(ct_body(triggers=on))


def test_a_continuous_training_name_is_at_most_36_characters() -> None:
    ContinuousTraining.model_validate(ct_body(name="a" * 36))
    errors = errors_of(ContinuousTraining, ct_body(name="a" * 37))
    assert len(errors) == 1
    assert errors[0].startswith("metadata.name: ")
    assert "at most 36 characters" in errors[0]


def test_a_dataset_name_must_be_its_dataset_name_and_version() -> None:
    body = dataset(3)
    Dataset.model_validate(body)
    wrong = {**body, "metadata": {"name": "iris-data-v2"}}
    assert errors_of(Dataset, wrong) == [
        "metadata.name: must be <spec.datasetName>-v<spec.version>"
    ]
    other = {**body, "metadata": {"name": "wine-data-v3"}}
    assert errors_of(Dataset, other) == [
        "metadata.name: must be <spec.datasetName>-v<spec.version>"
    ]


def test_a_dataset_is_immutable() -> None:
    old = Dataset.model_validate(dataset(3))
    new = Dataset.model_validate(
        {**dataset(3), "spec": {**dataset(3)["spec"], "digest": OTHER_DIGEST}}
    )
    assert new.spec.update_errors(old.spec) == [
        "is immutable: a Dataset is one version; register a new version instead"
    ]
    assert old.spec.update_errors(old.spec) == []


def test_resolved_uri_is_the_plain_uri_only() -> None:
    """What a run whose Job an older operator made reads: its uri, with no lookup."""
    plain = TrainingData(uri="s3://d/iris.csv", digest=DIGEST)
    assert datasets.resolved_uri(plain) == ResolvedDataset(uri="s3://d/iris.csv", digest=DIGEST)
    assert datasets.resolved_uri(TrainingData(ref={"name": "iris-data"})) is None
    assert datasets.resolved_uri(None) is None
