"""A rolling window of what one serving pod saw, counted into the reference's bins.

Time is cut into slots of SLOT_SECONDS; a summary sums the slots of the last `seconds` (up
to MAX_WINDOW_SECONDS, what is kept). Only counts are kept: per feature and for the
predictions one count per bin plus the missing, and the requests, errors and a latency
histogram, so memory is fixed by the profile's size, not by the traffic.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mlops_operator.api.reference import CategoricalFeature, NumericFeature, ReferenceProfile
from mlops_operator.builders import drift

SLOT_SECONDS = 10
MAX_WINDOW_SECONDS = 3600
# Upper bounds of the latency buckets, in seconds (the last bucket is everything above).
LATENCY_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Feature = NumericFeature | CategoricalFeature


@dataclass
class Histogram:
    counts: list[int]
    missing: int = 0

    def add(self, other: Histogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.missing += other.missing


@dataclass
class Slot:
    index: int  # seconds since the epoch // SLOT_SECONDS
    features: list[Histogram]
    predictions: Histogram | None
    requests: int = 0
    errors: int = 0
    unparsed: int = 0
    samples: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS) + 1))


class Window:
    """`reference` None: requests, errors and latency only (a canary analysis without a
    reference profile)."""

    def __init__(self, reference: ReferenceProfile | None) -> None:
        self.features: list[Feature] = list(reference.features) if reference else []
        self.predictions: Feature | None = reference.predictions if reference else None
        self.names = [f.name for f in self.features]
        self._slots: deque[Slot] = deque()

    def record_request(self, *, seconds: float, error: bool, now: float) -> None:
        slot = self._slot(now)
        slot.requests += 1
        slot.errors += int(error)
        slot.latency[_bucket(seconds)] += 1

    def record_unparsed(self, now: float) -> None:
        self._slot(now).unparsed += 1

    def record_rows(
        self, columns: Sequence[Sequence[Any]], predictions: Sequence[Any] | None, now: float
    ) -> list[list[int | None]]:
        """Bin a request's columns (and its predictions); returns the bins, None where missing
        (feature by feature, then the predictions), for the per-bin counters."""
        slot = self._slot(now)
        binned: list[list[int | None]] = []
        for feature, values, histogram in zip(self.features, columns, slot.features, strict=True):
            binned.append(_count(feature, values, histogram))
        slot.samples += len(columns[0]) if columns else 0
        if predictions is not None and self.predictions and slot.predictions:
            binned.append(_count(self.predictions, predictions, slot.predictions))
        return binned

    def summary(self, seconds: int, now: float) -> dict[str, Any]:
        """Counts and scores of the last `seconds`: what /drift serves."""
        seconds = max(SLOT_SECONDS, min(seconds, MAX_WINDOW_SECONDS))
        total = self._empty(0)
        first = _index(now) - seconds // SLOT_SECONDS + 1
        for slot in self._slots:
            if slot.index >= first:
                _merge(total, slot)
        result: dict[str, Any] = {
            "windowSeconds": seconds,
            "requests": total.requests,
            "errors": total.errors,
            "unparsed": total.unparsed,
            "samples": total.samples,
            "latency": {"bounds": list(LATENCY_BOUNDS), "counts": total.latency},
            "features": [_scored(f, h) for f, h in zip(self.features, total.features, strict=True)],
        }
        if self.predictions and total.predictions:
            result["predictions"] = _scored(self.predictions, total.predictions)
        return result

    def _slot(self, now: float) -> Slot:
        index = _index(now)
        if not self._slots or self._slots[-1].index < index:
            self._slots.append(self._empty(index))
            while self._slots[0].index <= index - MAX_WINDOW_SECONDS // SLOT_SECONDS:
                self._slots.popleft()
        # A clock that stepped back counts into the newest slot rather than reorder them.
        return self._slots[-1]

    def _empty(self, index: int) -> Slot:
        return Slot(
            index=index,
            features=[Histogram([0] * len(f.counts)) for f in self.features],
            predictions=Histogram([0] * len(self.predictions.counts)) if self.predictions else None,
        )


def _index(now: float) -> int:
    return math.floor(now) // SLOT_SECONDS


def _bucket(seconds: float) -> int:
    for i, bound in enumerate(LATENCY_BOUNDS):
        if seconds <= bound:
            return i
    return len(LATENCY_BOUNDS)


def _count(feature: Feature, values: Sequence[Any], histogram: Histogram) -> list[int | None]:
    bins = [feature.bin(v) for v in values]
    for b in bins:
        if b is None:
            histogram.missing += 1
        else:
            histogram.counts[b] += 1
    return bins


def _merge(total: Slot, slot: Slot) -> None:
    for mine, theirs in zip(total.features, slot.features, strict=True):
        mine.add(theirs)
    if total.predictions and slot.predictions:
        total.predictions.add(slot.predictions)
    total.requests += slot.requests
    total.errors += slot.errors
    total.unparsed += slot.unparsed
    total.samples += slot.samples
    total.latency = [a + b for a, b in zip(total.latency, slot.latency, strict=True)]


def _scored(feature: Feature, live: Histogram) -> dict[str, Any]:
    return {
        "name": feature.name,
        "reference": feature.counts,
        "counts": live.counts,
        "missing": live.missing,
        "psi": round(drift.psi(feature.counts, live.counts), 6),
        "jsDistance": round(drift.js_distance(feature.counts, live.counts), 6),
    }
