"""`mlops-operator storage-init SRC DEST`: fetch a model artifact before the runtime starts.

Runs as the init container of every serving pod. fsspec speaks s3://, gs://, https://
(with s3fs, gcsfs or aiohttp installed) and local paths, which is how a `pvc://`
artifact arrives: the PVC is mounted and its path passed here.
"""

from __future__ import annotations

from pathlib import Path

import fsspec


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
