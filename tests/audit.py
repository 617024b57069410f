"""What the operator asked of the API server, as the server itself recorded it: the local
cluster's audit policy (tools/cluster/audit-policy.yaml) logs every request of the
operator's ServiceAccount, metadata only, and nothing else."""

from __future__ import annotations

import json
from collections import Counter

from tests.fixtures import local_cluster


class AuditLog:
    """The requests logged from the moment it was made."""

    def __init__(self) -> None:
        self._start = {path: path.stat().st_size for path in local_cluster.audit_logs()}

    def _lines(self) -> list[str]:
        lines = []
        for path in local_cluster.audit_logs():
            start = self._start.get(path, 0)
            with path.open() as log:
                if path.stat().st_size >= start:  # else rotated since: read it all
                    log.seek(start)
                lines += log.readlines()
        return lines

    def requests(
        self, namespace: str, *, skip: tuple[str, ...] = ("list", "watch")
    ) -> Counter[str]:
        """Requests in `namespace`, by "verb resource[/subresource]" (watches and LISTs,
        made once per namespace and kind rather than per object, are left out by default)."""
        counts: Counter[str] = Counter()
        for line in self._lines():
            if f'"namespace":"{namespace}"' not in line:
                continue
            event = json.loads(line)
            ref = event.get("objectRef") or {}
            counted = "ResponseStarted" if event["verb"] == "watch" else "ResponseComplete"
            if event["stage"] != counted or ref.get("namespace") != namespace:
                continue
            if event["verb"] in skip:
                continue
            sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
            counts[f"{event['verb']} {ref.get('resource')}{sub}"] += 1
        return counts
