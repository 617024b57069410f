"""The read cache: the latest known body of each object, fed by watch events and by our
own writes' answers (as client-go's informers are), with echo detection (a watch event that
only shows our own latest write) and tombstones (a LIST answered before a deletion cannot
bring the object back)."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

Body = dict[str, Any]
MAX_TOMBSTONES = 10_000


def _newer(body: Body, than: str) -> bool:
    """Whether `body` is a later state of the object than resourceVersion `than`.

    resourceVersions are formally opaque; the API server's are etcd revisions, so when
    both are integers a smaller one is an older state (a watch event that arrives after
    we stored our own write's answer). Anything else counts as newer.
    """
    try:
        return int(body["metadata"]["resourceVersion"]) >= int(than)
    except (KeyError, ValueError):
        return True


def version_of(body: Body) -> str:
    """What changes when someone else edits the object: its generation where the server
    keeps one (status updates leave it), else its resourceVersion."""
    meta = body["metadata"]
    generation = meta.get("generation")
    return f"g{generation}" if generation is not None else f"r{meta.get('resourceVersion')}"


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# Of a training pod, what the TrainingJob controller reads: its identity and labels (its
# Job's name, the index), the worker index, its phase and each container's state (exit
# code, termination message, waiting reason).
POD_META = ("name", "namespace", "uid", "resourceVersion", "labels", "deletionTimestamp")
POD_ANNOTATIONS = ("batch.kubernetes.io/job-completion-index",)


def _slim_meta(meta: Body) -> Body:
    """Metadata without what is large and never read: managedFields, and kubectl's copy of
    the whole applied manifest."""
    meta = {k: v for k, v in meta.items() if k != "managedFields"}
    annotations = meta.get("annotations")
    if annotations and LAST_APPLIED in annotations:
        meta["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    return meta


def _slim_pod(body: Body) -> Body:
    meta = body.get("metadata") or {}
    kept = {k: meta[k] for k in POD_META if k in meta}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k in POD_ANNOTATIONS}
    if annotations:
        kept["annotations"] = annotations
    status = body.get("status") or {}
    containers = [{"name": c.get("name"), "state": c.get("state") or {}}
                  for c in status.get("containerStatuses") or []]  # fmt: skip
    return {
        "metadata": kept,
        "status": {"phase": status.get("phase"), "containerStatuses": containers},
    }


def _slim(kind: str, body: Body) -> Body:
    """What the cache keeps of a body: the fields the controllers read, without what is
    large and never read (managedFields, last-applied; a Job's pod template; all of a pod
    but its identity and its containers' states). Built anew, so kopf's body is untouched."""
    if kind == "pods":
        return _slim_pod(body)
    body = {**body, "metadata": _slim_meta(body.get("metadata") or {})}
    if kind == "jobs" and "template" in (body.get("spec") or {}):
        body["spec"] = {k: v for k, v in body["spec"].items() if k != "template"}
    return body


class Cache:
    """The latest known body of each object we read, by kind ("jobs", "models", ...),
    namespace and name; which namespaces of a kind it holds completely; and, for kinds in
    `index`, the names by the value of one label (the pods of a Job)."""

    def __init__(self, index: Mapping[str, str] | None = None) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, dict[tuple[str, str], Body]] = defaultdict(dict)
        self._index_label = dict(index or {})
        self._index: dict[str, dict[tuple[str, str], set[str]]] = defaultdict(dict)
        self._complete: set[tuple[str, str]] = set()
        # resourceVersion of our own latest write to each object: its watch event is an echo.
        self._written: dict[tuple[str, str, str], str] = {}
        # Recently deleted objects (resourceVersion of the deletion), so that a LIST answered
        # before the deletion cannot bring one back; the oldest are dropped past a bound.
        self._gone: dict[tuple[str, str, str], str] = {}

    def observe(self, kind: str, body: Body, *, ours: bool = False) -> None:
        """Store a body seen in a watch event or returned by a write (`ours`)."""
        meta = body["metadata"]
        key = (meta.get("namespace") or "", meta["name"])
        with self._lock:
            gone = self._gone.get((kind, *key))
            if gone is not None:
                if not _newer(body, gone) or body["metadata"].get("resourceVersion") == gone:
                    return
                del self._gone[(kind, *key)]  # created again
            known = self._objects[kind].get(key)
            if known is None or _newer(body, known["metadata"].get("resourceVersion", "")):
                self._objects[kind][key] = _slim(kind, body)
                self._reindex(kind, key, known, body)
            if ours:
                self._written[(kind, *key)] = meta.get("resourceVersion", "")

    def forget(self, kind: str, namespace: str, name: str, version: str = "") -> None:
        """The object is gone: a DELETED event (with its resourceVersion), or our delete."""
        with self._lock:
            known = self._objects[kind].pop((namespace, name), None)
            self._reindex(kind, (namespace, name), known, None)
            self._written.pop((kind, namespace, name), None)
            if version:
                self._gone[(kind, namespace, name)] = version
                if len(self._gone) > MAX_TOMBSTONES:
                    del self._gone[next(iter(self._gone))]

    def _reindex(self, kind: str, key: tuple[str, str], old: Body | None, new: Body | None) -> None:
        label = self._index_label.get(kind)
        if label is None:
            return
        index = self._index[kind]
        namespace, name = key
        for body, add in ((old, False), (new, True)):
            value = ((body or {}).get("metadata", {}).get("labels") or {}).get(label)
            if value is None:
                continue
            names = index.setdefault((namespace, value), set())
            if add:
                names.add(name)
            else:
                names.discard(name)
                if not names:
                    del index[(namespace, value)]

    def labelled(self, kind: str, namespace: str, value: str) -> list[Body]:
        """The objects of an indexed kind whose index label has this value."""
        with self._lock:
            names = self._index[kind].get((namespace, value)) or set()
            return [self._objects[kind][(namespace, name)] for name in sorted(names)]

    def is_echo(self, kind: str, body: Body) -> bool:
        """Whether a watch event only shows our own latest write (nothing to react to)."""
        meta = body["metadata"]
        key = (kind, meta.get("namespace") or "", meta["name"])
        with self._lock:
            return bool(self._written.get(key) == meta.get("resourceVersion"))

    def get(self, kind: str, namespace: str, name: str) -> Body | None:
        with self._lock:
            return self._objects[kind].get((namespace, name))

    def keys(self, kind: str) -> list[tuple[str, str]]:
        """(namespace, name) of every object of a kind the cache holds."""
        with self._lock:
            return sorted(self._objects[kind])

    def items(self, kind: str, namespace: str) -> list[Body] | None:
        """Every object of a kind in a namespace, or None if the cache was never filled
        for it (see `fill`)."""
        with self._lock:
            if (kind, namespace) not in self._complete:
                return None
            return [body for (ns, _), body in self._objects[kind].items() if ns == namespace]

    def fill(self, kind: str, namespace: str, listed: list[Body]) -> None:
        """A LIST's answer: from now on the watch events keep this namespace complete
        (kopf's watch started with the operator, before this LIST)."""
        for body in listed:
            self.observe(kind, body)
        with self._lock:
            self._complete.add((kind, namespace))
