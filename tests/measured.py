"""Figures a test suite measures on the way (no test asserts a time): one JSON line per
test in a file, and a section at the end of pytest's report that shows them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class Measured:
    """The file holds this session's figures only: the first write replaces what an earlier
    session left (a sessionstart hook would not run in a conftest below the rootdir)."""

    def __init__(self, path: Path, title: str) -> None:
        self.path, self.title = path, title
        self._written = False

    def write(self, test: str, **figures: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a" if self._written else "w") as out:
            out.write(json.dumps({"test": test, **figures}) + "\n")
        self._written = True

    def report(self, terminalreporter: Any) -> None:
        if not self._written:
            return
        terminalreporter.section(self.title)
        for line in self.path.read_text().splitlines():
            terminalreporter.write_line(line)
