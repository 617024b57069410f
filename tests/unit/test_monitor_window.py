"""The serving monitor's pure parts: drift scores, V2 bodies as columns, the rolling window."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from mlops_operator.api.modeldeployment import Monitoring
from mlops_operator.api.reference import CategoricalFeature, NumericFeature, ReferenceProfile
from mlops_operator.builders import drift
from mlops_operator.monitoring import server, v2
from mlops_operator.monitoring.window import (
    MAX_WINDOW_SECONDS,
    SLOT_SECONDS,
    Window,
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


# --- the operator's verdict over a version's pods ----------------------------------------

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def reading(a: list[int], b: list[int], samples: int, predictions: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "windowSeconds": 600,
        "samples": samples,
        "features": [
            {"name": "a", "reference": [50, 50], "counts": a},
            {"name": "b", "reference": [50, 50], "counts": b},
        ],
    }
    if predictions:
        body["predictions"] = {"name": "prediction", "reference": [10, 10, 0], "counts": [3, 3, 0]}
    return body


def test_pods_are_summed_before_scoring_and_the_drifted_features_are_named() -> None:
    monitoring = Monitoring(min_samples=100, feature_thresholds={"b": 5.0})
    # Each pod alone leans one way on a; together they are balanced. b drifts, but its
    # threshold is high.
    pods = [reading([90, 10], [95, 5], 100), reading([10, 90], [95, 5], 100)]
    verdict = drift.assess(pods, [], monitoring, version=3, now=NOW)
    assert verdict.drifted is False
    assert verdict.reason == "NoDrift"
    assert verdict.drift is not None
    assert (verdict.drift.samples, verdict.drift.pods, verdict.drift.version) == (200, 2, 3)
    scores = {f.name: f for f in verdict.drift.features}
    assert scores["a"].psi == pytest.approx(0)
    assert scores["b"].threshold == 5.0
    assert "highest b" in verdict.message
    assert verdict.drift.predictions is not None

    strict = Monitoring(min_samples=100)
    drifted = drift.assess(pods, [], strict, version=3, now=NOW)
    assert drifted.drifted is True
    assert drifted.reason == "FeaturesDrifted"
    assert drifted.message.startswith("b PSI ")
    assert "> 0.2 (200 rows in the last 600 s)" in drifted.message
    assert "a PSI" not in drifted.message


def test_too_few_rows_no_monitor_or_no_reference_is_unknown_and_says_why() -> None:
    few = drift.assess([reading([1, 1], [1, 1], 2)], [], Monitoring(), version=1, now=NOW)
    assert (few.drifted, few.reason) == (None, "NotEnoughSamples")
    assert few.message == "2 rows in the last 600 s, 500 needed to judge drift"
    assert few.drift is not None, "what was read is still shown"
    nobody = drift.assess([], ["pod web-1: timed out"], Monitoring(), version=1, now=NOW)
    assert (nobody.drifted, nobody.reason) == (None, "MonitorUnavailable")
    assert "pod web-1: timed out" in nobody.message
    assert nobody.drift is None
    missing = drift.no_reference("iris-v2")
    assert (missing.drifted, missing.reason) == (None, "NoReference")
    assert "Model iris-v2 has no reference profile" in missing.message


def test_a_pod_without_predictions_leaves_them_out() -> None:
    pods = [reading([5, 5], [5, 5], 10), reading([5, 5], [5, 5], 10, predictions=False)]
    verdict = drift.assess(pods, [], Monitoring(min_samples=1), version=1, now=NOW)
    assert verdict.drift is not None
    assert verdict.drift.predictions is None


def test_without_a_reference_the_window_counts_requests_errors_and_latency_only() -> None:
    window = Window(None)
    window.record_request(seconds=0.004, error=False, now=5.0)
    window.record_request(seconds=0.3, error=True, now=6.0)
    summary = window.summary(60, 7.0)
    assert (summary["requests"], summary["errors"], summary["samples"]) == (2, 1, 0)
    assert sum(summary["latency"]["counts"]) == 2
    assert summary["features"] == []
    assert "predictions" not in summary


def test_a_deeply_nested_or_broken_body_is_a_reason_never_an_exception() -> None:
    nested = b'{"inputs": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    assert server.read_bodies(nested, b"{}", ["a", "b"]) == v2.NOT_JSON
    assert server.read_bodies(b"\xff\xfe", b"{}", ["a", "b"]) == v2.NOT_JSON


def test_one_request_s_rows_are_capped_evenly_spaced() -> None:
    columns = [list(range(1000)), list(range(1000, 2000))]
    kept, predictions = server.at_most(columns, list(range(1000)), 4)
    assert kept == [[0, 250, 500, 750], [1000, 1250, 1500, 1750]]
    assert predictions == [0, 250, 500, 750]
    assert server.at_most([[1, 2]], None, 4) == ([[1, 2]], None)


def test_status_drift_lists_the_20_highest_features_and_counts_them_all() -> None:
    features = [
        {"name": f"f{i}", "reference": [50, 50], "counts": [50 + i, 50 - i]} for i in range(40)
    ]
    body = {"windowSeconds": 600, "samples": 100, "features": features}
    verdict = drift.assess([body], [], Monitoring(min_samples=1), version=1, now=NOW)
    assert verdict.drift is not None
    assert verdict.drift.feature_count == 40
    assert [f.name for f in verdict.drift.features] == [f"f{i}" for i in range(39, 19, -1)]


def test_a_pod_with_another_profile_is_not_summed_with_the_rest() -> None:
    other = reading([5, 5], [5, 5], 10)
    other["features"] = other["features"][:1]
    verdict = drift.assess([reading([5, 5], [5, 5], 10), other], [], Monitoring(min_samples=1),
                           version=1, now=NOW)  # fmt: skip
    assert verdict.drift is not None
    assert verdict.drift.pods == 1


def test_a_reading_is_worth_a_write_only_when_it_says_something_new() -> None:
    def read(a: list[int], samples: int) -> Any:
        verdict = drift.assess([reading(a, [50, 50], samples)], [], Monitoring(min_samples=1),
                               version=1, now=NOW)  # fmt: skip
        return verdict.drift

    base = read([50, 50], 1000)
    assert not drift.changed(base, read([50, 50], 1050)), "5% more rows: noise"
    assert drift.changed(base, read([50, 50], 1200)), "20% more rows"
    assert drift.changed(base, read([80, 20], 1000)), "a PSI moved"
    assert drift.changed(None, base)
    assert not drift.changed(None, None)


def test_a_wide_profile_exports_at_most_the_series_budget_and_still_bins_every_feature() -> None:
    rng = np.random.default_rng(5)
    wide = profile(rng.normal(0, 1, (2000, 300)), rng.integers(0, 3, 2000), bins=50)
    metrics = server.Metrics(wide)
    exported = sum(1 for m in metrics.bins.collect() for _ in m.samples) // 2  # _total, _created
    assert exported <= server.MAX_BIN_SERIES
    window = Window(wide)
    rows = rng.normal(0, 1, (10, 300))
    binned = window.record_rows([rows[:, j].tolist() for j in range(300)], [0] * 10, 1.0)
    metrics.count_bins(binned)  # the features past the budget are skipped, not misaligned
    assert window.summary(600, 1.0)["samples"] == 10
    assert sum(s.value for m in metrics.predictions.collect() for s in m.samples
               if s.name.endswith("_total")) == 10  # fmt: skip
