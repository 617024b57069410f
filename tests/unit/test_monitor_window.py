"""The serving monitor's pure parts: drift scores, V2 bodies as columns, the rolling window."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mlops_operator.api.reference import CategoricalFeature, NumericFeature, ReferenceProfile
from mlops_operator.builders import drift
from mlops_operator.monitoring import v2
from mlops_operator.monitoring.window import (
    LATENCY_BOUNDS,
    MAX_WINDOW_SECONDS,
    SLOT_SECONDS,
    Window,
    percentile,
)
from mlops_operator.sdk import profile

# --- scores ---------------------------------------------------------------------------


def test_psi_and_js_are_zero_for_the_same_shares_and_grow_with_the_shift() -> None:
    ref = [100, 100, 100, 100]
    assert drift.psi(ref, [5, 5, 5, 5]) == pytest.approx(0)
    assert drift.js_distance(ref, [5, 5, 5, 5]) == pytest.approx(0)
    small, large = [30, 25, 25, 20], [70, 20, 5, 5]
    assert 0 < drift.psi(ref, small) < 0.1 < 0.2 < drift.psi(ref, large)
    assert 0 < drift.js_distance(ref, small) < drift.js_distance(ref, large) < 1


def test_psi_matches_its_formula_and_js_is_one_for_disjoint_histograms() -> None:
    expected = sum((a - e) * math.log(a / e) for e, a in zip([0.5, 0.5], [0.9, 0.1], strict=True))
    assert drift.psi([50, 50], [90, 10]) == pytest.approx(expected)
    assert drift.js_distance([10, 0], [0, 10]) == pytest.approx(1.0)
    assert math.isfinite(drift.psi([10, 0], [0, 10])), "empty bins do not make it infinite"


def test_scores_of_nothing_are_zero_and_mismatched_bins_are_refused() -> None:
    assert drift.psi([1, 2], [0, 0]) == drift.js_distance([1, 2], [0, 0]) == 0.0
    with pytest.raises(ValueError, match="3 live bins against 2"):
        drift.psi([1, 2], [1, 2, 3])


# --- V2 bodies ------------------------------------------------------------------------

FEATURES = ["a", "b"]


def body(inputs: object) -> bytes:
    return json.dumps({"inputs": inputs}).encode()


def test_one_tensor_of_rows_by_features_maps_columns_in_order() -> None:
    nested = body([{"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [[1, 2], [3, 4]]}])
    flat = body([{"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3, 4]}])
    assert v2.request_columns(nested, FEATURES) == [[1, 3], [2, 4]]
    assert v2.request_columns(flat, FEATURES) == [[1, 3], [2, 4]]


def test_one_tensor_per_feature_maps_by_name() -> None:
    named = body([
        {"name": "b", "shape": [2, 1], "datatype": "FP64", "data": [[9], [8]]},
        {"name": "a", "shape": [2], "datatype": "FP64", "data": [1, 2]},
    ])  # fmt: skip
    assert v2.request_columns(named, FEATURES) == [[1, 2], [9, 8]]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", v2.NOT_JSON),
        (b"\xff\xfe", v2.NOT_JSON),
        (b"[1, 2]", v2.NO_INPUTS),
        (body([]), v2.NO_INPUTS),
        (body([{"name": "x", "shape": [2, 2], "data": [1, 2, 3]}]), v2.BAD_SHAPE),
        (body([{"name": "x", "shape": "2x2", "data": [1, 2, 3, 4]}]), v2.BAD_SHAPE),
        (body([{"name": "x", "shape": [2, 3], "data": [1, 2, 3, 4, 5, 6]}]), v2.UNMAPPED),
        (body([{"name": "a", "shape": [1]}, {"name": "b", "shape": [2]}]), v2.BAD_SHAPE),
        (
            body(
                [
                    {"name": "a", "shape": [1], "data": [1]},
                    {"name": "b", "shape": [2], "data": [1, 2]},
                ]
            ),
            v2.BAD_SHAPE,
        ),
    ],
)
def test_what_cannot_be_mapped_says_why(raw: bytes, reason: str) -> None:
    with pytest.raises(v2.Unreadable) as err:
        v2.request_columns(raw, FEATURES)
    assert err.value.reason == reason


def test_predictions_are_the_first_output_when_it_has_one_value_per_row() -> None:
    answer = json.dumps({"outputs": [{"name": "predict", "shape": [2, 1], "data": [0, 2]}]})
    assert v2.response_predictions(answer.encode(), rows=2) == [0, 2]
    probabilities = json.dumps({"outputs": [{"name": "p", "shape": [2, 3], "data": [0.1] * 6}]})
    assert v2.response_predictions(probabilities.encode(), rows=2) is None
    assert v2.response_predictions(b"oops", rows=2) is None


@pytest.mark.parametrize(
    ("path", "infer"),
    [
        ("/v2/models/iris/infer", True),
        ("/v2/models/iris/versions/3/infer", True),
        ("/v2/models/iris/ready", False),
        ("/v2/health/live", False),
        ("/v1/models/iris:predict", False),
        ("/v2/models/iris/other/3/infer", False),
    ],
)
def test_only_v2_infer_calls_are_binned(path: str, infer: bool) -> None:
    assert v2.infer_path(path) is infer


# --- the window -----------------------------------------------------------------------


def reference() -> ReferenceProfile:
    rng = np.random.default_rng(1)
    return profile(
        rng.normal(0, 1, (2000, 2)), rng.integers(0, 3, 2000), feature_names=FEATURES, bins=10
    )


def test_in_distribution_rows_score_low_and_a_shifted_feature_alone_scores_high() -> None:
    window = Window(reference())
    rng = np.random.default_rng(2)
    now = 1_000_000.0
    same = rng.normal(0, 1, (2000, 2))
    window.record_rows([same[:, 0].tolist(), same[:, 1].tolist()], [0, 1, 2] * 666 + [0, 1], now)
    calm = window.summary(600, now)
    assert calm["samples"] == 2000
    assert all(f["psi"] < 0.05 for f in calm["features"]), calm["features"]
    assert calm["predictions"]["psi"] < 0.05

    later = now + MAX_WINDOW_SECONDS  # the calm rows have aged out
    shifted = rng.normal(0, 1, (2000, 2))
    shifted[:, 1] += 1.5
    window.record_rows([shifted[:, 0].tolist(), shifted[:, 1].tolist()], None, later)
    a, b = window.summary(600, later)["features"]
    assert a["psi"] < 0.05
    assert b["psi"] > 0.5
    assert b["jsDistance"] > a["jsDistance"]
    assert sum(b["counts"]) == 2000


def test_the_window_sums_only_its_slots_and_forgets_past_the_maximum() -> None:
    window = Window(reference())
    t0 = 2_000_000.0
    for minute in range(5):
        window.record_request(seconds=0.003, error=minute == 4, now=t0 + 60 * minute)
        window.record_rows([[0.0], [0.0]], [1], t0 + 60 * minute)
    last = t0 + 240
    assert window.summary(60, last)["requests"] == 1
    assert window.summary(60, last)["errors"] == 1
    assert window.summary(300, last)["samples"] == 5
    assert window.summary(10**9, last)["windowSeconds"] == MAX_WINDOW_SECONDS
    assert window.summary(1, last)["windowSeconds"] == SLOT_SECONDS
    assert window.summary(600, last + MAX_WINDOW_SECONDS + 60)["samples"] == 0
    assert len(window._slots) <= MAX_WINDOW_SECONDS // SLOT_SECONDS + 1


def test_missing_and_unknown_values_are_counted_apart() -> None:
    ref = ReferenceProfile(
        rows=2,
        features=[
            NumericFeature(name="n", edges=[0.0], counts=[1, 1]),
            CategoricalFeature(name="c", categories=["x"], counts=[2, 0]),
        ],
    )
    window = Window(ref)
    bins = window.record_rows([[None, "text", 1.0], ["x", "y", None]], None, 10.0)
    assert bins == [[None, None, 1], [0, 1, None]]
    n, c = window.summary(60, 10.0)["features"]
    assert (n["counts"], n["missing"]) == ([0, 1], 2)
    assert (c["counts"], c["missing"]) == ([1, 1], 1)


def test_latency_percentiles_interpolate_within_a_bucket() -> None:
    counts = [0] * (len(LATENCY_BOUNDS) + 1)
    assert percentile(counts, 0.99) is None
    counts[LATENCY_BOUNDS.index(0.005)] = 100  # all between 2.5 and 5 ms
    assert percentile(counts, 0.5) == pytest.approx(0.00375)
    counts[-1] = 1000  # most above the last bound
    assert percentile(counts, 0.99) == LATENCY_BOUNDS[-1]
