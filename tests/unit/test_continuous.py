"""What a ContinuousTraining decides (builders/continuous.py): triggers, policies, status.

Every pass is `plan()` with the objects and an injected clock; a test feeds the status a
pass returns into the next pass, as the controller does.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mlops_operator.api import API_VERSION, ContinuousTraining, TrainingJob
from mlops_operator.api.continuoustraining import MAX_DECISIONS, ContinuousTrainingStatus, LastRun
from mlops_operator.api.model import TriggerRecord
from mlops_operator.builders import continuous, registry
from mlops_operator.builders.continuous import CT_LABEL, Plan, Run, expired, plan, run_of
from mlops_operator.builders.registry import TRIGGER_ANNOTATION

UID = "c7c7c7c7-0000-4000-8000-000000000000"
NAME = "iris-ct"
DIGEST = "sha256:" + "ab" * 32
CREATED = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)
NOW = datetime(2026, 6, 3, 10, 0, tzinfo=UTC)

HOURLY = {"schedule": {"cron": "@hourly"}}
ON_DATA = {"onNewDataset": {"name": "iris-data"}}
ON_DRIFT = {"onModelDeployment": {"name": "iris", "condition": "Drifted", "forSeconds": 600}}


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def ct(
    triggers: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
    template_spec: dict[str, Any] | None = None,
    **spec: Any,
) -> ContinuousTraining:
    body: dict[str, Any] = {
        "metadata": {"name": NAME, "namespace": "ml", "uid": UID, "generation": 3},
        "spec": {
            "template": {
                "metadata": {"labels": {"team": "a"}, "annotations": {"note": "x"}},
                "spec": {
                    "image": "train:1",
                    "hyperparameters": {"lr": "0.1"},
                    "output": {"uri": "s3://b/iris/", "modelName": "iris", "format": "sklearn"},
                    **(template_spec or {}),
                },
            },
            "triggers": triggers if triggers is not None else HOURLY,
            **spec,
        },
    }
    if status is not None:
        body["status"] = status
    return ContinuousTraining.model_validate(body)


def with_status(c: ContinuousTraining, status: ContinuousTrainingStatus) -> ContinuousTraining:
    return c.model_copy(update={"status": status})


def dataset(version: int, ready: bool = True, name: str = "iris-data") -> dict[str, Any]:
    conditions = [
        {
            "type": "Ready",
            "status": "True" if ready else "False",
            "reason": "Valid" if ready else "Invalid",
            "message": "ok" if ready else "digest mismatch",
            "lastTransitionTime": "2026-06-01T00:00:00Z",
        }
    ]
    return {
        "metadata": {"name": f"{name}-v{version}", "namespace": "ml"},
        "spec": {
            "datasetName": name,
            "version": version,
            "uri": f"s3://d/{name}/v{version}.csv",
            "digest": DIGEST,
        },
        "status": {"conditions": conditions},
    }


def deployment(since: str, status: str = "True", condition: str = "Drifted") -> dict[str, Any]:
    return {
        "metadata": {"name": "iris", "namespace": "ml"},
        "spec": {"model": {"name": "iris"}},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-05-01T00:00:00Z"},
                {"type": condition, "status": status, "lastTransitionTime": since},
            ]
        },
    }


def run(
    name: str,
    created: str = "2026-06-03T09:00:00Z",
    finished: bool = False,
    model: str | None = None,
) -> Run:
    return Run(name=name, created=created, finished=finished, running=not finished,
               succeeded=model is not None, registered_model=model)  # fmt: skip


def decide(
    c: ContinuousTraining,
    now: datetime = NOW,
    runs: list[Run] | None = None,
    datasets: list[dict[str, Any]] | None = None,
    md: dict[str, Any] | None = None,
    created: datetime = CREATED,
) -> Plan:
    return plan(c, runs or [], datasets or [], md, created, now)


def schedule_run(t: datetime) -> str:
    return f"{NAME}-s{int(t.timestamp() // 60)}"


def one_decision(p: Plan) -> tuple[str, str, str]:
    assert len(p.status.decisions) >= 1
    d = p.status.decisions[-1]
    return d.trigger, d.action, d.reason


def conditions(status: ContinuousTrainingStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


# --- schedule ------------------------------------------------------------------------


def test_schedule_fires_once_at_its_time_and_not_before() -> None:
    c = ct(HOURLY)
    created = utc(2026, 6, 3, 9, 10)
    early = decide(c, utc(2026, 6, 3, 9, 59, 59), created=created)
    assert early.create == []
    assert early.status.decisions == []
    assert early.events == []
    assert early.wake_at == utc(2026, 6, 3, 10)
    assert early.status.next_schedule_time == utc(2026, 6, 3, 10)

    due = decide(c, utc(2026, 6, 3, 10), created=created)
    name = schedule_run(utc(2026, 6, 3, 10))
    assert [tj["metadata"]["name"] for tj in due.create] == [name]
    d = due.status.decisions[-1]
    assert (d.trigger, d.detail, d.action, d.reason) == (
        "schedule",
        "2026-06-03T10:00:00Z",
        "Started",
        "Triggered",
    )
    assert d.training_job == name
    assert due.status.triggers.last_schedule_time == utc(2026, 6, 3, 10)
    assert due.status.active == [name]
    assert due.status.last_run is not None
    assert (due.status.last_run.training_job, due.status.last_run.trigger) == (name, "schedule")
    assert [(e.type, e.reason) for e in due.events] == [("Normal", "RunStarted")]
    assert due.status.next_schedule_time == utc(2026, 6, 3, 11)

    # The next pass, with the status written and the run found: nothing new.
    again = decide(with_status(c, due.status), utc(2026, 6, 3, 10, 0, 30),
                   runs=[run(name, "2026-06-03T10:00:00Z")], created=created)  # fmt: skip
    assert again.create == []
    assert again.events == []
    assert len(again.status.decisions) == 1
    assert again.wake_at == utc(2026, 6, 3, 11)


def test_a_schedule_time_before_creation_does_not_fire() -> None:
    p = decide(ct(HOURLY), utc(2026, 6, 3, 9, 30), created=utc(2026, 6, 3, 9, 10))
    assert p.create == []
    assert p.status.triggers.last_schedule_time is None


def test_schedule_run_names_are_stable_per_minute() -> None:
    c = ct(HOURLY)
    created = utc(2026, 6, 3, 9, 10)
    first = decide(c, utc(2026, 6, 3, 10, 0, 5), created=created)
    second = decide(c, utc(2026, 6, 3, 10, 0, 50), created=created)
    assert first.create[0]["metadata"]["name"] == second.create[0]["metadata"]["name"]
    assert first.create[0]["metadata"]["name"] == schedule_run(utc(2026, 6, 3, 10))


def test_a_long_gap_catches_up_at_most_one_run() -> None:
    c = ct(HOURLY, status={"triggers": {"lastScheduleTime": "2026-06-03T00:00:00Z"}})
    p = decide(c, utc(2026, 6, 3, 5, 30))
    assert [tj["metadata"]["name"] for tj in p.create] == [schedule_run(utc(2026, 6, 3, 5))]
    d = p.status.decisions[-1]
    assert (d.detail, d.action) == ("2026-06-03T05:00:00Z", "Started")
    assert "4 earlier times were missed" in d.message
    assert p.status.triggers.last_schedule_time == utc(2026, 6, 3, 5)

    again = decide(with_status(c, p.status), utc(2026, 6, 3, 5, 31),
                   runs=[run(schedule_run(utc(2026, 6, 3, 5)))])  # fmt: skip
    assert again.create == []


def test_starting_deadline_skips_a_run_that_is_too_late() -> None:
    c = ct(
        {"schedule": {"cron": "@hourly", "startingDeadlineSeconds": 300}},
        status={"triggers": {"lastScheduleTime": "2026-06-03T04:00:00Z"}},
    )
    late = decide(c, utc(2026, 6, 3, 5, 10))
    assert late.create == []
    assert one_decision(late) == ("schedule", "Skipped", "MissedDeadline")
    assert "startingDeadlineSeconds 300" in late.status.decisions[-1].message
    assert [(e.type, e.reason) for e in late.events] == [("Warning", "RunSkipped")]
    # The missed time is acted on: the next pass does not decide it again.
    assert late.status.triggers.last_schedule_time == utc(2026, 6, 3, 5)
    again = decide(with_status(c, late.status), utc(2026, 6, 3, 5, 11))
    assert again.create == []
    assert again.events == []

    in_time = decide(c, utc(2026, 6, 3, 5, 4))
    assert one_decision(in_time) == ("schedule", "Started", "Triggered")
    assert len(in_time.create) == 1


def test_next_schedule_time_and_wake_at() -> None:
    c = ct(
        {"schedule": {"cron": "0 */6 * * *"}},
        status={"triggers": {"lastScheduleTime": "2026-06-03T06:00:00Z"}},
    )
    p = decide(c, utc(2026, 6, 3, 7))
    assert p.create == []
    assert p.status.next_schedule_time == utc(2026, 6, 3, 12)
    assert p.wake_at == utc(2026, 6, 3, 12)


def test_a_schedule_in_a_time_zone_fires_at_local_time() -> None:
    c = ct({"schedule": {"cron": "0 9 * * *", "timeZone": "Europe/Paris"}})
    created = utc(2026, 6, 3, 0)
    early = decide(c, utc(2026, 6, 3, 6, 59), created=created)
    assert early.create == []
    assert early.wake_at == utc(2026, 6, 3, 7, 0)
    p = decide(c, utc(2026, 6, 3, 7, 0), created=created)  # 09:00 CEST
    assert p.status.decisions[-1].detail == "2026-06-03T07:00:00Z"
    assert len(p.create) == 1


def test_fall_back_a_ct_created_in_the_repeated_hour_runs_no_earlier_time() -> None:
    # 01:30 EDT (05:30Z) was before the ContinuousTraining existed (created 01:10 EST).
    c = ct({"schedule": {"cron": "30 1 * * *", "timeZone": "America/New_York"}})
    now = utc(2026, 11, 1, 6, 20)
    p = decide(c, now, created=utc(2026, 11, 1, 6, 10))
    assert p.create == [], [d.detail for d in p.status.decisions]
    assert p.status.next_schedule_time == utc(2026, 11, 2, 6, 30)
    assert p.wake_at is not None
    assert p.wake_at > now


def test_fall_back_next_schedule_time_is_never_in_the_past() -> None:
    c = ct(
        {"schedule": {"cron": "30 1 * * *", "timeZone": "America/New_York"}},
        status={"triggers": {"lastScheduleTime": "2026-11-01T05:30:00Z"}},
    )
    now = utc(2026, 11, 1, 6, 10)  # 01:10 EST, after the day's only run at 01:30 EDT
    p = decide(c, now)
    assert p.create == []
    assert p.status.next_schedule_time == utc(2026, 11, 2, 6, 30)
    assert p.wake_at is not None
    assert p.wake_at > now


# --- onNewDataset --------------------------------------------------------------------


def test_the_newest_ready_version_fires_a_pinned_owned_annotated_run() -> None:
    c = ct(ON_DATA, template_spec={"dataset": {"ref": {"name": "iris-data"}}})
    found = [dataset(1), dataset(3, ready=False), dataset(2), dataset(9, name="other-data")]
    p = decide(c, datasets=found)
    assert len(p.create) == 1
    tj = p.create[0]
    meta = tj["metadata"]
    assert (tj["apiVersion"], tj["kind"]) == (API_VERSION, "TrainingJob")
    assert (meta["name"], meta["namespace"]) == (f"{NAME}-d2", "ml")
    assert tj["spec"]["dataset"] == {"ref": {"name": "iris-data", "version": 2}}
    assert tj["spec"]["image"] == "train:1"
    assert tj["spec"]["hyperparameters"] == {"lr": "0.1"}
    assert meta["ownerReferences"] == [
        {
            "apiVersion": API_VERSION,
            "kind": "ContinuousTraining",
            "name": NAME,
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert meta["labels"][CT_LABEL] == NAME
    assert meta["labels"]["team"] == "a"
    assert meta["annotations"]["note"] == "x"
    assert json.loads(meta["annotations"][TRIGGER_ANNOTATION]) == {
        "continuousTraining": NAME,
        "type": "onNewDataset",
        "detail": "iris-data-v2",
    }
    # It is a valid TrainingJob, and the Model's lineage reads its trigger back.
    parsed = TrainingJob.model_validate({**tj, "metadata": {**meta, "uid": "tj-uid"}})
    assert registry.trigger_of(parsed) == TriggerRecord(
        continuous_training=NAME, type="onNewDataset", detail="iris-data-v2"
    )
    assert p.status.triggers.dataset_version == 2
    assert one_decision(p) == ("onNewDataset", "Started", "Triggered")
    assert p.status.decisions[-1].detail == "iris-data-v2"


def test_a_template_without_dataset_reads_the_version_that_fired() -> None:
    p = decide(ct(ON_DATA), datasets=[dataset(4)])
    assert p.create[0]["spec"]["dataset"] == {"ref": {"name": "iris-data", "version": 4}}


def test_the_template_labels_cannot_hide_the_ct_label_or_the_trigger() -> None:
    c = ContinuousTraining.model_validate(
        {
            "metadata": {"name": NAME, "namespace": "ml", "uid": UID},
            "spec": {
                "template": {
                    "metadata": {
                        "labels": {CT_LABEL: "someone-else"},
                        "annotations": {TRIGGER_ANNOTATION: "{}"},
                    },
                    "spec": {
                        "image": "train:1",
                        "output": {"uri": "s3://b/", "modelName": "iris", "format": "sklearn"},
                    },
                },
                "triggers": ON_DATA,
            },
        }
    )
    meta = decide(c, datasets=[dataset(1)]).create[0]["metadata"]
    assert meta["labels"][CT_LABEL] == NAME
    assert json.loads(meta["annotations"][TRIGGER_ANNOTATION])["type"] == "onNewDataset"


def test_an_unready_version_does_not_fire() -> None:
    p = decide(ct(ON_DATA), datasets=[dataset(1, ready=False)])
    assert p.create == []
    assert p.status.decisions == []
    assert p.status.triggers.dataset_version is None

    # Acted on v2; v3 is registered but not Ready yet.
    c = ct(ON_DATA, status={"triggers": {"datasetVersion": 2}})
    p = decide(c, datasets=[dataset(2), dataset(3, ready=False)])
    assert p.create == []
    assert p.status.triggers.dataset_version == 2


def test_a_version_already_acted_on_does_not_fire() -> None:
    c = ct(ON_DATA, status={"triggers": {"datasetVersion": 2}})
    assert decide(c, datasets=[dataset(1), dataset(2)]).create == []
    # An older version that becomes Ready late is not new either.
    c = ct(ON_DATA, status={"triggers": {"datasetVersion": 5}})
    assert decide(c, datasets=[dataset(3)]).create == []


def test_a_newer_version_fires_after_one_acted_on() -> None:
    c = ct(ON_DATA, status={"triggers": {"datasetVersion": 2}})
    p = decide(c, datasets=[dataset(1), dataset(2), dataset(3)])
    assert [tj["metadata"]["name"] for tj in p.create] == [f"{NAME}-d3"]
    assert p.status.triggers.dataset_version == 3


# --- onModelDeployment ---------------------------------------------------------------


SINCE = "2026-06-03T09:55:00Z"
SINCE_T = utc(2026, 6, 3, 9, 55)


def test_a_condition_not_held_for_long_enough_waits_and_says_until_when() -> None:
    p = decide(ct(ON_DRIFT), utc(2026, 6, 3, 10, 0), md=deployment(SINCE))
    assert p.create == []
    assert p.status.decisions == []
    assert p.wake_at == SINCE_T + timedelta(seconds=600)
    assert p.status.triggers.condition_since is None


def test_a_condition_held_for_long_enough_fires_with_a_stable_name() -> None:
    c = ct(ON_DRIFT)
    now = SINCE_T + timedelta(seconds=600)
    first = decide(c, now, md=deployment(SINCE))
    second = decide(c, now + timedelta(minutes=3), md=deployment(SINCE))
    assert len(first.create) == 1
    name = first.create[0]["metadata"]["name"]
    assert name == second.create[0]["metadata"]["name"]
    prefix, _, suffix = name.rpartition("-")
    assert prefix == NAME
    assert suffix.startswith("c")
    assert len(suffix) == 11
    int(suffix[1:], 16)  # hex
    d = first.status.decisions[-1]
    assert (d.trigger, d.action, d.reason) == ("onModelDeployment", "Started", "Triggered")
    assert d.detail == f"ModelDeployment iris: Drifted=True since {SINCE}"
    assert first.status.triggers.condition_since == SINCE_T
    annotation = json.loads(first.create[0]["metadata"]["annotations"][TRIGGER_ANNOTATION])
    assert annotation["type"] == "onModelDeployment"
    # A later transition to True is a new trigger, with another run name.
    later = decide(c, now + timedelta(hours=2), md=deployment("2026-06-03T11:00:00Z"))
    assert later.create[0]["metadata"]["name"] != name


def test_a_condition_already_acted_on_does_not_fire() -> None:
    c = ct(ON_DRIFT, status={"triggers": {"conditionSince": SINCE}})
    p = decide(c, utc(2026, 6, 3, 12), md=deployment(SINCE))
    assert p.create == []
    assert p.wake_at is None


def test_a_condition_with_another_status_or_missing_does_not_fire() -> None:
    c = ct(ON_DRIFT)
    now = utc(2026, 6, 3, 12)
    assert decide(c, now, md=deployment(SINCE, status="False")).create == []
    assert decide(c, now, md=deployment(SINCE, condition="Degraded")).create == []
    assert decide(c, now, md=None).create == []


# --- concurrencyPolicy ---------------------------------------------------------------


def test_forbid_skips_a_schedule_run_while_one_is_active() -> None:
    c = ct(HOURLY, status={"triggers": {"lastScheduleTime": "2026-06-03T09:00:00Z"}})
    p = decide(c, runs=[run(f"{NAME}-s1")])
    assert p.create == []
    assert p.delete == []
    assert one_decision(p) == ("schedule", "Skipped", "ConcurrencyForbid")
    assert f"{NAME}-s1" in p.status.decisions[-1].message
    assert p.status.triggers.last_schedule_time == NOW  # lost, as a CronJob's
    assert p.status.active == [f"{NAME}-s1"]


def test_forbid_defers_a_dataset_until_the_active_run_finishes() -> None:
    c = ct(ON_DATA)
    busy = decide(c, runs=[run(f"{NAME}-s1")], datasets=[dataset(2)])
    assert busy.create == []
    assert one_decision(busy) == ("onNewDataset", "Deferred", "ConcurrencyForbid")
    assert busy.status.triggers.dataset_version is None  # not acted on: it waits
    assert [e.reason for e in busy.events] == ["RunDeferred"]

    done = run(f"{NAME}-s1", finished=True, model="iris-v1")
    free = decide(with_status(c, busy.status), NOW + timedelta(minutes=5), runs=[done],
                  datasets=[dataset(2)])  # fmt: skip
    assert [tj["metadata"]["name"] for tj in free.create] == [f"{NAME}-d2"]
    assert [d.action for d in free.status.decisions] == ["Deferred", "Started"]
    assert free.status.triggers.dataset_version == 2
    assert free.status.active == [f"{NAME}-d2"]


def test_replace_deletes_the_active_run_and_starts_a_new_one() -> None:
    c = ct(HOURLY, concurrencyPolicy="Replace",
           status={"triggers": {"lastScheduleTime": "2026-06-03T09:00:00Z"}})  # fmt: skip
    old = f"{NAME}-s100"
    p = decide(c, runs=[run(old)])
    new = schedule_run(NOW)
    assert p.delete == [old]
    assert [tj["metadata"]["name"] for tj in p.create] == [new]
    d = p.status.decisions[-1]
    assert (d.action, d.reason, d.training_job) == ("Replaced", "Triggered", new)
    assert d.message == f"replaced {old} with {new}"
    assert p.status.active == [new]
    assert [e.reason for e in p.events] == ["RunReplaced"]


def test_allow_runs_side_by_side() -> None:
    c = ct(HOURLY, concurrencyPolicy="Allow",
           status={"triggers": {"lastScheduleTime": "2026-06-03T09:00:00Z"}})  # fmt: skip
    old = f"{NAME}-s100"
    p = decide(c, runs=[run(old)])
    new = schedule_run(NOW)
    assert p.delete == []
    assert [tj["metadata"]["name"] for tj in p.create] == [new]
    assert one_decision(p) == ("schedule", "Started", "Triggered")
    assert p.status.active == sorted([old, new])


def test_any_number_of_running_runs_leaves_a_status_the_api_server_accepts() -> None:
    """With Allow nothing bounds the running runs: status.active lists the first 64 and
    activeCount has them all, and no message lists them all (a Decision's message is at most
    1,024 characters, a status over its schema is refused on every pass)."""
    running = [run(f"{NAME}-m{i:03d}") for i in range(200)]
    status = {"triggers": {"lastScheduleTime": "2026-06-03T09:00:00Z"}}
    allowed = decide(ct(HOURLY, concurrencyPolicy="Allow", status=status), runs=running)
    assert allowed.status.active == sorted([r.name for r in running])[:64]
    assert allowed.status.active_count == 201
    ready = next(c for c in allowed.status.conditions if c.type == "Ready")
    assert ready.message.endswith(" and 196 more")
    dumped = allowed.status.model_dump(mode="json", by_alias=True, exclude_none=True)
    ContinuousTrainingStatus.model_validate(dumped)  # what the CRD's schema says, too

    forbidden = decide(ct(HOURLY, status=status), runs=running)
    assert one_decision(forbidden) == ("schedule", "Skipped", "ConcurrencyForbid")
    message = forbidden.status.decisions[-1].message
    assert message == f"{', '.join(r.name for r in running[:5])} and 195 more is still running"


# --- cooldownSeconds -----------------------------------------------------------------


def test_cooldown_skips_a_schedule_run() -> None:
    last = NOW - timedelta(minutes=10)
    c = ct(HOURLY, cooldownSeconds=3600, concurrencyPolicy="Allow", status={
        "triggers": {"lastScheduleTime": "2026-06-03T09:00:00Z"},
        "lastRun": {"trainingJob": f"{NAME}-d1", "trigger": "onNewDataset",
                    "detail": "iris-data-v1", "time": stamp(last)},
    })  # fmt: skip
    p = decide(c)
    assert p.create == []
    assert one_decision(p) == ("schedule", "Skipped", "Cooldown")
    assert stamp(last + timedelta(hours=1)) in p.status.decisions[-1].message
    assert p.status.triggers.last_schedule_time == NOW


def test_cooldown_defers_a_dataset_until_its_end() -> None:
    last = NOW - timedelta(minutes=10)
    status = {
        "lastRun": {"trainingJob": f"{NAME}-d1", "trigger": "onNewDataset",
                    "detail": "iris-data-v1", "time": stamp(last)},
        "triggers": {"datasetVersion": 1},
    }  # fmt: skip
    c = ct(ON_DATA, cooldownSeconds=3600, status=status)
    p = decide(c, datasets=[dataset(1), dataset(2)])
    assert p.create == []
    assert one_decision(p) == ("onNewDataset", "Deferred", "Cooldown")
    assert p.status.triggers.dataset_version == 1
    end = last + timedelta(seconds=3600)
    assert p.wake_at == end

    after = decide(with_status(c, p.status), end, datasets=[dataset(1), dataset(2)])
    assert [tj["metadata"]["name"] for tj in after.create] == [f"{NAME}-d2"]


# --- maxRunsPerDay -------------------------------------------------------------------


def test_the_daily_limit_skips_a_schedule_run() -> None:
    c = ct(HOURLY, maxRunsPerDay=2, status={
        "triggers": {"lastScheduleTime": "2026-06-03T09:00:00Z"},
        "dailyRuns": {"day": "2026-06-03", "count": 2},
    })  # fmt: skip
    p = decide(c)
    assert p.create == []
    assert one_decision(p) == ("schedule", "Skipped", "DailyLimit")
    assert p.status.daily_runs is not None
    assert (p.status.daily_runs.day, p.status.daily_runs.count) == ("2026-06-03", 2)


def test_the_daily_limit_defers_a_dataset_to_the_next_day() -> None:
    c = ct(ON_DATA, maxRunsPerDay=1, status={"dailyRuns": {"day": "2026-06-03", "count": 1}})
    p = decide(c, datasets=[dataset(1)])
    assert p.create == []
    assert one_decision(p) == ("onNewDataset", "Deferred", "DailyLimit")
    assert p.wake_at == utc(2026, 6, 4)
    tomorrow = decide(with_status(c, p.status), utc(2026, 6, 4), datasets=[dataset(1)])
    assert len(tomorrow.create) == 1
    assert tomorrow.status.daily_runs is not None
    assert (tomorrow.status.daily_runs.day, tomorrow.status.daily_runs.count) == ("2026-06-04", 1)


def test_yesterdays_runs_do_not_count_and_a_start_counts() -> None:
    c = ct(HOURLY, maxRunsPerDay=2, status={
        "triggers": {"lastScheduleTime": "2026-06-03T09:00:00Z"},
        "dailyRuns": {"day": "2026-06-02", "count": 2},
    })  # fmt: skip
    p = decide(c)
    assert len(p.create) == 1
    assert p.status.daily_runs is not None
    assert (p.status.daily_runs.day, p.status.daily_runs.count) == ("2026-06-03", 1)


def test_the_day_is_the_schedule_zones_day() -> None:
    triggers = {"schedule": {"cron": "0 0 1 1 *", "timeZone": "Europe/Paris"}, **ON_DATA}
    c = ct(triggers, maxRunsPerDay=1, status={"dailyRuns": {"day": "2026-06-03", "count": 1}})
    # 23:30 in Paris on 06-03: still the day of the last run.
    evening = decide(c, utc(2026, 6, 3, 21, 30), datasets=[dataset(1)])
    assert evening.create == []
    assert one_decision(evening) == ("onNewDataset", "Deferred", "DailyLimit")
    assert evening.wake_at == utc(2026, 6, 3, 22)  # Paris midnight
    # 00:30 in Paris on 06-04, though still 06-03 in UTC: a new day.
    night = decide(c, utc(2026, 6, 3, 22, 30), datasets=[dataset(1)])
    assert len(night.create) == 1
    assert night.status.daily_runs is not None
    assert night.status.daily_runs.day == "2026-06-04"


def test_a_run_started_in_the_same_pass_counts_for_the_limit() -> None:
    triggers = {**HOURLY, **ON_DATA}
    c = ct(triggers, maxRunsPerDay=1, concurrencyPolicy="Allow",
           status={"triggers": {"lastScheduleTime": "2026-06-03T09:00:00Z"}})  # fmt: skip
    p = decide(c, datasets=[dataset(1)])
    assert [tj["metadata"]["name"] for tj in p.create] == [schedule_run(NOW)]
    assert [(d.trigger, d.action, d.reason) for d in p.status.decisions] == [
        ("schedule", "Started", "Triggered"),
        ("onNewDataset", "Deferred", "DailyLimit"),
    ]
    assert p.status.daily_runs is not None
    assert p.status.daily_runs.count == 1


# --- suspend -------------------------------------------------------------------------


def test_suspend_starts_nothing() -> None:
    c = ct({**HOURLY, **ON_DATA}, suspend=True,
           status={"triggers": {"lastScheduleTime": "2026-06-03T09:00:00Z"}})  # fmt: skip
    p = decide(c, datasets=[dataset(1)])
    assert p.create == []
    assert [(d.trigger, d.action, d.reason) for d in p.status.decisions] == [
        ("schedule", "Skipped", "Suspended"),
        ("onNewDataset", "Deferred", "Suspended"),
    ]
    assert p.status.triggers.last_schedule_time == NOW
    assert p.status.triggers.dataset_version is None
    assert conditions(p.status)["Ready"] == ("True", "Suspended")

    # Resumed: the dataset that waited starts; the skipped schedule time does not.
    resumed = ct({**HOURLY, **ON_DATA}).model_copy(update={"status": p.status})
    r = decide(resumed, NOW + timedelta(minutes=1), datasets=[dataset(1)])
    assert [tj["metadata"]["name"] for tj in r.create] == [f"{NAME}-d1"]
    assert conditions(r.status)["Ready"] == ("True", "Running")


# --- decisions -----------------------------------------------------------------------


def test_a_repeated_decision_is_recorded_and_announced_once() -> None:
    c = ct(ON_DATA)
    runs = [run(f"{NAME}-s1")]
    first = decide(c, runs=runs, datasets=[dataset(2)])
    assert len(first.status.decisions) == 1
    assert len(first.events) == 1
    second = decide(with_status(c, first.status), NOW + timedelta(minutes=1), runs=runs,
                    datasets=[dataset(2)])  # fmt: skip
    assert second.events == []
    assert second.status.decisions == first.status.decisions
    # Another reason for the same version is a new decision.
    c2 = ct(ON_DATA, cooldownSeconds=3600)
    status = first.status.model_copy(update={"last_run": LastRun(
        training_job=f"{NAME}-s1", trigger="schedule", detail="x", time=NOW)})  # fmt: skip
    third = decide(with_status(c2, status), NOW + timedelta(minutes=2), runs=runs,
                   datasets=[dataset(2)])  # fmt: skip
    assert [d.reason for d in third.status.decisions] == ["ConcurrencyForbid", "Cooldown"]
    assert len(third.events) == 1


def test_decisions_are_bounded_newest_last() -> None:
    old = [
        {"time": "2026-06-02T00:00:00Z", "trigger": "schedule", "detail": f"t{i}",
         "action": "Skipped", "reason": "ConcurrencyForbid", "message": "busy"}
        for i in range(MAX_DECISIONS)
    ]  # fmt: skip
    assert MAX_DECISIONS == 20
    c = ct(HOURLY, status={"decisions": old,
                           "triggers": {"lastScheduleTime": "2026-06-03T09:00:00Z"}})  # fmt: skip
    p = decide(c)
    details = [d.detail for d in p.status.decisions]
    assert len(details) == 20
    assert details[0] == "t1"
    assert details[-1] == "2026-06-03T10:00:00Z"
    # It is still a valid status (maxItems 20).
    ContinuousTrainingStatus.model_validate(p.status.wire())


# --- history limits ------------------------------------------------------------------


def finished_run(name: str, created: str, model: str | None) -> Run:
    return run(name, created, finished=True, model=model)


def test_expired_keeps_the_newest_finished_runs_of_each_kind_and_every_active_one() -> None:
    c = ct(HOURLY, successfulRunsHistoryLimit=2, failedRunsHistoryLimit=1)
    # Names sort the other way from creation times: the times decide.
    runs = [
        run(f"{NAME}-a", "2026-06-01T00:00:00Z"),  # active, the oldest of all
        finished_run(f"{NAME}-g4", "2026-06-01T01:00:00Z", "iris-v1"),
        finished_run(f"{NAME}-g3", "2026-06-01T02:00:00Z", "iris-v2"),
        finished_run(f"{NAME}-g2", "2026-06-01T03:00:00Z", "iris-v3"),
        finished_run(f"{NAME}-g1", "2026-06-01T04:00:00Z", "iris-v4"),
        finished_run(f"{NAME}-b3", "2026-06-01T01:30:00Z", None),
        finished_run(f"{NAME}-b2", "2026-06-01T02:30:00Z", None),
        finished_run(f"{NAME}-b1", "2026-06-01T03:30:00Z", None),
    ]
    gone = expired(c, runs)
    assert sorted(gone) == sorted([f"{NAME}-g4", f"{NAME}-g3", f"{NAME}-b3", f"{NAME}-b2"])
    assert gone.index(f"{NAME}-g4") < gone.index(f"{NAME}-g3")
    assert gone.index(f"{NAME}-b3") < gone.index(f"{NAME}-b2")
    assert f"{NAME}-a" not in gone

    p = decide(c, utc(2026, 6, 1, 4, 30), runs=runs, created=utc(2026, 6, 1, 4, 10))
    assert sorted(p.delete) == sorted(gone)
    assert p.status.active == [f"{NAME}-a"]


def test_expired_with_default_and_zero_limits() -> None:
    runs = [finished_run(f"{NAME}-g{i}", f"2026-06-01T0{i}:00:00Z", f"iris-v{i}")
            for i in range(1, 6)] + [
        finished_run(f"{NAME}-b{i}", f"2026-06-02T0{i}:00:00Z", None) for i in range(1, 4)
    ] + [run(f"{NAME}-a")]  # fmt: skip
    # Defaults: 3 succeeded, 1 failed.
    assert expired(ct(HOURLY), runs) == [f"{NAME}-g1", f"{NAME}-g2", f"{NAME}-b1", f"{NAME}-b2"]
    zero = ct(HOURLY, successfulRunsHistoryLimit=0, failedRunsHistoryLimit=0)
    assert sorted(expired(zero, runs)) == sorted(r.name for r in runs if r.finished)
    assert expired(ct(HOURLY), [run(f"{NAME}-a"), run(f"{NAME}-b")]) == []


def test_run_of_reads_finished_and_succeeded() -> None:
    def tj(phase: str | None, *conds: str, model: str | None = None) -> dict[str, Any]:
        status: dict[str, Any] = {"conditions": [{"type": t, "status": "True"} for t in conds]}
        if phase:
            status["phase"] = phase
        if model:
            status["registeredModel"] = model
        meta = {"name": "r", "creationTimestamp": "2026-06-01T00:00:00Z"}
        return {"metadata": meta, "status": status}

    done = run_of(tj("Succeeded", "ModelRegistered", model="iris-v3"))
    assert (done.finished, done.succeeded, done.registered_model) == (True, True, "iris-v3")
    assert done.created == "2026-06-01T00:00:00Z"
    # Succeeded but not registered yet: still active (its Model is on the way).
    assert not run_of(tj("Succeeded")).finished
    failed = run_of(tj("Failed"))
    assert (failed.finished, failed.succeeded) == (True, False)
    assert not run_of(tj("Running")).finished
    assert not run_of({"metadata": {"name": "r"}}).finished


# --- lastSuccessfulModel -------------------------------------------------------------


def test_last_successful_model_is_the_newest_succeeded_runs() -> None:
    runs = [
        finished_run(f"{NAME}-x", "2026-06-02T00:00:00Z", "iris-v2"),
        finished_run(f"{NAME}-y", "2026-06-01T00:00:00Z", "iris-v1"),
        finished_run(f"{NAME}-z", "2026-06-03T00:00:00Z", None),
    ]
    c = ct(HOURLY, status={"triggers": {"lastScheduleTime": "2026-06-03T10:00:00Z"}})
    assert decide(c, runs=runs).status.last_successful_model == "iris-v2"
    status = {
        "lastSuccessfulModel": "iris-v9",
        "triggers": {"lastScheduleTime": "2026-06-03T10:00:00Z"},
    }
    kept = ct(HOURLY, status=status)
    assert decide(kept, runs=[runs[2]]).status.last_successful_model == "iris-v9"


# --- status --------------------------------------------------------------------------


def test_status_of_a_waiting_ct() -> None:
    c = ct(HOURLY, status={"triggers": {"lastScheduleTime": "2026-06-03T10:00:00Z"}})
    p = decide(c, NOW + timedelta(minutes=5))
    assert conditions(p.status) == {"Ready": ("True", "Waiting")}
    assert p.status.observed_generation == 3
    assert p.status.active == []


def test_invalid_status_stalls_and_a_valid_plan_recovers() -> None:
    c = ct(HOURLY)
    good = decide(c, utc(2026, 6, 3, 10), created=utc(2026, 6, 3, 9, 30))
    assert good.status.next_schedule_time is not None
    bad = continuous.invalid_status(good.status, 4, "cron: '61 * * * *' is not a cron expression",
                                    NOW + timedelta(minutes=1))  # fmt: skip
    assert conditions(bad) == {
        "Ready": ("False", "InvalidSpec"),
        "Stalled": ("True", "InvalidSpec"),
    }
    assert all(cond.message.startswith("cron: ") for cond in bad.conditions)
    assert all(cond.observed_generation == 4 for cond in bad.conditions)
    assert bad.observed_generation == 4
    assert bad.next_schedule_time is None
    assert bad.decisions == good.status.decisions  # history stays
    assert bad.triggers == good.status.triggers

    fixed = decide(with_status(c, bad), NOW + timedelta(minutes=2),
                   created=utc(2026, 6, 3, 9, 30))  # fmt: skip
    assert "Stalled" not in conditions(fixed.status)
    assert conditions(fixed.status)["Ready"][0] == "True"
    assert fixed.status.observed_generation == 3
    assert fixed.status.next_schedule_time == utc(2026, 6, 3, 11)


@pytest.mark.parametrize(
    ("triggers", "expected"),
    [
        (HOURLY, "s"),
        (ON_DATA, "d"),
        (ON_DRIFT, "c"),
    ],
)
def test_every_run_name_fits_a_trainingjob_name(triggers: dict[str, Any], expected: str) -> None:
    long_name = "a" * 36
    c = ct(triggers).model_copy(update={"metadata": ct(triggers).metadata.model_copy(
        update={"name": long_name})})  # fmt: skip
    p = plan(c, [], [dataset(999999)], deployment(SINCE), CREATED, utc(2026, 6, 3, 12))
    names = [tj["metadata"]["name"] for tj in p.create]
    assert len(names) == 1
    assert names[0].startswith(f"{long_name}-{expected}")
    assert len(names[0]) <= 50
    TrainingJob.model_validate({**p.create[0], "metadata": {**p.create[0]["metadata"],
                                                            "uid": "u"}})  # fmt: skip


def test_a_plan_never_deletes_a_run_it_creates() -> None:
    # Replace, and two triggers fire in one pass with nothing active: the schedule's run
    # starts; the dataset's must not "replace" a run that does not exist yet.
    c = ct({**HOURLY, **ON_DATA}, concurrencyPolicy="Replace",
           status={"triggers": {"lastScheduleTime": "2026-06-03T09:00:00Z"}})  # fmt: skip
    p = decide(c, datasets=[dataset(1)])
    created = {tj["metadata"]["name"] for tj in p.create}
    assert created
    assert not created & set(p.delete), (sorted(created), p.delete)


def test_a_run_registering_its_model_is_not_replaced() -> None:
    """Succeeded, Model not registered yet: not running, so Replace leaves it alone."""
    registering = run_of(
        {"metadata": {"name": "iris-ct-d1", "creationTimestamp": "2026-06-03T09:00:00Z"},
         "status": {"phase": "Succeeded", "conditions": []}}
    )  # fmt: skip
    assert (registering.running, registering.finished) == (False, False)
    c = ct(triggers={"onNewDataset": {"name": "iris-data"}}, concurrencyPolicy="Replace",
           status={"triggers": {"datasetVersion": 1}})  # fmt: skip
    out = decide(c, runs=[registering], datasets=[dataset(2)])
    assert out.delete == []
    assert [m["metadata"]["name"] for m in out.create] == ["iris-ct-d2"]
