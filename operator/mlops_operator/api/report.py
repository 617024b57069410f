"""The training container's report: one JSON object in its termination message.

DESIGN.md section 3: on exit the container writes
`{"metrics": {...}, "artifact": {"uri": ..., "digest": ...}}` to
/dev/termination-log (the kubelet keeps at most 4 KiB). The SDK writes it with
`TrainingReport`; the operator reads it back with `parse_report`, so both
sides share one definition.
"""

from __future__ import annotations

from pydantic import Field, ValidationError

from mlops_operator.api.common import ApiModel, Digest, Metrics, Uri
from mlops_operator.api.reference import ReferenceFile

# The kubelet truncates termination messages beyond this many bytes.
TERMINATION_MESSAGE_LIMIT = 4096


class ReportError(ValueError):
    """The termination message is not a valid training report."""


class ArtifactReport(ApiModel):
    uri: Uri = Field(description="Where the trained artifact was written.")
    digest: Digest | None = Field(
        default=None, description="Content digest of the artifact, `sha256:<hex>`."
    )
    reference: ReferenceFile | None = Field(
        default=None, description="The training data's profile, for drift monitoring."
    )


class TrainingReport(ApiModel):
    metrics: Metrics = Field(
        default_factory=dict, description="Final metrics of the run, name to number."
    )
    artifact: ArtifactReport = Field(description="The artifact the run produced.")

    def to_message(self) -> str:
        """Compact JSON, checked against the kubelet's size limit."""
        message = self.model_dump_json(by_alias=True, exclude_none=True)
        size = len(message.encode())
        if size > TERMINATION_MESSAGE_LIMIT:
            raise ReportError(
                f"report is {size} bytes; the termination message holds at most "
                f"{TERMINATION_MESSAGE_LIMIT} (report fewer metrics)"
            )
        return message


def parse_report(message: str | None) -> TrainingReport:
    """Read a termination message; every problem becomes one clear ReportError."""
    if not message or not message.strip():
        raise ReportError("the training container wrote no termination message")
    try:
        return TrainingReport.model_validate_json(message)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in err.errors()
        )
        raise ReportError(f"invalid training report: {problems}") from None
