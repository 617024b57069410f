"""What we last server-side-applied to each child, so an apply that would change nothing is
not sent: the same manifest, onto an object that has not changed since (its generation for
kinds with a spec the server versions, else its resourceVersion) and still carries our labels.
A deleted or edited child no longer matches, and is put back."""

from __future__ import annotations

import hashlib
import json

from mlops_operator.kube.cache import Body, version_of

Key = tuple[str, str, str]  # (plural, namespace, name)


def digest_of(manifest: Body) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


class Applied:
    def __init__(self) -> None:
        self._last: dict[Key, tuple[str, str]] = {}

    def unchanged(self, key: Key, manifest: Body, live: Body | None) -> bool:
        """Whether applying `manifest` onto `live` (the cache's copy) would change nothing."""
        if live is None or self._last.get(key) != (digest_of(manifest), version_of(live)):
            return False
        labels = live["metadata"].get("labels") or {}
        wanted = manifest["metadata"].get("labels") or {}
        return all(labels.get(k) == v for k, v in wanted.items())

    def record(self, key: Key, manifest: Body, written: Body) -> None:
        self._last[key] = (digest_of(manifest), version_of(written))

    def forget(self, key: Key) -> None:
        self._last.pop(key, None)
