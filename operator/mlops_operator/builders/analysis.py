"""Canary analysis: may a canary step advance, judged by what the serving monitors counted
in both versions' pods over the step's traffic? Pure.

The operator reads each pod's /drift window (monitor_client.py), `traffic` sums one
version's pods, and `judge` compares the canary's sum against the limits of
spec.strategy.canary.analysis and against the stable version's sum plus a margin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mlops_operator.api.modeldeployment import Analysis, Monitoring
from mlops_operator.builders import drift

# Latency differences under this never count against the canary: the monitor's histogram
# buckets near a few milliseconds are that wide, so smaller ones are its resolution.
LATENCY_SLACK_MS = 5.0
# Against the stable version, the canary is slower only if more than this many of its requests
# (and 1%) are over the stable's p99 and margin. A p99 of a few hundred requests is their two
# or three slowest: a new runtime's first requests, warming up, would decide it alone.
MIN_SLOW_REQUESTS = 5


@dataclass(frozen=True)
class Traffic:
    """One version's window, summed over the pods whose monitor answered."""

    pods: int
    requests: int
    errors: int
    latency_bounds: tuple[float, ...]  # seconds, upper bounds; the last bucket is above them
    latency: tuple[int, ...]
    samples: int  # rows seen in V2 inference requests
    drift: tuple[str, float] | None  # the feature of highest PSI; None without a reference

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def p99_ms(self) -> float | None:
        return self.quantile_ms(0.99)

    def quantile_ms(self, q: float) -> float | None:
        found = percentile(self.latency_bounds, self.latency, q)
        return None if found is None else found * 1000


def traffic(readings: Sequence[dict[str, Any]]) -> Traffic | None:
    """The sum of the /drift answers of one version's pods (None: no pod answered)."""
    if not readings:
        return None
    bounds = tuple(float(b) for b in readings[0]["latency"]["bounds"])
    latency = [0] * (len(bounds) + 1)
    for reading in readings:
        latency = [a + int(b) for a, b in zip(latency, reading["latency"]["counts"], strict=True)]
    highest = None
    features = readings[0]["features"]
    if features:
        scores = [
            (name, drift.psi(reference, live))
            for name, reference, live in (
                drift.summed([r["features"][i] for r in readings]) for i in range(len(features))
            )
        ]
        highest = max(scores, key=lambda s: s[1])
    return Traffic(
        pods=len(readings),
        requests=sum(int(r["requests"]) for r in readings),
        errors=sum(int(r["errors"]) for r in readings),
        latency_bounds=bounds,
        latency=tuple(latency),
        samples=sum(int(r["samples"]) for r in readings),
        drift=highest,
    )


def percentile(bounds: Sequence[float], counts: Sequence[int], q: float) -> float | None:
    """The q-quantile (0..1) of a histogram with these upper bounds, interpolated within its
    bucket as Prometheus's histogram_quantile does; None when it is empty."""
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(counts):
        if seen + count >= rank and count:
            if i == len(bounds):  # above the last bound: that bound is all we know
                return bounds[-1]
            low = bounds[i - 1] if i else 0.0
            return low + (bounds[i] - low) * (rank - seen) / count
        seen += count
    return bounds[-1]


Outcome = Literal["Passed", "Failed", "Waiting"]


@dataclass(frozen=True)
class Judgement:
    outcome: Outcome
    message: str  # the numbers, for the Event, the condition and the rollout history


def judge(
    analysis: Analysis,
    monitoring: Monitoring,
    canary: Traffic | None,
    stable: Traffic | None,
    window_seconds: int,
) -> Judgement:
    """Passed, Failed (with every check that failed) or Waiting (too little traffic yet)."""
    if canary is None:
        return Judgement("Waiting", "no monitor of the canary answered")
    if canary.requests < analysis.min_requests:
        return Judgement(
            "Waiting",
            f"{canary.requests} of the {analysis.min_requests} requests needed reached the"
            f" canary in the last {window_seconds} s",
        )
    checks = [
        _errors(analysis, canary, stable),
        _latency(analysis, canary, stable),
        _drift(analysis, monitoring, canary, stable),
    ]
    failed = [text for ok, text in checks if not ok]
    seen = f"{canary.requests} canary requests in the last {window_seconds} s"
    if stable is not None:
        seen += f", {stable.requests} stable"
    if failed:
        return Judgement("Failed", f"{'; '.join(failed)} ({seen})")
    return Judgement("Passed", f"{'; '.join(text for _, text in checks if text)} ({seen})")


# Each check: whether the canary passes it, and what to say (the numbers).
Check = tuple[bool, str]


def _errors(analysis: Analysis, canary: Traffic, stable: Traffic | None) -> Check:
    rate = canary.error_rate
    text = f"error rate {rate:.3g}"
    if rate > analysis.max_error_rate:
        return False, f"{text} > {analysis.max_error_rate:g} (maxErrorRate)"
    if stable is None or not stable.requests:
        return True, text
    theirs, margin = stable.error_rate, analysis.error_rate_margin
    if rate > theirs + margin:
        return False, f"{text} > stable's {theirs:.3g} + {margin:g} (errorRateMargin)"
    return True, f"{text} (stable {theirs:.3g})"


def _latency(analysis: Analysis, canary: Traffic, stable: Traffic | None) -> Check:
    p99 = canary.p99_ms
    if p99 is None:
        return True, ""
    text = f"p99 {p99:.3g} ms"
    limit = analysis.max_latency_p99_ms
    if limit is not None and p99 > limit:
        return False, f"{text} > {limit} ms (maxLatencyP99Ms)"
    theirs = stable.p99_ms if stable is not None else None
    if theirs is None:
        return True, text
    percent = analysis.latency_margin_percent
    beyond = theirs + max(theirs * percent / 100, LATENCY_SLACK_MS)
    # The canary's latency that more than MIN_SLOW_REQUESTS of its requests reach: its p99
    # once it has 500 requests or more.
    q = 1 - max(0.01, MIN_SLOW_REQUESTS / max(canary.requests, 1))
    slow = canary.quantile_ms(q)
    if slow is not None and slow > beyond:
        return False, f"{text} > stable's {theirs:.3g} ms + {percent}% (latencyMarginPercent)"
    return True, f"{text} (stable {theirs:.3g} ms)"


def _drift(
    analysis: Analysis, monitoring: Monitoring, canary: Traffic, stable: Traffic | None
) -> Check:
    if canary.drift is None:
        return True, "drift not judged: the canary's Model has no reference profile"
    enough = monitoring.min_samples
    if canary.samples < enough:
        return (
            True,
            f"drift not judged: {canary.samples} rows, spec.monitoring.minSamples is {enough}",
        )
    feature, psi = canary.drift
    text = f"highest PSI {feature} {psi:.3g}"
    limit = analysis.max_drift if analysis.max_drift is not None else monitoring.threshold
    if psi > limit:
        return False, f"{text} > {limit:g} (maxDrift)"
    if stable is None or stable.drift is None or stable.samples < enough:
        return True, text
    theirs, margin = stable.drift[1], analysis.drift_margin
    if psi > theirs + margin:
        return False, f"{text} > stable's {theirs:.3g} + {margin:g} (driftMargin)"
    return True, f"{text} (stable {theirs:.3g})"
