"""Canary analysis (builders/analysis.py): the pods' windows summed per version, and the
verdict against the limits and against the stable version plus its margins."""

from __future__ import annotations

from typing import Any

import pytest

from mlops_operator.api.modeldeployment import Analysis, Monitoring
from mlops_operator.builders.analysis import Traffic, judge, percentile, traffic
from mlops_operator.monitoring.window import LATENCY_BOUNDS

# Latency buckets: p99 of one full bucket is 99% of the way through it.
MS_5 = LATENCY_BOUNDS.index(0.005)  # 2.5 to 5 ms: p99 4.98 ms
MS_250 = LATENCY_BOUNDS.index(0.25)  # 100 to 250 ms: p99 248 ms


def window(
    requests: int,
    errors: int = 0,
    bucket: int = MS_5,
    counts: tuple[list[int], ...] = ([50, 50],),
    samples: int | None = None,
) -> dict[str, Any]:
    """One pod's /drift answer: every request in one latency bucket."""
    latency = [0] * (len(LATENCY_BOUNDS) + 1)
    latency[bucket] = requests
    return {
        "windowSeconds": 60,
        "requests": requests,
        "errors": errors,
        "samples": requests if samples is None else samples,
        "latency": {"bounds": list(LATENCY_BOUNDS), "counts": latency},
        "features": [
            {"name": f"f{i}", "reference": [50, 50], "counts": c} for i, c in enumerate(counts)
        ],
    }


def summed(*pods: dict[str, Any]) -> Traffic:
    found = traffic(list(pods))
    assert found is not None
    return found


MONITORING = Monitoring(min_samples=100)


def test_percentiles_interpolate_within_a_bucket() -> None:
    counts = [0] * (len(LATENCY_BOUNDS) + 1)
    assert percentile(LATENCY_BOUNDS, counts, 0.99) is None
    counts[MS_5] = 100
    assert percentile(LATENCY_BOUNDS, counts, 0.5) == pytest.approx(0.00375)
    counts[-1] = 1000  # most above the last bound: that bound is all that is known
    assert percentile(LATENCY_BOUNDS, counts, 0.99) == LATENCY_BOUNDS[-1]


def test_pods_are_summed_before_the_rates_and_scores() -> None:
    # Each pod alone leans one way on f0; together the canary is balanced.
    both = summed(window(100, errors=10, counts=([90, 10],)), window(300, counts=([10, 90],)))
    assert (both.pods, both.requests, both.errors, both.samples) == (2, 400, 10, 400)
    assert both.error_rate == 0.025
    assert both.drift is not None
    assert both.drift[0] == "f0"
    assert both.drift[1] == pytest.approx(0.0, abs=1e-9)
    assert traffic([]) is None


def test_too_few_canary_requests_wait_and_say_how_many() -> None:
    verdict = judge(Analysis(min_requests=50), MONITORING, summed(window(12)), None, 60)
    assert verdict.outcome == "Waiting"
    assert "12 of the 50 requests" in verdict.message
    assert judge(Analysis(), MONITORING, None, None, 60).outcome == "Waiting"


def test_a_healthy_canary_passes_with_its_numbers_beside_the_stable_ones() -> None:
    verdict = judge(Analysis(), MONITORING, summed(window(200, 1)), summed(window(800, 2)), 60)
    assert verdict.outcome == "Passed", verdict.message
    assert "error rate 0.005 (stable 0.0025)" in verdict.message
    assert "p99 4.98 ms (stable 4.98 ms)" in verdict.message
    assert "highest PSI f0 0 (stable 0)" in verdict.message
    assert "200 canary requests in the last 60 s, 800 stable" in verdict.message


def test_an_erroring_canary_fails_on_the_limit_and_on_the_margin() -> None:
    over_limit = judge(Analysis(), MONITORING, summed(window(100, 30)), summed(window(100)), 60)
    assert over_limit.outcome == "Failed"
    assert "error rate 0.3 > 0.05 (maxErrorRate)" in over_limit.message
    # Under the limit, but worse than the stable version by more than the margin.
    worse = judge(Analysis(), MONITORING, summed(window(100, 4)), summed(window(1000, 10)), 60)
    assert worse.outcome == "Failed"
    assert "error rate 0.04 > stable's 0.01 + 0.01 (errorRateMargin)" in worse.message
    # As bad as the stable version: not the canary's fault.
    same = judge(Analysis(), MONITORING, summed(window(100, 4)), summed(window(1000, 40)), 60)
    assert same.outcome == "Passed", same.message


