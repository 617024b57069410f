"""The metrics table of docs/metrics.md, read as data: what the tests hold the operator's
metrics and the alerting rules to."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METRICS_DOC = ROOT / "docs" / "metrics.md"
HEADER = "| metric | type | labels | meaning |"
MONITOR_HEADER = "| monitor metric | type | labels | meaning |"


@dataclass(frozen=True)
class Documented:
    name: str  # as exposed: counters with `_total`; a `*` stands for any suffix
    type: str  # counter, gauge, histogram; "" for the client's default collectors
    labels: frozenset[str] | None  # None: not listed (the default collectors)

    def series_names(self) -> dict[str, frozenset[str]]:
        """The series names this metric is exposed as, each with its label names."""
        labels = self.labels or frozenset()
        if self.type == "histogram":
            return {
                f"{self.name}_bucket": labels | {"le"},
                f"{self.name}_sum": labels,
                f"{self.name}_count": labels,
            }
        return {self.name: labels}


def _without_parentheses(text: str) -> str:
    """The labels cell without its value lists, "`kind`, `result` (`success`, `error`)"."""
    while True:
        shorter = re.sub(r"\([^()]*\)", "", text)
        if shorter == text:
            return text
        text = shorter


def documented_metrics(doc: Path = METRICS_DOC, header: str = HEADER) -> list[Documented]:
    """The operator's metrics table, or with `header=MONITOR_HEADER` the serving monitor's."""
    lines = doc.read_text().splitlines()
    start = lines.index(header) + 2  # past the header and its |---| line
    found: list[Documented] = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        name_cell, type_cell, labels_cell, _ = (c.strip() for c in line.strip("|").split("|", 3))
        names = re.findall(r"`([a-z_:*]+)`", name_cell)
        labels = (
            frozenset(re.findall(r"`([a-z_]+)`", _without_parentheses(labels_cell)))
            if type_cell
            else None
        )
        found.extend(Documented(name, type_cell, labels) for name in names)
    return found
