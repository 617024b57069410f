"""The termination-message contract: what the SDK writes, the operator reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops_operator.api.report import (
    TERMINATION_MESSAGE_LIMIT,
    ReportError,
    TrainingReport,
    parse_report,
)
from mlops_operator.sdk import hparams, report

DIGEST = "sha256:" + "a" * 64


def test_report_round_trips_through_the_parser(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    written = report(
        metrics={"accuracy": 0.97, "loss": 1},
        artifact={"uri": "s3://models/iris/1/model.joblib", "digest": DIGEST},
        path=log,
    )
    assert log.read_text() == written
    parsed = parse_report(log.read_text())
    assert parsed.metrics == {"accuracy": 0.97, "loss": 1.0}
    assert parsed.artifact.uri == "s3://models/iris/1/model.joblib"
    assert parsed.artifact.digest == DIGEST


def test_report_uses_the_env_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "log"
    monkeypatch.setenv("MLOPS_TERMINATION_LOG", str(log))
    report(metrics={}, artifact={"uri": "file:///out/model.joblib"})
    assert json.loads(log.read_text()) == {
        "metrics": {},
        "artifact": {"uri": "file:///out/model.joblib"},
    }


def test_report_over_the_kubelet_limit_is_refused(tmp_path: Path) -> None:
    metrics = {f"validation_metric_with_a_long_name_{i}": 0.123456789 for i in range(64)}
    long_uri = "s3://bucket/" + "x" * 2000
    with pytest.raises(ReportError, match="at most 4096"):
        report(metrics=metrics, artifact={"uri": long_uri, "digest": DIGEST}, path=tmp_path / "l")
    assert not (tmp_path / "l").exists(), "nothing truncated was written"


def test_a_report_at_the_limit_fits() -> None:
    message = TrainingReport.model_validate(
        {"metrics": {"m": 1.0}, "artifact": {"uri": "s3://b/" + "x" * 2000}}
    ).to_message()
    assert len(message.encode()) <= TERMINATION_MESSAGE_LIMIT


@pytest.mark.parametrize(
    ("message", "names"),
    [
        (None, "no termination message"),
        ("   ", "no termination message"),
        ("not json", "invalid training report"),
        ('{"metrics": {}}', "artifact"),
        ('{"metrics": {"acc": "high"}, "artifact": {"uri": "s3://b/m"}}', "metrics.acc"),
        ('{"artifact": {"uri": "no-scheme"}}', "artifact.uri"),
        ('{"artifact": {"uri": "s3://b/m", "digest": "md5:x"}}', "artifact.digest"),
        ('{"artifact": {"uri": "s3://b/m"}, "metric": {}}', "metric"),
    ],
)
def test_malformed_messages_name_the_problem(message: str | None, names: str) -> None:
    with pytest.raises(ReportError, match=names):
        parse_report(message)


def test_hparams_reads_the_operator_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_HPARAMS", '{"lr": "0.1", "epochs": "3"}')
    assert hparams() == {"lr": "0.1", "epochs": "3"}
    monkeypatch.delenv("MLOPS_HPARAMS")
    assert hparams() == {}
