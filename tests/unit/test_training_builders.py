"""Pure builders of the TrainingJob controller: Job, Service, Model, status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mlops_operator.api import TrainingJob, TrainingJobStatus
from mlops_operator.api.common import ResolvedDataset
from mlops_operator.api.report import TrainingReport
from mlops_operator.builders import registry, training, versions
from mlops_operator.builders.conditions import set_condition, set_readiness
from mlops_operator.builders.meta import owned_by
from mlops_operator.builders.training_status import (
    JobObservation,
    Outcome,
    attempts,
    desired_suspend,
    is_finished,
    job_finished,
    lifecycle_events,
    name_conflict,
    observe,
    observed_at,
    releases_pods,
    should_restart,
    training_status,
)
from tests.readiness import summary

UID = "0123abcd-0000-4000-8000-000000000000"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def tj(**spec: Any) -> TrainingJob:
    return TrainingJob.model_validate(
        {
            "metadata": {"name": "iris", "namespace": "ml", "uid": UID, "generation": 2},
            "spec": {
                "image": "train:1",
                "output": {"uri": "s3://b/iris/", "modelName": "iris", "format": "sklearn",
                           "keyMetric": "accuracy"},
                **spec,
            },
        }
    )  # fmt: skip


def env(job: dict[str, Any]) -> dict[str, Any]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def job_status(*conditions: tuple[str, str], **status: Any) -> dict[str, Any]:
    listed = [{"type": t, "status": "True", "reason": r, "message": f"{r}!"} for t, r in conditions]
    return {"metadata": {"name": "iris"}, "spec": {}, "status": {"conditions": listed, **status}}


def pod(phase: str, index: int = 0, **state: Any) -> dict[str, Any]:
    annotations = {training.INDEX_ANNOTATION: str(index)}
    return {
        "metadata": {"name": f"iris-{index}", "annotations": annotations},
        "status": {"phase": phase, "containerStatuses": [{"name": "trainer", "state": state}]},
    }


# --- Job -----------------------------------------------------------------------------


def test_single_node_job_carries_the_contract_and_passes_restricted() -> None:
    job = training.build_job(tj(backoffLimit=3, activeDeadlineSeconds=60,
                                hyperparameters={"lr": "0.1"}))  # fmt: skip
    assert job["metadata"]["name"] == "iris"
    assert job["metadata"]["ownerReferences"][0]["uid"] == UID
    spec = job["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"], spec["suspend"]) == (3, 60, False)
    assert "completionMode" not in spec
    pod_spec = spec["template"]["spec"]
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert pod_spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod_spec["containers"][0]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod_spec["automountServiceAccountToken"] is False
    assert env(job) == {
        "MLOPS_RUN_ID": UID,
        "MLOPS_MODEL_NAME": "iris",
        "MLOPS_OUTPUT_URI": "s3://b/iris/iris-0123abcd",
        "MLOPS_HPARAMS": '{"lr": "0.1"}',
    }


def test_user_env_scheduling_and_pod_metadata_reach_the_pod() -> None:
    job = training.build_job(
        tj(
            env=[{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
            scheduling={"nodeSelector": {"pool": "gpu"}, "priorityClassName": "high"},
            podMetadata={"labels": {"team": "a"}, "annotations": {"note": "x"}},
            serviceAccountName="trainer",
        )
    )
    template = job["spec"]["template"]
    assert env(job)["TOKEN"] == {"secretKeyRef": {"name": "s", "key": "k"}}
    assert template["spec"]["nodeSelector"] == {"pool": "gpu"}
    assert template["spec"]["priorityClassName"] == "high"
    assert template["spec"]["serviceAccountName"] == "trainer"
    assert template["spec"]["automountServiceAccountToken"] is True
    assert template["metadata"]["labels"]["team"] == "a"
    assert template["metadata"]["labels"]["mlops.seed.dev/trainingjob"] == "iris"
    assert template["metadata"]["annotations"] == {"note": "x"}


def test_multi_node_job_is_indexed_and_fails_as_a_whole() -> None:
    job = training.build_job(tj(nodes=4, backoffLimit=2), attempt=2)
    spec = job["spec"]
    assert job["metadata"]["name"] == "iris-2"
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 4, 4)
    assert spec["backoffLimit"] == 0, "the operator restarts the whole run, not the Job"
    actions = [rule["action"] for rule in spec["podFailurePolicy"]["rules"]]
    assert actions == ["Ignore", "FailJob"]
    assert spec["template"]["spec"]["subdomain"] == "iris"
    variables = env(job)
    assert variables["MASTER_ADDR"] == "iris-2-0.iris.ml.svc"
    assert variables["WORLD_SIZE"] == "4"
    assert variables["RANK"]["fieldRef"]["fieldPath"].endswith(f"['{training.INDEX_ANNOTATION}']")
    service = training.build_service(tj(nodes=4))
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True


def test_queue_name_starts_suspended_with_the_kueue_label() -> None:
    job = training.build_job(tj(queueName="team-a"))
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"][training.KUEUE_QUEUE_LABEL] == "team-a"


@pytest.mark.parametrize(("job", "attempt"), [("iris", 1), ("iris-2", 2), ("iris-12", 12)])
def test_attempt_of_inverts_job_name(job: str, attempt: int) -> None:
    assert training.attempt_of(tj(), job) == attempt
    assert training.job_name(tj(), attempt) == job


# --- observing the Job ---------------------------------------------------------------


def test_observe_success_reads_index_zero_report() -> None:
    pods = [
        pod("Succeeded", 1, terminated={"message": "worker-1"}),
        pod("Succeeded", 0, terminated={"message": "worker-0"}),
    ]
    seen = observe(job_status(("Complete", "Completed")), pods)
    assert seen is not None
    assert (seen.phase, seen.report_message, seen.report_pod) == ("Succeeded", "worker-0", "iris-0")


def test_success_criteria_met_is_already_success() -> None:
    """Kubernetes 1.31+ says SuccessCriteriaMet before Complete: the run is over then."""
    done = {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": "T1"}
    job = {"metadata": {"name": "iris"}, "spec": {}, "status": {"conditions": [done]}}
    assert job_finished(job)
    seen = observe(job, [pod("Succeeded", terminated={"message": "report"})])
    assert seen is not None
    assert (seen.phase, seen.report_message, seen.completion_time) == ("Succeeded", "report", "T1")


def test_failure_target_waits_for_failed() -> None:
    """FailureTarget comes before the Job's failed count is final (attempts): not yet."""
    job = job_status(("FailureTarget", "BackoffLimitExceeded"), active=0)
    assert not job_finished(job)
    seen = observe(job, [])
    assert seen is not None
    assert seen.phase == "Pending"