def test_a_slow_canary_fails_on_the_limit_and_against_the_stable_p99() -> None:
    slow = summed(window(100, bucket=MS_250))
    limited = judge(Analysis(max_latency_p99_ms=200), MONITORING, slow, None, 60)
    assert limited.outcome == "Failed"
    assert "p99 248 ms > 200 ms (maxLatencyP99Ms)" in limited.message
    against = judge(Analysis(), MONITORING, slow, summed(window(100)), 60)
    assert against.outcome == "Failed"
    assert "p99 248 ms > stable's 4.98 ms + 50% (latencyMarginPercent)" in against.message
    # A canary whose first few requests were slow (its runtime warming up) is not slower
    # than the stable version: its p99 of 160 requests is those few. More of them are.
    warming = window(160)
    warming["latency"]["counts"][MS_5] = 157
    warming["latency"]["counts"][MS_250] = 3
    warm = judge(Analysis(), MONITORING, summed(warming), summed(window(170)), 60)
    assert warm.outcome == "Passed", warm.message
    assert "p99 1" in warm.message, "the p99 it reports is still the slow requests'"
    warming["latency"]["counts"][MS_5] = 150
    warming["latency"]["counts"][MS_250] = 10
    slower = judge(Analysis(), MONITORING, summed(warming), summed(window(170)), 60)
    assert slower.outcome == "Failed", slower.message
    # A few milliseconds either way is the histogram's resolution, not a regression.
    close = judge(Analysis(latency_margin_percent=0), MONITORING, summed(window(100)),
                  summed(window(100, bucket=MS_5 - 1)), 60)  # fmt: skip
    assert close.outcome == "Passed", close.message


def test_a_drifting_canary_fails_with_the_feature_but_only_on_enough_rows() -> None:
    # f1: 95% / 5% against 50% / 50%, PSI 0.45 ln(0.95/0.5) + 0.45 ln(0.5/0.05) = 1.32
    shifted = summed(window(200, counts=([50, 50], [190, 10])))
    calm = summed(window(800, counts=([50, 50], [50, 50])))
    verdict = judge(Analysis(), MONITORING, shifted, calm, 60)
    assert verdict.outcome == "Failed"
    assert "highest PSI f1 1.32 > 0.2 (maxDrift)" in verdict.message
    # Over the stable version's own drift by more than the margin, under the limit.
    mild = summed(window(200, counts=([60, 40],)))
    against = judge(Analysis(max_drift=1.0), MONITORING, mild, calm, 60)
    assert against.outcome == "Passed", against.message
    tight = judge(Analysis(max_drift=1.0, drift_margin=0.01), MONITORING, mild, calm, 60)
    assert tight.outcome == "Failed"
    assert "(driftMargin)" in tight.message
    # Fewer rows than spec.monitoring.minSamples: reported, not judged.
    few = summed(window(60, counts=([50, 50], [190, 10])))
    unjudged = judge(Analysis(), MONITORING, few, calm, 60)
    assert unjudged.outcome == "Passed", unjudged.message
    assert "drift not judged: 60 rows, spec.monitoring.minSamples is 100" in unjudged.message


def test_without_a_reference_drift_is_not_judged_and_every_failure_is_named() -> None:
    no_reference = window(100, 50, bucket=MS_250, counts=())
    verdict = judge(Analysis(max_latency_p99_ms=100), MONITORING, summed(no_reference), None, 60)
    assert verdict.outcome == "Failed"
    assert "maxErrorRate" in verdict.message
    assert "maxLatencyP99Ms" in verdict.message
    passed = judge(Analysis(), MONITORING, summed(window(100, counts=())), None, 60)
    assert "drift not judged: the canary's Model has no reference profile" in passed.message
