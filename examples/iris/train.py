"""Train a scikit-learn classifier on the iris data set: the example training container.

The operator runs this with the TrainingJob contract (DESIGN.md section 3):
MLOPS_OUTPUT_URI says where the artifact goes, MLOPS_HPARAMS carries the
hyperparameters as JSON. It writes `model.joblib` there (the layout MLServer's
sklearn runtime serves), profiles its training data (`reference.json` beside it, what
the serving pods' monitor measures drift against) and reports accuracy and the artifact
through the termination message. It trains on the iris data set, or, when the run has a
dataset (`MLOPS_DATASET_URI`), on that CSV: a header naming the columns, the class last.
Locally:

    MLOPS_OUTPUT_URI=file:///tmp/iris MLOPS_TERMINATION_LOG=/tmp/iris.report python train.py
"""

from __future__ import annotations

import hashlib
import io
import os

import fsspec
import joblib
import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

from mlops_operator.sdk import hparams, profile, report

# The columns of the model's input tensor, in order: the names drift is reported under.
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def load() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The rows, their classes and the feature names: the run's dataset, else iris."""
    uri = os.environ.get("MLOPS_DATASET_URI")
    if not uri:
        x, y = load_iris(return_X_y=True)
        return x, y, FEATURES
    with fsspec.open(uri, "rb") as f:
        text = f.read().decode()
    header = text.splitlines()[0].split(",")
    table = np.loadtxt(io.StringIO(text), delimiter=",", skiprows=1, ndmin=2)
    return table[:, :-1], table[:, -1].astype(int), header[:-1]


def main() -> None:
    params = hparams()
    output_uri = os.environ["MLOPS_OUTPUT_URI"].rstrip("/")
    x, y, features = load()
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.3, random_state=int(params.get("seed", "0")), stratify=y
    )
    model = LogisticRegression(
        C=float(params.get("C", "1.0")), max_iter=int(params.get("max_iter", "200"))
    )
    model.fit(x_train, y_train)
    predicted = model.predict(x_test)

    artifact_uri = f"{output_uri}/model.joblib"
    with fsspec.open(artifact_uri, "wb", auto_mkdir=True) as f:
        joblib.dump(model, f)
    with fsspec.open(artifact_uri, "rb") as f:
        digest = "sha256:" + hashlib.sha256(f.read()).hexdigest()

    report(
        metrics={
            "accuracy": accuracy_score(y_test, predicted),
            "f1": f1_score(y_test, predicted, average="macro"),
        },
        artifact={"uri": artifact_uri, "digest": digest},
        reference=profile(x_train, model.predict(x_train), feature_names=features),
    )


if __name__ == "__main__":
    main()