def test_observe_failure_takes_the_latest_exit_code_and_message() -> None:
    pods = [
        pod("Failed", terminated={"exitCode": 2, "message": "old", "finishedAt": "T00:00"}),
        pod("Failed", terminated={"exitCode": 3, "message": "new", "finishedAt": "T00:01"}),
    ]
    seen = observe(job_status(("Failed", "BackoffLimitExceeded")), pods)
    assert seen is not None
    assert seen.failure is not None
    assert (seen.failure.reason, seen.failure.exit_code, seen.failure.message) == (
        "BackoffLimitExceeded", 3, "new",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("job_reason", "terminated_reason", "expected"),
    [
        ("DeadlineExceeded", "Error", "DeadlineExceeded"),
        ("BackoffLimitExceeded", "OOMKilled", "OOMKilled"),
        ("PodFailurePolicy", "Error", "BackoffLimitExceeded"),
    ],
)
def test_failure_reasons(job_reason: str, terminated_reason: str, expected: str) -> None:
    pods = [pod("Failed", terminated={"exitCode": 1, "reason": terminated_reason})]
    seen = observe(job_status(("Failed", job_reason)), pods)
    assert seen is not None
    assert seen.failure is not None
    assert seen.failure.reason == expected


def test_observe_image_pull_backoff_fails_but_a_first_pull_error_waits() -> None:
    waiting = observe(job_status(active=1), [pod("Pending", waiting={"reason": "ErrImagePull"})])
    assert waiting is not None
    assert waiting.phase == "Pending"
    stuck = [pod("Pending", waiting={"reason": "ImagePullBackOff", "message": "not found"})]
    failed = observe(job_status(active=1), stuck)
    assert failed is not None
    assert failed.failure is not None
    assert (failed.phase, failed.failure.reason) == ("Failed", "ImagePullFailed")
    assert "not found" in failed.failure.message


