"""Registering Dataset versions from a data pipeline, without writing YAML.

    from mlops_operator.registration import register_dataset
    result = register_dataset("s3://data/churn/2026-12-01/", name="churn", rows=120_000)

or `mlops-operator dataset register <uri> --name churn` (and `dataset watch`, which a
CronJob runs with the user's own ServiceAccount and credentials: examples/dataset-watch/).

The digest is computed here, with fsspec, from the data itself: a single object's SHA-256,
or for a prefix the SHA-256 of every object's relative path, size and SHA-256, in path order.
A version is registered exactly once, with the same rules as Model versions: the number is
claimed first in the namespace's ledger ConfigMap `mlops-dataset-versions` (compare-and-swap),
then the Dataset `<name>-v<N>` is created; a rerun after a crash finds its own claim (by
digest), and numbers are never given again, even after a Dataset is deleted. Data whose digest
equals the newest version's is not registered again: that is how `watch` notices no change.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from mlops_operator import GROUP, VERSION
from mlops_operator.api import API_VERSION, DatasetSpec, dataset_object_name
from mlops_operator.builders import versions
from mlops_operator.builders.datasets import DATASET_NAME_LABEL
from mlops_operator.builders.meta import MANAGED_BY
from mlops_operator.kube import Kube, current_namespace

LEDGER = "mlops-dataset-versions"
PLURAL = "datasets"
CALL: dict[str, Any] = {"_request_timeout": (5.0, 30.0)}
CHUNK = 1 << 20
MAX_TRIES = 50
# How long a claim by another registration, with no Dataset yet, is waited for before its
# number is given up (it crashed and did not come back): a gap, never a reused number.
CLAIM_WAIT_SECONDS = 120.0
FORMATS = {".csv": "csv", ".parquet": "parquet", ".jsonl": "jsonl", ".json": "json",
           ".tfrecord": "tfrecord", ".arrow": "arrow", ".npz": "npz", ".txt": "text"}  # fmt: skip


@dataclass(frozen=True)
class Content:
    """What the data is: its digest, total size, and how many objects it holds."""

    digest: str
    size_bytes: int
    objects: int
    format: str


@dataclass(frozen=True)
class Registered:
    """The outcome: the Dataset version, and whether this call created it."""

    name: str
    version: int
    created: bool
    body: dict[str, Any] = field(repr=False)


def _sha256(fs: Any, path: str) -> str:
    digest = hashlib.sha256()
    with fs.open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def content_of(uri: str) -> Content:
    """Digest the data at `uri`: one object, or every object under a prefix (directory)."""
    fs, path = fsspec.core.url_to_fs(uri)
    if not fs.exists(path):
        raise FileNotFoundError(f"{uri}: no such object or prefix")
    if not fs.isdir(path):
        size = int(fs.size(path))
        return Content(f"sha256:{_sha256(fs, path)}", size, 1, _format_of([path]))
    root = path.rstrip("/")
    files = sorted(fs.find(root, withdirs=False))
    if not files:
        raise FileNotFoundError(f"{uri}: the prefix holds no objects")
    combined, total = hashlib.sha256(), 0
    for name in files:
        size = int(fs.size(name))
        rel = str(PurePosixPath(name).relative_to(root))
        combined.update(f"{rel}\n{size}\n{_sha256(fs, name)}\n".encode())
        total += size
    return Content(f"sha256:{combined.hexdigest()}", total, len(files), _format_of(files))


def _format_of(paths: list[str]) -> str:
    found = {FORMATS.get(PurePosixPath(p).suffix.lower()) for p in paths}
    found.discard(None)
    return found.pop() if len(found) == 1 else "unknown"  # type: ignore[return-value]


class Registry:
    """Dataset versions of one namespace, through the API server."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)

    def versions(self, name: str) -> list[dict[str, Any]]:
        listed = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, **CALL
        )
        found = [d for d in listed["items"] if d["spec"].get("datasetName") == name]
        return sorted(found, key=lambda d: int(d["spec"]["version"]))

    def ledger(self) -> dict[str, Any] | None:
        try:
            body: dict[str, Any] = self.core.read_namespaced_config_map(
                LEDGER, self.namespace, **CALL
            ).to_dict()
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return body

    def claim(self, current: dict[str, Any] | None, data: dict[str, str]) -> bool:
        """Write the ledger if unchanged since `current` was read; False if it changed."""
        rv = (current or {}).get("metadata", {}).get("resource_version")
        body = versions.ledger(self.namespace, data, rv, name=LEDGER)
        try:
            if rv:
                self.core.replace_namespaced_config_map(LEDGER, self.namespace, body, **CALL)
            else:
                self.core.create_namespaced_config_map(self.namespace, body, **CALL)
        except ApiException as err:
            if err.status == 409:
                return False
            raise
        return True

    def create(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """Create the Dataset; None if that name exists already."""
        try:
            created: dict[str, Any] = self.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, body, **CALL
            )
        except ApiException as err:
            if err.status == 409:
                return None
            raise
        return created


