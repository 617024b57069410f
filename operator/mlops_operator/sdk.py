"""Helpers for training code running inside a TrainingJob's pods.

    from mlops_operator.sdk import profile, report
    report(
        metrics={"accuracy": 0.97},
        artifact={"uri": output_uri, "digest": digest},
        # optional: how the training data looked, for drift monitoring once it serves
        reference=profile(x_train, model.predict(x_train), feature_names=names),
    )

Imports no Kubernetes client and no kopf (import-linter checks it), so a
training image needs only this package's light dependencies.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_operator.api.reference import (
    MAX_BINS,
    REFERENCE_FILE,
    CategoricalFeature,
    NumericFeature,
    ReferenceProfile,
    category_key,
)
from mlops_operator.api.report import TrainingReport

if TYPE_CHECKING:
    import numpy as np

# Where the kubelet reads the termination message from; overridable for local runs.
TERMINATION_LOG_ENV = "MLOPS_TERMINATION_LOG"
DEFAULT_TERMINATION_LOG = "/dev/termination-log"


def hparams() -> dict[str, str]:
    """The hyperparameters the operator passed in `MLOPS_HPARAMS`."""
    loaded: dict[str, str] = json.loads(os.environ.get("MLOPS_HPARAMS") or "{}")
    return loaded


def profile(
    features: Any,
    predictions: Any = None,
    *,
    feature_names: Sequence[str] | None = None,
    categorical: Iterable[str | int] = (),
    bins: int = 10,
    max_categories: int = 20,
) -> ReferenceProfile:
    """How the training data is distributed, for drift monitoring once the model serves.

    `features`: rows by columns (a numpy array, a list of rows, a pandas DataFrame), in the
    column order the model's inputs have. Numeric columns get `bins` quantile bins; columns
    named or numbered in `categorical`, and columns of text, their `max_categories` most
    frequent values. `predictions`: the model's outputs on those rows (classes are
    categorical, floats numeric). Needs numpy (`pip install 'mlops-operator[sdk]'`).
    """
    import numpy as np

    if not 2 <= bins <= MAX_BINS or not 1 <= max_categories < MAX_BINS:
        raise ValueError(f"bins must be 2..{MAX_BINS}, max_categories 1..{MAX_BINS - 1}")
    names = list(feature_names) if feature_names is not None else _column_names(features)
    rows = np.asarray(features, dtype=object)
    if rows.ndim == 1:
        rows = rows.reshape(-1, 1)
    if rows.ndim != 2 or rows.shape[0] == 0:
        raise ValueError(f"features must be rows by columns, not of shape {rows.shape}")
    if names is None:
        names = [f"x{i}" for i in range(rows.shape[1])]
    if len(names) != rows.shape[1]:
        raise ValueError(f"{len(names)} feature names for {rows.shape[1]} columns")
    wanted = {str(c) for c in categorical}
    profiled = [
        _categorical(name, rows[:, i], max_categories)
        if name in wanted or str(i) in wanted or not _numeric(rows[:, i])
        else _numeric_feature(name, rows[:, i], bins)
        for i, name in enumerate(names)
    ]
    predicted: NumericFeature | CategoricalFeature | None = None
    if predictions is not None:
        values = np.asarray(predictions)
        if values.ndim != 1 or len(values) != rows.shape[0]:
            raise ValueError(f"predictions must be one per row, not of shape {values.shape}")
        if values.dtype.kind == "f":
            predicted = _numeric_feature("prediction", values.astype(object), bins)
        else:
            predicted = _categorical("prediction", values.astype(object), max_categories)
    return ReferenceProfile(rows=rows.shape[0], features=profiled, predictions=predicted)


def _column_names(features: Any) -> list[str] | None:
    columns = getattr(features, "columns", None)  # a DataFrame's
    return [str(c) for c in columns] if columns is not None else None


def _numeric(column: np.ndarray) -> bool:
    """Numbers only (None counts as missing); any text or boolean makes it categorical."""
    return all(
        v is None or (isinstance(v, numbers.Real) and not isinstance(v, bool)) for v in column
    )


def _numeric_feature(name: str, column: np.ndarray, bins: int) -> NumericFeature:
    import numpy as np

    values = np.array([np.nan if v is None else float(v) for v in column])
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return NumericFeature(name=name, edges=[], counts=[0], missing=len(values))
    # Inner quantile edges; ties (few distinct values) merge bins rather than repeat an edge.
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, finite, side="left"), minlength=len(edges) + 1)
    return NumericFeature(
        name=name,
        edges=[float(e) for e in edges],
        counts=[int(c) for c in counts],
        missing=len(values) - len(finite),
    )


def _categorical(name: str, column: np.ndarray, max_categories: int) -> CategoricalFeature:
    counted: dict[str, int] = {}
    missing = 0
    for value in column:
        key = category_key(value.item() if hasattr(value, "item") else value)
        if key is None:
            missing += 1
        else:
            counted[key] = counted.get(key, 0) + 1
    # Most frequent first; ties by value, so the same data always gives the same file.
    ranked = sorted(counted.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = ranked[:max_categories]
    other = sum(n for _, n in ranked[max_categories:])
    return CategoricalFeature(
        name=name,
        categories=[k for k, _ in kept],
        counts=[n for _, n in kept] + [other],
        missing=missing,
    )


def save_profile(reference: ReferenceProfile, uri: str) -> dict[str, str]:
    """Write `reference` to `uri` (any fsspec URI); its `{"uri", "digest"}` for the report."""
    import fsspec  # here, so that importing the SDK needs only pydantic

    data = reference.model_dump_json(by_alias=True).encode()
    with fsspec.open(uri, "wb", auto_mkdir=True) as f:
        f.write(data)
    return {"uri": uri, "digest": "sha256:" + hashlib.sha256(data).hexdigest()}


def report(
    *,
    metrics: Mapping[str, float],
    artifact: Mapping[str, Any],
    reference: ReferenceProfile | None = None,
    path: str | Path | None = None,
) -> str:
    """Validate and write the run's report as the container's termination message.

    `reference` (from `profile()`) is written first, as `reference.json` in the run's
    output (`MLOPS_OUTPUT_URI`), and the report says where it is and its digest.
    Raises ValueError (a ReportError) when the report is invalid or over 4 KiB, so
    the mistake shows in the training logs rather than as a silently truncated message.
    Returns the JSON written.
    """
    artifact = dict(artifact)
    if reference is not None:
        output = os.environ.get("MLOPS_OUTPUT_URI")
        if not output:
            raise ValueError("report(reference=...) writes into MLOPS_OUTPUT_URI, which is unset")
        artifact["reference"] = save_profile(reference, f"{output.rstrip('/')}/{REFERENCE_FILE}")
    message = TrainingReport.model_validate(
        # float(): numpy scalars are common in training code and not plain floats.
        {"metrics": {k: float(v) for k, v in metrics.items()}, "artifact": artifact}
    ).to_message()
    target = Path(path or os.environ.get(TERMINATION_LOG_ENV) or DEFAULT_TERMINATION_LOG)
    target.write_text(message)
    return message
