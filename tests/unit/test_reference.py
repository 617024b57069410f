"""The reference profile: what the SDK writes at training time, what the monitor bins against."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from mlops_operator.api.reference import (
    CategoricalFeature,
    NumericFeature,
    ReferenceProfile,
    category_key,
)
from mlops_operator.api.report import parse_report
from mlops_operator.sdk import profile, report


def test_numeric_columns_get_quantile_bins_that_bin_back_to_their_counts() -> None:
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(5, 2, 1000), rng.exponential(1.0, 1000)])
    ref = profile(x, feature_names=["a", "b"], bins=10)
    assert ref.rows == 1000
    for column, feature in zip(x.T, ref.features, strict=True):
        assert isinstance(feature, NumericFeature)
        assert len(feature.edges) == 9
        assert sum(feature.counts) == 1000
        # Quantile bins: each holds about a tenth of the rows.
        assert all(90 <= c <= 110 for c in feature.counts), feature.counts
        # The monitor's bin() (pure Python) and the SDK's numpy binning agree value by value.
        recount = [0] * len(feature.counts)
        for value in column:
            b = feature.bin(float(value))
            assert b is not None
            recount[b] += 1
        assert recount == feature.counts


def test_bin_edges_belong_to_the_lower_bin_and_the_ends_are_open() -> None:
    f = NumericFeature(name="x", edges=[1.0, 2.0], counts=[1, 1, 1])
    assert [f.bin(v) for v in (-1e9, 1.0, 1.5, 2.0, 2.1, 1e9)] == [0, 0, 1, 1, 2, 2]
    assert [f.bin(v) for v in (float("nan"), float("inf"), None, "3", True)] == [None] * 5


def test_few_distinct_values_merge_bins_instead_of_repeating_edges() -> None:
    ref = profile([[0], [0], [0], [1], [1], [2]], bins=10)
    feature = ref.features[0]
    assert isinstance(feature, NumericFeature)
    assert feature.edges == sorted(set(feature.edges))
    assert sum(feature.counts) == 6


def test_text_and_named_columns_are_categorical_with_the_rest_counted_as_other() -> None:
    rows = [["red", 1], ["red", 2], ["blue", 2], ["green", 3], ["red", 2], [None, 2]]
    ref = profile(rows, feature_names=["colour", "size"], categorical=["size"], max_categories=2)
    colour, size = ref.features
    assert isinstance(colour, CategoricalFeature)
    assert isinstance(size, CategoricalFeature)
    assert (colour.categories, colour.counts, colour.missing) == (["red", "blue"], [3, 1, 1], 1)
    assert (size.categories, size.counts) == (["2", "1"], [4, 1, 1])
    assert colour.bin("red") == 0
    assert colour.bin("purple") == 2
    assert colour.bin(None) is None
    assert size.bin(2) == size.bin(2.0) == 0, "2 and 2.0 are the same category"


def test_numeric_columns_with_missing_values_count_them_apart() -> None:
    ref = profile([[1.0], [None], [float("nan")], [2.0], [3.0]], bins=2)
    feature = ref.features[0]
    assert isinstance(feature, NumericFeature)
    assert (sum(feature.counts), feature.missing) == (3, 2)


def test_predictions_are_classes_or_numbers() -> None:
    x = [[0.1], [0.2], [0.3], [0.4]]
    classes = profile(x, np.array([0, 1, 1, 2])).predictions
    assert isinstance(classes, CategoricalFeature)
    assert (classes.categories, classes.counts) == (["1", "0", "2"], [2, 1, 1, 0])
    scores = profile(x, np.array([0.5, 1.5, 2.5, 3.5]), bins=2).predictions
    assert isinstance(scores, NumericFeature)
    assert scores.name == "prediction"
    with pytest.raises(ValueError, match="one per row"):
        profile(x, [1, 2])


def test_a_dataframe_like_input_names_its_features() -> None:
    class Frame:
        columns = ("height", "weight")

        def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
            return np.array([[1.0, 2.0], [3.0, 4.0]], dtype=dtype)  # type: ignore[arg-type]

    assert [f.name for f in profile(Frame(), bins=2).features] == ["height", "weight"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"feature_names": ["a"]}, "1 feature names for 2 columns"),
        ({"bins": 1}, "bins must be"),
    ],
)
def test_bad_arguments_say_what_is_wrong(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        profile([[1, 2], [3, 4]], **kwargs)  # type: ignore[arg-type]


def test_an_inconsistent_file_is_refused_with_the_feature_named() -> None:
    with pytest.raises(ValidationError, match="x: counts needs len"):
        NumericFeature(name="x", edges=[1.0], counts=[1])
    with pytest.raises(ValidationError, match="strictly ascending"):
        NumericFeature(name="x", edges=[2.0, 1.0], counts=[1, 1, 1])
    with pytest.raises(ValidationError, match="unique"):
        ReferenceProfile(
            rows=1,
            features=[
                NumericFeature(name="x", edges=[], counts=[1]),
                NumericFeature(name="x", edges=[], counts=[1]),
            ],
        )


def test_category_keys() -> None:
    assert [category_key(v) for v in (1, 1.0, 1.5, "a", True, None, float("nan"))] == [
        "1",
        "1",
        "1.5",
        "a",
        "true",
        None,
        None,
    ]


def test_report_writes_the_reference_beside_the_artifact_with_its_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_OUTPUT_URI", f"file://{tmp_path}/out/")
    ref = profile([[1.0], [2.0], [3.0]], [0, 1, 1], feature_names=["x"], bins=2)
    message = report(
        metrics={"accuracy": 1.0},
        artifact={"uri": f"file://{tmp_path}/out/model.joblib"},
        reference=ref,
        path=tmp_path / "log",
    )
    written = tmp_path / "out" / "reference.json"
    parsed = parse_report(message)
    assert parsed.artifact.reference is not None
    assert parsed.artifact.reference.uri == f"file://{written}"
    assert parsed.artifact.reference.digest == (
        "sha256:" + hashlib.sha256(written.read_bytes()).hexdigest()
    )
    assert ReferenceProfile.model_validate(json.loads(written.read_text())) == ref


def test_report_with_a_reference_needs_the_output_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLOPS_OUTPUT_URI", raising=False)
    ref = profile([[1.0], [2.0]], bins=2)
    with pytest.raises(ValueError, match="MLOPS_OUTPUT_URI"):
        report(metrics={}, artifact={"uri": "file:///m"}, reference=ref, path="/nonexistent/x")
