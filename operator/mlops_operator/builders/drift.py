"""Drift scores: how far live counts per bin are from the reference profile's.

Both scores compare two histograms over the same bins (api/reference.py defines the bins):
- PSI, the population stability index, sum((a - e) * ln(a / e)) over the bins' shares; the
  convention (and our default threshold) reads over 0.2 as a significant shift;
- the Jensen-Shannon distance, sqrt of the JS divergence in bits: 0 for equal shares, 1 for
  disjoint ones, and defined even where a bin is empty on one side.
Pure functions: the monitor scores one pod's window, the operator the sum over a version's pods.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mlops_operator.api.modeldeployment import DriftStatus, FeatureDrift, Monitoring

# status.drift lists this many features, highest PSI first (a profile may have 1,000).
STATUS_FEATURES = 20
# A new reading is written to status only when it differs from the one there by more than
# this: a PSI by 0.01 or a tenth, the rows by a tenth (or anything but the numbers changed).
CHANGE_SHARE = 0.1
CHANGE_PSI = 0.01

# An empty bin's share, for PSI only (its log is undefined at 0): a tenth of a row in ten
# thousand, small enough not to dominate, large enough that one empty bin is not infinite.
EMPTY_SHARE = 1e-4


def shares(counts: Sequence[int]) -> list[float]:
    total = sum(counts)
    return [c / total for c in counts] if total else [0.0] * len(counts)


def psi(expected: Sequence[int], actual: Sequence[int]) -> float:
    """PSI of `actual` counts against `expected` (the reference's), over the same bins."""
    _same_bins(expected, actual)
    if not sum(expected) or not sum(actual):
        return 0.0
    score = 0.0
    for e, a in zip(shares(expected), shares(actual), strict=True):
        e, a = max(e, EMPTY_SHARE), max(a, EMPTY_SHARE)
        score += (a - e) * math.log(a / e)
    return score


def js_distance(expected: Sequence[int], actual: Sequence[int]) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) between the two histograms."""
    _same_bins(expected, actual)
    if not sum(expected) or not sum(actual):
        return 0.0
    divergence = 0.0
    for p, q in zip(shares(expected), shares(actual), strict=True):
        m = (p + q) / 2
        if p:
            divergence += p / 2 * math.log2(p / m)
        if q:
            divergence += q / 2 * math.log2(q / m)
    return math.sqrt(max(divergence, 0.0))


@dataclass(frozen=True)
class Verdict:
    """The `Drifted` condition of a ModelDeployment, and the status.drift behind it."""

    drifted: bool | None  # None: Unknown
    reason: str
    message: str
    drift: DriftStatus | None = None


def no_reference(model: str) -> Verdict:
    return Verdict(
        None,
        "NoReference",
        f"Model {model} has no reference profile, so its traffic is not monitored; train"
        " with report(reference=profile(...)) (docs/training.md#the-reference-profile)",
    )


def assess(
    readings: Sequence[dict[str, Any]],
    failures: Sequence[str],
    monitoring: Monitoring,
    version: int,
    now: datetime,
) -> Verdict:
    """Sum the monitors' windows (`/drift` of each pod of `version`) and judge the sum.

    Counts add across pods before scoring, so two pods each with half the traffic score as
    one would with all of it."""
    if not readings:
        why = "; ".join(failures[:3]) or "no Ready pod of it"
        return Verdict(
            None, "MonitorUnavailable", f"no monitor of version {version} answered: {why}"
        )
    first = readings[0]
    names = [f.get("name") for f in first["features"]]
    # Pods of one version share a profile; one that does not is not summed with the rest.
    readings = [r for r in readings if [f.get("name") for f in r["features"]] == names]
    scored = [
        _scored(name, ref, live, monitoring.feature_thresholds.get(name, monitoring.threshold))
        for name, ref, live in (
            summed([r["features"][i] for r in readings]) for i in range(len(first["features"]))
        )
    ]
    predictions = None
    if all("predictions" in r for r in readings):
        predictions = _scored(*summed([r["predictions"] for r in readings]), None)
    samples = sum(int(r["samples"]) for r in readings)
    drift = DriftStatus(
        version=version,
        window_seconds=int(first["windowSeconds"]),
        samples=samples,
        pods=len(readings),
        features=sorted(scored, key=lambda f: -f.psi)[:STATUS_FEATURES],
        feature_count=len(scored),
        predictions=predictions,
        read_at=now,
    )
    window = f"the last {drift.window_seconds} s"
    if samples < monitoring.min_samples:
        return Verdict(
            None,
            "NotEnoughSamples",
            f"{samples} rows in {window}, {monitoring.min_samples} needed to judge drift",
            drift,
        )
    over = sorted(
        (f for f in scored if f.threshold is not None and f.psi > f.threshold),
        key=lambda f: -f.psi,
    )
    if over:
        named = "; ".join(f"{f.name} PSI {f.psi:.4g} > {f.threshold:.4g}" for f in over[:10])
        return Verdict(True, "FeaturesDrifted", f"{named} ({samples} rows in {window})", drift)
    top = max(scored, key=lambda f: f.psi)
    return Verdict(
        False,
        "NoDrift",
        f"no feature over its PSI threshold; highest {top.name} {top.psi:.3g}"
        f" ({samples} rows in {window})",
        drift,
    )


def changed(old: DriftStatus | None, new: DriftStatus | None) -> bool:
    """Whether `new` says something `old` does not, beyond the noise of a moving window:
    a status rewritten at every read (every 10 s at the least) is load on the API server
    and on every watcher of the object, for nothing."""
    if old is None or new is None:
        return old is not new
    same = (old.version, old.window_seconds, old.pods, old.feature_count, old.predictions is None)
    if same != (
        new.version,
        new.window_seconds,
        new.pods,
        new.feature_count,
        new.predictions is None,
    ):
        return True
    if _moved(old.samples, new.samples, share=CHANGE_SHARE):
        return True
    before = {f.name: f.psi for f in old.features}
    after = {f.name: f.psi for f in new.features}
    if before.keys() != after.keys():
        return True
    pairs = [(before[n], after[n]) for n in after]
    if old.predictions and new.predictions:
        pairs.append((old.predictions.psi, new.predictions.psi))
    return any(abs(b - a) > max(CHANGE_PSI, CHANGE_SHARE * max(a, b)) for a, b in pairs)


def _moved(a: float, b: float, *, share: float) -> bool:
    return abs(a - b) > share * max(abs(a), abs(b))


def summed(entries: list[dict[str, Any]]) -> tuple[str, list[int], list[int]]:
    """One feature as each pod read it: its name, reference counts, live counts summed."""
    first = entries[0]
    total = [0] * len(first["reference"])
    for entry in entries:
        total = [a + int(b) for a, b in zip(total, entry["counts"], strict=True)]
    return str(first["name"]), list(first["reference"]), total


def _scored(
    name: str, reference: list[int], live: list[int], threshold: float | None
) -> FeatureDrift:
    return FeatureDrift(
        name=name,
        psi=round(psi(reference, live), 4),
        js_distance=round(js_distance(reference, live), 4),
        threshold=threshold,
    )


def _same_bins(expected: Sequence[int], actual: Sequence[int]) -> None:
    if len(expected) != len(actual):
        raise ValueError(f"{len(actual)} live bins against {len(expected)} reference bins")