def test_observe_running_pending_suspended_and_missing() -> None:
    running = observe(job_status(active=2, ready=1), [])
    assert running is not None
    assert running.phase == "Running"
    pending = observe(job_status(active=1, ready=0), [])
    assert pending is not None
    assert pending.phase == "Pending"
    suspended = observe(job_status(("Suspended", "JobSuspended")), [])
    assert suspended is not None
    assert suspended.phase == "Suspended"
    assert observe(None, []) is None


# --- status --------------------------------------------------------------------------


def registered_outcome() -> Outcome:
    report = TrainingReport.model_validate(
        {"metrics": {"accuracy": 0.9512, "loss": 0.2}, "artifact": {"uri": "s3://b/m"}}
    )
    return Outcome(registered_model="iris-v3", report=report)


def test_succeeded_and_registered_is_ready() -> None:
    seen = observe(job_status(("Complete", "Completed"), startTime="2026-11-26T11:00:00Z"), [])
    status = training_status(tj(), seen, job_name="iris", attempts=1,
                             outcome=registered_outcome(), now=NOW)  # fmt: skip
    assert status.phase == "Succeeded"
    assert status.registered_model == "iris-v3"
    assert status.key_metric == "accuracy=0.9512"
    assert status.observed_generation == 2
    assert status.start_time == datetime(2026, 11, 26, 11, 0, tzinfo=UTC)
    assert status.completion_time == NOW
    by_type = {c.type: (c.status, c.reason) for c in status.conditions}
    assert by_type == {
        "Running": ("False", "Succeeded"),
        "Succeeded": ("True", "Succeeded"),
        "ModelRegistered": ("True", "ModelRegistered"),
        "Ready": ("True", "ModelRegistered"),
    }
    assert is_finished(status)


def test_output_invalid_is_a_terminal_failure() -> None:
    """A run that produced no Model did not succeed: Failed and Stalled, so Flux and Argo CD
    show it failed, even after a pass that saw the Job succeed and began registering."""
    seen = observe(job_status(("Complete", "Completed")), [])
    registering = training_status(tj(), seen, job_name="iris", attempts=1, outcome=None, now=NOW)
    assert registering.phase == "Succeeded"
    outcome = Outcome(output_error="the training container wrote no termination message")
    status = training_status(
        tj().model_copy(update={"status": registering}),
        seen,
        job_name="iris",
        attempts=1,
        outcome=outcome,
        now=NOW,
    )
    assert status.phase == "Failed"
    assert status.failure is not None
    assert status.failure.reason == "OutputInvalid"
    by_type = {c.type: (c.status, c.reason) for c in status.conditions}
    assert by_type == {
        "Running": ("False", "OutputInvalid"),
        "Succeeded": ("False", "OutputInvalid"),
        "Failed": ("True", "OutputInvalid"),
        "ModelRegistered": ("False", "OutputInvalid"),
        "Ready": ("False", "OutputInvalid"),
        "Stalled": ("True", "OutputInvalid"),
    }
    assert "no termination message" in status.failure.message
    assert is_finished(status), "no retry: the output will not change"
    events = lifecycle_events(registering, status)
    assert [(e.type, e.reason) for e in events] == [("Warning", "OutputInvalid")]


def test_a_vanished_job_is_job_deleted() -> None:
    status = training_status(tj(), None, job_name="iris", attempts=1, outcome=None, now=NOW)
    assert status.phase == "Failed"
    assert status.failure is not None
    assert status.failure.reason == "JobDeleted"
    first = training_status(tj(), None, job_name=None, attempts=0, outcome=None, now=NOW)
    assert first.phase == "Pending", "no Job yet is not a deleted Job"


