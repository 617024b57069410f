"""What `dataset register` computes from the data itself: the digest rules, with fsspec on
local files (the same code reads s3:// and gs://)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mlops_operator.registration import build_dataset, content_of, parse_schema


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_one_object_is_its_own_sha256(tmp_path: Path) -> None:
    data = b"a,b\n1,2\n"
    (tmp_path / "iris.csv").write_bytes(data)
    content = content_of(str(tmp_path / "iris.csv"))
    assert content.digest == f"sha256:{sha(data)}"
    assert (content.size_bytes, content.objects, content.format) == (8, 1, "csv")


def test_a_prefix_digests_every_object_by_relative_path_in_order(tmp_path: Path) -> None:
    (tmp_path / "part").mkdir()
    (tmp_path / "part" / "b.parquet").write_bytes(b"BB")
    (tmp_path / "a.parquet").write_bytes(b"A")
    expected = hashlib.sha256(
        f"a.parquet\n1\n{sha(b'A')}\npart/b.parquet\n2\n{sha(b'BB')}\n".encode()
    ).hexdigest()
    content = content_of(str(tmp_path))
    assert content.digest == f"sha256:{expected}"
    assert (content.size_bytes, content.objects, content.format) == (3, 2, "parquet")
    # The same content read through a URL, or with a trailing slash, is the same data.
    assert content_of(f"file://{tmp_path}/").digest == content.digest


def test_renaming_or_changing_an_object_changes_the_digest(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_bytes(b"x")
    first = content_of(str(tmp_path)).digest
    (tmp_path / "a.csv").rename(tmp_path / "b.csv")
    renamed = content_of(str(tmp_path)).digest
    (tmp_path / "b.csv").write_bytes(b"y")
    assert len({first, renamed, content_of(str(tmp_path)).digest}) == 3


def test_mixed_or_unknown_formats_are_unknown(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_bytes(b"x")
    (tmp_path / "b.parquet").write_bytes(b"y")
    assert content_of(str(tmp_path)).format == "unknown"


def test_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such object or prefix"):
        content_of(str(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no objects"):
        content_of(str(tmp_path / "empty"))


def test_the_dataset_object_is_valid_and_named_after_its_version(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_bytes(b"x,y\n")
    content = content_of(str(tmp_path / "d.csv"))
    extra = {"rows": 1, "schema": {"columns": parse_schema("x:int64, y:string")}}
    body = build_dataset("ml", "churn", 4, "s3://data/d.csv", content, extra, {"team": "a"})
    assert body["metadata"]["name"] == "churn-v4"
    assert body["metadata"]["labels"]["mlops.seed.dev/dataset-name"] == "churn"
    assert body["spec"]["digest"] == content.digest
    assert body["spec"]["schema"]["columns"][1] == {"name": "y", "type": "string"}
    with pytest.raises(ValueError, match="rows"):
        build_dataset("ml", "churn", 4, "s3://data/d.csv", content, {"rows": -1}, {})


def test_schema_as_pairs_or_json() -> None:
    assert parse_schema('[{"name": "a", "type": "int"}]') == [{"name": "a", "type": "int"}]
    with pytest.raises(ValueError, match="not name:type"):
        parse_schema("a:int,b")
