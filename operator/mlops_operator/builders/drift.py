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


def _same_bins(expected: Sequence[int], actual: Sequence[int]) -> None:
    if len(expected) != len(actual):
        raise ValueError(f"{len(actual)} live bins against {len(expected)} reference bins")