def test_transition_time_moves_only_when_the_status_flips() -> None:
    later = NOW + timedelta(minutes=5)
    conditions = set_condition([], "Ready", False, "Pending", "a", generation=1, now=NOW)
    same = set_condition(conditions, "Ready", False, "Running", "b", generation=2, now=later)
    assert same[0].last_transition_time == NOW
    assert (same[0].reason, same[0].observed_generation) == ("Running", 2)
    flipped = set_condition(same, "Ready", True, "Done", "c", generation=2, now=later)
    assert flipped[0].last_transition_time == later
    assert len(flipped) == 1


def test_lifecycle_events_fire_once_per_transition() -> None:
    seen = observe(job_status(("Complete", "Completed")), [])
    running = training_status(tj(), observe(job_status(active=1, ready=1), []), job_name="iris",
                              attempts=1, outcome=None, now=NOW)  # fmt: skip
    done = training_status(tj().model_copy(update={"status": running}), seen, job_name="iris",
                           attempts=1, outcome=registered_outcome(), now=NOW)  # fmt: skip
    events = lifecycle_events(running, done)
    assert [e.reason for e in events] == ["ModelRegistered"], "one Event says both"
    assert events[0].message == "training succeeded; registered Model iris-v3 (accuracy=0.9512)"
    assert lifecycle_events(done, done) == []


def test_a_run_costs_three_status_writes_and_one_event() -> None:
    """Created, Running, registered: a pod being created (the Job's active count and
    startTime) changes nothing a user acts on, so it writes no status of its own, and only
    the outcome is an Event (the Job's name and the start of running are in the status)."""
    created = training_status(tj(), observe(job_status(), []), job_name="iris", attempts=1,
                              outcome=None, now=NOW)  # fmt: skip
    started = {"active": 1, "startTime": "2026-12-02T10:00:00Z"}
    pod_made = training_status(
        tj().model_copy(update={"status": created}),
        observe(job_status(**started), []),
        job_name="iris", attempts=1, outcome=None, now=NOW + timedelta(seconds=1),
    )  # fmt: skip
    assert pod_made.wire() == created.wire(), "no write for a pod that is not running yet"
    running = training_status(
        tj().model_copy(update={"status": created}),
        observe(job_status(**started, ready=1), []),
        job_name="iris", attempts=1, outcome=None, now=NOW + timedelta(seconds=2),
    )  # fmt: skip
    assert running.phase == "Running"
    assert running.start_time == datetime(2026, 12, 2, 10, tzinfo=UTC)
    seen = observe(job_status(("Complete", "Completed"), **started), [])
    done = training_status(tj().model_copy(update={"status": running}), seen, job_name="iris",
                           attempts=1, outcome=registered_outcome(), now=NOW)  # fmt: skip
    assert done.start_time == running.start_time
    events = [lifecycle_events(a, b) for a, b in ((TrainingJobStatus(), created),
                                                  (created, running), (running, done))]  # fmt: skip
    assert [[e.reason for e in each] for each in events] == [[], [], ["ModelRegistered"]]


# --- decisions -----------------------------------------------------------------------


def test_desired_suspend_leaves_kueue_to_unsuspend() -> None:
    running = {"spec": {"suspend": False}, "status": {}}
    suspended = {"spec": {"suspend": True}, "status": {}}
    assert desired_suspend(tj(suspend=True), running) is True
    assert desired_suspend(tj(suspend=False), suspended) is False
    assert desired_suspend(tj(suspend=False, queueName="q"), suspended) is None
    assert desired_suspend(tj(suspend=True), suspended) is None


def test_whole_run_restarts_only_for_several_nodes_while_retries_last() -> None:
    failed = observe(job_status(("Failed", "PodFailurePolicy")), [])
    assert should_restart(tj(nodes=2, backoffLimit=1), failed, attempt=1)
    assert not should_restart(tj(nodes=2, backoffLimit=1), failed, attempt=2)
    assert not should_restart(tj(nodes=1, backoffLimit=1), failed, attempt=1)
    deadline = observe(job_status(("Failed", "DeadlineExceeded")), [])
    assert not should_restart(tj(nodes=2, backoffLimit=3), deadline, attempt=1)


def test_attempts_count_pods_for_one_node_and_jobs_for_several() -> None:
    seen = observe(job_status(active=1, failed=2), [])
    assert attempts(tj(), seen, attempt=1) == 3
    assert attempts(tj(nodes=2), seen, attempt=2) == 2


# --- registry ------------------------------------------------------------------------