def build_dataset(
    namespace: str, name: str, version: int, uri: str, content: Content, extra: Mapping[str, Any],
    labels: Mapping[str, str],
) -> dict[str, Any]:  # fmt: skip
    """The Dataset object; `extra` holds the optional spec fields (camelCase)."""
    spec = DatasetSpec.model_validate(
        {"format": content.format, "sizeBytes": content.size_bytes, **extra,
         "datasetName": name, "version": version, "uri": uri, "digest": content.digest}
    )  # fmt: skip
    return {
        "apiVersion": API_VERSION,
        "kind": "Dataset",
        "metadata": {
            "name": dataset_object_name(name, version),
            "namespace": namespace,
            "labels": {
                **labels,
                DATASET_NAME_LABEL: name,
                "app.kubernetes.io/managed-by": MANAGED_BY,
            },
        },
        "spec": spec.wire(),
    }


def register(
    registry: Registry,
    name: str,
    uri: str,
    content: Content,
    extra: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
    *,
    claim_wait: float = CLAIM_WAIT_SECONDS,
) -> Registered:
    """Register `content` at `uri` as the next version of dataset `name`, exactly once.

    The ledger holds, per dataset, `<last version> <digest> pending|done`: a claim is
    `pending` from before its Dataset is created until after. A pending claim with no
    Dataset is another registration in flight (waited for, up to `claim_wait`); a done one
    whose Dataset is gone was deleted, and its number stays used.
    """
    deadline = time.monotonic() + claim_wait
    conflicts = 0
    while conflicts < MAX_TRIES:
        existing = registry.versions(name)
        if existing and _same(existing[-1], uri, content):
            body = existing[-1]
            return Registered(body["metadata"]["name"], int(body["spec"]["version"]), False, body)
        current = registry.ledger()
        data = dict((current or {}).get("data") or {})
        last, owner = versions.claim_of(data, name, LEDGER)
        digest, _, state = owner.partition(" ")
        taken = versions.taken_versions(existing, name, "datasetName")
        top = max(taken, default=0)
        if last > top and digest == content.digest:
            version = last  # our own claim, from a run that stopped before creating
        elif last > top and state != "done" and time.monotonic() < deadline:
            time.sleep(2.0)  # another registration holds the next number: let it finish
            continue
        else:
            version = versions.next_number(last, taken, name)
            claim = versions.with_claim(data, name, version, f"{content.digest} pending")
            if not registry.claim(current, claim):
                conflicts += 1  # another claim came first: read the ledger anew
                continue
        body = build_dataset(
            registry.namespace, name, version, uri, content, extra or {}, labels or {}
        )
        created = registry.create(body)
        if created is None:
            # The name exists: ours from a run that crashed after creating it, or someone
            # else's; the next pass sees it among the versions.
            conflicts += 1
            continue
        _mark_done(registry, name, version, content.digest)
        return Registered(body["metadata"]["name"], version, True, created)
    raise RuntimeError(f"could not register a new version of dataset {name}")


def _mark_done(registry: Registry, name: str, version: int, digest: str) -> None:
    """Say in the ledger that this claim's Dataset exists (unless a newer claim came)."""
    for _ in range(MAX_TRIES):
        current = registry.ledger()
        data = dict((current or {}).get("data") or {})
        if versions.claim_of(data, name, LEDGER) != (version, f"{digest} pending"):
            return
        if registry.claim(current, versions.with_claim(data, name, version, f"{digest} done")):
            return


def _same(body: dict[str, Any], uri: str, content: Content) -> bool:
    spec = body.get("spec") or {}
    return bool(spec.get("digest") == content.digest and spec.get("uri") == uri)


def register_dataset(
    uri: str,
    *,
    name: str,
    namespace: str | None = None,
    format: str | None = None,
    rows: int | None = None,
    schema: Sequence[Mapping[str, str]] | None = None,
    lineage: Mapping[str, str] | None = None,
    description: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> Registered:
    """The SDK call: digest the data at `uri` and register it as the next version of
    `name` (unless the newest version already is this data). Returns the version. A local
    path is recorded as a `file://` URI (for data on a volume the runs mount there)."""
    if "://" not in uri:
        uri = Path(uri).resolve().as_uri()
    content = content_of(uri)
    extra: dict[str, Any] = {}
    if format:
        extra["format"] = format
    if rows is not None:
        extra["rows"] = rows
    if schema:
        extra["schema"] = {"columns": [dict(c) for c in schema]}
    if lineage:
        extra["lineage"] = dict(lineage)
    if description:
        extra["description"] = description
    registry = Registry(Kube.api_client(), namespace or current_namespace())
    return register(registry, name, uri, content, extra, labels)


def parse_schema(text: str) -> list[dict[str, str]]:
    """`--schema`: JSON (a list of {name, type}) or `name:type,name:type`."""
    text = text.strip()
    if text.startswith("["):
        loaded: list[dict[str, str]] = json.loads(text)
        return loaded
    columns = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        column, sep, kind = item.partition(":")
        if not sep:
            raise ValueError(f"--schema: {item!r} is not name:type")
        columns.append({"name": column.strip(), "type": kind.strip()})
    return columns
