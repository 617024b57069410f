"""`mlops-operator lineage`: the chain built from the objects, its text and JSON, the command."""

from __future__ import annotations

import json
from typing import Any

from mlops_operator import lineage
from mlops_operator.api import Dataset, Model, ModelDeployment, TrainingJob
from mlops_operator.api.continuoustraining import ContinuousTraining
from mlops_operator.builders.continuous import CT_LABEL
from mlops_operator.builders.registry import TRIGGER_ANNOTATION

NS = "ml"
DATA_DIGEST = "sha256:ab12cd34ef56" + "0" * 52
MODEL_DIGEST = "sha256:" + "f" * 64
TJ_UID = "0d3c1a2b-0000-4000-8000-000000000001"
TRIGGER = {"continuousTraining": "churn-ct", "type": "onNewDataset", "detail": "churn-v2"}


def model(
    name: str = "churn-v3",
    *,
    lineage_: dict[str, Any] | None = None,
    served_by: list[str] | None = None,
    approved: bool = True,
) -> dict[str, Any]:
    model_name, _, version = name.rpartition("-v")
    body: dict[str, Any] = {
        "apiVersion": "mlops.seed.dev/v1alpha1",
        "kind": "Model",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"uid-{name}",
            "labels": {"mlops.seed.dev/approved": "true"} if approved else {},
        },
        "spec": {
            "modelName": model_name,
            "version": int(version),
            "artifact": {
                "uri": f"s3://models/{model_name}/{name}",
                "format": "sklearn",
                "digest": MODEL_DIGEST,
            },
            "metrics": {"accuracy": 0.91, "loss": 0.2},
            "keyMetric": "accuracy",
        },
        "status": {"keyMetric": "accuracy=0.91", "servedBy": served_by or []},
    }
    if lineage_ is not None:
        body["spec"]["lineage"] = lineage_
    return body


def full_lineage() -> dict[str, Any]:
    return {
        "trainingJob": {"name": "churn-ct-d2", "uid": TJ_UID},
        "image": "ghcr.io/acme/churn-train:1.4",
        "dataset": {
            "uri": "s3://data/churn/v2.csv",
            "digest": DATA_DIGEST,
            "name": "churn",
            "version": 2,
        },
        "trigger": dict(TRIGGER),
        "hyperparameters": {"lr": "0.01", "max_depth": "6"},
        "codeRevision": "1a2b3c4",
    }


def dataset(name: str = "churn", version: int = 2, digest: str = DATA_DIGEST) -> dict[str, Any]:
    return {
        "apiVersion": "mlops.seed.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": f"{name}-v{version}", "namespace": NS},
        "spec": {
            "datasetName": name,
            "version": version,
            "uri": f"s3://data/{name}/v{version}.csv",
            "digest": digest,
            "format": "csv",
            "rows": 7043,
        },
    }


def training_job(
    name: str = "churn-ct-d2", uid: str = TJ_UID, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "mlops.seed.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": uid,
            "labels": {CT_LABEL: "churn-ct"},
            "annotations": annotations if annotations is not None else {},
        },
        "spec": {
            "image": "ghcr.io/acme/churn-train:1.4",
            "dataset": {"ref": {"name": "churn", "version": 2}},
            "output": {"uri": "s3://models/churn", "modelName": "churn", "format": "sklearn"},
        },
        "status": {"phase": "Succeeded", "registeredModel": "churn-v3"},
    }


def continuous_training() -> dict[str, Any]:
    return {
        "apiVersion": "mlops.seed.dev/v1alpha1",
        "kind": "ContinuousTraining",
        "metadata": {"name": "churn-ct", "namespace": NS},
        "spec": {
            "template": {"spec": training_job()["spec"]},
            "triggers": {"onNewDataset": {"name": "churn"}},
        },
    }


def deployment(name: str, current: int, canary: tuple[int, int] | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"currentVersion": current, "currentModel": f"churn-v{current}"}
    if canary is not None:
        status["canary"] = {"version": canary[0], "step": 0, "weight": canary[1]}
    return {
        "apiVersion": "mlops.seed.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "model": {"name": "churn", "policy": {}},
            "runtime": {"preset": "mlserver"},
        },
        "status": status,
    }


def test_the_fixtures_are_objects_the_api_accepts() -> None:
    # The chain reads raw dicts; these must be shaped like what the API server returns.
    Model.model_validate(model(lineage_=full_lineage()))
    Dataset.model_validate(dataset())
    TrainingJob.model_validate(training_job())
    ContinuousTraining.model_validate(continuous_training())
    ModelDeployment.model_validate(deployment("churn-prod", 3))


def full_chain() -> lineage.Chain:
    return lineage.build_chain(
        model(lineage_=full_lineage(), served_by=["churn-prod"]),
        datasets=[dataset(version=1), dataset(version=2)],
        training_jobs=[training_job(), training_job("churn-ct-d1", uid="other")],
        continuous_trainings=[continuous_training()],
        # churn-prod serves v3 as its stable version; churn-next tries v3 as a 25% canary
        # (the Model's servedBy has not caught up with it yet).
        deployments=[
            deployment("churn-prod", 3),
            deployment("churn-next", 2, canary=(3, 25)),
            deployment("other", 2),
        ],
    )