def test_build_model_names_the_version_and_records_lineage() -> None:
    report = registered_outcome().report
    assert report is not None
    read = ResolvedDataset(uri="s3://d/iris.csv", name="iris-data", version=3)
    model = registry.build_model(tj(dataset={"uri": "s3://d/iris.csv"}), report, 7, read)
    assert model["metadata"]["name"] == "iris-v7"
    assert model["metadata"]["labels"][registry.TRAININGJOB_UID_LABEL] == UID
    assert "ownerReferences" not in model["metadata"]
    spec = model["spec"]
    assert (spec["modelName"], spec["version"], spec["keyMetric"]) == ("iris", 7, "accuracy")
    assert spec["artifact"] == {"uri": "s3://b/m", "format": "sklearn"}
    assert spec["lineage"]["trainingJob"] == {"name": "iris", "uid": UID}
    assert spec["lineage"]["dataset"] == {
        "uri": "s3://d/iris.csv",
        "name": "iris-data",
        "version": 3,
    }


def test_the_reference_profile_travels_from_the_report_into_the_model() -> None:
    reference = {"uri": "s3://b/run/reference.json", "digest": "sha256:" + "b" * 64}
    report = TrainingReport.model_validate(
        {"metrics": {}, "artifact": {"uri": "s3://b/run/model.joblib", "reference": reference}}
    )
    model = registry.build_model(tj(), report, 1)
    assert model["spec"]["artifact"]["reference"] == reference


def test_next_version_and_registered_by() -> None:
    models = [
        {"metadata": {"name": "iris-v1"}, "spec": {"modelName": "iris", "version": 1}},
        {
            "metadata": {"name": "iris-v4"},
            "spec": {"modelName": "iris", "version": 4, "lineage": {"trainingJob": {"uid": UID}}},
        },
    ]
    assert versions.next_claim({}, "iris", "new", models) == (5, True)
    assert versions.next_claim({}, "iris", "new", []) == (1, True)
    assert registry.registered_by(models, UID) == "iris-v4"
    assert registry.registered_by(models, "other") is None


def test_version_numbers_are_never_given_twice() -> None:
    """The ledger remembers numbers whose Models were deleted, and a run that crashed after
    claiming a number gets that same number back."""
    ledger = versions.with_claim({}, "iris", 9, "run-a")
    assert versions.claim_of(ledger, "iris") == (9, "run-a")
    assert versions.next_claim(ledger, "iris", "run-b", []) == (10, True), "v9 was deleted"
    assert versions.next_claim(ledger, "iris", "run-a", []) == (9, False), "its own claim"
    hand_made = [{"metadata": {"name": "iris-v12"}, "spec": {"modelName": "iris", "version": 12}}]
    assert versions.next_claim(ledger, "iris", "run-b", hand_made) == (13, True)
    assert versions.next_claim(ledger, "other-model", "run-b", []) == (1, True)
    cm = versions.ledger("ml", ledger, "42")
    assert cm["metadata"]["resourceVersion"] == "42", "an update fails if it changed meanwhile"
    assert "resourceVersion" not in versions.ledger("ml", ledger, None)["metadata"]


def test_only_a_job_we_control_is_ours() -> None:
    ours = training.build_job(tj())
    assert owned_by(ours, UID)
    assert not owned_by(ours, "someone-else")
    assert not owned_by({"metadata": {"name": "iris"}}, UID)
    theirs = {"metadata": {"name": "iris", "managedFields": [{"manager": "kubectl-create"}]}}
    conflict = training_status(tj(), name_conflict(theirs, "iris"), job_name=None, attempts=1,
                               outcome=None, now=NOW)  # fmt: skip
    assert conflict.failure is not None
    assert (conflict.phase, conflict.failure.reason) == ("Failed", "JobNameConflict")
    assert conflict.failure.message.startswith(
        "Job iris already exists and is not this TrainingJob's (controlled by nothing,"
        " written by kubectl-create); nothing of it is changed."
    )
    assert conflict.job_name is None


