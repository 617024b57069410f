"""Pure builders of the serving side: version choice, rollout plans, child manifests."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mlops_operator import storage
from mlops_operator.api import Model, ModelDeployment
from mlops_operator.api.model import ModelStatus
from mlops_operator.builders import serving
from mlops_operator.builders.analysis import Judgement
from mlops_operator.builders.pods import why_not_ready
from mlops_operator.builders.registry import model_readiness, served_by, serving_fields
from mlops_operator.builders.rollout import (
    Track,
    analysis_due,
    plan,
    resolve,
    skipped_version,
    track,
)
from tests.readiness import summary

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
UID = "11111111-2222-4333-8444-555555555555"
APPROVED = {"mlops.seed.dev/approved": "true"}


def model(version: int, accuracy: float = 0.95, labels: dict[str, str] | None = None,
          uri: str | None = None, fmt: str = "sklearn") -> Model:  # fmt: skip
    return Model.model_validate(
        {
            "metadata": {"name": f"iris-v{version}", "labels": labels or {}},
            "spec": {
                "modelName": "iris",
                "version": version,
                "artifact": {"uri": uri or f"s3://m/iris/{version}/model.joblib", "format": fmt},
                "metrics": {"accuracy": accuracy},
            },
        }
    )


def md(status: dict[str, Any] | None = None, generation: int = 1, **spec: Any) -> ModelDeployment:
    body: dict[str, Any] = {
        "metadata": {"name": "web", "namespace": "ml", "uid": UID, "generation": generation},
        "spec": {"model": {"name": "iris", "version": 1}, "runtime": {"preset": "mlserver"},
                 **spec},
    }  # fmt: skip
    if status is not None:
        body["status"] = status
    return ModelDeployment.model_validate(body)


def ready(version: int, replicas: int = 1) -> Track:
    return Track(exists=True, version=version, replicas=replicas, ready=replicas, done=True)


def rolling(version: int, replicas: int = 1) -> Track:
    return Track(exists=True, version=version, replicas=replicas, ready=0, done=False)


def serving_status(version: int, **extra: Any) -> dict[str, Any]:
    return {"currentVersion": version, "currentModel": f"iris-v{version}", **extra}


# --- choosing the version ----------------------------------------------------------


def test_policy_takes_the_newest_approved_version_that_passes_the_gates() -> None:
    choice = md(model={"name": "iris", "policy": {
        "selector": {"matchLabels": APPROVED},
        "gates": [{"metric": "accuracy", "operator": ">=", "value": 0.9}],
    }}).spec.model  # fmt: skip
    models = [model(1, 0.92, APPROVED), model(2, 0.5, APPROVED), model(3, 0.99), model(4, 0.91,
              APPROVED)]  # fmt: skip
    chosen, why = resolve(choice, models, None, skip=None)
    assert chosen is not None
    assert chosen.spec.version == 4
    assert why == "newest matching version 4 (accuracy=0.91 >= 0.9)"
    skipped, _ = resolve(choice, models, models[0], skip=4)
    assert skipped is not None
    assert skipped.spec.version == 1, "a rolled-back version is skipped"


def test_must_beat_current_compares_in_the_gate_direction() -> None:
    choice = md(model={"name": "iris", "policy": {
        "gates": [{"metric": "accuracy", "operator": ">=", "value": 0.8}],
        "mustBeatCurrent": True,
    }}).spec.model  # fmt: skip
    current = model(1, 0.95)
    worse, _ = resolve(choice, [current, model(2, 0.90)], current, skip=None)
    assert worse is current
    better, _ = resolve(choice, [current, model(2, 0.96)], current, skip=None)
    assert better is not None
    assert better.spec.version == 2


def test_selector_expressions() -> None:
    choice = md(model={"name": "iris", "policy": {"selector": {"matchExpressions": [
        {"key": "stage", "operator": "In", "values": ["prod", "canary"]},
        {"key": "blocked", "operator": "DoesNotExist"},
    ]}}}).spec.model  # fmt: skip
    models = [model(1, labels={"stage": "prod"}), model(2, labels={"stage": "dev"}),
              model(3, labels={"stage": "canary", "blocked": "yes"})]  # fmt: skip
    chosen, _ = resolve(choice, models, None, skip=None)
    assert chosen is not None
    assert chosen.spec.version == 1


def test_pinned_version_missing_is_said() -> None:
    chosen, why = resolve(md().spec.model, [model(2)], None, skip=None)
    assert chosen is None
    assert why == "pinned version 1 of iris does not exist"


# --- plans ---------------------------------------------------------------------------


def test_first_rollout_then_ready() -> None:
    first = plan(md(replicas=2), model(1), "pinned", Track(), Track(), NOW)
    assert first.stable == (1, 2)
    assert first.canary is None
    assert first.in_progress
    assert first.status.history[0].outcome == "Progressing"
    assert summary(first.status.conditions) == ("Reconciling", "RollingOut")
    done = plan(md(first.status.wire(), replicas=2), model(1), "pinned", ready(1, 2), Track(), NOW)
    assert done.status.current_version == 1
    assert done.status.history[0].outcome == "Succeeded"
    assert not done.in_progress
    assert [e.reason for e in done.events] == ["RolloutSucceeded"]
    assert summary(done.status.conditions) == ("Ready", "Serving")


def test_rolling_update_succeeds_or_rolls_back_at_the_deadline() -> None:
    start = plan(md(serving_status(1)), model(2), "pinned", ready(1), Track(), NOW)
    assert start.stable == (2, 1)
    assert [e.reason for e in start.events] == ["RolloutStarted"]
    waiting = md(start.status.wire(), progressDeadlineSeconds=60)
    on_time = plan(waiting, model(2), "pinned", rolling(2), Track(), NOW + timedelta(seconds=30))
    assert on_time.stable == (2, 1)
    late = plan(waiting, model(2), "pinned", rolling(2), Track(), NOW + timedelta(seconds=61))
    assert late.stable == (1, 1), "back to the previous version"
    assert late.status.failed_version == 2
    assert late.status.history[0].outcome == "RolledBack"
    degraded = next(c for c in late.status.conditions if c.type == "Degraded")
    assert (degraded.status, degraded.reason) == ("True", "RolledBack")
    assert summary(late.status.conditions) == ("Stalled", "RolledBack")
    assert skipped_version(md(late.status.wire())) == 2
    assert skipped_version(md(late.status.wire(), generation=2)) is None, "a new spec forgives"


def test_a_rolled_back_deployment_stays_stalled_while_the_old_version_serves() -> None:
    """What was asked for is not served: Stalled (Flux: Failed; Argo CD: Degraded) until a
    new spec or a newer version; the message says what serves."""
    start = plan(md(serving_status(1)), model(2), "pinned", ready(1), Track(), NOW)
    waiting = md(start.status.wire(), progressDeadlineSeconds=60)
    late = plan(waiting, model(2), "pinned", rolling(2), Track(), NOW + timedelta(seconds=61))
    held = md(late.status.wire(), progressDeadlineSeconds=60)
    after = NOW + timedelta(minutes=5)
    # resolve() keeps the served version while version 2 is skipped.
    assert skipped_version(held) == 2
    steady = plan(held, model(1), "pinned version 2 was rolled back", ready(1), Track(), after)
    assert steady.stable == (1, 1)
    assert summary(steady.status.conditions) == ("Stalled", "RolledBack")
    ready_condition = next(c for c in steady.status.conditions if c.type == "Ready")
    assert "rolled back to version 1" in ready_condition.message
    assert steady.events == [], "announced once, at the rollback"
    forgiven = md(late.status.wire(), generation=2, progressDeadlineSeconds=60)
    retry = plan(forgiven, model(1), "pinned", ready(1), Track(), after)
    assert summary(retry.status.conditions) == ("Ready", "Serving")
    newer = plan(held, model(3), "r", ready(1), Track(), after)
    assert summary(newer.status.conditions) == ("Reconciling", "RollingOut")


def test_a_first_rollout_past_its_deadline_stalls_once_and_recovers() -> None:
    """Pinned, nothing to roll back to: past the deadline it ends (Stalled,
    ProgressDeadlineExceeded, the pods' reason, one Event); pods Ready later still finish."""
    spec = {"progressDeadlineSeconds": 15}
    first = plan(md(**spec), model(1), "pinned", Track(), Track(), NOW)
    why = "pod web-a: container main is waiting: ImagePullBackOff"
    later = NOW + timedelta(seconds=16)
    late = plan(
        md(first.status.wire(), **spec), model(1), "pinned", rolling(1), Track(), later, why
    )
    assert summary(late.status.conditions) == ("Stalled", "ProgressDeadlineExceeded")
    stalled = next(c for c in late.status.conditions if c.type == "Stalled")
    assert why in stalled.message
    assert "not rolled back" in stalled.message
    assert [(e.type, e.reason) for e in late.events] == [("Warning", "ProgressDeadlineExceeded")]
    again = plan(md(late.status.wire(), **spec), model(1), "pinned", rolling(1), Track(),
                 later + timedelta(seconds=30), why)  # fmt: skip
    assert again.events == [], "the Event comes once"
    assert again.stable == (1, 1), "the Deployment keeps trying"
    done = plan(md(again.status.wire(), **spec), model(1), "pinned", ready(1), Track(), later)
    assert summary(done.status.conditions) == ("Ready", "Serving")


def test_auto_rollback_off_keeps_trying() -> None:
    start = plan(md(serving_status(1)), model(2), "pinned", ready(1), Track(), NOW)
    spec = {"progressDeadlineSeconds": 10, "autoRollback": False}
    late = plan(md(start.status.wire(), **spec), model(2), "pinned", rolling(2), Track(),
                NOW + timedelta(minutes=5))  # fmt: skip
    assert late.stable == (2, 1)
    assert late.status.failed_version is None
    assert summary(late.status.conditions) == ("Stalled", "ProgressDeadlineExceeded")


def test_canary_walks_its_steps_and_promotes() -> None:
    strategy = {"type": "Canary", "canary": {"steps": [{"weight": 25, "pauseSeconds": 60},
                                                       {"weight": 50}]}}  # fmt: skip
    spec = {"replicas": 4, "strategy": strategy}
    step0 = plan(md(serving_status(1), **spec), model(2), "r", ready(1, 4), Track(), NOW)
    assert (step0.stable, step0.canary) == ((1, 3), (2, 1))
    assert step0.status.canary is not None
    assert step0.status.canary.weight == 25

    held = plan(md(step0.status.wire(), **spec), model(2), "r", ready(1, 3), ready(2, 1), NOW)
    assert held.status.canary is not None
    assert held.status.canary.step_started_at == NOW, "the pause starts once Ready"
    later = NOW + timedelta(seconds=61)
    step1 = plan(md(held.status.wire(), **spec), model(2), "r", ready(1, 3), ready(2, 1), later)
    assert (step1.stable, step1.canary) == ((1, 2), (2, 2))
    assert step1.status.canary is not None
    assert (step1.status.canary.step, step1.status.canary.weight) == (1, 50)
    assert summary(step1.status.conditions) == ("Reconciling", "Canary")

    promote = plan(md(step1.status.wire(), **spec), model(2), "r", ready(1, 2), ready(2, 2), later)
    assert promote.status.canary is not None
    assert promote.status.canary.weight == 100
    assert promote.stable == (2, 4)
    assert promote.canary == (2, 2), "the canary keeps serving until stable has rolled"
    done = plan(md(promote.status.wire(), **spec), model(2), "r", ready(2, 4), ready(2, 2), later)
    assert done.status.current_version == 2
    assert done.status.previous_version == 1
    assert done.canary is None
    assert done.status.canary is None


def test_canary_that_never_gets_ready_is_rolled_back() -> None:
    spec = {"strategy": {"type": "Canary", "canary": {"steps": [{"weight": 50}]}},
            "progressDeadlineSeconds": 30}  # fmt: skip
    step0 = plan(md(serving_status(1), **spec), model(2), "r", ready(1), Track(), NOW)
    late = plan(md(step0.status.wire(), **spec), model(2), "r", ready(1), rolling(2),
                NOW + timedelta(seconds=31))  # fmt: skip
    assert late.canary is None
    assert late.stable == (1, 1)
    assert late.status.failed_version == 2
    assert summary(late.status.conditions) == ("Stalled", "RolledBack")


ANALYSED = {"strategy": {"type": "Canary", "canary": {
    "steps": [{"weight": 50, "pauseSeconds": 30}], "analysis": {"minRequests": 10}}},
    "replicas": 2, "progressDeadlineSeconds": 60}  # fmt: skip


def canary_held(spec: dict[str, Any]) -> ModelDeployment:
    """A canary of version 2 whose step-0 pods have been Ready since NOW."""
    step0 = plan(md(serving_status(1), **spec), model(2), "r", ready(1, 2), Track(), NOW)
    held = plan(md(step0.status.wire(), **spec), model(2), "r", ready(1), ready(2), NOW)
    return md(held.status.wire(), **spec)


def test_an_analysed_step_asks_for_its_window_only_once_paused() -> None:
    held = canary_held(ANALYSED)
    assert analysis_due(held, NOW + timedelta(seconds=29)) is None, "still in its pause"
    due = analysis_due(held, NOW + timedelta(seconds=41.5))
    assert due is not None
    assert (due.version, due.window_seconds) == (2, 42)
    plain = {**ANALYSED, "strategy": {"type": "Canary", "canary": {"steps": [{"weight": 50}]}}}
    assert analysis_due(canary_held(plain), NOW + timedelta(seconds=99)) is None


def test_a_passed_analysis_advances_and_says_its_numbers() -> None:
    later = NOW + timedelta(seconds=31)
    passed = Judgement("Passed", "error rate 0 (stable 0); p99 4 ms")
    step = plan(canary_held(ANALYSED), model(2), "r", ready(1), ready(2), later, None, passed)
    assert step.status.canary is not None
    assert step.status.canary.weight == 100, "promoting"
    said = [e for e in step.events if e.reason == "AnalysisPassed"]
    assert said
    assert "step 1 of 1 (50%): error rate 0 (stable 0)" in said[0].message


def test_a_waiting_analysis_holds_the_step_then_fails_past_the_deadline() -> None:
    held = canary_held(ANALYSED)
    waiting = Judgement("Waiting", "3 of the 10 requests needed reached the canary")
    hold = plan(held, model(2), "r", ready(1), ready(2), NOW + timedelta(seconds=31), None, waiting)
    assert hold.canary == (2, 1)
    assert hold.status.canary is not None
    assert hold.status.canary.step == 0, "not advanced"
    progressing = next(c for c in hold.status.conditions if c.type == "Progressing")
    assert "analysis waiting: 3 of the 10 requests" in progressing.message
    # Not read at all (the controller had no window) counts as waiting, not as a pass.
    unread = plan(held, model(2), "r", ready(1), ready(2), NOW + timedelta(seconds=31))
    assert unread.status.canary is not None
    assert unread.status.canary.step == 0
    # Pause 30 s + deadline 60 s: a canary that could not be judged is not promoted.
    late = NOW + timedelta(seconds=91)
    gave_up = plan(held, model(2), "r", ready(1), ready(2), late, None, waiting)
    assert gave_up.canary is None
    assert gave_up.stable == (1, 2)
    assert summary(gave_up.status.conditions) == ("Stalled", "AnalysisFailed")
    assert "still waiting after 60s: 3 of the 10" in gave_up.status.history[0].message


def test_a_failed_analysis_rolls_back_with_its_numbers_in_the_history() -> None:
    failed = Judgement("Failed", "error rate 0.4 > 0.05 (maxErrorRate) (120 canary requests)")
    later = NOW + timedelta(seconds=31)
    back = plan(canary_held(ANALYSED), model(2), "r", ready(1), ready(2), later, None, failed)
    assert back.canary is None
    assert back.stable == (1, 2)
    assert back.status.failed_version == 2
    assert summary(back.status.conditions) == ("Stalled", "AnalysisFailed")
    degraded = next(c for c in back.status.conditions if c.type == "Degraded")
    assert (degraded.status, degraded.reason) == ("True", "AnalysisFailed")
    record = back.status.history[0]
    assert (record.version, record.outcome) == (2, "RolledBack")
    assert record.message == (
        "analysis failed at step 1 of 1 (50%): error rate 0.4 > 0.05 (maxErrorRate)"
        " (120 canary requests); rolled back to version 1"
    )
    assert [e.reason for e in back.events] == ["AnalysisFailed"]
    # Afterwards the old version serves, still Stalled for the same reason, and version 2
    # is skipped until the spec changes.
    after = plan(md(back.status.wire(), **ANALYSED), model(1), "r", ready(1, 2), Track(), later)
    assert summary(after.status.conditions) == ("Stalled", "AnalysisFailed")
    assert skipped_version(md(back.status.wire(), **ANALYSED)) == 2


def test_with_auto_rollback_off_a_failed_analysis_holds_the_canary_stalled() -> None:
    spec = {**ANALYSED, "autoRollback": False}
    failed = Judgement("Failed", "error rate 0.4 > 0.05 (maxErrorRate)")
    later = NOW + timedelta(seconds=31)
    held = plan(canary_held(spec), model(2), "r", ready(1), ready(2), later, None, failed)
    assert held.canary == (2, 1), "neither promoted nor rolled back"
    assert held.status.failed_version is None
    assert summary(held.status.conditions) == ("Stalled", "AnalysisFailed")
    assert [e.reason for e in held.events] == ["AnalysisFailed"]
    # Judged again, failing again: the same status, and no second Event.
    again = plan(md(held.status.wire(), **spec), model(2), "r", ready(1), ready(2),
                 later + timedelta(seconds=5), None, failed)  # fmt: skip
    assert again.status.conditions == held.status.conditions
    assert again.events == []


PAUSED = {"strategy": {"type": "Canary", "canary": {
    "steps": [{"weight": 25, "pauseSeconds": 600}, {"weight": 50}]}},
    "replicas": 4, "progressDeadlineSeconds": 60}  # fmt: skip


def at_step_0(spec: dict[str, Any], restarts: int = 0) -> ModelDeployment:
    """A canary of version 2 at 25 %, Ready since NOW, in a 600 s pause."""
    step0 = plan(md(serving_status(1), **spec), model(2), "r", ready(1, 4), Track(), NOW)
    canary = Track(True, 2, 1, 1, True, restarts=restarts)
    held = plan(md(step0.status.wire(), **spec), model(2), "r", ready(1, 3), canary, NOW)
    return md(held.status.wire(), **spec)


def test_a_canary_that_stops_being_ready_in_its_pause_is_rolled_back_past_the_deadline() -> None:
    held = at_step_0(PAUSED)
    unready = Track(True, 2, 1, 0, False)
    t = NOW + timedelta(seconds=100)
    gone = plan(held, model(2), "r", ready(1, 3), unready, t)
    assert gone.status.canary is not None
    assert gone.status.canary.unready_since == t
    assert gone.canary == (2, 1), "within the deadline: still the canary"
    # Ready again within the deadline: the clock is forgotten.
    back = plan(md(gone.status.wire(), **PAUSED), model(2), "r", ready(1, 3),
                ready(2, 1), t + timedelta(seconds=30))  # fmt: skip
    assert back.status.canary is not None
    assert back.status.canary.unready_since is None
    again = plan(md(back.status.wire(), **PAUSED), model(2), "r", ready(1, 3), unready,
                 t + timedelta(seconds=40))  # fmt: skip
    late = plan(md(again.status.wire(), **PAUSED), model(2), "r", ready(1, 3), unready,
                t + timedelta(seconds=101))  # fmt: skip
    assert late.canary is None
    assert late.stable == (1, 4)
    assert late.status.failed_version == 2
    assert summary(late.status.conditions) == ("Stalled", "RolledBack")
    assert late.status.history[0].message == (
        "version 2 stopped being Ready at step 1 of 2 (25%) and was not Ready again within 60s;"
        " rolled back to version 1"
    )


def test_a_container_restart_during_a_step_fails_it_at_once() -> None:
    held = at_step_0(PAUSED, restarts=2)
    assert held.status is not None
    assert held.status.canary is not None
    assert held.status.canary.restarts == 2, "the count when the step's pods became Ready"
    crashed = Track(True, 2, 1, 1, True, restarts=3)
    back = plan(held, model(2), "r", ready(1, 3), crashed, NOW + timedelta(seconds=5))
    assert back.canary is None
    assert summary(back.status.conditions) == ("Stalled", "RolledBack")
    assert "a container of version 2 restarted at step 1 of 2 (25%) (1 restarts)" in (
        back.status.history[0].message or ""
    )
    # A replaced pod counts from 0: the baseline follows it down, it is not a restart.
    replaced = Track(True, 2, 1, 1, True, restarts=0)
    calm = plan(held, model(2), "r", ready(1, 3), replaced, NOW + timedelta(seconds=5))
    assert calm.status.canary is not None
    assert calm.status.canary.restarts == 0
    assert calm.canary == (2, 1)


def test_a_later_step_and_the_promotion_each_have_the_deadline() -> None:
    spec = {**PAUSED, "strategy": {"type": "Canary", "canary": {
        "steps": [{"weight": 25, "pauseSeconds": 10}, {"weight": 50}]}}}  # fmt: skip
    held = at_step_0(spec)
    t = NOW + timedelta(seconds=500)  # long after the rollout began
    step1 = plan(held, model(2), "r", ready(1, 3), ready(2, 1), t)
    assert step1.status.canary is not None
    assert (step1.status.canary.step, step1.status.canary.step_entered_at) == (1, t)
    scaling = Track(True, 2, 2, 1, False)
    waiting = plan(md(step1.status.wire(), **spec), model(2), "r", ready(1, 2), scaling,
                   t + timedelta(seconds=60))  # fmt: skip
    assert waiting.canary == (2, 2), "the step's own deadline, not the rollout's"
    late = plan(md(step1.status.wire(), **spec), model(2), "r", ready(1, 2), scaling,
                t + timedelta(seconds=61))  # fmt: skip
    assert late.canary is None
    assert "not Ready within 60s at step 2 of 2 (50%)" in (late.status.history[0].message or "")

    promote = plan(md(step1.status.wire(), **spec), model(2), "r", ready(1, 2), ready(2, 2), t)
    assert promote.status.canary is not None
    assert promote.status.canary.weight == 100
    rolling_stable = Track(True, 2, 4, 2, False)
    still = plan(md(promote.status.wire(), **spec), model(2), "r", rolling_stable, ready(2, 2),
                 t + timedelta(seconds=60))  # fmt: skip
    assert still.stable == (2, 4)
    stuck = plan(md(promote.status.wire(), **spec), model(2), "r", rolling_stable, ready(2, 2),
                 t + timedelta(seconds=61))  # fmt: skip
    assert stuck.stable == (1, 4)
    assert stuck.canary is None
    assert "within 60s of its promotion" in (stuck.status.history[0].message or "")


def test_with_auto_rollback_off_a_broken_step_stalls_and_keeps_the_canary() -> None:
    spec = {**PAUSED, "autoRollback": False}
    held = at_step_0(spec)
    unready = Track(True, 2, 1, 0, False)
    gone = plan(held, model(2), "r", ready(1, 3), unready, NOW + timedelta(seconds=1))
    late = plan(md(gone.status.wire(), **spec), model(2), "r", ready(1, 3), unready,
                NOW + timedelta(seconds=62))  # fmt: skip
    assert late.canary == (2, 1)
    assert late.status.failed_version is None
    assert summary(late.status.conditions) == ("Stalled", "ProgressDeadlineExceeded")
    assert [e.reason for e in late.events] == ["ProgressDeadlineExceeded"]


def test_a_child_deployment_past_its_own_deadline_fails_the_step() -> None:
    body = {
        "metadata": {"generation": 2},
        "spec": {"replicas": 1, "template": {"metadata": {"labels": {serving.VERSION_LABEL: "2"}}}},
        "status": {"observedGeneration": 2, "replicas": 1, "conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]},
    }  # fmt: skip
    stuck = track(body)
    assert stuck.stuck
    back = plan(at_step_0(PAUSED), model(2), "r", ready(1, 3), stuck, NOW + timedelta(seconds=5))
    assert back.canary is None
    assert "exceeded its progress deadline" in (back.status.history[0].message or "")


def test_a_newer_target_supersedes_the_rollout_in_flight() -> None:
    start = plan(md(serving_status(1)), model(2), "r", ready(1), Track(), NOW)
    newer = plan(md(start.status.wire()), model(3), "r", rolling(2), Track(), NOW)
    assert [(h.version, h.outcome) for h in newer.status.history] == [
        (3, "Progressing"),
        (2, "Superseded"),
    ]
    assert newer.stable == (3, 1)


def test_nothing_to_serve() -> None:
    empty = plan(md(), None, "no version matches", Track(), Track(), NOW)
    assert (empty.stable, empty.canary) == (None, None)
    assert summary(empty.status.conditions) == ("Reconciling", "NoModel"), "one may come"


def test_track_reads_a_deployment() -> None:
    dep = {
        "metadata": {"generation": 3},
        "spec": {"replicas": 2, "template": {"metadata": {"labels": {serving.VERSION_LABEL: "7"}}}},
        "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2,
                   "readyReplicas": 2},
    }  # fmt: skip
    assert track(dep) == Track(exists=True, version=7, replicas=2, ready=2, done=True)
    stale = {**dep, "status": {**dep["status"], "observedGeneration": 2}}
    assert not track(stale).done
    assert track(None) == Track()


# --- manifests -------------------------------------------------------------------------


def test_deployment_runs_storage_init_then_mlserver_under_restricted() -> None:
    dep = serving.build_deployment(md(), model(3), track="stable", replicas=2,
                                   storage_image="op:1")  # fmt: skip
    pod = dep["spec"]["template"]["spec"]
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["selector"]["matchLabels"] == {serving.MD_LABEL: "web",
                                                      serving.TRACK_LABEL: "stable"}  # fmt: skip
    assert dep["spec"]["template"]["metadata"]["labels"][serving.VERSION_LABEL] == "3"
    init = pod["initContainers"][0]
    assert (init["image"], init["args"]) == (
        "op:1", ["storage-init", "s3://m/iris/3/model.joblib", serving.MODEL_DIR],
    )  # fmt: skip
    runtime = pod["containers"][0]
    assert runtime["image"] == serving.MLSERVER_IMAGE
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert runtime["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["automountServiceAccountToken"] is False
    autoscaled = serving.build_deployment(md(), model(3), track="canary", replicas=None,
                                          storage_image="op:1")  # fmt: skip
    assert "replicas" not in autoscaled["spec"], "left to the HPA"
    assert autoscaled["metadata"]["name"] == "web-canary"


def test_pvc_artifacts_are_mounted_read_only() -> None:
    dep = serving.build_deployment(md(), model(1, uri="pvc://models/iris/1"), track="stable",
                                   replicas=1, storage_image="op:1")  # fmt: skip
    pod = dep["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["args"][1] == "/mnt/pvc/models/iris/1"
    claim = next(v for v in pod["volumes"] if v["name"] == "artifact")
    assert claim["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}


def test_custom_runtime_and_optional_children() -> None:
    custom = md(runtime={"image": "me/serve:1", "port": 9000, "args": ["--fast"]})
    runtime = serving.build_deployment(custom, model(1), track="stable", replicas=1,
                                       storage_image="op:1")["spec"]["template"]["spec"][
        "containers"][0]  # fmt: skip
    assert (runtime["image"], runtime["args"]) == ("me/serve:1", ["--fast"])
    assert runtime["ports"] == [{"name": "http", "containerPort": 9000}]
    assert "tcpSocket" in runtime["readinessProbe"]
    assert serving.build_hpa(md()) is None
    assert serving.build_pdb(md(replicas=1)) is None
    assert serving.build_pdb(md(replicas=3)) is not None
    hpa = serving.build_hpa(md(autoscaling={"minReplicas": 2, "maxReplicas": 4}))
    assert hpa is not None
    assert hpa["spec"]["scaleTargetRef"]["name"] == "web"


@pytest.mark.parametrize(("weight", "split"), [(10, (3, 1)), (50, (2, 2)), (75, (1, 3))])
def test_replica_split_follows_the_weight(weight: int, split: tuple[int, int]) -> None:
    assert serving.split_replicas(md(replicas=4), weight) == split


# --- models --------------------------------------------------------------------------


def test_model_readiness_and_served_by() -> None:
    assert model_readiness(model(1))[0]
    bad = model(1, uri="file:///tmp/model.joblib")
    ok, reason, message = model_readiness(bad)
    assert (ok, reason) == (False, "UnsupportedArtifactURI")
    assert "s3://" in message
    assert "custom runtime" in model_readiness(model(1, fmt="onnx"))[2]
    deployments = [
        {"metadata": {"name": "a"}, "spec": {"model": {"name": "iris"}},
         "status": {"currentModel": "iris-v1"}},
        {"metadata": {"name": "b"}, "spec": {"model": {"name": "iris"}},
         "status": {"currentModel": "iris-v1", "canary": {"version": 2}}},
        {"metadata": {"name": "c", "deletionTimestamp": "x"}, "spec": {"model": {"name": "iris"}},
         "status": {"currentModel": "iris-v2"}},
    ]  # fmt: skip
    assert served_by(deployments, "iris-v1") == ["a", "b"]
    assert served_by(deployments, "iris-v2") == ["b"]


def test_storage_init_fetches_a_file_or_a_directory(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "model.joblib").write_bytes(b"weights")
    (source / "sub" / "settings.json").write_text("{}")
    single = storage.fetch(str(source / "model.joblib"), str(tmp_path / "one"))
    assert [p.read_bytes() for p in single] == [b"weights"]
    tree = storage.fetch(f"file://{source}", str(tmp_path / "all"))
    assert sorted(p.relative_to(tmp_path / "all").as_posix() for p in tree) == [
        "model.joblib",
        "sub/settings.json",
    ]
    with pytest.raises(FileNotFoundError, match="no such artifact"):
        storage.fetch(str(tmp_path / "missing"), str(tmp_path / "x"))


def test_the_mlserver_preset_deploys_the_pinned_release() -> None:
    pins = dict(
        line.split("=", 1)
        for line in (Path(__file__).parents[2] / "tools" / "versions.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert serving.MLSERVER_IMAGE.endswith(f":{pins['MLSERVER_VERSION']}")


# --- why a new version is not Ready ------------------------------------------------------


def pod(name: str, init: dict[str, Any] | None = None, main: dict[str, Any] | None = None,
        **status: Any) -> dict[str, Any]:  # fmt: skip
    body: dict[str, Any] = {"metadata": {"name": name}, "status": dict(status)}
    if init is not None:
        body["status"]["initContainerStatuses"] = [{"name": "storage-init", **init}]
    if main is not None:
        body["status"]["containerStatuses"] = [{"name": "runtime", **main}]
    return body


def test_why_not_ready_quotes_the_failing_container() -> None:
    gone = {"exitCode": 1, "reason": "Error", "message": "cannot fetch s3://m/x:\n gone"}
    failed_init = {
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
        "lastState": {"terminated": gone},
    }
    assert why_not_ready([pod("web-b", failed_init), pod("web-a", {"state": {}})]) == (
        "pod web-b: init container storage-init exited 1 (Error): cannot fetch s3://m/x: gone"
    )
    pulling = {"state": {"waiting": {"reason": "ImagePullBackOff", "message": "no registry"}}}
    assert why_not_ready([pod("web-a", main=pulling)]) == (
        "pod web-a: container runtime waiting: ImagePullBackOff: no registry"
    )
    full = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes"}  # fmt: skip
    unscheduled = pod("web-a", conditions=[full])
    assert why_not_ready([unscheduled]) == "pod web-a: not scheduled: 0/3 nodes"
    starting = {"state": {"waiting": {"reason": "PodInitializing"}}}
    assert why_not_ready([pod("web-a", main=starting), pod("web-c", main={"state": {}})]) is None


def test_a_rollback_says_what_the_pods_said() -> None:
    spec = {"progressDeadlineSeconds": 30}
    start = plan(md(serving_status(1), **spec), model(2), "r", ready(1), Track(), NOW)
    why = "pod web-x: init container storage-init exited 1 (Error): cannot fetch s3://m/2"
    late = plan(md(start.status.wire(), **spec), model(2), "r", ready(1), rolling(2),
                NOW + timedelta(seconds=31), why)  # fmt: skip
    rolled_back = next(e for e in late.events if e.reason == "RolledBack")
    assert why in rolled_back.message
    degraded = next(c for c in late.status.conditions if c.type == "Degraded")
    assert why in degraded.message


def test_storage_init_reports_one_line_where_the_kubelet_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "termination-log"
    monkeypatch.setenv(storage.TERMINATION_LOG_ENV, str(log))
    from mlops_operator import cli

    assert cli.main(["storage-init", str(tmp_path / "missing"), str(tmp_path / "dest")]) == 1
    message = log.read_text()
    assert message.startswith(f"cannot fetch {tmp_path / 'missing'}: FileNotFoundError:")
    assert "\n" not in message


def test_storage_init_gets_the_credentials_by_reference() -> None:
    env = [{"name": "AWS_SECRET_ACCESS_KEY",
            "valueFrom": {"secretKeyRef": {"name": "s3", "key": "secret"}}}]  # fmt: skip
    dep = serving.build_deployment(md(storage={"env": env}), model(1), track="stable",
                                   replicas=1, storage_image="op:1")  # fmt: skip
    init = dep["spec"]["template"]["spec"]["initContainers"][0]
    assert init["env"] == env
    assert init["terminationMessagePolicy"] == "FallbackToLogsOnError"
    plain = serving.build_deployment(md(), model(1), track="stable", replicas=1,
                                     storage_image="op:1")  # fmt: skip
    assert "env" not in plain["spec"]["template"]["spec"]["initContainers"][0]


# --- drift monitoring -------------------------------------------------------------------

REFERENCE = {"uri": "s3://m/iris/3/reference.json", "digest": "sha256:" + "c" * 64}


def referenced(version: int, uri: str | None = None, reference: str | None = None) -> Model:
    body = model(version, uri=uri).model_dump(by_alias=True, exclude_none=True)
    body["spec"]["artifact"]["reference"] = {**REFERENCE, "uri": reference or REFERENCE["uri"]}
    return Model.model_validate(body)


def test_a_model_with_a_reference_is_served_behind_the_monitor() -> None:
    dep = serving.build_deployment(md(), referenced(3), track="stable", replicas=1,
                                   storage_image="op:1")  # fmt: skip
    pod = dep["spec"]["template"]["spec"]
    init = pod["initContainers"][0]
    assert init["args"] == [
        "storage-init", "s3://m/iris/3/model.joblib", serving.MODEL_DIR,
        "--reference", REFERENCE["uri"], "--reference-digest", REFERENCE["digest"],
        "--reference-dir", serving.REFERENCE_DIR,
    ]  # fmt: skip
    runtime, monitor = pod["containers"]
    # The monitor owns the port the Service targets; the runtime's is renamed, probes follow.
    assert {p["name"]: p["containerPort"] for p in monitor["ports"]} == {
        "http": serving.MONITOR_PORT,
        "monitor": serving.MONITOR_ADMIN_PORT,
    }
    assert runtime["ports"] == [{"name": "runtime", "containerPort": serving.RUNTIME_PORT}]
    assert runtime["readinessProbe"]["httpGet"]["port"] == "runtime"
    assert runtime["livenessProbe"]["httpGet"]["port"] == "runtime"
    assert serving.build_service(md())["spec"]["ports"][0]["targetPort"] == "http"
    assert monitor["image"] == "op:1", "the operator's own image"
    assert monitor["args"][:3] == ["monitor", "--reference", serving.REFERENCE_PATH]
    assert f"http://127.0.0.1:{serving.RUNTIME_PORT}" in monitor["args"]
    assert monitor["securityContext"] == runtime["securityContext"], "restricted, as the runtime"
    assert monitor["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "monitor"}
    assert {"name": "reference", "emptyDir": {}} in pod["volumes"]
    assert {"name": "reference", "mountPath": serving.REFERENCE_DIR} in init["volumeMounts"]


def pod_of(deployment: ModelDeployment, served: Model) -> dict[str, Any]:
    built = serving.build_deployment(
        deployment, served, track="stable", replicas=1, storage_image="op:1"
    )
    pod: dict[str, Any] = built["spec"]["template"]["spec"]
    return pod


def test_no_monitor_without_a_reference_or_when_it_is_turned_off() -> None:
    off = md(monitoring={"enabled": False})
    for deployment, served in ((md(), model(3)), (off, referenced(3))):
        pod = pod_of(deployment, served)
        assert [c["name"] for c in pod["containers"]] == ["runtime"]
        assert pod["containers"][0]["ports"][0]["name"] == "http"
        assert "--reference" not in pod["initContainers"][0]["args"]


def test_a_canary_analysis_puts_the_monitor_in_front_even_without_a_reference() -> None:
    pod = pod_of(md(**ANALYSED), model(3))
    runtime, monitor = pod["containers"]
    assert monitor["args"][:2] == ["monitor", "--upstream"], "no --reference to read"
    assert "volumeMounts" not in monitor
    assert runtime["ports"][0]["name"] == "runtime"
    assert "--reference" not in pod["initContainers"][0]["args"]


def test_a_reference_on_another_claim_gets_its_own_read_only_volume() -> None:
    same = referenced(1, uri="pvc://models/iris/1/model.joblib",
                      reference="pvc://models/iris/1/reference.json")  # fmt: skip
    other = referenced(1, uri="pvc://models/iris/1/model.joblib",
                       reference="pvc://profiles/iris/1/reference.json")  # fmt: skip
    for served, claims in ((same, ["models"]), (other, ["models", "profiles"])):
        pod = pod_of(md(), served)
        pvcs = [v["persistentVolumeClaim"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
        assert [c["claimName"] for c in pvcs] == claims
        assert all(c["readOnly"] for c in pvcs)
        args = pod["initContainers"][0]["args"]
        assert args[args.index("--reference") + 1].startswith(f"/mnt/pvc/{claims[-1]}/iris/1/")


def test_storage_init_fetches_the_reference_only_with_the_recorded_digest(tmp_path: Path) -> None:
    source = tmp_path / "reference.json"
    source.write_text('{"format": 1}')
    good = "sha256:" + hashlib.sha256(source.read_bytes()).hexdigest()
    fetched = storage.fetch_reference(f"file://{source}", good, str(tmp_path / "ref"))
    assert fetched == tmp_path / "ref" / "reference.json"
    assert fetched.read_text() == '{"format": 1}'
    with pytest.raises(ValueError, match="the Model says sha256:cccc"):
        storage.fetch_reference(str(source), "sha256:" + "c" * 64, str(tmp_path / "bad"))
    assert not (tmp_path / "bad" / "reference.json").exists()


def test_a_model_served_by_more_deployments_than_its_status_lists_still_validates() -> None:
    # 100 ModelDeployments on one version: a list of 100 was refused (maxItems 64), so the
    # Model's status was never written again (found by bench/drift_reads.py).
    names = [f"md-{i:03d}" for i in range(100)]
    status = ModelStatus.model_validate(serving_fields(names))
    assert status.served_by == names[:64]
    assert status.served_by_count == 100
    assert serving_fields([]) == {"served_by": [], "served_by_count": None}


def test_the_network_policy_opens_the_serving_port_and_keeps_the_monitor_s_to_its_readers() -> None:
    policy = serving.build_network_policy(md(), "mlops-system", ["monitoring"])
    assert policy is not None
    assert policy["metadata"]["name"] == "web-serving"
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {serving.MD_LABEL: "web"}}
    assert spec["policyTypes"] == ["Ingress"]
    inference, monitor = spec["ingress"]
    assert inference == {"ports": [{"port": "http", "protocol": "TCP"}]}, "open to all callers"
    namespaces = [p["namespaceSelector"]["matchLabels"] for p in monitor["from"]]
    assert namespaces == [
        {serving.NAMESPACE_NAME_LABEL: "mlops-system"},
        {serving.NAMESPACE_NAME_LABEL: "monitoring"},
    ]
    assert monitor["from"][0]["podSelector"] == {"matchLabels": serving.OPERATOR_POD_LABELS}

    only = md(networkPolicy={
        "inferenceFrom": [{"namespaceSelector": {"matchLabels": {"team": "shop"}}},
                          {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
        "monitorFrom": [{"podSelector": {"matchLabels": {"app": "grafana-agent"}}}],
    })  # fmt: skip
    restricted = serving.build_network_policy(only, "mlops-system", [])
    assert restricted is not None
    inference, monitor = restricted["spec"]["ingress"]
    assert inference["from"] == [
        {"namespaceSelector": {"matchLabels": {"team": "shop"}}},
        {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
    ]
    assert monitor["from"][-1] == {"podSelector": {"matchLabels": {"app": "grafana-agent"}}}
    assert serving.build_network_policy(md(networkPolicy={"enabled": False}), "x", []) is None


def test_a_step_recorded_but_not_carried_out_is_not_ready_with_the_last_step_s_pods() -> None:
    """A predecessor recorded step 2 (50 %) and died before scaling: the canary's one Ready
    pod (step 1's) does not make step 2 Ready; its two replicas are applied."""
    held = at_step_0(PAUSED)
    assert held.status is not None
    assert held.status.canary is not None
    step_2 = {"step": 1, "weight": 50, "step_started_at": None, "step_entered_at": NOW}
    recorded = held.status.model_copy(
        update={"canary": held.status.canary.model_copy(update=step_2)}
    )
    successor = plan(md(recorded.wire(), **PAUSED), model(2), "r", ready(1, 3), ready(2, 1),
                     NOW + timedelta(seconds=5))  # fmt: skip
    assert successor.canary == (2, 2)
    assert successor.status.canary is not None
    assert successor.status.canary.step_started_at is None, "not Ready at this step's size"