def test_full_chain() -> None:
    chain = full_chain()
    assert chain.dataset == lineage.DatasetStep(
        registered=True,
        name="churn",
        version=2,
        object_name="churn-v2",
        uri="s3://data/churn/v2.csv",
        digest=DATA_DIGEST,
        exists=True,
        format="csv",
        rows=7043,
    )
    assert chain.trigger == lineage.TriggerStep(
        continuous_training="churn-ct",
        type="onNewDataset",
        detail="churn-v2",
        source="lineage",
        exists=True,
    )
    tj = chain.training_job
    assert tj is not None
    assert (tj.name, tj.uid, tj.exists, tj.replaced, tj.phase) == (
        "churn-ct-d2",
        TJ_UID,
        True,
        False,
        "Succeeded",
    )
    assert (tj.image, tj.code_revision) == ("ghcr.io/acme/churn-train:1.4", "1a2b3c4")
    assert tj.hyperparameters == {"lr": "0.01", "max_depth": "6"}
    assert (chain.model.name, chain.model.version, chain.model.key_metric) == (
        "churn-v3",
        3,
        "accuracy",
    )
    assert chain.model.approved == "true"
    assert chain.deployments == (
        lineage.DeploymentStep(name="churn-next", role="canary", weight=25),
        lineage.DeploymentStep(name="churn-prod", role="stable"),
    )


def test_full_chain_as_text() -> None:
    text = lineage.render_text(full_chain())
    assert text == (
        "lineage of Model churn-v3 (namespace ml)\n"
        "  dataset      churn-v2  s3://data/churn/v2.csv  sha256:ab12cd34ef56…  csv, 7043 rows\n"
        "  trigger      continuoustraining/churn-ct  onNewDataset  churn-v2\n"
        "  trainingjob  churn-ct-d2  Succeeded  image ghcr.io/acme/churn-train:1.4  code 1a2b3c4"
        "  hyperparameters lr=0.01 max_depth=6\n"
        "  model        churn-v3  accuracy=0.91  approved\n"
        "  deployment   churn-next  canary 25%\n"
        "  deployment   churn-prod  stable\n"
    )


def test_full_chain_as_json() -> None:
    data = json.loads(lineage.render_json(full_chain()))
    assert data["dataset"]["objectName"] == "churn-v2"
    assert data["dataset"]["digest"] == DATA_DIGEST, "JSON keeps the whole digest"
    assert data["trigger"]["continuousTraining"] == "churn-ct"
    assert data["trainingJob"]["uid"] == TJ_UID
    assert data["trainingJob"]["codeRevision"] == "1a2b3c4"
    # Keys of user data stay as they are; only field names are camelCased.
    assert data["trainingJob"]["hyperparameters"] == {"lr": "0.01", "max_depth": "6"}
    assert data["model"]["metrics"] == {"accuracy": 0.91, "loss": 0.2}
    assert data["model"]["artifactDigest"] == MODEL_DIGEST
    assert [(d["name"], d["role"], d["weight"]) for d in data["deployments"]] == [
        ("churn-next", "canary", 25),
        ("churn-prod", "stable", None),
    ]


def test_stable_weight_while_its_canary_runs() -> None:
    chain = lineage.build_chain(
        model("churn-v2", served_by=["churn-next"]),
        deployments=[deployment("churn-next", 2, canary=(3, 25))],
    )
    assert chain.deployments == (lineage.DeploymentStep("churn-next", "stable", weight=75),)
    assert "  deployment   churn-next  stable 75%\n" in lineage.render_text(chain)


def test_hand_registered_model_without_lineage() -> None:
    chain = lineage.build_chain(model("iris-v1", approved=False))
    assert (chain.dataset, chain.trigger, chain.training_job, chain.deployments) == (
        None,
        None,
        None,
        (),
    )
    text = lineage.render_text(chain)
    assert "  dataset      none recorded\n" in text
    assert "  trigger      none (Model registered by hand)\n" in text
    assert "  trainingjob  none (Model registered by hand)\n" in text
    assert "  model        iris-v1  accuracy=0.91  not approved\n" in text
    assert "  deployment   none serving it\n" in text
    data = json.loads(lineage.render_json(chain))
    assert data["dataset"] is data["trigger"] is data["trainingJob"] is None
    assert data["deployments"] == []