def test_an_image_pull_failure_releases_its_pods_once() -> None:
    stuck = [pod("Pending", waiting={"reason": "ImagePullBackOff"})]
    failed = training_status(tj(), observe(job_status(active=1), stuck), job_name="iris",
                             attempts=1, outcome=None, now=NOW)  # fmt: skip
    assert releases_pods(failed, {"spec": {"suspend": False}, "status": {}})
    assert not releases_pods(failed, {"spec": {"suspend": True}, "status": {}})
    running = training_status(tj(), observe(job_status(active=1, ready=1), []), job_name="iris",
                              attempts=1, outcome=None, now=NOW)  # fmt: skip
    assert not releases_pods(running, {"spec": {"suspend": False}, "status": {}})


def test_observed_at_moves_every_generation() -> None:
    done = training_status(tj(), observe(job_status(("Complete", "C")), []), job_name="iris",
                           attempts=1, outcome=registered_outcome(), now=NOW)  # fmt: skip
    moved = observed_at(done, 5)
    assert moved.observed_generation == 5
    assert {c.observed_generation for c in moved.conditions} == {5}
    assert moved.phase == done.phase


def test_resuming_announces_resumed() -> None:
    suspended = training_status(tj(), observe(job_status(("Suspended", "S")), []),
                                job_name="iris", attempts=1, outcome=None, now=NOW)  # fmt: skip
    pending = training_status(tj().model_copy(update={"status": suspended}),
                              observe(job_status(active=1), []), job_name="iris", attempts=1,
                              outcome=None, now=NOW)  # fmt: skip
    assert [e.reason for e in lifecycle_events(suspended, pending)] == ["Resumed"]


def _model(version: int) -> dict[str, Any]:
    return {
        "metadata": {"name": f"iris-v{version}"},
        "spec": {"modelName": "iris", "version": version},
    }


def test_a_version_at_the_ceiling_is_passed_over_not_followed() -> None:
    """A Model registered by hand at the last number would end numbering for good: the next
    run takes the lowest free number above the ledger's, and numbering resumes normally
    once that Model is gone."""
    top = versions.MAX_VERSION
    ledger = versions.with_claim({}, "iris", 3, "run-a")
    assert versions.next_claim(ledger, "iris", "run-b", [_model(top)]) == (4, True)
    assert versions.next_claim(ledger, "iris", "run-b", [_model(top), _model(4)]) == (5, True)
    assert versions.next_claim({}, "iris", "run-b", [_model(top)]) == (1, True)
    assert versions.next_claim(ledger, "iris", "run-b", [_model(top - 1)]) == (top, True)
    with pytest.raises(versions.ClaimInFlight):  # v3's run crashed before its Model
        versions.next_claim(ledger, "iris", "run-b", [_model(top)], lambda uid: uid == "run-a")
    crowded = [_model(n) for n in range(4, top + 1)]
    with pytest.raises(versions.VersionsExhausted, match="from 4 to 999999 is taken"):
        versions.next_claim(ledger, "iris", "run-b", crowded)


@pytest.mark.parametrize("entry", ["1000000 run-a", "abc run-a", "7", "-1 run-a", "0 run-a",
                                   "٣ run-a", " 7 run-a", ""])  # fmt: skip
def test_a_ledger_entry_no_registration_writes_is_corrupt(entry: str) -> None:
    with pytest.raises(versions.LedgerCorrupt, match="ConfigMap mlops-model-versions, key iris"):
        versions.next_claim({"iris": entry}, "iris", "run-b", [])


def test_a_claim_still_being_registered_is_waited_for_not_skipped() -> None:
    """A run that claimed v9 and crashed before creating its Model keeps v9: another run
    waits for it rather than taking v10 and leaving a gap; a claim whose run has finished
    (its Model was deleted since) is passed."""
    ledger = versions.with_claim({}, "iris", 9, "run-a")
    with pytest.raises(versions.ClaimInFlight) as raised:
        versions.next_claim(ledger, "iris", "run-b", [], lambda uid: uid == "run-a")
    assert (raised.value.version, raised.value.owner) == (9, "run-a")
    assert versions.next_claim(ledger, "iris", "run-b", [], lambda uid: False) == (10, True)
    made = [{"metadata": {"name": "iris-v9"}, "spec": {"modelName": "iris", "version": 9}}]
    assert versions.next_claim(ledger, "iris", "run-b", made, lambda uid: True) == (10, True)


