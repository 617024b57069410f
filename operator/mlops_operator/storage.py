"""`mlops-operator storage-init SRC DEST`: fetch a model artifact before the runtime starts.

Runs as the init container of every serving pod. fsspec speaks s3://, gs://, https://
(with s3fs, gcsfs or aiohttp installed) and local paths, which is how a `pvc://`
artifact arrives: the PVC is mounted and its path passed here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

import fsspec

from mlops_operator.api.reference import REFERENCE_FILE

# The kubelet reads a container's termination message from here (the operator shows it in
# a failed rollout's status); overridable for local runs, as for the training SDK.
TERMINATION_LOG_ENV = "MLOPS_TERMINATION_LOG"
DEFAULT_TERMINATION_LOG = "/dev/termination-log"


def fetch(source: str, destination: str) -> list[Path]:
    """Copy a file, or every file under a directory, into `destination`; returns what it wrote."""
    fs, path = fsspec.core.url_to_fs(source)
    dest = Path(destination)
    dest.mkdir(parents=True, exist_ok=True)
    if not fs.exists(path):
        raise FileNotFoundError(f"{source}: no such artifact")
    if fs.isdir(path):
        fs.get(path.rstrip("/") + "/", str(dest), recursive=True)
    else:
        fs.get(path, str(dest / Path(path).name))
    return sorted(p for p in dest.rglob("*") if p.is_file())


def fetch_reference(source: str, digest: str, directory: str) -> Path:
    """Copy the reference profile into `directory` as reference.json, if its digest is the
    one the Model recorded (a Model is immutable: so is what its monitor compares with)."""
    with fsspec.open(source, "rb") as f:
        data = f.read()
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise ValueError(f"{source} has digest {actual}, the Model says {digest}")
    target = Path(directory) / REFERENCE_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def failure_message(source: str, err: BaseException) -> str:
    """What storage-init reports when it cannot fetch: the artifact and the error, one line."""
    detail = " ".join(str(err).split()) or type(err).__name__
    return f"cannot fetch {source}: {type(err).__name__}: {detail}"[:1024]


def write_termination_message(message: str) -> None:
    path = Path(os.environ.get(TERMINATION_LOG_ENV) or DEFAULT_TERMINATION_LOG)
    with contextlib.suppress(OSError):  # not in a container: stderr has it
        path.write_text(message)