def test_deleted_training_job() -> None:
    lin = full_lineage()
    del lin["trigger"]
    chain = lineage.build_chain(model(lineage_=lin), datasets=[dataset()], training_jobs=[])
    tj = chain.training_job
    assert tj is not None
    assert (tj.exists, tj.replaced, tj.phase) == (False, False, None)
    # What the lineage recorded survives the TrainingJob.
    assert tj.image == "ghcr.io/acme/churn-train:1.4"
    assert tj.hyperparameters == {"lr": "0.01", "max_depth": "6"}
    assert chain.trigger is None
    text = lineage.render_text(chain)
    assert f"  trainingjob  churn-ct-d2  (deleted, uid {TJ_UID})  image " in text
    assert "  trigger      none (started by hand)\n" in text
    assert json.loads(lineage.render_json(chain))["trainingJob"]["exists"] is False


def test_training_job_name_taken_by_a_later_run() -> None:
    chain = lineage.build_chain(
        model(lineage_=full_lineage()), training_jobs=[training_job(uid="a-later-run")]
    )
    tj = chain.training_job
    assert tj is not None
    assert (tj.exists, tj.replaced, tj.phase) == (False, True, None)
    assert "(deleted; the TrainingJob of that name is a later run" in lineage.render_text(chain)


def test_plain_uri_dataset() -> None:
    lin = full_lineage()
    lin["dataset"] = {"uri": "s3://bucket/iris.csv"}
    chain = lineage.build_chain(model(lineage_=lin), datasets=[dataset()])
    assert chain.dataset == lineage.DatasetStep(
        registered=False,
        name=None,
        version=None,
        object_name=None,
        uri="s3://bucket/iris.csv",
        digest=None,
        exists=None,
    )
    assert (
        "  dataset      s3://bucket/iris.csv  no digest  (plain URI, not a registered Dataset)\n"
        in lineage.render_text(chain)
    )
    assert json.loads(lineage.render_json(chain))["dataset"]["registered"] is False


def test_deleted_dataset_and_continuous_training() -> None:
    chain = lineage.build_chain(model(lineage_=full_lineage()), datasets=[dataset(version=1)])
    assert chain.dataset is not None
    assert chain.dataset.exists is False
    assert chain.dataset.uri == "s3://data/churn/v2.csv", "from the lineage"
    assert chain.trigger is not None
    assert chain.trigger.exists is False
    text = lineage.render_text(chain)
    assert (
        "  dataset      churn-v2  s3://data/churn/v2.csv  sha256:ab12cd34ef56…  (Dataset deleted)\n"
        in text
    )
    assert "onNewDataset  churn-v2  (ContinuousTraining deleted)\n" in text


def test_dataset_registered_again_with_other_data() -> None:
    other = "sha256:" + "9" * 64
    chain = lineage.build_chain(model(lineage_=full_lineage()), datasets=[dataset(digest=other)])
    assert chain.dataset is not None
    assert chain.dataset.digest == DATA_DIGEST, "the data the Model was trained on"
    assert chain.dataset.digest_changed
    assert "(the Dataset of that name now holds other data)" in lineage.render_text(chain)


def test_trigger_from_the_training_job_when_the_lineage_has_none() -> None:
    lin = full_lineage()
    del lin["trigger"]
    annotated = training_job(annotations={TRIGGER_ANNOTATION: json.dumps(TRIGGER)})
    chain = lineage.build_chain(
        model(lineage_=lin), training_jobs=[annotated], continuous_trainings=[continuous_training()]
    )
    assert chain.trigger == lineage.TriggerStep(
        "churn-ct", "onNewDataset", "churn-v2", source="trainingJob", exists=True
    )
    # Only the label: the ContinuousTraining is known, not which trigger fired.
    chain = lineage.build_chain(model(lineage_=lin), training_jobs=[training_job()])
    assert chain.trigger == lineage.TriggerStep(
        "churn-ct", None, None, source="trainingJob", exists=False
    )
    assert "continuoustraining/churn-ct  unknown  (ContinuousTraining deleted)" in (
        lineage.render_text(chain)
    )


def test_served_by_entries_that_no_longer_hold() -> None:
    chain = lineage.build_chain(
        model(served_by=["churn-gone", "churn-prod"]), deployments=[deployment("churn-prod", 4)]
    )
    assert chain.deployments == (
        lineage.DeploymentStep("churn-gone", "missing"),
        lineage.DeploymentStep("churn-prod", "stale", serves="churn-v4"),
    )
    text = lineage.render_text(chain)
    assert "  deployment   churn-gone  (in the Model's servedBy, but not found)\n" in text
    assert "  deployment   churn-prod  (in the Model's servedBy, but now serves churn-v4)\n" in text


def test_newest_version_of_a_model_name() -> None:
    models = [model("iris-v2"), model("iris-v10"), model("iris-v3"), model("irises-v11")]
    found = lineage.resolve_model(models, "iris")
    assert found is not None
    assert found["metadata"]["name"] == "iris-v10", "by number, not text"
    exact = lineage.resolve_model(models, "iris-v2")
    assert exact is not None
    assert exact["metadata"]["name"] == "iris-v2"
    assert lineage.resolve_model(models, "rose") is None
    assert lineage.resolve_model(models, "iris-v4") is None