# --- the summary GitOps tools read ---------------------------------------------------


@pytest.mark.parametrize(
    ("job", "outcome", "expected"),
    [
        (None, None, ("Reconciling", "Creating")),
        (job_status(active=1, ready=0), None, ("Reconciling", "Pending")),
        (job_status(active=1, ready=1), None, ("Reconciling", "Running")),
        (job_status(("Suspended", "JobSuspended")), None, ("Reconciling", "Suspended")),
        (job_status(("Complete", "Completed")), None, ("Reconciling", "Registering")),
        (job_status(("Complete", "Completed")), "registered", ("Ready", "ModelRegistered")),
        (job_status(("Failed", "BackoffLimitExceeded")), None, ("Stalled", "BackoffLimitExceeded")),
    ],
)
def test_every_phase_summarises_as_flux_and_argo_cd_read_it(
    job: dict[str, Any] | None, outcome: str | None, expected: tuple[str, str]
) -> None:
    seen = observe(job, [])
    done = registered_outcome() if outcome else None
    name = "iris" if job is not None else None
    status = training_status(tj(), seen, job_name=name, attempts=1, outcome=done, now=NOW)
    assert summary(status.conditions) == expected


def test_a_run_waiting_for_its_dataset_is_reconciling() -> None:
    waiting = JobObservation("Pending", "DatasetNotFound", "Dataset churn-v3 does not exist")
    status = training_status(tj(), waiting, job_name=None, attempts=1, outcome=None, now=NOW)
    assert summary(status.conditions) == ("Reconciling", "DatasetNotFound")


def test_set_readiness_keeps_one_summary_condition_and_the_others() -> None:
    later = NOW + timedelta(minutes=1)
    working = set_condition([], "Running", True, "Running", "r", generation=1, now=NOW)
    working = set_readiness(working, "Reconciling", "Running", "r", generation=1, now=NOW)
    assert summary(working) == ("Reconciling", "Running")
    stalled = set_readiness(working, "Stalled", "OOMKilled", "m", generation=1, now=later)
    assert summary(stalled) == ("Stalled", "OOMKilled")
    assert [c.type for c in stalled] == ["Running", "Ready", "Stalled"]
    ready = next(c for c in stalled if c.type == "Ready")
    assert ready.last_transition_time == NOW, "Ready stayed False"
    done = set_readiness(stalled, "Ready", "Fixed", "f", generation=2, now=later)
    assert summary(done) == ("Ready", "Fixed")
    assert [c.type for c in done] == ["Running", "Ready"]


def test_a_run_kueue_has_not_admitted_is_queued_with_kueues_reason() -> None:
    job = job_status(("Suspended", "JobSuspended"))
    job["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "gpus"}
    short = "couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu"
    workload = {
        "metadata": {"name": "job-iris-1a2b3"},
        "status": {"conditions": [
            {"type": "QuotaReserved", "status": "False", "reason": "Pending", "message": short},
        ]},
    }  # fmt: skip
    seen = observe(job, [], workload, queued=True)
    assert seen is not None
    assert (seen.phase, seen.reason) == ("Queued", "Queued")
    where = "waiting in Kueue's LocalQueue gpus (Workload job-iris-1a2b3, QuotaReserved)"
    assert seen.message == f"{where}: Pending: {short}"
    status = training_status(tj(queueName="gpus"), seen, job_name="iris", attempts=1,
                             outcome=None, now=NOW)  # fmt: skip
    assert status.phase == "Queued"
    assert summary(status.conditions) == ("Reconciling", "Queued")
    not_yet = observe(job, [], None, queued=True)
    assert not_yet is not None
    assert "has not made a Workload" in not_yet.message
    evicted = {**workload, "status": {"conditions": [
        {"type": "Evicted", "status": "True", "reason": "Preempted", "message": "by team-b"},
    ]}}  # fmt: skip
    again = observe(job, [], evicted, queued=True)
    assert again is not None
    assert again.message.endswith("Evicted): Preempted: by team-b")
    user = observe(job, [], workload, queued=False)
    assert user is not None
    assert user.phase == "Suspended", "suspended by the user, not waiting for Kueue"
