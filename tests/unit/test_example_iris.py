"""examples/iris/train.py really trains, writes its artifact and a report the operator accepts."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import joblib
from sklearn.datasets import load_iris

from mlops_operator.api.reference import NumericFeature, ReferenceProfile
from mlops_operator.api.report import parse_report

TRAIN = Path(__file__).resolve().parents[2] / "examples" / "iris" / "train.py"


def test_iris_training_writes_model_and_report(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    env = {
        **os.environ,
        "MLOPS_OUTPUT_URI": f"file://{tmp_path}/out",
        "MLOPS_HPARAMS": '{"C": "2.0", "seed": "1"}',
        "MLOPS_TERMINATION_LOG": str(log),
    }
    subprocess.run([sys.executable, str(TRAIN)], env=env, check=True, timeout=120)

    parsed = parse_report(log.read_text())
    model_file = tmp_path / "out" / "model.joblib"
    assert parsed.artifact.uri == f"file://{model_file}"
    assert parsed.artifact.digest == "sha256:" + hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert 0.8 < parsed.metrics["accuracy"] <= 1.0
    assert 0.8 < parsed.metrics["f1"] <= 1.0

    reference_file = tmp_path / "out" / "reference.json"
    assert parsed.artifact.reference is not None, "the run profiled its training data"
    assert parsed.artifact.reference.uri == f"file://{reference_file}"
    assert parsed.artifact.reference.digest == (
        "sha256:" + hashlib.sha256(reference_file.read_bytes()).hexdigest()
    )
    reference = ReferenceProfile.model_validate_json(reference_file.read_text())
    assert reference.rows == 105, "the training split, 70% of 150"
    assert [f.name for f in reference.features] == [
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
    ]
    assert all(isinstance(f, NumericFeature) and sum(f.counts) == 105 for f in reference.features)
    assert reference.predictions is not None
    assert sum(reference.predictions.counts) == 105

    model = joblib.load(model_file)
    assert model.C == 2.0, "hyperparameters reached the estimator"
    x, y = load_iris(return_X_y=True)
    assert (model.predict(x) == y).mean() > 0.9


def test_with_a_dataset_it_trains_on_that_csv_and_profiles_its_columns(tmp_path: Path) -> None:
    x, y = load_iris(return_X_y=True)
    shifted = x.copy()
    shifted[:, 2] += 3.0  # petal_length 3 cm longer: the data the serving traffic drifted to
    rows = "\n".join(",".join(f"{v:g}" for v in (*r, c)) for r, c in zip(shifted, y, strict=True))
    data = tmp_path / "shifted.csv"
    data.write_text("sepal_length,sepal_width,petal_length,petal_width,species\n" + rows + "\n")
    log = tmp_path / "termination-log"
    env = {
        **os.environ,
        "MLOPS_OUTPUT_URI": f"file://{tmp_path}/out",
        "MLOPS_DATASET_URI": f"file://{data}",
        "MLOPS_TERMINATION_LOG": str(log),
    }
    subprocess.run([sys.executable, str(TRAIN)], env=env, check=True, timeout=120)

    assert parse_report(log.read_text()).metrics["accuracy"] > 0.8
    reference = ReferenceProfile.model_validate_json((tmp_path / "out/reference.json").read_text())
    petal_length = reference.features[2]
    assert petal_length.name == "petal_length"
    assert isinstance(petal_length, NumericFeature)
    assert min(petal_length.edges) > 3.5, "the reference is the new data's, shifted"
    model = joblib.load(tmp_path / "out" / "model.joblib")
    assert (model.predict(shifted) == y).mean() > 0.9
